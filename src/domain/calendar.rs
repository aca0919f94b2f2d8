//! The clinic's calendar: which day a moment falls on, and when a day or a year begins, in the
//! clinic's time zone (`clinic.time_zone`). Timestamps are stored in UTC; every program date
//! (completion, sessions, registration, holding period, calendar years of tiers, caps and the
//! annual report) is a day of this calendar, so a clinic in Auckland or Honolulu never sees
//! "today" or "this year" shifted by its UTC offset.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
}

impl Default for Calendar {
    fn default() -> Self {
        Self { tz: Tz::UTC }
    }
}

impl Calendar {
    /// An IANA zone name such as `Europe/London` or `UTC`.
    pub fn parse(name: &str) -> Result<Self, String> {
        name.trim()
            .parse::<Tz>()
            .map(|tz| Self { tz })
            .map_err(|_| format!("{name:?} is not an IANA time zone name (e.g. \"Europe/London\", \"UTC\")"))
    }

    pub fn name(&self) -> &'static str {
        self.tz.name()
    }

    /// The clinic's day at a UTC moment.
    pub fn date_of(&self, utc: NaiveDateTime) -> NaiveDate {
        self.tz.from_utc_datetime(&utc).date_naive()
    }

    /// The UTC moment the clinic's day begins. Where a DST change skips local midnight, the
    /// day begins at the first local time that exists.
    pub fn start_of(&self, day: NaiveDate) -> NaiveDateTime {
        let midnight = day.and_time(NaiveTime::MIN);
        (0..=24 * 4)
            .map(|quarter| midnight + TimeDelta::minutes(15 * quarter))
            .find_map(|local| self.tz.from_local_datetime(&local).earliest())
            .map(|t| t.naive_utc())
            // No zone skips a whole day at midnight; keep a sane answer rather than panic.
            .unwrap_or(midnight)
    }

    /// The clinic's calendar year as UTC moments `[start, end)`; `None` out of chrono's range.
    pub fn year_range(&self, year: i32) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let first = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let next = NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?;
        Some((self.start_of(first), self.start_of(next)))
    }

    /// The first and last day of the calendar year `day` is in.
    pub fn year_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
        let y = day.year();
        (NaiveDate::from_ymd_opt(y, 1, 1).expect("valid"), NaiveDate::from_ymd_opt(y, 12, 31).expect("valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn parses_iana_names_and_refuses_others() {
        assert_eq!(Calendar::parse("Europe/London").unwrap().name(), "Europe/London");
        assert_eq!(Calendar::parse("UTC").unwrap(), Calendar::default());
        assert!(Calendar::parse("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!(Calendar::parse("+02:00").is_err());
    }

    #[test]
    fn the_day_follows_the_zone() {
        let auckland = Calendar::parse("Pacific/Auckland").unwrap();
        let honolulu = Calendar::parse("Pacific/Honolulu").unwrap();
        assert_eq!(auckland.date_of(at("2026-12-31 12:00")), day("2027-01-01"));
        assert_eq!(honolulu.date_of(at("2027-01-01 05:00")), day("2026-12-31"));
        assert_eq!(Calendar::default().date_of(at("2026-12-31 23:59")), day("2026-12-31"));
    }

    #[test]
    fn a_day_starts_at_local_midnight() {
        let london = Calendar::parse("Europe/London").unwrap();
        assert_eq!(london.start_of(day("2026-07-01")), at("2026-06-30 23:00"));
        assert_eq!(london.start_of(day("2026-01-01")), at("2026-01-01 00:00"));
        let honolulu = Calendar::parse("Pacific/Honolulu").unwrap();
        assert_eq!(honolulu.year_range(2026).unwrap(), (at("2026-01-01 10:00"), at("2027-01-01 10:00")));
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_first_real_time() {
        // Santiago moved its clocks from 24:00 to 01:00 on 2024-09-08.
        let santiago = Calendar::parse("America/Santiago").unwrap();
        let start = santiago.start_of(day("2024-09-08"));
        assert_eq!(santiago.date_of(start), day("2024-09-08"));
        assert_eq!(santiago.date_of(start - TimeDelta::seconds(1)), day("2024-09-07"));
    }

    #[test]
    fn year_of_a_day() {
        assert_eq!(Calendar::year_of(day("2026-06-15")), (day("2026-01-01"), day("2026-12-31")));
    }
}
