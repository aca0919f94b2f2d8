//! Liveness, readiness (the database answers) and Prometheus metrics.

use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;

use crate::app::outbox;
use crate::db::blocking;
use crate::db::{self, DbPool};
use crate::error::ApiError;
use crate::http::{metrics::Metrics, resource};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database answers a query that reads a table, inside a write transaction: on SQLite a
/// bare `SELECT 1` never touches the file, and another process holding the database locked
/// (a stuck shell, a backup) stops every state change, so readiness is the write lock being
/// obtainable within the busy timeout. On PostgreSQL the same transaction is an ordinary one.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Database unreachable", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(pool: web::Data<DbPool>) -> Result<HttpResponse, ApiError> {
    blocking(&pool, |conn| {
        db::write_tx(conn, |c| c.batch_execute("SELECT COUNT(*) FROM __diesel_schema_migrations"))
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics(metrics: web::Data<Metrics>, pool: web::Data<DbPool>) -> HttpResponse {
    // The outbox depth is the database's (shared by every instance); without a database the
    // in-process metrics are still served.
    let outbox = blocking(&pool, outbox::counts_by_status).await.ok();
    let mut text = metrics.render();
    text.push_str(&metrics.render_email(outbox.as_deref()));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}
