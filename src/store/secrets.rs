//! Secrets shared by every instance through the database.

use diesel::prelude::*;
use rand::RngCore;

use crate::db::schema::app_secrets;
use crate::db::{now, DbConnection};
use crate::domain::api_key::hex;
use crate::store::is_unique_violation;

const CONTACT_HASH_KEY: &str = "contact_hash_key";
const WEB_SIGNING_KEY: &str = "web_signing_key";
const WEBHOOK_SEALING_KEY: &str = "webhook_sealing_key";

/// The key for contact hashes: the configured one, else one generated on first use and kept
/// in the database so every instance (and every restart) hashes alike.
pub fn contact_hash_key(conn: &mut DbConnection, configured: &str) -> QueryResult<Vec<u8>> {
    if !configured.trim().is_empty() {
        return Ok(configured.trim().as_bytes().to_vec());
    }
    shared_secret(conn, CONTACT_HASH_KEY)
}

/// The key that signs the web pages' CSRF tokens: generated on first use and kept in the
/// database, so a form served by one instance is accepted by another (and after a restart).
pub fn web_signing_key(conn: &mut DbConnection) -> QueryResult<Vec<u8>> {
    shared_secret(conn, WEB_SIGNING_KEY)
}

/// The AES-256 key that seals webhook signing secrets at rest: the configured one
/// (`webhooks.sealing_key`, kept outside the database so a copy of the database alone does
/// not reveal the secrets), else one generated on first use and shared through the database.
/// Either way 32 bytes, hashed from the text.
pub fn webhook_sealing_key(conn: &mut DbConnection, configured: &str) -> QueryResult<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let material =
        if configured.trim().is_empty() { shared_secret(conn, WEBHOOK_SEALING_KEY)? } else { configured.trim().into() };
    Ok(Sha256::digest(material).to_vec())
}

/// A named random secret, created once by whichever instance gets there first.
fn shared_secret(conn: &mut DbConnection, name: &str) -> QueryResult<Vec<u8>> {
    let find = |conn: &mut DbConnection| {
        app_secrets::table.find(name).select(app_secrets::value).first::<String>(conn).optional()
    };
    if let Some(v) = find(conn)? {
        return Ok(v.into_bytes());
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let inserted = diesel::insert_into(app_secrets::table)
        .values((app_secrets::name.eq(name), app_secrets::value.eq(hex(&raw)), app_secrets::created_at.eq(now())))
        .execute(conn);
    match inserted {
        Ok(_) => {}
        // Another instance created it first: use theirs.
        Err(e) if is_unique_violation(&e) => {}
        Err(e) => return Err(e),
    }
    // Inserted or found taken, it is there now.
    find(conn)?.map(String::into_bytes).ok_or(diesel::result::Error::NotFound)
}
