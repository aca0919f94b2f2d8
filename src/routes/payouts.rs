//! `/v1/payouts` (finance): create a draft batch of payable rewards, read it, export it as
//! CSV (generic, or PayPal's payouts upload file), mark it paid, cancel it, fail a line.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse, HttpResponseBuilder};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::input::one_line_text;
use crate::app::payout_files;
use crate::app::payouts::{self, LockedBy};
use crate::app::Error as AppError;
use crate::auth::{Auth, Finance};
use crate::config::Settings;
use crate::db::blocking;
use crate::db::{now, DbConnection, DbPool};
use crate::domain::calendar::Calendar;
use crate::domain::payout::PayoutStatus;
use crate::domain::Validation;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::http::resource;
use crate::http::{csv_export, memory};
use crate::store::payouts::PayoutView;
use crate::store::PageRequest;

/// Lines from which a batch's detail gives back the memory it took once serialised.
const LARGE_BATCH_LINES: usize = 5_000;

/// A batch's detail serialised on the blocking thread that read it. After a large batch (its
/// plan, its lines and their JSON: over 100 MB at 100,000 lines) the freed memory is given
/// back to the system rather than kept by the allocator (see `http::memory`).
fn detail_json(c: &mut DbConnection, id: &str) -> Result<Vec<u8>, AppError> {
    detail_json_giving_back_from(c, id, LARGE_BATCH_LINES)
}

/// [`detail_json`], giving the memory back from `lines` lines (0: always).
fn detail_json_giving_back_from(c: &mut DbConnection, id: &str, lines: usize) -> Result<Vec<u8>, AppError> {
    let view = payouts::detail(c, id)?;
    let give_back = view.lines.as_ref().map_or(0, Vec::len) >= lines;
    let body = serde_json::to_vec(&view).map_err(AppError::internal);
    drop(view);
    if give_back {
        memory::give_back();
    }
    body
}

fn json_reply(mut reply: HttpResponseBuilder, body: Vec<u8>) -> HttpResponse {
    reply.content_type(ContentType::json()).body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/payouts").route(web::post().to(create)).route(web::get().to(list)))
        .service(resource("/payouts/{id}").route(web::get().to(get)))
        .service(resource("/payouts/{id}/export.csv").route(web::get().to(export)))
        .service(resource("/payouts/{id}/lock").route(web::post().to(lock)))
        .service(resource("/payouts/{id}/mark-paid").route(web::post().to(mark_paid)))
        .service(resource("/payouts/{id}/cancel").route(web::post().to(cancel)))
        .service(resource("/payouts/{id}/lines/{line}/fail").route(web::post().to(fail_line)));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayout {
    /// Take rewards payable at this moment (RFC 3339, not in the future); default now.
    pub cutoff: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaid {
    /// The payment reference (PayPal batch id, bank run), kept with the batch.
    pub reference: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelPayout {
    /// Why the batch is called off. Required for a batch locked for payment (`processing`):
    /// "the file was never uploaded"; optional for a draft.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailLine {
    /// What went wrong (bounced, unclaimed, wrong account).
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutList {
    pub items: Vec<PayoutView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PayoutQuery {
    pub status: Option<PayoutStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Header row; every line with its payout method and details.
    Generic,
    /// PayPal Payouts web upload: no header; PayPal lines only; parts of at most 5000 rows.
    Paypal,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `generic` (default) or `paypal`.
    pub format: Option<ExportFormat>,
    /// PayPal files only: which part (1-based) of a batch larger than one file.
    pub part: Option<i64>,
}

/// Create the draft batch: every ambassador's rewards payable at the cutoff, when they reach
/// the program minimum. 409 `payout-in-progress` while another draft exists; 422
/// `nothing-to-pay` when no one qualifies.
#[utoipa::path(post, path = "/v1/payouts", tag = "payouts", security(("bearer" = [])),
    request_body(content = Option<CreatePayout>),
    responses((status = 201, body = PayoutView),
        (status = 409, description = "`payout-in-progress`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    body: OptionalJson<CreatePayout>,
) -> Result<HttpResponse, ApiError> {
    let cutoff = body.0.and_then(|b| b.cutoff).map(|c| c.naive_utc());
    if cutoff.is_some_and(|c| c > now()) {
        return Err(ApiError::validation("cutoff", "must not be in the future"));
    }
    let actor = auth.actor();
    let body = blocking(&pool, move |c| {
        let id = payouts::create(c, cutoff, &actor)?;
        // Whatever the batch's size, its one bulk transaction took memory (on SQLite a page
        // cache of up to 128 MiB, shrunk after it): given back, not kept by the allocator.
        detail_json_giving_back_from(c, &id, 0)
    })
    .await?;
    Ok(json_reply(HttpResponse::Created(), body))
}

/// Payout batches, newest first.
#[utoipa::path(get, path = "/v1/payouts", tag = "payouts", security(("bearer" = [])), params(PayoutQuery),
    responses((status = 200, body = PayoutList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    q: ApiQuery<PayoutQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let page = blocking(&pool, move |c| payouts::list(c, q.status, &page)).await?;
    let page = page.map(|p| PayoutView::new(p, None));
    Ok(HttpResponse::Ok().json(PayoutList { items: page.items, next_cursor: page.next_cursor }))
}

/// A batch with its lines and the ambassadors it skipped.
#[utoipa::path(get, path = "/v1/payouts/{id}", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = PayoutView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(json_reply(HttpResponse::Ok(), blocking(&pool, move |c| detail_json(c, &id)).await?))
}

/// Lock a draft for payment (`processing`): from now on its lines and amounts are what gets
/// paid — a refund or a suspension no longer changes them, only a line marked failed does.
/// Downloading the PayPal file locks a draft too; a batch is marked paid only once locked.
/// 409 `invalid-transition` if not a draft.
#[utoipa::path(post, path = "/v1/payouts/{id}/lock", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = PayoutView),
        (status = 409, description = "`invalid-transition` (not a draft)", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn lock(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = auth.actor();
    let body = blocking(&pool, move |c| {
        payouts::lock(c, &id, LockedBy::Approval, &actor)?;
        detail_json(c, &id)
    })
    .await?;
    Ok(json_reply(HttpResponse::Ok(), body))
}

/// Mark a locked batch (`processing`) paid: exactly its pending lines (those locked for
/// payment) and their rewards paid, one e-mail per ambassador; a reward refunded after the lock
/// is clawed back. A draft is refused with 409 `invalid-transition` (`current_status` `draft`):
/// lock it first (`POST /v1/payouts/{id}/lock`, or download its PayPal file), then pay those
/// lines. A second call is 409 `invalid-transition` too.
#[utoipa::path(post, path = "/v1/payouts/{id}/mark-paid", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = MarkPaid,
    responses((status = 200, body = PayoutView),
        (status = 409, description = "`invalid-transition`: a draft (lock it first), or already paid or cancelled", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn mark_paid(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
    body: ApiJson<MarkPaid>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::new();
    let reference = one_line_text(&mut v, "reference", &body.0.reference, 200);
    v.finish()?;
    let (reference, actor, cal) = (reference.unwrap_or_default(), auth.actor(), **calendar);
    let body = blocking(&pool, move |c| {
        payouts::mark_paid(c, &cal, &id, &reference, &actor)?;
        detail_json(c, &id)
    })
    .await?;
    Ok(json_reply(HttpResponse::Ok(), body))
}

/// Cancel a draft, or a locked batch with a `reason` ("the file was never uploaded"): its
/// rewards are payable again (a reward refunded meanwhile is voided).
#[utoipa::path(post, path = "/v1/payouts/{id}/cancel", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<CancelPayout>),
    responses((status = 200, body = PayoutView),
        (status = 409, description = "`invalid-transition` (paid or cancelled)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed`: `reason` missing for a locked batch", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    id: web::Path<String>,
    body: OptionalJson<CancelPayout>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::new();
    let reason = body.0.and_then(|b| b.reason).and_then(|r| one_line_text(&mut v, "reason", &r, 500));
    v.finish()?;
    let actor = auth.actor();
    let body = blocking(&pool, move |c| {
        payouts::cancel(c, &id, reason.as_deref(), &actor)?;
        detail_json(c, &id)
    })
    .await?;
    Ok(json_reply(HttpResponse::Ok(), body))
}

/// Mark one line failed (in a draft, in a locked batch when the provider refused it, or after
/// payment when the money came back): its rewards are payable again and the batch total drops.
#[utoipa::path(post, path = "/v1/payouts/{id}/lines/{line}/fail", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path), ("line" = String, Path)), request_body = FailLine,
    responses((status = 200, body = PayoutView),
        (status = 409, description = "`invalid-transition`", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn fail_line(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    path: web::Path<(String, String)>,
    body: ApiJson<FailLine>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::new();
    let reason = one_line_text(&mut v, "reason", &body.0.reason, 500);
    v.finish()?;
    let ((id, line), reason, actor) = (path.into_inner(), reason.unwrap_or_default(), auth.actor());
    let body = blocking(&pool, move |c| {
        payouts::fail_line(c, &id, &line, &reason, &actor)?;
        detail_json(c, &id)
    })
    .await?;
    Ok(json_reply(HttpResponse::Ok(), body))
}

/// The batch as CSV, streamed. `generic`: a report, a header row and every live line (any
/// batch; it locks nothing). `paypal`: PayPal's Payouts upload file exactly (no header; email,
/// amount, currency, customer id, note), the batch's pending PayPal lines only, at most
/// `export.paypal_rows_per_file` rows per file: larger batches come in parts (`?part=2`; the
/// count is in `Vouch-Export-Parts`). That file is the payment, so downloading it locks a draft
/// (`processing`); a locked batch gives the same file again; paid and cancelled batches have
/// none, and neither has a batch with no PayPal line left to pay (422 `nothing-to-export`,
/// nothing locked). Parts are fixed when the batch is made, so downloading them in any order
/// never skips or repeats a line.
#[utoipa::path(get, path = "/v1/payouts/{id}/export.csv", tag = "payouts", security(("bearer" = [])),
    params(("id" = String, Path), ExportQuery),
    responses((status = 200, content_type = "text/csv", body = String,
            headers(("Vouch-Export-Parts" = i64, description = "PayPal: how many files the batch needs"))),
        (status = 409, description = "`invalid-transition`: PayPal files only for a draft or locked (not paid or cancelled) batch", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`nothing-to-export`: no PayPal line left to pay in the batch (none, or all released, failed or cancelled); nothing is locked", body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn export(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    settings: web::Data<Settings>,
    id: web::Path<String>,
    q: ApiQuery<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let (format, part) = (q.0.format.unwrap_or(ExportFormat::Generic), q.0.part);
    let id = id.into_inner();
    let file = match format {
        ExportFormat::Generic => {
            if part.is_some() {
                return Err(ApiError::validation("part", "only PayPal exports come in parts"));
            }
            blocking(&pool, move |c| payout_files::generic(c, &id)).await?
        }
        ExportFormat::Paypal => {
            let (actor, per_file) = (auth.actor(), settings.export.paypal_rows_per_file);
            blocking(&pool, move |c| payout_files::paypal(c, &id, (part.unwrap_or(1), per_file), &actor)).await?
        }
    };
    csv_export::payout_file(&pool, file)
}
