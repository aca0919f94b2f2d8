//! An ambassadors file: one row per ambassador, found again by e-mail address. A new address
//! enrols the ambassador (active unless the file says `suspended` or `closed`) with the codes
//! the file lists, kept as they were (a generated-looking `7Q4K-9MZD` stays generated, any
//! other is a vanity code), or one fresh code when it lists none; an address already there
//! updates the fields the file has. An opening balance is one ledger adjustment with its
//! reason, written once however often the file is run.

use super::{parse_bool, Outcome, Row};
use crate::app::audit::{Change, EntityType};
use crate::app::input::{parse_adjustment, parse_payout, parse_person, PersonFields, NOTES_MAX};
use crate::app::{codes, notices, rewards, Error, Result};
use crate::db::{now, DbConnection};
use crate::domain::ambassador::{AmbassadorStatus, Enrolment, NotificationPreferences, PayoutMethod};
use crate::domain::audit::AuditAction;
use crate::domain::code::{CodeKind, ReferralCode};
use crate::domain::money::Money;
use crate::domain::{optional_text, DomainError, Validation};
use crate::store::ambassadors::{self as store, AmbassadorChanges, AmbassadorRow, NewAmbassador};
use crate::store::{codes as code_store, new_id};

/// The columns an ambassadors file may have.
pub const COLUMNS: [&str; 13] = [
    "name",
    "email",
    "phone",
    "display_name",
    "show_name_to_referrals",
    "payout_method",
    "payout_email",
    "payout_reference",
    "notes",
    "status",
    "codes",
    "opening_balance",
    "opening_balance_reason",
];

/// The columns it must have.
pub const REQUIRED: [&str; 2] = ["name", "email"];

/// What an opening balance's ledger entry says (the file's reason follows it).
const OPENING_BALANCE: &str = "Opening balance";

/// One row, parsed.
struct Line {
    new: NewAmbassador,
    status: AmbassadorStatus,
    codes: Vec<ReferralCode>,
    opening_balance: Option<(i64, String)>,
}

/// A code from the old system: its shape decides whether it was generated (`7Q4K-9MZD`) or
/// chosen (`JAMES10`); either way it is kept as it was.
fn code_kind(code: &ReferralCode) -> CodeKind {
    let display = code.display().as_bytes();
    if display.len() == 9 && display[4] == b'-' && code.normalized().len() == 8 {
        CodeKind::Generated
    } else {
        CodeKind::Vanity
    }
}

/// Moves a nested validation's errors into `v`, renaming the API's field names to this
/// file's columns.
fn merge(v: &mut Validation, nested: Result<(), DomainError>, rename: &[(&str, &str)]) {
    if let Err(DomainError::Validation(errors)) = nested {
        for e in errors {
            let field = rename.iter().find(|(api, _)| *api == e.field).map_or(e.field.as_str(), |(_, col)| col);
            v.push(field, e.message);
        }
    }
}

fn parse(row: &Row<'_>) -> Result<Line> {
    let mut v = Validation::new();
    let PersonFields { name, email, phone, display_name } = parse_person(
        &mut v,
        row.ctx.settings,
        row.get("name").unwrap_or_default(),
        row.get("email").unwrap_or_default(),
        row.get("phone"),
        row.get("display_name"),
    );
    let show_name = v.check("show_name_to_referrals", parse_bool(row.get("show_name_to_referrals")));
    if show_name == Some(true) && matches!(display_name, Some(None)) {
        v.push("display_name", "is required when show_name_to_referrals is true");
    }
    let payout_method = payout_of(&mut v, row);
    let notes = v.check("notes", optional_text(row.get("notes"), NOTES_MAX));
    let status = status_of(&mut v, row);
    let codes = codes_of(&mut v, row);
    let opening_balance = opening_balance_of(&mut v, row);
    v.finish()?;
    Ok(Line {
        new: NewAmbassador {
            name: name.unwrap_or_default(),
            email: email.ok_or_else(|| Error::internal("validated e-mail missing"))?,
            phone: phone.flatten(),
            display_name: display_name.flatten(),
            show_name_to_referrals: show_name.unwrap_or_default(),
            payout_method: payout_method.flatten(),
            notifications: NotificationPreferences::default(),
            notes: notes.flatten(),
            application_message: None,
            vanity_code: None,
        },
        status: status.unwrap_or(AmbassadorStatus::Active),
        codes,
        opening_balance,
    })
}

/// The `payout_method` column with `payout_email` / `payout_reference`, checked as the API
/// checks a payout method (its errors named by this file's columns).
fn payout_of(v: &mut Validation, row: &Row<'_>) -> Option<Option<PayoutMethod>> {
    let method = match row.get("payout_method").map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("paypal") => Some(PayoutMethod::Paypal { email: row.get("payout_email").unwrap_or_default().to_owned() }),
        Some("bank") => {
            Some(PayoutMethod::Bank { reference: row.get("payout_reference").unwrap_or_default().to_owned() })
        }
        Some("store_credit") => Some(PayoutMethod::StoreCredit),
        Some(_) => {
            v.push("payout_method", "must be paypal, bank or store_credit");
            None
        }
    };
    let mut payout = Validation::new();
    let payout_method = parse_payout(&mut payout, method);
    merge(
        v,
        payout.finish(),
        &[("payout_method.email", "payout_email"), ("payout_method.reference", "payout_reference")],
    );
    payout_method
}

/// The `status` column (active when empty).
fn status_of(v: &mut Validation, row: &Row<'_>) -> Option<AmbassadorStatus> {
    match row.get("status").map(str::to_ascii_lowercase).as_deref() {
        None | Some("active") => Some(AmbassadorStatus::Active),
        Some("suspended") => Some(AmbassadorStatus::Suspended),
        Some("closed") => Some(AmbassadorStatus::Closed),
        Some(_) => {
            v.push("status", "must be active, suspended or closed");
            None
        }
    }
}

/// The `codes` column: codes separated by `;`, `,` or spaces, each once.
fn codes_of(v: &mut Validation, row: &Row<'_>) -> Vec<ReferralCode> {
    let mut codes: Vec<ReferralCode> = Vec::new();
    for raw in row.get("codes").unwrap_or_default().split([';', ' ', ',']).filter(|c| !c.is_empty()) {
        match ReferralCode::parse_vanity(raw) {
            Ok(c) if codes.iter().any(|k| k.normalized() == c.normalized()) => {
                v.push("codes", format!("`{raw}` appears twice"));
            }
            Ok(c) => codes.push(c),
            Err(m) => v.push("codes", format!("`{raw}` {m}")),
        }
    }
    codes
}

/// The `opening_balance` column with its reason: the amount and the ledger entry's reason.
fn opening_balance_of(v: &mut Validation, row: &Row<'_>) -> Option<(i64, String)> {
    let Some(raw) = row.get("opening_balance") else {
        if row.get("opening_balance_reason").is_some() {
            v.push("opening_balance_reason", "is only used with opening_balance");
        }
        return None;
    };
    let amount = Money::parse(raw, row.currency.clone()).map(|m| m.minor);
    let reason = match row.get("opening_balance_reason") {
        Some(r) => format!("{OPENING_BALANCE}: {r}"),
        None => OPENING_BALANCE.to_owned(),
    };
    match parse_adjustment("opening_balance", amount, &reason) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            merge(v, Err(e), &[("reason", "opening_balance_reason")]);
            None
        }
    }
}

/// What the file changes in an existing ambassador: the fields it has columns for. Status is
/// changed only through the lifecycle, never by an import.
fn changes_for(before: &AmbassadorRow, row: &Row<'_>, new: &NewAmbassador) -> AmbassadorChanges {
    AmbassadorChanges {
        name: (new.name != before.name).then(|| new.name.clone()),
        email: None,
        phone: (row.has("phone") && new.phone.as_ref().map(|p| p.as_str()) != before.phone.as_deref())
            .then(|| new.phone.clone()),
        display_name: (row.has("display_name") && new.display_name != before.display_name)
            .then(|| new.display_name.clone()),
        show_name_to_referrals: (row.has("show_name_to_referrals")
            && new.show_name_to_referrals != before.show_name_to_referrals)
            .then_some(new.show_name_to_referrals),
        payout_method: (row.has("payout_method") && new.payout_method != before.payout())
            .then(|| new.payout_method.clone()),
        notifications: None,
        notes: (row.has("notes") && new.notes != before.notes).then(|| new.notes.clone()),
    }
}

fn code_taken(raw: &str) -> Error {
    Error::Conflict {
        kind: "code-taken",
        detail: format!("`{raw}` belongs to another ambassador (codes stay reserved even after deactivation)."),
        field: Some("codes"),
    }
}

/// Imports one row (inside its savepoint) and says what it did, with the ambassador's id.
pub(super) fn import(conn: &mut DbConnection, row: &Row<'_>) -> Result<(Outcome, String)> {
    let line = parse(row)?;
    let (ctx, at) = (row.ctx, now());
    let (id, mut outcome) = match store::find_by_email(conn, line.new.email.as_str())? {
        Some(before) => update_existing(conn, row, &line, &before, at)?,
        None => (enrol(conn, row, &line, at)?, Outcome::Created),
    };
    let added_codes = add_codes(conn, row, &line, &id, at)?;
    if added_codes {
        outcome = outcome.max_with(Outcome::Updated);
    }
    if outcome == Outcome::Created && !added_codes {
        codes::issue(conn, &id, None, ctx.actor)?;
    }
    if let Some((amount, reason)) = &line.opening_balance {
        if !crate::store::rewards::has_adjustment(conn, &id, reason)? {
            rewards::adjust_in_tx(conn, ctx.calendar, &id, *amount, reason, ctx.actor)?;
            outcome = outcome.max_with(Outcome::Updated);
        }
    }
    if row.opts.send_welcome && outcome == Outcome::Created && line.status == AmbassadorStatus::Active {
        let ambassador = store::find(conn, &id)?;
        let codes = code_store::list_for(conn, &id)?;
        if let Some(code) = codes.iter().find(|c| c.active).or(codes.first()) {
            notices::ambassador_welcome(conn, ctx.mail, &ambassador, code)?;
        }
    }
    Ok((outcome, id))
}

/// An audit event's details: the import's id and `extra`.
fn details(row: &Row<'_>, extra: serde_json::Value) -> Option<serde_json::Value> {
    let mut d = serde_json::json!({ "import_id": row.import_id });
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
        d.extend(extra);
    }
    Some(d)
}

/// An ambassador already there (found by e-mail): the fields the file changes.
fn update_existing(
    conn: &mut DbConnection,
    row: &Row<'_>,
    line: &Line,
    before: &AmbassadorRow,
    at: chrono::NaiveDateTime,
) -> Result<(String, Outcome)> {
    let changes = changes_for(before, row, &line.new);
    let fields = changes.changed_fields();
    if fields.is_empty() {
        return Ok((before.id.clone(), Outcome::Unchanged));
    }
    store::apply_changes(conn, &before.id, &changes, at)?;
    // Field names only: the audit trail must not become a second copy of personal data.
    row.record_all(
        conn,
        vec![Change {
            action: AuditAction::AmbassadorUpdated,
            entity_type: EntityType::Ambassador,
            entity_id: &before.id,
            before: Some(before.status.as_str()),
            after: Some(before.status.as_str()),
            details: details(row, serde_json::json!({ "fields": fields })),
        }],
    )?;
    Ok((before.id.clone(), Outcome::Updated))
}

/// A new address: enrols the ambassador, then moves them to the file's status; their id.
fn enrol(conn: &mut DbConnection, row: &Row<'_>, line: &Line, at: chrono::NaiveDateTime) -> Result<String> {
    let id = new_id();
    store::insert(conn, &id, &line.new, (AmbassadorStatus::Active, Enrolment::ByStaff), at)?;
    row.record_all(
        conn,
        vec![Change {
            action: AuditAction::AmbassadorEnrolled,
            entity_type: EntityType::Ambassador,
            entity_id: &id,
            before: None,
            after: Some(AmbassadorStatus::Active.as_str()),
            details: details(row, serde_json::json!({})),
        }],
    )?;
    // Suspended or closed in the old system: enrolled, then moved there, as staff would.
    if line.status != AmbassadorStatus::Active {
        store::set_status(conn, &id, (AmbassadorStatus::Active, line.status), Some("imported"), at)?;
        let action = match line.status {
            AmbassadorStatus::Suspended => AuditAction::AmbassadorSuspended,
            _ => AuditAction::AmbassadorClosed,
        };
        row.record_all(
            conn,
            vec![Change {
                action,
                entity_type: EntityType::Ambassador,
                entity_id: &id,
                before: Some(AmbassadorStatus::Active.as_str()),
                after: Some(line.status.as_str()),
                details: details(row, serde_json::json!({ "reason": "imported" })),
            }],
        )?;
    }
    Ok(id)
}

/// Adds the file's codes the ambassador lacks (refusing one another ambassador holds); whether
/// any was added.
fn add_codes(conn: &mut DbConnection, row: &Row<'_>, line: &Line, id: &str, at: chrono::NaiveDateTime) -> Result<bool> {
    let mut added = false;
    for code in &line.codes {
        match code_store::find_typed(conn, code.normalized())? {
            Some(c) if c.ambassador_id == id => {}
            Some(_) => return Err(code_taken(code.display())),
            None => {
                let code_id = new_id();
                code_store::insert(conn, &code_id, id, (code, code_kind(code)), at).map_err(|e| {
                    if e.lost_race() {
                        code_taken(code.display())
                    } else {
                        e.into()
                    }
                })?;
                row.record_all(
                    conn,
                    vec![Change {
                        action: AuditAction::CodeCreated,
                        entity_type: EntityType::ReferralCode,
                        entity_id: &code_id,
                        before: None,
                        after: Some("active"),
                        details: details(row, serde_json::json!({ "ambassador_id": id })),
                    }],
                )?;
                added = true;
            }
        }
    }
    Ok(added)
}
