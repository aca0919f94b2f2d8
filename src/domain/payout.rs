//! Payout batches (`draft → processing → paid`, `draft | processing → cancelled`), their lines
//! (`pending → paid | failed`), and which ambassadors a new batch pays: the rules of DESIGN §2
//! "Payout batch", without I/O.
//!
//! **The file that finance uploads is the payment.** A draft may still change (a refund or a
//! suspension takes its line out); once locked for payment (`processing`) its lines and amounts
//! are fixed, except a line marked failed, and `mark-paid` settles exactly those lines.

use serde::{Deserialize, Serialize};

use super::ambassador::{AmbassadorStatus, PayoutMethod};
use super::DomainError;

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PayoutStatus {
        /// Being prepared: refunds and suspensions still take lines out.
        Draft = "draft",
        /// Locked for payment (the file is out): lines fixed except a line marked failed.
        Processing = "processing",
        Paid = "paid",
        Cancelled = "cancelled",
    }
}

impl PayoutStatus {
    /// Whether a refund or a suspension may still take a line out. After the lock the money
    /// is on its way: a refund ends in a clawback once paid, a suspension only holds future
    /// rewards.
    pub fn lines_may_change(self) -> bool {
        self == Self::Draft
    }

    /// Whether a PayPal upload file may be downloaded: a draft (which the download locks) or a
    /// locked batch (the same file again). Never a paid or cancelled one: uploading it would
    /// pay a second time, or pay what was called off.
    pub fn exportable_for_payment(self) -> bool {
        matches!(self, Self::Draft | Self::Processing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    /// Finance approves the batch for payment, or downloads the PayPal file.
    Lock,
    /// The locked lines were paid. Never from a draft: lock first.
    MarkPaid,
    Cancel,
}

impl PayoutEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::MarkPaid => "mark paid",
            Self::Cancel => "cancel",
        }
    }
}

/// A draft locks; only a locked batch is paid; a draft or a locked batch is cancelled. Paid and
/// cancelled batches are final. Cancelling a locked batch also needs a reason: see
/// [`cancel_needs_reason`].
///
/// A draft is never marked paid: it may still change (a refund or a suspension takes a line
/// out), so a team that paid from a report of it (the generic CSV, which locks nothing) would
/// record less than it sent. Locking first fixes what is paid before the money leaves.
pub fn transition(from: PayoutStatus, event: PayoutEvent) -> Result<PayoutStatus, DomainError> {
    use PayoutStatus::{Cancelled, Draft, Paid, Processing};
    match (from, event) {
        (Draft, PayoutEvent::Lock) => Ok(Processing),
        (Processing, PayoutEvent::MarkPaid) => Ok(Paid),
        (Draft | Processing, PayoutEvent::Cancel) => Ok(Cancelled),
        _ => Err(DomainError::InvalidTransition {
            entity: "payout",
            current: from.as_str().to_owned(),
            event: event.as_str().to_owned(),
        }),
    }
}

/// A locked batch may have been uploaded already: calling it off needs a reason on record
/// ("the file was never uploaded"). A draft was never sent anywhere.
pub fn cancel_needs_reason(from: PayoutStatus) -> bool {
    from == PayoutStatus::Processing
}

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum LineStatus {
        /// In a draft or locked batch, to be paid.
        Pending = "pending",
        Paid = "paid",
        /// The payment did not go through (bounced, unclaimed): its rewards are payable again.
        Failed = "failed",
        /// Refunds voided every reward in it before payment.
        Released = "released",
        /// The batch was cancelled.
        Cancelled = "cancelled",
    }
}

/// A line fails while its batch is a draft or locked (the provider refused it), or after
/// payment when the money came back.
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

/// One PayPal upload file of a batch: its PayPal lines by sequence number, at most `per_file`
/// per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaypalPart {
    /// 1-based.
    pub part: i64,
    pub parts: i64,
    /// Sequence numbers `(after_seq, until_seq]` make this part.
    pub after_seq: i32,
    pub until_seq: i32,
}

/// Part `part` of a batch whose PayPal lines are numbered `1..=last_seq`; `Err(parts)` when
/// there is no such part.
pub fn paypal_part(last_seq: i32, per_file: i64, part: i64) -> Result<PaypalPart, i64> {
    let last = i64::from(last_seq);
    let parts = (last + per_file - 1) / per_file;
    if !(1..=parts).contains(&part) {
        return Err(parts);
    }
    let (after, until) = ((part - 1) * per_file, (part * per_file).min(last));
    Ok(PaypalPart { part, parts, after_seq: after as i32, until_seq: until as i32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_batch_state_and_event() {
        use PayoutEvent::*;
        use PayoutStatus::*;
        let table = [
            (Draft, Lock, Some(Processing)),
            (Draft, MarkPaid, None),
            (Draft, Cancel, Some(Cancelled)),
            (Processing, Lock, None),
            (Processing, MarkPaid, Some(Paid)),
            (Processing, Cancel, Some(Cancelled)),
            (Paid, Lock, None),
            (Paid, MarkPaid, None),
            (Paid, Cancel, None),
            (Cancelled, Lock, None),
            (Cancelled, MarkPaid, None),
            (Cancelled, Cancel, None),
        ];
        assert_eq!(table.len(), PayoutStatus::ALL.len() * 3, "every pair");
        for (from, event, to) in table {
            assert_eq!(transition(from, event).ok(), to, "{from:?} {event:?}");
        }
        for from in PayoutStatus::ALL {
            assert_eq!(cancel_needs_reason(from), from == Processing, "{from:?}");
            assert_eq!(from.lines_may_change(), from == Draft, "{from:?}");
            assert_eq!(from.exportable_for_payment(), matches!(from, Draft | Processing), "{from:?}");
            assert_eq!(PayoutStatus::parse(from.as_str()), Some(from));
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

    #[test]
    fn paypal_parts_split_the_sequence_and_refuse_parts_that_do_not_exist() {
        assert_eq!(paypal_part(5, 5000, 1), Ok(PaypalPart { part: 1, parts: 1, after_seq: 0, until_seq: 5 }));
        assert_eq!(paypal_part(7, 3, 2), Ok(PaypalPart { part: 2, parts: 3, after_seq: 3, until_seq: 6 }));
        assert_eq!(paypal_part(7, 3, 3), Ok(PaypalPart { part: 3, parts: 3, after_seq: 6, until_seq: 7 }));
        assert_eq!(paypal_part(7, 3, 4), Err(3));
        assert_eq!(paypal_part(7, 3, 0), Err(3));
    }
}
