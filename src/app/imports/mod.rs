//! Imports from a spreadsheet (CSV): a program moving to Vouch brings its ambassadors (with
//! their existing codes and opening balances, [`ambassadors`]) and its referred clients (in
//! any status, with their dates, [`referrals`]).
//!
//! The file is read as a stream, row by row; every row is parsed into the same domain types
//! the API uses, then written one transaction per chunk of [`CHUNK_ROWS`] rows. Inside a chunk
//! each row is its own savepoint, so a refused row is listed (line, field, why) and the good
//! rows go on, and a refused row never leaves half of itself behind; a chunk is all or
//! nothing, and its audit event carries its counts. A dry run takes exactly the same path
//! and rolls every chunk back, so it reports what the real run will do. Re-running a file is
//! idempotent: a row already imported as the file describes it is `unchanged`, so a run cut
//! off after some chunks resumes where it stopped when the file is run again.
//!
//! Idempotent also when two runs of the same file overlap (two requests, the CLI on one
//! instance and the API on another): every chunk transaction first takes its kind's import
//! lock ([`crate::store::imports::lock`]), so the chunks of the two runs take turns and each
//! looks its rows up only after the other's chunk has committed. A lock and not unique indexes,
//! because what finds a row again is not unique in Vouch (an `external_ref` or a client and day
//! may be shared by two referrals, one cancelled; an opening balance is an ordinary
//! adjustment): an index there would refuse records the API rightly accepts. The unique indexes
//! Vouch does have (an ambassador's e-mail, a code, one live referral per client contact) stay
//! the backstop against writes from outside imports.

pub mod ambassadors;
pub mod referrals;

use std::io::Read;

use diesel::Connection;
use serde::Serialize;

use super::{Error, Result};
use crate::app::audit::{self, Actor, Change, EntityType};
use crate::config::Settings;
use crate::db::{write_tx, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::contact::ContactHasher;
use crate::domain::money::Currency;
use crate::domain::{FieldError, Validation};
use crate::email::MailContext;
use crate::store::new_id;

/// Rows written per transaction: large enough to be fast, small enough that a writer never
/// holds the database for long.
pub const CHUNK_ROWS: usize = 1000;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Ambassadors,
    Referrals,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ambassadors => "ambassadors",
            Self::Referrals => "referrals",
        }
    }

    /// The columns a file of this kind may have, and those it must have.
    pub fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Ambassadors => (&ambassadors::COLUMNS, &ambassadors::REQUIRED),
            Self::Referrals => (&referrals::COLUMNS, &referrals::REQUIRED),
        }
    }
}

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

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Refused => "refused",
        }
    }

    /// A created row stays created when more is added to it; an unchanged one becomes updated.
    fn max_with(self, other: Self) -> Self {
        if self == Outcome::Unchanged {
            other
        } else {
            self
        }
    }
}

/// One data row's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowReport {
    /// The row's line in the file (the header is line 1).
    pub line: u64,
    pub outcome: Outcome,
    /// The record's id (created, updated or unchanged). In a dry run the id of a created row
    /// is only an example: the real run assigns another.
    pub id: Option<String>,
    /// What finds the row again: the ambassador's e-mail address, or the referral's
    /// `external_ref` (a client's contact details are never echoed).
    pub key: Option<String>,
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
    /// Ambassadors: queue the welcome e-mail (with the code) for each ambassador created
    /// active. Off by default: an import sends no e-mail at all.
    pub send_welcome: bool,
}

/// What the rows are checked and written with.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub calendar: &'a Calendar,
    pub mail: &'a MailContext,
    pub hasher: &'a ContactHasher,
    pub actor: &'a Actor,
}

/// What one row is checked and written with, besides the connection.
struct Row<'a> {
    cols: &'a Columns,
    record: &'a csv::StringRecord,
    currency: &'a Currency,
    opts: Options,
    ctx: &'a Context<'a>,
    import_id: &'a str,
    /// Whether any webhook endpoint is enabled (read once per chunk).
    webhooks: bool,
    /// The program version in force on each completion day met so far.
    programs: &'a std::cell::RefCell<std::collections::HashMap<chrono::NaiveDate, crate::store::program::Program>>,
}

impl Row<'_> {
    /// Writes the row's audit events in one statement, queueing the webhook events they stand
    /// for (`app::audit`); when no endpoint is enabled at all there is nothing to queue, and the
    /// events go straight to the trail without a lookup per event (100,000 rows: 300,000 fewer
    /// queries).
    fn record_all<'c>(&'c self, conn: &mut DbConnection, changes: Vec<Change<'c>>) -> diesel::QueryResult<()> {
        if self.webhooks {
            audit::record_many(conn, self.ctx.actor, changes)
        } else {
            crate::store::audit::record_many(conn, self.ctx.actor, changes)
        }
    }

    /// The cell of `column`, trimmed; `None` when the file has no such column or the cell is
    /// blank.
    fn get(&self, column: &str) -> Option<&str> {
        self.cols.get(self.record, column)
    }

    fn has(&self, column: &str) -> bool {
        self.cols.has(column)
    }
}

/// The column positions of a file, from its header row.
struct Columns {
    names: &'static [&'static str],
    at: Vec<Option<usize>>,
}

impl Columns {
    /// Matches the header (any case, surrounding spaces ignored); an unknown, repeated or
    /// missing required column refuses the whole file before any row is read.
    fn parse(kind: Kind, header: &csv::StringRecord) -> Result<Self> {
        let (names, required) = kind.columns();
        let mut v = Validation::new();
        let mut at = vec![None; names.len()];
        for (i, name) in header.iter().enumerate() {
            // A spreadsheet saving as "CSV UTF-8" starts the file with a byte-order mark.
            let name = name.trim_start_matches('\u{feff}').trim().to_ascii_lowercase();
            match names.iter().position(|c| *c == name) {
                Some(k) if at[k].is_some() => v.push("header", format!("column `{name}` appears twice")),
                Some(k) => at[k] = Some(i),
                None => v.push("header", format!("unknown column `{name}` (known: {})", names.join(", "))),
            }
        }
        for column in required {
            if names.iter().position(|c| c == column).and_then(|k| at[k]).is_none() {
                v.push("header", format!("column `{column}` is required"));
            }
        }
        v.finish()?;
        Ok(Self { names, at })
    }

    fn position(&self, column: &str) -> Option<usize> {
        let k = self.names.iter().position(|c| *c == column)?;
        self.at[k]
    }

    fn has(&self, column: &str) -> bool {
        self.position(column).is_some()
    }

    fn get<'r>(&self, row: &'r csv::StringRecord, column: &str) -> Option<&'r str> {
        self.position(column).and_then(|i| row.get(i)).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// `true`/`false` (also `yes`/`no`, `1`/`0`); blank is false.
fn parse_bool(raw: Option<&str>) -> Result<bool, String> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "no" | "0") => Ok(false),
        Some("true" | "yes" | "1") => Ok(true),
        Some(_) => Err("must be true or false".into()),
    }
}

/// The refusal of a row as the API would give it: each field with its message.
fn field_errors(e: Error) -> Result<Vec<FieldError>> {
    Ok(match e {
        Error::Validation(errors) => errors,
        Error::Conflict { detail, field, .. } | Error::Unprocessable { detail, field, .. } => {
            vec![FieldError::new(field.unwrap_or("row"), detail)]
        }
        Error::DuplicateReferral { existing_referral_id } => {
            vec![FieldError::new("email", format!("the client already has a live referral ({existing_referral_id})"))]
        }
        Error::InvalidTransition { .. } | Error::NotFound(_) | Error::Forbidden => {
            vec![FieldError::new("row", e.to_string())]
        }
        // A unique index refused the row: another row of the file (or a concurrent request)
        // holds what it claims.
        Error::Store(crate::store::StoreError::LostRace) => {
            vec![FieldError::new("row", "conflicts with a record written at the same time")]
        }
        // The database itself failed: stop; the chunk rolls back and a re-run resumes.
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

/// Imports a file of `kind` from `input` (read as a stream), calling `on_row` with each row's
/// report in file order as its chunk finishes; returns the totals. A header that is not
/// understood refuses the file (nothing is read further); a database failure stops the
/// import after the last committed chunk (run the file again to resume).
pub fn run(
    conn: &mut DbConnection,
    kind: Kind,
    input: impl Read,
    opts: Options,
    ctx: &Context<'_>,
    on_row: &mut dyn FnMut(&RowReport),
) -> Result<Totals> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let header = reader.headers().map_err(|e| Error::validation("header", csv_message(&e)))?.clone();
    let cols = Columns::parse(kind, &header)?;
    let currency = crate::store::program::current(conn)?.rules.currency;
    let import_id = new_id();
    let programs = std::cell::RefCell::new(std::collections::HashMap::new());
    let file = File { kind, cols: &cols, currency: &currency, import_id: &import_id, programs: &programs };
    let mut totals = Totals::default();
    let mut records = reader.into_records();
    let mut line = 1u64;
    loop {
        let chunk = read_chunk(&mut records, &mut line)?;
        if chunk.is_empty() {
            break;
        }
        for r in &write_chunk(conn, &file, &chunk, opts, ctx)? {
            totals.add(r.outcome);
            on_row(r);
        }
    }
    Ok(totals)
}

/// Rows of a file as read: each with its line, or why it could not be read.
type Chunk = Vec<(u64, Result<csv::StringRecord, FieldError>)>;

/// The next [`CHUNK_ROWS`] rows (fewer at the end of the file, none after it); `line` is the
/// last line read.
fn read_chunk(records: &mut csv::StringRecordsIntoIter<impl Read>, line: &mut u64) -> Result<Chunk> {
    let mut chunk: Chunk = Vec::with_capacity(CHUNK_ROWS);
    for record in records.by_ref().take(CHUNK_ROWS) {
        if let Err(e) = &record {
            if let csv::ErrorKind::Io(io) = e.kind() {
                // The upload broke off: what is committed stays (a re-run resumes).
                return Err(Error::validation("body", format!("could not be read: {io}")));
            }
        }
        *line = match &record {
            Ok(r) => r.position().map_or(*line + 1, |p| p.line()),
            Err(e) => e.position().map_or(*line + 1, |p| p.line()),
        };
        chunk.push((*line, record.map_err(|e| FieldError::new("row", csv_message(&e)))));
    }
    Ok(chunk)
}

/// What the whole file shares.
struct File<'a> {
    kind: Kind,
    cols: &'a Columns,
    currency: &'a Currency,
    import_id: &'a str,
    programs: &'a std::cell::RefCell<std::collections::HashMap<chrono::NaiveDate, crate::store::program::Program>>,
}

/// Writes one chunk in one transaction (rolled back in a dry run) and reports its rows.
fn write_chunk(
    conn: &mut DbConnection,
    file: &File<'_>,
    chunk: &Chunk,
    opts: Options,
    ctx: &Context<'_>,
) -> Result<Vec<RowReport>> {
    let ran = write_tx(conn, |conn| {
        // First, before a row is looked up: another import of this kind (another request, the
        // CLI, another instance) writes its chunk to the end before this one looks (see
        // `store::imports::lock`). A dry run waits too, so it reports what the real run would.
        crate::store::imports::lock(conn, file.kind.as_str())?;
        let mut reports = Vec::with_capacity(chunk.len());
        let mut counts = Totals::default();
        let webhooks = !crate::store::webhooks::enabled_endpoints(conn)?.is_empty();
        let shared = Shared { import_id: file.import_id, webhooks, programs: file.programs };
        for (line, record) in chunk {
            let report = import_row(conn, file.kind, *line, record, file.cols, file.currency, opts, ctx, &shared)?;
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
                entity_id: file.import_id,
                before: None,
                after: None,
                details: Some(serde_json::json!({
                    "kind": file.kind.as_str(),
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
    match ran {
        Ok(r) | Err(ChunkEnd::DryRun(r)) => Ok(r),
        Err(ChunkEnd::Failed(e)) => Err(e),
    }
}

/// What every row of a chunk shares.
struct Shared<'a> {
    import_id: &'a str,
    webhooks: bool,
    programs: &'a std::cell::RefCell<std::collections::HashMap<chrono::NaiveDate, crate::store::program::Program>>,
}

#[allow(clippy::too_many_arguments)]
fn import_row(
    conn: &mut DbConnection,
    kind: Kind,
    line: u64,
    record: &Result<csv::StringRecord, FieldError>,
    cols: &Columns,
    currency: &Currency,
    opts: Options,
    ctx: &Context<'_>,
    shared: &Shared<'_>,
) -> Result<RowReport> {
    let refused = |key: Option<String>, errors| RowReport { line, outcome: Outcome::Refused, id: None, key, errors };
    let record = match record {
        Ok(row) => row,
        Err(e) => return Ok(refused(None, vec![e.clone()])),
    };
    let row = Row {
        cols,
        record,
        currency,
        opts,
        ctx,
        import_id: shared.import_id,
        webhooks: shared.webhooks,
        programs: shared.programs,
    };
    let key = match kind {
        Kind::Ambassadors => row.get("email"),
        Kind::Referrals => row.get("external_ref"),
    }
    .map(str::to_owned);
    // Each row in its own savepoint: a refused row leaves nothing behind.
    let applied = conn.transaction(|conn| match kind {
        Kind::Ambassadors => ambassadors::import(conn, &row),
        Kind::Referrals => referrals::import(conn, &row),
    });
    match applied {
        Ok((outcome, id)) => Ok(RowReport { line, outcome, id: Some(id), key, errors: Vec::new() }),
        Err(e) => Ok(refused(key, field_errors(e)?)),
    }
}

/// A CSV reader error in words (no Rust debug output).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("has {len} cells; the header has {expected_len}")
        }
        csv::ErrorKind::Io(e) => format!("could not be read: {e}"),
        _ => "could not be read as CSV".into(),
    }
}
