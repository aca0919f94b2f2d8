//! A referrals file: one row per referred client, with the code it came through (the
//! ambassador's, imported before), the status it had reached and the dates that got it there.
//! A row is written as the staff API would have recorded it step by step, in one go and
//! without e-mails: registered on `registered_on`, first session on `first_session_on`,
//! completed on `completed_on` (earning its reward), cancelled, rejected or refunded on
//! `closed_on` with the reason.
//!
//! Rewards: a completed (or refunded) referral earns the reward the file gives in `reward`,
//! kept as the old system computed it; without one, the program version in force on the
//! completion day computes it (the one in force now when the completion predates every
//! version), the attribution window included. A refunded referral's reward is voided. With
//! `reward_paid` true the old system paid it already: the reward is offset by a negative
//! adjustment, so it counts in the ambassador's year (tiers, cap, reports) but is not paid twice.
//!
//! Found again: by `external_ref` when the row has one, else by the same ambassador, the same
//! client (e-mail or phone) and the same `registered_on`. A row found again in the status the
//! file gives is `unchanged`; in another status it is refused (later changes go through the
//! API or the console, one transition at a time).

use chrono::NaiveDate;

use super::{parse_bool, Outcome, Row};
use crate::app::audit::{Change, EntityType};
use crate::app::input::{parse_client, NOTES_MAX};
use crate::app::{rewards, Error, Result};
use crate::db::{now, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::money::Money;
use crate::domain::referral::{self, ReferralEvent, ReferralSource, ReferralStatus};
use crate::domain::{optional_text, Validation};
use crate::store::ambassadors::{self, AmbassadorRow};
use crate::store::codes::{self, CodeRow};
use crate::store::program::{self, Program};
use crate::store::referrals::{self as store, Contact, ImportedHistory, NewReferral, Placement};
use crate::store::{new_id, StoreError};

/// The columns a referrals file may have.
pub const COLUMNS: [&str; 19] = [
    "code",
    "first_name",
    "last_name",
    "email",
    "phone",
    "external_ref",
    "planned_sessions",
    "share_name_with_ambassador",
    "notes",
    "status",
    "registered_on",
    "first_session_on",
    "completed_on",
    "closed_on",
    "treatment_value",
    "reward",
    "reward_paid",
    "reason_code",
    "reason_note",
];

/// The columns it must have.
pub const REQUIRED: [&str; 3] = ["code", "first_name", "registered_on"];

/// What the reward's offsetting adjustment says when the old system paid it.
const PAID_BEFORE: &str = "Paid before the import";

/// One row, parsed and checked.
struct Line {
    new: NewReferral,
    status: ReferralStatus,
    registered_on: NaiveDate,
    first_session_on: Option<NaiveDate>,
    completed_on: Option<NaiveDate>,
    closed_on: Option<NaiveDate>,
    treatment_value_minor: Option<i64>,
    reward_minor: Option<i64>,
    reward_paid: bool,
    reason_code: Option<String>,
    reason_note: Option<String>,
}

fn parse_date(v: &mut Validation, row: &Row<'_>, column: &str, today: NaiveDate) -> Option<NaiveDate> {
    let raw = row.get(column)?;
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) if day > today => {
            v.push(column, format!("must not be in the future (today is {today})"));
            None
        }
        Ok(day) => Some(day),
        Err(_) => {
            v.push(column, "must be a date like 2026-03-31");
            None
        }
    }
}

fn parse_money(v: &mut Validation, row: &Row<'_>, column: &str) -> Option<i64> {
    let raw = row.get(column)?;
    match Money::parse(raw, row.currency.clone()) {
        Ok(m) if m.minor < 0 => {
            v.push(column, "must not be negative");
            None
        }
        Ok(m) => Some(m.minor),
        Err(m) => {
            v.push(column, m);
            None
        }
    }
}

fn parse(row: &Row<'_>) -> Result<Line> {
    let today = row.ctx.calendar.date_of(now());
    let mut v = Validation::new();
    let new = parse_client_columns(&mut v, row);
    let status = parse_status(&mut v, row);
    let registered_on = parse_date(&mut v, row, "registered_on", today);
    if row.get("registered_on").is_none() {
        v.push("registered_on", "is required (the day the client was referred)");
    }
    let first_session_on = parse_date(&mut v, row, "first_session_on", today);
    let completed_on = parse_date(&mut v, row, "completed_on", today);
    let closed_on = parse_date(&mut v, row, "closed_on", today);
    let treatment_value_minor = parse_money(&mut v, row, "treatment_value");
    let reward_minor = parse_money(&mut v, row, "reward");
    let reward_paid = v.check("reward_paid", parse_bool(row.get("reward_paid"))).unwrap_or_default();
    let (reason_code, reason_note) = (row.get("reason_code"), row.get("reason_note"));
    if let Some(status) = status {
        check_columns_for_status(&mut v, row, status);
        check_reason(&mut v, status, reason_code, reason_note);
    }
    let latest = check_date_order(
        &mut v,
        [
            ("registered_on", registered_on),
            ("first_session_on", first_session_on),
            ("completed_on", completed_on),
            ("closed_on", closed_on),
        ],
    );
    v.finish()?;
    let (Some(status), Some(registered_on)) = (status, registered_on) else {
        return Err(Error::internal("validated fields missing"));
    };
    Ok(Line {
        new,
        status,
        registered_on,
        first_session_on,
        completed_on,
        // Without a date of its own, a referral closed when it was last heard of.
        closed_on: closed_on.or(latest).filter(|_| {
            matches!(status, ReferralStatus::Cancelled | ReferralStatus::Rejected | ReferralStatus::Refunded)
        }),
        treatment_value_minor,
        reward_minor,
        reward_paid,
        reason_code: reason_code.map(str::to_owned),
        reason_note: reason_note.map(str::to_owned),
    })
}

/// The client's columns, checked as the API checks a new referral.
fn parse_client_columns(v: &mut Validation, row: &Row<'_>) -> NewReferral {
    let mut new = parse_client(
        v,
        row.ctx.settings,
        row.get("code").unwrap_or_default(),
        row.get("first_name").unwrap_or_default(),
        row.get("last_name"),
        row.get("email"),
        row.get("phone"),
    );
    new.external_ref = v.check("external_ref", optional_text(row.get("external_ref"), 100)).flatten();
    new.planned_sessions = row.get("planned_sessions").and_then(|raw| match raw.parse::<i32>() {
        Ok(n) if (1..=100).contains(&n) => Some(n),
        _ => {
            v.push("planned_sessions", "must be a whole number between 1 and 100");
            None
        }
    });
    new.share_name_with_ambassador =
        v.check("share_name_with_ambassador", parse_bool(row.get("share_name_with_ambassador"))).unwrap_or_default();
    new.notes = v.check("notes", optional_text(row.get("notes"), NOTES_MAX)).flatten();
    new
}

/// The `status` column (registered when empty).
fn parse_status(v: &mut Validation, row: &Row<'_>) -> Option<ReferralStatus> {
    let Some(raw) = row.get("status") else {
        return Some(ReferralStatus::Registered);
    };
    let parsed = ReferralStatus::parse(&raw.to_ascii_lowercase());
    if parsed.is_none() {
        let all: Vec<&str> = ReferralStatus::ALL.iter().map(|s| s.as_str()).collect();
        v.push("status", format!("must be one of: {}", all.join(", ")));
    }
    parsed
}

/// The dates and amounts a status needs, and those it has no use for.
fn check_columns_for_status(v: &mut Validation, row: &Row<'_>, status: ReferralStatus) {
    use ReferralStatus::*;
    let completed = matches!(status, Completed | Refunded);
    let closed = matches!(status, Cancelled | Rejected | Refunded);
    if status == InTreatment && row.get("first_session_on").is_none() {
        v.push("first_session_on", "is required for a referral in_treatment");
    }
    if completed && row.get("completed_on").is_none() {
        v.push("completed_on", format!("is required for a referral {}", status.as_str()));
    }
    if !completed {
        for column in ["completed_on", "treatment_value", "reward", "reward_paid"] {
            if row.get(column).is_some() {
                v.push(column, "is only used with status completed or refunded");
            }
        }
    }
    if status == Registered && row.get("first_session_on").is_some() {
        v.push("first_session_on", "means the treatment started: give status in_treatment (or later)");
    }
    if !closed {
        for column in ["closed_on", "reason_code", "reason_note"] {
            if row.get(column).is_some() {
                v.push(column, "is only used with status cancelled, rejected or refunded");
            }
        }
    }
}

/// A closed referral's reason, checked as the API checks a cancel, reject or refund.
fn check_reason(v: &mut Validation, status: ReferralStatus, reason_code: Option<&str>, reason_note: Option<&str>) {
    let event = match status {
        ReferralStatus::Cancelled => ReferralEvent::Cancel,
        ReferralStatus::Rejected => ReferralEvent::Reject,
        ReferralStatus::Refunded => ReferralEvent::Refund,
        _ => return,
    };
    match referral::close_out_reason(event, reason_code.unwrap_or_default(), reason_note) {
        Ok(_) => {}
        Err(crate::domain::DomainError::Validation(errors)) => {
            for e in errors {
                let field = if e.field == "note" { "reason_note" } else { e.field.as_str() };
                v.push(field, e.message);
            }
        }
        Err(e) => v.push("reason_code", e.to_string()),
    }
}

/// Refuses a date before the one of an earlier step (`order`: the dates in the order the
/// referral went through them); the latest date given.
fn check_date_order(v: &mut Validation, order: [(&str, Option<NaiveDate>); 4]) -> Option<NaiveDate> {
    let mut latest: Option<(&str, NaiveDate)> = None;
    for (column, day) in order {
        let Some(day) = day else { continue };
        if let Some((before, was)) = latest.filter(|(_, was)| day < *was) {
            v.push(column, format!("must not be before {before} ({was})"));
        } else {
            latest = Some((column, day));
        }
    }
    latest.map(|(_, d)| d)
}

fn refused(kind: &'static str, field: &'static str, detail: String) -> Error {
    Error::Unprocessable { kind, detail, field: Some(field) }
}

/// Imports one row (inside its savepoint) and says what it did, with the referral's id.
pub(super) fn import(conn: &mut DbConnection, row: &Row<'_>) -> Result<(Outcome, String)> {
    let line = parse(row)?;
    let (ctx, at) = (row.ctx, now());
    let (code, ambassador) = code_and_owner(conn, &line)?;
    let contact = Contact {
        email_key: line.new.email.as_ref().map(|e| ctx.hasher.email_key(e)),
        phone_key: line.new.phone.as_ref().map(|p| ctx.hasher.phone_key(p)),
        email: line.new.email.clone(),
        phone: line.new.phone.clone(),
    };
    let registered_at = ctx.calendar.start_of(line.registered_on);
    if let Some(before) = found_again(conn, &line, &ambassador.id, registered_at, &contact)? {
        return Ok((Outcome::Unchanged, before));
    }
    let live = !matches!(line.status, ReferralStatus::Cancelled | ReferralStatus::Rejected);
    if live {
        if let Some(existing) =
            store::live_holder(conn, contact.email_key.as_deref(), contact.phone_key.as_deref(), None)?
        {
            return Err(Error::DuplicateReferral { existing_referral_id: existing });
        }
    }
    let id = new_id();
    let placement = Placement::registered(&code);
    store::insert(conn, &id, &line.new, &contact, ReferralSource::Staff, &placement, registered_at, at)
        .map_err(StoreError::unique_race)?;
    if let Some(day) = line.first_session_on {
        store::insert_session(conn, &new_id(), &id, day, Some("Imported"), at)?;
    }
    let program = match line.completed_on {
        Some(day) => Some(program_on(conn, row, day)?),
        None => None,
    };
    let attribution = match (&program, line.completed_on) {
        (Some(p), Some(day)) => Some(referral::attribution(line.registered_on, day, p.rules.attribution_days).err()),
        _ => None,
    };
    write_history(conn, row, &line, &id, attribution, at)?;
    record_steps(conn, row, &line, &id, &ambassador.id)?;
    if let (Some(program), Some(None)) = (&program, attribution) {
        earn(conn, row, &line, (&id, &ambassador.id), program)?;
    }
    Ok((Outcome::Created, id))
}

/// The row's code and its ambassador, refusing an unknown code and the ambassador's own contact.
fn code_and_owner(conn: &mut DbConnection, line: &Line) -> Result<(CodeRow, AmbassadorRow)> {
    let code = codes::find_typed(conn, &line.new.code)?.ok_or_else(|| {
        refused(
            "invalid-code",
            "code",
            "No referral code matches (import the ambassadors and their codes first).".into(),
        )
    })?;
    let ambassador = ambassadors::find(conn, &code.ambassador_id)?;
    let same_email = line.new.email.as_ref().is_some_and(|e| e.as_str() == ambassador.email);
    let same_phone = line.new.phone.as_ref().is_some_and(|p| Some(p.as_str()) == ambassador.phone.as_deref());
    if same_email || same_phone {
        let field = if same_email { "email" } else { "phone" };
        return Err(refused("self-referral", field, "The ambassador's own contact details.".into()));
    }
    Ok((code, ambassador))
}

/// The referral this row wrote on an earlier run, if any (its id): by `external_ref`, else the
/// same client of the same ambassador registered at the same moment. Refused when found in
/// another status, or as another ambassador's.
fn found_again(
    conn: &mut DbConnection,
    line: &Line,
    ambassador_id: &str,
    registered_at: chrono::NaiveDateTime,
    contact: &Contact,
) -> Result<Option<String>> {
    let before = match &line.new.external_ref {
        Some(external_ref) => store::find_by_external_ref(conn, external_ref)?,
        None => store::find_same_client(
            conn,
            ambassador_id,
            registered_at,
            contact.email_key.as_deref(),
            contact.phone_key.as_deref(),
        )?,
    };
    let Some(before) = before else { return Ok(None) };
    if before.ambassador_id.as_deref() != Some(ambassador_id) {
        return Err(refused(
            "external-ref-taken",
            "external_ref",
            format!("Referral {} of another ambassador has this external_ref.", before.id),
        ));
    }
    if before.status() != line.status {
        return Err(refused(
            "already-imported",
            "status",
            format!(
                "Already imported as referral {}, which is now {}: move it on through the API or the console.",
                before.id, before.status
            ),
        ));
    }
    Ok(Some(before.id))
}

/// The completion's rules: the version in force on `day`, else (history older than Vouch)
/// the one in force now; remembered for the file's other rows.
fn program_on(conn: &mut DbConnection, row: &Row<'_>, day: NaiveDate) -> Result<Program> {
    let known = row.programs.borrow().get(&day).cloned();
    if let Some(p) = known {
        return Ok(p);
    }
    let p = match program::in_force_at(conn, row.ctx.calendar.start_of(day))? {
        Some(p) => p,
        None => program::current(conn)?,
    };
    row.programs.borrow_mut().insert(day, p.clone());
    Ok(p)
}

/// Sets the status, dates and reason the row's history reached.
fn write_history(
    conn: &mut DbConnection,
    row: &Row<'_>,
    line: &Line,
    id: &str,
    attribution: Option<Option<&str>>,
    at: chrono::NaiveDateTime,
) -> Result<()> {
    let calendar = row.ctx.calendar;
    let history = ImportedHistory {
        status: line.status,
        first_session_on: line.first_session_on,
        treatment_started_at: line.first_session_on.map(|d| calendar.start_of(d)),
        completed_on: line.completed_on,
        completed_at: line.completed_on.map(|d| calendar.start_of(d)),
        treatment_value_minor: line.treatment_value_minor,
        earns: attribution.map(|not_earning| not_earning.is_none()),
        not_earning_reason: attribution.flatten(),
        reason_code: line.reason_code.as_deref(),
        reason_note: line.reason_note.as_deref(),
        closed_at: line.closed_on.map(|d| calendar.start_of(d)),
    };
    store::set_imported_history(conn, id, &history, at)?;
    Ok(())
}

/// The trail (and the webhook events) of each step the referral went through, as staff
/// would have recorded them.
fn record_steps(conn: &mut DbConnection, row: &Row<'_>, line: &Line, id: &str, ambassador_id: &str) -> Result<()> {
    let mut steps = vec![(AuditAction::ReferralRegistered, None, ReferralStatus::Registered)];
    let mut now_at = ReferralStatus::Registered;
    let mut step = |action, to: ReferralStatus| {
        steps.push((action, Some(now_at), to));
        now_at = to;
    };
    if line.first_session_on.is_some() {
        step(AuditAction::ReferralSessionRecorded, ReferralStatus::InTreatment);
    }
    if line.completed_on.is_some() {
        step(AuditAction::ReferralCompleted, ReferralStatus::Completed);
    }
    match line.status {
        ReferralStatus::Cancelled => step(AuditAction::ReferralCancelled, ReferralStatus::Cancelled),
        ReferralStatus::Rejected => step(AuditAction::ReferralRejected, ReferralStatus::Rejected),
        ReferralStatus::Refunded => step(AuditAction::ReferralRefunded, ReferralStatus::Refunded),
        _ => {}
    }
    let first = serde_json::json!({
        "import_id": row.import_id,
        "ambassador_id": ambassador_id,
        "source": "import",
        "status": line.status.as_str(),
        "registered_on": line.registered_on,
        "first_session_on": line.first_session_on,
        "completed_on": line.completed_on,
        "closed_on": line.closed_on,
        "reason_code": line.reason_code,
    });
    let changes = steps
        .into_iter()
        .enumerate()
        .map(|(i, (action, before, after))| Change {
            action,
            entity_type: EntityType::Referral,
            entity_id: id,
            before: before.map(ReferralStatus::as_str),
            after: Some(after.as_str()),
            details: Some(if i == 0 { first.clone() } else { serde_json::json!({ "import_id": row.import_id }) }),
        })
        .collect();
    row.record_all(conn, changes)?;
    Ok(())
}

/// The reward of a referral imported as completed (or refunded): earned as the file gives it,
/// voided for a refund, offset when the old system paid it already.
fn earn(
    conn: &mut DbConnection,
    row: &Row<'_>,
    line: &Line,
    (id, ambassador_id): (&str, &str),
    program: &Program,
) -> Result<()> {
    let ctx = row.ctx;
    let referral = store::find(conn, id)?.ok_or_else(|| Error::internal("imported referral vanished"))?;
    let reward =
        rewards::earn_imported(conn, ctx.calendar, &referral, program, line.reward_minor, ctx.actor).map_err(|e| {
            match e {
                Error::Unprocessable { kind: "treatment-value-required", .. } => refused(
                    "treatment-value-required",
                    "treatment_value",
                    "The program pays a percentage of the treatment value: give treatment_value (or reward).".into(),
                ),
                other => other,
            }
        })?;
    if line.status == ReferralStatus::Refunded {
        rewards::on_refund(conn, &referral, ctx.actor)?;
    } else if line.reward_paid && reward.amount_minor != 0 {
        let reason = format!("{PAID_BEFORE}: referral {}", line.new.external_ref.as_deref().unwrap_or(id));
        rewards::adjust_in_tx(conn, ctx.calendar, ambassador_id, -reward.amount_minor, &reason, ctx.actor)?;
    }
    Ok(())
}
