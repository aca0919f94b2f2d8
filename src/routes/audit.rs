//! `/v1/audit` (admin): the audit trail, optionally for one entity.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::audit;
use crate::auth::{Admin, Auth};
use crate::db::blocking;
use crate::db::DbPool;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http::resource;
use crate::store::audit::{AuditEvent, AuditFilter};
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/audit").route(web::get().to(list)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this entity (ambassador, code, key, …).
    pub entity_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    q: ApiQuery<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let result = blocking(&pool, move |c| {
        audit::trail(c, &AuditFilter { entity_id: q.entity_id, ..AuditFilter::default() }, &page)
    })
    .await?;
    Ok(HttpResponse::Ok().json(AuditList { items: result.items, next_cursor: result.next_cursor }))
}
