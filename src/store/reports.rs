//! Finance reports' queries: the referral funnel and ledger totals, and each ambassador's paid
//! total per calendar year (for tax reporting). `app::reports` puts them together.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, payout_lines, payouts, referrals, rewards};
use crate::db::{now, DbConnection};
use crate::domain::calendar::Calendar;
use crate::domain::payout::LineStatus;
use crate::domain::referral::{full_counts, ReferralStatus};
use crate::domain::reward::{RewardKind, RewardState, RewardStatus};
use crate::store::sum_bigint;

#[derive(Debug, Clone, Copy, Default)]
pub struct Period {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Open ends, as dates both databases store and compare (SQLite compares dates as text).
fn far_past() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid")
}

fn far_future() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 30).expect("valid")
}

impl Period {
    /// When the first day begins in the clinic's calendar.
    pub fn start(&self, calendar: &Calendar) -> NaiveDateTime {
        calendar.start_of(self.from.unwrap_or_else(far_past))
    }

    /// Exclusive end: when the day after `to` begins in the clinic's calendar.
    pub fn end(&self, calendar: &Calendar) -> NaiveDateTime {
        calendar.start_of(self.to.and_then(|d| d.succ_opt()).unwrap_or_else(far_future))
    }

    /// The first and last day (inclusive), open ends as far as both databases store dates.
    pub fn days(&self) -> (NaiveDate, NaiveDate) {
        (self.from.unwrap_or_else(far_past), self.to.unwrap_or_else(far_future))
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    /// Referrals registered in the period, by current status.
    pub by_status: BTreeMap<String, i64>,
    /// Registered in the period, less those rejected (invalid, never real referrals).
    pub registered: i64,
    /// Of those, treatment started (a first session was recorded), whatever happened after.
    pub started_treatment: i64,
    /// Of those, treatment completed (completed or later refunded).
    pub completed: i64,
    /// Of those, the ambassador's reward for it was paid out.
    pub paid: i64,
    /// completed / registered, 0 when nothing was registered.
    pub conversion_rate: f64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Total {
    pub count: i64,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopAmbassador {
    pub ambassador_id: String,
    pub name: String,
    /// Referrals completed in the period.
    pub completed: i64,
    /// Earned in the period (not voided).
    pub earned_minor: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub currency: String,
    pub referrals: Funnel,
    /// Ledger entries earned in the period, by status (`held`, `payable`, `in_payout`,
    /// `paid`, `voided`).
    pub rewards: BTreeMap<String, Total>,
    /// Up to 10, by referrals completed in the period.
    pub top_ambassadors: Vec<TopAmbassador>,
}

/// Referrals registered in `[start, end)`, by status, and how many of them (rejected ones left
/// out) started treatment, completed it, and had the reward for it paid.
pub fn funnel(conn: &mut DbConnection, start: NaiveDateTime, end: NaiveDateTime) -> QueryResult<Funnel> {
    let in_period = referrals::registered_at.ge(start).and(referrals::registered_at.lt(end));
    let counts: Vec<(String, i64, i64)> = referrals::table
        .filter(in_period)
        .group_by(referrals::status)
        .select((referrals::status, diesel::dsl::count_star(), diesel::dsl::count(referrals::treatment_started_at)))
        .load(conn)?;
    let rejected = ReferralStatus::Rejected.as_str();
    let started_treatment = counts.iter().filter(|c| c.0 != rejected).map(|c| c.2).sum();
    let by_status = full_counts(counts.into_iter().map(|(status, n, _)| (status, n)));
    let count = |s: &str| by_status.get(s).copied().unwrap_or(0);
    let registered = by_status.values().sum::<i64>() - count(rejected);
    let completed = count(ReferralStatus::Completed.as_str()) + count(ReferralStatus::Refunded.as_str());
    let paid: i64 = rewards::table
        .inner_join(referrals::table)
        .filter(in_period)
        .filter(referrals::status.ne(ReferralStatus::Rejected))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .filter(rewards::state.eq(RewardState::Paid))
        .count()
        .get_result(conn)?;
    let conversion_rate =
        if registered == 0 { 0.0 } else { (completed as f64 / registered as f64 * 10_000.0).round() / 10_000.0 };
    Ok(Funnel { by_status, registered, started_treatment, completed, paid, conversion_rate })
}

/// Rewards earned (not voided) on each day from `first` to `last` that earned any: (day,
/// count, amount). At most one row a day, so a year is at most 366 rows.
pub fn earned_by_day(
    conn: &mut DbConnection,
    (first_day, last_day): (NaiveDate, NaiveDate),
) -> QueryResult<Vec<(NaiveDate, i64, i64)>> {
    let rows: Vec<(NaiveDate, i64, Option<i64>)> = rewards::table
        .filter(rewards::earned_on.ge(first_day).and(rewards::earned_on.le(last_day)))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .filter(rewards::state.ne(RewardState::Voided))
        .group_by(rewards::earned_on)
        .select((rewards::earned_on, diesel::dsl::count_star(), sum_bigint("amount_minor")))
        .load(conn)?;
    Ok(rows.into_iter().map(|(day, n, sum)| (day, n, sum.unwrap_or(0))).collect())
}

/// Ledger entries earned on the days `(first, last)` (inclusive), by status: the stored
/// states as they are, `open` split into held and payable at this moment.
pub fn reward_totals(
    conn: &mut DbConnection,
    (first_day, last_day): (NaiveDate, NaiveDate),
) -> QueryResult<BTreeMap<String, Total>> {
    let in_period = rewards::earned_on.ge(first_day).and(rewards::earned_on.le(last_day));
    let mut totals: BTreeMap<String, Total> =
        RewardStatus::ALL.iter().map(|s| (s.as_str().to_owned(), Total::default())).collect();
    let by_state: Vec<(RewardState, i64, Option<i64>)> = rewards::table
        .filter(in_period)
        .filter(rewards::state.ne(RewardState::Open))
        .group_by(rewards::state)
        .select((rewards::state, diesel::dsl::count_star(), sum_bigint("amount_minor")))
        .load(conn)?;
    for (state, n, sum) in by_state {
        totals.insert(state.as_str().to_owned(), Total { count: n, amount_minor: sum.unwrap_or(0) });
    }
    let at = now();
    for (status, held) in [(RewardStatus::Held, true), (RewardStatus::Payable, false)] {
        let query = rewards::table.filter(in_period).filter(rewards::state.eq(RewardState::Open)).into_boxed();
        let query =
            if held { query.filter(rewards::holds_until.gt(at)) } else { query.filter(rewards::holds_until.le(at)) };
        let (n, sum): (i64, Option<i64>) =
            query.select((diesel::dsl::count_star(), sum_bigint("amount_minor"))).first(conn)?;
        totals.insert(status.as_str().to_owned(), Total { count: n, amount_minor: sum.unwrap_or(0) });
    }
    Ok(totals)
}

/// Up to 10 ambassadors by referrals completed on the days `(first, last)`, with what they
/// earned in them (not voided).
pub fn top_ambassadors(
    conn: &mut DbConnection,
    (first_day, last_day): (NaiveDate, NaiveDate),
) -> QueryResult<Vec<TopAmbassador>> {
    let in_period = rewards::earned_on.ge(first_day).and(rewards::earned_on.le(last_day));
    let mut completions: Vec<(Option<String>, i64)> = referrals::table
        .filter(referrals::status.eq_any([ReferralStatus::Completed, ReferralStatus::Refunded]))
        .filter(referrals::completed_on.ge(first_day).and(referrals::completed_on.le(last_day)))
        .group_by(referrals::ambassador_id)
        .select((referrals::ambassador_id, diesel::dsl::count_star()))
        .load(conn)?;
    completions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    completions.truncate(10);
    let ids: Vec<String> = completions.iter().filter_map(|c| c.0.clone()).collect();
    let names: BTreeMap<String, String> = ambassadors::table
        .filter(ambassadors::id.eq_any(&ids))
        .select((ambassadors::id, ambassadors::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let earned: BTreeMap<String, Option<i64>> = rewards::table
        .filter(rewards::ambassador_id.eq_any(&ids))
        .filter(in_period)
        .filter(rewards::kind.eq_any([RewardKind::Earned, RewardKind::Clawback]))
        .filter(rewards::state.ne(RewardState::Voided))
        .group_by(rewards::ambassador_id)
        .select((rewards::ambassador_id, sum_bigint("amount_minor")))
        .load::<(String, Option<i64>)>(conn)?
        .into_iter()
        .collect();
    Ok(completions
        .into_iter()
        .filter_map(|(id, completed)| {
            let id = id?;
            Some(TopAmbassador {
                name: names.get(&id).cloned().unwrap_or_default(),
                earned_minor: earned.get(&id).copied().flatten().unwrap_or(0),
                ambassador_id: id,
                completed,
            })
        })
        .collect())
}

/// One ambassador's paid total in a year.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AnnualRow {
    pub ambassador_id: String,
    pub name: String,
    pub email: String,
    pub paid_minor: i64,
    /// Payout lines paid to them that year.
    pub payouts: i64,
    /// Paid at least the program's tax threshold.
    pub over_tax_threshold: bool,
}

/// Paid totals per ambassador for payouts marked paid in `[start, end)`, in ambassador-id
/// order, `limit` at a time after `after_id` (exports page through this), flagged at
/// `tax_threshold_minor`.
pub fn annual_page(
    conn: &mut DbConnection,
    (start, end): (NaiveDateTime, NaiveDateTime),
    after_id: Option<&str>,
    limit: i64,
    tax_threshold_minor: i64,
) -> QueryResult<Vec<AnnualRow>> {
    let sums: Vec<(String, Option<i64>, i64)> = payout_lines::table
        .inner_join(payouts::table)
        .filter(payout_lines::status.eq(LineStatus::Paid.as_str()))
        .filter(payouts::paid_at.ge(start).and(payouts::paid_at.lt(end)))
        .filter(payout_lines::ambassador_id.gt(after_id.unwrap_or("")))
        .group_by(payout_lines::ambassador_id)
        .select((payout_lines::ambassador_id, sum_bigint("payout_lines.amount_minor"), diesel::dsl::count_star()))
        .order(payout_lines::ambassador_id.asc())
        .limit(limit)
        .load(conn)?;
    let ids: Vec<&str> = sums.iter().map(|s| s.0.as_str()).collect();
    let people: BTreeMap<String, (String, String)> = ambassadors::table
        .filter(ambassadors::id.eq_any(&ids))
        .select((ambassadors::id, ambassadors::name, ambassadors::email))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .map(|(id, name, email)| (id, (name, email)))
        .collect();
    Ok(sums
        .into_iter()
        .map(|(ambassador_id, paid, payouts)| {
            let (name, email) = people.get(&ambassador_id).cloned().unwrap_or_default();
            let paid_minor = paid.unwrap_or(0);
            AnnualRow {
                ambassador_id,
                name,
                email,
                paid_minor,
                payouts,
                over_tax_threshold: paid_minor >= tax_threshold_minor,
            }
        })
        .collect())
}
