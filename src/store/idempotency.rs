//! Stored responses for `Idempotency-Key`: one row per (caller scope, key), claimed by the
//! request's first change and completed with its response, kept 24 hours.
//!
//! The claim is the first statement of the transaction that makes the request's first change
//! ([`claim_with_change`], called through `crate::db::claim`), so it commits with that change
//! or not at all, and the unique primary key decides who runs a request when two arrive
//! together (on PostgreSQL the second finds the first's advisory lock taken, `uncontended!`, and
//! changes nothing; on SQLite writers take turns). A request that changes
//! nothing — a refusal — stores its claim and reply together afterwards ([`store_unchanged`]).
//! The edge then stores the reply in one statement ([`complete`]). When the key is taken the
//! edge asks [`claim`] what to answer: the stored reply, `idempotency-in-progress`, a mismatch.
//!
//! A request never runs twice. The claim records the request's id, and every state change
//! writes audit rows carrying that id in its own transaction. So a claim that was never
//! completed (the response could not be stored, or the process died) tells by the audit trail
//! whether its request changed anything: if it did, a retry gets `idempotency-reply-lost`
//! instead of a second run; if not, the retry runs it.
//!
//! On PostgreSQL the stored reply commits without waiting for the disk (`synchronous_commit`
//! off for that statement's own transaction: `relaxed_commit!`); only the request's change
//! waits for it. Nothing is lost by this: a reply lost with a crash leaves the claim open, and
//! the rule above answers the retry from the audit trail (`idempotency-reply-lost`).
//!
//! A reply whose client's personal data was erased since keeps its status and loses its body
//! (`response_body` NULL): it is replayed as `personal-data-erased`. What a reply says is the
//! HTTP edge's to word (`crate::http::idempotency`); this module keeps and finds it.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{audit_events, idempotency_keys as ik};
use crate::db::{now, write_now, DbConnection};

/// How long a stored response is replayed.
pub const TTL: TimeDelta = TimeDelta::hours(24);
/// A claim never completed within this time is taken to be abandoned (its process died, or
/// its response could not be stored).
pub const ABANDONED_AFTER: TimeDelta = TimeDelta::minutes(2);

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Run the request, then `complete` (or `finish_unstored` for a "try again" answer).
    Fresh,
    Replay {
        status: u16,
        body: String,
    },
    /// The stored reply named a client whose personal data was erased since.
    Erased,
    /// The first request with this key changed data but its reply was never stored, and its
    /// claim is abandoned: answer for it ([`settle`]), never run it again.
    Lost {
        request_id: String,
        /// The claim's, for [`settle`].
        created_at: NaiveDateTime,
    },
    /// Same key, different request.
    Mismatch,
    InProgress,
}

/// The request that claims a key.
pub struct Request<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub hash: &'a str,
    /// The request id its audit rows carry.
    pub id: &'a str,
}

type Existing = (String, Option<i32>, Option<String>, NaiveDateTime, Option<String>);

/// Claims the key on its own (outside a change), or tells what holds it: how the edge answers a
/// request whose change found the key taken, or whose refusal could not be stored.
pub fn claim(conn: &mut DbConnection, req: &Request<'_>) -> QueryResult<Claim> {
    write_now(conn, |conn| claim_now(conn, req))
}

/// A condition that is always true and, on PostgreSQL, turns `synchronous_commit` off for the
/// rest of the statement's own transaction (`set_config(…, is_local => true)`): the commit that
/// ends an autocommit statement carrying it does not wait for the disk. It never outlives that
/// transaction (the setting is local to it), and a statement that changes no row writes no
/// commit record at all.
macro_rules! relaxed_commit {
    () => {
        "set_config('synchronous_commit', 'off', true) = 'off'"
    };
}

/// A condition that takes the key's transaction-level advisory lock without waiting, and is
/// false when another transaction holds it: that transaction has claimed the key and not yet
/// committed. Without it a second request with the same key would wait on the first one's
/// uncommitted row (holding a pooled connection all the while, however long the first one's
/// change takes) only to find it claimed; now it is told at once and answered
/// `idempotency-in-progress`. The lock ends with the claiming transaction.
/// (`$1` and `$2` are the statement's scope and key.)
macro_rules! uncontended {
    () => {
        "pg_try_advisory_xact_lock(hashtextextended($1, hashtextextended($2, 0)))"
    };
}

fn claim_now(conn: &mut DbConnection, req: &Request<'_>) -> QueryResult<Claim> {
    let at = now();
    if claim_with_change(conn, req)? {
        return Ok(Claim::Fresh);
    }
    let existing: Option<Existing> = ik::table
        .find((req.scope, req.key))
        .select((ik::request_hash, ik::status_code, ik::response_body, ik::created_at, ik::request_id))
        .first(conn)
        .optional()?;
    // Purged between the insert and the read: the next retry claims it afresh.
    let Some((hash, status, body, created_at, claimed_by)) = existing else {
        return Ok(Claim::InProgress);
    };
    if hash != req.hash {
        return Ok(Claim::Mismatch);
    }
    if let Some(status) = status {
        return Ok(match body {
            Some(body) => Claim::Replay { status: status as u16, body },
            None => Claim::Erased,
        });
    }
    if created_at >= at - ABANDONED_AFTER {
        return Ok(Claim::InProgress);
    }
    match claimed_by {
        // The abandoned request changed data: answer for it, never run it again.
        Some(request_id) if carried_out(conn, &request_id)? => Ok(Claim::Lost { request_id, created_at }),
        _ => take_over(conn, req, created_at, at),
    }
}

/// Claims the key for `req`, as the first statement of the transaction that makes the
/// request's first change (or on its own): `true` claimed — a new row, or one past its
/// 24 hours taken over — `false` held by another request (its reply, its run still going, or
/// an abandoned run: [`claim`] tells which). On PostgreSQL a second request with the same key
/// does not wait for the first one's transaction: it is told the key is held (`uncontended!`).
pub fn claim_with_change(conn: &mut DbConnection, req: &Request<'_>) -> QueryResult<bool> {
    use diesel::query_dsl::methods::FilterDsl;
    use diesel::upsert::excluded;
    let at = now();
    let expired = at - TTL;
    let claimed = match conn {
        DbConnection::Postgres(pg) => ClaimPg { req, at, expired }.execute(pg),
        DbConnection::Sqlite(lite) => diesel::insert_into(ik::table)
            .values((
                ik::scope.eq(req.scope),
                ik::idem_key.eq(req.key),
                ik::request_hash.eq(req.hash),
                ik::created_at.eq(at),
                ik::request_id.eq(req.id),
            ))
            .on_conflict((ik::scope, ik::idem_key))
            .do_update()
            .set((
                ik::request_hash.eq(excluded(ik::request_hash)),
                ik::created_at.eq(excluded(ik::created_at)),
                ik::request_id.eq(excluded(ik::request_id)),
                ik::status_code.eq(None::<i32>),
                ik::response_body.eq(None::<String>),
                ik::subject_id.eq(None::<String>),
            ))
            .filter(ik::created_at.lt(expired).or(ik::request_id.eq(req.id).and(ik::status_code.is_null())))
            .execute(lite),
    }?;
    Ok(claimed == 1)
}

/// The claim's upsert on PostgreSQL as a statement each connection keeps prepared (diesel
/// plans its own upserts and updates anew on every call); the SQLite one above says the same,
/// except for the advisory lock (`uncontended!`: SQLite's writers take turns anyway).
/// A row this request claimed itself, with no reply yet, is taken again (a commit whose answer
/// was lost on the way back, then a second write of the same request).
struct ClaimPg<'a> {
    req: &'a Request<'a>,
    at: NaiveDateTime,
    expired: NaiveDateTime,
}

crate::db::prepared_statement!(ClaimPg<'_>);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ClaimPg<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Text, Timestamp};
        out.push_sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at, request_id) SELECT ");
        out.push_bind_param::<Text, _>(&self.req.scope)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.req.key)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.req.hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.req.id)?;
        out.push_sql(" WHERE ");
        out.push_sql(uncontended!());
        out.push_sql(
            " ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = excluded.request_hash, \
             created_at = excluded.created_at, request_id = excluded.request_id, status_code = NULL, \
             response_body = NULL, subject_id = NULL WHERE idempotency_keys.created_at < ",
        );
        out.push_bind_param::<Timestamp, _>(&self.expired)?;
        out.push_sql(
            " OR (idempotency_keys.request_id = excluded.request_id AND idempotency_keys.status_code IS NULL)",
        );
        Ok(())
    }
}

/// Stores the claim and reply of a request that changed nothing (a refusal), in one statement
/// after it ran: `false` when the key is held by another request meanwhile (ask [`claim`]).
/// Its reply is scrubbed as [`complete`] does if it names a client erased since.
pub fn store_unchanged(conn: &mut DbConnection, req: &Request<'_>, reply: &Reply<'_>) -> QueryResult<bool> {
    use diesel::sql_types::{Integer, Nullable, Text, Timestamp};
    let at = now();
    write_now(conn, |conn| {
        macro_rules! run {
            ($c:expr, $sql:expr) => {
                diesel::sql_query($sql)
                    .bind::<Text, _>(req.scope)
                    .bind::<Text, _>(req.key)
                    .bind::<Text, _>(req.hash)
                    .bind::<Timestamp, _>(at)
                    .bind::<Text, _>(req.id)
                    .bind::<Integer, _>(i32::from(reply.status))
                    .bind::<Nullable<Text>, _>(reply.subject_id)
                    .bind::<Text, _>(reply.body)
                    .execute($c)
            };
        }
        let stored = match conn {
            DbConnection::Postgres(pg) => run!(pg, STORE_UNCHANGED_PG),
            DbConnection::Sqlite(lite) => run!(lite, STORE_UNCHANGED_SQLITE),
        }?;
        Ok(stored == 1)
    })
}

const STORE_UNCHANGED_PG: &str = concat!(
    "INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at, request_id, status_code, subject_id, ",
    "response_body) SELECT $1, $2, $3, $4, $5, $6, $7, ",
    "CASE WHEN (SELECT erased_at IS NOT NULL FROM referrals WHERE id = $7 FOR SHARE) THEN NULL ELSE $8 END ",
    "WHERE ",
    uncontended!(),
    " AND ",
    relaxed_commit!(),
    " ON CONFLICT (scope, idem_key) DO NOTHING"
);
// `WHERE true`: SQLite would otherwise read `ON CONFLICT` as a join constraint.
const STORE_UNCHANGED_SQLITE: &str = "INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at, \
     request_id, status_code, subject_id, response_body) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, \
     CASE WHEN (SELECT erased_at IS NOT NULL FROM referrals WHERE id = ?7) THEN NULL ELSE ?8 END \
     WHERE true ON CONFLICT (scope, idem_key) DO NOTHING";

/// Compare-and-set on the claim's `created_at`: of two retries taking over the same expired
/// or abandoned row, exactly one wins.
fn take_over(
    conn: &mut DbConnection,
    req: &Request<'_>,
    seen_created_at: NaiveDateTime,
    at: NaiveDateTime,
) -> QueryResult<Claim> {
    let taken = diesel::update(ik::table.find((req.scope, req.key)))
        .filter(ik::created_at.eq(seen_created_at))
        .set((
            ik::request_hash.eq(req.hash),
            ik::created_at.eq(at),
            ik::request_id.eq(req.id),
            ik::status_code.eq(None::<i32>),
            ik::response_body.eq(None::<String>),
            ik::subject_id.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(if taken == 1 { Claim::Fresh } else { Claim::InProgress })
}

/// Stores `(status, body)` as the reply of a [`Claim::Lost`] claim (created at `created_at`)
/// that is still open.
pub fn settle(
    conn: &mut DbConnection,
    req: &Request<'_>,
    created_at: NaiveDateTime,
    (status, body): (u16, &str),
) -> QueryResult<()> {
    diesel::update(ik::table.find((req.scope, req.key)))
        .filter(ik::created_at.eq(created_at))
        .filter(ik::status_code.is_null())
        .set((ik::status_code.eq(Some(i32::from(status))), ik::response_body.eq(Some(body))))
        .execute(conn)?;
    Ok(())
}

/// Whether the request with this id changed anything (every state change audits it).
pub fn carried_out(conn: &mut DbConnection, request_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(audit_events::table.filter(audit_events::request_id.eq(request_id))))
        .get_result(conn)
}

/// A reply to store: its status and body, and the referral it concerns (if any), so erasing
/// that client's data reaches the stored copy.
pub struct Reply<'a> {
    pub status: u16,
    pub body: &'a str,
    pub subject_id: Option<&'a str>,
}

/// Stores the reply of this request's claim (not of a claim another retry took over since).
///
/// One statement, in its own transaction like the claim (on PostgreSQL a relaxed commit, see
/// the module's notes). The client's data may have been
/// erased while this request ran: then the reply keeps nothing of it (`response_body` NULL).
/// The erasure check is part of the UPDATE, with the referral row share-locked on PostgreSQL
/// (SQLite writers queue), so an erasure either commits first and is seen here, or waits and
/// then finds this reply by its `subject_id` to scrub. The lock is taken whatever `erased_at`
/// holds (a condition on it in the subquery would skip a row being erased instead of waiting).
pub fn complete(conn: &mut DbConnection, req: &Request<'_>, reply: &Reply<'_>) -> QueryResult<()> {
    use diesel::sql_types::{Integer, Nullable, Text};
    write_now(conn, |conn| {
        let status = i32::from(reply.status);
        match conn {
            DbConnection::Postgres(pg) => StoreReplyPg { status, reply, req }.execute(pg),
            DbConnection::Sqlite(lite) => diesel::sql_query(STORE_REPLY_SQLITE)
                .bind::<Integer, _>(status)
                .bind::<Nullable<Text>, _>(reply.subject_id)
                .bind::<Text, _>(reply.body)
                .bind::<Text, _>(req.scope)
                .bind::<Text, _>(req.key)
                .bind::<Text, _>(req.id)
                .execute(lite),
        }?;
        Ok(())
    })
}

/// The reply's UPDATE on PostgreSQL, as a statement each connection keeps prepared (a
/// `sql_query` is parsed and planned anew on every call; this runs once per request with an
/// `Idempotency-Key`). The SQLite statement below says the same.
struct StoreReplyPg<'a> {
    status: i32,
    reply: &'a Reply<'a>,
    req: &'a Request<'a>,
}

crate::db::prepared_statement!(StoreReplyPg<'_>);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for StoreReplyPg<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Integer, Nullable, Text};
        out.push_sql("UPDATE idempotency_keys SET status_code = ");
        out.push_bind_param::<Integer, _>(&self.status)?;
        out.push_sql(", subject_id = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.reply.subject_id)?;
        out.push_sql(", response_body = CASE WHEN (SELECT erased_at IS NOT NULL FROM referrals WHERE id = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.reply.subject_id)?;
        out.push_sql(" FOR SHARE) THEN NULL ELSE ");
        out.push_bind_param::<Text, _>(&self.reply.body)?;
        out.push_sql(" END WHERE scope = ");
        out.push_bind_param::<Text, _>(&self.req.scope)?;
        out.push_sql(" AND idem_key = ");
        out.push_bind_param::<Text, _>(&self.req.key)?;
        out.push_sql(" AND request_id = ");
        out.push_bind_param::<Text, _>(&self.req.id)?;
        out.push_sql(concat!(" AND ", relaxed_commit!()));
        Ok(())
    }
}

const STORE_REPLY_SQLITE: &str = "UPDATE idempotency_keys SET status_code = ?1, subject_id = ?2, \
     response_body = CASE WHEN (SELECT erased_at IS NOT NULL FROM referrals WHERE id = ?2) \
     THEN NULL ELSE ?3 END \
     WHERE scope = ?4 AND idem_key = ?5 AND request_id = ?6";

/// Ends the claim of a request whose answer was "try again" (not stored): forgotten if the
/// request changed nothing, so the retry runs it; otherwise `lost` (`idempotency-reply-lost`)
/// is its reply from now on (the change is done; running it again would repeat it).
pub fn finish_unstored(conn: &mut DbConnection, req: &Request<'_>, reply: (u16, &str)) -> QueryResult<()> {
    write_now(conn, |conn| finish_unstored_now(conn, req, reply))
}

fn finish_unstored_now(conn: &mut DbConnection, req: &Request<'_>, (status, body): (u16, &str)) -> QueryResult<()> {
    if carried_out(conn, req.id)? {
        diesel::update(ik::table.find((req.scope, req.key)))
            .filter(ik::request_id.eq(req.id))
            .set((ik::status_code.eq(Some(i32::from(status))), ik::response_body.eq(Some(body))))
            .execute(conn)?;
    } else {
        diesel::delete(ik::table.find((req.scope, req.key))).filter(ik::request_id.eq(req.id)).execute(conn)?;
    }
    Ok(())
}

/// Erasure of a client's personal data: stored replies about their referral lose their body
/// and are replayed as `personal-data-erased` (the key stays claimed, so a retry is still not
/// run again).
pub fn scrub_subject(conn: &mut DbConnection, referral_id: &str) -> QueryResult<usize> {
    diesel::update(ik::table.filter(ik::subject_id.eq(referral_id)))
        .set(ik::response_body.eq(None::<String>))
        .execute(conn)
}

pub fn purge_expired(conn: &mut DbConnection) -> QueryResult<usize> {
    diesel::delete(ik::table.filter(ik::created_at.lt(now() - TTL))).execute(conn)
}
