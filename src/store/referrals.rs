//! Referred clients: recording (code, self-referral and duplicate rules), treatment sessions,
//! completion, cancel/reject/refund, search. Each change is one transaction with its audit row.

use chrono::NaiveDate;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{referral_sessions, referrals};
use crate::db::{lower, now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::contact::{ContactHasher, Email, Phone};
use crate::domain::referral::{self, ReferralEvent, ReferralSource, ReferralStatus};
use crate::email::{notices, MailContext};
use crate::error::ApiError;
use crate::store::ambassadors::AmbassadorRow;
use crate::store::audit::{self, Actor, Change};
use crate::store::codes::{self, CodeRow};
use crate::store::{ensure_unchanged, like_pattern, new_id, program, rewards, Page, PageRequest, StoreError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = referrals)]
pub struct ReferralRow {
    pub id: String,
    pub ambassador_id: Option<String>,
    pub code_id: Option<String>,
    pub submitted_code: Option<String>,
    pub status: ReferralStatus,
    pub source: ReferralSource,
    pub client_first_name: Option<String>,
    pub client_last_name: Option<String>,
    pub client_email: Option<String>,
    pub client_phone: Option<String>,
    pub notes: Option<String>,
    pub email_key: Option<String>,
    pub phone_key: Option<String>,
    pub external_ref: Option<String>,
    pub share_name_with_ambassador: bool,
    pub planned_sessions: Option<i32>,
    pub session_count: i32,
    pub first_session_on: Option<NaiveDate>,
    pub completed_on: Option<NaiveDate>,
    pub treatment_value_minor: Option<i64>,
    pub earns: Option<bool>,
    pub not_earning_reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_note: Option<String>,
    pub registered_at: chrono::NaiveDateTime,
    pub treatment_started_at: Option<chrono::NaiveDateTime>,
    pub completed_at: Option<chrono::NaiveDateTime>,
    pub refunded_at: Option<chrono::NaiveDateTime>,
    pub cancelled_at: Option<chrono::NaiveDateTime>,
    pub rejected_at: Option<chrono::NaiveDateTime>,
    pub erased_at: Option<chrono::NaiveDateTime>,
    pub updated_at: chrono::NaiveDateTime,
}

impl ReferralRow {
    pub fn status(&self) -> ReferralStatus {
        self.status
    }

    /// The day the client was referred, in the clinic's calendar: the day it was recorded, or
    /// the earlier day staff gave when recording it late. Sessions and the completion may not
    /// be dated before it, and the attribution window counts from it.
    pub fn registered_on(&self, calendar: &Calendar) -> NaiveDate {
        calendar.date_of(self.registered_at)
    }

    /// How its ambassador sees this client ("First L." with consent, else an opaque label
    /// from `code`, the code used, or else what the client typed): the one rule behind the
    /// portal, the API and the e-mails.
    /// Whether the ambassador sees this referral (portal, API, e-mails). A share-link form
    /// submission shows only from the friend's first treatment session: until the clinic has
    /// seen the friend, a submission it accepted and one it refused on arrival (say, because
    /// the friend was already somebody's client) must look alike — so neither shows.
    pub fn visible_to_ambassador(&self) -> bool {
        !self.from_share_link() || self.treatment_started_at.is_some()
    }

    /// Left by the friend on the share-link form (not recorded by staff).
    pub fn from_share_link(&self) -> bool {
        self.source == ReferralSource::PublicForm
    }

    pub fn label_for_ambassador(&self, code: Option<&str>) -> String {
        referral::name_for_ambassador(
            self.client_first_name.as_deref(),
            self.client_last_name.as_deref(),
            self.share_name_with_ambassador,
            code.or(self.submitted_code.as_deref()).unwrap_or(""),
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = referral_sessions)]
pub struct SessionRow {
    pub id: String,
    #[serde(skip)]
    pub referral_id: String,
    /// The day of the session.
    pub session_on: NaiveDate,
    pub note: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
}

/// A parsed new referral.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub code: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub external_ref: Option<String>,
    pub planned_sessions: Option<i32>,
    pub share_name_with_ambassador: bool,
    pub notes: Option<String>,
    /// Staff recording a referral late: the earlier day the client was referred (checked
    /// against the attribution window). `None`: now.
    pub registered_on: Option<NaiveDate>,
}

fn invalid_code() -> ApiError {
    ApiError::Unprocessable {
        kind: "invalid-code",
        detail: "No active referral code matches.".into(),
        field: Some("code"),
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<ReferralRow, ApiError> {
    referrals::table
        .find(id)
        .select(ReferralRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("referral"))
}

/// The live (not cancelled or rejected) referral holding either contact key, if any (the
/// first recorded, should the two keys be held by two referrals).
///
/// One lookup per key, each answered by its partial unique index (`referrals_live_email_key`,
/// `referrals_live_phone_key`; diesel's multi-backend has no `UNION`). Written as `email_key = ? OR
/// phone_key = ?`, SQLite walked the whole table in id order instead (1.2 s at 200,000
/// referrals, inside the write lock: bench/results/PROFILE.md). SQLite uses a partial index
/// only when the query states the index's condition itself, so the status condition is
/// spelled out as in the migration rather than bound.
fn live_holder(
    conn: &mut DbConnection,
    email_key: Option<&str>,
    phone_key: Option<&str>,
    except: Option<&str>,
) -> QueryResult<Option<String>> {
    let live = || {
        diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "status NOT IN ('{}', '{}')",
            ReferralStatus::Cancelled.as_str(),
            ReferralStatus::Rejected.as_str()
        ))
    };
    let mut holders: Vec<String> = Vec::with_capacity(2);
    if let Some(key) = email_key {
        let query = referrals::table.filter(referrals::email_key.eq(key)).filter(live()).select(referrals::id);
        holders.extend(query.load::<String>(conn)?);
    }
    if let Some(key) = phone_key {
        let query = referrals::table.filter(referrals::phone_key.eq(key)).filter(live()).select(referrals::id);
        holders.extend(query.load::<String>(conn)?);
    }
    Ok(holders.into_iter().filter(|id| Some(id.as_str()) != except).min())
}

/// Why a referral may not be recorded for this code and client. Each is an `ApiError`
/// staff get back; the public form stores the referral as rejected instead.
fn check_rules(
    conn: &mut DbConnection,
    new: &NewReferral,
    email_key: Option<&str>,
    phone_key: Option<&str>,
) -> Result<(CodeRow, AmbassadorRow), ApiError> {
    let code = codes::find_typed(conn, &new.code)?.filter(|c| c.active).ok_or_else(invalid_code)?;
    let amb = crate::store::ambassadors::find(conn, &code.ambassador_id)?;
    if amb.status() != AmbassadorStatus::Active {
        return Err(ApiError::Unprocessable {
            kind: "ambassador-inactive",
            detail: format!("The ambassador for this code is {}, so it takes no referrals.", amb.status),
            field: Some("code"),
        });
    }
    let same_email = new.email.as_ref().is_some_and(|e| e.as_str() == amb.email);
    let same_phone = new.phone.as_ref().is_some_and(|p| Some(p.as_str()) == amb.phone.as_deref());
    if same_email || same_phone {
        return Err(ApiError::Unprocessable {
            kind: "self-referral",
            detail: "Ambassadors cannot refer themselves.".into(),
            field: Some(if same_email { "email" } else { "phone" }),
        });
    }
    if let Some(existing) = live_holder(conn, email_key, phone_key, None)? {
        return Err(ApiError::DuplicateReferral { existing_referral_id: existing });
    }
    Ok((code, amb))
}

/// Where a new referral row goes: whose it is, and whether it starts rejected.
struct Placement {
    ambassador_id: Option<String>,
    code_id: Option<String>,
    status: ReferralStatus,
    reason_code: Option<&'static str>,
    reason_note: Option<String>,
}

impl Placement {
    fn registered(code: &CodeRow) -> Self {
        Self {
            ambassador_id: Some(code.ambassador_id.clone()),
            code_id: Some(code.id.clone()),
            status: ReferralStatus::Registered,
            reason_code: None,
            reason_note: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn insert(
    conn: &mut DbConnection,
    id: &str,
    new: &NewReferral,
    email_key: Option<&str>,
    phone_key: Option<&str>,
    source: ReferralSource,
    placement: &Placement,
    recorded_late_for: Option<chrono::NaiveDateTime>,
    actor: &Actor,
) -> Result<(), ApiError> {
    let at = now();
    let rejected = placement.status == ReferralStatus::Rejected;
    diesel::insert_into(referrals::table)
        .values((
            referrals::id.eq(id),
            referrals::ambassador_id.eq(placement.ambassador_id.as_deref()),
            referrals::code_id.eq(placement.code_id.as_deref()),
            referrals::submitted_code.eq(Some(new.code.as_str())),
            referrals::status.eq(placement.status.as_str()),
            referrals::source.eq(source.as_str()),
            referrals::client_first_name.eq(&new.first_name),
            referrals::client_last_name.eq(new.last_name.as_deref()),
            referrals::client_email.eq(new.email.as_ref().map(Email::as_str)),
            referrals::client_phone.eq(new.phone.as_ref().map(Phone::as_str)),
            referrals::notes.eq(new.notes.as_deref()),
            referrals::email_key.eq(email_key),
            referrals::phone_key.eq(phone_key),
            referrals::external_ref.eq(new.external_ref.as_deref()),
            referrals::share_name_with_ambassador.eq(new.share_name_with_ambassador),
            referrals::planned_sessions.eq(new.planned_sessions),
            referrals::reason_code.eq(placement.reason_code),
            referrals::reason_note.eq(placement.reason_note.as_deref()),
            referrals::registered_at.eq(recorded_late_for.unwrap_or(at)),
            referrals::rejected_at.eq(rejected.then_some(at)),
            referrals::updated_at.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    audit::record(
        conn,
        actor,
        Change {
            action: if rejected { AuditAction::ReferralSubmittedRejected } else { AuditAction::ReferralRegistered },
            entity_type: "referral",
            entity_id: id,
            before: None,
            after: Some(placement.status.as_str()),
            details: Some(serde_json::json!({
                "ambassador_id": placement.ambassador_id,
                "source": source.as_str(),
                "reason_code": placement.reason_code,
                "recorded_late_for": recorded_late_for,
            })),
        },
    )?;
    Ok(())
}

fn keys_of(new: &NewReferral, hasher: &ContactHasher) -> (Option<String>, Option<String>) {
    (new.email.as_ref().map(|e| hasher.email_key(e)), new.phone.as_ref().map(|p| hasher.phone_key(p)))
}

fn lost_race(e: &ApiError) -> bool {
    matches!(e, ApiError::Store(StoreError::LostRace))
}

/// Records a referral (staff). Refusals: unknown/inactive code (422 `invalid-code`),
/// ambassador not active (422 `ambassador-inactive`), the ambassador's own contact (422
/// `self-referral`), a client with a live referral (409 `duplicate-referral` naming it — also
/// when two requests race: the partial unique indexes decide), a `registered_on` in the
/// future or before the attribution window (422 `validation-failed`).
pub fn create(
    conn: &mut DbConnection,
    calendar: &Calendar,
    new: &NewReferral,
    hasher: &ContactHasher,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    let (email_key, phone_key) = keys_of(new, hasher);
    let result = write_tx(conn, |conn| {
        let recorded_late_for = recorded_late_for(conn, calendar, new.registered_on)?;
        let (code, _) = check_rules(conn, new, email_key.as_deref(), phone_key.as_deref())?;
        let id = new_id();
        insert(
            conn,
            &id,
            new,
            email_key.as_deref(),
            phone_key.as_deref(),
            ReferralSource::Staff,
            &Placement::registered(&code),
            recorded_late_for,
            actor,
        )?;
        let row = find(conn, &id)?;
        notices::referral_update(conn, &row)?;
        Ok(row)
    });
    match result {
        Err(e) if lost_race(&e) => {
            let existing = live_holder(conn, email_key.as_deref(), phone_key.as_deref(), None)?.unwrap_or_default();
            Err(ApiError::DuplicateReferral { existing_referral_id: existing })
        }
        other => other,
    }
}

/// For a referral recorded late, when it counts as registered: the start of the earlier day
/// staff gave (no further back than the attribution window: a referral older than that could
/// earn nothing for a treatment completed today). `None`: it is registered now.
fn recorded_late_for(
    conn: &mut DbConnection,
    calendar: &Calendar,
    registered_on: Option<NaiveDate>,
) -> Result<Option<chrono::NaiveDateTime>, ApiError> {
    let today = calendar.date_of(now());
    match registered_on {
        None => Ok(None),
        Some(day) if day == today => Ok(None),
        Some(day) if day > today => {
            Err(ApiError::validation("registered_on", format!("must not be in the future (today is {today})")))
        }
        Some(day) => {
            let window = program::current(conn)?.rules.attribution_days;
            if day < today - chrono::TimeDelta::days(window) {
                return Err(ApiError::validation(
                    "registered_on",
                    format!("must be within the program's attribution window ({window} days before today)"),
                ));
            }
            Ok(Some(calendar.start_of(day)))
        }
    }
}

/// Records a public intake-form submission. It is always stored: as `registered` when every
/// rule passes, else as `rejected` with the reason, for staff to see (and staff are alerted
/// either way; the ambassador hears only of registered ones). The caller answers 202 either
/// way, so the form never reveals whether someone was already referred.
pub fn submit_public(
    conn: &mut DbConnection,
    new: &NewReferral,
    hasher: &ContactHasher,
    mail: &MailContext,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    let (email_key, phone_key) = keys_of(new, hasher);
    let attempt = |conn: &mut DbConnection| {
        write_tx(conn, |conn| {
            let placement = match check_rules(conn, new, email_key.as_deref(), phone_key.as_deref()) {
                Ok((code, _)) => Placement::registered(&code),
                Err(e) => {
                    let (reason_code, reason_note) = match e {
                        ApiError::Unprocessable { kind: "self-referral", .. } => {
                            ("self_referral", "The ambassador's own contact details.".to_owned())
                        }
                        ApiError::Unprocessable { kind: "ambassador-inactive", detail, .. } => ("not_eligible", detail),
                        ApiError::Unprocessable { kind: "invalid-code", .. } => {
                            ("other", "Unknown or inactive referral code.".to_owned())
                        }
                        ApiError::DuplicateReferral { existing_referral_id } => {
                            ("duplicate", format!("Already referred: referral {existing_referral_id}."))
                        }
                        other => return Err(other),
                    };
                    // Keep whose code it was, when the code exists at all.
                    let typed = codes::find_typed(conn, &new.code)?;
                    Placement {
                        ambassador_id: typed.as_ref().map(|c| c.ambassador_id.clone()),
                        code_id: typed.map(|c| c.id),
                        status: ReferralStatus::Rejected,
                        reason_code: Some(reason_code),
                        reason_note: Some(reason_note),
                    }
                }
            };
            let id = new_id();
            let (email_key, phone_key) = (email_key.as_deref(), phone_key.as_deref());
            insert(conn, &id, new, email_key, phone_key, ReferralSource::PublicForm, &placement, None, actor)?;
            let row = find(conn, &id)?;
            notices::referral_update(conn, &row)?;
            notices::staff_public_referral(conn, mail, &row)?;
            Ok(row)
        })
    };
    match attempt(conn) {
        // Lost a race with a concurrent referral of the same client: run again; the rules now
        // see the winner and store this one as a rejected duplicate.
        Err(e) if lost_race(&e) => attempt(conn),
        other => other,
    }
}

/// Checks a treatment date (a session's or the completion's) against the clinic's calendar:
/// not before the referral was registered, not after today.
fn check_treatment_day(
    calendar: &Calendar,
    referral: &ReferralRow,
    field: &'static str,
    day: NaiveDate,
) -> Result<(), ApiError> {
    let today = calendar.date_of(now());
    if day > today {
        return Err(ApiError::validation(field, format!("must not be in the future (today is {today})")));
    }
    let registered_on = referral.registered_on(calendar);
    if day < registered_on {
        return Err(ApiError::validation(
            field,
            format!("must not be before the referral was registered ({registered_on})"),
        ));
    }
    Ok(())
}

/// Records a treatment session; the first one starts treatment.
pub fn record_session(
    conn: &mut DbConnection,
    calendar: &Calendar,
    id: &str,
    session_on: NaiveDate,
    note: Option<&str>,
    actor: &Actor,
) -> Result<SessionRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::RecordSession)?;
        check_treatment_day(calendar, &before, "session_on", session_on)?;
        let at = now();
        let session_id = new_id();
        diesel::insert_into(referral_sessions::table)
            .values((
                referral_sessions::id.eq(&session_id),
                referral_sessions::referral_id.eq(id),
                referral_sessions::session_on.eq(session_on),
                referral_sessions::note.eq(note),
                referral_sessions::created_at.eq(at),
            ))
            .execute(conn)?;
        let changed = diesel::update(referrals::table.find(id).filter(referrals::status.eq(&before.status)))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::session_count.eq(referrals::session_count + 1),
                referrals::first_session_on.eq(before.first_session_on.map_or(session_on, |d| d.min(session_on))),
                referrals::treatment_started_at.eq(before.treatment_started_at.unwrap_or(at)),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        if before.treatment_started_at.is_none() {
            // A share-link referral becomes the ambassador's news only now.
            let row = find(conn, id)?;
            notices::referral_update(conn, &row)?;
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralSessionRecorded,
                entity_type: "referral",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "session_id": session_id, "session_on": session_on })),
            },
        )?;
        Ok(referral_sessions::table.find(&session_id).select(SessionRow::as_select()).first(conn)?)
    })
}

pub fn sessions(conn: &mut DbConnection, id: &str) -> Result<Vec<SessionRow>, ApiError> {
    Ok(referral_sessions::table
        .filter(referral_sessions::referral_id.eq(id))
        .select(SessionRow::as_select())
        .order((referral_sessions::session_on.asc(), referral_sessions::id.asc()))
        .load(conn)?)
}

/// Confirms a completed treatment. Outside the attribution window it still completes, but
/// is marked as not earning, with the reason.
pub fn complete(
    conn: &mut DbConnection,
    calendar: &Calendar,
    id: &str,
    completed_on: NaiveDate,
    treatment_value_minor: Option<i64>,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::Complete)?;
        let program = program::current_locked(conn)?;
        check_treatment_day(calendar, &before, "completed_on", completed_on)?;
        let registered_on = before.registered_on(calendar);
        let attribution = referral::attribution(registered_on, completed_on, program.rules.attribution_days);
        let at = now();
        let changed = diesel::update(referrals::table.find(id).filter(referrals::status.eq(&before.status)))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::completed_on.eq(completed_on),
                referrals::treatment_value_minor.eq(treatment_value_minor),
                referrals::earns.eq(attribution.is_ok()),
                referrals::not_earning_reason.eq(attribution.err()),
                referrals::completed_at.eq(at),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralCompleted,
                entity_type: "referral",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({
                    "completed_on": completed_on,
                    "earns": attribution.is_ok(),
                    "not_earning_reason": attribution.err(),
                })),
            },
        )?;
        let after = find(conn, id)?;
        if attribution.is_ok() {
            rewards::earn(conn, calendar, &after, &program, actor)?;
        }
        Ok(after)
    })
}

/// Cancel, reject or refund with a reason code (and note); the ambassador hears of a
/// cancellation or refund (not of a rejection).
pub fn close_out(
    conn: &mut DbConnection,
    id: &str,
    event: ReferralEvent,
    reason_code: &str,
    note: Option<&str>,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), event)?;
        let at = now();
        let stamp_if = |status: ReferralStatus, old: Option<chrono::NaiveDateTime>| {
            if to == status {
                Some(at)
            } else {
                old
            }
        };
        let changed = diesel::update(referrals::table.find(id).filter(referrals::status.eq(&before.status)))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::reason_code.eq(reason_code),
                referrals::reason_note.eq(note),
                referrals::cancelled_at.eq(stamp_if(ReferralStatus::Cancelled, before.cancelled_at)),
                referrals::rejected_at.eq(stamp_if(ReferralStatus::Rejected, before.rejected_at)),
                referrals::refunded_at.eq(stamp_if(ReferralStatus::Refunded, before.refunded_at)),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        audit::record(
            conn,
            actor,
            Change {
                action: match to {
                    ReferralStatus::Cancelled => AuditAction::ReferralCancelled,
                    ReferralStatus::Rejected => AuditAction::ReferralRejected,
                    _ => AuditAction::ReferralRefunded,
                },
                entity_type: "referral",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "reason_code": reason_code })),
            },
        )?;
        if to == ReferralStatus::Refunded {
            rewards::on_refund(conn, &before, actor)?;
        }
        let row = find(conn, id)?;
        notices::referral_update(conn, &row)?;
        Ok(row)
    })
}

#[derive(Debug, Clone, Default)]
pub struct ReferralFilter {
    pub status: Option<ReferralStatus>,
    pub ambassador_id: Option<String>,
    /// Registered on or after this day.
    pub from: Option<NaiveDate>,
    /// Registered on or before this day.
    pub to: Option<NaiveDate>,
    /// Name, e-mail, phone digits or external reference.
    pub q: Option<String>,
    /// Whether `q` may match e-mail and phone: only for callers who see them (not finance),
    /// or the search would answer what the view hides.
    pub q_matches_contact: bool,
    /// The ambassador's own view: only what [`ReferralRow::visible_to_ambassador`] allows.
    pub ambassador_view: bool,
}

pub fn list(
    conn: &mut DbConnection,
    calendar: &Calendar,
    filter: &ReferralFilter,
    page: &PageRequest,
) -> Result<Page<ReferralRow>, ApiError> {
    let mut query = referrals::table.select(ReferralRow::as_select()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(referrals::status.eq(status.as_str()));
    }
    if let Some(amb) = &filter.ambassador_id {
        query = query.filter(referrals::ambassador_id.eq(amb.clone()));
    }
    if filter.ambassador_view {
        query = query.filter(ambassador_visible());
    }
    if let Some(from) = filter.from {
        query = query.filter(referrals::registered_at.ge(calendar.start_of(from)));
    }
    if let Some(to) = filter.to.and_then(|d| d.succ_opt()) {
        query = query.filter(referrals::registered_at.lt(calendar.start_of(to)));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let phone_pattern = if digits.len() >= 4 { format!("%{digits}%") } else { pattern.clone() };
        let visible = lower(referrals::client_first_name.assume_not_null())
            .like(pattern.clone())
            .escape('\\')
            .or(lower(referrals::client_last_name.assume_not_null()).like(pattern.clone()).escape('\\'))
            .or(lower(referrals::external_ref.assume_not_null()).like(pattern.clone()).escape('\\'));
        if filter.q_matches_contact {
            query = query.filter(
                visible
                    .or(referrals::client_email.assume_not_null().like(pattern).escape('\\'))
                    .or(referrals::client_phone.assume_not_null().like(phone_pattern)),
            );
        } else {
            query = query.filter(visible);
        }
    }
    if let Some(after) = &page.after_id {
        query = query.filter(referrals::id.lt(after.clone()));
    }
    let rows = query.order(referrals::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// A parsed PATCH of a referral's client data: `None` leaves a field alone, `Some(None)`
/// clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub first_name: Option<String>,
    pub last_name: Option<Option<String>>,
    pub email: Option<Option<Email>>,
    pub phone: Option<Option<Phone>>,
    pub external_ref: Option<Option<String>>,
    pub planned_sessions: Option<Option<i32>>,
    pub share_name_with_ambassador: Option<bool>,
    pub notes: Option<Option<String>>,
}

fn erased() -> ApiError {
    ApiError::InvalidTransition { entity: "referral", current: "erased".into(), event: "edit".into(), hint: None }
}

/// Edits client data. A new e-mail or phone is re-checked against the ambassador (self-referral)
/// and, while the referral is live, against every other live referral (duplicate).
pub fn update_client(
    conn: &mut DbConnection,
    id: &str,
    changes: &ClientChanges,
    hasher: &ContactHasher,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    let result = write_tx(conn, |conn| {
        let before = find(conn, id)?;
        if before.erased_at.is_some() {
            return Err(erased());
        }
        let email = match &changes.email {
            Some(e) => e.clone(),
            None => before.client_email.as_deref().map(Email::parse).transpose().map_err(ApiError::internal)?,
        };
        let phone = match &changes.phone {
            Some(p) => p.clone(),
            None => {
                before.client_phone.as_deref().map(|p| Phone::parse(p, None)).transpose().map_err(ApiError::internal)?
            }
        };
        if email.is_none() && phone.is_none() {
            return Err(ApiError::validation("email", "an e-mail address or a phone number is required"));
        }
        let email_key = email.as_ref().map(|e| hasher.email_key(e));
        let phone_key = phone.as_ref().map(|p| hasher.phone_key(p));
        if let Some(amb_id) = &before.ambassador_id {
            let amb = crate::store::ambassadors::find(conn, amb_id)?;
            let same_email = changes.email.is_some() && email.as_ref().is_some_and(|e| e.as_str() == amb.email);
            let same_phone =
                changes.phone.is_some() && phone.as_ref().is_some_and(|p| Some(p.as_str()) == amb.phone.as_deref());
            if same_email || same_phone {
                return Err(ApiError::Unprocessable {
                    kind: "self-referral",
                    detail: "Ambassadors cannot refer themselves.".into(),
                    field: Some(if same_email { "email" } else { "phone" }),
                });
            }
        }
        let live = !matches!(before.status(), ReferralStatus::Cancelled | ReferralStatus::Rejected);
        if live {
            if let Some(existing) = live_holder(conn, email_key.as_deref(), phone_key.as_deref(), Some(id))? {
                return Err(ApiError::DuplicateReferral { existing_referral_id: existing });
            }
        }
        diesel::update(referrals::table.find(id))
            .set((
                referrals::client_first_name.eq(changes.first_name.clone().or(before.client_first_name.clone())),
                referrals::client_last_name.eq(changes.last_name.clone().unwrap_or(before.client_last_name.clone())),
                referrals::client_email.eq(email.as_ref().map(Email::as_str)),
                referrals::client_phone.eq(phone.as_ref().map(Phone::as_str)),
                referrals::email_key.eq(email_key.as_deref()),
                referrals::phone_key.eq(phone_key.as_deref()),
                referrals::external_ref.eq(changes.external_ref.clone().unwrap_or(before.external_ref.clone())),
                referrals::planned_sessions.eq(changes.planned_sessions.unwrap_or(before.planned_sessions)),
                referrals::share_name_with_ambassador
                    .eq(changes.share_name_with_ambassador.unwrap_or(before.share_name_with_ambassador)),
                referrals::notes.eq(changes.notes.clone().unwrap_or(before.notes.clone())),
                referrals::updated_at.eq(now()),
            ))
            .execute(conn)
            .map_err(StoreError::unique_race)?;
        let fields: Vec<&str> = [
            ("first_name", changes.first_name.is_some()),
            ("last_name", changes.last_name.is_some()),
            ("email", changes.email.is_some()),
            ("phone", changes.phone.is_some()),
            ("external_ref", changes.external_ref.is_some()),
            ("planned_sessions", changes.planned_sessions.is_some()),
            ("share_name_with_ambassador", changes.share_name_with_ambassador.is_some()),
            ("notes", changes.notes.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralUpdated,
                entity_type: "referral",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: Some(serde_json::json!({ "fields": fields })),
            },
        )?;
        find(conn, id)
    });
    match result {
        // The new contact detail collided with a concurrent referral: name that one.
        Err(e) if lost_race(&e) => {
            let email_key = changes.email.as_ref().and_then(|e| e.as_ref().map(|e| hasher.email_key(e)));
            let phone_key = changes.phone.as_ref().and_then(|p| p.as_ref().map(|p| hasher.phone_key(p)));
            let existing = live_holder(conn, email_key.as_deref(), phone_key.as_deref(), Some(id))?.unwrap_or_default();
            Err(ApiError::DuplicateReferral { existing_referral_id: existing })
        }
        other => other,
    }
}

/// Erases a client's personal data: names, contact details and every note. Status, dates,
/// the code and the ledger stay, and so do the keyed contact hashes, so the same client is
/// still caught as a duplicate. Erasing twice changes nothing more.
pub fn erase(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<ReferralRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        if before.erased_at.is_some() {
            return Ok(before);
        }
        let at = now();
        diesel::update(referrals::table.find(id))
            .set((
                referrals::client_first_name.eq(None::<String>),
                referrals::client_last_name.eq(None::<String>),
                referrals::client_email.eq(None::<String>),
                referrals::client_phone.eq(None::<String>),
                referrals::notes.eq(None::<String>),
                referrals::reason_note.eq(None::<String>),
                referrals::external_ref.eq(None::<String>),
                referrals::erased_at.eq(Some(at)),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        diesel::update(referral_sessions::table.filter(referral_sessions::referral_id.eq(id)))
            .set(referral_sessions::note.eq(None::<String>))
            .execute(conn)?;
        notices::forget_client(conn, &before)?;
        // Stored idempotent replies (the created referral, its sessions…) name the client too.
        crate::store::idempotency::scrub_subject(conn, id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralPersonalDataErased,
                entity_type: "referral",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: None,
            },
        )?;
        find(conn, id)
    })
}

pub(crate) type Visible = diesel::dsl::Or<
    diesel::dsl::NotEq<referrals::source, &'static str>,
    diesel::dsl::IsNotNull<referrals::treatment_started_at>,
>;

/// [`ReferralRow::visible_to_ambassador`] in SQL.
pub(crate) fn ambassador_visible() -> Visible {
    referrals::source.ne(ReferralSource::PublicForm.as_str()).or(referrals::treatment_started_at.is_not_null())
}

/// One of the ambassador's own referrals (404 for anyone else's or a hidden one).
pub fn find_for_ambassador(conn: &mut DbConnection, ambassador_id: &str, id: &str) -> Result<ReferralRow, ApiError> {
    referrals::table
        .find(id)
        .filter(referrals::ambassador_id.eq(ambassador_id))
        .filter(ambassador_visible())
        .select(ReferralRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("referral"))
}

/// How many of an ambassador's referrals are in each status (as the ambassador sees them).
pub fn status_counts(conn: &mut DbConnection, ambassador_id: &str) -> Result<Vec<(String, i64)>, ApiError> {
    Ok(referrals::table
        .filter(referrals::ambassador_id.eq(ambassador_id))
        .filter(ambassador_visible())
        .group_by(referrals::status)
        .select((referrals::status, diesel::dsl::count_star()))
        .load(conn)?)
}

/// Referral counts by status for several ambassadors at once (staff view: every referral).
pub fn counts_by_ambassador(
    conn: &mut DbConnection,
    ambassador_ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<(String, i64)>>, ApiError> {
    let rows: Vec<(Option<String>, String, i64)> = referrals::table
        .filter(referrals::ambassador_id.eq_any(ambassador_ids))
        .group_by((referrals::ambassador_id, referrals::status))
        .select((referrals::ambassador_id, referrals::status, diesel::dsl::count_star()))
        .load(conn)?;
    let mut out: std::collections::HashMap<String, Vec<(String, i64)>> = Default::default();
    for (amb, status, n) in rows {
        if let Some(amb) = amb {
            out.entry(amb).or_default().push((status, n));
        }
    }
    Ok(out)
}

/// How each referral is named to its ambassador ("First L." with consent, else an opaque
/// label from the code), for ledger rows and e-mails.
pub fn labels_for_ambassador(
    conn: &mut DbConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let rows: Vec<ReferralRow> =
        referrals::table.filter(referrals::id.eq_any(ids)).select(ReferralRow::as_select()).load(conn)?;
    let code_ids: Vec<&str> = rows.iter().filter_map(|r| r.code_id.as_deref()).collect();
    let codes = codes::display_codes(conn, &code_ids)?;
    Ok(rows
        .iter()
        .map(|r| {
            let code = r.code_id.as_ref().and_then(|c| codes.get(c)).map(String::as_str);
            (r.id.clone(), r.label_for_ambassador(code))
        })
        .collect())
}
