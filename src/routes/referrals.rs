//! `/v1/referrals` (staff; finance may read without client contact or notes): record referred
//! clients, follow their treatment sessions, confirm completion, cancel, reject or refund.

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::app::input::{parse_client_edit, parse_new_referral, ClientEdit, ReferralInput};
use crate::app::referrals::{self, Detail};
use crate::auth::{Admin, Auth, Staff, StaffOrFinance};
use crate::config::Settings;
use crate::db::{blocking, DbConnection, DbPool};
use crate::domain::api_key::Role;
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::domain::referral::{close_out_reason, ReferralEvent, ReferralStatus};
use crate::domain::{optional_text, Validation};
use crate::error::{ApiError, Problem};
use crate::extract::nullable;
use crate::extract::{ApiJson, ApiQuery};
use crate::http::{idempotency, resource};
use crate::store::audit::AuditEvent;
use crate::store::referrals::{ClientChanges, NewReferral, ReferralFilter, ReferralRow, SessionRow};
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/referrals").route(web::post().to(create)).route(web::get().to(list)))
        .service(resource("/referrals/{id}").route(web::get().to(get)).route(web::patch().to(update)))
        .service(resource("/referrals/{id}/personal-data").route(web::delete().to(erase)))
        .service(
            resource("/referrals/{id}/sessions")
                .route(web::post().to(record_session))
                .route(web::get().to(list_sessions)),
        )
        .service(resource("/referrals/{id}/complete").route(web::post().to(complete)));
    for (path, event) in [
        ("/referrals/{id}/cancel", ReferralEvent::Cancel),
        ("/referrals/{id}/reject", ReferralEvent::Reject),
        ("/referrals/{id}/refund", ReferralEvent::Refund),
    ] {
        cfg.service(resource(path).app_data(web::Data::new(event)).route(web::post().to(close_out)));
    }
}

/// Client contact and staff notes: only staff (and admin) see these.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientContact {
    pub client_email: Option<String>,
    pub client_phone: Option<String>,
    pub notes: Option<String>,
    pub reason_note: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralView {
    pub id: String,
    /// Null only for a public submission rejected because its code matched nothing.
    pub ambassador_id: Option<String>,
    /// The code, as issued.
    pub code: Option<String>,
    /// What was typed, for a public submission.
    pub submitted_code: Option<String>,
    pub status: ReferralStatus,
    /// The day the client was referred, in the clinic's calendar (earlier than
    /// `registered_at` when staff recorded the referral late).
    #[serde(serialize_with = "crate::store::date::ser")]
    pub registered_on: NaiveDate,
    /// `staff` or `public_form`.
    pub source: String,
    pub client_first_name: Option<String>,
    pub client_last_name: Option<String>,
    /// Staff only: absent for finance.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ClientContact>,
    /// The clinic's own client id.
    pub external_ref: Option<String>,
    pub share_name_with_ambassador: bool,
    pub planned_sessions: Option<i32>,
    pub session_count: i32,
    /// Day of the earliest recorded session.
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub first_session_on: Option<NaiveDate>,
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub completed_on: Option<NaiveDate>,
    pub treatment_value_minor: Option<i64>,
    /// Set at completion: whether it earns a reward.
    pub earns: Option<bool>,
    pub not_earning_reason: Option<String>,
    /// Reason code of a cancel, reject or refund.
    pub reason_code: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub registered_at: chrono::NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub treatment_started_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub completed_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub refunded_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub cancelled_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub rejected_at: Option<chrono::NaiveDateTime>,
    /// When the client's personal data was erased.
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub erased_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub updated_at: chrono::NaiveDateTime,
}

impl ReferralView {
    /// `with_contact` is false for finance, who never see client contact details or notes.
    pub fn new(r: ReferralRow, code: Option<String>, with_contact: bool, calendar: &Calendar) -> Self {
        Self {
            registered_on: r.registered_on(calendar),
            contact: with_contact.then_some(ClientContact {
                client_email: r.client_email,
                client_phone: r.client_phone,
                notes: r.notes,
                reason_note: r.reason_note,
            }),
            status: r.status,
            id: r.id,
            ambassador_id: r.ambassador_id,
            code,
            submitted_code: r.submitted_code,
            source: r.source.as_str().to_owned(),
            client_first_name: r.client_first_name,
            client_last_name: r.client_last_name,
            external_ref: r.external_ref,
            share_name_with_ambassador: r.share_name_with_ambassador,
            planned_sessions: r.planned_sessions,
            session_count: r.session_count,
            first_session_on: r.first_session_on,
            completed_on: r.completed_on,
            treatment_value_minor: r.treatment_value_minor,
            earns: r.earns,
            not_earning_reason: r.not_earning_reason,
            reason_code: r.reason_code,
            registered_at: r.registered_at,
            treatment_started_at: r.treatment_started_at,
            completed_at: r.completed_at,
            refunded_at: r.refunded_at,
            cancelled_at: r.cancelled_at,
            rejected_at: r.rejected_at,
            erased_at: r.erased_at,
            updated_at: r.updated_at,
        }
    }
}

/// One step in a referral's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub at: chrono::NaiveDateTime,
    pub action: String,
    pub before_status: Option<String>,
    pub after_status: Option<String>,
    /// `api_key`, `ambassador`, `public` or `system`.
    pub actor_type: String,
}

impl From<AuditEvent> for HistoryEntry {
    fn from(e: AuditEvent) -> Self {
        Self {
            at: e.occurred_at,
            action: e.action,
            before_status: e.before_status,
            after_status: e.after_status,
            actor_type: e.actor_type,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralDetail {
    #[serde(flatten)]
    pub referral: ReferralView,
    pub sessions: Vec<SessionView>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    #[serde(serialize_with = "crate::store::date::ser")]
    pub session_on: NaiveDate,
    /// Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
}

impl SessionView {
    fn new(s: SessionRow, with_notes: bool) -> Self {
        Self { id: s.id, session_on: s.session_on, note: s.note.filter(|_| with_notes), created_at: s.created_at }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralList {
    pub items: Vec<ReferralView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReferral {
    /// The referral code the client gave (any case, hyphens optional).
    pub code: String,
    pub first_name: String,
    pub last_name: Option<String>,
    /// E-mail and/or phone: at least one.
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The clinic's own client id.
    pub external_ref: Option<String>,
    pub planned_sessions: Option<i32>,
    /// The client agrees that the ambassador sees "First L." (default false).
    #[serde(default)]
    pub share_name_with_ambassador: bool,
    pub notes: Option<String>,
    /// `YYYY-MM-DD`: the day the client was referred, when recording it late (e.g. the client
    /// names their ambassador at the final session). Today or earlier, within the program's
    /// attribution window; default today (clinic time zone). Sessions and the completion may
    /// not be dated before it.
    pub registered_on: Option<NaiveDate>,
}

impl CreateReferral {
    fn parse(self, settings: &Settings) -> Result<NewReferral, ApiError> {
        let mut v = Validation::new();
        let new = parse_new_referral(
            &mut v,
            settings,
            &ReferralInput {
                code: &self.code,
                first_name: &self.first_name,
                last_name: self.last_name.as_deref(),
                email: self.email.as_deref(),
                phone: self.phone.as_deref(),
                external_ref: self.external_ref.as_deref(),
                planned_sessions: self.planned_sessions,
                share_name_with_ambassador: self.share_name_with_ambassador,
                notes: self.notes.as_deref(),
                registered_on: self.registered_on,
            },
        );
        v.finish()?;
        Ok(new)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSession {
    /// `YYYY-MM-DD`, not before the referral's `registered_on` nor after today; default today
    /// (clinic time zone).
    pub session_on: Option<NaiveDate>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteReferral {
    /// `YYYY-MM-DD`, the day treatment was completed: not before the referral's
    /// `registered_on` nor after today (clinic time zone).
    pub completed_on: NaiveDate,
    /// Treatment value in minor units (needed by percent rewards).
    pub treatment_value_minor: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseOutReferral {
    /// Reject: duplicate | self_referral | fraud | outside_window | not_eligible | other.
    /// Cancel: client_withdrew | not_suitable | no_show | other.
    /// Refund: client_dissatisfied | medical | goodwill | other.
    pub reason_code: String,
    /// Required when `reason_code` is `other`.
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReferralQuery {
    pub status: Option<ReferralStatus>,
    pub ambassador_id: Option<String>,
    /// Client name, e-mail, phone digits or external reference (for finance: name or external
    /// reference only — what finance may see).
    pub q: Option<String>,
    /// Registered on or after (`YYYY-MM-DD`).
    pub from: Option<NaiveDate>,
    /// Registered on or before (`YYYY-MM-DD`).
    pub to: Option<NaiveDate>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Finance read referrals without client contact details or notes.
fn sees_contact(role: Role) -> bool {
    role != Role::Finance
}

/// Record a referred client.
#[utoipa::path(post, path = "/v1/referrals", tag = "referrals", security(("bearer" = [])),
    request_body = CreateReferral,
    responses((status = 201, body = ReferralView),
        (status = 409, description = "`duplicate-referral` with `existing_referral_id`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-code`, `ambassador-inactive`, `self-referral` or `validation-failed`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    calendar: web::Data<Calendar>,
    hasher: web::Data<ContactHasher>,
    body: ApiJson<CreateReferral>,
) -> Result<HttpResponse, ApiError> {
    let new = body.0.parse(&settings)?;
    let actor = auth.actor();
    let cal = **calendar;
    let (row, code) = blocking(&pool, move |c| referrals::create(c, &cal, &new, &hasher, &actor)).await?;
    Ok(about_client(HttpResponse::Created(), ReferralView::new(row, code, true, &calendar)))
}

/// Runs a change of a referral and loads the code it was made with, for the reply.
async fn change(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConnection) -> crate::app::Result<ReferralRow> + Send + 'static,
) -> Result<(ReferralRow, Option<String>), ApiError> {
    Ok(blocking(pool, move |c| {
        let row = f(c)?;
        referrals::with_code(c, row)
    })
    .await?)
}

/// A reply naming a referred client: a stored idempotent copy is scrubbed with their data.
fn about_client(mut res: actix_web::HttpResponseBuilder, view: ReferralView) -> HttpResponse {
    let mut res = res.json(&view);
    idempotency::concerns(&mut res, &view.id);
    res
}

/// Search referrals, newest first. Finance sees no client contact or notes.
#[utoipa::path(get, path = "/v1/referrals", tag = "referrals", security(("bearer" = [])), params(ReferralQuery),
    responses((status = 200, body = ReferralList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    auth: Auth<StaffOrFinance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<ReferralQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::validation("from", "must not be after `to`"));
        }
    }
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::validation("q", "must be at most 200 characters"));
    }
    let filter = ReferralFilter {
        status: q.status,
        ambassador_id: q.ambassador_id,
        from: q.from,
        to: q.to,
        q: q.q,
        q_matches_contact: sees_contact(auth.caller.role),
    };
    let cal = **calendar;
    let page = blocking(&pool, move |c| referrals::search(c, &cal, &filter, &page)).await?;
    let with_contact = sees_contact(auth.caller.role);
    let page = page.map(|(r, code)| ReferralView::new(r, code, with_contact, &calendar));
    Ok(HttpResponse::Ok().json(ReferralList { items: page.items, next_cursor: page.next_cursor }))
}

/// A referral with its sessions and history.
#[utoipa::path(get, path = "/v1/referrals/{id}", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ReferralDetail),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    auth: Auth<StaffOrFinance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Detail { referral: row, code, sessions, history } = blocking(&pool, move |c| referrals::detail(c, &id)).await?;
    let with_contact = sees_contact(auth.caller.role);
    Ok(HttpResponse::Ok().json(ReferralDetail {
        referral: ReferralView::new(row, code, with_contact, &calendar),
        sessions: sessions.into_iter().map(|s| SessionView::new(s, with_contact)).collect(),
        history: history.into_iter().rev().map(HistoryEntry::from).collect(),
    }))
}

/// Record a treatment session; the first one moves the referral to `in_treatment`.
#[utoipa::path(post, path = "/v1/referrals/{id}/sessions", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RecordSession,
    responses((status = 201, body = SessionView),
        (status = 409, description = "`invalid-transition` on a cancelled, rejected or refunded referral", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed`: `session_on` before the referral's `registered_on` or in the future", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn record_session(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    id: web::Path<String>,
    body: ApiJson<RecordSession>,
) -> Result<HttpResponse, ApiError> {
    let cal = **calendar;
    let session_on = body.0.session_on.unwrap_or_else(|| cal.date_of(crate::db::now()));
    let mut v = Validation::new();
    let note = v.check("note", optional_text(body.0.note.as_deref(), 2000)).flatten();
    v.finish()?;
    let actor = auth.actor();
    let row =
        blocking(&pool, move |c| referrals::record_session(c, &cal, &id, session_on, note.as_deref(), &actor)).await?;
    let referral_id = row.referral_id.clone();
    let mut res = HttpResponse::Created().json(SessionView::new(row, true));
    idempotency::concerns(&mut res, &referral_id);
    Ok(res)
}

/// A referral's sessions, in date order.
#[utoipa::path(get, path = "/v1/referrals/{id}/sessions", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SessionList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list_sessions(
    auth: Auth<StaffOrFinance>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let rows = blocking(&pool, move |c| referrals::sessions(c, &id)).await?;
    let with_notes = sees_contact(auth.caller.role);
    let items = rows.into_iter().map(|s| SessionView::new(s, with_notes)).collect();
    Ok(HttpResponse::Ok().json(SessionList { items, next_cursor: None }))
}

/// Confirm the treatment is complete: the event that earns the ambassador's reward.
#[utoipa::path(post, path = "/v1/referrals/{id}/complete", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CompleteReferral,
    responses((status = 200, body = ReferralView),
        (status = 409, description = "`invalid-transition` (e.g. completed twice)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed`: `completed_on` before the referral's `registered_on` or in the future; `treatment-value-required`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn complete(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    id: web::Path<String>,
    body: ApiJson<CompleteReferral>,
) -> Result<HttpResponse, ApiError> {
    let CompleteReferral { completed_on, treatment_value_minor } = body.0;
    if treatment_value_minor.is_some_and(|v| !(0..=1_000_000_000_000).contains(&v)) {
        return Err(ApiError::validation("treatment_value_minor", "must be between 0 and 1000000000000"));
    }
    let actor = auth.actor();
    let cal = **calendar;
    let (row, code) =
        blocking(&pool, move |c| referrals::complete(c, &cal, &id, completed_on, treatment_value_minor, &actor))
            .await?;
    Ok(about_client(HttpResponse::Ok(), ReferralView::new(row, code, true, &calendar)))
}

/// Cancel, reject or refund a referral with a reason code.
#[utoipa::path(post, path = "/v1/referrals/{id}/{action}", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path), ("action" = String, Path, description = "cancel | reject | refund")),
    request_body = CloseOutReferral,
    responses((status = 200, body = ReferralView),
        (status = 409, description = "`invalid-transition` with `current_status`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn close_out(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    event: web::Data<ReferralEvent>,
    id: web::Path<String>,
    body: ApiJson<CloseOutReferral>,
) -> Result<HttpResponse, ApiError> {
    let event = **event;
    let CloseOutReferral { reason_code, note } = body.0;
    let note = close_out_reason(event, &reason_code, note.as_deref())?;
    let actor = auth.actor();
    let (row, code) =
        change(&pool, move |c| referrals::close_out(c, &id, event, &reason_code, note.as_deref(), &actor)).await?;
    Ok(about_client(HttpResponse::Ok(), ReferralView::new(row, code, true, &calendar)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateReferral {
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub external_ref: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub planned_sessions: Option<Option<i32>>,
    pub share_name_with_ambassador: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

impl UpdateReferral {
    fn parse(self, settings: &Settings) -> Result<ClientChanges, ApiError> {
        fn text(f: &Option<Option<String>>) -> Option<Option<&str>> {
            f.as_ref().map(|o| o.as_deref())
        }
        let mut v = Validation::new();
        let changes = parse_client_edit(
            &mut v,
            settings,
            &ClientEdit {
                first_name: self.first_name.as_deref(),
                last_name: text(&self.last_name),
                email: text(&self.email),
                phone: text(&self.phone),
                external_ref: text(&self.external_ref),
                planned_sessions: self.planned_sessions,
                share_name_with_ambassador: self.share_name_with_ambassador,
                notes: text(&self.notes),
            },
        );
        v.finish()?;
        Ok(changes)
    }
}

/// Edit client data; absent fields stay, `null` clears optional ones.
#[utoipa::path(patch, path = "/v1/referrals/{id}", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UpdateReferral,
    responses((status = 200, body = ReferralView),
        (status = 409, description = "`duplicate-referral`, or `invalid-transition` once erased", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    settings: web::Data<Settings>,
    hasher: web::Data<ContactHasher>,
    id: web::Path<String>,
    body: ApiJson<UpdateReferral>,
) -> Result<HttpResponse, ApiError> {
    let changes = body.0.parse(&settings)?;
    let actor = auth.actor();
    let (row, code) = change(&pool, move |c| referrals::update_client(c, &id, &changes, &hasher, &actor)).await?;
    Ok(HttpResponse::Ok().json(ReferralView::new(row, code, true, &calendar)))
}

/// Erase the client's personal data (names, contact, notes, external reference); status,
/// dates and money stay. Duplicate detection keeps working through keyed hashes.
#[utoipa::path(delete, path = "/v1/referrals/{id}/personal-data", tag = "referrals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ReferralView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn erase(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let (row, code) = change(&pool, move |c| referrals::erase(c, &id, &actor)).await?;
    Ok(HttpResponse::Ok().json(ReferralView::new(row, code, true, &calendar)))
}
