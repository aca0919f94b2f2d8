//! Ambassador portal access: one-time login links (15 minutes) exchanged once for a bearer
//! session (30 days). Only SHA-256 hashes of both secrets are stored.

use chrono::TimeDelta;
use diesel::prelude::*;
use rand::RngCore;

use crate::db::schema::{ambassadors, portal_login_tokens as plt, portal_sessions as ps};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::api_key::hash;
use crate::domain::audit::AuditAction;
use crate::domain::contact::Email;
use crate::email::notices;
use crate::error::ApiError;
use crate::store::audit::{self, Actor, ActorKind, Change};
use crate::store::new_id;

pub const LOGIN_LINK_TTL: TimeDelta = TimeDelta::minutes(15);
/// The window of the per-address limit on login e-mails.
pub const LOGIN_MAIL_WINDOW: TimeDelta = TimeDelta::hours(1);
pub const SESSION_TTL: TimeDelta = TimeDelta::days(30);
/// Portal session tokens start with this, so they are never mistaken for API keys.
pub const SESSION_PREFIX: &str = "vp_";

fn random_token() -> String {
    use base64::Engine;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// What a login-link request needs besides the address.
pub struct LoginRequest<'a> {
    pub public_url: &'a str,
    /// Login e-mails sent to one address per [`LOGIN_MAIL_WINDOW`] at most.
    pub per_hour: u32,
    pub actor: &'a Actor,
}

/// Queues a login link for an active ambassador with this e-mail; does nothing (silently)
/// for anyone else, and nothing once the address had `per_hour` links within the hour (so
/// the form cannot be used to flood someone's inbox). The answer never reveals which.
pub fn request_login(conn: &mut DbConnection, email: &Email, req: &LoginRequest<'_>) -> Result<(), ApiError> {
    let (public_url, actor) = (req.public_url, req.actor);
    write_tx(conn, |conn| {
        // The row is share-locked on PostgreSQL until the link is written, so staff changing
        // the address either wait for this link (and then expire it) or commit first (and this
        // lookup, re-checked on the new row version, no longer matches the old address).
        // SQLite's writers queue behind BEGIN IMMEDIATE already.
        let query = ambassadors::table
            .filter(ambassadors::email.eq(email.as_str()))
            .filter(ambassadors::status.eq(AmbassadorStatus::Active.as_str()))
            .select((ambassadors::id, ambassadors::name));
        let found: Option<(String, String)> = match conn {
            DbConnection::Postgres(pg) => query.for_share().first(pg).optional()?,
            DbConnection::Sqlite(lite) => query.first(lite).optional()?,
        };
        let Some((ambassador_id, name)) = found else {
            return Ok(());
        };
        // Links go only to the ambassador's current address, so counting their links is
        // counting that address's. Writers queue (SQLite) or may overshoot by a racing few
        // (PostgreSQL): a bound on abuse, not an exact quota.
        let recent: i64 = plt::table
            .filter(plt::ambassador_id.eq(&ambassador_id))
            .filter(plt::created_at.gt(now() - LOGIN_MAIL_WINDOW))
            .count()
            .get_result(conn)?;
        if recent >= i64::from(req.per_hour) {
            tracing::info!(%ambassador_id, "login e-mail limit reached for this address; nothing sent");
            return Ok(());
        }
        let token = random_token();
        let id = new_id();
        let at = now();
        let expires_at = at + LOGIN_LINK_TTL;
        diesel::insert_into(plt::table)
            .values((
                plt::id.eq(&id),
                plt::ambassador_id.eq(&ambassador_id),
                plt::token_hash.eq(hash(&token)),
                plt::expires_at.eq(expires_at),
                plt::created_at.eq(at),
            ))
            .execute(conn)?;
        let link = format!("{public_url}/portal/login?token={token}");
        notices::portal_login(conn, &id, &name, email.as_str(), &link, expires_at)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PortalLoginLinkSent,
                entity_type: "ambassador",
                entity_id: &ambassador_id,
                before: None,
                after: None,
                details: None,
            },
        )?;
        Ok(())
    })
}

fn invalid_link() -> ApiError {
    ApiError::Unprocessable {
        kind: "invalid-login-link",
        detail: "This login link is invalid, expired or already used. Ask for a new one.".into(),
        field: Some("token"),
    }
}

/// Exchanges a login link's token (once) for a session token; returns (token, expiry).
pub fn start_session(
    conn: &mut DbConnection,
    token: &str,
    request_id: Option<String>,
) -> Result<(String, chrono::NaiveDateTime), ApiError> {
    write_tx(conn, |conn| {
        let at = now();
        let token_hash = hash(token);
        // Compare-and-set: only one exchange of a link can ever succeed.
        let used = diesel::update(plt::table.filter(plt::token_hash.eq(&token_hash)))
            .filter(plt::used_at.is_null())
            .filter(plt::expires_at.gt(at))
            .set(plt::used_at.eq(at))
            .execute(conn)?;
        if used != 1 {
            return Err(invalid_link());
        }
        let ambassador_id: String =
            plt::table.filter(plt::token_hash.eq(&token_hash)).select(plt::ambassador_id).first(conn)?;
        let status: String = ambassadors::table.find(&ambassador_id).select(ambassadors::status).first(conn)?;
        if status != AmbassadorStatus::Active.as_str() {
            return Err(invalid_link());
        }
        let secret = format!("{SESSION_PREFIX}{}", random_token());
        let session_id = new_id();
        let expires_at = at + SESSION_TTL;
        diesel::insert_into(ps::table)
            .values((
                ps::id.eq(&session_id),
                ps::ambassador_id.eq(&ambassador_id),
                ps::token_hash.eq(hash(&secret)),
                ps::expires_at.eq(expires_at),
                ps::created_at.eq(at),
            ))
            .execute(conn)?;
        let actor = Actor { kind: ActorKind::Ambassador, id: Some(ambassador_id.clone()), role: None, request_id };
        audit::record(
            conn,
            &actor,
            Change {
                action: AuditAction::PortalSessionStarted,
                entity_type: "ambassador",
                entity_id: &ambassador_id,
                before: None,
                after: None,
                details: Some(serde_json::json!({ "session_id": session_id })),
            },
        )?;
        Ok((secret, expires_at))
    })
}

/// A live session: its id, its ambassador and when it expires.
pub type LiveSession = (String, String, chrono::NaiveDateTime);

/// The live session of this token whose ambassador is active now: suspending or closing an
/// ambassador ends their portal access.
pub fn authenticate(conn: &mut DbConnection, secret: &str) -> Result<Option<LiveSession>, ApiError> {
    let active =
        ambassadors::table.filter(ambassadors::status.eq(AmbassadorStatus::Active.as_str())).select(ambassadors::id);
    Ok(ps::table
        .filter(ps::token_hash.eq(hash(secret)))
        .filter(ps::revoked_at.is_null())
        .filter(ps::expires_at.gt(now()))
        .filter(ps::ambassador_id.eq_any(active))
        .select((ps::id, ps::ambassador_id, ps::expires_at))
        .first(conn)
        .optional()?)
}

/// Ends every session of an ambassador and kills their unused login links (their sign-in
/// e-mail changed: whoever held the old address must not keep or gain access).
pub fn end_all_sessions(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<usize> {
    let at = now();
    diesel::update(plt::table.filter(plt::ambassador_id.eq(ambassador_id)).filter(plt::used_at.is_null()))
        .set(plt::expires_at.eq(at))
        .execute(conn)?;
    diesel::update(ps::table.filter(ps::ambassador_id.eq(ambassador_id)).filter(ps::revoked_at.is_null()))
        .set(ps::revoked_at.eq(Some(at)))
        .execute(conn)
}

/// Deletes login links past the login-mail window and sessions that expired or were ended
/// (housekeeping): neither can sign anyone in any more.
pub fn purge_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    let at = now();
    let links = diesel::delete(plt::table.filter(plt::expires_at.lt(at - LOGIN_MAIL_WINDOW))).execute(conn)?;
    let sessions =
        diesel::delete(ps::table.filter(ps::expires_at.lt(at).or(ps::revoked_at.is_not_null()))).execute(conn)?;
    Ok(links + sessions)
}

/// Signs out: ends the session, audited like every state change (so an idempotent retry of
/// the sign-out is answered from the audit trail, never run twice).
pub fn end_session(conn: &mut DbConnection, session_id: &str, actor: &Actor) -> Result<(), ApiError> {
    write_tx(conn, |conn| {
        let ended = diesel::update(ps::table.find(session_id).filter(ps::revoked_at.is_null()))
            .set(ps::revoked_at.eq(Some(now())))
            .execute(conn)?;
        if ended == 0 {
            return Ok(());
        }
        let ambassador_id = actor.id.as_deref().unwrap_or_default();
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PortalSessionEnded,
                entity_type: "ambassador",
                entity_id: ambassador_id,
                before: None,
                after: None,
                details: Some(serde_json::json!({ "session_id": session_id })),
            },
        )?;
        Ok(())
    })
}
