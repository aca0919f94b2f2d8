//! The ambassador portal's use cases (the `/v1/portal` and `/v1/me` API and the portal
//! pages): signing in by e-mailed link, and the ambassador's own view and changes — profile,
//! codes, referrals with clients masked, rewards, payouts.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{notices, rewards as reward_use_cases, Error, Result};
use crate::app::input::parse_payout;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::{AmbassadorStatus, NotificationPreferences, PayoutMethod};
use crate::domain::api_key::hash;
use crate::domain::calendar::Calendar;
use crate::domain::contact::Email;
use crate::domain::payout::LineStatus;
use crate::domain::referral::{self, full_counts, ReferralStatus};
use crate::domain::reward::{Balance, RewardKind, RewardStatus};
use crate::domain::{optional_text, Validation};
use crate::extract::nullable;
use crate::store::ambassadors::{AmbassadorChanges, AmbassadorRow};
use crate::store::audit::{self, Actor, ActorKind, AuditAction, Change, EntityType};
use crate::store::codes::{self, CodeView};
use crate::store::portal::{self, LOGIN_LINK_TTL, LOGIN_MAIL_WINDOW, SESSION_PREFIX, SESSION_TTL};
use crate::store::reads::{self, OwnReferral};
use crate::store::referrals;
use crate::store::rewards::RewardFilter;
use crate::store::{new_id, payouts, Page, PageRequest};

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
    #[serde(serialize_with = "crate::store::date::ser")]
    pub registered_on: NaiveDate,
    /// Day of the first treatment session.
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub treatment_started_on: Option<NaiveDate>,
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub completed_on: Option<NaiveDate>,
    pub session_count: i32,
    pub planned_sessions: Option<i32>,
}

impl MyReferral {
    fn new((r, code): (OwnReferral, Option<String>), calendar: &Calendar) -> Self {
        let client = referral::name_for_ambassador(
            r.client_first_name.as_deref(),
            r.client_last_name.as_deref(),
            r.share_name_with_ambassador,
            code.as_deref().or(r.submitted_code.as_deref()).unwrap_or(""),
        );
        Self {
            registered_on: calendar.date_of(r.registered_at),
            client,
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

fn profile_parts(c: &mut DbConnection, row: AmbassadorRow) -> Result<Profile> {
    let counts = crate::store::tallies::status_counts(c, &row.id, crate::store::tallies::View::Ambassador)?;
    let balance = reward_use_cases::balance(c, &row.id)?;
    Ok((row, counts, balance))
}

/// The ambassador's profile with counts and balance (the API's `/v1/me` and the portal page),
/// in one statement.
pub fn load_profile(c: &mut DbConnection, id: &str) -> Result<MeView> {
    let s = reads::ambassador_summary(c, id, reads::View::Ambassador)?.ok_or(Error::NotFound("ambassador"))?;
    Ok(MeView::new((s.row, s.counts, s.balance)))
}

/// Validates what an ambassador asked to change (every bad field reported at once).
pub fn parse_update(b: UpdateMe) -> Result<AmbassadorChanges> {
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
pub fn apply_update(c: &mut DbConnection, id: &str, changes: &AmbassadorChanges, actor: &Actor) -> Result<MeView> {
    let row = crate::app::ambassadors::update(c, id, changes, actor)?;
    Ok(MeView::new(profile_parts(c, row)?))
}

/// The ambassador's active codes with their share links.
pub fn active_codes(c: &mut DbConnection, ambassador_id: &str, public_url: &str) -> Result<Vec<CodeView>> {
    let rows = codes::list_for(c, ambassador_id)?;
    Ok(rows.into_iter().filter(|c| c.active).map(|c| CodeView::new(c, public_url)).collect())
}

/// A page of the ambassador's referrals, clients masked exactly as `/v1/me/referrals` shows them.
pub fn my_referrals(
    c: &mut DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    status: Option<ReferralStatus>,
    page: &PageRequest,
) -> Result<Page<MyReferral>> {
    let page = reads::own_referrals(c, ambassador_id, (status, None), page)?;
    Ok(page.map(|r| MyReferral::new(r, calendar)))
}

/// One of the ambassador's own referrals (404 for anyone else's, or one they may not see yet).
pub fn my_referral(c: &mut DbConnection, calendar: &Calendar, ambassador_id: &str, id: &str) -> Result<MyReferral> {
    let one = PageRequest { limit: 1, after_id: None };
    let found = reads::own_referrals(c, ambassador_id, (None, Some(id)), &one)?.items.pop();
    Ok(MyReferral::new(found.ok_or(Error::NotFound("referral"))?, calendar))
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
    pub holds_until: NaiveDateTime,
    #[serde(serialize_with = "crate::store::date::ser")]
    pub earned_on: NaiveDate,
    pub referral_id: Option<String>,
    /// The referred client as you see them ("First L." with consent, else "Referral 7Q4K…").
    pub client: Option<String>,
    /// Why finance adjusted your balance, or why a reward was taken back.
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<NaiveDateTime>,
}

/// A page of the ambassador's rewards, newest first, each client named as the ambassador sees
/// them.
pub fn my_rewards(c: &mut DbConnection, ambassador_id: &str, page: &PageRequest) -> Result<Page<MyReward>> {
    let filter = RewardFilter { ambassador_id: Some(ambassador_id.to_owned()), ..Default::default() };
    let page = reward_use_cases::list(c, &filter, page)?;
    let ids: Vec<&str> = page.items.iter().filter_map(|r| r.referral_id.as_deref()).collect();
    let labels = referrals::labels_for_ambassador(c, &ids)?;
    let at = now();
    Ok(page.map(|r| MyReward {
        status: r.status(at),
        kind: r.kind,
        client: r.referral_id.as_ref().and_then(|id| labels.get(id).cloned()),
        id: r.id,
        amount_minor: r.amount_minor,
        currency: r.currency,
        holds_until: r.holds_until,
        earned_on: r.earned_on,
        referral_id: r.referral_id,
        reason: r.reason,
        paid_at: r.paid_at,
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
    pub paid_at: Option<NaiveDateTime>,
    /// The day it was paid, in the clinic's calendar.
    #[serde(serialize_with = "crate::store::date::ser_opt")]
    pub paid_on: Option<NaiveDate>,
}

/// A page of the ambassador's payouts, newest first.
pub fn my_payouts(
    c: &mut DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    page: &PageRequest,
) -> Result<Page<MyPayout>> {
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
pub fn parse_login_token(raw: &str) -> Result<String> {
    let token = raw.trim();
    if token.is_empty() || token.len() > 200 {
        return Err(Error::validation("token", "must be the token from the login link"));
    }
    Ok(token.to_owned())
}

fn random_token() -> String {
    use base64::Engine;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// What a login-link request needs besides the address.
pub struct LoginRequest<'a> {
    pub public_url: &'a str,
    /// Login e-mails sent to one address per [`LOGIN_MAIL_WINDOW`] at most.
    pub per_hour: u32,
    pub actor: &'a Actor,
}

/// Queues a login link for an active ambassador with this e-mail; does nothing (silently)
/// for anyone else, and nothing once the address had `per_hour` links within the hour (so
/// the form cannot be used to flood someone's inbox). The answer never reveals which.
pub fn request_login(conn: &mut DbConnection, email: &Email, req: &LoginRequest<'_>) -> Result<()> {
    let (public_url, actor) = (req.public_url, req.actor);
    write_tx(conn, |conn| {
        let Some((ambassador_id, name)) = portal::active_by_email(conn, email)? else {
            return Ok(());
        };
        // Links go only to the ambassador's current address, so counting their links is
        // counting that address's. Writers queue (SQLite) or may overshoot by a racing few
        // (PostgreSQL): a bound on abuse, not an exact quota.
        let recent = portal::links_since(conn, &ambassador_id, now() - LOGIN_MAIL_WINDOW)?;
        if recent >= i64::from(req.per_hour) {
            tracing::info!(%ambassador_id, "login e-mail limit reached for this address; nothing sent");
            return Ok(());
        }
        let token = random_token();
        let id = new_id();
        let at = now();
        let expires_at = at + LOGIN_LINK_TTL;
        portal::insert_login_link(conn, &id, &ambassador_id, &hash(&token), expires_at, at)?;
        let link = format!("{public_url}/portal/login?token={token}");
        notices::portal_login(conn, &id, &name, email.as_str(), &link, expires_at)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PortalLoginLinkSent,
                entity_type: EntityType::Ambassador,
                entity_id: &ambassador_id,
                before: None,
                after: None,
                details: None,
            },
        )?;
        Ok(())
    })
}

fn invalid_link() -> Error {
    Error::Unprocessable {
        kind: "invalid-login-link",
        detail: "This login link is invalid, expired or already used. Ask for a new one.".into(),
        field: Some("token"),
    }
}

/// Exchanges a login link's token (once) for a session token; returns (token, expiry).
pub fn start_session(
    conn: &mut DbConnection,
    token: &str,
    request_id: Option<String>,
) -> Result<(String, NaiveDateTime)> {
    write_tx(conn, |conn| {
        let at = now();
        let Some(ambassador_id) = portal::use_login_link(conn, &hash(token), at)? else {
            return Err(invalid_link());
        };
        if portal::ambassador_status(conn, &ambassador_id)? != AmbassadorStatus::Active {
            return Err(invalid_link());
        }
        let secret = format!("{SESSION_PREFIX}{}", random_token());
        let session_id = new_id();
        let expires_at = at + SESSION_TTL;
        portal::insert_session(conn, &session_id, &ambassador_id, &hash(&secret), expires_at, at)?;
        let actor = Actor { kind: ActorKind::Ambassador, id: Some(ambassador_id.clone()), role: None, request_id };
        audit::record(
            conn,
            &actor,
            Change {
                action: AuditAction::PortalSessionStarted,
                entity_type: EntityType::Ambassador,
                entity_id: &ambassador_id,
                before: None,
                after: None,
                details: Some(serde_json::json!({ "session_id": session_id })),
            },
        )?;
        Ok((secret, expires_at))
    })
}

/// Signs out: ends the session, audited like every state change (so an idempotent retry of
/// the sign-out is answered from the audit trail, never run twice).
pub fn end_session(conn: &mut DbConnection, session_id: &str, actor: &Actor) -> Result<()> {
    write_tx(conn, |conn| {
        if portal::end_session(conn, session_id, now())? == 0 {
            return Ok(());
        }
        let ambassador_id = actor.id.as_deref().unwrap_or_default();
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PortalSessionEnded,
                entity_type: EntityType::Ambassador,
                entity_id: ambassador_id,
                before: None,
                after: None,
                details: Some(serde_json::json!({ "session_id": session_id })),
            },
        )?;
        Ok(())
    })
}
