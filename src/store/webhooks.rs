//! Webhook endpoints and the webhook outbox: deliveries written inside the transaction of the
//! change they announce, claimed by the delivery worker under a lease (the e-mail outbox's
//! rules: `FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, every outcome
//! fenced by the claim's attempt number), in order per endpoint and entity; and every attempt.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::db::{now, write_now, write_tx, DbConnection, Prepared};
use crate::domain::webhook::{DeliveryStatus, PING};
use crate::store::{Page, PageRequest};

use DeliveryStatus::{Delivered as DELIVERED, Failed as FAILED, Pending as PENDING, Sending as SENDING};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: bool,
    pub staff_system: bool,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub previous_secret_expires_at: Option<NaiveDateTime>,
    pub failure_streak: i32,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub failing_since: Option<NaiveDateTime>,
    pub disabled_reason: Option<String>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct NewEndpoint<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub description: &'a str,
    pub events: &'a str,
    pub enabled: bool,
    pub staff_system: bool,
    pub secret_sealed: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// What an admin may change; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<String>,
    pub enabled: Option<bool>,
    pub staff_system: Option<bool>,
    /// `Some(None)` clears it (re-enabling).
    pub disabled_reason: Option<Option<String>>,
    pub failure_streak: Option<i32>,
    pub failing_since: Option<Option<NaiveDateTime>>,
}

pub fn insert_endpoint(conn: &mut DbConnection, new: &NewEndpoint<'_>) -> QueryResult<()> {
    diesel::insert_into(webhook_endpoints::table).values(new).execute(conn).map(drop)
}

pub fn find_endpoint(conn: &mut DbConnection, id: &str) -> QueryResult<EndpointRow> {
    webhook_endpoints::table.find(id).select(EndpointRow::as_select()).first(conn)
}

pub fn list_endpoints(conn: &mut DbConnection, page: &PageRequest) -> QueryResult<Page<EndpointRow>> {
    let mut query = webhook_endpoints::table.select(EndpointRow::as_select()).into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(webhook_endpoints::id.lt(after.clone()));
    }
    let rows = query.order(webhook_endpoints::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// The query of the enabled endpoints, for any backend's connection (also read in the audit
/// event's own statement: `store::audit::record_reading_endpoints`).
macro_rules! enabled_endpoints_query {
    () => {
        crate::db::schema::webhook_endpoints::table
            .filter(crate::db::schema::webhook_endpoints::enabled.eq(true))
            .order(crate::db::schema::webhook_endpoints::id.asc())
            .select(crate::store::webhooks::EndpointRow::as_select())
    };
}
pub(crate) use enabled_endpoints_query;

/// The enabled endpoints (the caller picks those subscribed to an event).
pub fn enabled_endpoints(conn: &mut DbConnection) -> QueryResult<Vec<EndpointRow>> {
    enabled_endpoints_query!().load(conn)
}

pub fn update_endpoint(conn: &mut DbConnection, id: &str, changes: &EndpointChanges) -> QueryResult<usize> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((changes, webhook_endpoints::updated_at.eq(now())))
        .execute(conn)
}

/// A new current secret; the one it replaces keeps signing until `previous_until`.
pub fn set_secrets(
    conn: &mut DbConnection,
    id: &str,
    sealed: &str,
    previous: Option<(&str, NaiveDateTime)>,
) -> QueryResult<usize> {
    diesel::update(webhook_endpoints::table.find(id))
        .set((
            webhook_endpoints::secret_sealed.eq(sealed),
            webhook_endpoints::previous_secret_sealed.eq(previous.map(|p| p.0)),
            webhook_endpoints::previous_secret_expires_at.eq(previous.map(|p| p.1)),
            webhook_endpoints::updated_at.eq(now()),
        ))
        .execute(conn)
}

/// Deletes an endpoint; its deliveries and their attempts go with it (ON DELETE CASCADE).
pub fn delete_endpoint(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(webhook_endpoints::table.find(id)).execute(conn)
}

/// A delivered attempt ends the endpoint's failure streak.
pub fn endpoint_succeeded(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    write_now(conn, |conn| {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::failure_streak.gt(0)))
            .set((webhook_endpoints::failure_streak.eq(0), webhook_endpoints::failing_since.eq(None::<NaiveDateTime>)))
            .execute(conn)
    })?;
    Ok(())
}

/// A failed attempt lengthens the streak; returns the endpoint as it is now.
pub fn endpoint_failed(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<EndpointRow> {
    write_tx(conn, |conn| {
        let since = find_endpoint(conn, id)?.failing_since.unwrap_or(at);
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::failure_streak.eq(webhook_endpoints::failure_streak + 1),
                webhook_endpoints::failing_since.eq(Some(since)),
            ))
            .execute(conn)?;
        find_endpoint(conn, id)
    })
}

/// Disables an enabled endpoint with a reason; 0 rows when it was not enabled any more.
pub fn disable_endpoint(conn: &mut DbConnection, id: &str, reason: &str) -> QueryResult<usize> {
    diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::enabled.eq(true)))
        .set((
            webhook_endpoints::enabled.eq(false),
            webhook_endpoints::disabled_reason.eq(Some(reason)),
            webhook_endpoints::updated_at.eq(now()),
        ))
        .execute(conn)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub entity_key: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub next_attempt_at: NaiveDateTime,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub delivered_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub endpoint_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub entity_key: &'a str,
    pub payload: &'a str,
    pub next_attempt_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

/// Queues a delivery (`pending`).
pub fn insert_delivery(conn: &mut DbConnection, new: &NewDelivery<'_>) -> QueryResult<()> {
    diesel::insert_into(webhook_deliveries::table)
        .values((new, webhook_deliveries::status.eq(PENDING)))
        .execute(conn)
        .map(drop)
}

pub fn find_delivery(conn: &mut DbConnection, id: &str) -> QueryResult<DeliveryRow> {
    webhook_deliveries::table.find(id).select(DeliveryRow::as_select()).first(conn)
}

pub fn list_deliveries(
    conn: &mut DbConnection,
    endpoint_id: &str,
    status: Option<DeliveryStatus>,
    page: &PageRequest,
) -> QueryResult<Page<DeliveryRow>> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id.to_owned()))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(webhook_deliveries::status.eq(status));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(webhook_deliveries::id.lt(after.clone()));
    }
    let rows = query.order(webhook_deliveries::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// Pending or being sent, as a literal the planner sees (see [`crate::store::status_in`]).
fn unfinished() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    crate::store::status_in("webhook_deliveries.status", &[PENDING.as_str(), SENDING.as_str()])
}

/// Of the candidates (id, endpoint, entity key), the ids of up to `limit` that are the
/// earliest unfinished delivery about their entity to their endpoint (a later event waits
/// while an earlier one is pending or being retried).
fn heads_among(
    conn: &mut DbConnection,
    candidates: &[(String, String, String)],
    limit: i64,
) -> QueryResult<Vec<String>> {
    let keys: Vec<&str> = candidates.iter().map(|c| c.2.as_str()).collect();
    let heads: Vec<(String, String, Option<String>)> = webhook_deliveries::table
        .filter(unfinished())
        .filter(webhook_deliveries::entity_key.eq_any(&keys))
        .group_by((webhook_deliveries::endpoint_id, webhook_deliveries::entity_key))
        .select((
            webhook_deliveries::endpoint_id,
            webhook_deliveries::entity_key,
            diesel::dsl::min(webhook_deliveries::id),
        ))
        .load(conn)?;
    let is_head = |(id, endpoint, key): &(String, String, String)| {
        heads.iter().any(|(e, k, head)| e == endpoint && k == key && head.as_deref() == Some(id.as_str()))
    };
    let ids: Vec<String> = candidates.iter().filter(|c| is_head(c)).take(limit as usize).map(|c| c.0.clone()).collect();
    Ok(ids)
}

/// Claims up to `limit` due deliveries: pending ones whose time has come and ones left
/// `sending` by an instance whose lease ran out, to enabled endpoints (pings to any), each the earliest
/// unfinished delivery about its entity to its endpoint (a later event waits while an earlier
/// one is pending or being retried). Each is marked `sending` with one more attempt and a
/// lease until `now + lease`.
pub fn claim(conn: &mut DbConnection, limit: i64, lease: TimeDelta) -> QueryResult<Vec<DeliveryRow>> {
    // To enabled endpoints only, but for a ping (an admin checking a disabled endpoint's fix).
    let sendable = || {
        webhook_deliveries::endpoint_id
            .eq_any(webhook_endpoints::table.filter(webhook_endpoints::enabled.eq(true)).select(webhook_endpoints::id))
            .or(webhook_deliveries::event_type.eq(PING))
    };
    let any_due: bool = Prepared(diesel::select(diesel::dsl::exists(
        webhook_deliveries::table
            .filter(unfinished())
            .filter(webhook_deliveries::next_attempt_at.le(now()))
            .filter(sendable()),
    )))
    .get_result(conn)?;
    if !any_due {
        return Ok(Vec::new());
    }
    write_tx(conn, |conn| {
        let at = now();
        let due = unfinished().and(webhook_deliveries::next_attempt_at.le(at)).and(sendable());
        // More candidates than the limit: some may be waiting behind an earlier event.
        let candidates = webhook_deliveries::table
            .filter(due)
            .order(webhook_deliveries::id.asc())
            .limit(limit * 4)
            .select((webhook_deliveries::id, webhook_deliveries::endpoint_id, webhook_deliveries::entity_key));
        let candidates: Vec<(String, String, String)> = match conn {
            DbConnection::Postgres(pg) => candidates.for_update().skip_locked().load(pg)?,
            DbConnection::Sqlite(sqlite) => candidates.load(sqlite)?,
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids = heads_among(conn, &candidates, limit)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
            .set((
                webhook_deliveries::status.eq(SENDING),
                webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
                webhook_deliveries::next_attempt_at.eq(at + lease),
            ))
            .execute(conn)?;
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(&ids))
            .order(webhook_deliveries::id.asc())
            .select(DeliveryRow::as_select())
            .load(conn)
    })
}

/// Every outcome of a claim is fenced by the claim's attempt number (see the e-mail outbox).
macro_rules! claimed_row {
    ($id:expr, $attempts:expr) => {
        webhook_deliveries::table
            .find($id)
            .filter(webhook_deliveries::status.eq(SENDING))
            .filter(webhook_deliveries::attempts.eq($attempts))
    };
}

/// Extends this claim just before sending; `false` when it lapsed and another instance took
/// the delivery over (then this one must not send it).
pub fn renew(conn: &mut DbConnection, id: &str, attempts: i32, until: NaiveDateTime) -> QueryResult<bool> {
    let renewed = write_now(conn, |conn| {
        diesel::update(claimed_row!(id, attempts)).set(webhook_deliveries::next_attempt_at.eq(until)).execute(conn)
    })?;
    Ok(renewed == 1)
}

/// What one attempt got back.
pub struct Outcome<'a> {
    pub status_code: Option<i32>,
    pub response_body: Option<&'a str>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
}

/// Records an attempt and the delivery's new state in one transaction: `next` is `None` when
/// it was delivered, `Some(Some(at))` for a retry at `at`, `Some(None)` when it failed for
/// good. Returns whether the claim still held (else nothing is written).
pub fn record_attempt(
    conn: &mut DbConnection,
    row: &DeliveryRow,
    outcome: &Outcome<'_>,
    next: Option<Option<NaiveDateTime>>,
) -> QueryResult<bool> {
    let at = now();
    write_tx(conn, |conn| {
        let changed = match next {
            None => diesel::update(claimed_row!(&row.id, row.attempts))
                .set((
                    webhook_deliveries::status.eq(DELIVERED),
                    webhook_deliveries::delivered_at.eq(Some(at)),
                    webhook_deliveries::last_status_code.eq(outcome.status_code),
                    webhook_deliveries::last_error.eq(None::<String>),
                ))
                .execute(conn)?,
            Some(retry_at) => diesel::update(claimed_row!(&row.id, row.attempts))
                .set((
                    webhook_deliveries::status.eq(if retry_at.is_some() { PENDING } else { FAILED }),
                    webhook_deliveries::next_attempt_at.eq(retry_at.unwrap_or(row.next_attempt_at)),
                    webhook_deliveries::last_status_code.eq(outcome.status_code),
                    webhook_deliveries::last_error.eq(outcome.error),
                ))
                .execute(conn)?,
        };
        if changed == 0 {
            return Ok(false);
        }
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::id.eq(crate::store::new_id()),
                webhook_attempts::delivery_id.eq(&row.id),
                webhook_attempts::attempt.eq(row.attempts),
                webhook_attempts::attempted_at.eq(at),
                webhook_attempts::status_code.eq(outcome.status_code),
                webhook_attempts::response_body.eq(outcome.response_body),
                webhook_attempts::error.eq(outcome.error),
                webhook_attempts::duration_ms.eq(outcome.duration_ms),
            ))
            .execute(conn)?;
        Ok(true)
    })
}

/// A delivered or failed delivery → pending again with a fresh set of tries, due now;
/// returns the rows changed (none while it is still pending or being sent).
pub fn requeue(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table.find(id).filter(webhook_deliveries::status.eq_any([DELIVERED, FAILED])))
        .set((
            webhook_deliveries::status.eq(PENDING),
            webhook_deliveries::attempts.eq(0),
            webhook_deliveries::next_attempt_at.eq(now()),
        ))
        .execute(conn)
}

/// The payloads of every delivery about one entity (`referral:<id>`), sent or not.
pub fn payloads_about(conn: &mut DbConnection, entity_key: &str) -> QueryResult<Vec<(String, String)>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::entity_key.eq(entity_key))
        .select((webhook_deliveries::id, webhook_deliveries::payload))
        .load(conn)
}

pub fn set_payload(conn: &mut DbConnection, id: &str, payload: &str) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table.find(id)).set(webhook_deliveries::payload.eq(payload)).execute(conn)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptRow {
    pub id: String,
    pub delivery_id: String,
    pub attempt: i32,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// The attempts at these deliveries, oldest first.
pub fn attempts_of(conn: &mut DbConnection, delivery_ids: &[&str]) -> QueryResult<Vec<AttemptRow>> {
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(delivery_ids))
        .order((webhook_attempts::attempted_at.asc(), webhook_attempts::id.asc()))
        .select(AttemptRow::as_select())
        .load(conn)
}
