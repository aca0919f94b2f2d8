//! Diesel queries per aggregate, returning `QueryResult` or a [`StoreError`]: what a row is,
//! not what it means to the caller. The use cases in `crate::app` open the transaction, apply
//! the rule, audit and queue notices around these.

pub mod ambassadors;
pub mod api_keys;
pub mod audit;
pub mod codes;
pub mod idempotency;
pub mod imports;
pub mod outbox;
pub mod payouts;
pub mod portal;
pub mod program;
pub mod queues;
pub mod reads;
pub mod referrals;
pub mod reports;
pub mod rewards;
pub mod search;
pub mod secrets;
pub mod tallies;
pub mod team;
pub mod webhooks;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What a write can meet besides a database failure: typed, so the use case that knows what
/// the row was can give it its meaning (a lost race for a client's contact names the referral
/// that won); anything not given one answers 409 `concurrent-update` at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set matched no row: another request changed it first.
    #[error("changed by a concurrent request")]
    Stale,
    /// A unique index refused the row: another request took the same value first. On
    /// PostgreSQL the transaction is aborted by then, so whoever names the winner looks it up
    /// after rollback.
    #[error("a concurrent request took the same unique value")]
    LostRace,
}

impl StoreError {
    /// `LostRace` for a unique violation, else the database error as it is.
    pub fn unique_race(e: diesel::result::Error) -> WriteError {
        if is_unique_violation(&e) {
            Self::LostRace.into()
        } else {
            e.into()
        }
    }
}

/// A write that a unique index may refuse: the race, named ([`StoreError::LostRace`]), or the
/// database's own failure.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Race(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl WriteError {
    /// Whether a unique index refused the row (the use case may know what that means).
    pub fn lost_race(&self) -> bool {
        matches!(self, Self::Race(StoreError::LostRace))
    }
}

/// True for a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// Transitions update `WHERE status = <the status read>`: if another request changed the
/// referral in between (possible on PostgreSQL, where writers do not queue as on SQLite), no
/// row matches and this request is refused rather than overwriting the other's change.
pub fn ensure_unchanged(rows: usize) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Stale)
    }
}

/// Rows per `INSERT … SELECT … FROM unnest(…)` or `UPDATE … FROM unnest(…)` on PostgreSQL (an
/// array per column, a dozen bind parameters whatever the count): 20 statements for 100,000
/// rows, each bind message a megabyte or so. Not one statement for all: libpq keeps its buffer
/// at the largest message it ever sent for the connection's life, and 100,000 audit events
/// are a 20 MB message.
pub(crate) const UNNEST_ROWS: usize = 5_000;

/// A multi-row INSERT of a `Vec` of rows. Diesel's batch insert does not go through the
/// `MultiConnection`, so it runs on the backend's own connection: one statement on
/// PostgreSQL; SQLite (in process, no round trips) may get a statement per row from diesel.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres(c) => diesel::insert_into($table).values($rows).execute(c),
            $crate::db::DbConnection::Sqlite(c) => diesel::insert_into($table).values($rows).execute(c),
        }
    };
}
pub(crate) use insert_rows;

/// `SUM(column)` as a BIGINT on both backends (PostgreSQL's `SUM(bigint)` is `NUMERIC`).
/// `column` is a literal from our own code, never input.
pub fn sum_bigint(
    column: &'static str,
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::BigInt>> {
    diesel::dsl::sql(&format!("CAST(SUM({column}) AS BIGINT)"))
}

/// `column IN ('a', 'b')` with the values written into the SQL rather than bound, for the
/// outbox polls that run every second on every instance. PostgreSQL keeps one generic plan for
/// a prepared `status = ANY($1)`: not knowing that the statuses asked for are the rare ones,
/// it scans the whole table each time (8 ms at 11,600 sent e-mails, 49 ms at 190,000), while
/// with the values in the statement (diesel never caches one with a SQL literal, so it is
/// planned with them) it reads the `(status, next_attempt_at)` index in well under a
/// millisecond. `column` and `values` are names from our own code, never input.
pub fn status_in(
    column: &'static str,
    values: &[&'static str],
) -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    debug_assert!(values.iter().all(|v| v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    diesel::dsl::sql(&format!("{column} IN ({})", list.join(", ")))
}

/// `CAST(SUM(expr) AS BIGINT)` as a typed expression: a sum of money as a BIGINT on both
/// backends, like [`sum_bigint`], but a statement using it stays prepared — diesel never
/// caches one with a SQL literal in it, so PostgreSQL would plan it again on every request.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
pub struct SumMinor<E>(E);

pub fn sum_minor<E>(expr: E) -> SumMinor<E>
where
    E: diesel::Expression<SqlType = diesel::sql_types::BigInt>,
{
    SumMinor(expr)
}

impl<E: diesel::Expression> diesel::Expression for SumMinor<E> {
    type SqlType = diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
}

impl<E, DB> diesel::query_builder::QueryFragment<DB> for SumMinor<E>
where
    DB: diesel::backend::Backend,
    E: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DB>) -> diesel::QueryResult<()> {
        out.push_sql("CAST(SUM(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") AS BIGINT)");
        Ok(())
    }
}

impl<E, GroupBy> diesel::expression::ValidGrouping<GroupBy> for SumMinor<E> {
    type IsAggregate = diesel::expression::is_aggregate::Yes;
}

impl<E: diesel::SelectableExpression<QS>, QS> diesel::SelectableExpression<QS> for SumMinor<E> {}

impl<E: diesel::AppearsOnTable<QS>, QS> diesel::AppearsOnTable<QS> for SumMinor<E> {}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The smallest id [`new_id`] can make at `t` (UUID v7 starts with the Unix time in
/// milliseconds), so "made at or after `t`" is `id >= first_id_at(t)`: a time range becomes a
/// range of an index that ends in `id`.
pub fn first_id_at(t: chrono::NaiveDateTime) -> String {
    let ms = u64::try_from(t.and_utc().timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    format!("{:08x}-{:04x}-0000-0000-000000000000", ms >> 16, ms & 0xFFFF)
}

/// A page request: newest first, continuing after `cursor` (an opaque encoding of the last
/// id seen). UUID v7 ids sort by creation time, so `id < cursor` walks back in time and no
/// item is lost or repeated when rows are added between pages. Plain data: a request's
/// `limit` and `cursor` are parsed into one by `PageRequest::parse` in `crate::app::input`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub after_id: Option<String>,
}

impl PageRequest {
    /// Cuts the `limit + 1` rows a query fetched to one page and the cursor for the next.
    pub fn finish<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> &str) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = if more { rows.last().map(|r| encode_cursor(id_of(r))) } else { None };
        Page { items: rows, next_cursor }
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

/// The id a cursor from [`PageRequest::finish`] continues after; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let id = raw.strip_prefix("v1:")?;
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern and wraps it in `%…%`.
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = new_id();
        assert_eq!(decode_cursor(&encode_cursor(&id)), Some(id));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn a_moment_bounds_the_ids_made_around_it() {
        let before = crate::db::now() - chrono::TimeDelta::milliseconds(1);
        let id = new_id();
        let after = crate::db::now() + chrono::TimeDelta::milliseconds(1);
        assert!(
            first_id_at(before) <= id && id < first_id_at(after),
            "{} {id} {}",
            first_id_at(before),
            first_id_at(after)
        );
        let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
        assert_eq!(first_id_at(epoch), "00000000-0000-0000-0000-000000000000");
        assert_eq!(first_id_at(epoch - chrono::TimeDelta::days(1)), first_id_at(epoch), "no negative times");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern(" A_b%c "), "%a\\_b\\%c%");
    }
}

/// Serialises stored UTC timestamps as RFC 3339 with `Z` (`2026-11-25T10:00:00.123456Z`).
pub mod utc {
    use chrono::{Datelike, NaiveDateTime, SecondsFormat, Timelike};
    use serde::Serializer;

    use super::date::{self, write_digits};

    /// Always six digits of fraction (truncated, as chrono's `SecondsFormat::Micros`). Written
    /// by hand: chrono's formatter interprets its format items for every value, which was
    /// 4 % of the server's CPU on a list of 50 referrals.
    pub fn format(t: &NaiveDateTime) -> String {
        let nanos = t.nanosecond();
        if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
            // Years beyond four digits and leap seconds: chrono's own rendering.
            return t.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true);
        }
        let mut out = [0u8; 27];
        date::write_ymd(&mut out[..10], t.date());
        out[10] = b'T';
        write_digits(&mut out[11..13], t.hour());
        out[13] = b':';
        write_digits(&mut out[14..16], t.minute());
        out[16] = b':';
        write_digits(&mut out[17..19], t.second());
        out[19] = b'.';
        write_digits(&mut out[20..26], nanos / 1_000);
        out[26] = b'Z';
        out.iter().map(|&b| char::from(b)).collect()
    }

    pub fn ser<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn ser_opt<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::{NaiveDate, SecondsFormat};

        #[test]
        fn timestamps_render_as_chrono_renders_them() {
            let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
            for t in [
                day.and_hms_opt(0, 0, 0).unwrap(),
                day.and_hms_micro_opt(10, 5, 9, 123_456).unwrap(),
                day.and_hms_nano_opt(23, 59, 59, 999_999_999).unwrap(),
                day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
                NaiveDate::from_ymd_opt(1, 1, 1).unwrap().and_hms_opt(1, 2, 3).unwrap(),
                NaiveDate::from_ymd_opt(9999, 12, 31).unwrap().and_hms_nano_opt(23, 59, 59, 7).unwrap(),
                NaiveDate::from_ymd_opt(12026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
                NaiveDate::from_ymd_opt(-1, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
            ] {
                assert_eq!(super::format(&t), t.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true));
            }
            assert_eq!(super::format(&day.and_hms_micro_opt(10, 5, 9, 120).unwrap()), "2026-11-25T10:05:09.000120Z");
        }
    }
}

/// Serialises dates as `YYYY-MM-DD` (as chrono's serde does, written by hand: chrono goes
/// through its `Debug` rendering for every value).
pub mod date {
    use chrono::{Datelike, NaiveDate};
    use serde::Serializer;

    /// `YYYY-MM-DD` into `out` (ten bytes) for years 0 to 9999.
    pub(super) fn write_ymd(out: &mut [u8], d: NaiveDate) {
        write_digits(&mut out[0..4], d.year() as u32);
        out[4] = b'-';
        write_digits(&mut out[5..7], d.month());
        out[7] = b'-';
        write_digits(&mut out[8..10], d.day());
    }

    /// `n` as decimal digits filling `out`, zero-padded (`n` must fit).
    pub(super) fn write_digits(out: &mut [u8], mut n: u32) {
        for b in out.iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }

    pub fn ser<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        if !(0..=9999).contains(&d.year()) {
            return s.collect_str(d);
        }
        let mut out = [0u8; 10];
        write_ymd(&mut out, *d);
        s.serialize_str(std::str::from_utf8(&out).expect("ASCII digits"))
    }

    pub fn ser_opt<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => ser(d, s),
            None => s.serialize_none(),
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::NaiveDate;
        use serde::Serialize;

        #[derive(Serialize)]
        struct Both {
            #[serde(serialize_with = "super::ser")]
            ours: NaiveDate,
            chrono: NaiveDate,
            #[serde(serialize_with = "super::ser_opt")]
            some: Option<NaiveDate>,
            #[serde(serialize_with = "super::ser_opt")]
            none: Option<NaiveDate>,
        }

        #[test]
        fn dates_serialise_as_chrono_serialises_them() {
            for (y, m, d) in [(2026, 11, 25), (1, 1, 1), (9999, 12, 31), (12026, 2, 3), (-5, 6, 7)] {
                let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
                let json = serde_json::to_value(Both { ours: day, chrono: day, some: Some(day), none: None }).unwrap();
                assert_eq!(json["ours"], json["chrono"], "{day}");
                assert_eq!(json["some"], json["chrono"], "{day}");
                assert!(json["none"].is_null());
            }
        }
    }
}
