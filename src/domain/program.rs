//! Program rules (what a completed referral earns, how long it is held, payout minimum, caps)
//! and the reward calculation. Pure: the store snapshots the version and the result on the
//! reward, so later rule changes never alter an earned reward.

use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::Validation;

/// Upper bound for any configured amount: far above any real reward, far below overflow.
const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;

/// How a completed referral's reward is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardRule {
    /// A fixed amount per completed referral.
    Flat { amount_minor: i64 },
    /// A share of the treatment value (`basis_points`: 1000 = 10 %), optionally capped per reward.
    Percent {
        basis_points: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_minor: Option<i64>,
    },
}

/// From the `min_completed`-th earning completion in a calendar year on (counted in order of
/// completion date), this replaces the base amount (flat programs) or share (percent programs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub min_completed: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis_points: Option<i64>,
}

/// One version of the program's rules, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRules {
    pub currency: Currency,
    pub reward: RewardRule,
    /// Sorted by `min_completed`, strictly increasing.
    pub tiers: Vec<Tier>,
    pub holding_days: i64,
    pub min_payout_minor: i64,
    pub annual_cap_minor: Option<i64>,
    pub attribution_days: i64,
    pub client_offer: Option<String>,
    pub tax_threshold_minor: i64,
}

/// The rules as a client sends them (`PUT /v1/program`), before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramInput {
    /// ISO 4217; cannot change once any reward exists.
    pub currency: String,
    pub reward: RewardRule,
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Days a reward is held after the completion date (the clinic's refund window): payable from
    /// the clinic's midnight that starts day `completed_on + holding_days`. Default 14.
    #[serde(default = "defaults::holding_days")]
    pub holding_days: i64,
    /// Smallest balance paid out; smaller balances carry over. Default 5000.
    #[serde(default = "defaults::min_payout_minor")]
    pub min_payout_minor: i64,
    /// Most an ambassador can earn per calendar year; `null`: no cap.
    #[serde(default)]
    pub annual_cap_minor: Option<i64>,
    /// A referral must complete within this many days of registration to earn; default 365.
    #[serde(default = "defaults::attribution_days")]
    pub attribution_days: i64,
    /// What the referred friend gets; shown by the public code lookup.
    #[serde(default)]
    pub client_offer: Option<String>,
    /// Yearly paid total from which the annual report flags an ambassador (tax reporting);
    /// default 60000.
    #[serde(default = "defaults::tax_threshold_minor")]
    pub tax_threshold_minor: i64,
}

/// DESIGN §2 defaults for rules left out of `PUT /v1/program`.
mod defaults {
    pub fn holding_days() -> i64 {
        14
    }
    pub fn min_payout_minor() -> i64 {
        5_000
    }
    pub fn attribution_days() -> i64 {
        365
    }
    pub fn tax_threshold_minor() -> i64 {
        60_000
    }
}

fn amount(v: &mut Validation, field: &str, value: i64, min: i64) {
    if !(min..=MAX_AMOUNT_MINOR).contains(&value) {
        v.push(field, format!("must be between {min} and {MAX_AMOUNT_MINOR} (minor units)"));
    }
}

fn basis_points(v: &mut Validation, field: &str, value: i64) {
    if !(1..=10_000).contains(&value) {
        v.push(field, "must be between 1 and 10000 (1 basis point = 0.01 %)");
    }
}

impl ProgramInput {
    pub fn parse(self) -> Result<ProgramRules, super::DomainError> {
        let mut v = Validation::new();
        let currency = v.check("currency", Currency::parse(&self.currency));
        let percent = match &self.reward {
            RewardRule::Flat { amount_minor } => {
                amount(&mut v, "reward.amount_minor", *amount_minor, 1);
                false
            }
            RewardRule::Percent { basis_points: bp, max_minor } => {
                basis_points(&mut v, "reward.basis_points", *bp);
                if let Some(max) = max_minor {
                    amount(&mut v, "reward.max_minor", *max, 1);
                }
                true
            }
        };
        let mut last = 1;
        for (i, tier) in self.tiers.iter().enumerate() {
            let field = |name: &str| format!("tiers[{i}].{name}");
            if tier.min_completed <= last || tier.min_completed > 10_000 {
                v.push(&field("min_completed"), "must be at least 2, at most 10000, and increase from tier to tier");
            }
            last = last.max(tier.min_completed);
            match (percent, tier.amount_minor, tier.basis_points) {
                (false, Some(a), None) => amount(&mut v, &field("amount_minor"), a, 1),
                (true, None, Some(bp)) => basis_points(&mut v, &field("basis_points"), bp),
                (false, _, _) => v.push(&field("amount_minor"), "a flat program's tier sets amount_minor (only)"),
                (true, _, _) => v.push(&field("basis_points"), "a percent program's tier sets basis_points (only)"),
            }
        }
        if !(0..=365).contains(&self.holding_days) {
            v.push("holding_days", "must be between 0 and 365");
        }
        amount(&mut v, "min_payout_minor", self.min_payout_minor, 0);
        if let Some(cap) = self.annual_cap_minor {
            amount(&mut v, "annual_cap_minor", cap, 1);
        }
        if !(1..=3650).contains(&self.attribution_days) {
            v.push("attribution_days", "must be between 1 and 3650");
        }
        let client_offer = v.check("client_offer", super::optional_text(self.client_offer.as_deref(), 500)).flatten();
        amount(&mut v, "tax_threshold_minor", self.tax_threshold_minor, 0);
        v.finish()?;
        Ok(ProgramRules {
            currency: currency.expect("validated"),
            reward: self.reward,
            tiers: self.tiers,
            holding_days: self.holding_days,
            min_payout_minor: self.min_payout_minor,
            annual_cap_minor: self.annual_cap_minor,
            attribution_days: self.attribution_days,
            client_offer,
            tax_threshold_minor: self.tax_threshold_minor,
        })
    }
}

/// What the ambassador already has this calendar year, before the referral being completed.
#[derive(Debug, Clone, Copy, Default)]
pub struct YearToDate {
    /// Earning completions this year dated on or before the one being completed (not counting
    /// it): its place in the year is this plus one.
    pub completed_before: i64,
    /// Earned this year net of clawbacks (voided rewards excluded).
    pub earned_minor: i64,
}

/// How a reward was computed; stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Basis {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// This completion's place among the ambassador's earning completions of its calendar
    /// year, by completion date (1 = the first).
    pub completed_in_year: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_min_completed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis_points: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub treatment_value_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annual_cap_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calculated {
    pub amount_minor: i64,
    /// Before the annual cap.
    pub uncapped_minor: i64,
    /// `annual_cap` when the cap cut the reward (possibly to zero).
    pub capped_reason: Option<&'static str>,
    pub basis: Basis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalculationError {
    #[error("a percent program needs the treatment value")]
    TreatmentValueRequired,
}

/// Basis points as a percentage for people: 1000 → "10 %", 1250 → "12.50 %".
pub fn percent(bp: i64) -> String {
    let (whole, frac) = (bp / 100, (bp % 100).abs());
    if frac == 0 {
        format!("{whole} %")
    } else {
        format!("{whole}.{frac:02} %")
    }
}

/// `value × bp / 10 000`, rounded half up, without overflow.
fn share(value: i64, bp: i64) -> i64 {
    let exact = i128::from(value) * i128::from(bp);
    i64::try_from((exact + 5_000) / 10_000).unwrap_or(i64::MAX)
}

impl ProgramRules {
    /// What a completed referral earns, in words for ambassadors (e-mails, pages): never
    /// naming the treatment.
    pub fn reward_summary(&self) -> String {
        use super::money::Money;
        let money = |minor: i64| Money::new(minor, self.currency.clone()).to_string();
        let base = match &self.reward {
            RewardRule::Flat { amount_minor } => money(*amount_minor),
            RewardRule::Percent { basis_points, max_minor: None } => {
                format!("{} of what your friend spends on their course", percent(*basis_points))
            }
            RewardRule::Percent { basis_points, max_minor: Some(max) } => {
                format!(
                    "{} of what your friend spends on their course (at most {})",
                    percent(*basis_points),
                    money(*max)
                )
            }
        };
        match self.tiers.first() {
            Some(t) => {
                format!("{base}, and more from your {}th completed referral in a calendar year", t.min_completed)
            }
            None => base,
        }
    }

    /// The tier reached by the `completed_in_year`-th completion, if any.
    fn tier(&self, completed_in_year: i64) -> Option<&Tier> {
        self.tiers.iter().rev().find(|t| completed_in_year >= t.min_completed)
    }

    /// The reward for one completed referral under these rules.
    pub fn calculate(
        &self,
        year: YearToDate,
        treatment_value_minor: Option<i64>,
    ) -> Result<Calculated, CalculationError> {
        let completed_in_year = year.completed_before + 1;
        let tier = self.tier(completed_in_year);
        let mut basis = Basis {
            kind: "flat",
            completed_in_year,
            tier_min_completed: tier.map(|t| t.min_completed),
            amount_minor: None,
            basis_points: None,
            treatment_value_minor: None,
            max_minor: None,
            annual_cap_minor: self.annual_cap_minor,
        };
        let uncapped = match &self.reward {
            RewardRule::Flat { amount_minor } => {
                let amount = tier.and_then(|t| t.amount_minor).unwrap_or(*amount_minor);
                basis.amount_minor = Some(amount);
                amount
            }
            RewardRule::Percent { basis_points, max_minor } => {
                let value = treatment_value_minor.ok_or(CalculationError::TreatmentValueRequired)?;
                let bp = tier.and_then(|t| t.basis_points).unwrap_or(*basis_points);
                basis.kind = "percent";
                basis.basis_points = Some(bp);
                basis.treatment_value_minor = Some(value);
                basis.max_minor = *max_minor;
                let amount = share(value, bp);
                max_minor.map_or(amount, |max| amount.min(max))
            }
        };
        let (amount_minor, capped_reason) = match self.annual_cap_minor {
            Some(cap) => {
                let room = (cap - year.earned_minor).max(0);
                if uncapped > room {
                    (room, Some("annual_cap"))
                } else {
                    (uncapped, None)
                }
            }
            None => (uncapped, None),
        };
        Ok(Calculated { amount_minor, uncapped_minor: uncapped, capped_reason, basis })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(reward: RewardRule) -> ProgramInput {
        ProgramInput {
            currency: "EUR".into(),
            reward,
            tiers: vec![],
            holding_days: 14,
            min_payout_minor: 5000,
            annual_cap_minor: None,
            attribution_days: 365,
            client_offer: None,
            tax_threshold_minor: 60000,
        }
    }

    fn flat(amount: i64) -> ProgramRules {
        input(RewardRule::Flat { amount_minor: amount }).parse().unwrap()
    }

    fn ytd(completed_before: i64, earned_minor: i64) -> YearToDate {
        YearToDate { completed_before, earned_minor }
    }

    #[test]
    fn flat_reward_is_the_amount() {
        let c = flat(10_000).calculate(ytd(0, 0), None).unwrap();
        assert_eq!((c.amount_minor, c.capped_reason), (10_000, None));
        assert_eq!(c.basis.completed_in_year, 1);
    }

    #[test]
    fn percent_reward_rounds_half_up_and_respects_max() {
        let rules = input(RewardRule::Percent { basis_points: 1_000, max_minor: Some(20_000) }).parse().unwrap();
        assert_eq!(rules.calculate(ytd(0, 0), Some(12_345)).unwrap().amount_minor, 1_235);
        assert_eq!(rules.calculate(ytd(0, 0), Some(150_000)).unwrap().amount_minor, 15_000);
        let capped = rules.calculate(ytd(0, 0), Some(500_000)).unwrap();
        assert_eq!((capped.amount_minor, capped.uncapped_minor), (20_000, 20_000));
        assert_eq!(capped.basis.max_minor, Some(20_000));
        assert_eq!(rules.calculate(ytd(0, 0), None), Err(CalculationError::TreatmentValueRequired));
        assert_eq!(rules.calculate(ytd(0, 0), Some(i64::MAX)).unwrap().amount_minor, 20_000);
    }

    #[test]
    fn tiers_apply_from_their_completion_count() {
        let mut i = input(RewardRule::Flat { amount_minor: 10_000 });
        i.tiers = vec![
            Tier { min_completed: 5, amount_minor: Some(15_000), basis_points: None },
            Tier { min_completed: 10, amount_minor: Some(20_000), basis_points: None },
        ];
        let rules = i.parse().unwrap();
        let at = |before| rules.calculate(ytd(before, 0), None).unwrap();
        assert_eq!(at(3).amount_minor, 10_000, "4th completion");
        assert_eq!(at(4).amount_minor, 15_000, "5th completion");
        assert_eq!(at(4).basis.tier_min_completed, Some(5));
        assert_eq!(at(8).amount_minor, 15_000);
        assert_eq!(at(9).amount_minor, 20_000);
    }

    #[test]
    fn the_annual_cap_cuts_partially_then_to_zero() {
        let mut i = input(RewardRule::Flat { amount_minor: 10_000 });
        i.annual_cap_minor = Some(25_000);
        let rules = i.parse().unwrap();
        let c = rules.calculate(ytd(2, 20_000), None).unwrap();
        assert_eq!((c.amount_minor, c.uncapped_minor, c.capped_reason), (5_000, 10_000, Some("annual_cap")));
        let c = rules.calculate(ytd(3, 25_000), None).unwrap();
        assert_eq!((c.amount_minor, c.capped_reason), (0, Some("annual_cap")));
        // Over the cap already (a rule change lowered it): zero, never negative.
        let c = rules.calculate(ytd(3, 40_000), None).unwrap();
        assert_eq!(c.amount_minor, 0);
        assert_eq!(rules.calculate(ytd(1, 15_000), None).unwrap().capped_reason, None);
    }

    #[test]
    fn reward_summaries_name_the_amount_not_the_treatment() {
        assert_eq!(flat(10_000).reward_summary(), "100.00 EUR");
        let mut i = input(RewardRule::Percent { basis_points: 1_250, max_minor: Some(30_000) });
        i.tiers = vec![Tier { min_completed: 5, amount_minor: None, basis_points: Some(1_500) }];
        assert_eq!(
            i.parse().unwrap().reward_summary(),
            "12.50 % of what your friend spends on their course (at most 300.00 EUR), and more from your 5th \
             completed referral in a calendar year"
        );
    }

    #[test]
    fn bad_rules_report_every_field() {
        let mut i = input(RewardRule::Percent { basis_points: 0, max_minor: Some(-1) });
        i.currency = "XXX1".into();
        i.tiers = vec![
            Tier { min_completed: 1, amount_minor: Some(5), basis_points: None },
            Tier { min_completed: 3, amount_minor: None, basis_points: Some(20_000) },
        ];
        i.holding_days = -1;
        i.min_payout_minor = -5;
        i.attribution_days = 0;
        let Err(super::super::DomainError::Validation(errors)) = i.parse() else { panic!("expected errors") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "currency",
                "reward.basis_points",
                "reward.max_minor",
                "tiers[0].min_completed",
                "tiers[0].basis_points",
                "tiers[1].basis_points",
                "holding_days",
                "min_payout_minor",
                "attribution_days",
            ]
        );
    }
}
