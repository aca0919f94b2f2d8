//! Running totals per ambassador (`ambassador_tallies`): how many referrals are in each status,
//! as staff count them and as the ambassador sees them, and the sum of their rewards in each
//! state. Triggers keep them in the transaction that changes a referral or a reward (migration
//! `ambassador_tallies`), so reading them is a few primary-key lookups whatever the history;
//! nothing in the code writes them. [`recount_mismatches`] counts everything again to prove it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::prelude::*;

use crate::db::schema::ambassador_tallies as tallies;
use crate::db::DbConnection;
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::RewardState;

/// Prefix of the counts an ambassador sees (`referrals::ambassador_visible`).
const VISIBLE: &str = "visible:";
/// Prefix of the reward sums.
const REWARD: &str = "reward:";
/// The reward states the balance adds up (voided rewards are not tallied).
const SUMMED: [RewardState; 3] = [RewardState::Open, RewardState::InPayout, RewardState::Paid];

/// Whose view a count is for: staff count every referral; an ambassador does not see a
/// share-link submission before the friend's first session (`referrals::ambassador_visible`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Staff,
    Ambassador,
}

impl View {
    /// The tally that counts this view's referrals in `status`.
    pub fn count_tally(self, status: ReferralStatus) -> String {
        match self {
            View::Staff => status.as_str().to_owned(),
            View::Ambassador => format!("{VISIBLE}{}", status.as_str()),
        }
    }

    fn status_of(self, tally: &str) -> Option<&str> {
        match self {
            View::Staff => (!tally.contains(':')).then_some(tally),
            View::Ambassador => tally.strip_prefix(VISIBLE),
        }
    }
}

/// The tally that sums the rewards in `state`.
pub fn reward_tally(state: RewardState) -> String {
    format!("{REWARD}{}", state.as_str())
}

fn count_tallies(view: View) -> Vec<String> {
    ReferralStatus::ALL.iter().map(|s| view.count_tally(*s)).collect()
}

/// How many of an ambassador's referrals are in each status, in `view` (statuses with none
/// may be missing or zero).
pub fn status_counts(conn: &mut DbConnection, ambassador_id: &str, view: View) -> QueryResult<Vec<(String, i64)>> {
    Ok(counts_by_ambassador(conn, &[ambassador_id], view)?.remove(ambassador_id).unwrap_or_default())
}

/// Referral counts by status for several ambassadors at once, in `view`.
pub fn counts_by_ambassador(
    conn: &mut DbConnection,
    ambassador_ids: &[&str],
    view: View,
) -> QueryResult<HashMap<String, Vec<(String, i64)>>> {
    let rows: Vec<(String, String, i64)> = tallies::table
        .filter(tallies::ambassador_id.eq_any(ambassador_ids))
        .filter(tallies::tally.eq_any(count_tallies(view)))
        .select((tallies::ambassador_id, tallies::tally, tallies::n))
        .load(conn)?;
    let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (ambassador, tally, n) in rows {
        if let Some(status) = view.status_of(&tally) {
            out.entry(ambassador).or_default().push((status.to_owned(), n));
        }
    }
    Ok(out)
}

/// The sum of the ambassador's rewards in each state the balance adds up.
pub fn reward_sums(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<Vec<(RewardState, i64)>> {
    let rows: Vec<(String, i64)> = tallies::table
        .filter(tallies::ambassador_id.eq(ambassador_id))
        .filter(tallies::tally.eq_any(SUMMED.map(reward_tally)))
        .select((tallies::tally, tallies::n))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(t, n)| Some((RewardState::parse(t.strip_prefix(REWARD)?)?, n))).collect())
}

/// One tally that disagrees with a count from scratch: (ambassador, tally, kept, counted).
pub type Mismatch = (String, String, i64, i64);

/// Every tally counted from scratch: the migration's backfill, on both backends.
const RECOUNT: &str = "\
    SELECT ambassador_id, status AS tally, CAST(count(*) AS BIGINT) AS n FROM referrals \
    WHERE ambassador_id IS NOT NULL GROUP BY ambassador_id, status \
    UNION ALL \
    SELECT ambassador_id, 'visible:' || status, CAST(count(*) AS BIGINT) FROM referrals \
    WHERE ambassador_id IS NOT NULL AND (source <> 'public_form' OR treatment_started_at IS NOT NULL) \
    GROUP BY ambassador_id, status \
    UNION ALL \
    SELECT ambassador_id, 'reward:' || state, CAST(sum(amount_minor) AS BIGINT) FROM rewards \
    WHERE state <> 'voided' GROUP BY ambassador_id, state";

#[derive(QueryableByName)]
struct TallyRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    ambassador_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    tally: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Counts and sums everything again from `referrals` and `rewards` and lists every tally that
/// differs (a tally of zero and no tally are the same). Empty when the triggers did their job.
/// Full scans of both tables: for tests and operators, never a request path.
pub fn recount_mismatches(conn: &mut DbConnection) -> QueryResult<Vec<Mismatch>> {
    let by_key = |rows: Vec<TallyRow>| -> BTreeMap<(String, String), i64> {
        rows.into_iter().map(|r| ((r.ambassador_id, r.tally), r.n)).collect()
    };
    let counted = by_key(diesel::sql_query(RECOUNT).load(conn)?);
    let kept = by_key(diesel::sql_query("SELECT ambassador_id, tally, n FROM ambassador_tallies").load(conn)?);
    let keys: BTreeSet<&(String, String)> = counted.keys().chain(kept.keys()).collect();
    Ok(keys
        .into_iter()
        .filter_map(|key| {
            let (k, c) = (kept.get(key).copied().unwrap_or(0), counted.get(key).copied().unwrap_or(0));
            (k != c).then(|| (key.0.clone(), key.1.clone(), k, c))
        })
        .collect())
}

/// Replaces every tally with a count from scratch (after SQL run without triggers, such as a
/// restore with `session_replication_role = replica`); returns how many tallies there are.
/// Run inside a write transaction: on PostgreSQL the referrals and rewards are locked against
/// writers until it commits, so no change lands between the count and its replacement.
pub fn recount(conn: &mut DbConnection) -> QueryResult<usize> {
    if crate::db::is_postgres(conn) {
        diesel::sql_query("LOCK TABLE referrals, rewards IN SHARE MODE").execute(conn)?;
    }
    diesel::delete(tallies::table).execute(conn)?;
    diesel::sql_query(format!("INSERT INTO ambassador_tallies (ambassador_id, tally, n) {RECOUNT}")).execute(conn)
}
