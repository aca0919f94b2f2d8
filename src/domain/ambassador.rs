//! Ambassador lifecycle (`applied → active ⇄ suspended → closed`, `applied → declined`) and
//! the value types an ambassador carries.

use serde::{Deserialize, Serialize};

use super::contact::Email;
use super::DomainError;

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum AmbassadorStatus {
        Applied = "applied",
        Active = "active",
        Suspended = "suspended",
        Closed = "closed",
        Declined = "declined",
    }
}

super::text_enum! {
    /// How an ambassador joined (stored as the row's `source`).
    pub enum Enrolment {
        /// Staff enrol: active at once, with a code.
        ByStaff = "staff",
        /// Public application: `applied`, waits for approval; the code comes on approval.
        Application = "application",
    }
}

/// What staff can do to an ambassador's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    Approve,
    Decline,
    Suspend,
    Reactivate,
    Close,
}

impl LifecycleEvent {
    pub const ALL: [Self; 5] = [Self::Approve, Self::Decline, Self::Suspend, Self::Reactivate, Self::Close];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Suspend => "suspend",
            Self::Reactivate => "reactivate",
            Self::Close => "close",
        }
    }

    /// Suspending and closing must say why; the others may.
    pub fn requires_reason(self) -> bool {
        matches!(self, Self::Suspend | Self::Close)
    }
}

/// The one place the ambassador state machine lives.
pub fn transition(from: AmbassadorStatus, event: LifecycleEvent) -> Result<AmbassadorStatus, DomainError> {
    use AmbassadorStatus::*;
    use LifecycleEvent::*;
    let to = match (from, event) {
        (Applied, Approve) => Active,
        (Applied, Decline) => Declined,
        (Active, Suspend) => Suspended,
        (Suspended, Reactivate) => Active,
        (Active | Suspended, Close) => Closed,
        _ => {
            return Err(DomainError::InvalidTransition {
                entity: "ambassador",
                current: from.as_str().to_owned(),
                event: event.as_str().to_owned(),
            })
        }
    };
    Ok(to)
}

/// How an ambassador is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PayoutMethod {
    /// Paid to a PayPal account.
    Paypal { email: String },
    /// Paid by bank transfer; `reference` is free text (account, IBAN, instructions).
    Bank { reference: String },
    /// Paid as credit at the clinic.
    StoreCredit,
}

impl PayoutMethod {
    /// Normalises the details inside (PayPal e-mail lower-cased, bank reference trimmed).
    pub fn parse(self) -> Result<Self, (String, String)> {
        match self {
            Self::Paypal { email } => Email::parse(&email)
                .and_then(|e| {
                    // PayPal's upload file is a spreadsheet: such an address would be read as
                    // a formula (and escaping it would change the address).
                    if e.as_str().starts_with(['=', '+', '-', '@']) {
                        Err("must not start with =, +, - or @".into())
                    } else {
                        Ok(e)
                    }
                })
                .map(|e| Self::Paypal { email: e.into_inner() })
                .map_err(|m| ("payout_method.email".into(), m)),
            Self::Bank { reference } => super::required_text(&reference, 500)
                .map(|reference| Self::Bank { reference })
                .map_err(|m| ("payout_method.reference".into(), m)),
            Self::StoreCredit => Ok(Self::StoreCredit),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Paypal { .. } => "paypal",
            Self::Bank { .. } => "bank",
            Self::StoreCredit => "store_credit",
        }
    }

    /// Columns as stored: (method, paypal email, bank reference).
    pub fn to_columns(method: Option<&Self>) -> (Option<String>, Option<String>, Option<String>) {
        match method {
            None => (None, None, None),
            Some(Self::Paypal { email }) => (Some("paypal".into()), Some(email.clone()), None),
            Some(Self::Bank { reference }) => (Some("bank".into()), None, Some(reference.clone())),
            Some(Self::StoreCredit) => (Some("store_credit".into()), None, None),
        }
    }

    pub fn from_columns(method: Option<&str>, paypal: Option<&str>, bank: Option<&str>) -> Option<Self> {
        match method? {
            "paypal" => Some(Self::Paypal { email: paypal.unwrap_or_default().to_owned() }),
            "bank" => Some(Self::Bank { reference: bank.unwrap_or_default().to_owned() }),
            "store_credit" => Some(Self::StoreCredit),
            _ => None,
        }
    }
}

/// Which optional e-mails the ambassador wants. Essential ones (login link, payout sent)
/// always go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferences {
    /// Referral registered, cancelled or refunded.
    pub referral_updates: bool,
    /// Reward earned.
    pub reward_updates: bool,
}

impl Default for NotificationPreferences {
    fn default() -> Self {
        Self { referral_updates: true, reward_updates: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AmbassadorStatus::*;
    use LifecycleEvent::*;

    /// Every (state, event) pair, allowed and refused.
    #[test]
    fn transition_table() {
        let allowed = [
            (Applied, Approve, Active),
            (Applied, Decline, Declined),
            (Active, Suspend, Suspended),
            (Active, Close, Closed),
            (Suspended, Reactivate, Active),
            (Suspended, Close, Closed),
        ];
        crate::domain::assert_transition_table(&AmbassadorStatus::ALL, &LifecycleEvent::ALL, &allowed, transition);
    }

    #[test]
    fn payout_method_is_normalised() {
        let m = PayoutMethod::Paypal { email: " Ann@PayPal.com ".into() }.parse().unwrap();
        assert_eq!(m, PayoutMethod::Paypal { email: "ann@paypal.com".into() });
        assert!(PayoutMethod::Bank { reference: "  ".into() }.parse().is_err());
        let cols = PayoutMethod::to_columns(Some(&m));
        assert_eq!(PayoutMethod::from_columns(cols.0.as_deref(), cols.1.as_deref(), cols.2.as_deref()), Some(m));
    }
}
