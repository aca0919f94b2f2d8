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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewardStatus {
    Held,
    Payable,
    InPayout,
    Paid,
    Voided,
}

impl RewardStatus {
    pub const ALL: [Self; 5] = [Self::Held, Self::Payable, Self::InPayout, Self::Paid, Self::Voided];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Payable => "payable",
            Self::InPayout => "in_payout",
            Self::Paid => "paid",
            Self::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The stored state a status is kept as (`held` and `payable` are both `open`).
    pub fn state(self) -> &'static str {
        match self {
            Self::Held | Self::Payable => STATE_OPEN,
            Self::InPayout => STATE_IN_PAYOUT,
            Self::Paid => STATE_PAID,
            Self::Voided => STATE_VOIDED,
        }
    }

    /// The status of a stored reward at `now`.
    pub fn of(state: &str, holds_until: NaiveDateTime, now: NaiveDateTime) -> Self {
        match state {
            STATE_OPEN if holds_until > now => Self::Held,
            STATE_OPEN => Self::Payable,
            STATE_IN_PAYOUT => Self::InPayout,
            STATE_PAID => Self::Paid,
            _ => Self::Voided,
        }
    }
}

pub const STATE_OPEN: &str = "open";
pub const STATE_IN_PAYOUT: &str = "in_payout";
pub const STATE_PAID: &str = "paid";
pub const STATE_VOIDED: &str = "voided";

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
        entries: impl IntoIterator<Item = (String, NaiveDateTime, i64)>,
        now: NaiveDateTime,
    ) -> Self {
        let mut b = Balance { currency: currency.to_owned(), ..Self::default() };
        for (state, holds_until, amount) in entries {
            let slot = match RewardStatus::of(&state, holds_until, now) {
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
        assert_eq!(RewardStatus::of("open", at(10), at(9)), RewardStatus::Held);
        assert_eq!(RewardStatus::of("open", at(10), at(10)), RewardStatus::Payable);
        assert_eq!(RewardStatus::of("in_payout", at(10), at(9)), RewardStatus::InPayout);
        assert_eq!(RewardStatus::of("voided", at(10), at(9)), RewardStatus::Voided);
    }

    #[test]
    fn balances_sum_by_status_and_skip_voided() {
        let entries = vec![
            ("open".to_owned(), at(20), 10_000),
            ("open".to_owned(), at(1), 5_000),
            ("open".to_owned(), at(1), -2_000),
            ("in_payout".to_owned(), at(1), 7_000),
            ("paid".to_owned(), at(1), 3_000),
            ("voided".to_owned(), at(1), 9_999),
        ];
        let b = Balance::of("EUR", entries, at(10));
        assert_eq!(
            (b.held_minor, b.payable_minor, b.in_payout_minor, b.paid_minor, b.lifetime_minor),
            (10_000, 3_000, 7_000, 3_000, 23_000)
        );
    }
}
