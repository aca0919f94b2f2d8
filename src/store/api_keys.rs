//! API keys: the rows, the queries behind `crate::app::api_keys` (create, list, revoke), and
//! the per-request lookup.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::api_keys;
use crate::db::{now, DbConnection};
use crate::domain::api_key::{self, Role};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub secret_hash: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: chrono::NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub last_used_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
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

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<ApiKeyRow> {
    api_keys::table.find(id).select(ApiKeyRow::as_select()).first(conn)
}

/// Writes a new key: only the secret's hash and display prefix are kept.
pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    (name, role): (&str, Role),
    secret: &api_key::NewSecret,
    at: chrono::NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id),
            api_keys::name.eq(name),
            api_keys::role.eq(role.as_str()),
            api_keys::prefix.eq(&secret.prefix),
            api_keys::secret_hash.eq(&secret.hash),
            api_keys::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<ApiKeyView>> {
    let rows = api_keys::table.select(ApiKeyRow::as_select()).order(api_keys::id.desc()).load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Names of these keys by id (who did what, on the console's pages).
pub fn names(conn: &mut DbConnection, ids: &[&str]) -> QueryResult<Vec<(String, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    api_keys::table.filter(api_keys::id.eq_any(ids)).select((api_keys::id, api_keys::name)).load(conn)
}

pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    api_keys::table.count().get_result(conn)
}

pub fn set_revoked(conn: &mut DbConnection, id: &str, at: chrono::NaiveDateTime) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id)).set(api_keys::revoked_at.eq(at)).execute(conn)?;
    Ok(())
}

/// Finds the unrevoked key with this secret and notes its use (at most once a minute, so
/// authentication does not turn every read into a write).
pub fn authenticate(conn: &mut DbConnection, secret: &str) -> QueryResult<Option<ApiKeyRow>> {
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
