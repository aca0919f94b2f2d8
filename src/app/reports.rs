//! Finance reports: the referral funnel with ledger totals for a period, and each
//! ambassador's paid total per calendar year against the program's tax threshold.

use chrono::Datelike;

use super::{Error, Result};
use crate::db::{now, DbConnection};
use crate::domain::calendar::Calendar;
use crate::store::program;
use crate::store::reports::{self, AnnualRow, Period, Summary};

/// Referrals registered in the period by status and conversion, rewards earned in it by
/// status, and the top ambassadors by completions in it.
pub fn summary(conn: &mut DbConnection, calendar: &Calendar, period: Period) -> Result<Summary> {
    if let (Some(f), Some(t)) = (period.from, period.to) {
        if f > t {
            return Err(Error::validation("to", "must not be before from"));
        }
    }
    let currency = program::current(conn)?.rules.currency.to_string();
    let referrals = reports::funnel(conn, period.start(calendar), period.end(calendar))?;
    let days = period.days();
    Ok(Summary {
        from: period.from,
        to: period.to,
        currency,
        referrals,
        rewards: reports::reward_totals(conn, days)?,
        top_ambassadors: reports::top_ambassadors(conn, days)?,
    })
}

/// A year a report may ask for: from 2000 to next year (clinic calendar).
pub fn check_year(calendar: &Calendar, year: i32) -> Result<()> {
    let this_year = calendar.date_of(now()).year();
    if !(2000..=this_year + 1).contains(&year) {
        return Err(Error::validation("year", format!("must be between 2000 and {}", this_year + 1)));
    }
    Ok(())
}

/// One year's paid totals, `limit` ambassadors at a time after `after_id` (in ambassador-id
/// order), with the program's tax threshold and currency.
pub fn annual_page(
    conn: &mut DbConnection,
    calendar: &Calendar,
    year: i32,
    after_id: Option<&str>,
    limit: i64,
) -> Result<(Vec<AnnualRow>, i64, String)> {
    let rules = program::current(conn)?.rules;
    let range = calendar.year_range(year).ok_or_else(|| Error::validation("year", "is out of range"))?;
    let rows = reports::annual_page(conn, range, after_id, limit, rules.tax_threshold_minor)?;
    Ok((rows, rules.tax_threshold_minor, rules.currency.to_string()))
}

/// Every ambassador paid in `year`, read `page_rows` at a time; with the tax threshold and
/// currency.
pub fn annual(
    conn: &mut DbConnection,
    calendar: &Calendar,
    year: i32,
    page_rows: i64,
) -> Result<(Vec<AnnualRow>, i64, String)> {
    check_year(calendar, year)?;
    let (mut items, threshold, currency) = annual_page(conn, calendar, year, None, page_rows)?;
    // A full page may have more after it; a short one is the last.
    let mut last_page = items.len() as i64;
    while last_page == page_rows {
        let after = items.last().map(|r| r.ambassador_id.clone());
        let (more, _, _) = annual_page(conn, calendar, year, after.as_deref(), page_rows)?;
        last_page = more.len() as i64;
        items.extend(more);
    }
    Ok((items, threshold, currency))
}
