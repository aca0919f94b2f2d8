//! The two ledger entries both the reward and the payout use cases write: a void (a reward
//! not yet paid is cancelled) and a clawback (a paid one is offset). Each writes its entry and
//! its audit row inside the caller's transaction. Neither knows why: the callers do.

use super::audit::{self, Actor, AuditAction, Change, EntityType};
use super::Result;
use crate::db::{now, DbConnection};
use crate::domain::reward::{RewardKind, RewardStatus};
use crate::store::rewards::{self, NewReward, RewardRow};
use crate::store::StoreError;
use crate::store::{ensure_unchanged, new_id};

/// Voids a reward not yet paid (compare-and-set on the state read: a concurrent change of the
/// reward refuses this one).
pub fn void(conn: &mut DbConnection, reward: &RewardRow, reason: &str, actor: &Actor) -> Result<()> {
    let at = now();
    ensure_unchanged(rewards::void_row(conn, reward, reason, at)?)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardVoided,
            entity_type: EntityType::Reward,
            entity_id: &reward.id,
            before: Some(reward.status(at).as_str()),
            after: Some(RewardStatus::Voided.as_str()),
            details: Some(serde_json::json!({ "reason": reason, "amount_minor": reward.amount_minor })),
        },
    )?)
}

/// One negative entry offsetting a paid earned reward, payable at once (netted against the
/// next payout). A unique index allows one per referral: a second is a lost race.
pub fn clawback(conn: &mut DbConnection, earned: &RewardRow, reason: &str, actor: &Actor) -> Result<()> {
    let at = now();
    let id = new_id();
    let entry = NewReward {
        id: &id,
        ambassador_id: &earned.ambassador_id,
        referral_id: earned.referral_id.as_deref(),
        kind: RewardKind::Clawback,
        amount_minor: -earned.amount_minor,
        currency: &earned.currency,
        holds_until: at,
        // Counts against the year the reward was earned in, so the cap room comes back.
        earned_on: earned.earned_on,
        computed: None,
        reason: Some(reason),
        created_by: actor.label(),
        at,
    };
    rewards::insert(conn, &entry).map_err(StoreError::unique_race)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardClawback,
            entity_type: EntityType::Reward,
            entity_id: &id,
            before: None,
            after: Some(RewardStatus::Payable.as_str()),
            details: Some(serde_json::json!({ "earned_reward_id": earned.id, "amount_minor": -earned.amount_minor })),
        },
    )?)
}
