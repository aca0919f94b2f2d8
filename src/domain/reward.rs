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
    /// The balance from the ledger's sums: the total of each stored state, and how much of the
    /// `open` total is still held (the rest is payable).
    pub fn from_sums(currency: &str, by_state: impl IntoIterator<Item = (RewardState, i64)>, held: i64) -> Self {
        let mut b = Balance { currency: currency.to_owned(), ..Self::default() };
        for (state, sum) in by_state {
            let slot = match state {
                RewardState::Open => &mut b.payable_minor,
                RewardState::InPayout => &mut b.in_payout_minor,
                RewardState::Paid => &mut b.paid_minor,
                RewardState::Voided => continue,
            };
            *slot += sum;
            b.lifetime_minor += sum;
        }
        b.held_minor = held;
        b.payable_minor -= held;
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
    fn balances_split_open_into_held_and_payable_and_skip_voided() {
        // Open: 10,000 held + 5,000 - 2,000 payable; 7,000 in payout; 3,000 paid; 9,999 voided.
        let sums = vec![
            (RewardState::Open, 13_000),
            (RewardState::InPayout, 7_000),
            (RewardState::Paid, 3_000),
            (RewardState::Voided, 9_999),
        ];
        let b = Balance::from_sums("EUR", sums, 10_000);
        assert_eq!(
            (b.held_minor, b.payable_minor, b.in_payout_minor, b.paid_minor, b.lifetime_minor),
            (10_000, 3_000, 7_000, 3_000, 23_000)
        );
        assert_eq!(b.currency, "EUR");
        assert_eq!(Balance::from_sums("EUR", Vec::new(), 0), Balance { currency: "EUR".into(), ..Balance::default() });
    }
}
