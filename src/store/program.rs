//! Versions of the program rules. The highest version is in force; versions are never edited,
//! and each reward keeps the id of the version it was computed under.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{program_versions as pv, rewards};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::money::Currency;
use crate::domain::program::{ProgramRules, RewardRule, Tier};
use crate::error::ApiError;
use crate::store::audit::{self, Actor, Change};
use crate::store::{new_id, Page, PageRequest, StoreError};

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
    /// hand into something unreadable is an internal error, not a client one.
    pub fn rules(&self) -> Result<ProgramRules, ApiError> {
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
        parse().map_err(ApiError::internal)
    }

    pub fn view(self) -> Result<ProgramView, ApiError> {
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

fn current_row(conn: &mut DbConnection) -> Result<ProgramVersionRow, ApiError> {
    pv::table
        .order(pv::version.desc())
        .select(ProgramVersionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::internal("no program version: migrations not run"))
}

/// The rules in force, with the row share-locked until the transaction ends: on PostgreSQL a
/// completion and a rule change (which takes the row exclusively, [`current_exclusive`]) queue
/// behind each other, so a currency change can never slip in between a completion reading the
/// rules and writing its reward — while completions, sharing the lock, run side by side (an
/// exclusive lock here made every completion wait for the one before: ~75 a second at most).
/// SQLite's writers are serialised already.
pub fn current_locked(conn: &mut DbConnection) -> Result<Program, ApiError> {
    if let DbConnection::Postgres(pg) = conn {
        let newest = pv::table.select(diesel::dsl::max(pv::version)).first::<Option<i32>>(pg)?.unwrap_or(0);
        pv::table.filter(pv::version.eq(newest)).select(pv::id).for_share().load::<String>(pg)?;
    }
    current(conn)
}

/// The rules in force, the row locked exclusively until the transaction ends (a no-op
/// update): a rule change waits for the completions reading the rules, and they for it.
fn current_exclusive(conn: &mut DbConnection) -> Result<Program, ApiError> {
    let newest = pv::table.select(diesel::dsl::max(pv::version)).first::<Option<i32>>(conn)?.unwrap_or(0);
    diesel::update(pv::table.filter(pv::version.eq(newest))).set(pv::version.eq(pv::version)).execute(conn)?;
    current(conn)
}

/// The rules in force now.
pub fn current(conn: &mut DbConnection) -> Result<Program, ApiError> {
    let row = current_row(conn)?;
    Ok(Program { rules: row.rules()?, id: row.id })
}

/// One version of the rules by id (what a payout batch or a reward was built with).
pub fn version(conn: &mut DbConnection, id: &str) -> Result<Program, ApiError> {
    let row = pv::table
        .find(id)
        .select(ProgramVersionRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::internal(format!("program version {id} is missing")))?;
    Ok(Program { rules: row.rules()?, id: row.id })
}

pub fn current_view(conn: &mut DbConnection) -> Result<ProgramView, ApiError> {
    current_row(conn)?.view()
}

pub fn versions(conn: &mut DbConnection, page: &PageRequest) -> Result<Page<ProgramView>, ApiError> {
    let mut query = pv::table.select(ProgramVersionRow::as_select()).order(pv::id.desc()).into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(pv::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    let page = page.finish(rows, |r| &r.id);
    let items = page.items.into_iter().map(ProgramVersionRow::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next_cursor: page.next_cursor })
}

/// Makes `rules` the version in force from now on. Rewards already earned keep the version
/// they were computed under. The currency is fixed once any reward exists: amounts in two
/// currencies could not be summed into one balance or payout.
pub fn replace(conn: &mut DbConnection, rules: &ProgramRules, actor: &Actor) -> Result<ProgramView, ApiError> {
    write_tx(conn, |conn| {
        current_exclusive(conn)?;
        let before = current_row(conn)?;
        if before.currency != rules.currency.as_str() {
            let has_rewards: bool =
                diesel::select(diesel::dsl::exists(rewards::table.select(rewards::id))).get_result(conn)?;
            if has_rewards {
                return Err(ApiError::Unprocessable {
                    kind: "currency-locked",
                    detail: format!(
                        "Rewards already exist in {}; the program currency can no longer change.",
                        before.currency
                    ),
                    field: Some("currency"),
                });
            }
        }
        let id = new_id();
        let version = before.version + 1;
        diesel::insert_into(pv::table)
            .values((
                pv::id.eq(&id),
                pv::version.eq(version),
                pv::currency.eq(rules.currency.as_str()),
                pv::reward.eq(serde_json::to_string(&rules.reward).map_err(ApiError::internal)?),
                pv::tiers.eq(serde_json::to_string(&rules.tiers).map_err(ApiError::internal)?),
                pv::holding_days.eq(rules.holding_days as i32),
                pv::min_payout_minor.eq(rules.min_payout_minor),
                pv::annual_cap_minor.eq(rules.annual_cap_minor),
                pv::attribution_days.eq(rules.attribution_days as i32),
                pv::client_offer.eq(&rules.client_offer),
                pv::tax_threshold_minor.eq(rules.tax_threshold_minor),
                pv::created_by.eq(actor.label()),
                pv::effective_from.eq(now()),
            ))
            .execute(conn)
            // Two admins saving at the same moment: the second must not silently win.
            .map_err(StoreError::unique_race)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ProgramUpdated,
                entity_type: "program",
                entity_id: &id,
                before: Some(&before.version.to_string()),
                after: Some(&version.to_string()),
                details: None,
            },
        )?;
        current_view(conn)
    })
}
