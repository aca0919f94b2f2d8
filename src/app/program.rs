//! The program rules: the version in force, its history, and replacing it (admin).

use super::error::Result;
use super::Error;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::program::ProgramRules;
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
