//! Versions of the program rules. The highest version is in force; versions are never edited,
//! and each reward keeps the id of the version it was computed under.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{program_versions as pv, rewards};
use crate::db::DbConnection;
use crate::domain::money::Currency;
use crate::domain::program::{ProgramRules, RewardRule, Tier};
use crate::store::{Page, PageRequest, StoreError, WriteError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pv)]
pub struct ProgramVersionRow {
    pub id: String,
    pub version: i32,
    pub currency: String,
    pub reward: String,
    pub tiers: String,
    pub holding_days: i32,
    pub min_payout_minor: i64,
    pub annual_cap_minor: Option<i64>,
    pub attribution_days: i32,
    pub client_offer: Option<String>,
    pub tax_threshold_minor: i64,
    pub created_by: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub effective_from: chrono::NaiveDateTime,
}

/// A version of the rules as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProgramView {
    pub id: String,
    pub version: i32,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub effective_from: chrono::NaiveDateTime,
    /// `system` for the defaults, else the API key that made this version.
    pub created_by: String,
    pub currency: String,
    pub reward: RewardRule,
    pub tiers: Vec<Tier>,
    pub holding_days: i64,
    pub min_payout_minor: i64,
    pub annual_cap_minor: Option<i64>,
    pub attribution_days: i64,
    pub client_offer: Option<String>,
    pub tax_threshold_minor: i64,
}

/// The version in force: its row id and its parsed rules.
#[derive(Debug, Clone)]
pub struct Program {
    pub id: String,
    pub rules: ProgramRules,
}

impl ProgramVersionRow {
    /// Rows are only ever written from validated rules, so they parse back; a row edited by
    /// hand into something unreadable fails the read (an internal error, not a client one).
    pub fn rules(&self) -> QueryResult<ProgramRules> {
        let parse = || -> Result<ProgramRules, serde_json::Error> {
            Ok(ProgramRules {
                currency: Currency::from_stored(&self.currency),
                reward: serde_json::from_str(&self.reward)?,
                tiers: serde_json::from_str(&self.tiers)?,
                holding_days: self.holding_days.into(),
                min_payout_minor: self.min_payout_minor,
                annual_cap_minor: self.annual_cap_minor,
                attribution_days: self.attribution_days.into(),
                client_offer: self.client_offer.clone(),
                tax_threshold_minor: self.tax_threshold_minor,
            })
        };
        parse().map_err(|e| unreadable(e.to_string()))
    }

    pub fn view(self) -> QueryResult<ProgramView> {
        let rules = self.rules()?;
        Ok(ProgramView {
            id: self.id,
            version: self.version,
            effective_from: self.effective_from,
            created_by: self.created_by,
            currency: rules.currency.to_string(),
            reward: rules.reward,
            tiers: rules.tiers,
            holding_days: rules.holding_days,
            min_payout_minor: rules.min_payout_minor,
            annual_cap_minor: rules.annual_cap_minor,
            attribution_days: rules.attribution_days,
            client_offer: rules.client_offer,
            tax_threshold_minor: rules.tax_threshold_minor,
        })
    }
}

/// Stored rules that cannot be read back (never written so by Vouch).
fn unreadable(why: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(why.into())
}

pub fn current_row(conn: &mut DbConnection) -> QueryResult<ProgramVersionRow> {
    pv::table
        .order(pv::version.desc())
        .select(ProgramVersionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| unreadable("no program version: migrations not run".into()))
}

/// The rules in force, with the row share-locked until the transaction ends: on PostgreSQL a
/// completion and a rule change (which takes the row exclusively, [`current_exclusive`]) queue
/// behind each other, so a currency change can never slip in between a completion reading the
/// rules and writing its reward — while completions, sharing the lock, run side by side (an
/// exclusive lock here made every completion wait for the one before: ~75 a second at most).
/// SQLite's writers are serialised already.
pub fn current_locked(conn: &mut DbConnection) -> QueryResult<Program> {
    if let DbConnection::Postgres(pg) = conn {
        LockNewestPg.execute(pg)?;
    }
    current(conn)
}

/// The newest version's row, found and share-locked in one statement that each connection
/// keeps prepared (every completion runs it).
struct LockNewestPg;

crate::db::prepared_statement!(LockNewestPg);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for LockNewestPg {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT id FROM program_versions WHERE version = (SELECT max(version) FROM program_versions) FOR SHARE",
        );
        Ok(())
    }
}

/// The rules in force, the row locked exclusively until the transaction ends (a no-op
/// update): a rule change waits for the completions reading the rules, and they for it.
pub fn current_exclusive(conn: &mut DbConnection) -> QueryResult<Program> {
    let newest = pv::table.select(diesel::dsl::max(pv::version)).first::<Option<i32>>(conn)?.unwrap_or(0);
    diesel::update(pv::table.filter(pv::version.eq(newest))).set(pv::version.eq(pv::version)).execute(conn)?;
    current(conn)
}

/// The rules in force now.
pub fn current(conn: &mut DbConnection) -> QueryResult<Program> {
    let row = current_row(conn)?;
    Ok(Program { rules: row.rules()?, id: row.id })
}

/// One version of the rules by id (what a payout batch or a reward was built with).
pub fn version(conn: &mut DbConnection, id: &str) -> QueryResult<Program> {
    let row = pv::table
        .find(id)
        .select(ProgramVersionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| unreadable(format!("program version {id} is missing")))?;
    Ok(Program { rules: row.rules()?, id: row.id })
}

pub fn current_view(conn: &mut DbConnection) -> QueryResult<ProgramView> {
    current_row(conn)?.view()
}

pub fn versions(conn: &mut DbConnection, page: &PageRequest) -> QueryResult<Page<ProgramView>> {
    let mut query = pv::table.select(ProgramVersionRow::as_select()).order(pv::id.desc()).into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(pv::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    let page = page.finish(rows, |r| &r.id);
    let items = page.items.into_iter().map(ProgramVersionRow::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next_cursor: page.next_cursor })
}

fn to_json(value: &impl Serialize) -> QueryResult<String> {
    serde_json::to_string(value).map_err(|e| diesel::result::Error::SerializationError(e.into()))
}

/// Whether any reward exists (then the currency is fixed).
pub fn any_rewards(conn: &mut DbConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(rewards::table.select(rewards::id))).get_result(conn)
}

/// Writes version `version` of the rules; `LostRace` when another was written with the same
/// number at the same moment.
pub fn insert_version(
    conn: &mut DbConnection,
    (id, version): (&str, i32),
    rules: &ProgramRules,
    created_by: &str,
    at: chrono::NaiveDateTime,
) -> Result<(), WriteError> {
    diesel::insert_into(pv::table)
        .values((
            pv::id.eq(id),
            pv::version.eq(version),
            pv::currency.eq(rules.currency.as_str()),
            pv::reward.eq(to_json(&rules.reward)?),
            pv::tiers.eq(to_json(&rules.tiers)?),
            pv::holding_days.eq(rules.holding_days as i32),
            pv::min_payout_minor.eq(rules.min_payout_minor),
            pv::annual_cap_minor.eq(rules.annual_cap_minor),
            pv::attribution_days.eq(rules.attribution_days as i32),
            pv::client_offer.eq(&rules.client_offer),
            pv::tax_threshold_minor.eq(rules.tax_threshold_minor),
            pv::created_by.eq(created_by),
            pv::effective_from.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    Ok(())
}

/// The version that was in force at `at` (the newest that took effect by then), if any.
pub fn in_force_at(conn: &mut DbConnection, at: chrono::NaiveDateTime) -> QueryResult<Option<Program>> {
    let row = pv::table
        .filter(pv::effective_from.le(at))
        .order(pv::version.desc())
        .select(ProgramVersionRow::as_select())
        .first(conn)
        .optional()?;
    row.map(|row| Ok(Program { rules: row.rules()?, id: row.id })).transpose()
}
