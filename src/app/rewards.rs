//! The reward use cases: the reward a completion earns, what a refund does to it, finance's
//! adjustments, balances and the ledger. Each runs inside its caller's transaction or opens
//! its own.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::audit::{self, Actor, AuditAction, Change, EntityType};
use super::error::Found;
use super::{ledger, notices, Error, Result};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::calendar::Calendar;
use crate::domain::program::{Calculated, CalculationError};
use crate::domain::reward::{Balance, RewardKind, RewardState, RewardStatus};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::program::{self, Program};
use crate::store::referrals::ReferralRow;
use crate::store::rewards::{self, Computed, NewReward, RewardFilter, RewardRow};
use crate::store::StoreError;
use crate::store::{ambassadors, new_id, payouts, Page, PageRequest};

/// The reward for this completion under the program, with the ambassador locked first
/// (see [`rewards::lock_ambassador`]) before their year is counted; and the ambassador's row.
fn calculate(
    conn: &mut DbConnection,
    ambassador_id: &str,
    referral: &ReferralRow,
    completed_on: NaiveDate,
    program: &Program,
) -> Result<(Calculated, AmbassadorRow)> {
    let ambassador = rewards::lock_ambassador(conn, ambassador_id)?;
    let ytd = rewards::year_to_date(conn, ambassador_id, &referral.id, completed_on)?;
    let calc = program.rules.calculate(ytd, referral.treatment_value_minor).map_err(calculation_refused)?;
    Ok((calc, ambassador))
}

/// Why the program's rules cannot work out a reward, as the API says it.
pub(crate) fn calculation_refused(e: CalculationError) -> Error {
    match e {
        CalculationError::TreatmentValueRequired => Error::Unprocessable {
            kind: "treatment-value-required",
            detail: "The program pays a percentage of the treatment value: give treatment_value_minor.".into(),
            field: Some("treatment_value_minor"),
        },
    }
}

/// Writes the earned reward for a referral that has just been completed (call inside the
/// completion's transaction, after the status update). The amount comes from the program in
/// force; the version, tier and basis are stored with it. A unique index allows one earned
/// reward per referral, whatever retries or races happen. `code`: the referral's code (as
/// `store::referrals::code_of` gives it), for the e-mail's client label.
pub fn earn(
    conn: &mut DbConnection,
    calendar: &Calendar,
    referral: &ReferralRow,
    code: Option<&str>,
    program: &Program,
    actor: &Actor,
) -> Result<RewardRow> {
    let (row, locked) = write_earned(conn, calendar, referral, program, None, actor)?;
    let ambassador = match locked {
        Some(ambassador) => ambassador,
        None => ambassadors::find(conn, &row.ambassador_id).or_not_found("ambassador")?,
    };
    if ambassador.notify_reward_updates && row.amount_minor > 0 {
        let payable_on = row.earned_on + chrono::Duration::days(program.rules.holding_days);
        let label = referral.label_for_ambassador(code);
        notices::reward_earned(conn, &ambassador, &row, &label, payable_on)?;
    }
    Ok(row)
}

/// The earned reward of a referral imported as completed (inside the import's transaction),
/// without telling the ambassador: the amount the file gives (`amount_minor`, kept as the old
/// system computed it), else the one `program` computes.
pub(crate) fn earn_imported(
    conn: &mut DbConnection,
    calendar: &Calendar,
    referral: &ReferralRow,
    program: &Program,
    amount_minor: Option<i64>,
    actor: &Actor,
) -> Result<RewardRow> {
    Ok(write_earned(conn, calendar, referral, program, amount_minor, actor)?.0)
}

/// Writes the earned reward and its audit row: `given` as the amount (an import), else the
/// program's calculation (then with the ambassador's row, locked for it).
fn write_earned(
    conn: &mut DbConnection,
    calendar: &Calendar,
    referral: &ReferralRow,
    program: &Program,
    given: Option<i64>,
    actor: &Actor,
) -> Result<(RewardRow, Option<AmbassadorRow>)> {
    let ambassador_id =
        referral.ambassador_id.as_deref().ok_or_else(|| Error::internal("completed referral without ambassador"))?;
    let completed_on = referral.completed_on.ok_or_else(|| Error::internal("completed referral without date"))?;
    let (amount_minor, (basis, uncapped_minor, capped_reason), ambassador) = match given {
        Some(amount) => {
            let basis = serde_json::json!({ "type": "imported", "amount_minor": amount }).to_string();
            (amount, (basis, amount, None), None)
        }
        None => computed(conn, (ambassador_id, completed_on), referral, program)?,
    };
    let at = now();
    // Payable from the clinic's midnight that starts day `completed_on + holding_days`, held
    // before: completed on the 1st with 14 holding days, payable from 00:00 on the 15th.
    let payable_on = completed_on + chrono::Duration::days(program.rules.holding_days);
    let id = new_id();
    let entry = NewReward {
        id: &id,
        ambassador_id,
        referral_id: Some(&referral.id),
        kind: RewardKind::Earned,
        amount_minor,
        currency: program.rules.currency.as_str(),
        holds_until: calendar.start_of(payable_on),
        earned_on: completed_on,
        computed: Some(Computed { program_version_id: &program.id, basis, uncapped_minor, capped_reason }),
        reason: None,
        created_by: actor.label(),
        at,
    };
    let row = rewards::insert(conn, &entry).map_err(StoreError::unique_race)?;
    audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardEarned,
            entity_type: EntityType::Reward,
            entity_id: &id,
            before: None,
            after: Some(row.status(at).as_str()),
            details: Some(serde_json::json!({
                "referral_id": referral.id,
                "amount_minor": row.amount_minor,
                "program_version_id": program.id,
                "capped_reason": capped_reason,
                "imported": given.is_some(),
            })),
        },
    )?;
    Ok((row, ambassador))
}

/// The program's reward for a completion: the amount, its basis (as JSON), the uncapped
/// amount and why it was capped; with the ambassador's row, locked for it ([`calculate`]).
#[allow(clippy::type_complexity)]
fn computed(
    conn: &mut DbConnection,
    (ambassador_id, completed_on): (&str, NaiveDate),
    referral: &ReferralRow,
    program: &Program,
) -> Result<(i64, (String, i64, Option<&'static str>), Option<AmbassadorRow>)> {
    let (calc, ambassador) = calculate(conn, ambassador_id, referral, completed_on, program)?;
    let basis = serde_json::to_string(&calc.basis).map_err(Error::internal)?;
    Ok((calc.amount_minor, (basis, calc.uncapped_minor, calc.capped_reason), Some(ambassador)))
}

/// What a refund does to the referral's earned reward (call inside the refund's
/// transaction): not yet paid → voided (and taken out of a draft payout); in a batch locked
/// for payment → left in its line, clawed back once the batch is paid (voided if the batch is
/// cancelled instead); already paid → one negative clawback, payable at once, netted against
/// the next payout.
pub fn on_refund(conn: &mut DbConnection, referral: &ReferralRow, actor: &Actor) -> Result<()> {
    let Some(mut reward) = rewards::earned_for(conn, &referral.id)? else { return Ok(()) };
    if let Some(line_id) = reward.payout_line_id.as_deref() {
        // Its batch first, then the reward again: a lock, payment or cancellation of the batch
        // at the same moment is then seen in full rather than raced.
        payouts::hold_batch_of_line(conn, line_id)?;
        reward = rewards::find(conn, &reward.id)?;
    }
    match reward.state {
        RewardState::Open => ledger::void(conn, &reward, "refunded", actor),
        RewardState::InPayout => super::payouts::refund_in_batch(conn, &reward, actor),
        RewardState::Paid if reward.amount_minor > 0 => {
            ledger::clawback(conn, &reward, "referral refunded after payment", actor)
        }
        _ => Ok(()),
    }
}

/// A manual ± entry by finance, payable at once.
pub fn adjust(
    conn: &mut DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    amount_minor: i64,
    reason: &str,
    actor: &Actor,
) -> Result<RewardRow> {
    write_tx(conn, |conn| adjust_in_tx(conn, calendar, ambassador_id, amount_minor, reason, actor))
}

/// [`adjust`] inside the caller's transaction (an import's opening balances).
pub(crate) fn adjust_in_tx(
    conn: &mut DbConnection,
    calendar: &Calendar,
    ambassador_id: &str,
    amount_minor: i64,
    reason: &str,
    actor: &Actor,
) -> Result<RewardRow> {
    let ambassador = ambassadors::find(conn, ambassador_id).or_not_found("ambassador")?;
    if matches!(ambassador.status(), AmbassadorStatus::Applied | AmbassadorStatus::Declined) {
        return Err(Error::Unprocessable {
            kind: "ambassador-inactive",
            detail: format!("The ambassador is {}: only enrolled ambassadors have a balance.", ambassador.status),
            field: Some("ambassador_id"),
        });
    }
    let currency = program::current(conn)?.rules.currency;
    let at = now();
    let id = new_id();
    let entry = NewReward {
        id: &id,
        ambassador_id,
        referral_id: None,
        kind: RewardKind::Adjustment,
        amount_minor,
        currency: currency.as_str(),
        holds_until: at,
        earned_on: calendar.date_of(at),
        computed: None,
        reason: Some(reason),
        created_by: actor.label(),
        at,
    };
    rewards::insert(conn, &entry)?;
    audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardAdjusted,
            entity_type: EntityType::Reward,
            entity_id: &id,
            before: None,
            after: Some(RewardStatus::Payable.as_str()),
            details: Some(serde_json::json!({ "ambassador_id": ambassador_id, "amount_minor": amount_minor })),
        },
    )?;
    Ok(rewards::find(conn, &id)?)
}

/// The ambassador's balance by status, in the program's currency.
pub fn balance(conn: &mut DbConnection, ambassador_id: &str) -> Result<Balance> {
    let currency = program::current(conn)?.rules.currency;
    let (by_state, held) = rewards::balance_sums(conn, ambassador_id, now())?;
    Ok(Balance::from_sums(currency.as_str(), by_state, held))
}

/// A page of the ledger, newest first.
pub fn list(conn: &mut DbConnection, filter: &RewardFilter, page: &PageRequest) -> Result<Page<RewardRow>> {
    Ok(rewards::list(conn, filter, page)?)
}

/// A page of the ledger, with the names of the ambassadors on it by id.
pub fn list_named(
    conn: &mut DbConnection,
    filter: &RewardFilter,
    page: &PageRequest,
) -> Result<(Page<RewardRow>, BTreeMap<String, String>)> {
    let rows = list(conn, filter, page)?;
    let ids: Vec<&str> = rows.items.iter().map(|r| r.ambassador_id.as_str()).collect();
    let names = payouts::ambassador_names(conn, &ids)?;
    Ok((rows, names))
}
