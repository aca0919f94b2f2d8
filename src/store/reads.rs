//! The hot reads, each one statement: an ambassador with their codes, referral counts and
//! balance (the staff detail, `/v1/me`, the portal), and a code as a referred friend sees it.
//! Counts and sums come from the ambassador's running totals (`ambassador_tallies`, kept by
//! triggers in the writing transaction), one primary-key lookup each, so the read costs the
//! same at 10 referrals as at 10,000; only the held part of the balance (open rewards still in
//! their holding period: the recent ones) is summed from `rewards_ambassador_idx`. The
//! statement stays prepared (no SQL literals), so PostgreSQL plans it once per connection.

use diesel::prelude::*;

use crate::db::schema::{
    ambassador_tallies as tallies, ambassadors, program_versions as pv, referral_codes, referrals, rewards,
};
use crate::db::{now, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::code;
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::{Balance, RewardState};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::codes::CodeRow;
use crate::store::sum_minor;

/// An ambassador with everything the staff detail and their own profile show.
pub struct Summary {
    pub row: AmbassadorRow,
    /// Newest first.
    pub codes: Vec<CodeRow>,
    /// Referrals by status (every status, zero when none).
    pub counts: Vec<(String, i64)>,
    pub balance: Balance,
}

type Counts = (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
type Sums = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

use crate::store::tallies::reward_tally;
pub use crate::store::tallies::View;

/// One row of the summary: the ambassador, one of its codes, the currency, counts and sums.
type SummaryRow = (AmbassadorRow, Option<CodeRow>, Option<String>, Counts, Sums);

/// The ambassador with their codes, referral counts and balance; `None`: no such ambassador.
pub fn ambassador_summary(conn: &mut DbConnection, id: &str, view: View) -> QueryResult<Option<Summary>> {
    use ReferralStatus::{Cancelled, Completed, InTreatment, Refunded, Registered, Rejected};
    let tally = |name: String| {
        tallies::table
            .filter(tallies::ambassador_id.eq(id))
            .filter(tallies::tally.eq(name))
            .select(tallies::n)
            .single_value()
    };
    let count = |status| tally(view.count_tally(status));
    let sum = |state| tally(reward_tally(state));
    let held = rewards::table
        .filter(rewards::ambassador_id.eq(id))
        .filter(rewards::state.eq(RewardState::Open))
        .filter(rewards::holds_until.gt(now()))
        .select(sum_minor(rewards::amount_minor))
        .single_value();
    let currency = pv::table.order(pv::version.desc()).select(pv::currency).single_value();
    let counts =
        (count(Registered), count(InTreatment), count(Completed), count(Refunded), count(Cancelled), count(Rejected));
    let sums = (sum(RewardState::Open), sum(RewardState::InPayout), sum(RewardState::Paid), held);
    let rows: Vec<SummaryRow> = ambassadors::table
        .left_join(referral_codes::table)
        .filter(ambassadors::id.eq(id))
        .order(referral_codes::id.desc())
        .select((AmbassadorRow::as_select(), Option::<CodeRow>::as_select(), currency, counts, sums))
        .load(conn)?;
    let mut rows = rows.into_iter();
    let Some((row, first_code, currency, counts, (open, in_payout, paid, held))) = rows.next() else {
        return Ok(None);
    };
    let codes = first_code.into_iter().chain(rows.filter_map(|r| r.1)).collect();
    let counts = [
        (Registered, counts.0),
        (InTreatment, counts.1),
        (Completed, counts.2),
        (Refunded, counts.3),
        (Cancelled, counts.4),
        (Rejected, counts.5),
    ]
    .into_iter()
    .map(|(status, n)| (status.as_str().to_owned(), n.unwrap_or(0)))
    .collect();
    let sums = [(RewardState::Open, open), (RewardState::InPayout, in_payout), (RewardState::Paid, paid)]
        .into_iter()
        .map(|(state, sum)| (state, sum.unwrap_or(0)));
    let balance = Balance::from_sums(currency.as_deref().unwrap_or_default(), sums, held.unwrap_or(0));
    Ok(Some(Summary { row, codes, counts, balance }))
}

/// What a referred friend sees of a code that can take referrals now (code active, ambassador
/// active): the code as issued, the ambassador's display name and whether to show it, and the
/// program's offer to the friend. `None` for any other code.
pub struct UsableCode {
    pub code: String,
    pub display_name: Option<String>,
    pub show_name_to_referrals: bool,
    pub client_offer: Option<String>,
}

/// A code as typed, matched: (code, active, its ambassador's status, display name, show name, offer).
type CodeMatch = (String, bool, AmbassadorStatus, Option<String>, bool, Option<String>);

pub fn usable_code(conn: &mut DbConnection, typed: &str) -> QueryResult<Option<UsableCode>> {
    let offer = pv::table.order(pv::version.desc()).select(pv::client_offer).single_value();
    for candidate in code::lookup_candidates(typed) {
        let found: Option<CodeMatch> = referral_codes::table
            .inner_join(ambassadors::table)
            .filter(referral_codes::normalized.eq(&candidate))
            .select((
                referral_codes::code,
                referral_codes::active,
                ambassadors::status,
                ambassadors::display_name,
                ambassadors::show_name_to_referrals,
                offer,
            ))
            .first(conn)
            .optional()?;
        // The first candidate that names a code decides, usable or not (as `codes::find_typed`).
        if let Some((code, active, status, display_name, show_name_to_referrals, client_offer)) = found {
            let usable = active && status == AmbassadorStatus::Active;
            return Ok(usable.then_some(UsableCode { code, display_name, show_name_to_referrals, client_offer }));
        }
    }
    Ok(None)
}

/// One of an ambassador's referrals as they see it: only what their view shows is read (never
/// the client's contact details, notes or the clinic's figures), with the code it was made
/// with, as issued.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = referrals)]
pub struct OwnReferral {
    pub id: String,
    pub status: ReferralStatus,
    pub submitted_code: Option<String>,
    pub client_first_name: Option<String>,
    pub client_last_name: Option<String>,
    pub share_name_with_ambassador: bool,
    pub planned_sessions: Option<i32>,
    pub session_count: i32,
    #[diesel(deserialize_as = crate::db::time::MaybeDay)]
    pub first_session_on: Option<chrono::NaiveDate>,
    #[diesel(deserialize_as = crate::db::time::MaybeDay)]
    pub completed_on: Option<chrono::NaiveDate>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub registered_at: chrono::NaiveDateTime,
}

/// The ambassador's own referrals they may see (`referrals::ambassador_visible`), newest
/// first, each with its code, in one statement: all of them, those in `status`, or the one
/// with id `only`.
pub fn own_referrals(
    conn: &mut DbConnection,
    ambassador_id: &str,
    (status, only): (Option<ReferralStatus>, Option<&str>),
    page: &crate::store::PageRequest,
) -> QueryResult<crate::store::Page<(OwnReferral, Option<String>)>> {
    let all = referrals::table
        .left_join(referral_codes::table.on(referrals::code_id.eq(referral_codes::id.nullable())))
        .filter(referrals::ambassador_id.eq(ambassador_id))
        .filter(crate::store::referrals::ambassador_visible())
        .select((OwnReferral::as_select(), referral_codes::code.nullable()));
    // The first page of all of them (the portal's list, `/v1/me/referrals` without filters):
    // a statement whose type names it, so the connection keeps it prepared; a boxed one is
    // written and prepared again on every request.
    if status.is_none() && only.is_none() && page.after_id.is_none() {
        let rows = all.order(referrals::id.desc()).limit(page.limit + 1).load(conn)?;
        return Ok(page.finish(rows, |(r, _)| &r.id));
    }
    let mut query = all.into_boxed();
    if let Some(status) = status {
        query = query.filter(referrals::status.eq(status.as_str()));
    }
    if let Some(id) = only {
        query = query.filter(referrals::id.eq(id));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(referrals::id.lt(after));
    }
    let rows = query.order(referrals::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |(r, _)| &r.id))
}
