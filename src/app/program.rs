//! The program rules: the version in force, its history, and replacing it (admin).

use serde::Serialize;

use super::audit::ActorNames;
use super::error::Result;
use super::Error;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::program::{Calculated, ProgramRules, YearToDate};
use crate::store::audit::{self, Actor, Change, EntityType};
use crate::store::program::{self as store, ProgramView};
use crate::store::{new_id, Page, PageRequest};

/// The rules in force.
pub fn current(conn: &mut DbConnection) -> Result<ProgramView> {
    Ok(store::current_view(conn)?)
}

/// Every version, newest first.
pub fn versions(conn: &mut DbConnection, page: &PageRequest) -> Result<Page<ProgramView>> {
    Ok(store::versions(conn, page)?)
}

/// A version of the rules with who set it, named.
#[derive(Debug, Clone, Serialize)]
pub struct NamedVersion {
    #[serde(flatten)]
    pub version: ProgramView,
    pub set_by: String,
}

/// Every version, newest first, each with the name of who set it (`created_by` is an actor
/// label, `kind:id`).
pub fn versions_named(conn: &mut DbConnection, page: &PageRequest) -> Result<Page<NamedVersion>> {
    let page = store::versions(conn, page)?;
    let actor = |v: &ProgramView| match v.created_by.split_once(':') {
        Some((kind, id)) => (kind.to_owned(), Some(id.to_owned())),
        None => (v.created_by.clone(), None),
    };
    let actors: Vec<_> = page.items.iter().map(actor).collect();
    let names = ActorNames::load(conn, actors.iter().map(|(k, i)| (k.as_str(), i.as_deref())))?;
    Ok(page.map(|version| {
        let (kind, id) = actor(&version);
        NamedVersion { set_by: names.label(&kind, id.as_deref(), None), version }
    }))
}

/// What a referral completed under `rules` would earn, for an ambassador with `year` behind
/// them this calendar year: the very calculation a completion writes to the ledger
/// ([`ProgramRules::calculate`]), with nothing read or written.
pub fn example(rules: &ProgramRules, year: YearToDate, treatment_value_minor: Option<i64>) -> Result<Calculated> {
    rules.calculate(year, treatment_value_minor).map_err(super::rewards::calculation_refused)
}

/// Makes `rules` the version in force from now on. Rewards already earned keep the version
/// they were computed under. The currency is fixed once any reward exists: amounts in two
/// currencies could not be summed into one balance or payout.
pub fn replace(conn: &mut DbConnection, rules: &ProgramRules, actor: &Actor) -> Result<ProgramView> {
    write_tx(conn, |conn| {
        store::current_exclusive(conn)?;
        let before = store::current_row(conn)?;
        if before.currency != rules.currency.as_str() && store::any_rewards(conn)? {
            return Err(Error::Unprocessable {
                kind: "currency-locked",
                detail: format!(
                    "Rewards already exist in {}; the program currency can no longer change.",
                    before.currency
                ),
                field: Some("currency"),
            });
        }
        let id = new_id();
        let version = before.version + 1;
        // Two admins saving at the same moment: the second must not silently win.
        store::insert_version(conn, (&id, version), rules, &actor.label(), now())?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ProgramUpdated,
                entity_type: EntityType::Program,
                entity_id: &id,
                before: Some(&before.version.to_string()),
                after: Some(&version.to_string()),
                details: None,
            },
        )?;
        Ok(store::current_view(conn)?)
    })
}
