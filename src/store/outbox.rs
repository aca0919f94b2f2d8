//! The e-mail outbox: rows written inside the transaction of the change that causes them,
//! each with a dedupe key unique in the table, so nothing is queued (or sent) twice; and the
//! worker's side: claiming due rows, recording each outcome; and the queries behind the
//! admin list and retry (`crate::app::outbox`).

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::email_outbox;
use crate::db::{now, write_now, write_tx, DbConnection, Prepared};
use crate::domain::notice::EmailStatus;
use crate::store::{new_id, Page, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = email_outbox)]
pub struct OutboxRow {
    pub id: String,
    pub dedupe_key: String,
    pub template: String,
    pub to_address: String,
    pub payload: String,
    pub status: EmailStatus,
    pub attempts: i32,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub next_attempt_at: chrono::NaiveDateTime,
    pub last_error: Option<String>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub sent_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: chrono::NaiveDateTime,
}

/// Queues an e-mail (`template`: a `Template`) unless one with this dedupe key exists;
/// returns whether it queued one.
/// Call it inside the transaction of the change that causes the e-mail; only `app::notices`
/// does (it decides what goes to whom).
pub fn enqueue(
    conn: &mut DbConnection,
    dedupe_key: &str,
    template: impl AsRef<str>,
    to: &str,
    payload: &serde_json::Value,
) -> QueryResult<bool> {
    let at = now();
    // ON CONFLICT DO NOTHING: two transactions queueing the same notice at once (possible on
    // PostgreSQL) leave one row, and neither fails.
    let insert = diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::id.eq(new_id()),
            email_outbox::dedupe_key.eq(dedupe_key),
            email_outbox::template.eq(template.as_ref()),
            email_outbox::to_address.eq(to),
            email_outbox::payload.eq(payload.to_string()),
            email_outbox::status.eq(QUEUED),
            email_outbox::next_attempt_at.eq(at),
            email_outbox::created_at.eq(at),
        ))
        .on_conflict(email_outbox::dedupe_key)
        .do_nothing();
    // Upserts are backend-specific SQL, so each backend runs its own.
    let inserted = match conn {
        DbConnection::Postgres(pg) => insert.execute(pg)?,
        DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
    };
    Ok(inserted == 1)
}

use EmailStatus::{Failed as FAILED, Queued as QUEUED, Sending as SENDING, Sent as SENT};

/// Errors kept on a row are cut to this many characters.
const MAX_ERROR_CHARS: usize = 1000;

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// Queued or being sent, as a literal the planner sees (see [`crate::store::status_in`]).
fn unsent() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    crate::store::status_in("email_outbox.status", &[QUEUED.as_str(), SENDING.as_str()])
}

/// Claims up to `limit` due e-mails for sending: queued ones whose time has come, and ones
/// left `sending` by an instance whose lease ran out (it died mid-send). Each claimed row is
/// marked `sending` with one more attempt and a lease until `now + lease`.
///
/// On PostgreSQL the due rows are locked `FOR UPDATE SKIP LOCKED`, so several instances claim
/// disjoint batches without waiting on each other; on SQLite the `BEGIN IMMEDIATE` write
/// transaction serialises claimers.
pub fn claim(conn: &mut DbConnection, limit: i64, lease: chrono::TimeDelta) -> QueryResult<Vec<OutboxRow>> {
    // A plain read first: an idle outbox costs no write transaction (on SQLite, no write lock).
    let any_due: bool = Prepared(diesel::select(diesel::dsl::exists(
        email_outbox::table.filter(unsent()).filter(email_outbox::next_attempt_at.le(now())),
    )))
    .get_result(conn)?;
    if !any_due {
        return Ok(Vec::new());
    }
    write_tx(conn, |conn| {
        let at = now();
        let due = unsent().and(email_outbox::next_attempt_at.le(at));
        let ids: Vec<String> = match conn {
            DbConnection::Postgres(pg) => Prepared(
                email_outbox::table
                    .filter(due)
                    .order((email_outbox::next_attempt_at.asc(), email_outbox::id.asc()))
                    .limit(limit)
                    .select(email_outbox::id)
                    .for_update()
                    .skip_locked(),
            )
            .load(pg)?,
            DbConnection::Sqlite(sqlite) => email_outbox::table
                .filter(due)
                .order((email_outbox::next_attempt_at.asc(), email_outbox::id.asc()))
                .limit(limit)
                .select(email_outbox::id)
                .load(sqlite)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let taken = diesel::update(email_outbox::table.filter(email_outbox::id.eq_any(&ids))).set((
            email_outbox::status.eq(SENDING),
            email_outbox::attempts.eq(email_outbox::attempts + 1),
            email_outbox::next_attempt_at.eq(at + lease),
        ));
        Prepared(taken.returning(email_outbox::id)).load::<String>(conn)?;
        email_outbox::table
            .filter(email_outbox::id.eq_any(&ids))
            .order((email_outbox::next_attempt_at.asc(), email_outbox::id.asc()))
            .select(OutboxRow::as_select())
            .load(conn)
    })
}

/// Every outcome of a claim is fenced by the claim's attempt number: once a lapsed claim
/// has been taken over by another instance (which counts one more attempt), the first
/// instance can no longer change the row.
macro_rules! claimed_row {
    ($id:expr, $attempts:expr) => {
        email_outbox::table
            .find($id)
            .filter(email_outbox::status.eq(SENDING))
            .filter(email_outbox::attempts.eq($attempts))
    };
}

/// Extends this claim on one row just before it is sent; `false` when the claim has lapsed
/// and another instance took the row over (then this one must not send it).
pub fn renew(conn: &mut DbConnection, id: &str, attempts: i32, until: chrono::NaiveDateTime) -> QueryResult<bool> {
    let renewed = write_now(conn, |conn| {
        diesel::update(claimed_row!(id, attempts)).set(email_outbox::next_attempt_at.eq(until)).execute(conn)
    })?;
    Ok(renewed == 1)
}

/// Marks a claimed e-mail sent, replacing its payload with `scrubbed` (secrets such as a
/// login link have no business staying in the database once delivered).
pub fn mark_sent(conn: &mut DbConnection, id: &str, attempts: i32, scrubbed: &serde_json::Value) -> QueryResult<()> {
    let at = now();
    let sent = diesel::update(claimed_row!(id, attempts)).set((
        email_outbox::status.eq(SENT),
        email_outbox::sent_at.eq(Some(at)),
        email_outbox::last_error.eq(None::<String>),
        email_outbox::payload.eq(scrubbed.to_string()),
    ));
    write_now(conn, |conn| Prepared(sent.returning(email_outbox::id)).load::<String>(conn))?;
    Ok(())
}

/// A try failed but more are allowed: back to `queued`, due again at `next_at`.
pub fn schedule_retry(
    conn: &mut DbConnection,
    id: &str,
    attempts: i32,
    error: &str,
    next_at: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let retry = diesel::update(claimed_row!(id, attempts)).set((
        email_outbox::status.eq(QUEUED),
        email_outbox::last_error.eq(Some(clip(error))),
        email_outbox::next_attempt_at.eq(next_at),
    ));
    write_now(conn, |conn| retry.execute(conn))?;
    Ok(())
}

/// No more tries (or a permanent error): `failed`, with the error, until an admin retries it.
pub fn mark_failed(conn: &mut DbConnection, id: &str, attempts: i32, error: &str) -> QueryResult<()> {
    let failed = diesel::update(claimed_row!(id, attempts))
        .set((email_outbox::status.eq(FAILED), email_outbox::last_error.eq(Some(clip(error)))));
    write_now(conn, |conn| failed.execute(conn))?;
    Ok(())
}

/// Gives back claimed rows that were not tried (shutdown): queued again, the attempt not
/// counted, due at once for whichever instance runs next.
pub fn release(conn: &mut DbConnection, claims: &[(String, i32)]) -> QueryResult<()> {
    let at = now();
    write_now(conn, |conn| {
        for (id, attempts) in claims {
            diesel::update(claimed_row!(id, *attempts))
                .set((
                    email_outbox::status.eq(QUEUED),
                    email_outbox::attempts.eq(email_outbox::attempts - 1),
                    email_outbox::next_attempt_at.eq(at),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// An outbox row as admins see it: everything but the payload (which may hold a login link).
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = email_outbox)]
pub struct EmailView {
    pub id: String,
    /// What the e-mail is about, e.g. `reward-earned:<reward id>`; unique.
    pub dedupe_key: String,
    pub template: String,
    #[serde(rename = "to")]
    #[diesel(column_name = to_address)]
    pub to_address: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: i32,
    /// When a queued e-mail is due (for one being sent: when its claim lapses).
    #[serde(serialize_with = "crate::store::utc::ser")]
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub next_attempt_at: chrono::NaiveDateTime,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub sent_at: Option<chrono::NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: chrono::NaiveDateTime,
}

pub fn list(conn: &mut DbConnection, status: Option<EmailStatus>, page: &PageRequest) -> QueryResult<Page<EmailView>> {
    let mut query = email_outbox::table.select(EmailView::as_select()).into_boxed();
    if let Some(status) = status {
        query = query.filter(email_outbox::status.eq(status));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(email_outbox::id.lt(after.clone()));
    }
    let rows = query.order(email_outbox::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

pub fn find_view(conn: &mut DbConnection, id: &str) -> QueryResult<EmailView> {
    email_outbox::table.find(id).select(EmailView::as_select()).first(conn)
}

/// A `failed` e-mail → queued again with a fresh set of tries, due now; returns the rows
/// changed (none when it was not failed).
pub fn requeue_failed(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::update(email_outbox::table.find(id).filter(email_outbox::status.eq(FAILED)))
        .set((email_outbox::status.eq(QUEUED), email_outbox::attempts.eq(0), email_outbox::next_attempt_at.eq(now())))
        .execute(conn)
}

/// Rows per status, for the outbox depth gauge.
pub fn counts_by_status(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    email_outbox::table
        .group_by(email_outbox::status)
        .select((email_outbox::status, diesel::dsl::count_star()))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use crate::db::schema::email_outbox;

    /// The poll's statuses are in the statement's text, not bound: PostgreSQL's one generic
    /// plan for the prepared poll then still reads the `(status, next_attempt_at)` index.
    #[test]
    fn the_poll_names_its_statuses_in_the_sql() {
        let poll =
            email_outbox::table.filter(super::unsent()).filter(email_outbox::next_attempt_at.le(crate::db::now()));
        let sql = diesel::debug_query::<diesel::pg::Pg, _>(&poll).to_string();
        assert!(sql.contains("email_outbox.status IN ('queued', 'sending')"), "{sql}");
        assert!(!sql.contains("$2"), "only the time is bound: {sql}");
    }
}
