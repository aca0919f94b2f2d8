//! `/v1/program`: the reward rules in force (staff and finance read, admin changes) and their
//! version history.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::program;
use crate::auth::{Admin, Auth, StaffOrFinance};
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::program::ProgramInput;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::http::resource;
use crate::store::program::ProgramView;
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/program").route(web::get().to(get)).route(web::put().to(replace)))
        .service(resource("/program/versions").route(web::get().to(versions)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgramVersionList {
    pub items: Vec<ProgramView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The program rules in force.
#[utoipa::path(get, path = "/v1/program", tag = "program", security(("bearer" = [])),
    responses((status = 200, body = ProgramView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(_auth: Auth<StaffOrFinance>, pool: web::Data<DbPool>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(blocking(&pool, program::current).await?))
}

/// Replace the rules: a new version, in force for completions from now on. Rewards already
/// earned keep the version they were computed under. The currency cannot change once any
/// reward exists (422 `currency-locked`).
#[utoipa::path(put, path = "/v1/program", tag = "program", security(("bearer" = [])),
    request_body = ProgramInput,
    responses((status = 200, body = ProgramView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn replace(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    body: ApiJson<ProgramInput>,
) -> Result<HttpResponse, ApiError> {
    let rules = body.0.parse()?;
    let actor = auth.actor();
    Ok(HttpResponse::Ok().json(blocking(&pool, move |c| program::replace(c, &rules, &actor)).await?))
}

/// Every version of the rules, newest first.
#[utoipa::path(get, path = "/v1/program/versions", tag = "program", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = ProgramVersionList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn versions(
    _auth: Auth<StaffOrFinance>,
    pool: web::Data<DbPool>,
    q: ApiQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let page = blocking(&pool, move |c| program::versions(c, &page)).await?;
    Ok(HttpResponse::Ok().json(ProgramVersionList { items: page.items, next_cursor: page.next_cursor }))
}
