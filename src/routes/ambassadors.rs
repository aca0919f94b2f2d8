//! `/v1/ambassadors` (staff): enrol, search, read, edit, and lifecycle actions.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::ambassadors::{self, AmbassadorView};
use crate::app::input::{
    lifecycle_reason, parse_ambassador_edit, parse_enrolment, search_text, AmbassadorEdit, EnrolmentInput,
};
use crate::auth::{Auth, AuthCache, Staff};
use crate::config::Settings;
use crate::db::{blocking, read, DbPool};
use crate::domain::ambassador::{AmbassadorStatus, LifecycleEvent, NotificationPreferences, PayoutMethod};
use crate::domain::Validation;
use crate::email::MailContext;
use crate::error::{ApiError, Problem};
use crate::extract::{nullable, ApiJson, ApiQuery, OptionalJson};
use crate::http::resource;
use crate::store::ambassadors::{AmbassadorChanges, AmbassadorFilter, Enrolment, NewAmbassador};
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ambassadors").route(web::post().to(enrol)).route(web::get().to(list)))
        .service(resource("/ambassadors/{id}").route(web::get().to(get)).route(web::patch().to(update)));
    for (path, event) in [
        ("/ambassadors/{id}/approve", LifecycleEvent::Approve),
        ("/ambassadors/{id}/decline", LifecycleEvent::Decline),
        ("/ambassadors/{id}/suspend", LifecycleEvent::Suspend),
        ("/ambassadors/{id}/reactivate", LifecycleEvent::Reactivate),
        ("/ambassadors/{id}/close", LifecycleEvent::Close),
    ] {
        cfg.service(resource(path).app_data(web::Data::new(event)).route(web::post().to(lifecycle)));
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolAmbassador {
    pub name: String,
    pub email: String,
    /// With country code, e.g. `+1 415 555 0100`.
    pub phone: Option<String>,
    pub display_name: Option<String>,
    /// Show `display_name` to referred friends (default false: anonymous).
    #[serde(default)]
    pub show_name_to_referrals: bool,
    pub payout_method: Option<PayoutMethod>,
    pub notification_preferences: Option<NotificationPreferences>,
    pub notes: Option<String>,
    /// A vanity code (`JAMES10`) to issue instead of a generated one.
    pub code: Option<String>,
}

impl EnrolAmbassador {
    fn parse(self, settings: &Settings) -> Result<NewAmbassador, ApiError> {
        let input = EnrolmentInput {
            name: &self.name,
            email: &self.email,
            phone: self.phone.as_deref(),
            display_name: self.display_name.as_deref(),
            show_name_to_referrals: self.show_name_to_referrals,
            payout_method: self.payout_method,
            notification_preferences: self.notification_preferences,
            notes: self.notes.as_deref(),
            code: self.code.as_deref(),
        };
        Ok(parse_enrolment(settings, input)?)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAmbassador {
    pub name: Option<String>,
    pub email: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    pub show_name_to_referrals: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PayoutMethod>)]
    pub payout_method: Option<Option<PayoutMethod>>,
    pub notification_preferences: Option<NotificationPreferences>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

impl UpdateAmbassador {
    fn parse(self, settings: &Settings) -> Result<AmbassadorChanges, ApiError> {
        let mut v = Validation::new();
        let edit = AmbassadorEdit {
            name: self.name.as_deref(),
            email: self.email.as_deref(),
            phone: self.phone.as_ref().map(Option::as_deref),
            display_name: self.display_name.as_ref().map(Option::as_deref),
            show_name_to_referrals: self.show_name_to_referrals,
            payout_method: self.payout_method,
            notification_preferences: self.notification_preferences,
            notes: self.notes.as_ref().map(Option::as_deref),
        };
        let changes = parse_ambassador_edit(&mut v, settings, edit);
        v.finish()?;
        Ok(changes)
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AmbassadorQuery {
    pub status: Option<AmbassadorStatus>,
    /// Search name, display name, e-mail, phone, or a code (exactly, any case, hyphens optional).
    pub q: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AmbassadorList {
    pub items: Vec<AmbassadorView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    /// Why; required to suspend or close.
    pub reason: Option<String>,
}

/// Enrol an ambassador: active at once, with a generated (or the given vanity) code.
#[utoipa::path(post, path = "/v1/ambassadors", tag = "ambassadors", security(("bearer" = [])),
    request_body = EnrolAmbassador,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses((status = 201, body = AmbassadorView),
        (status = 409, description = "`email-taken` or `code-taken`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn enrol(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    body: ApiJson<EnrolAmbassador>,
) -> Result<HttpResponse, ApiError> {
    let new = body.0.parse(&settings)?;
    let actor = auth.actor();
    let mail = MailContext::new(&settings);
    let ((row, codes), balance) = blocking(&pool, move |c| {
        let enrolled = ambassadors::enrol(c, &new, Enrolment::ByStaff, &mail, &actor)?;
        let balance = ambassadors::balance(c, &enrolled.0.id)?;
        Ok::<_, crate::app::Error>((enrolled, balance))
    })
    .await?;
    let view = AmbassadorView::new(row, codes, Vec::new(), &settings.public_url()).with_balance(balance);
    Ok(HttpResponse::Created().json(view))
}

/// Search ambassadors, newest first.
#[utoipa::path(get, path = "/v1/ambassadors", tag = "ambassadors", security(("bearer" = [])), params(AmbassadorQuery),
    responses((status = 200, body = AmbassadorList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    q: ApiQuery<AmbassadorQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter = AmbassadorFilter { status: q.status, q: search_text(q.q.as_deref())? };
    let result = blocking(&pool, move |c| ambassadors::list(c, &filter, &page)).await?;
    let url = settings.public_url();
    let page = result.map(|(row, codes, counts)| AmbassadorView::new(row, codes, counts, &url));
    Ok(HttpResponse::Ok().json(AmbassadorList { items: page.items, next_cursor: page.next_cursor }))
}

/// One ambassador with their codes.
#[utoipa::path(get, path = "/v1/ambassadors/{id}", tag = "ambassadors", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = AmbassadorView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    _auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ((row, codes, counts), balance) = read(&pool, move |c| ambassadors::detail(c, &id)).await?;
    Ok(HttpResponse::Ok().json(AmbassadorView::new(row, codes, counts, &settings.public_url()).with_balance(balance)))
}

/// Edit an ambassador; absent fields stay, `null` clears optional ones.
#[utoipa::path(patch, path = "/v1/ambassadors/{id}", tag = "ambassadors", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateAmbassador,
    responses((status = 200, body = AmbassadorView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    cache: web::Data<AuthCache>,
    id: web::Path<String>,
    body: ApiJson<UpdateAmbassador>,
) -> Result<HttpResponse, ApiError> {
    let changes = body.0.parse(&settings)?;
    let actor = auth.actor();
    let ((row, codes, counts), balance) = blocking(&pool, move |c| {
        ambassadors::update(c, &id, &changes, &actor)?;
        ambassadors::detail(c, &id)
    })
    .await?;
    // A new e-mail address ends their portal sessions.
    cache.forget_ambassador(&row.id);
    Ok(HttpResponse::Ok().json(AmbassadorView::new(row, codes, counts, &settings.public_url()).with_balance(balance)))
}

/// Approve, decline, suspend, reactivate or close (`reason` required to suspend or close).
#[utoipa::path(post, path = "/v1/ambassadors/{id}/{action}", tag = "ambassadors", security(("bearer" = [])),
    params(("id" = String, Path), ("action" = String, Path, description = "approve | decline | suspend | reactivate | close")),
    request_body(content = Option<LifecycleRequest>),
    responses((status = 200, body = AmbassadorView),
        (status = 409, description = "`invalid-transition` with `current_status`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn lifecycle(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    event: web::Data<LifecycleEvent>,
    cache: web::Data<AuthCache>,
    id: web::Path<String>,
    body: OptionalJson<LifecycleRequest>,
) -> Result<HttpResponse, ApiError> {
    let event = **event;
    let reason = lifecycle_reason(event, body.0.and_then(|b| b.reason).as_deref())?;
    let actor = auth.actor();
    let mail = MailContext::new(&settings);
    let ((row, codes, counts), balance) = blocking(&pool, move |c| {
        ambassadors::transition(c, &id, event, reason.as_deref(), &mail, &actor)?;
        ambassadors::detail(c, &id)
    })
    .await?;
    // Only an active ambassador's sessions sign in.
    cache.forget_ambassador(&row.id);
    Ok(HttpResponse::Ok().json(AmbassadorView::new(row, codes, counts, &settings.public_url()).with_balance(balance)))
}
