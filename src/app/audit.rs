//! The audit trail: writing an event inside each state change's transaction (and, with it,
//! queueing the webhook event the change stands for), and reading the trail.

use super::webhooks;
use super::Result;
use crate::db::DbConnection;
use crate::domain::webhook::EventType;
pub use crate::store::audit::{Actor, AuditAction, AuditEvent, Change, EntityType};
use crate::store::{Page, PageRequest};

/// Writes one audit event and queues the webhook event it stands for, if any: every state
/// change records exactly one audit event after writing, so this is the one place webhook
/// events are queued, in the change's own transaction and with the record as it now is.
pub fn record(conn: &mut DbConnection, actor: &Actor, change: Change<'_>) -> diesel::QueryResult<()> {
    let event = EventType::of_change(change.action, change.before, change.after);
    let entity_id = change.entity_id.to_owned();
    crate::store::audit::record(conn, actor, change)?;
    match event {
        Some(event) => webhooks::queue(conn, event, &entity_id),
        None => Ok(()),
    }
}

/// Audit events, newest first, optionally only those about one entity.
pub fn trail(conn: &mut DbConnection, entity_id: Option<&str>, page: &PageRequest) -> Result<Page<AuditEvent>> {
    Ok(crate::store::audit::list(conn, entity_id, page)?)
}
