//! The e-mail outbox as admins see it: the list, retrying a failed e-mail, and the depth
//! gauge. (What goes into it is `crate::app::notices`; sending is the worker's.)

use super::error::{Found, Result};
use super::Error;
use crate::db::{write_tx, DbConnection};
use crate::domain::audit::AuditAction;
use crate::domain::notice::EmailStatus;
use crate::store::audit::{self, Actor, Change, EntityType};
use crate::store::outbox::{self as store, EmailView};
use crate::store::{Page, PageRequest};

/// E-mails, newest first, optionally in one status.
pub fn list(conn: &mut DbConnection, status: Option<EmailStatus>, page: &PageRequest) -> Result<Page<EmailView>> {
    Ok(store::list(conn, status, page)?)
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<EmailView> {
    store::find_view(conn, id).or_not_found("e-mail")
}

/// Queues a `failed` e-mail again with a fresh set of tries (admin), audited. Any other
/// status is a 409 `invalid-transition`.
pub fn retry(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<EmailView> {
    write_tx(conn, |conn| {
        let before = store::find_view(conn, id).or_not_found("e-mail")?;
        if store::requeue_failed(conn, id)? != 1 {
            return Err(Error::InvalidTransition {
                entity: "e-mail",
                current: before.status.as_str().to_owned(),
                event: "retry".into(),
                hint: None,
            });
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::EmailRetried,
                entity_type: EntityType::Email,
                entity_id: id,
                before: Some(EmailStatus::Failed.as_str()),
                after: Some(EmailStatus::Queued.as_str()),
                details: Some(serde_json::json!({ "template": before.template, "attempts": before.attempts })),
            },
        )?;
        Ok(store::find_view(conn, id)?)
    })
}

/// E-mails per status, for the outbox depth gauge.
pub fn counts_by_status(conn: &mut DbConnection) -> Result<Vec<(String, i64)>> {
    Ok(store::counts_by_status(conn)?)
}
