//! `/v1/rewards` (finance): the ledger, and manual adjustments with a reason.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::rewards;
use crate::auth::{Auth, Finance};
use crate::db::blocking;
use crate::db::{now, DbPool};
use crate::domain::calendar::Calendar;
use crate::domain::reward::{RewardKind, RewardStatus};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::http::resource;
use crate::store::rewards::{RewardFilter, RewardView};
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/rewards").route(web::get().to(list)))
        .service(resource("/rewards/adjustments").route(web::post().to(adjust)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RewardList {
    pub items: Vec<RewardView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RewardQuery {
    pub ambassador_id: Option<String>,
    pub referral_id: Option<String>,
    pub status: Option<RewardStatus>,
    pub kind: Option<RewardKind>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    pub ambassador_id: String,
    /// Minor units, positive (a bonus) or negative (a correction); not zero.
    pub amount_minor: i64,
    /// Why, for the audit trail and the ambassador's statement.
    pub reason: String,
}

/// The ledger, newest first: earned rewards, clawbacks and adjustments.
#[utoipa::path(get, path = "/v1/rewards", tag = "rewards", security(("bearer" = [])), params(RewardQuery),
    responses((status = 200, body = RewardList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    _auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    q: ApiQuery<RewardQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let filter =
        RewardFilter { ambassador_id: q.ambassador_id, referral_id: q.referral_id, status: q.status, kind: q.kind };
    let page = blocking(&pool, move |c| rewards::list(c, &filter, &page)).await?;
    let at = now();
    let page = page.map(|r| RewardView::new(r, at));
    Ok(HttpResponse::Ok().json(RewardList { items: page.items, next_cursor: page.next_cursor }))
}

/// Add a manual ± entry for an ambassador, payable at once (a negative one is netted against
/// their next payout).
#[utoipa::path(post, path = "/v1/rewards/adjustments", tag = "rewards", security(("bearer" = [])),
    request_body = Adjustment,
    responses((status = 201, body = RewardView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn adjust(
    auth: Auth<Finance>,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    body: ApiJson<Adjustment>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let (amount, reason) = crate::app::input::parse_adjustment("amount_minor", Ok(b.amount_minor), &b.reason)?;
    let actor = auth.actor();
    let cal = **calendar;
    let row = blocking(&pool, move |c| rewards::adjust(c, &cal, &b.ambassador_id, amount, &reason, &actor)).await?;
    Ok(HttpResponse::Created().json(RewardView::new(row, now())))
}
