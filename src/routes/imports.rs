//! `/v1/imports` (admin): CSV uploads, streamed into the import as they arrive.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::imports::{self, Options, RowReport, Totals};
use crate::auth::{Admin, Auth};
use crate::config::Settings;
use crate::db::{blocking, DbPool};
use crate::domain::calendar::Calendar;
use crate::email::MailContext;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/imports/ambassadors").route(web::post().to(ambassadors)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Report what would happen and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Queue the welcome e-mail for each ambassador created active (default false).
    #[serde(default)]
    pub send_welcome: bool,
}

/// The import's report: every data row in file order, and the totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub totals: Totals,
    pub rows: Vec<RowReport>,
}

/// The request body as a blocking reader, fed chunk by chunk from the connection (a bounded
/// channel: the upload waits while the import writes, so memory stays flat).
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<web::Bytes>,
    current: web::Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Import ambassadors from a CSV body (`Content-Type: text/csv`): created, updated (same
/// e-mail) or refused row by row, one transaction per 1,000 rows. `dry_run=true` changes
/// nothing and reports the same.
#[utoipa::path(post, path = "/v1/imports/ambassadors", tag = "imports", security(("bearer" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport),
        (status = 422, description = "The header is not understood (unknown, repeated or missing columns)", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
#[allow(clippy::too_many_arguments)]
pub async fn ambassadors(
    auth: Auth<Admin>,
    req: HttpRequest,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<ImportQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let is_csv = req.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
    });
    if !is_csv {
        return Err(ApiError::validation("Content-Type", "must be text/csv"));
    }
    let opts = Options { dry_run: q.0.dry_run, send_welcome: q.0.send_welcome };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (actor, mail, cal, settings) = (auth.actor(), MailContext::new(&settings), **calendar, settings.into_inner());
    let import = blocking(&pool, move |c| {
        let ctx = imports::Context { settings: &settings, calendar: &cal, mail: &mail, actor: &actor };
        let mut rows = Vec::new();
        let body = BodyReader { rx, current: web::Bytes::new() };
        let totals = imports::ambassadors(c, body, opts, &ctx, &mut |r| rows.push(r.clone()))?;
        Ok::<_, crate::app::Error>(ImportReport { dry_run: opts.dry_run, totals, rows })
    });
    let upload = async move {
        while let Some(chunk) = payload.next().await {
            // A closed channel: the import stopped early (a refused header); the rest is unread.
            if tx.send(chunk?).await.is_err() {
                break;
            }
        }
        Ok::<_, actix_web::error::PayloadError>(())
    };
    let (report, uploaded) = futures_util::future::join(import, upload).await;
    let report = report?;
    uploaded.map_err(|e| ApiError::validation("body", format!("could not be read: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}
