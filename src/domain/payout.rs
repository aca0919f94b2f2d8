//! Payout batches (`draft → paid | cancelled`), their lines (`pending → paid | failed`), and
//! which ambassadors a new batch pays: the rules of DESIGN §2 "Payout batch", without I/O.

use serde::{Deserialize, Serialize};

use super::ambassador::{AmbassadorStatus, PayoutMethod};
use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    Draft,
    Paid,
    Cancelled,
}

impl PayoutStatus {
    pub const ALL: [Self; 3] = [Self::Draft, Self::Paid, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    MarkPaid,
    Cancel,
}

impl PayoutEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MarkPaid => "mark paid",
            Self::Cancel => "cancel",
        }
    }
}

/// Only a draft can be settled: paid and cancelled batches are final.
pub fn transition(from: PayoutStatus, event: PayoutEvent) -> Result<PayoutStatus, DomainError> {
    match (from, event) {
        (PayoutStatus::Draft, PayoutEvent::MarkPaid) => Ok(PayoutStatus::Paid),
        (PayoutStatus::Draft, PayoutEvent::Cancel) => Ok(PayoutStatus::Cancelled),
        _ => Err(DomainError::InvalidTransition {
            entity: "payout",
            current: from.as_str().to_owned(),
            event: event.as_str().to_owned(),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// In a draft batch, to be paid.
    Pending,
    Paid,
    /// The payment did not go through (bounced, unclaimed): its rewards are payable again.
    Failed,
    /// Refunds voided every reward in it before payment.
    Released,
    /// The batch was cancelled.
    Cancelled,
}

impl LineStatus {
    pub const ALL: [Self; 5] = [Self::Pending, Self::Paid, Self::Failed, Self::Released, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A line fails while its batch is a draft, or after payment when the money came back.
pub fn fail_line(from: LineStatus) -> Result<LineStatus, DomainError> {
    match from {
        LineStatus::Pending | LineStatus::Paid => Ok(LineStatus::Failed),
        _ => Err(DomainError::InvalidTransition {
            entity: "payout line",
            current: from.as_str().to_owned(),
            event: "fail".to_owned(),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The payable balance is under the program minimum (or negative): it carries over.
    BelowMinimum,
    MissingPayoutDetails,
    Suspended,
    /// Applied or declined: never enrolled.
    NotActive,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BelowMinimum => "below_minimum",
            Self::MissingPayoutDetails => "missing_payout_details",
            Self::Suspended => "suspended",
            Self::NotActive => "not_active",
        }
    }
}

/// An ambassador with payable rewards at the cutoff.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub status: AmbassadorStatus,
    pub method: Option<PayoutMethod>,
    pub payable_minor: i64,
}

/// Whether a batch pays this ambassador now, or why not.
pub fn eligibility(c: &Candidate, min_payout_minor: i64) -> Result<(), SkipReason> {
    match c.status {
        AmbassadorStatus::Active | AmbassadorStatus::Closed => {}
        AmbassadorStatus::Suspended => return Err(SkipReason::Suspended),
        AmbassadorStatus::Applied | AmbassadorStatus::Declined => return Err(SkipReason::NotActive),
    }
    let has_details = match &c.method {
        None => false,
        Some(PayoutMethod::Paypal { email }) => !email.is_empty(),
        Some(PayoutMethod::Bank { reference }) => !reference.is_empty(),
        Some(PayoutMethod::StoreCredit) => true,
    };
    if !has_details {
        return Err(SkipReason::MissingPayoutDetails);
    }
    // A zero minimum still never pays a zero or negative balance.
    if c.payable_minor < min_payout_minor.max(1) {
        return Err(SkipReason::BelowMinimum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drafts_settle() {
        assert_eq!(transition(PayoutStatus::Draft, PayoutEvent::MarkPaid), Ok(PayoutStatus::Paid));
        assert_eq!(transition(PayoutStatus::Draft, PayoutEvent::Cancel), Ok(PayoutStatus::Cancelled));
        for from in [PayoutStatus::Paid, PayoutStatus::Cancelled] {
            for event in [PayoutEvent::MarkPaid, PayoutEvent::Cancel] {
                assert!(transition(from, event).is_err(), "{from:?} {event:?}");
            }
        }
        for from in LineStatus::ALL {
            let allowed = matches!(from, LineStatus::Pending | LineStatus::Paid);
            assert_eq!(fail_line(from).is_ok(), allowed, "{from:?}");
        }
    }

    #[test]
    fn eligibility_checks_status_then_details_then_minimum() {
        let paypal = Some(PayoutMethod::Paypal { email: "a@example.com".into() });
        let c = |status, method: Option<PayoutMethod>, payable_minor| Candidate { status, method, payable_minor };
        use AmbassadorStatus::*;
        assert_eq!(eligibility(&c(Active, paypal.clone(), 5_000), 5_000), Ok(()));
        assert_eq!(eligibility(&c(Closed, Some(PayoutMethod::StoreCredit), 5_000), 5_000), Ok(()));
        assert_eq!(eligibility(&c(Active, paypal.clone(), 4_999), 5_000), Err(SkipReason::BelowMinimum));
        assert_eq!(eligibility(&c(Active, paypal.clone(), -3_000), 0), Err(SkipReason::BelowMinimum));
        assert_eq!(eligibility(&c(Active, paypal.clone(), 0), 0), Err(SkipReason::BelowMinimum));
        assert_eq!(eligibility(&c(Active, None, 9_000), 5_000), Err(SkipReason::MissingPayoutDetails));
        assert_eq!(
            eligibility(&c(Active, Some(PayoutMethod::Bank { reference: String::new() }), 9_000), 5_000),
            Err(SkipReason::MissingPayoutDetails)
        );
        assert_eq!(eligibility(&c(Suspended, paypal.clone(), 9_000), 5_000), Err(SkipReason::Suspended));
        assert_eq!(eligibility(&c(Applied, paypal, 9_000), 5_000), Err(SkipReason::NotActive));
    }
}
