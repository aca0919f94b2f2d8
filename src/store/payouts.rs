//! Payout batches, their lines, and the rewards they carry: the queries behind
//! `crate::app::payouts` (which holds the flows and their rules).
//!
//! Never twice: a reward points at one line at most (a single column), moves only by
//! compare-and-set on its state, at most one draft exists (partial unique index), and every
//! change to a batch first takes the batch row's lock ([`hold`]), which serialises concurrent
//! changes to it on PostgreSQL as SQLite's single writer does.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, payout_lines, payouts, referrals, rewards};
use crate::db::DbConnection;
use crate::domain::money::{Currency, Money};
use crate::domain::payout::{LineStatus, PayoutStatus};
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::{RewardKind, RewardState};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::rewards::RewardRow;
use crate::store::{Page, PageRequest, StoreError, WriteError, UNNEST_ROWS};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payouts)]
pub struct PayoutRow {
    pub id: String,
    pub number: i32,
    pub status: PayoutStatus,
    pub currency: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub cutoff: NaiveDateTime,
    pub total_minor: i64,
    pub skipped: String,
    pub reference: Option<String>,
    pub created_by: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub paid_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub cancelled_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: NaiveDateTime,
    pub program_version_id: String,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub locked_at: Option<NaiveDateTime>,
    pub cancel_reason: Option<String>,
}

impl PayoutRow {
    /// `P12`: short enough for payment references.
    pub fn code(&self) -> String {
        format!("P{}", self.number)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payout_lines)]
pub struct LineRow {
    pub id: String,
    pub payout_id: String,
    pub number: i32,
    pub ambassador_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payout_method: String,
    pub payout_address: Option<String>,
    pub method_seq: i32,
    pub status: LineStatus,
    pub failure_reason: Option<String>,
    pub reward_count: i32,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: NaiveDateTime,
}

impl LineRow {
    pub fn money(&self) -> Money {
        Money::new(self.amount_minor, Currency::from_stored(&self.currency))
    }
}

/// An ambassador a new batch left out, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub ambassador_id: String,
    pub reason: String,
    /// Their payable balance at the cutoff (carried over).
    pub payable_minor: i64,
}

/// A payout line as finance sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineView {
    pub id: String,
    pub number: i32,
    pub ambassador_id: String,
    pub ambassador_name: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `paypal`, `bank` or `store_credit`, as approved when the batch was made.
    pub payout_method: String,
    /// The PayPal e-mail or bank reference.
    pub payout_address: Option<String>,
    pub status: LineStatus,
    pub failure_reason: Option<String>,
    pub reward_count: i32,
}

impl LineView {
    pub fn new(l: LineRow, ambassador_name: String) -> Self {
        Self {
            status: l.status,
            id: l.id,
            number: l.number,
            ambassador_id: l.ambassador_id,
            ambassador_name,
            amount_minor: l.amount_minor,
            currency: l.currency,
            payout_method: l.payout_method,
            payout_address: l.payout_address,
            failure_reason: l.failure_reason,
            reward_count: l.reward_count,
        }
    }
}

/// A payout batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub id: String,
    /// Short reference (`P12`), used in exports.
    pub code: String,
    pub status: PayoutStatus,
    pub currency: String,
    /// Rewards payable at this moment were taken.
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub cutoff: NaiveDateTime,
    /// Sum of the lines to be paid or paid (failed, released and cancelled lines excluded).
    /// From `processing` on it changes only when a line is marked failed.
    pub total_minor: i64,
    /// Ambassadors left out, with the reason (`below_minimum`, `missing_payout_details`,
    /// `suspended`, `not_active`); their balances carry over.
    pub skipped: Vec<Skipped>,
    /// The payment reference given when it was marked paid.
    pub reference: Option<String>,
    pub created_by: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    /// The program version the batch was built with (its minimum payout applies to refunds
    /// that shrink a draft line).
    pub program_version_id: String,
    /// When it was locked for payment (`lock` or the PayPal download).
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub locked_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub cancelled_at: Option<NaiveDateTime>,
    /// Why it was cancelled (required once it had been locked).
    pub cancel_reason: Option<String>,
    /// Present on the detail; omitted in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineView>>,
}

impl PayoutView {
    pub fn new(p: PayoutRow, lines: Option<Vec<LineView>>) -> Self {
        Self {
            status: p.status,
            code: p.code(),
            skipped: serde_json::from_str(&p.skipped).unwrap_or_default(),
            id: p.id,
            currency: p.currency,
            cutoff: p.cutoff,
            total_minor: p.total_minor,
            reference: p.reference,
            created_by: p.created_by,
            created_at: p.created_at,
            program_version_id: p.program_version_id,
            locked_at: p.locked_at,
            paid_at: p.paid_at,
            cancelled_at: p.cancelled_at,
            cancel_reason: p.cancel_reason,
            lines,
        }
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<PayoutRow> {
    payouts::table.find(id).select(PayoutRow::as_select()).first(conn)
}

pub fn find_line(conn: &mut DbConnection, payout_id: &str, line_id: &str) -> QueryResult<LineRow> {
    payout_lines::table
        .find(line_id)
        .filter(payout_lines::payout_id.eq(payout_id))
        .select(LineRow::as_select())
        .first(conn)
}

/// A batch with its lines (and each line's ambassador name), lines in order.
pub fn detail(conn: &mut DbConnection, id: &str) -> QueryResult<PayoutView> {
    let payout = find(conn, id)?;
    let lines: Vec<(LineRow, String)> = payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(id))
        .order(payout_lines::number.asc())
        .select((LineRow::as_select(), ambassadors::name))
        .load(conn)?;
    Ok(PayoutView::new(payout, Some(lines.into_iter().map(|(l, name)| LineView::new(l, name)).collect())))
}

/// Takes the batch row's lock (a no-op update) and reads its status afresh (`NotFound`: no
/// such batch). On PostgreSQL this queues every change to the same batch behind each other,
/// and the status read after the wait is the committed one; SQLite's single writer does the
/// same. Every change to a batch, its lines or the rewards in them starts here, so a lock,
/// payment, cancellation, refund or suspension at the same moment is seen, never raced.
pub fn hold(conn: &mut DbConnection, payout_id: &str) -> QueryResult<PayoutStatus> {
    let found = diesel::update(payouts::table.find(payout_id))
        .set(payouts::updated_at.eq(payouts::updated_at))
        .execute(conn)?;
    if found == 0 {
        return Err(diesel::result::Error::NotFound);
    }
    Ok(find(conn, payout_id)?.status)
}

/// [`hold`] for the batch a line belongs to; returns (batch id, its status).
pub fn hold_batch_of_line(conn: &mut DbConnection, line_id: &str) -> QueryResult<(String, PayoutStatus)> {
    let payout_id: String = payout_lines::table.find(line_id).select(payout_lines::payout_id).first(conn)?;
    let status = hold(conn, &payout_id)?;
    Ok((payout_id, status))
}

/// Re-sums the batch total from its live lines.
pub fn refresh_total(conn: &mut DbConnection, payout_id: &str) -> QueryResult<()> {
    let total: Option<i64> = payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::status.eq_any([LineStatus::Pending, LineStatus::Paid]))
        .select(crate::store::sum_bigint("amount_minor"))
        .first(conn)?;
    diesel::update(payouts::table.find(payout_id)).set(payouts::total_minor.eq(total.unwrap_or(0))).execute(conn)?;
    Ok(())
}

/// The ambassadors a new batch may pay, their rows locked until the batch is written. A
/// suspension at the same moment then either commits first (and the batch sees the ambassador
/// suspended and skips them) or waits for the batch (and takes the new line out of the draft):
/// never a suspended ambassador with a pending line in a draft. PostgreSQL locks the rows
/// `FOR UPDATE` in id order, so two batch creations never deadlock; SQLite's single writer
/// (`BEGIN IMMEDIATE`) serialises already.
///
/// However many ids: one statement on PostgreSQL (the ids as one array, `= ANY($1)`), one per
/// 10,000 ids on SQLite (a bind parameter each, under its 32,766).
pub fn candidates_locked(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<AmbassadorRow>> {
    let query = |ids| ambassadors::table.filter(ambassadors::id.eq_any(ids)).order(ambassadors::id.asc());
    match conn {
        DbConnection::Postgres(pg) => query(ids).select(AmbassadorRow::as_select()).for_update().load(pg),
        DbConnection::Sqlite(sqlite) => {
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(10_000) {
                found.extend(query(chunk).select(AmbassadorRow::as_select()).load(sqlite)?);
            }
            Ok(found)
        }
    }
}

/// The names of the given ambassadors by id, read 500 ids a query (however many are asked).
pub fn ambassador_names(conn: &mut DbConnection, ids: &[&str]) -> QueryResult<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(String, String)> = ambassadors::table
            .filter(ambassadors::id.eq_any(chunk))
            .select((ambassadors::id, ambassadors::name))
            .load(conn)?;
        names.extend(found);
    }
    Ok(names)
}

pub fn current_draft(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    payouts::table.filter(payouts::status.eq(PayoutStatus::Draft)).select(payouts::id).first(conn).optional()
}

/// Every open reward payable at `cutoff` (and made by then): (id, ambassador id, amount), in
/// id order.
pub fn payable_rewards(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<Vec<(String, String, i64)>> {
    rewards::table
        .filter(rewards::state.eq(RewardState::Open))
        .filter(rewards::holds_until.le(cutoff))
        .filter(rewards::created_at.le(cutoff))
        .order(rewards::id.asc())
        .select((rewards::id, rewards::ambassador_id, rewards::amount_minor))
        .load(conn)
}

/// The number the next batch gets (`P1`, `P2`, …).
pub fn next_number(conn: &mut DbConnection) -> QueryResult<i32> {
    let number: Option<i32> = payouts::table.select(diesel::dsl::max(payouts::number)).first(conn)?;
    Ok(number.unwrap_or(0) + 1)
}

/// A new draft batch (its lines follow with [`insert_lines`]).
pub struct NewBatch<'a> {
    pub id: &'a str,
    pub number: i32,
    pub currency: &'a str,
    pub cutoff: NaiveDateTime,
    pub total_minor: i64,
    /// The ambassadors left out, as JSON.
    pub skipped: &'a str,
    pub created_by: &'a str,
    pub at: NaiveDateTime,
    pub program_version_id: &'a str,
}

/// Writes a draft batch; `LostRace` when another draft was written at the same moment (at
/// most one draft exists: a partial unique index).
pub fn insert_batch(conn: &mut DbConnection, b: &NewBatch<'_>) -> Result<(), WriteError> {
    diesel::insert_into(payouts::table)
        .values((
            payouts::id.eq(b.id),
            payouts::number.eq(b.number),
            payouts::status.eq(PayoutStatus::Draft),
            payouts::currency.eq(b.currency),
            payouts::cutoff.eq(b.cutoff),
            payouts::total_minor.eq(b.total_minor),
            payouts::skipped.eq(b.skipped),
            payouts::created_by.eq(b.created_by),
            payouts::created_at.eq(b.at),
            payouts::updated_at.eq(b.at),
            payouts::program_version_id.eq(b.program_version_id),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    Ok(())
}

/// A pending line of a new batch.
pub struct NewLine<'a> {
    pub id: &'a str,
    pub payout_id: &'a str,
    pub number: i32,
    pub ambassador_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub payout_method: &'a str,
    pub payout_address: Option<&'a str>,
    /// The line's place among the batch's lines of the same method (PayPal file parts).
    pub method_seq: i32,
    pub reward_count: i32,
    pub at: NaiveDateTime,
}

/// A new batch's lines per INSERT on SQLite (13 values a line: 13,000 bind parameters, under
/// its 32,766).
const LINES_PER_INSERT: usize = 1_000;
/// A new batch's rewards per UPDATE on SQLite (two bind parameters each: 20,000).
const REWARDS_PER_UPDATE: usize = 10_000;

/// Writes a new batch's lines. PostgreSQL: an `INSERT … SELECT … FROM unnest(…)` per
/// [`UNNEST_ROWS`] lines, an array per column (12 bind parameters however many lines, where a
/// multi-row INSERT of 1,000 lines had 13,000, each formatted into the SQL by the server and
/// parsed and typed by PostgreSQL). SQLite (in process, no round trip to save): multi-row
/// INSERTs of `LINES_PER_INSERT`.
pub fn insert_lines(conn: &mut DbConnection, lines: &[NewLine<'_>]) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        for chunk in lines.chunks(UNNEST_ROWS) {
            insert_lines_pg(pg, chunk)?;
        }
        return Ok(());
    }
    for chunk in lines.chunks(LINES_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|l| {
                (
                    payout_lines::id.eq(l.id),
                    payout_lines::payout_id.eq(l.payout_id),
                    payout_lines::number.eq(l.number),
                    payout_lines::ambassador_id.eq(l.ambassador_id),
                    payout_lines::amount_minor.eq(l.amount_minor),
                    payout_lines::currency.eq(l.currency),
                    payout_lines::payout_method.eq(l.payout_method),
                    payout_lines::payout_address.eq(l.payout_address),
                    payout_lines::method_seq.eq(l.method_seq),
                    payout_lines::status.eq(LineStatus::Pending),
                    payout_lines::reward_count.eq(l.reward_count),
                    payout_lines::created_at.eq(l.at),
                    payout_lines::updated_at.eq(l.at),
                )
            })
            .collect();
        crate::store::insert_rows!(conn, payout_lines::table, rows)?;
    }
    Ok(())
}

const INSERT_LINES_PG: &str = "INSERT INTO payout_lines (id, payout_id, number, ambassador_id, amount_minor, \
     currency, payout_method, payout_address, method_seq, reward_count, created_at, updated_at, status) \
     SELECT u.*, u.created_at, $12 FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int8[], \
     $6::text[], $7::text[], $8::text[], $9::int4[], $10::int4[], $11::timestamp[]) \
     AS u(id, payout_id, number, ambassador_id, amount_minor, currency, payout_method, payout_address, \
     method_seq, reward_count, created_at)";

fn insert_lines_pg(pg: &mut diesel::PgConnection, lines: &[NewLine<'_>]) -> QueryResult<()> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
    fn column<'a, T>(lines: &[NewLine<'a>], f: impl Fn(&NewLine<'a>) -> T) -> Vec<T> {
        lines.iter().map(f).collect()
    }
    diesel::sql_query(INSERT_LINES_PG)
        .bind::<Array<Text>, _>(column(lines, |l| l.id))
        .bind::<Array<Text>, _>(column(lines, |l| l.payout_id))
        .bind::<Array<Integer>, _>(column(lines, |l| l.number))
        .bind::<Array<Text>, _>(column(lines, |l| l.ambassador_id))
        .bind::<Array<BigInt>, _>(column(lines, |l| l.amount_minor))
        .bind::<Array<Text>, _>(column(lines, |l| l.currency))
        .bind::<Array<Text>, _>(column(lines, |l| l.payout_method))
        .bind::<Array<Nullable<Text>>, _>(column(lines, |l| l.payout_address))
        .bind::<Array<Integer>, _>(column(lines, |l| l.method_seq))
        .bind::<Array<Integer>, _>(column(lines, |l| l.reward_count))
        .bind::<Array<Timestamp>, _>(column(lines, |l| l.at))
        .bind::<Text, _>(LineStatus::Pending.as_str())
        .execute(pg)?;
    Ok(())
}

/// Moves these rewards, each given with the id of the line it goes into, if still open;
/// returns how many moved (fewer than given: one stopped being open, say a refund voided it
/// meanwhile), stopping at the first statement that comes up short. PostgreSQL: an `UPDATE …
/// FROM unnest(…)` per [`UNNEST_ROWS`]; SQLite: a [`TakeRewards`] per `REWARDS_PER_UPDATE`.
pub fn take_rewards(conn: &mut DbConnection, moves: &[(&str, &str)], at: NaiveDateTime) -> QueryResult<usize> {
    let per_statement = if matches!(conn, DbConnection::Postgres(_)) { UNNEST_ROWS } else { REWARDS_PER_UPDATE };
    let mut moved = 0;
    for chunk in moves.chunks(per_statement) {
        let n = match conn {
            DbConnection::Postgres(pg) => take_rewards_pg(pg, chunk, at)?,
            DbConnection::Sqlite(lite) => TakeRewards { moves: chunk, at }.execute(lite)?,
        };
        moved += n;
        if n < chunk.len() {
            break;
        }
    }
    Ok(moved)
}

fn take_rewards_pg(pg: &mut diesel::PgConnection, moves: &[(&str, &str)], at: NaiveDateTime) -> QueryResult<usize> {
    use diesel::sql_types::{Array, Text, Timestamp};
    let (reward_ids, line_ids): (Vec<&str>, Vec<&str>) = moves.iter().copied().unzip();
    diesel::sql_query(
        "UPDATE rewards SET state = $1, payout_line_id = v.line_id, updated_at = $2 \
         FROM unnest($3::text[], $4::text[]) AS v(reward_id, line_id) \
         WHERE rewards.id = v.reward_id AND rewards.state = $5",
    )
    .bind::<Text, _>(RewardState::InPayout.as_str())
    .bind::<Timestamp, _>(at)
    .bind::<Array<Text>, _>(reward_ids)
    .bind::<Array<Text>, _>(line_ids)
    .bind::<Text, _>(RewardState::Open.as_str())
    .execute(pg)
}

/// SQLite's `UPDATE rewards … FROM (VALUES (reward id, line id), …)`: each reward is found by its
/// primary key and gets the line the caller planned for it, so the statement never joins the
/// batch's lines (which, inserted in the same transaction, have no statistics yet: the old
/// join by `(payout_id, ambassador_id)` walked every line of the batch for each chunk).
/// Diesel has no `UPDATE … FROM`; SQLite takes it from 3.33 on and names a `VALUES` list's
/// columns `column1`, `column2`. (PostgreSQL takes this text too; it gets the `unnest` form
/// instead, two bind parameters a statement rather than two a reward.)
struct TakeRewards<'a> {
    moves: &'a [(&'a str, &'a str)],
    at: NaiveDateTime,
}

impl diesel::query_builder::QueryId for TakeRewards<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for TakeRewards<'_>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Timestamp>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    NaiveDateTime: diesel::serialize::ToSql<diesel::sql_types::Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> {
        use diesel::sql_types::{Text, Timestamp};
        // Its text depends on the number of rewards: not worth a prepared-statement cache slot.
        out.unsafe_to_cache_prepared();
        out.push_sql("UPDATE rewards SET state = ");
        out.push_bind_param::<Text, str>(RewardState::InPayout.as_str())?;
        out.push_sql(", payout_line_id = v.column2, updated_at = ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(" FROM (VALUES ");
        for (i, (reward_id, line_id)) in self.moves.iter().enumerate() {
            out.push_sql(if i > 0 { ", (" } else { "(" });
            out.push_bind_param::<Text, str>(reward_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, str>(line_id)?;
            out.push_sql(")");
        }
        out.push_sql(") AS v WHERE rewards.id = v.column1 AND rewards.state = ");
        out.push_bind_param::<Text, str>(RewardState::Open.as_str())?;
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for TakeRewards<'_> {}

/// `from` → `to` (locked for payment), if still `from`; returns the rows changed.
pub fn set_locked(
    conn: &mut DbConnection,
    id: &str,
    from: PayoutStatus,
    to: PayoutStatus,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
        .set((payouts::status.eq(to), payouts::locked_at.eq(at), payouts::updated_at.eq(at)))
        .execute(conn)
}

/// `from` → `to` (paid, with the payment reference), if still `from`; returns the rows changed.
pub fn set_paid(
    conn: &mut DbConnection,
    id: &str,
    (from, to): (PayoutStatus, PayoutStatus),
    reference: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
        .set((
            payouts::status.eq(to),
            payouts::reference.eq(reference),
            payouts::paid_at.eq(at),
            payouts::updated_at.eq(at),
        ))
        .execute(conn)
}

/// `from` → `to` (cancelled, with the reason), if still `from`; returns the rows changed.
pub fn set_cancelled(
    conn: &mut DbConnection,
    id: &str,
    (from, to): (PayoutStatus, PayoutStatus),
    reason: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
        .set((
            payouts::status.eq(to),
            payouts::cancelled_at.eq(at),
            payouts::cancel_reason.eq(reason),
            payouts::updated_at.eq(at),
        ))
        .execute(conn)
}

/// The batch's lines still to be paid.
pub fn pending_lines(conn: &mut DbConnection, payout_id: &str) -> QueryResult<Vec<LineRow>> {
    payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .select(LineRow::as_select())
        .load(conn)
}

/// The ids of the batch's lines still to be paid.
pub fn pending_line_ids(conn: &mut DbConnection, payout_id: &str) -> QueryResult<Vec<String>> {
    payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .select(payout_lines::id)
        .load(conn)
}

/// Sets these lines' status (at most a few hundred ids at a time).
pub fn set_lines_status<S: AsRef<str>>(
    conn: &mut DbConnection,
    line_ids: &[S],
    status: LineStatus,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let ids: Vec<&str> = line_ids.iter().map(AsRef::as_ref).collect();
    diesel::update(payout_lines::table.filter(payout_lines::id.eq_any(ids)))
        .set((payout_lines::status.eq(status), payout_lines::updated_at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// `from` → `to` for one line, with why; returns the rows changed.
pub fn set_line_failed(
    conn: &mut DbConnection,
    line_id: &str,
    (from, to): (LineStatus, LineStatus),
    reason: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(payout_lines::table.find(line_id).filter(payout_lines::status.eq(&from)))
        .set((
            payout_lines::status.eq(to.as_str()),
            payout_lines::failure_reason.eq(reason),
            payout_lines::updated_at.eq(at),
        ))
        .execute(conn)
}

/// A pending line taken out of its draft (`Released`, with why); returns the rows changed.
pub fn release_line(conn: &mut DbConnection, line_id: &str, reason: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(payout_lines::table.find(line_id).filter(payout_lines::status.eq(LineStatus::Pending)))
        .set((
            payout_lines::status.eq(LineStatus::Released),
            payout_lines::failure_reason.eq(reason),
            payout_lines::updated_at.eq(at),
        ))
        .execute(conn)
}

/// A draft line's new amount, reward count and status after a refund took a reward out.
pub fn resize_line(
    conn: &mut DbConnection,
    line_id: &str,
    (amount_minor, reward_count): (i64, i64),
    status: LineStatus,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(payout_lines::table.find(line_id))
        .set((
            payout_lines::amount_minor.eq(amount_minor),
            payout_lines::reward_count.eq(reward_count as i32),
            payout_lines::status.eq(status.as_str()),
            payout_lines::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn line(conn: &mut DbConnection, line_id: &str) -> QueryResult<LineRow> {
    payout_lines::table.find(line_id).select(LineRow::as_select()).first(conn)
}

/// The sum and count of the rewards still in a line.
pub fn line_rewards_sum(conn: &mut DbConnection, line_id: &str) -> QueryResult<(Option<i64>, i64)> {
    rewards::table
        .filter(rewards::payout_line_id.eq(line_id))
        .filter(rewards::state.eq(RewardState::InPayout))
        .select((crate::store::sum_bigint("amount_minor"), diesel::dsl::count_star()))
        .first(conn)
}

/// The program version a batch was built with.
pub fn program_version_of(conn: &mut DbConnection, payout_id: &str) -> QueryResult<String> {
    payouts::table.find(payout_id).select(payouts::program_version_id).first(conn)
}

/// An ambassador's pending lines in a draft batch: (line id, batch id).
pub fn pending_draft_lines_of(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<Vec<(String, String)>> {
    payout_lines::table
        .inner_join(payouts::table)
        .filter(payout_lines::ambassador_id.eq(ambassador_id))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .filter(payouts::status.eq(PayoutStatus::Draft))
        .select((payout_lines::id, payout_lines::payout_id))
        .load(conn)
}

/// The ids of the rewards in these lines in the given state.
pub fn reward_ids_in_lines(conn: &mut DbConnection, line_ids: &[&str], state: RewardState) -> QueryResult<Vec<String>> {
    rewards::table
        .filter(rewards::payout_line_id.eq_any(line_ids))
        .filter(rewards::state.eq(state))
        .select(rewards::id)
        .load(conn)
}

/// These rewards → paid.
pub fn set_rewards_paid(conn: &mut DbConnection, reward_ids: &[String], at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(rewards::table.filter(rewards::id.eq_any(reward_ids)))
        .set((rewards::state.eq(RewardState::Paid), rewards::paid_at.eq(at), rewards::updated_at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// Earned rewards of refunded referrals in these lines, in the given state (`in_payout`: still
/// to be paid; `paid`: just paid).
pub fn refunded_in_lines(
    conn: &mut DbConnection,
    line_ids: &[&str],
    state: RewardState,
) -> QueryResult<Vec<RewardRow>> {
    rewards::table
        .inner_join(referrals::table)
        .filter(rewards::payout_line_id.eq_any(line_ids))
        .filter(rewards::state.eq(state))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .filter(referrals::status.eq(ReferralStatus::Refunded))
        .order(rewards::id.asc())
        .select(RewardRow::as_select())
        .load(conn)
}

/// Which of these referrals already have a clawback.
pub fn clawed_back(conn: &mut DbConnection, referral_ids: &[&str]) -> QueryResult<Vec<Option<String>>> {
    rewards::table
        .filter(rewards::referral_id.eq_any(referral_ids))
        .filter(rewards::kind.eq(RewardKind::Clawback))
        .select(rewards::referral_id)
        .load(conn)
}

/// The rewards in these lines that are in a payout or paid: (id, state).
pub fn rewards_in_lines(conn: &mut DbConnection, line_ids: &[&str]) -> QueryResult<Vec<(String, RewardState)>> {
    rewards::table
        .filter(rewards::payout_line_id.eq_any(line_ids))
        .filter(rewards::state.eq_any([RewardState::InPayout, RewardState::Paid]))
        .select((rewards::id, rewards::state))
        .load(conn)
}

/// These rewards → open (payable) again, out of any line.
pub fn reopen_rewards(conn: &mut DbConnection, reward_ids: &[&str], at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(rewards::table.filter(rewards::id.eq_any(reward_ids)))
        .set((
            rewards::state.eq(RewardState::Open),
            rewards::payout_line_id.eq(None::<String>),
            rewards::paid_at.eq(None::<NaiveDateTime>),
            rewards::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn list(conn: &mut DbConnection, status: Option<PayoutStatus>, page: &PageRequest) -> QueryResult<Page<PayoutRow>> {
    let mut query = payouts::table.select(PayoutRow::as_select()).order(payouts::id.desc()).into_boxed();
    if let Some(s) = status {
        query = query.filter(payouts::status.eq(s.as_str()));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(payouts::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// A line to export, with its ambassador's name and e-mail.
pub type ExportLine = (LineRow, String, String);

/// The live lines of a batch numbered in `(after, last]`, in line order. Exports read a batch
/// in such fixed ranges (line numbers run from 1 without gaps and never change), so a page
/// reads its own lines only, whatever the planner expects: right after a batch is made its
/// lines have no statistics yet, and PostgreSQL answered `number > after ORDER BY number
/// LIMIT n` by joining and sorting every line left in the batch, for each page.
pub fn lines_between(
    conn: &mut DbConnection,
    payout_id: &str,
    (after, last): (i32, i32),
) -> QueryResult<Vec<ExportLine>> {
    payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::number.gt(after).and(payout_lines::number.le(last)))
        .filter(payout_lines::status.eq_any([LineStatus::Pending, LineStatus::Paid]))
        .order(payout_lines::number.asc())
        .select((LineRow::as_select(), ambassadors::name, ambassadors::email))
        .load(conn)
}

/// The highest line number of a batch (its number of lines; `None`: no line).
pub fn last_line_number(conn: &mut DbConnection, payout_id: &str) -> QueryResult<Option<i32>> {
    payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .select(diesel::dsl::max(payout_lines::number))
        .first(conn)
}

/// Whether a batch still has a PayPal line to pay: whether its PayPal file would hold a line.
/// Released, failed and cancelled lines are not in the file. Asked for every part of the
/// file, so it stops at the first such line rather than counting them all.
pub fn has_pending_paypal_line(conn: &mut DbConnection, payout_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payout_lines::table
            .filter(payout_lines::payout_id.eq(payout_id))
            .filter(payout_lines::payout_method.eq("paypal"))
            .filter(payout_lines::status.eq(LineStatus::Pending)),
    ))
    .get_result(conn)
}

/// The highest PayPal sequence number in a batch, whatever its line's status (`None`: no
/// PayPal line). Parts of the PayPal file are fixed ranges of these numbers.
pub fn last_paypal_seq(conn: &mut DbConnection, payout_id: &str) -> QueryResult<Option<i32>> {
    payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::payout_method.eq("paypal"))
        .select(diesel::dsl::max(payout_lines::method_seq))
        .first(conn)
}

/// The pending PayPal lines with a sequence number in `(after_seq, last_seq]`, in order.
/// Parts are fixed ranges of these numbers, so they never overlap or shift, and a file's pages
/// are fixed ranges within them (see [`lines_between`]).
pub fn paypal_lines(
    conn: &mut DbConnection,
    payout_id: &str,
    after_seq: i32,
    last_seq: i32,
) -> QueryResult<Vec<ExportLine>> {
    payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::payout_method.eq("paypal"))
        .filter(payout_lines::method_seq.gt(after_seq).and(payout_lines::method_seq.le(last_seq)))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .order(payout_lines::method_seq.asc())
        .select((LineRow::as_select(), ambassadors::name, ambassadors::email))
        .load(conn)
}

/// An ambassador's payout lines (pending, paid or failed), with their batch.
pub fn lines_for_ambassador(
    conn: &mut DbConnection,
    ambassador_id: &str,
    page: &PageRequest,
) -> QueryResult<Page<(LineRow, PayoutRow)>> {
    let mut query = payout_lines::table
        .inner_join(payouts::table)
        .filter(payout_lines::ambassador_id.eq(ambassador_id))
        .filter(payout_lines::status.eq_any([
            LineStatus::Pending.as_str(),
            LineStatus::Paid.as_str(),
            LineStatus::Failed.as_str(),
        ]))
        .order(payout_lines::id.desc())
        .select((LineRow::as_select(), PayoutRow::as_select()))
        .into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(payout_lines::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.0.id))
}
