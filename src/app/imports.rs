//! Imports from a spreadsheet (CSV): a program moving to Vouch brings its ambassadors, with
//! their existing codes and opening balances. The file is read as a stream, row by row;
//! every row is parsed into the same domain types the API uses, then written one transaction
//! per chunk of [`CHUNK_ROWS`] rows. Inside a chunk each row is its own savepoint, so a
//! refused row is listed and the good rows go on; a chunk is all or nothing, and its audit
//! event carries its counts. A dry run takes exactly the same path and rolls every chunk back,
//! so it reports what the real run will do. Re-running a file is idempotent: a row whose
//! ambassador (same e-mail) is already there as described is `unchanged`.

use std::io::Read;

use diesel::Connection;

use serde::Serialize;

use super::input::{parse_payout, parse_person, PersonFields, NOTES_MAX};
use super::{codes, notices, rewards, Error, Result};
use crate::config::Settings;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::{AmbassadorStatus, Enrolment, NotificationPreferences, PayoutMethod};
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::code::{CodeKind, ReferralCode};
use crate::domain::money::Money;
use crate::domain::{optional_text, FieldError, Validation};
use crate::email::MailContext;
use crate::store::ambassadors::{self as store, AmbassadorChanges, AmbassadorRow, NewAmbassador};
use crate::store::audit::{self, Actor, Change, EntityType};
use crate::store::{codes as code_store, new_id};

/// Rows written per transaction: large enough to be fast, small enough that a writer never
/// holds the database for long.
pub const CHUNK_ROWS: usize = 1000;

/// The columns an ambassadors file may have (`name` and `email` are required).
pub const AMBASSADOR_COLUMNS: [&str; 13] = [
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

const REQUIRED_COLUMNS: [&str; 2] = ["name", "email"];

/// What an opening balance's ledger entry says when the file gives no reason.
const OPENING_BALANCE: &str = "Opening balance";

/// What happened (or, in a dry run, would happen) to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    /// Already there as the file describes it (a re-run).
    Unchanged,
    /// Not imported; `errors` says why.
    Refused,
}

/// One data row's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowReport {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    pub outcome: Outcome,
    /// The ambassador's id (created, updated or unchanged).
    pub id: Option<String>,
    /// The row's e-mail address as given, to find the row again.
    pub email: Option<String>,
    /// Each refused field with its message (the API's validation messages).
    pub errors: Vec<FieldError>,
}

/// How many rows ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: u64,
}

impl Totals {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Refused => self.refused += 1,
        }
    }
}

/// What the import is asked to do besides writing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Report only: every chunk is rolled back.
    pub dry_run: bool,
    /// Queue the welcome e-mail (with the code) for each ambassador created active.
    pub send_welcome: bool,
}

/// What the rows are checked and written with.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub calendar: &'a Calendar,
    pub mail: &'a MailContext,
    pub actor: &'a Actor,
}

/// The column positions of a file, from its header row.
struct Columns(Vec<Option<usize>>);

impl Columns {
    /// Matches the header (any case, surrounding spaces ignored); an unknown, repeated or
    /// missing required column refuses the whole file before any row is read.
    fn parse(header: &csv::StringRecord) -> Result<Self> {
        let mut v = Validation::new();
        let mut at = vec![None; AMBASSADOR_COLUMNS.len()];
        for (i, name) in header.iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            match AMBASSADOR_COLUMNS.iter().position(|c| *c == name) {
                Some(k) if at[k].is_some() => v.push("header", format!("column `{name}` appears twice")),
                Some(k) => at[k] = Some(i),
                None => v.push(
                    "header",
                    format!("unknown column `{name}` (known: {})", AMBASSADOR_COLUMNS.join(", ")),
                ),
            }
        }
        for required in REQUIRED_COLUMNS {
            if at[AMBASSADOR_COLUMNS.iter().position(|c| *c == required).unwrap_or_default()].is_none() {
                v.push("header", format!("column `{required}` is required"));
            }
        }
        v.finish()?;
        Ok(Self(at))
    }

    /// The cell of `column` in `row`, trimmed; `None` when the file has no such column or the
    /// cell is blank.
    fn get<'r>(&self, row: &'r csv::StringRecord, column: &str) -> Option<&'r str> {
        let k = AMBASSADOR_COLUMNS.iter().position(|c| *c == column)?;
        self.0[k].and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// One row, parsed.
struct AmbassadorLine {
    new: NewAmbassador,
    status: AmbassadorStatus,
    codes: Vec<ReferralCode>,
    opening_balance: Option<(i64, String)>,
}

fn parse_bool(raw: Option<&str>) -> Result<bool, String> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "no" | "0") => Ok(false),
        Some("true" | "yes" | "1") => Ok(true),
        Some(_) => Err("must be true or false".into()),
    }
}

/// A code from the old system: its shape decides whether it was generated (`7Q4K-9MZD`) or
/// chosen (`JAMES10`); either way it is kept as it was.
fn code_kind(code: &ReferralCode) -> CodeKind {
    let shaped = code.display().len() == 9 && code.display().as_bytes()[4] == b'-' && code.normalized().len() == 8;
    if shaped {
        CodeKind::Generated
    } else {
        CodeKind::Vanity
    }
}

fn parse_line(cols: &Columns, row: &csv::StringRecord, settings: &Settings, currency: &crate::domain::money::Currency) -> Result<AmbassadorLine, Vec<FieldError>> {
    let mut v = Validation::new();
    let get = |c: &str| cols.get(row, c);
    let PersonFields { name, email, phone, display_name } = parse_person(
        &mut v,
        settings,
        get("name").unwrap_or_default(),
        get("email").unwrap_or_default(),
        get("phone"),
        get("display_name"),
    );
    let show_name = v.check("show_name_to_referrals", parse_bool(get("show_name_to_referrals")));
    if show_name == Some(true) && matches!(display_name, Some(None)) {
        v.push("display_name", "is required when show_name_to_referrals is true");
    }
    let method = match get("payout_method") {
        None => None,
        Some("paypal") => Some(PayoutMethod::Paypal { email: get("payout_email").unwrap_or_default().to_owned() }),
        Some("bank") => Some(PayoutMethod::Bank { reference: get("payout_reference").unwrap_or_default().to_owned() }),
        Some("store_credit") => Some(PayoutMethod::StoreCredit),
        Some(_) => {
            v.push("payout_method", "must be paypal, bank or store_credit");
            None
        }
    };
    // The API's field names (`payout_method.email`) are this file's columns.
    let mut payout = Validation::new();
    let payout_method = parse_payout(&mut payout, method);
    if let Err(crate::domain::DomainError::Validation(errors)) = payout.finish() {
        for e in errors {
            let field = e.field.replace("payout_method.email", "payout_email").replace("payout_method.reference", "payout_reference");
            v.push(&field, e.message);
        }
    }
    let notes = v.check("notes", optional_text(get("notes"), NOTES_MAX));
    let status = match get("status").map(str::to_ascii_lowercase).as_deref() {
        None | Some("active") => Some(AmbassadorStatus::Active),
        Some("suspended") => Some(AmbassadorStatus::Suspended),
        Some("closed") => Some(AmbassadorStatus::Closed),
        Some(_) => {
            v.push("status", "must be active, suspended or closed");
            None
        }
    };
    let mut codes: Vec<ReferralCode> = Vec::new();
    for raw in get("codes").unwrap_or_default().split([';', ' ']).filter(|c| !c.is_empty()) {
        match ReferralCode::parse_vanity(raw) {
            Ok(c) if codes.iter().any(|k| k.normalized() == c.normalized()) => {
                v.push("codes", format!("`{raw}` appears twice"));
            }
            Ok(c) => codes.push(c),
            Err(m) => v.push("codes", format!("`{raw}` {m}")),
        }
    }
    let amount = get("opening_balance").map(|raw| {
        Money::parse(raw, currency.clone()).map(|m| m.minor)
    });
    let opening_balance = match amount {
        None => {
            if get("opening_balance_reason").is_some() {
                v.push("opening_balance_reason", "is only used with opening_balance");
            }
            None
        }
        Some(amount) => {
            let reason = match get("opening_balance_reason") {
                Some(r) => format!("{OPENING_BALANCE}: {r}"),
                None => OPENING_BALANCE.to_owned(),
            };
            match super::input::parse_adjustment("opening_balance", amount, &reason) {
                Ok(parsed) => Some(parsed),
                Err(crate::domain::DomainError::Validation(errors)) => {
                    for e in errors {
                        let field = if e.field == "reason" { "opening_balance_reason".to_owned() } else { e.field };
                        v.push(&field, e.message);
                    }
                    None
                }
                Err(e) => return Err(vec![FieldError::new("opening_balance", e.to_string())]),
            }
        }
    };
    if let Err(crate::domain::DomainError::Validation(errors)) = v.finish() {
        return Err(errors);
    }
    Ok(AmbassadorLine {
        new: NewAmbassador {
            name: name.unwrap_or_default(),
            email: email.expect("validated"),
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

/// What the file changes in an existing ambassador (the fields it has; status is changed only
/// through the lifecycle, never by an import).
fn changes_for(before: &AmbassadorRow, cols: &Columns, new: &NewAmbassador) -> AmbassadorChanges {
    let has = |c: &str| cols.0[AMBASSADOR_COLUMNS.iter().position(|k| *k == c).unwrap_or_default()].is_some();
    let differs = |a: Option<&str>, b: Option<&str>| a != b;
    AmbassadorChanges {
        name: (new.name != before.name).then(|| new.name.clone()),
        email: None,
        phone: (has("phone") && differs(new.phone.as_ref().map(|p| p.as_str()), before.phone.as_deref()))
            .then(|| new.phone.clone()),
        display_name: (has("display_name") && differs(new.display_name.as_deref(), before.display_name.as_deref()))
            .then(|| new.display_name.clone()),
        show_name_to_referrals: (has("show_name_to_referrals")
            && new.show_name_to_referrals != before.show_name_to_referrals)
            .then_some(new.show_name_to_referrals),
        payout_method: (has("payout_method") && new.payout_method != before.payout())
            .then(|| new.payout_method.clone()),
        notifications: None,
        notes: (has("notes") && differs(new.notes.as_deref(), before.notes.as_deref())).then(|| new.notes.clone()),
    }
}

fn code_taken(raw: &str) -> Error {
    Error::Conflict {
        kind: "code-taken",
        detail: format!("`{raw}` belongs to another ambassador (codes stay reserved even after deactivation)."),
        field: Some("codes"),
    }
}

/// Writes one parsed row (inside its savepoint) and says what it did.
fn apply_ambassador(
    conn: &mut DbConnection,
    cols: &Columns,
    line: AmbassadorLine,
    opts: Options,
    ctx: &Context<'_>,
) -> Result<(Outcome, String)> {
    let at = now();
    let existing = store::find_by_email(conn, line.new.email.as_str())?;
    let (id, mut outcome) = match &existing {
        Some(before) => {
            let changes = changes_for(before, cols, &line.new);
            if changes.changed_fields().is_empty() {
                (before.id.clone(), Outcome::Unchanged)
            } else {
                store::apply_changes(conn, &before.id, &changes, at)?;
                (before.id.clone(), Outcome::Updated)
            }
        }
        None => {
            let id = new_id();
            store::insert(conn, &id, &line.new, (AmbassadorStatus::Active, Enrolment::ByStaff), at)?;
            if line.status != AmbassadorStatus::Active {
                store::set_status(conn, &id, (AmbassadorStatus::Active, line.status), Some("imported"), at)?;
            }
            (id, Outcome::Created)
        }
    };
    let mut kept = code_store::list_for(conn, &id)?;
    for code in &line.codes {
        match code_store::find_typed(conn, code.normalized())? {
            Some(c) if c.ambassador_id == id => {}
            Some(_) => return Err(code_taken(code.display())),
            None => {
                let code_id = new_id();
                code_store::insert(conn, &code_id, &id, (code, code_kind(code)), at)
                    .map_err(|e| if e.lost_race() { code_taken(code.display()) } else { e.into() })?;
                kept.push(code_store::find(conn, &code_id)?);
                outcome = outcome.max_with(Outcome::Updated);
            }
        }
    }
    if outcome == Outcome::Created && kept.is_empty() && line.status == AmbassadorStatus::Active {
        kept.push(codes::issue(conn, &id, None, ctx.actor)?);
    }
    if let Some((amount, reason)) = &line.opening_balance {
        if !crate::store::rewards::has_adjustment(conn, &id, reason)? {
            rewards::adjust_in_tx(conn, ctx.calendar, &id, *amount, reason, ctx.actor)?;
            outcome = outcome.max_with(Outcome::Updated);
        }
    }
    if opts.send_welcome && outcome == Outcome::Created && line.status == AmbassadorStatus::Active {
        let amb = store::find(conn, &id)?;
        let code = kept.iter().find(|c| c.active).or(kept.first()).cloned();
        if let Some(code) = code {
            notices::ambassador_welcome(conn, ctx.mail, &amb, &code)?;
        }
    }
    Ok((outcome, id))
}

impl Outcome {
    /// A created row stays created when its codes are added; an unchanged one becomes updated.
    fn max_with(self, other: Self) -> Self {
        if self == Outcome::Unchanged {
            other
        } else {
            self
        }
    }
}

/// The refusal of a row as the API would give it: each field with its message.
fn field_errors(e: Error) -> Result<Vec<FieldError>> {
    Ok(match e {
        Error::Validation(errors) => errors,
        Error::Conflict { detail, field, .. } | Error::Unprocessable { detail, field, .. } => {
            vec![FieldError::new(field.unwrap_or("row"), detail)]
        }
        Error::InvalidTransition { .. } | Error::NotFound(_) | Error::Forbidden | Error::DuplicateReferral { .. } => {
            vec![FieldError::new("row", e.to_string())]
        }
        // The database itself failed: stop, the chunk rolls back and a re-run resumes.
        other => return Err(other),
    })
}

/// How a chunk's transaction ends: committed, or rolled back on purpose (a dry run).
enum ChunkEnd {
    Failed(Error),
    DryRun(Vec<RowReport>),
}

impl From<diesel::result::Error> for ChunkEnd {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed(e.into())
    }
}

impl From<Error> for ChunkEnd {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// Imports an ambassadors file from `input` (read as a stream), calling `on_row` with each
/// row's report in file order as its chunk finishes; returns the totals. A header that is
/// not understood refuses the file (nothing is read further); a database failure stops the
/// import after the last committed chunk (re-run the file to resume).
pub fn ambassadors(
    conn: &mut DbConnection,
    input: impl Read,
    opts: Options,
    ctx: &Context<'_>,
    on_row: &mut dyn FnMut(&RowReport),
) -> Result<Totals> {
    let mut reader = csv::ReaderBuilder::new().from_reader(input);
    let header = reader.headers().map_err(|e| Error::validation("header", csv_message(&e)))?.clone();
    let cols = Columns::parse(&header)?;
    let currency = crate::store::program::current(conn)?.rules.currency;
    let import_id = new_id();
    let mut totals = Totals::default();
    let mut records = reader.into_records();
    let mut line = 1u64;
    loop {
        let mut chunk: Vec<(u64, Result<csv::StringRecord, FieldError>)> = Vec::with_capacity(CHUNK_ROWS);
        for record in records.by_ref().take(CHUNK_ROWS) {
            line = match &record {
                Ok(r) => r.position().map_or(line + 1, |p| p.line()),
                Err(e) => e.position().map_or(line + 1, |p| p.line()),
            };
            chunk.push((line, record.map_err(|e| FieldError::new("row", csv_message(&e)))));
        }
        if chunk.is_empty() {
            break;
        }
        let ran = write_tx(conn, |conn| {
            let mut reports = Vec::with_capacity(chunk.len());
            let mut counts = Totals::default();
            for (line, record) in &chunk {
                let report = import_row(conn, &cols, *line, record, &currency, opts, ctx)?;
                counts.add(report.outcome);
                reports.push(report);
            }
            if opts.dry_run {
                return Err(ChunkEnd::DryRun(reports));
            }
            audit::record(
                conn,
                ctx.actor,
                Change {
                    action: AuditAction::ImportChunkApplied,
                    entity_type: EntityType::Import,
                    entity_id: &import_id,
                    before: None,
                    after: None,
                    details: Some(serde_json::json!({
                        "kind": "ambassadors",
                        "first_line": chunk.first().map(|c| c.0),
                        "last_line": chunk.last().map(|c| c.0),
                        "created": counts.created,
                        "updated": counts.updated,
                        "unchanged": counts.unchanged,
                        "refused": counts.refused,
                    })),
                },
            )?;
            Ok(reports)
        });
        let reports = match ran {
            Ok(r) | Err(ChunkEnd::DryRun(r)) => r,
            Err(ChunkEnd::Failed(e)) => return Err(e),
        };
        for r in &reports {
            totals.add(r.outcome);
            on_row(r);
        }
    }
    Ok(totals)
}

fn import_row(
    conn: &mut DbConnection,
    cols: &Columns,
    line: u64,
    record: &Result<csv::StringRecord, FieldError>,
    currency: &crate::domain::money::Currency,
    opts: Options,
    ctx: &Context<'_>,
) -> Result<RowReport> {
    let refused = |email: Option<String>, errors| RowReport { line, outcome: Outcome::Refused, id: None, email, errors };
    let row = match record {
        Ok(row) => row,
        Err(e) => return Ok(refused(None, vec![e.clone()])),
    };
    let email = cols.get(row, "email").map(str::to_owned);
    let parsed = match parse_line(cols, row, ctx.settings, currency) {
        Ok(p) => p,
        Err(errors) => return Ok(refused(email, errors)),
    };
    let applied = conn.transaction(|conn| apply_ambassador(conn, cols, parsed, opts, ctx));
    match applied {
        Ok((outcome, id)) => Ok(RowReport { line, outcome, id: Some(id), email, errors: Vec::new() }),
        Err(e) => Ok(refused(email, field_errors(e)?)),
    }
}

/// A CSV reader error in words (no Rust debug output).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("has {len} cells; the header has {expected_len}")
        }
        _ => format!("could not be read as CSV: {e}"),
    }
}
