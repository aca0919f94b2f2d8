//! `/v1/emails` (admin): the outbox — what was sent, what waits, what failed — and retrying
//! failed e-mails. Payloads are never shown (a login link signs its holder in).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::outbox;
use crate::auth::{Admin, Auth};
use crate::db::blocking;
use crate::db::DbPool;
pub use crate::domain::notice::EmailStatus;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http::resource;
use crate::store::outbox::EmailView;
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/emails").route(web::get().to(list)))
        .service(resource("/emails/{id}/retry").route(web::post().to(retry)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    /// Only e-mails in this status.
    pub status: Option<EmailStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailList {
    pub items: Vec<EmailView>,
    pub next_cursor: Option<String>,
}

/// Outbox e-mails, newest first.
#[utoipa::path(get, path = "/v1/emails", tag = "emails", security(("bearer" = [])), params(EmailQuery),
    responses((status = 200, body = EmailList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    q: ApiQuery<EmailQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let status = q.status;
    let result = blocking(&pool, move |c| outbox::list(c, status, &page)).await?;
    Ok(HttpResponse::Ok().json(EmailList { items: result.items, next_cursor: result.next_cursor }))
}

/// Queue a `failed` e-mail again, with a fresh set of tries.
#[utoipa::path(post, path = "/v1/emails/{id}/retry", tag = "emails", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = EmailView),
        (status = 409, description = "`invalid-transition`: only failed e-mails are retried", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn retry(
    auth: Auth<Admin>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let view = blocking(&pool, move |c| outbox::retry(c, &id, &actor)).await?;
    Ok(HttpResponse::Ok().json(view))
}
