//! Referred clients' use cases: recording a referral (staff, or a friend on the share-link
//! form), treatment sessions, completion (which earns the reward), cancel/reject/refund,
//! editing and erasing client data, and the staff views. Each change is one transaction with
//! its audit row and its notices.

use chrono::{NaiveDate, NaiveDateTime};

use super::audit::{self, Actor, AuditAction, AuditEvent, Change, EntityType};
use super::error::Found;
use super::{notices, rewards, Error, Result};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::calendar::Calendar;
use crate::domain::contact::{ContactHasher, Email, Phone};
use crate::domain::referral::{self, ReferralEvent, ReferralSource, ReferralStatus};
use crate::email::MailContext;
use crate::store::ambassadors::{self, AmbassadorRow};
use crate::store::codes::{self, CodeRow};
use crate::store::referrals::{
    self, ClientChanges, Completion, Contact, NewReferral, Placement, ReferralFilter, ReferralRow, SessionRow,
};
use crate::store::{ensure_unchanged, idempotency, new_id, program, Page, PageRequest, StoreError};

fn load(conn: &mut DbConnection, id: &str) -> Result<ReferralRow> {
    referrals::find(conn, id)?.ok_or(Error::NotFound("referral"))
}

/// The referral with the code it was made with (as [`with_code`]), in one query.
fn load_with_code(conn: &mut DbConnection, id: &str) -> Result<(ReferralRow, Option<String>)> {
    referrals::find_with_code(conn, id)?.ok_or(Error::NotFound("referral"))
}

/// The referral with the code it was made with, as issued: what every view of it shows.
pub fn with_code(conn: &mut DbConnection, row: ReferralRow) -> Result<(ReferralRow, Option<String>)> {
    let code = referrals::code_of(conn, &row)?;
    Ok((row, code))
}

/// A client's contact with the keyed hashes a duplicate is found by.
fn contact_of(email: Option<Email>, phone: Option<Phone>, hasher: &ContactHasher) -> Contact {
    Contact {
        email_key: email.as_ref().map(|e| hasher.email_key(e)),
        phone_key: phone.as_ref().map(|p| hasher.phone_key(p)),
        email,
        phone,
    }
}

fn invalid_code() -> Error {
    Error::Unprocessable {
        kind: "invalid-code",
        detail: "No active referral code matches.".into(),
        field: Some("code"),
    }
}

/// Refuses the ambassador's own e-mail or phone as the client's.
fn refuse_self_referral(amb: &AmbassadorRow, email: Option<&Email>, phone: Option<&Phone>) -> Result<()> {
    let same_email = email.is_some_and(|e| e.as_str() == amb.email);
    let same_phone = phone.is_some_and(|p| Some(p.as_str()) == amb.phone.as_deref());
    if same_email || same_phone {
        return Err(Error::Unprocessable {
            kind: "self-referral",
            detail: "Ambassadors cannot refer themselves.".into(),
            field: Some(if same_email { "email" } else { "phone" }),
        });
    }
    Ok(())
}

/// Refuses a client another live referral (but `except`) already holds.
fn refuse_duplicate(conn: &mut DbConnection, contact: &Contact, except: Option<&str>) -> Result<()> {
    let (email_key, phone_key) = (contact.email_key.as_deref(), contact.phone_key.as_deref());
    if let Some(existing) = referrals::live_holder(conn, email_key, phone_key, except)? {
        return Err(Error::DuplicateReferral { existing_referral_id: existing });
    }
    Ok(())
}

/// After losing a race for a contact key (the transaction has rolled back): the duplicate,
/// naming the live referral that won.
fn race_winner(conn: &mut DbConnection, contact: &Contact, except: Option<&str>) -> Result<Error> {
    let (email_key, phone_key) = (contact.email_key.as_deref(), contact.phone_key.as_deref());
    let existing = referrals::live_holder(conn, email_key, phone_key, except)?.unwrap_or_default();
    Ok(Error::DuplicateReferral { existing_referral_id: existing })
}

fn lost_race(e: &Error) -> bool {
    matches!(e, Error::Store(StoreError::LostRace))
}

/// Why a referral may not be recorded for this code and client; else the code it is made
/// with and its ambassador (one query for both). Staff get the refusal back; the public form
/// stores the referral as rejected instead.
fn check_rules(conn: &mut DbConnection, new: &NewReferral, contact: &Contact) -> Result<(CodeRow, AmbassadorRow)> {
    let (code, amb) = check_code(conn, new)?;
    refuse_duplicate(conn, contact, None)?;
    Ok((code, amb))
}

/// [`check_rules`] but for the client's duplicate, which the partial unique indexes on the
/// contact keys refuse when the referral is written (as they decide a race): the refusal then
/// names the live referral as [`refuse_duplicate`] would have (see [`race_winner`]).
fn check_code(conn: &mut DbConnection, new: &NewReferral) -> Result<(CodeRow, AmbassadorRow)> {
    let (code, amb) =
        codes::find_typed_with_owner(conn, &new.code)?.filter(|(c, _)| c.active).ok_or_else(invalid_code)?;
    if amb.status() != AmbassadorStatus::Active {
        return Err(Error::Unprocessable {
            kind: "ambassador-inactive",
            detail: format!("The ambassador for this code is {}, so it takes no referrals.", amb.status),
            field: Some("code"),
        });
    }
    refuse_self_referral(&amb, new.email.as_ref(), new.phone.as_ref())?;
    Ok((code, amb))
}

/// Writes the new referral and its audit row; returns the row as stored.
#[allow(clippy::too_many_arguments)]
fn register(
    conn: &mut DbConnection,
    id: &str,
    new: &NewReferral,
    contact: &Contact,
    source: ReferralSource,
    placement: &Placement,
    recorded_late_for: Option<NaiveDateTime>,
    actor: &Actor,
) -> Result<ReferralRow> {
    let at = now();
    let registered_at = recorded_late_for.unwrap_or(at);
    let row = referrals::insert(conn, id, new, contact, source, placement, registered_at, at)
        .map_err(StoreError::unique_race)?;
    let rejected = placement.status == ReferralStatus::Rejected;
    audit::record(
        conn,
        actor,
        Change {
            action: if rejected { AuditAction::ReferralSubmittedRejected } else { AuditAction::ReferralRegistered },
            entity_type: EntityType::Referral,
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
    Ok(row)
}

/// Records a referral (staff). Refusals: unknown/inactive code (422 `invalid-code`),
/// ambassador not active (422 `ambassador-inactive`), the ambassador's own contact (422
/// `self-referral`), a client with a live referral (409 `duplicate-referral` naming it — also
/// when two requests race: the partial unique indexes decide), a `registered_on` in the
/// future or before the attribution window (422 `validation-failed`). Returns the referral
/// with the code it was made with (as [`with_code`]).
pub fn create(
    conn: &mut DbConnection,
    calendar: &Calendar,
    new: &NewReferral,
    hasher: &ContactHasher,
    actor: &Actor,
) -> Result<(ReferralRow, Option<String>)> {
    let contact = contact_of(new.email.clone(), new.phone.clone(), hasher);
    let result = write_tx(conn, |conn| {
        let recorded_late_for = recorded_late_for(conn, calendar, new.registered_on)?;
        // A duplicate client is refused by the unique indexes: one query fewer per referral.
        let (code, amb) = check_code(conn, new)?;
        let id = new_id();
        let placement = Placement::registered(&code);
        let row = register(conn, &id, new, &contact, ReferralSource::Staff, &placement, recorded_late_for, actor)?;
        notices::referral_update_known(conn, &row, &amb, Some(&code.code))?;
        Ok((row, Some(code.code)))
    });
    match result {
        Err(e) if lost_race(&e) => Err(race_winner(conn, &contact, None)?),
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
) -> Result<Option<NaiveDateTime>> {
    let today = calendar.date_of(now());
    match registered_on {
        None => Ok(None),
        Some(day) if day == today => Ok(None),
        Some(day) if day > today => {
            Err(Error::validation("registered_on", format!("must not be in the future (today is {today})")))
        }
        Some(day) => {
            let window = program::current(conn)?.rules.attribution_days;
            if day < today - chrono::TimeDelta::days(window) {
                return Err(Error::validation(
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
) -> Result<ReferralRow> {
    let contact = contact_of(new.email.clone(), new.phone.clone(), hasher);
    let attempt = |conn: &mut DbConnection| {
        write_tx(conn, |conn| {
            let placement = match check_rules(conn, new, &contact) {
                Ok((code, _)) => Placement::registered(&code),
                Err(e) => refused(conn, new, e)?,
            };
            let id = new_id();
            let row = register(conn, &id, new, &contact, ReferralSource::PublicForm, &placement, None, actor)?;
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

/// Where a submission that broke a rule goes: rejected with the reason, kept with whose code
/// it was when the code exists at all. Any other failure is passed on.
fn refused(conn: &mut DbConnection, new: &NewReferral, e: Error) -> Result<Placement> {
    let (reason_code, reason_note) = match e {
        Error::Unprocessable { kind: "self-referral", .. } => {
            ("self_referral", "The ambassador's own contact details.".to_owned())
        }
        Error::Unprocessable { kind: "ambassador-inactive", detail, .. } => ("not_eligible", detail),
        Error::Unprocessable { kind: "invalid-code", .. } => ("other", "Unknown or inactive referral code.".to_owned()),
        Error::DuplicateReferral { existing_referral_id } => {
            ("duplicate", format!("Already referred: referral {existing_referral_id}."))
        }
        other => return Err(other),
    };
    let typed = codes::find_typed(conn, &new.code)?;
    Ok(Placement {
        ambassador_id: typed.as_ref().map(|c| c.ambassador_id.clone()),
        code_id: typed.map(|c| c.id),
        status: ReferralStatus::Rejected,
        reason_code: Some(reason_code),
        reason_note: Some(reason_note),
    })
}

/// Checks a treatment date (a session's or the completion's) against the clinic's calendar:
/// not before the referral was registered, not after today.
fn check_treatment_day(calendar: &Calendar, referral: &ReferralRow, field: &'static str, day: NaiveDate) -> Result<()> {
    let today = calendar.date_of(now());
    if day > today {
        return Err(Error::validation(field, format!("must not be in the future (today is {today})")));
    }
    let registered_on = referral.registered_on(calendar);
    if day < registered_on {
        return Err(Error::validation(
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
) -> Result<SessionRow> {
    write_tx(conn, |conn| {
        let before = load(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::RecordSession)?;
        check_treatment_day(calendar, &before, "session_on", session_on)?;
        let at = now();
        let session_id = new_id();
        let session = referrals::insert_session(conn, &session_id, id, session_on, note, at)?;
        let row = referrals::count_session(conn, &before, to, session_on, at)?.ok_or(StoreError::Stale)?;
        if before.treatment_started_at.is_none() {
            // A share-link referral becomes the ambassador's news only now.
            notices::referral_update(conn, &row)?;
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralSessionRecorded,
                entity_type: EntityType::Referral,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "session_id": session_id, "session_on": session_on })),
            },
        )?;
        Ok(session)
    })
}

/// A referral's sessions, in date order.
pub fn sessions(conn: &mut DbConnection, id: &str) -> Result<Vec<SessionRow>> {
    load(conn, id)?;
    Ok(referrals::sessions(conn, id)?)
}

/// Confirms a completed treatment. Outside the attribution window it still completes, but
/// is marked as not earning, with the reason; inside, it earns its reward in the same
/// transaction. Returns the referral with the code it was made with (as [`with_code`]).
pub fn complete(
    conn: &mut DbConnection,
    calendar: &Calendar,
    id: &str,
    completed_on: NaiveDate,
    treatment_value_minor: Option<i64>,
    actor: &Actor,
) -> Result<(ReferralRow, Option<String>)> {
    write_tx(conn, |conn| {
        let (before, code) = load_with_code(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::Complete)?;
        let program = program::current_locked(conn)?;
        check_treatment_day(calendar, &before, "completed_on", completed_on)?;
        let registered_on = before.registered_on(calendar);
        let attribution = referral::attribution(registered_on, completed_on, program.rules.attribution_days);
        let completion = Completion { completed_on, treatment_value_minor, not_earning_reason: attribution.err() };
        let after = referrals::complete(conn, &before, to, &completion, now())?.ok_or(StoreError::Stale)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralCompleted,
                entity_type: EntityType::Referral,
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
        if attribution.is_ok() {
            rewards::earn(conn, calendar, &after, code.as_deref(), &program, actor)?;
        }
        Ok((after, code))
    })
}

/// Cancel, reject or refund with a reason code (and note); the ambassador hears of a
/// cancellation or refund (not of a rejection). A refund also takes back the reward.
pub fn close_out(
    conn: &mut DbConnection,
    id: &str,
    event: ReferralEvent,
    reason_code: &str,
    note: Option<&str>,
    actor: &Actor,
) -> Result<ReferralRow> {
    write_tx(conn, |conn| {
        let before = load(conn, id)?;
        let to = referral::transition(before.status(), event)?;
        ensure_unchanged(referrals::close_out(conn, &before, to, reason_code, note, now())?)?;
        audit::record(
            conn,
            actor,
            Change {
                action: match to {
                    ReferralStatus::Cancelled => AuditAction::ReferralCancelled,
                    ReferralStatus::Rejected => AuditAction::ReferralRejected,
                    _ => AuditAction::ReferralRefunded,
                },
                entity_type: EntityType::Referral,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "reason_code": reason_code })),
            },
        )?;
        if to == ReferralStatus::Refunded {
            rewards::on_refund(conn, &before, actor)?;
        }
        let row = load(conn, id)?;
        notices::referral_update(conn, &row)?;
        Ok(row)
    })
}

fn erased() -> Error {
    Error::InvalidTransition { entity: "referral", current: "erased".into(), event: "edit".into(), hint: None }
}

/// The contact a referral has after an edit: each detail as changed, or as stored; at least
/// one of them.
fn contact_after(before: &ReferralRow, changes: &ClientChanges, hasher: &ContactHasher) -> Result<Contact> {
    let email = match &changes.email {
        Some(e) => e.clone(),
        None => before.client_email.as_deref().map(Email::parse).transpose().map_err(Error::internal)?,
    };
    let phone = match &changes.phone {
        Some(p) => p.clone(),
        None => before.client_phone.as_deref().map(|p| Phone::parse(p, None)).transpose().map_err(Error::internal)?,
    };
    if email.is_none() && phone.is_none() {
        return Err(Error::validation("email", "an e-mail address or a phone number is required"));
    }
    Ok(contact_of(email, phone, hasher))
}

/// The fields an edit sets, for the audit trail.
fn edited_fields(changes: &ClientChanges) -> Vec<&'static str> {
    [
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
    .collect()
}

/// Edits client data. A new e-mail or phone is re-checked against the ambassador (self-referral)
/// and, while the referral is live, against every other live referral (duplicate).
pub fn update_client(
    conn: &mut DbConnection,
    id: &str,
    changes: &ClientChanges,
    hasher: &ContactHasher,
    actor: &Actor,
) -> Result<ReferralRow> {
    let result = write_tx(conn, |conn| {
        let before = load(conn, id)?;
        if before.erased_at.is_some() {
            return Err(erased());
        }
        let contact = contact_after(&before, changes, hasher)?;
        if let Some(amb_id) = &before.ambassador_id {
            let amb = ambassadors::find(conn, amb_id).or_not_found("ambassador")?;
            // Only a detail this edit sets is checked: a stored one was checked when it was set.
            let email = contact.email.as_ref().filter(|_| changes.email.is_some());
            let phone = contact.phone.as_ref().filter(|_| changes.phone.is_some());
            refuse_self_referral(&amb, email, phone)?;
        }
        if !matches!(before.status(), ReferralStatus::Cancelled | ReferralStatus::Rejected) {
            refuse_duplicate(conn, &contact, Some(id))?;
        }
        referrals::update_client(conn, &before, changes, &contact, now()).map_err(StoreError::unique_race)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralUpdated,
                entity_type: EntityType::Referral,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: Some(serde_json::json!({ "fields": edited_fields(changes) })),
            },
        )?;
        load(conn, id)
    });
    match result {
        // The new contact detail collided with a concurrent referral: name that one.
        Err(e) if lost_race(&e) => {
            let set = contact_of(changes.email.clone().flatten(), changes.phone.clone().flatten(), hasher);
            Err(race_winner(conn, &set, Some(id))?)
        }
        other => other,
    }
}

/// Erases a client's personal data: names, contact details and every note. Status, dates,
/// the code and the ledger stay, and so do the keyed contact hashes, so the same client is
/// still caught as a duplicate. Erasing twice changes nothing more.
pub fn erase(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<ReferralRow> {
    write_tx(conn, |conn| {
        let before = load(conn, id)?;
        if before.erased_at.is_some() {
            return Ok(before);
        }
        referrals::erase(conn, id, now())?;
        notices::forget_client(conn, &before)?;
        super::webhooks::forget_client(conn, &before.id)?;
        // Stored idempotent replies (the created referral, its sessions…) name the client too.
        idempotency::scrub_subject(conn, id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ReferralPersonalDataErased,
                entity_type: EntityType::Referral,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: None,
            },
        )?;
        load(conn, id)
    })
}

/// A referral as staff open it.
pub struct Detail {
    pub referral: ReferralRow,
    pub code: Option<String>,
    pub sessions: Vec<SessionRow>,
    /// Newest first (up to 200 events).
    pub history: Vec<AuditEvent>,
}

pub fn detail(conn: &mut DbConnection, id: &str) -> Result<Detail> {
    let row = load(conn, id)?;
    let (referral, code) = with_code(conn, row)?;
    let sessions = referrals::sessions(conn, id)?;
    let history =
        audit::trail(conn, &audit::AuditFilter::entity(id), &PageRequest { limit: 200, after_id: None })?.items;
    Ok(Detail { referral, code, sessions, history })
}

/// The ambassador a referral counts for (none when a share-link submission named no code).
pub fn ambassador_of(conn: &mut DbConnection, row: &ReferralRow) -> Result<Option<AmbassadorRow>> {
    row.ambassador_id.as_deref().map(|id| ambassadors::find(conn, id).or_not_found("ambassador")).transpose()
}

/// A page of referrals, newest first, each with the code it was made with.
pub fn search(
    conn: &mut DbConnection,
    calendar: &Calendar,
    filter: &ReferralFilter,
    page: &PageRequest,
) -> Result<Page<(ReferralRow, Option<String>)>> {
    let page = referrals::list(conn, calendar, filter, page)?;
    let ids: Vec<&str> = page.items.iter().filter_map(|r| r.code_id.as_deref()).collect();
    let codes = codes::display_codes(conn, &ids)?;
    Ok(page.map(|r| {
        let code = r.code_id.as_ref().and_then(|id| codes.get(id).cloned());
        (r, code)
    }))
}
