//! API keys: create (secret shown once), list, revoke, and the per-request lookup.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::api_keys;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::api_key::{self, Role};
use crate::domain::audit::AuditAction;
use crate::error::ApiError;
use crate::store::audit::{self, Actor, Change};
use crate::store::new_id;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: chrono::NaiveDateTime,
    pub last_used_at: Option<chrono::NaiveDateTime>,
    pub revoked_at: Option<chrono::NaiveDateTime>,
}

/// An API key as listed: never the secret or its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// `null` when the stored role is not one Vouch knows: such a key is refused (401) until
    /// it is revoked and replaced, never treated as some other role.
    pub role: Option<Role>,
    /// First characters of the secret, to recognise a key.
    pub prefix: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub last_used_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub revoked_at: Option<chrono::NaiveDateTime>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            role: Role::parse(&r.role),
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// Creates a key; returns its view and the secret, which is never retrievable again.
pub fn create(
    conn: &mut DbConnection,
    name: &str,
    role: Role,
    actor: &Actor,
) -> Result<(ApiKeyView, String), ApiError> {
    let secret = api_key::generate();
    let id = new_id();
    write_tx(conn, |conn| {
        diesel::insert_into(api_keys::table)
            .values((
                api_keys::id.eq(&id),
                api_keys::name.eq(name),
                api_keys::role.eq(role.as_str()),
                api_keys::prefix.eq(&secret.prefix),
                api_keys::secret_hash.eq(&secret.hash),
                api_keys::created_at.eq(now()),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ApiKeyCreated,
                entity_type: "api_key",
                entity_id: &id,
                before: None,
                after: Some("active"),
                details: Some(serde_json::json!({ "name": name, "role": role.as_str() })),
            },
        )?;
        let row = api_keys::table.find(&id).select(ApiKeyRow::as_select()).first(conn)?;
        Ok((row.into(), secret.secret))
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<ApiKeyView>, ApiError> {
    let rows = api_keys::table.select(ApiKeyRow::as_select()).order(api_keys::id.desc()).load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    api_keys::table.count().get_result(conn)
}

/// Revokes a key. Revoking a revoked key is a 409; an unknown id a 404.
pub fn revoke(conn: &mut DbConnection, id: &str, actor: &Actor) -> Result<ApiKeyView, ApiError> {
    write_tx(conn, |conn| {
        let row = api_keys::table
            .find(id)
            .select(ApiKeyRow::as_select())
            .first(conn)
            .optional()?
            .ok_or(ApiError::NotFound("API key"))?;
        if row.revoked_at.is_some() {
            return Err(ApiError::InvalidTransition {
                entity: "API key",
                current: "revoked".into(),
                event: "revoke".into(),
                hint: None,
            });
        }
        diesel::update(api_keys::table.find(id)).set(api_keys::revoked_at.eq(now())).execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::ApiKeyRevoked,
                entity_type: "api_key",
                entity_id: id,
                before: Some("active"),
                after: Some("revoked"),
                details: None,
            },
        )?;
        Ok(api_keys::table.find(id).select(ApiKeyRow::as_select()).first(conn)?.into())
    })
}

/// Finds the unrevoked key with this secret and notes its use (at most once a minute, so
/// authentication does not turn every read into a write).
pub fn authenticate(conn: &mut DbConnection, secret: &str) -> Result<Option<ApiKeyRow>, ApiError> {
    let hash = api_key::hash(secret);
    let row = api_keys::table
        .filter(api_keys::secret_hash.eq(&hash))
        .filter(api_keys::revoked_at.is_null())
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?;
    if let Some(row) = &row {
        let now = now();
        if row.last_used_at.is_none_or(|t| now - t > chrono::TimeDelta::seconds(60)) {
            // Best effort: a busy database must not fail the request over a usage stamp.
            if let Err(e) =
                diesel::update(api_keys::table.find(&row.id)).set(api_keys::last_used_at.eq(now)).execute(conn)
            {
                tracing::debug!(error = %e, "could not stamp api key use");
            }
        }
    }
    Ok(row)
}
