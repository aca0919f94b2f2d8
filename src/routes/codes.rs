//! Referral codes (staff): list and add per ambassador, deactivate by code.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::codes;
use crate::auth::{Auth, Staff};
use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::code::ReferralCode;
use crate::domain::Validation;
use crate::error::{ApiError, Problem};
use crate::extract::OptionalJson;
use crate::http::resource;
use crate::store::codes::CodeView;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ambassadors/{id}/codes").route(web::post().to(create)).route(web::get().to(list)))
        .service(resource("/codes/{code}/deactivate").route(web::post().to(deactivate)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCode {
    /// A vanity code (3–32 of `A-Z 0-9 -`); omit for a generated `XXXX-XXXX` code.
    pub code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CodeList {
    pub items: Vec<CodeView>,
    pub next_cursor: Option<String>,
}

/// Add a code to an ambassador: vanity if `code` is given, else generated.
#[utoipa::path(post, path = "/v1/ambassadors/{id}/codes", tag = "codes", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<CreateCode>),
    responses((status = 201, body = CodeView),
        (status = 409, description = "`code-taken`, or `invalid-transition` for a closed ambassador", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    body: OptionalJson<CreateCode>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::new();
    let vanity =
        v.check("code", body.0.and_then(|b| b.code).as_deref().map(ReferralCode::parse_vanity).transpose()).flatten();
    v.finish()?;
    let actor = auth.actor();
    let row = blocking(&pool, move |c| codes::create(c, &id, vanity.as_ref(), &actor)).await?;
    Ok(HttpResponse::Created().json(CodeView::new(row, &settings.public_url())))
}

/// An ambassador's codes, newest first (active and deactivated).
#[utoipa::path(get, path = "/v1/ambassadors/{id}/codes", tag = "codes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = CodeList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let rows = blocking(&pool, move |c| codes::list(c, &id)).await?;
    let url = settings.public_url();
    let items = rows.into_iter().map(|r| CodeView::new(r, &url)).collect();
    Ok(HttpResponse::Ok().json(CodeList { items, next_cursor: None }))
}

/// Deactivate a code (any case, with or without hyphens). It stays reserved forever.
#[utoipa::path(post, path = "/v1/codes/{code}/deactivate", tag = "codes", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = CodeView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn deactivate(
    auth: Auth<Staff>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let row = blocking(&pool, move |c| codes::deactivate(c, &code, &actor)).await?;
    Ok(HttpResponse::Ok().json(CodeView::new(row, &settings.public_url())))
}
