//! `/v1/reports` (finance): the referral funnel and ledger summary, and yearly paid totals per
//! ambassador against the tax threshold (JSON, or CSV streamed).

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::app::reports;
use crate::auth::{Auth, Finance};
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::calendar::Calendar;
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::http::csv_export::{self, PAGE_ROWS};
use crate::http::resource;
use crate::store::reports::{AnnualRow, Period, Summary};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/reports/summary").route(web::get().to(summary)))
        .service(resource("/reports/annual").route(web::get().to(annual)))
        .service(resource("/reports/annual.csv").route(web::get().to(annual_csv)));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Referrals registered (rewards earned, completions) on or after this day.
    pub from: Option<NaiveDate>,
    /// … and on or before this day.
    pub to: Option<NaiveDate>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnnualQuery {
    /// Calendar year of payment (by the day a batch was marked paid, in the clinic's time zone).
    pub year: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnnualReport {
    pub year: i32,
    pub currency: String,
    pub tax_threshold_minor: i64,
    pub total_paid_minor: i64,
    /// One row per ambassador paid that year, by ambassador id.
    pub items: Vec<AnnualRow>,
}

/// Referrals by status and conversion, rewards by status, top ambassadors.
#[utoipa::path(get, path = "/v1/reports/summary", tag = "reports", security(("bearer" = [])), params(SummaryQuery),
    responses((status = 200, body = Summary),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn summary(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<SummaryQuery>,
) -> Result<HttpResponse, ApiError> {
    let period = Period { from: q.0.from, to: q.0.to };
    Ok(HttpResponse::Ok().json(blocking(&pool, move |c| reports::summary(c, &calendar, period)).await?))
}

/// What each ambassador was paid in a year, flagged at the program's tax threshold.
#[utoipa::path(get, path = "/v1/reports/annual", tag = "reports", security(("bearer" = [])), params(AnnualQuery),
    responses((status = 200, body = AnnualReport),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn annual(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<AnnualQuery>,
) -> Result<HttpResponse, ApiError> {
    let year = q.0.year;
    let (items, tax_threshold_minor, currency) =
        blocking(&pool, move |c| reports::annual(c, &calendar, year, PAGE_ROWS)).await?;
    let total_paid_minor = items.iter().map(|r| r.paid_minor).sum();
    Ok(HttpResponse::Ok().json(AnnualReport { year, currency, tax_threshold_minor, total_paid_minor, items }))
}

/// The annual report as CSV, streamed.
#[utoipa::path(get, path = "/v1/reports/annual.csv", tag = "reports", security(("bearer" = [])), params(AnnualQuery),
    responses((status = 200, content_type = "text/csv", body = String),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn annual_csv(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<AnnualQuery>,
) -> Result<HttpResponse, ApiError> {
    csv_export::annual_report(&pool, **calendar, q.0.year)
}
