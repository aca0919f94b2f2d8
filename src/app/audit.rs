//! Reading the audit trail (the rows themselves are written by each use case, in its own
//! transaction).

use super::Result;
use crate::db::DbConnection;
use crate::store::audit::{self, AuditEvent};
use crate::store::{Page, PageRequest};

/// Audit events, newest first, optionally only those about one entity.
pub fn trail(conn: &mut DbConnection, entity_id: Option<&str>, page: &PageRequest) -> Result<Page<AuditEvent>> {
    Ok(audit::list(conn, entity_id, page)?)
}
