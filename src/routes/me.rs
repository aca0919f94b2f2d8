//! `/v1/me…` (a signed-in ambassador): their own profile, codes and referrals. Referred
//! clients appear as "First L." only with the client's consent, otherwise as an opaque label;
//! never with contact details, notes, treatment value or the clinic's reference.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::auth::Me;
use crate::config::Settings;
use crate::db::blocking;
use crate::db::DbPool;
use crate::domain::ambassador::{AmbassadorStatus, NotificationPreferences, PayoutMethod};
use crate::domain::calendar::Calendar;
use crate::domain::referral::{full_counts, ReferralStatus};
use crate::domain::reward::{Balance, RewardKind, RewardStatus};
use crate::domain::{optional_text, Validation};
use crate::error::{ApiError, Problem};
use crate::extract::{nullable, ApiJson, ApiQuery};
use crate::http::resource;
use crate::routes::ambassadors::parse_payout;
use crate::store::ambassadors::{self, AmbassadorChanges, AmbassadorRow};
use crate::store::codes::{self, CodeView};
use crate::store::referrals::{self, ReferralFilter, ReferralRow};
use crate::store::{payouts, rewards, Page, PageRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/me").route(web::get().to(get)).route(web::patch().to(update)))
        .service(resource("/me/codes").route(web::get().to(codes)))
        .service(resource("/me/referrals").route(web::get().to(list_referrals)))
        .service(resource("/me/referrals/{id}").route(web::get().to(get_referral)))
        .service(resource("/me/rewards").route(web::get().to(list_rewards)))
        .service(resource("/me/payouts").route(web::get().to(list_payouts)));
}

/// The ambassador's own profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub id: String,
    pub status: AmbassadorStatus,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub show_name_to_referrals: bool,
    pub payout_method: Option<PayoutMethod>,
    pub notification_preferences: NotificationPreferences,
    /// Referrals by status.
    pub referral_counts: BTreeMap<String, i64>,
    /// Your money: held (refund window), payable, in a payout, paid, lifetime.
    pub balance: Balance,
}

impl MeView {
    pub(crate) fn new((row, counts, balance): Profile) -> Self {
        let referral_counts = full_counts(counts);
        Self {
            balance,
            status: row.status(),
            payout_method: row.payout(),
            notification_preferences: NotificationPreferences {
                referral_updates: row.notify_referral_updates,
                reward_updates: row.notify_reward_updates,
            },
            id: row.id,
            name: row.name,
            email: row.email,
            phone: row.phone,
            display_name: row.display_name,
            show_name_to_referrals: row.show_name_to_referrals,
            referral_counts,
        }
    }
}

/// A referral as its ambassador sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyReferral {
    pub id: String,
    /// "First L." with the client's consent, else "Referral 7Q4K…".
    pub client: String,
    pub code: Option<String>,
    pub status: ReferralStatus,
    pub registered_on: NaiveDate,
    /// Day of the first treatment session.
    pub treatment_started_on: Option<NaiveDate>,
    pub completed_on: Option<NaiveDate>,
    pub session_count: i32,
    pub planned_sessions: Option<i32>,
}

impl MyReferral {
    pub(crate) fn new(r: ReferralRow, code: Option<String>, calendar: &Calendar) -> Self {
        Self {
            registered_on: r.registered_on(calendar),
            client: r.label_for_ambassador(code.as_deref()),
            status: r.status,
            id: r.id,
            code,
            treatment_started_on: r.first_session_on,
            completed_on: r.completed_on,
            session_count: r.session_count,
            planned_sessions: r.planned_sessions,
        }
    }
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

/// What an ambassador may change about themselves (name and e-mail go through the clinic).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    pub show_name_to_referrals: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PayoutMethod>)]
    pub payout_method: Option<Option<PayoutMethod>>,
    pub notification_preferences: Option<NotificationPreferences>,
}

/// The ambassador, their referral counts by status, and their balance.
type Profile = (AmbassadorRow, Vec<(String, i64)>, Balance);

fn profile_parts(c: &mut crate::db::DbConnection, row: AmbassadorRow) -> Result<Profile, ApiError> {
    let counts = referrals::status_counts(c, &row.id)?;
    let balance = rewards::balance(c, &row.id)?;
    Ok((row, counts, balance))
}

/// Your profile, referral counts and balance.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MeView),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(me: Me, pool: web::Data<DbPool>) -> Result<HttpResponse, ApiError> {
    let id = me.0.ambassador_id;
    let view = blocking(&pool, move |c| load_profile(c, &id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The ambassador's profile with counts and balance (the API's `/v1/me` and the portal page).
pub(crate) fn load_profile(c: &mut crate::db::DbConnection, id: &str) -> Result<MeView, ApiError> {
    let row = ambassadors::find(c, id)?;
    Ok(MeView::new(profile_parts(c, row)?))
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

/// Validates what an ambassador asked to change (every bad field reported at once).
pub(crate) fn parse_update(b: UpdateMe) -> Result<AmbassadorChanges, ApiError> {
    let mut v = Validation::new();
    let display_name = b.display_name.map(|d| v.check("display_name", optional_text(d.as_deref(), 100)));
    let payout_method = b.payout_method.map(|m| parse_payout(&mut v, m));
    v.finish()?;
    Ok(AmbassadorChanges {
        display_name: display_name.flatten(),
        show_name_to_referrals: b.show_name_to_referrals,
        payout_method: payout_method.flatten(),
        notifications: b.notification_preferences,
        ..Default::default()
    })
}

/// Applies an ambassador's own changes (audited in the store's transaction).
pub(crate) fn apply_update(
    c: &mut crate::db::DbConnection,
    id: &str,
    changes: &AmbassadorChanges,
    actor: &crate::store::audit::Actor,
) -> Result<MeView, ApiError> {
    let row = ambassadors::update(c, id, changes, actor)?;
    Ok(MeView::new(profile_parts(c, row)?))
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

/// The ambassador's active codes with their share links.
pub(crate) fn active_codes(
    c: &mut crate::db::DbConnection,
    ambassador_id: &str,
    public_url: &str,
) -> Result<Vec<CodeView>, ApiError> {
    let rows = codes::list_for(c, ambassador_id)?;
    Ok(rows.into_iter().filter(|c| c.active).map(|c| CodeView::new(c, public_url)).collect())
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
    let page = blocking(&pool, move |c| my_referrals(c, &cal, &id, status, &page)).await?;
    Ok(HttpResponse::Ok().json(MyReferralList { items: page.items, next_cursor: page.next_cursor }))
}

/// A page of the ambassador's referrals, clients masked exactly as `/v1/me/referrals` shows them.
pub(crate) fn my_referrals(
    c: &mut crate::db::DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    status: Option<ReferralStatus>,
    page: &PageRequest,
) -> Result<Page<MyReferral>, ApiError> {
    let filter = ReferralFilter {
        status,
        ambassador_id: Some(ambassador_id.to_owned()),
        ambassador_view: true,
        ..Default::default()
    };
    let page = referrals::list(c, calendar, &filter, page)?;
    let ids: Vec<&str> = page.items.iter().filter_map(|r| r.code_id.as_deref()).collect();
    let codes = codes::display_codes(c, &ids)?;
    Ok(page.map(|r| {
        let code = r.code_id.as_ref().and_then(|id| codes.get(id).cloned());
        MyReferral::new(r, code, calendar)
    }))
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
    let amb = me.0.ambassador_id;
    let (row, code) = blocking(&pool, move |c| {
        let row = referrals::find_for_ambassador(c, &amb, &id)?;
        let code = crate::routes::referrals::code_of(c, &row)?;
        Ok::<_, ApiError>((row, code))
    })
    .await?;
    Ok(HttpResponse::Ok().json(MyReferral::new(row, code, &calendar)))
}

/// A ledger entry as its ambassador sees it: no treatment value, no computation basis.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyReward {
    pub id: String,
    pub kind: RewardKind,
    pub status: RewardStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// Payable from this moment (after the refund window).
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub holds_until: chrono::NaiveDateTime,
    pub earned_on: NaiveDate,
    pub referral_id: Option<String>,
    /// The referred client as you see them ("First L." with consent, else "Referral 7Q4K…").
    pub client: Option<String>,
    /// Why finance adjusted your balance, or why a reward was taken back.
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<chrono::NaiveDateTime>,
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
    let filter = rewards::RewardFilter { ambassador_id: Some(me.0.ambassador_id), ..Default::default() };
    let (page, labels) = blocking(&pool, move |c| {
        let page = rewards::list(c, &filter, &page)?;
        let ids: Vec<&str> = page.items.iter().filter_map(|r| r.referral_id.as_deref()).collect();
        let labels = referrals::labels_for_ambassador(c, &ids)?;
        Ok::<_, ApiError>((page, labels))
    })
    .await?;
    let at = crate::db::now();
    let page = page.map(|r| MyReward {
        status: r.status(at),
        kind: RewardKind::parse(&r.kind).unwrap_or(RewardKind::Adjustment),
        client: r.referral_id.as_ref().and_then(|id| labels.get(id).cloned()),
        id: r.id,
        amount_minor: r.amount_minor,
        currency: r.currency,
        holds_until: r.holds_until,
        earned_on: r.earned_on,
        referral_id: r.referral_id,
        reason: r.reason,
        paid_at: r.paid_at,
    });
    Ok(HttpResponse::Ok().json(MyRewardList { items: page.items, next_cursor: page.next_cursor }))
}

/// A payment to you (one line of a payout batch).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyPayout {
    pub id: String,
    /// The batch reference (`P12`).
    pub batch: String,
    /// `pending` (being prepared, or on its way), `paid`, or `failed` (the money did not arrive; it is
    /// payable again).
    pub status: crate::domain::payout::LineStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub payout_method: String,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<chrono::NaiveDateTime>,
    /// The day it was paid, in the clinic's calendar.
    pub paid_on: Option<NaiveDate>,
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

/// A page of the ambassador's payouts, newest first.
pub(crate) fn my_payouts(
    c: &mut crate::db::DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    page: &PageRequest,
) -> Result<Page<MyPayout>, ApiError> {
    let page = payouts::lines_for_ambassador(c, ambassador_id, page)?;
    Ok(page.map(|(line, batch)| MyPayout {
        status: line.status(),
        batch: batch.code(),
        paid_at: batch.paid_at.filter(|_| line.status == "paid"),
        paid_on: batch.paid_at.filter(|_| line.status == "paid").map(|at| calendar.date_of(at)),
        id: line.id,
        amount_minor: line.amount_minor,
        currency: line.currency,
        payout_method: line.payout_method,
    }))
}
