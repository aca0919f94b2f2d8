//! The rewards ledger: kinds of entries and the status the API shows for each.
//!
//! A reward is stored as `open`, `in_payout`, `paid` or `voided`; an open reward is `held` until
//! its `holds_until` (the clinic's refund window) and `payable` after, so no job has to flip
//! statuses when the hold ends.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RewardKind {
        /// One per completed referral.
        Earned = "earned",
        /// Negative: a referral refunded after its reward was paid.
        Clawback = "clawback",
        /// ± by finance, with a reason.
        Adjustment = "adjustment",
    }
}

super::text_enum! {
    /// How a reward is stored: `open` covers both `held` and `payable`.
    pub enum RewardState {
        Open = "open",
        InPayout = "in_payout",
        Paid = "paid",
        Voided = "voided",
    }
}

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RewardStatus {
        Held = "held",
        Payable = "payable",
        InPayout = "in_payout",
        Paid = "paid",
        Voided = "voided",
    }
}

impl RewardStatus {
    /// The stored state a status is kept as (`held` and `payable` are both `open`).
    pub fn state(self) -> RewardState {
        match self {
            Self::Held | Self::Payable => RewardState::Open,
            Self::InPayout => RewardState::InPayout,
            Self::Paid => RewardState::Paid,
            Self::Voided => RewardState::Voided,
        }
    }

    /// The status of a stored reward at `now`.
    pub fn of(state: RewardState, holds_until: NaiveDateTime, now: NaiveDateTime) -> Self {
        match state {
            RewardState::Open if holds_until > now => Self::Held,
            RewardState::Open => Self::Payable,
            RewardState::InPayout => Self::InPayout,
            RewardState::Paid => Self::Paid,
            RewardState::Voided => Self::Voided,
        }
    }
}

/// An ambassador's money at a glance, in minor units of the program currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub currency: String,
    /// Earned but inside the refund window.
    pub held_minor: i64,
    /// Due in the next payout (may be negative after a clawback: it carries over).
    pub payable_minor: i64,
    /// In a draft payout batch.
    pub in_payout_minor: i64,
    pub paid_minor: i64,
    /// Everything not voided: held + payable + in payout + paid.
    pub lifetime_minor: i64,
}

impl Balance {
    /// Sums `(state, holds_until, amount)` ledger entries.
    pub fn of(
        currency: &str,
        entries: impl IntoIterator<Item = (RewardState, NaiveDateTime, i64)>,
        now: NaiveDateTime,
    ) -> Self {
        let mut b = Balance { currency: currency.to_owned(), ..Self::default() };
        for (state, holds_until, amount) in entries {
            let slot = match RewardStatus::of(state, holds_until, now) {
                RewardStatus::Held => &mut b.held_minor,
                RewardStatus::Payable => &mut b.payable_minor,
                RewardStatus::InPayout => &mut b.in_payout_minor,
                RewardStatus::Paid => &mut b.paid_minor,
                RewardStatus::Voided => continue,
            };
            *slot += amount;
            b.lifetime_minor += amount;
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap().and_hms_opt(0, 0, 0).unwrap()
    }

    #[test]
    fn open_rewards_are_held_until_the_boundary_then_payable() {
        assert_eq!(RewardStatus::of(RewardState::Open, at(10), at(9)), RewardStatus::Held);
        assert_eq!(RewardStatus::of(RewardState::Open, at(10), at(10)), RewardStatus::Payable);
        assert_eq!(RewardStatus::of(RewardState::InPayout, at(10), at(9)), RewardStatus::InPayout);
        assert_eq!(RewardStatus::of(RewardState::Voided, at(10), at(9)), RewardStatus::Voided);
    }

    #[test]
    fn balances_sum_by_status_and_skip_voided() {
        let entries = vec![
            (RewardState::Open, at(20), 10_000),
            (RewardState::Open, at(1), 5_000),
            (RewardState::Open, at(1), -2_000),
            (RewardState::InPayout, at(1), 7_000),
            (RewardState::Paid, at(1), 3_000),
            (RewardState::Voided, at(1), 9_999),
        ];
        let b = Balance::of("EUR", entries, at(10));
        assert_eq!(
            (b.held_minor, b.payable_minor, b.in_payout_minor, b.paid_minor, b.lifetime_minor),
            (10_000, 3_000, 7_000, 3_000, 23_000)
        );
    }
}
