//! API keys (admin, and the `vouch keys` commands): create (the secret shown once), list,
//! revoke; and the first admin key of a new installation.

use super::error::{Found, Result};
use super::Error;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::api_key::{self, NewKey, Role};
use crate::domain::audit::AuditAction;
use crate::store::api_keys::{self as store, ApiKeyView};
use crate::store::audit::{self, Actor, Change, EntityType};
use crate::store::new_id;

/// Creates a key; returns its view and the secret, which is never retrievable again.
pub fn create(conn: &mut DbConnection, new: &NewKey, actor: &Actor) -> Result<(ApiKeyView, String)> {
    let secret = api_key::generate();
    let id = new_id();
    let (name, role) = (new.name.as_str(), new.role);
    write_tx(conn, |conn| {
        store::insert(conn, &id, (name, role), &secret, now())?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ApiKeyCreated,
                entity_type: EntityType::ApiKey,
                entity_id: &id,
                before: None,
                after: Some("active"),
                details: Some(serde_json::json!({ "name": name, "role": role.as_str() })),
            },
        )?;
        Ok((store::find(conn, &id)?.into(), secret.secret))
    })
}

/// On a database with no API keys at all, creates an admin key and returns its secret.
pub fn create_first_admin(conn: &mut DbConnection) -> Result<Option<String>> {
    if store::count(conn)? > 0 {
        return Ok(None);
    }
    let new = NewKey { name: "initial admin".into(), role: Role::Admin };
    let (_, secret) = create(conn, &new, &Actor::system())?;
    Ok(Some(secret))
}

/// Every key, newest first (never the secrets).
pub fn list(conn: &mut DbConnection) -> Result<Vec<ApiKeyView>> {
    Ok(store::list(conn)?)
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<ApiKeyView> {
    Ok(store::find(conn, id).or_not_found("API key")?.into())
}

/// Revokes a key. Revoking a revoked key is a 409; an unknown id a 404.
pub fn revoke(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<ApiKeyView> {
    write_tx(conn, |conn| {
        let row = store::find(conn, id).or_not_found("API key")?;
        if row.revoked_at.is_some() {
            return Err(Error::InvalidTransition {
                entity: "API key",
                current: "revoked".into(),
                event: "revoke".into(),
                hint: None,
            });
        }
        store::set_revoked(conn, id, now())?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ApiKeyRevoked,
                entity_type: EntityType::ApiKey,
                entity_id: id,
                before: Some("active"),
                after: Some("revoked"),
                details: None,
            },
        )?;
        Ok(store::find(conn, id)?.into())
    })
}
