//! How stored timestamps and dates are read. SQLite keeps them as text (`2026-11-25
//! 10:00:00.123456`, `2026-11-25`), and diesel reads that text with chrono's
//! `parse_from_str`, which interprets its format string again for every value: on
//! `/v1/me/referrals` (50 rows, three dates each) that was 9 % of the server's CPU. Row
//! structs read their timestamp and date fields through these types instead
//! (`#[diesel(deserialize_as = Stamp)]`): the forms the service writes are parsed by hand,
//! anything else (a value written by hand in another form SQLite accepts) still goes through
//! diesel's own parser. PostgreSQL sends binary values and is read as before.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::sql_types::{Date, Nullable, Timestamp};
use diesel::sqlite::{Sqlite, SqliteValue};

use super::{MultiBackend, MultiRawValue};

/// A stored timestamp (`#[diesel(deserialize_as = Stamp)]` on a `NaiveDateTime` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct Stamp(pub NaiveDateTime);

/// A stored timestamp that may be NULL (on an `Option<NaiveDateTime>` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct MaybeStamp(pub Option<NaiveDateTime>);

/// A stored date (on a `NaiveDate` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct Day(pub NaiveDate);

/// A stored date that may be NULL (on an `Option<NaiveDate>` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct MaybeDay(pub Option<NaiveDate>);

/// `YYYY-MM-DD` at the start of `s`, and the rest.
fn date_prefix(s: &[u8]) -> Option<(NaiveDate, &[u8])> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let date = NaiveDate::from_ymd_opt(year as i32, digits(&s[5..7])?, digits(&s[8..10])?)?;
    Some((date, &s[10..]))
}

/// The value of a run of ASCII digits (at most 9 of them); `None` if any byte is not one.
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

/// `YYYY-MM-DD`, as the service writes dates.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    match date_prefix(s.as_bytes())? {
        (date, []) => Some(date),
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM:SS` with an optional fraction of 1 to 9 digits, as diesel writes a
/// `NaiveDateTime` to SQLite (`%F %T%.f`).
pub fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let (date, rest) = date_prefix(s.as_bytes())?;
    if rest.len() < 9 || rest[0] != b' ' || rest[3] != b':' || rest[6] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&rest[1..3])?, digits(&rest[4..6])?, digits(&rest[7..9])?);
    let nanos = match &rest[9..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    Some(date.and_time(NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?))
}

/// Reads SQLite text with `fast`, or with diesel's own `FromSql` for `T` when `fast` does not
/// take it.
fn from_sqlite_text<ST, T>(mut value: SqliteValue<'_, '_, '_>, fast: fn(&str) -> Option<T>) -> deserialize::Result<T>
where
    T: FromSql<ST, Sqlite>,
{
    match fast(value.read_text()) {
        Some(parsed) => Ok(parsed),
        None => T::from_sql(value),
    }
}

/// `FromSql` for a newtype over a chrono type `$inner` and SQL type `$st`, on both backends
/// and through the `MultiConnection`, and for the nullable newtype `$maybe`; and their
/// conversions into the row structs' field types.
macro_rules! stored_as {
    ($newtype:ident, $maybe:ident, $inner:ty, $st:ty, $fast:path) => {
        impl From<$newtype> for $inner {
            fn from(v: $newtype) -> Self {
                v.0
            }
        }

        impl From<$maybe> for Option<$inner> {
            fn from(v: $maybe) -> Self {
                v.0
            }
        }

        impl FromSql<$st, Sqlite> for $newtype {
            fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
                from_sqlite_text::<$st, $inner>(value, $fast).map($newtype)
            }
        }

        impl FromSql<$st, Pg> for $newtype {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
                <$inner as FromSql<$st, Pg>>::from_sql(value).map($newtype)
            }
        }

        impl FromSql<$st, MultiBackend> for $newtype {
            fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
                value.from_sql::<Self, $st>()
            }
        }

        impl FromSql<Nullable<$st>, Sqlite> for $maybe {
            fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
                <$newtype as FromSql<$st, Sqlite>>::from_sql(value).map(|v| $maybe(Some(v.0)))
            }
            fn from_nullable_sql(value: Option<SqliteValue<'_, '_, '_>>) -> deserialize::Result<Self> {
                value.map_or(Ok($maybe(None)), <Self as FromSql<Nullable<$st>, Sqlite>>::from_sql)
            }
        }

        impl FromSql<Nullable<$st>, Pg> for $maybe {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
                <$newtype as FromSql<$st, Pg>>::from_sql(value).map(|v| $maybe(Some(v.0)))
            }
            fn from_nullable_sql(value: Option<diesel::pg::PgValue<'_>>) -> deserialize::Result<Self> {
                value.map_or(Ok($maybe(None)), <Self as FromSql<Nullable<$st>, Pg>>::from_sql)
            }
        }

        impl FromSql<Nullable<$st>, MultiBackend> for $maybe {
            fn from_sql(value: MultiRawValue<'_>) -> deserialize::Result<Self> {
                value.from_sql::<Self, Nullable<$st>>()
            }
            fn from_nullable_sql(value: Option<MultiRawValue<'_>>) -> deserialize::Result<Self> {
                value.map_or(Ok($maybe(None)), <Self as FromSql<Nullable<$st>, MultiBackend>>::from_sql)
            }
        }
    };
}

stored_as!(Stamp, MaybeStamp, NaiveDateTime, Timestamp, parse_timestamp);
stored_as!(Day, MaybeDay, NaiveDate, Date, parse_date);

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_timestamp(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%F %T%.f").unwrap()
    }

    #[test]
    fn the_forms_the_service_writes_parse_as_chrono_parses_them() {
        for s in [
            "2026-11-25 10:00:00",
            "2026-11-25 10:00:00.1",
            "2026-11-25 23:59:59.123456",
            "2024-02-29 00:00:00.000000001",
            "1970-01-01 00:00:00.999999999",
            "9999-12-31 23:59:59.5",
        ] {
            assert_eq!(parse_timestamp(s), Some(chrono_timestamp(s)), "{s}");
        }
        // What diesel writes is what is read back.
        let t = chrono_timestamp("2026-11-25 10:00:00.123456");
        assert_eq!(parse_timestamp(&t.format("%F %T%.f").to_string()), Some(t));
        assert_eq!(parse_date("2026-11-25"), NaiveDate::from_ymd_opt(2026, 11, 25));
        assert_eq!(parse_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
    }

    #[test]
    fn values_in_other_forms_are_still_read_through_the_connection() {
        use diesel::dsl::sql;
        use diesel::prelude::*;
        let dir = std::env::temp_dir().join(format!("vouch-time-{}", uuid::Uuid::new_v4().simple()));
        let url = super::super::DatabaseUrl::Sqlite(dir.join("t.db"));
        let pool = super::super::build_pool(&url, 1, 1, std::time::Duration::from_secs(5)).unwrap();
        let mut conn = pool.get().unwrap();
        let stamp = |c: &mut super::super::DbConnection, text: &str| {
            diesel::select(sql::<Timestamp>(text)).get_result::<Stamp>(c).unwrap().0
        };
        let expected = chrono_timestamp("2026-11-25 10:00:00");
        for text in
            ["'2026-11-25 10:00:00'", "'2026-11-25T10:00:00'", "'2026-11-25 10:00'", "julianday('2026-11-25 10:00:00')"]
        {
            let read = stamp(&mut conn, text);
            assert!((read - expected).num_milliseconds().abs() < 10, "{text}: {read}");
        }
        let maybe = |c: &mut super::super::DbConnection, text: &str| {
            diesel::select(sql::<Nullable<Timestamp>>(text)).get_result::<MaybeStamp>(c).unwrap().0
        };
        assert_eq!(maybe(&mut conn, "NULL"), None);
        assert_eq!(maybe(&mut conn, "'2026-11-25 10:00:00.5'"), Some(chrono_timestamp("2026-11-25 10:00:00.5")));
        let day = |c: &mut super::super::DbConnection, text: &str| {
            diesel::select(sql::<Nullable<Date>>(text)).get_result::<MaybeDay>(c).unwrap().0
        };
        assert_eq!(day(&mut conn, "'2026-11-25'"), NaiveDate::from_ymd_opt(2026, 11, 25));
        assert_eq!(day(&mut conn, "NULL"), None);
        assert!(diesel::select(sql::<Date>("'25.11.2026'")).get_result::<Day>(&mut conn).is_err(), "no guess");
        drop((conn, pool));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn anything_else_is_left_to_the_general_parser() {
        for s in [
            "",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-11-25 10:00",
            "2026-11-25 10:00:00Z",
            "2026-11-25 10:00:00+01:00",
            "2026-11-25 10:00:00.",
            "2026-11-25 10:00:00.1234567890",
            "2026-13-25 10:00:00",
            "2026-11-25 24:00:00",
            "2026-11-25 10:0a:00",
            "+2026-11-25 10:00:00",
            "2026-11-25 10:00:00 ",
            "2026-1é-25 10:00:00",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s:?}");
        }
        for s in ["", "2026-11-25 ", "2026-02-30", "2026/11/25", "26-11-25", "2026-11-2x"] {
            assert_eq!(parse_date(s), None, "{s:?}");
        }
    }
}
