//! Finance reports: the referral funnel with ledger totals for a period, rewards earned per
//! month of a year, and each ambassador's paid total per calendar year against the program's
//! tax threshold (a page of it, or every row as CSV for the API and the console alike).

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use super::{Error, Result};
use crate::db::{now, DbConnection};
use crate::domain::calendar::Calendar;
use crate::domain::csv::text_cell;
use crate::domain::money::{Currency, Money};
use crate::store::reports::{self, AnnualRow, Period, Summary};
use crate::store::{program, Page, PageRequest};

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

/// One calendar month's earned rewards (not voided).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MonthTotal {
    /// 1–12.
    pub month: u32,
    pub count: i64,
    pub amount_minor: i64,
}

/// Rewards earned (not voided) in each month of `year`, January first, with the currency.
pub fn rewards_by_month(conn: &mut DbConnection, calendar: &Calendar, year: i32) -> Result<(Vec<MonthTotal>, String)> {
    check_year(calendar, year)?;
    let first = NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(|| Error::validation("year", "is out of range"))?;
    let days = Calendar::year_of(first);
    let currency = program::current(conn)?.rules.currency.to_string();
    let mut months: Vec<MonthTotal> = (1..=12).map(|month| MonthTotal { month, count: 0, amount_minor: 0 }).collect();
    for (day, count, amount) in reports::earned_by_day(conn, days)? {
        let m = &mut months[day.month0() as usize];
        m.count += count;
        m.amount_minor += amount;
    }
    Ok((months, currency))
}

/// A page of one year's paid totals (in ambassador-id order), with the tax threshold and
/// currency.
pub fn annual_list(
    conn: &mut DbConnection,
    calendar: &Calendar,
    year: i32,
    page: &PageRequest,
) -> Result<(Page<AnnualRow>, i64, String)> {
    check_year(calendar, year)?;
    let (rows, threshold, currency) = annual_page(conn, calendar, year, page.after_id.as_deref(), page.limit + 1)?;
    Ok((page.finish(rows, |r| &r.ambassador_id), threshold, currency))
}

/// The annual report's CSV header row.
pub const ANNUAL_HEADER: &[&str] =
    &["year", "ambassador_id", "name", "email", "paid", "currency", "payouts", "over_tax_threshold"];

/// CSV rows, and the ambassador id the next page starts after (`None`: that was the last page;
/// `Some(None)` never happens, the first page has no id before it).
pub type AnnualCsvPage = (Vec<Vec<String>>, Option<Option<String>>);

/// One page (`rows` ambassadors after `after`) of the annual report's CSV rows, and where the
/// next page starts.
pub fn annual_csv_page(
    conn: &mut DbConnection,
    calendar: &Calendar,
    year: i32,
    (after, rows): (Option<String>, i64),
) -> Result<AnnualCsvPage> {
    let (page, _, currency) = annual_page(conn, calendar, year, after.as_deref(), rows)?;
    let currency = Currency::from_stored(&currency);
    let next = (page.len() as i64 == rows).then(|| page.last().map(|r| Some(r.ambassador_id.clone()))).flatten();
    let cells = page
        .into_iter()
        .map(|r| {
            vec![
                year.to_string(),
                r.ambassador_id,
                text_cell(&r.name),
                text_cell(&r.email),
                Money::new(r.paid_minor, currency.clone()).decimal(),
                currency.to_string(),
                r.payouts.to_string(),
                r.over_tax_threshold.to_string(),
            ]
        })
        .collect();
    Ok((cells, next))
}
