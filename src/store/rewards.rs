//! The rewards ledger's queries: entries written (never edited in amount), compare-and-set
//! state changes on the state read (so two requests can never both move the same reward),
//! the year to date a reward is computed against, balances and listings. When an entry is
//! written and what it says is `app::rewards` (earned, refunds, adjustments) and `app::ledger`
//! (voids and clawbacks, shared with the payouts).

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors as ambassadors_t, referrals, rewards};
use crate::db::{now, DbConnection, Prepared};
use crate::domain::calendar::Calendar;
use crate::domain::money::{Currency, Money};
use crate::domain::program::YearToDate;
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::{RewardKind, RewardState, RewardStatus};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::{sum_bigint, Page, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rewards)]
pub struct RewardRow {
    pub id: String,
    pub ambassador_id: String,
    pub referral_id: Option<String>,
    pub kind: RewardKind,
    pub amount_minor: i64,
    pub currency: String,
    pub state: RewardState,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub holds_until: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Day)]
    pub earned_on: NaiveDate,
    pub program_version_id: Option<String>,
    pub basis: Option<String>,
    pub uncapped_minor: Option<i64>,
    pub capped_reason: Option<String>,
    pub reason: Option<String>,
    pub payout_line_id: Option<String>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub paid_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub voided_at: Option<NaiveDateTime>,
    pub void_reason: Option<String>,
    pub created_by: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: NaiveDateTime,
}

impl RewardRow {
    pub fn status(&self, at: NaiveDateTime) -> RewardStatus {
        RewardStatus::of(self.state, self.holds_until, at)
    }

    pub fn money(&self) -> Money {
        Money::new(self.amount_minor, Currency::from_stored(&self.currency))
    }
}

/// A ledger entry as finance sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RewardView {
    pub id: String,
    pub ambassador_id: String,
    pub referral_id: Option<String>,
    pub kind: RewardKind,
    pub status: RewardStatus,
    /// Minor units; negative for clawbacks and negative adjustments.
    pub amount_minor: i64,
    pub currency: String,
    /// Held (the refund window) until this moment, payable after.
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub holds_until: NaiveDateTime,
    /// The day it was earned; its calendar year counts for tiers and the annual cap.
    pub earned_on: NaiveDate,
    /// The program version an earned reward was computed under.
    pub program_version_id: Option<String>,
    /// How the amount was computed (flat/percent, tier, treatment value, cap).
    #[schema(value_type = Option<Object>)]
    pub basis: Option<serde_json::Value>,
    /// The amount before the annual cap.
    pub uncapped_minor: Option<i64>,
    /// `annual_cap` when the cap reduced it.
    pub capped_reason: Option<String>,
    /// Why finance adjusted, or why it was clawed back.
    pub reason: Option<String>,
    pub payout_line_id: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub voided_at: Option<NaiveDateTime>,
    pub void_reason: Option<String>,
    pub created_by: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
}

impl RewardView {
    pub fn new(r: RewardRow, at: NaiveDateTime) -> Self {
        Self {
            status: r.status(at),
            kind: r.kind,
            basis: r.basis.as_deref().and_then(|b| serde_json::from_str(b).ok()),
            id: r.id,
            ambassador_id: r.ambassador_id,
            referral_id: r.referral_id,
            amount_minor: r.amount_minor,
            currency: r.currency,
            holds_until: r.holds_until,
            earned_on: r.earned_on,
            program_version_id: r.program_version_id,
            uncapped_minor: r.uncapped_minor,
            capped_reason: r.capped_reason,
            reason: r.reason,
            payout_line_id: r.payout_line_id,
            paid_at: r.paid_at,
            voided_at: r.voided_at,
            void_reason: r.void_reason,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<RewardRow> {
    rewards::table.find(id).select(RewardRow::as_select()).first(conn)
}

/// The earned reward of a referral, if it has one.
pub fn earned_for(conn: &mut DbConnection, referral_id: &str) -> QueryResult<Option<RewardRow>> {
    rewards::table
        .filter(rewards::referral_id.eq(referral_id))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .select(RewardRow::as_select())
        .first(conn)
        .optional()
}

/// Every ledger entry about a referral (its earned reward and any clawback).
pub fn ids_for_referral(conn: &mut DbConnection, referral_id: &str) -> QueryResult<Vec<String>> {
    rewards::table.filter(rewards::referral_id.eq(referral_id)).select(rewards::id).load(conn)
}

/// Where the referral completed on `day` stands in the ambassador's calendar year, and what
/// they have earned that year so far.
///
/// Tiers follow the order of completion dates: the referral's place is the number of the
/// ambassador's earning completions (completed, `earns`, not refunded) dated from 1 January up
/// to `day` — the same day included, because those were recorded first. A completion recorded
/// late with an earlier date therefore takes its own place by date, and the rewards already
/// written keep theirs (an earned reward is never recomputed). Completions outside the
/// attribution window earn nothing and do not count.
///
/// The annual cap counts what was earned that year net of clawbacks, whatever the dates: it
/// limits the money, in the order it was earned.
pub fn year_to_date(
    conn: &mut DbConnection,
    ambassador_id: &str,
    referral_id: &str,
    day: NaiveDate,
) -> QueryResult<YearToDate> {
    let (first, last) = Calendar::year_of(day);
    let completed_before = referrals::table
        .filter(referrals::ambassador_id.eq(ambassador_id))
        .filter(referrals::status.eq(ReferralStatus::Completed))
        .filter(referrals::earns.eq(true))
        .filter(referrals::completed_on.between(first, day))
        .filter(referrals::id.ne(referral_id))
        .select(diesel::dsl::count_star())
        .single_value();
    let earned = rewards::table
        .filter(rewards::ambassador_id.eq(ambassador_id))
        .filter(rewards::kind.eq_any([RewardKind::Earned, RewardKind::Clawback]))
        .filter(rewards::state.ne(RewardState::Voided))
        .filter(rewards::earned_on.between(first, last))
        .select(sum_bigint("amount_minor"))
        .single_value();
    // Both in one statement (two scalar subqueries).
    let (completed_before, earned): (Option<i64>, Option<i64>) =
        Prepared(diesel::select((completed_before, earned))).get_result(conn)?;
    Ok(YearToDate { completed_before: completed_before.unwrap_or(0), earned_minor: earned.unwrap_or(0) })
}

/// Locks the ambassador's row until the transaction ends (a no-op update): on PostgreSQL two
/// completions for one ambassador then count their year one after the other, so tiers and the
/// annual cap see each other. Returns the ambassador's row as locked.
pub fn lock_ambassador(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<AmbassadorRow> {
    let lock = diesel::update(ambassadors_t::table.find(ambassador_id))
        .set(ambassadors_t::updated_at.eq(ambassadors_t::updated_at))
        .returning(ambassador_columns());
    Prepared(lock).get_result(conn)
}

/// [`AmbassadorRow`]'s columns, in its order, for a `RETURNING` (diesel's `as_select()` does
/// not go through the multi-backend connection there).
fn ambassador_columns() -> AmbassadorColumns {
    use ambassadors_t::*;
    (
        id,
        status,
        source,
        name,
        email,
        phone,
        display_name,
        show_name_to_referrals,
        payout_method,
        payout_paypal_email,
        payout_bank_reference,
        notify_referral_updates,
        notify_reward_updates,
        notes,
        application_message,
        status_reason,
        created_at,
        updated_at,
        status_changed_at,
    )
}

type AmbassadorColumns = (
    ambassadors_t::id,
    ambassadors_t::status,
    ambassadors_t::source,
    ambassadors_t::name,
    ambassadors_t::email,
    ambassadors_t::phone,
    ambassadors_t::display_name,
    ambassadors_t::show_name_to_referrals,
    ambassadors_t::payout_method,
    ambassadors_t::payout_paypal_email,
    ambassadors_t::payout_bank_reference,
    ambassadors_t::notify_referral_updates,
    ambassadors_t::notify_reward_updates,
    ambassadors_t::notes,
    ambassadors_t::application_message,
    ambassadors_t::status_reason,
    ambassadors_t::created_at,
    ambassadors_t::updated_at,
    ambassadors_t::status_changed_at,
);

/// A new ledger entry: open (held until `holds_until`, payable after).
pub struct NewReward<'a> {
    pub id: &'a str,
    pub ambassador_id: &'a str,
    pub referral_id: Option<&'a str>,
    pub kind: RewardKind,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub holds_until: NaiveDateTime,
    /// The day it counts for (its calendar year: tiers and the annual cap).
    pub earned_on: NaiveDate,
    /// An earned reward: how its amount was computed.
    pub computed: Option<Computed<'a>>,
    /// Clawbacks and adjustments: why.
    pub reason: Option<&'a str>,
    pub created_by: String,
    pub at: NaiveDateTime,
}

/// How an earned reward's amount was computed, kept with it.
pub struct Computed<'a> {
    pub program_version_id: &'a str,
    /// The calculation's basis, as JSON.
    pub basis: String,
    /// Before the annual cap.
    pub uncapped_minor: i64,
    pub capped_reason: Option<&'a str>,
}

/// Writes a ledger entry. The unique indexes allow one earned reward and one clawback per
/// referral: a second one fails with a unique violation.
/// Writes a ledger entry and returns it as stored (`RETURNING`: no second read).
pub fn insert(conn: &mut DbConnection, r: &NewReward<'_>) -> QueryResult<RewardRow> {
    diesel::insert_into(rewards::table)
        .values((
            rewards::id.eq(r.id),
            rewards::ambassador_id.eq(r.ambassador_id),
            rewards::referral_id.eq(r.referral_id),
            rewards::kind.eq(r.kind),
            rewards::amount_minor.eq(r.amount_minor),
            rewards::currency.eq(r.currency),
            rewards::state.eq(RewardState::Open),
            rewards::holds_until.eq(r.holds_until),
            rewards::earned_on.eq(r.earned_on),
            rewards::program_version_id.eq(r.computed.as_ref().map(|c| c.program_version_id)),
            rewards::basis.eq(r.computed.as_ref().map(|c| c.basis.as_str())),
            rewards::uncapped_minor.eq(r.computed.as_ref().map(|c| c.uncapped_minor)),
            rewards::capped_reason.eq(r.computed.as_ref().and_then(|c| c.capped_reason)),
            rewards::reason.eq(r.reason),
            rewards::created_by.eq(&r.created_by),
            rewards::created_at.eq(r.at),
            rewards::updated_at.eq(r.at),
        ))
        .returning(rewards::all_columns)
        .get_result(conn)
}

/// Voids a reward if it is still in the state read (compare-and-set); returns the rows changed
/// (0: a concurrent request moved it first).
pub fn void_row(conn: &mut DbConnection, reward: &RewardRow, reason: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(rewards::table.find(&reward.id).filter(rewards::state.eq(reward.state)))
        .set((
            rewards::state.eq(RewardState::Voided),
            rewards::payout_line_id.eq(None::<String>),
            rewards::voided_at.eq(at),
            rewards::void_reason.eq(reason),
            rewards::updated_at.eq(at),
        ))
        .execute(conn)
}

/// The ambassador's balance: the total of each state from their running totals
/// (`store::tallies`), and the part of `open` still held at `at`, summed from the rewards
/// index (ambassador, state, hold, amount) over the rewards still in their holding period.
pub fn balance_sums(
    conn: &mut DbConnection,
    ambassador_id: &str,
    at: NaiveDateTime,
) -> QueryResult<(Vec<(RewardState, i64)>, i64)> {
    let by_state = crate::store::tallies::reward_sums(conn, ambassador_id)?;
    let held: Option<i64> = rewards::table
        .filter(rewards::ambassador_id.eq(ambassador_id))
        .filter(rewards::state.eq(RewardState::Open))
        .filter(rewards::holds_until.gt(at))
        .select(sum_bigint("amount_minor"))
        .first(conn)?;
    Ok((by_state, held.unwrap_or(0)))
}

#[derive(Debug, Clone, Default)]
pub struct RewardFilter {
    pub ambassador_id: Option<String>,
    pub referral_id: Option<String>,
    pub status: Option<RewardStatus>,
    pub kind: Option<RewardKind>,
}

pub fn list(conn: &mut DbConnection, filter: &RewardFilter, page: &PageRequest) -> QueryResult<Page<RewardRow>> {
    let mut query = rewards::table.select(RewardRow::as_select()).order(rewards::id.desc()).into_boxed();
    if let Some(a) = &filter.ambassador_id {
        query = query.filter(rewards::ambassador_id.eq(a.clone()));
    }
    if let Some(r) = &filter.referral_id {
        query = query.filter(rewards::referral_id.eq(r.clone()));
    }
    if let Some(k) = filter.kind {
        query = query.filter(rewards::kind.eq(k));
    }
    if let Some(s) = filter.status {
        query = query.filter(rewards::state.eq(s.state()));
        let at = now();
        match s {
            RewardStatus::Held => query = query.filter(rewards::holds_until.gt(at)),
            RewardStatus::Payable => query = query.filter(rewards::holds_until.le(at)),
            _ => {}
        }
    }
    if let Some(after) = &page.after_id {
        query = query.filter(rewards::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// Whether the ambassador already has an adjustment with exactly this reason (an import's
/// opening balance, written once however often the file is re-run).
pub fn has_adjustment(conn: &mut DbConnection, ambassador_id: &str, reason: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        rewards::table
            .filter(rewards::ambassador_id.eq(ambassador_id))
            .filter(rewards::kind.eq(RewardKind::Adjustment))
            .filter(rewards::reason.eq(reason)),
    ))
    .get_result(conn)
}
