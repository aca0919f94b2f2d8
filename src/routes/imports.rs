//! `/v1/imports/{ambassadors,referrals}` (admin): CSV uploads, streamed into the import as
//! they arrive.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::imports::{self, Kind, Options, RowReport, Totals};
use crate::auth::{Admin, Auth};
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::email::MailContext;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/imports/ambassadors").route(web::post().to(ambassadors)))
        .service(resource("/imports/referrals").route(web::post().to(referrals)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Report what would happen and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Ambassadors only: queue the welcome e-mail for each ambassador created active
    /// (default false: an import sends no e-mail).
    #[serde(default)]
    pub send_welcome: bool,
}

/// The import's report: every data row in file order, and the totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub kind: Kind,
    pub dry_run: bool,
    pub totals: Totals,
    pub rows: Vec<RowReport>,
}

/// The request body as a blocking reader, fed chunk by chunk from the connection (a bounded
/// channel: the upload waits while the import writes, so memory stays flat).
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<web::Bytes, String>>,
    current: web::Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// What every import handler is given.
pub struct Upload {
    pub auth: Auth<Admin>,
    pub req: HttpRequest,
    pub pool: web::Data<DbPool>,
    pub settings: web::Data<Settings>,
    pub calendar: web::Data<Calendar>,
    pub hasher: web::Data<ContactHasher>,
    pub query: ImportQuery,
    pub payload: web::Payload,
}

/// Import ambassadors from a CSV body (`Content-Type: text/csv`; columns in the README's
/// Import section): created, updated (same e-mail) or refused row by row, with their codes
/// kept and opening balances as adjustments; one transaction per 1,000 rows. `dry_run=true`
/// changes nothing and reports the same. No e-mail unless `send_welcome=true`.
#[utoipa::path(post, path = "/v1/imports/ambassadors", tag = "imports", security(("bearer" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport),
        (status = 422, description = "The header is not understood (unknown, repeated or missing columns), or the body is not text/csv", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
#[allow(clippy::too_many_arguments)]
pub async fn ambassadors(
    auth: Auth<Admin>,
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    calendar: web::Data<Calendar>,
    hasher: web::Data<ContactHasher>,
    q: ApiQuery<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let upload = Upload { auth, req, pool, settings, calendar, hasher, query: q.0, payload };
    import(Kind::Ambassadors, upload).await
}

/// Import referred clients from a CSV body (`Content-Type: text/csv`; columns in the README's
/// Import section): each in the status it had reached, with its dates; completed ones earn
/// their reward (the file's, or the program's on the completion day). Nothing is sent to
/// anyone. A re-run is idempotent (found by `external_ref`, else client and day).
#[utoipa::path(post, path = "/v1/imports/referrals", tag = "imports", security(("bearer" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport),
        (status = 422, description = "The header is not understood (unknown, repeated or missing columns), or the body is not text/csv", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
#[allow(clippy::too_many_arguments)]
pub async fn referrals(
    auth: Auth<Admin>,
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    calendar: web::Data<Calendar>,
    hasher: web::Data<ContactHasher>,
    q: ApiQuery<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let upload = Upload { auth, req, pool, settings, calendar, hasher, query: q.0, payload };
    import(Kind::Referrals, upload).await
}

async fn import(kind: Kind, upload: Upload) -> Result<HttpResponse, ApiError> {
    let Upload { auth, req, pool, settings, calendar, hasher, query, mut payload } = upload;
    let is_csv = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv")));
    if !is_csv {
        return Err(ApiError::validation("Content-Type", "must be text/csv"));
    }
    if query.send_welcome && kind != Kind::Ambassadors {
        return Err(ApiError::validation("send_welcome", "is only used when importing ambassadors"));
    }
    let opts = Options { dry_run: query.dry_run, send_welcome: query.send_welcome };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (actor, mail, cal) = (auth.actor(), MailContext::new(&settings), **calendar);
    let (settings, hasher) = (settings.into_inner(), hasher.into_inner());
    let run = blocking(&pool, move |c| {
        let ctx = imports::Context { settings: &settings, calendar: &cal, mail: &mail, hasher: &hasher, actor: &actor };
        let mut rows = Vec::new();
        let body = BodyReader { rx, current: web::Bytes::new() };
        let totals = imports::run(c, kind, body, opts, &ctx, &mut |r| rows.push(r.clone()))?;
        Ok::<_, crate::app::Error>(ImportReport { kind, dry_run: opts.dry_run, totals, rows })
    });
    let feed = async move {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| e.to_string());
            let failed = chunk.is_err();
            // A closed channel: the import stopped early (a refused header); the rest is unread.
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    };
    let (report, ()) = futures_util::future::join(run, feed).await;
    Ok(HttpResponse::Ok().json(report?))
}
