//! Referral lifecycle (`registered → in_treatment → completed → refunded`, with `cancelled` and
//! `rejected` exits), reason codes, attribution, and how a client is named to an ambassador.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::DomainError;

super::text_enum! {
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ReferralStatus {
        Registered = "registered",
        InTreatment = "in_treatment",
        Completed = "completed",
        Refunded = "refunded",
        Cancelled = "cancelled",
        Rejected = "rejected",
    }
}

/// Counts per status, every status present (zero when none), in a stable order.
pub fn full_counts(counts: impl IntoIterator<Item = (String, i64)>) -> std::collections::BTreeMap<String, i64> {
    let mut all: std::collections::BTreeMap<String, i64> =
        ReferralStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
    all.extend(counts);
    all
}

super::text_enum! {
    /// How a referral reached the clinic.
    pub enum ReferralSource {
        /// Recorded by staff.
        Staff = "staff",
        /// Left by the friend on the share-link form.
        PublicForm = "public_form",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralEvent {
    RecordSession,
    Complete,
    Cancel,
    Reject,
    Refund,
}

impl ReferralEvent {
    pub const ALL: [Self; 5] = [Self::RecordSession, Self::Complete, Self::Cancel, Self::Reject, Self::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecordSession => "record a session for",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::Reject => "reject",
            Self::Refund => "refund",
        }
    }

    /// The reason codes this event accepts (empty: it takes none).
    pub fn reason_codes(self) -> &'static [&'static str] {
        match self {
            Self::Reject => &["duplicate", "self_referral", "fraud", "outside_window", "not_eligible", "other"],
            Self::Cancel => &["client_withdrew", "not_suitable", "no_show", "other"],
            Self::Refund => &["client_dissatisfied", "medical", "goodwill", "other"],
            Self::RecordSession | Self::Complete => &[],
        }
    }
}

/// A cancellation's, rejection's or refund's reason: a code `event` accepts, and the note
/// (trimmed, at most 2000 characters; required with `other`). The API and the console both
/// read their input with it.
pub fn close_out_reason(
    event: ReferralEvent,
    reason_code: &str,
    note: Option<&str>,
) -> Result<Option<String>, DomainError> {
    let mut v = super::Validation::new();
    let allowed = event.reason_codes();
    if !allowed.contains(&reason_code) {
        v.push("reason_code", format!("must be one of: {}", allowed.join(", ")));
    }
    let note = v.check("note", super::optional_text(note, 2000)).flatten();
    if reason_code == "other" && note.is_none() {
        v.push("note", "is required when reason_code is other");
    }
    v.finish()?;
    Ok(note)
}

/// The one place the referral state machine lives. Sessions may still be recorded after
/// completion (touch-ups) without changing the status; `completed` can only be refunded;
/// cancelled, rejected and refunded are final.
pub fn transition(from: ReferralStatus, event: ReferralEvent) -> Result<ReferralStatus, DomainError> {
    use ReferralEvent::*;
    use ReferralStatus::*;
    let to = match (from, event) {
        (Registered | InTreatment, RecordSession) => InTreatment,
        (Completed, RecordSession) => Completed,
        (InTreatment, Complete) => Completed,
        (Registered | InTreatment, Cancel) => Cancelled,
        (Registered | InTreatment, Reject) => Rejected,
        (Completed, Refund) => Refunded,
        _ => {
            return Err(DomainError::InvalidTransition {
                entity: "referral",
                current: from.as_str().to_owned(),
                event: event.as_str().to_owned(),
            })
        }
    };
    Ok(to)
}

/// Whether a completion earns: it must fall within `attribution_days` of registration.
pub fn attribution(
    registered_on: NaiveDate,
    completed_on: NaiveDate,
    attribution_days: i64,
) -> Result<(), &'static str> {
    if (completed_on - registered_on).num_days() > attribution_days {
        Err("outside_attribution_window")
    } else {
        Ok(())
    }
}

/// How an ambassador sees a referred client: "First L." only with the client's consent,
/// otherwise an opaque label from the code used (`Referral 7Q4K…`).
pub fn name_for_ambassador(first: Option<&str>, last: Option<&str>, consent: bool, code: &str) -> String {
    match (consent, first.map(str::trim).filter(|f| !f.is_empty())) {
        (true, Some(first)) => match last.and_then(|l| l.trim().chars().next()) {
            Some(initial) => format!("{first} {}.", initial.to_uppercase()),
            None => first.to_owned(),
        },
        _ => {
            let prefix: String = code.chars().filter(|c| *c != '-').take(4).collect();
            format!("Referral {prefix}…")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReferralEvent::*;
    use ReferralStatus::*;

    /// Every (state, event) pair, allowed and refused.
    #[test]
    fn transition_table() {
        let allowed = [
            (Registered, RecordSession, InTreatment),
            (InTreatment, RecordSession, InTreatment),
            (Completed, RecordSession, Completed),
            (InTreatment, Complete, Completed),
            (Registered, Cancel, Cancelled),
            (InTreatment, Cancel, Cancelled),
            (Registered, Reject, Rejected),
            (InTreatment, Reject, Rejected),
            (Completed, Refund, Refunded),
        ];
        crate::domain::assert_transition_table(&ReferralStatus::ALL, &ReferralEvent::ALL, &allowed, transition);
    }

    #[test]
    fn attribution_window_is_inclusive() {
        let reg = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert!(attribution(reg, NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(), 365).is_ok());
        assert_eq!(
            attribution(reg, NaiveDate::from_ymd_opt(2027, 1, 2).unwrap(), 365),
            Err("outside_attribution_window")
        );
    }

    #[test]
    fn clients_are_named_only_with_consent() {
        assert_eq!(name_for_ambassador(Some("Maria"), Some("garcia"), true, "7Q4K-9MZD"), "Maria G.");
        assert_eq!(name_for_ambassador(Some("Maria"), None, true, "7Q4K-9MZD"), "Maria");
        assert_eq!(name_for_ambassador(Some("Maria"), Some("Garcia"), false, "7Q4K-9MZD"), "Referral 7Q4K…");
        assert_eq!(name_for_ambassador(None, None, true, "JAMES10"), "Referral JAME…");
    }
}
