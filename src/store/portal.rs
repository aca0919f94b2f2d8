//! Ambassador portal access: one-time login links (15 minutes) exchanged once for a bearer
//! session (30 days). Only SHA-256 hashes of both secrets are stored. The sign-in flows are
//! `app::portal`.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{ambassadors, portal_login_tokens as plt, portal_sessions as ps};
use crate::db::{now, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::api_key::hash;
use crate::domain::contact::Email;

pub const LOGIN_LINK_TTL: TimeDelta = TimeDelta::minutes(15);
/// The window of the per-address limit on login e-mails.
pub const LOGIN_MAIL_WINDOW: TimeDelta = TimeDelta::hours(1);
pub const SESSION_TTL: TimeDelta = TimeDelta::days(30);
/// Portal session tokens start with this, so they are never mistaken for API keys.
pub const SESSION_PREFIX: &str = "vp_";

/// The (id, name) of the active ambassador with this e-mail, if any. The row is share-locked
/// on PostgreSQL until the transaction ends, so staff changing the address either wait for a
/// link written meanwhile (and then expire it) or commit first (and this lookup, re-checked on
/// the new row version, no longer matches the old address). SQLite's writers queue behind
/// BEGIN IMMEDIATE already.
pub fn active_by_email(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<(String, String)>> {
    let query = ambassadors::table
        .filter(ambassadors::email.eq(email.as_str()))
        .filter(ambassadors::status.eq(AmbassadorStatus::Active.as_str()))
        .select((ambassadors::id, ambassadors::name));
    match conn {
        DbConnection::Postgres(pg) => query.for_share().first(pg).optional(),
        DbConnection::Sqlite(lite) => query.first(lite).optional(),
    }
}

/// How many login links the ambassador was sent since `since`.
pub fn links_since(conn: &mut DbConnection, ambassador_id: &str, since: NaiveDateTime) -> QueryResult<i64> {
    plt::table.filter(plt::ambassador_id.eq(ambassador_id)).filter(plt::created_at.gt(since)).count().get_result(conn)
}

pub fn insert_login_link(
    conn: &mut DbConnection,
    id: &str,
    ambassador_id: &str,
    token_hash: &str,
    expires_at: NaiveDateTime,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(plt::table)
        .values((
            plt::id.eq(id),
            plt::ambassador_id.eq(ambassador_id),
            plt::token_hash.eq(token_hash),
            plt::expires_at.eq(expires_at),
            plt::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Uses the login link with this token hash if it is unused and unexpired (compare-and-set:
/// only one exchange of a link can ever succeed); returns its ambassador when this call used it.
pub fn use_login_link(conn: &mut DbConnection, token_hash: &str, at: NaiveDateTime) -> QueryResult<Option<String>> {
    let used = diesel::update(plt::table.filter(plt::token_hash.eq(token_hash)))
        .filter(plt::used_at.is_null())
        .filter(plt::expires_at.gt(at))
        .set(plt::used_at.eq(at))
        .execute(conn)?;
    if used != 1 {
        return Ok(None);
    }
    plt::table.filter(plt::token_hash.eq(token_hash)).select(plt::ambassador_id).first(conn).map(Some)
}

pub fn ambassador_status(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<AmbassadorStatus> {
    ambassadors::table.find(ambassador_id).select(ambassadors::status).first(conn)
}

pub fn insert_session(
    conn: &mut DbConnection,
    id: &str,
    ambassador_id: &str,
    secret_hash: &str,
    expires_at: NaiveDateTime,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(ps::table)
        .values((
            ps::id.eq(id),
            ps::ambassador_id.eq(ambassador_id),
            ps::token_hash.eq(secret_hash),
            ps::expires_at.eq(expires_at),
            ps::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// A live session: its id, its ambassador and when it expires.
pub type LiveSession = (String, String, chrono::NaiveDateTime);

/// The live session of this token whose ambassador is active now: suspending or closing an
/// ambassador ends their portal access.
pub fn authenticate(conn: &mut DbConnection, secret: &str) -> QueryResult<Option<LiveSession>> {
    let active =
        ambassadors::table.filter(ambassadors::status.eq(AmbassadorStatus::Active.as_str())).select(ambassadors::id);
    ps::table
        .filter(ps::token_hash.eq(hash(secret)))
        .filter(ps::revoked_at.is_null())
        .filter(ps::expires_at.gt(now()))
        .filter(ps::ambassador_id.eq_any(active))
        .select((ps::id, ps::ambassador_id, ps::expires_at))
        .first(conn)
        .optional()
}

/// Ends a session if it is still live; returns the rows changed (0: it had ended already).
pub fn end_session(conn: &mut DbConnection, session_id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(ps::table.find(session_id).filter(ps::revoked_at.is_null()))
        .set(ps::revoked_at.eq(Some(at)))
        .execute(conn)
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
