//! An ambassador's own view and changes (the `/v1/me` API and the portal pages): profile,
//! codes, referrals with clients masked, payouts; and the portal's login token.

use crate::app::input::parse_payout;
use crate::db::DbConnection;
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::ambassador::NotificationPreferences;
use crate::domain::ambassador::PayoutMethod;
use crate::domain::calendar::Calendar;
use crate::domain::optional_text;
use crate::domain::payout::LineStatus;
use crate::domain::referral::full_counts;
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::Balance;
use crate::domain::Validation;
use crate::error::ApiError;
use crate::extract::nullable;
use crate::store::ambassadors;
use crate::store::ambassadors::AmbassadorChanges;
use crate::store::ambassadors::AmbassadorRow;
use crate::store::codes;
use crate::store::codes::CodeView;
use crate::store::payouts;
use crate::store::referrals;
use crate::store::referrals::ReferralFilter;
use crate::store::referrals::ReferralRow;
use crate::store::rewards;
use crate::store::Page;
use crate::store::PageRequest;
use chrono::NaiveDate;
use serde::Deserialize;
use serde::Serialize;
use std::collections::BTreeMap;

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

/// The ambassador's profile with counts and balance (the API's `/v1/me` and the portal page),
/// in one statement.
pub fn load_profile(c: &mut crate::db::DbConnection, id: &str) -> Result<MeView, ApiError> {
    let s = crate::store::reads::ambassador_summary(c, id, crate::store::reads::View::Ambassador)?
        .ok_or(ApiError::NotFound("ambassador"))?;
    Ok(MeView::new((s.row, s.counts, s.balance)))
}

/// Validates what an ambassador asked to change (every bad field reported at once).
pub fn parse_update(b: UpdateMe) -> Result<AmbassadorChanges, ApiError> {
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
pub fn apply_update(
    c: &mut crate::db::DbConnection,
    id: &str,
    changes: &AmbassadorChanges,
    actor: &crate::store::audit::Actor,
) -> Result<MeView, ApiError> {
    let row = ambassadors::update(c, id, changes, actor)?;
    Ok(MeView::new(profile_parts(c, row)?))
}

/// The ambassador's active codes with their share links.
pub fn active_codes(
    c: &mut crate::db::DbConnection,
    ambassador_id: &str,
    public_url: &str,
) -> Result<Vec<CodeView>, ApiError> {
    let rows = codes::list_for(c, ambassador_id)?;
    Ok(rows.into_iter().filter(|c| c.active).map(|c| CodeView::new(c, public_url)).collect())
}

/// A page of the ambassador's referrals, clients masked exactly as `/v1/me/referrals` shows them.
pub fn my_referrals(
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

/// A page of the ambassador's payouts, newest first.
pub fn my_payouts(
    c: &mut crate::db::DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    page: &PageRequest,
) -> Result<Page<MyPayout>, ApiError> {
    let page = payouts::lines_for_ambassador(c, ambassador_id, page)?;
    Ok(page.map(|(line, batch)| MyPayout {
        status: line.status,
        batch: batch.code(),
        paid_at: batch.paid_at.filter(|_| line.status == LineStatus::Paid),
        paid_on: batch.paid_at.filter(|_| line.status == LineStatus::Paid).map(|at| calendar.date_of(at)),
        id: line.id,
        amount_minor: line.amount_minor,
        currency: line.currency,
        payout_method: line.payout_method,
    }))
}

/// A login link's token as sent (the API's and the portal page's).
pub fn parse_login_token(raw: &str) -> Result<String, ApiError> {
    let token = raw.trim();
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::validation("token", "must be the token from the login link"));
    }
    Ok(token.to_owned())
}

/// The display code of a referral's code, if it has one.
pub fn code_of(c: &mut DbConnection, row: &ReferralRow) -> Result<Option<String>, ApiError> {
    match &row.code_id {
        Some(id) => Ok(codes::display_codes(c, &[id.as_str()])?.remove(id)),
        None => Ok(None),
    }
}
