//! Stored responses for `Idempotency-Key`: one row per (caller scope, key), claimed before
//! the request runs and completed with its response, kept 24 hours.
//!
//! Each step is a single statement, so the unique primary key alone decides who runs a
//! request when two arrive together; no transaction is left aborted on PostgreSQL.

use chrono::TimeDelta;
use diesel::prelude::*;

use crate::db::schema::idempotency_keys as ik;
use crate::db::{now, DbConnection};
use crate::error::{is_unique_violation, ApiError};

/// How long a stored response is replayed.
pub const TTL: TimeDelta = TimeDelta::hours(24);
/// A claim never completed within this time is taken to be abandoned (its process died).
const ABANDONED_AFTER: TimeDelta = TimeDelta::minutes(2);

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Run the request, then `complete` (or `release` on a server error).
    Fresh,
    Replay {
        status: u16,
        body: String,
    },
    /// Same key, different request.
    Mismatch,
    InProgress,
}

pub fn claim(conn: &mut DbConnection, scope: &str, key: &str, request_hash: &str) -> Result<Claim, ApiError> {
    let at = now();
    let inserted = diesel::insert_into(ik::table)
        .values((ik::scope.eq(scope), ik::idem_key.eq(key), ik::request_hash.eq(request_hash), ik::created_at.eq(at)))
        .execute(conn);
    match inserted {
        Ok(_) => return Ok(Claim::Fresh),
        Err(e) if is_unique_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    // Take over an expired record, or an abandoned claim; the WHERE makes this a race-free
    // compare-and-set.
    let taken = diesel::update(ik::table.find((scope, key)))
        .filter(ik::created_at.lt(at - TTL).or(ik::status_code.is_null().and(ik::created_at.lt(at - ABANDONED_AFTER))))
        .set((
            ik::request_hash.eq(request_hash),
            ik::created_at.eq(at),
            ik::status_code.eq(None::<i32>),
            ik::response_body.eq(None::<String>),
        ))
        .execute(conn)?;
    if taken == 1 {
        return Ok(Claim::Fresh);
    }
    let existing: Option<(String, Option<i32>, Option<String>)> = ik::table
        .find((scope, key))
        .select((ik::request_hash, ik::status_code, ik::response_body))
        .first(conn)
        .optional()?;
    Ok(match existing {
        Some((hash, _, _)) if hash != request_hash => Claim::Mismatch,
        Some((_, Some(status), body)) => Claim::Replay { status: status as u16, body: body.unwrap_or_default() },
        _ => Claim::InProgress,
    })
}

pub fn complete(conn: &mut DbConnection, scope: &str, key: &str, status: u16, body: &str) -> Result<(), ApiError> {
    diesel::update(ik::table.find((scope, key)))
        .set((ik::status_code.eq(Some(i32::from(status))), ik::response_body.eq(Some(body))))
        .execute(conn)?;
    Ok(())
}

/// Forgets a claim whose request failed on our side, so the client's retry runs again.
pub fn release(conn: &mut DbConnection, scope: &str, key: &str) -> Result<(), ApiError> {
    diesel::delete(ik::table.find((scope, key))).execute(conn)?;
    Ok(())
}

pub fn purge_expired(conn: &mut DbConnection) -> Result<usize, ApiError> {
    Ok(diesel::delete(ik::table.filter(ik::created_at.lt(now() - TTL))).execute(conn)?)
}
