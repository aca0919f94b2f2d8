//! The rewards ledger: the earned reward written in the completion's transaction, voids and
//! clawbacks on refund, finance adjustments, balances and listings. Entries are never edited
//! in amount; every state change is a compare-and-set on the state read, so two requests can
//! never both move the same reward.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors as ambassadors_t, referrals, rewards};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::money::{Currency, Money};
use crate::domain::program::{Calculated, CalculationError, YearToDate};
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::{Balance, RewardKind, RewardState, RewardStatus};
use crate::email::notices;
use crate::error::ApiError;
use crate::store::audit::{self, Actor, Change};
use crate::store::program::{self, Program};
use crate::store::referrals::ReferralRow;
use crate::store::{ambassadors, ensure_unchanged, new_id, payouts, sum_bigint, Page, PageRequest, StoreError};

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
    pub holds_until: NaiveDateTime,
    pub earned_on: NaiveDate,
    pub program_version_id: Option<String>,
    pub basis: Option<String>,
    pub uncapped_minor: Option<i64>,
    pub capped_reason: Option<String>,
    pub reason: Option<String>,
    pub payout_line_id: Option<String>,
    pub paid_at: Option<NaiveDateTime>,
    pub voided_at: Option<NaiveDateTime>,
    pub void_reason: Option<String>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
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

pub fn find(conn: &mut DbConnection, id: &str) -> Result<RewardRow, ApiError> {
    rewards::table.find(id).select(RewardRow::as_select()).first(conn).optional()?.ok_or(ApiError::NotFound("reward"))
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
fn year_to_date(
    conn: &mut DbConnection,
    ambassador_id: &str,
    referral_id: &str,
    day: NaiveDate,
) -> Result<YearToDate, ApiError> {
    let (first, last) = Calendar::year_of(day);
    let completed_before: i64 = referrals::table
        .filter(referrals::ambassador_id.eq(ambassador_id))
        .filter(referrals::status.eq(ReferralStatus::Completed))
        .filter(referrals::earns.eq(true))
        .filter(referrals::completed_on.between(first, day))
        .filter(referrals::id.ne(referral_id))
        .count()
        .get_result(conn)?;
    let earned: Option<i64> = rewards::table
        .filter(rewards::ambassador_id.eq(ambassador_id))
        .filter(rewards::kind.eq_any([RewardKind::Earned, RewardKind::Clawback]))
        .filter(rewards::state.ne(RewardState::Voided))
        .filter(rewards::earned_on.between(first, last))
        .select(sum_bigint("amount_minor"))
        .first(conn)?;
    Ok(YearToDate { completed_before, earned_minor: earned.unwrap_or(0) })
}

/// The reward for this completion under the program, with the ambassador locked first (a
/// no-op update) before their year is counted: on PostgreSQL two completions for one
/// ambassador then count one after the other, so tiers and the annual cap see each other.
fn calculate(
    conn: &mut DbConnection,
    ambassador_id: &str,
    referral: &ReferralRow,
    completed_on: NaiveDate,
    program: &Program,
) -> Result<Calculated, ApiError> {
    diesel::update(ambassadors_t::table.find(ambassador_id))
        .set(ambassadors_t::updated_at.eq(ambassadors_t::updated_at))
        .execute(conn)?;
    let ytd = year_to_date(conn, ambassador_id, &referral.id, completed_on)?;
    program.rules.calculate(ytd, referral.treatment_value_minor).map_err(|e| match e {
        CalculationError::TreatmentValueRequired => ApiError::Unprocessable {
            kind: "treatment-value-required",
            detail: "The program pays a percentage of the treatment value: give treatment_value_minor.".into(),
            field: Some("treatment_value_minor"),
        },
    })
}

/// Writes the earned reward for a referral that has just been completed (call inside the
/// completion's transaction, after the status update). The amount comes from the program in
/// force; the version, tier and basis are stored with it. A unique index allows one earned
/// reward per referral, whatever retries or races happen.
pub fn earn(
    conn: &mut DbConnection,
    calendar: &Calendar,
    referral: &ReferralRow,
    program: &Program,
    actor: &Actor,
) -> Result<RewardRow, ApiError> {
    let ambassador_id =
        referral.ambassador_id.as_deref().ok_or_else(|| ApiError::internal("completed referral without ambassador"))?;
    let completed_on = referral.completed_on.ok_or_else(|| ApiError::internal("completed referral without date"))?;
    let calc = calculate(conn, ambassador_id, referral, completed_on, program)?;
    let at = now();
    // Payable from the clinic's midnight that starts day `completed_on + holding_days`, held
    // before: completed on the 1st with 14 holding days, payable from 00:00 on the 15th.
    let payable_on = completed_on + chrono::Duration::days(program.rules.holding_days);
    let holds_until = calendar.start_of(payable_on);
    let id = new_id();
    diesel::insert_into(rewards::table)
        .values((
            rewards::id.eq(&id),
            rewards::ambassador_id.eq(ambassador_id),
            rewards::referral_id.eq(&referral.id),
            rewards::kind.eq(RewardKind::Earned),
            rewards::amount_minor.eq(calc.amount_minor),
            rewards::currency.eq(program.rules.currency.as_str()),
            rewards::state.eq(RewardState::Open),
            rewards::holds_until.eq(holds_until),
            rewards::earned_on.eq(completed_on),
            rewards::program_version_id.eq(&program.id),
            rewards::basis.eq(serde_json::to_string(&calc.basis).map_err(ApiError::internal)?),
            rewards::uncapped_minor.eq(calc.uncapped_minor),
            rewards::capped_reason.eq(calc.capped_reason),
            rewards::created_by.eq(actor.label()),
            rewards::created_at.eq(at),
            rewards::updated_at.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    let row = find(conn, &id)?;
    audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardEarned,
            entity_type: "reward",
            entity_id: &id,
            before: None,
            after: Some(row.status(at).as_str()),
            details: Some(serde_json::json!({
                "referral_id": referral.id,
                "amount_minor": row.amount_minor,
                "program_version_id": program.id,
                "capped_reason": calc.capped_reason,
            })),
        },
    )?;
    let ambassador = ambassadors::find(conn, ambassador_id)?;
    if ambassador.notify_reward_updates && row.amount_minor > 0 {
        notices::reward_earned(conn, &ambassador, &row, &referral.id, payable_on)?;
    }
    Ok(row)
}

/// What a refund does to the referral's earned reward (call inside the refund's
/// transaction): not yet paid → voided (and taken out of a draft payout); in a batch locked
/// for payment → left in its line, clawed back once the batch is paid (voided if the batch is
/// cancelled instead); already paid → one negative clawback, payable at once, netted against
/// the next payout.
pub fn on_refund(conn: &mut DbConnection, referral: &ReferralRow, actor: &Actor) -> Result<(), ApiError> {
    let earned: Option<RewardRow> = rewards::table
        .filter(rewards::referral_id.eq(&referral.id))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .select(RewardRow::as_select())
        .first(conn)
        .optional()?;
    let Some(mut reward) = earned else { return Ok(()) };
    if let Some(line_id) = reward.payout_line_id.as_deref() {
        // Its batch first, then the reward again: a lock, payment or cancellation of the batch
        // at the same moment is then seen in full rather than raced.
        payouts::hold_batch_of_line(conn, line_id)?;
        reward = find(conn, &reward.id)?;
    }
    match reward.state {
        RewardState::Open => void(conn, &reward, "refunded", actor),
        RewardState::InPayout => {
            payouts::refund_in_batch(conn, &reward, actor, |c| void(c, &reward, "refunded", actor))
        }
        RewardState::Paid if reward.amount_minor > 0 => {
            clawback(conn, &reward, "referral refunded after payment", actor)
        }
        _ => Ok(()),
    }
}

/// Voids a reward not yet paid (compare-and-set on the state read).
pub(crate) fn void(conn: &mut DbConnection, reward: &RewardRow, reason: &str, actor: &Actor) -> Result<(), ApiError> {
    let at = now();
    let changed = diesel::update(rewards::table.find(&reward.id).filter(rewards::state.eq(reward.state)))
        .set((
            rewards::state.eq(RewardState::Voided),
            rewards::payout_line_id.eq(None::<String>),
            rewards::voided_at.eq(at),
            rewards::void_reason.eq(reason),
            rewards::updated_at.eq(at),
        ))
        .execute(conn)?;
    ensure_unchanged(changed)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardVoided,
            entity_type: "reward",
            entity_id: &reward.id,
            before: Some(reward.status(at).as_str()),
            after: Some(RewardStatus::Voided.as_str()),
            details: Some(serde_json::json!({ "reason": reason, "amount_minor": reward.amount_minor })),
        },
    )?)
}

/// One negative entry offsetting a paid earned reward, payable at once (netted against the
/// next payout). A unique index allows one per referral.
pub(crate) fn clawback(
    conn: &mut DbConnection,
    earned: &RewardRow,
    reason: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    let at = now();
    let id = new_id();
    diesel::insert_into(rewards::table)
        .values((
            rewards::id.eq(&id),
            rewards::ambassador_id.eq(&earned.ambassador_id),
            rewards::referral_id.eq(&earned.referral_id),
            rewards::kind.eq(RewardKind::Clawback),
            rewards::amount_minor.eq(-earned.amount_minor),
            rewards::currency.eq(&earned.currency),
            rewards::state.eq(RewardState::Open),
            rewards::holds_until.eq(at),
            // Counts against the year the reward was earned in, so the cap room comes back.
            rewards::earned_on.eq(earned.earned_on),
            rewards::reason.eq(reason),
            rewards::created_by.eq(actor.label()),
            rewards::created_at.eq(at),
            rewards::updated_at.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardClawback,
            entity_type: "reward",
            entity_id: &id,
            before: None,
            after: Some(RewardStatus::Payable.as_str()),
            details: Some(serde_json::json!({ "earned_reward_id": earned.id, "amount_minor": -earned.amount_minor })),
        },
    )?)
}

/// A manual ± entry by finance, payable at once.
pub fn adjust(
    conn: &mut DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    amount_minor: i64,
    reason: &str,
    actor: &Actor,
) -> Result<RewardRow, ApiError> {
    write_tx(conn, |conn| {
        let ambassador = ambassadors::find(conn, ambassador_id)?;
        if matches!(ambassador.status(), AmbassadorStatus::Applied | AmbassadorStatus::Declined) {
            return Err(ApiError::Unprocessable {
                kind: "ambassador-inactive",
                detail: format!("The ambassador is {}: only enrolled ambassadors have a balance.", ambassador.status),
                field: Some("ambassador_id"),
            });
        }
        let currency = program::current(conn)?.rules.currency;
        let at = now();
        let id = new_id();
        diesel::insert_into(rewards::table)
            .values((
                rewards::id.eq(&id),
                rewards::ambassador_id.eq(ambassador_id),
                rewards::kind.eq(RewardKind::Adjustment),
                rewards::amount_minor.eq(amount_minor),
                rewards::currency.eq(currency.as_str()),
                rewards::state.eq(RewardState::Open),
                rewards::holds_until.eq(at),
                rewards::earned_on.eq(calendar.date_of(at)),
                rewards::reason.eq(reason),
                rewards::created_by.eq(actor.label()),
                rewards::created_at.eq(at),
                rewards::updated_at.eq(at),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::RewardAdjusted,
                entity_type: "reward",
                entity_id: &id,
                before: None,
                after: Some(RewardStatus::Payable.as_str()),
                details: Some(serde_json::json!({ "ambassador_id": ambassador_id, "amount_minor": amount_minor })),
            },
        )?;
        find(conn, &id)
    })
}

/// The ambassador's balance by status.
pub fn balance(conn: &mut DbConnection, ambassador_id: &str) -> Result<Balance, ApiError> {
    let currency = program::current(conn)?.rules.currency;
    // Summed by the database from the rewards index alone (ambassador, state, hold, amount)
    // rather than a row per reward: the total of each state, and the part of `open` still held.
    let by_state: Vec<(RewardState, Option<i64>)> = rewards::table
        .filter(rewards::ambassador_id.eq(ambassador_id))
        .group_by(rewards::state)
        .select((rewards::state, sum_bigint("amount_minor")))
        .load(conn)?;
    let held: Option<i64> = rewards::table
        .filter(rewards::ambassador_id.eq(ambassador_id))
        .filter(rewards::state.eq(RewardState::Open))
        .filter(rewards::holds_until.gt(now()))
        .select(sum_bigint("amount_minor"))
        .first(conn)?;
    let by_state = by_state.into_iter().map(|(state, sum)| (state, sum.unwrap_or(0)));
    Ok(Balance::from_sums(currency.as_str(), by_state, held.unwrap_or(0)))
}

#[derive(Debug, Clone, Default)]
pub struct RewardFilter {
    pub ambassador_id: Option<String>,
    pub referral_id: Option<String>,
    pub status: Option<RewardStatus>,
    pub kind: Option<RewardKind>,
}

pub fn list(conn: &mut DbConnection, filter: &RewardFilter, page: &PageRequest) -> Result<Page<RewardRow>, ApiError> {
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
