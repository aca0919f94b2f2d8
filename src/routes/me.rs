//! `/v1/me…` (a signed-in ambassador): their own profile, codes and referrals. Referred
//! clients appear as "First L." only with the client's consent, otherwise as an opaque label;
//! never with contact details, notes, treatment value or the clinic's reference.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::app::portal::{
    active_codes, apply_update, load_profile, my_payouts, my_referral, my_referrals, my_rewards, parse_update, MeView,
    MyPayout, MyReferral, MyReward, UpdateMe,
};
use crate::auth::Me;
use crate::config::Settings;
use crate::db::{blocking, read, DbPool};
use crate::domain::calendar::Calendar;
use crate::domain::referral::ReferralStatus;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::http::resource;
use crate::store::codes::CodeView;
use crate::store::PageRequest;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/me").route(web::get().to(get)).route(web::patch().to(update)))
        .service(resource("/me/codes").route(web::get().to(codes)))
        .service(resource("/me/referrals").route(web::get().to(list_referrals)))
        .service(resource("/me/referrals/{id}").route(web::get().to(get_referral)))
        .service(resource("/me/rewards").route(web::get().to(list_rewards)))
        .service(resource("/me/payouts").route(web::get().to(list_payouts)));
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyReferralList {
    pub items: Vec<MyReferral>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyCodeList {
    pub items: Vec<CodeView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MyReferralQuery {
    pub status: Option<ReferralStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Your profile, referral counts and balance.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MeView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(me: Me, pool: web::Data<DbPool>) -> Result<HttpResponse, ApiError> {
    let id = me.0.ambassador_id;
    let view = read(&pool, move |c| load_profile(c, &id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Change your display name (and whether referred friends see it), payout details and
/// notification preferences.
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = UpdateMe,
    responses((status = 200, body = MeView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(me: Me, pool: web::Data<DbPool>, body: ApiJson<UpdateMe>) -> Result<HttpResponse, ApiError> {
    let changes = parse_update(body.0)?;
    let (id, actor) = (me.0.ambassador_id.clone(), me.0.actor());
    let view = blocking(&pool, move |c| apply_update(c, &id, &changes, &actor)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Your active codes and their share links.
#[utoipa::path(get, path = "/v1/me/codes", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MyCodeList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn codes(me: Me, pool: web::Data<DbPool>, settings: web::Data<Settings>) -> Result<HttpResponse, ApiError> {
    let (id, url) = (me.0.ambassador_id, settings.public_url());
    let items = blocking(&pool, move |c| active_codes(c, &id, &url)).await?;
    Ok(HttpResponse::Ok().json(MyCodeList { items, next_cursor: None }))
}

/// Your referrals, newest first, with clients masked.
#[utoipa::path(get, path = "/v1/me/referrals", tag = "me", security(("bearer" = [])), params(MyReferralQuery),
    responses((status = 200, body = MyReferralList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list_referrals(
    me: Me,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    q: ApiQuery<MyReferralQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.0;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (id, status) = (me.0.ambassador_id, q.status);
    let cal = **calendar;
    let page = read(&pool, move |c| my_referrals(c, &cal, &id, status, &page)).await?;
    Ok(HttpResponse::Ok().json(MyReferralList { items: page.items, next_cursor: page.next_cursor }))
}

/// One of your referrals (404 for anyone else's).
#[utoipa::path(get, path = "/v1/me/referrals/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = MyReferral),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get_referral(
    me: Me,
    pool: web::Data<DbPool>,
    calendar: web::Data<Calendar>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (amb, cal) = (me.0.ambassador_id, **calendar);
    let referral = read(&pool, move |c| my_referral(c, &cal, &amb, &id)).await?;
    Ok(HttpResponse::Ok().json(referral))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyRewardList {
    pub items: Vec<MyReward>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MyPageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Your rewards, newest first.
#[utoipa::path(get, path = "/v1/me/rewards", tag = "me", security(("bearer" = [])), params(MyPageQuery),
    responses((status = 200, body = MyRewardList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list_rewards(me: Me, pool: web::Data<DbPool>, q: ApiQuery<MyPageQuery>) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let id = me.0.ambassador_id;
    let page = blocking(&pool, move |c| my_rewards(c, &id, &page)).await?;
    Ok(HttpResponse::Ok().json(MyRewardList { items: page.items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyPayoutList {
    pub items: Vec<MyPayout>,
    pub next_cursor: Option<String>,
}

/// Your payouts, newest first.
#[utoipa::path(get, path = "/v1/me/payouts", tag = "me", security(("bearer" = [])), params(MyPageQuery),
    responses((status = 200, body = MyPayoutList),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list_payouts(
    me: Me,
    pool: web::Data<DbPool>,
    q: ApiQuery<MyPageQuery>,
    calendar: web::Data<Calendar>,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::parse(q.0.limit, q.0.cursor.as_deref())?;
    let (id, cal) = (me.0.ambassador_id, **calendar);
    let page = blocking(&pool, move |c| my_payouts(c, &cal, &id, &page)).await?;
    Ok(HttpResponse::Ok().json(MyPayoutList { items: page.items, next_cursor: page.next_cursor }))
}
