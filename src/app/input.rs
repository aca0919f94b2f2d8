//! Parsing people and clients from what a request or a form carries (shared by the JSON
//! routes and the pages): every bad field is reported at once.

use chrono::NaiveDate;

use crate::config::Settings;
use crate::domain::ambassador::{LifecycleEvent, NotificationPreferences, PayoutMethod};
use crate::domain::code::ReferralCode;
use crate::domain::contact::Email;
use crate::domain::contact::Phone;
use crate::domain::optional_text;
use crate::domain::required_text;
use crate::domain::{DomainError, Validation};
use crate::store::ambassadors::{AmbassadorChanges, NewAmbassador};
use crate::store::referrals::{ClientChanges, NewReferral};
use crate::store::{decode_cursor, PageRequest};

pub const NAME_MAX: usize = 200;
pub const NOTES_MAX: usize = 4000;

/// The person fields shared by staff enrolment and public applications; `None` where the
/// field was invalid (its error is in the `Validation`).
pub struct PersonFields {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<Option<Phone>>,
    pub display_name: Option<Option<String>>,
}

pub fn parse_person(
    v: &mut Validation,
    settings: &Settings,
    name: &str,
    email: &str,
    phone: Option<&str>,
    display_name: Option<&str>,
) -> PersonFields {
    PersonFields {
        name: v.check("name", required_text(name, NAME_MAX)),
        email: v.check("email", Email::parse(email)),
        phone: v.check("phone", Phone::parse_optional(phone, settings.default_country_code())),
        display_name: v.check("display_name", optional_text(display_name, 100)),
    }
}

pub fn parse_payout(v: &mut Validation, method: Option<PayoutMethod>) -> Option<Option<PayoutMethod>> {
    match method.map(PayoutMethod::parse) {
        None => Some(None),
        Some(Ok(m)) => Some(Some(m)),
        Some(Err((field, message))) => {
            v.push(&field, message);
            None
        }
    }
}

/// What staff type to enrol an ambassador (`POST /v1/ambassadors`, the console's form).
#[derive(Debug, Default)]
pub struct EnrolmentInput<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub phone: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub show_name_to_referrals: bool,
    pub payout_method: Option<PayoutMethod>,
    pub notification_preferences: Option<NotificationPreferences>,
    pub notes: Option<&'a str>,
    /// A vanity code to issue instead of a generated one.
    pub code: Option<&'a str>,
}

/// Staff enrolment's rules, every bad field at once.
pub fn parse_enrolment(settings: &Settings, input: EnrolmentInput<'_>) -> Result<NewAmbassador, DomainError> {
    let mut v = Validation::new();
    let PersonFields { name, email, phone, display_name } =
        parse_person(&mut v, settings, input.name, input.email, input.phone, input.display_name);
    let payout_method = parse_payout(&mut v, input.payout_method);
    let notes = v.check("notes", optional_text(input.notes, NOTES_MAX));
    let vanity_code = v.check("code", input.code.map(ReferralCode::parse_vanity).transpose());
    if input.show_name_to_referrals && matches!(display_name, Some(None)) {
        v.push("display_name", "is required when show_name_to_referrals is true");
    }
    v.finish()?;
    Ok(NewAmbassador {
        name: name.unwrap_or_default(),
        email: email.expect("validated"),
        phone: phone.flatten(),
        display_name: display_name.flatten(),
        show_name_to_referrals: input.show_name_to_referrals,
        payout_method: payout_method.flatten(),
        notifications: input.notification_preferences.unwrap_or_default(),
        notes: notes.flatten(),
        application_message: None,
        vanity_code: vanity_code.flatten(),
    })
}

/// The reason given for a lifecycle step: at most 1000 characters, required to suspend or close.
pub fn lifecycle_reason(event: LifecycleEvent, reason: Option<&str>) -> Result<Option<String>, DomainError> {
    let mut v = Validation::new();
    let reason = v.check("reason", optional_text(reason, 1000)).flatten();
    if event.requires_reason() && reason.is_none() {
        v.push("reason", format!("is required to {}", event.as_str()));
    }
    v.finish()?;
    Ok(reason)
}

/// A list's search text: trimmed (blank means no search), at most 200 characters.
pub fn search_text(q: Option<&str>) -> Result<Option<String>, DomainError> {
    let mut v = Validation::new();
    let q = v.check("q", optional_text(q, 200)).flatten();
    v.finish()?;
    Ok(q)
}

/// Parses the client fields staff entry and the public form share; the other fields start
/// empty. Check `v` before using the result.
pub fn parse_client(
    v: &mut Validation,
    settings: &Settings,
    code: &str,
    first_name: &str,
    last_name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> NewReferral {
    let code = v.check("code", required_text(code, 64)).unwrap_or_default();
    let first_name = v.check("first_name", required_text(first_name, 100)).unwrap_or_default();
    let last_name = v.check("last_name", optional_text(last_name, 100)).flatten();
    let email = v.check("email", Email::parse_optional(email));
    let phone = v.check("phone", Phone::parse_optional(phone, settings.default_country_code()));
    if matches!((&email, &phone), (Some(None), Some(None))) {
        v.push("email", "an e-mail address or a phone number is required");
    }
    NewReferral {
        code,
        first_name,
        last_name,
        email: email.flatten(),
        phone: phone.flatten(),
        external_ref: None,
        planned_sessions: None,
        share_name_with_ambassador: false,
        notes: None,
        registered_on: None,
    }
}

/// A new referral's fields as typed (the API's body or the console's form).
pub struct ReferralInput<'a> {
    pub code: &'a str,
    pub first_name: &'a str,
    pub last_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub planned_sessions: Option<i32>,
    pub share_name_with_ambassador: bool,
    pub notes: Option<&'a str>,
    pub registered_on: Option<NaiveDate>,
}

/// Parses a referral staff record (`POST /v1/referrals`, the console's form). Check `v`
/// before using the result.
pub fn parse_new_referral(v: &mut Validation, settings: &Settings, f: &ReferralInput<'_>) -> NewReferral {
    let client = parse_client(v, settings, f.code, f.first_name, f.last_name, f.email, f.phone);
    let external_ref = v.check("external_ref", optional_text(f.external_ref, 100));
    check_planned_sessions(v, f.planned_sessions);
    let notes = v.check("notes", optional_text(f.notes, NOTES_MAX));
    NewReferral {
        external_ref: external_ref.flatten(),
        planned_sessions: f.planned_sessions,
        share_name_with_ambassador: f.share_name_with_ambassador,
        notes: notes.flatten(),
        registered_on: f.registered_on,
        ..client
    }
}

/// An edit of an ambassador's profile as typed: `None` leaves a field alone, `Some(None)`
/// clears an optional one.
#[derive(Default)]
pub struct AmbassadorEdit<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<Option<&'a str>>,
    pub display_name: Option<Option<&'a str>>,
    pub show_name_to_referrals: Option<bool>,
    pub payout_method: Option<Option<PayoutMethod>>,
    pub notification_preferences: Option<NotificationPreferences>,
    pub notes: Option<Option<&'a str>>,
}

/// Parses an edit of an ambassador's profile (`PATCH /v1/ambassadors/{id}`, the console's
/// form). Check `v` before using the result.
pub fn parse_ambassador_edit(v: &mut Validation, settings: &Settings, e: AmbassadorEdit<'_>) -> AmbassadorChanges {
    let name = e.name.map(|n| v.check("name", required_text(n, NAME_MAX)));
    let email = e.email.map(|m| v.check("email", Email::parse(m)));
    let phone = e.phone.map(|p| v.check("phone", Phone::parse_optional(p, settings.default_country_code())));
    let display_name = e.display_name.map(|d| v.check("display_name", optional_text(d, 100)));
    let payout_method = e.payout_method.map(|m| parse_payout(v, m));
    let notes = e.notes.map(|n| v.check("notes", optional_text(n, NOTES_MAX)));
    AmbassadorChanges {
        name: name.flatten(),
        email: email.flatten(),
        phone: phone.flatten(),
        display_name: display_name.flatten(),
        show_name_to_referrals: e.show_name_to_referrals,
        payout_method: payout_method.flatten(),
        notifications: e.notification_preferences,
        notes: notes.flatten(),
    }
}

fn check_planned_sessions(v: &mut Validation, planned: Option<i32>) {
    if planned.is_some_and(|n| !(1..=100).contains(&n)) {
        v.push("planned_sessions", "must be between 1 and 100");
    }
}

/// An edit of a referral's client data as typed: `None` leaves a field alone, `Some(None)`
/// clears an optional one.
#[derive(Default)]
pub struct ClientEdit<'a> {
    pub first_name: Option<&'a str>,
    pub last_name: Option<Option<&'a str>>,
    pub email: Option<Option<&'a str>>,
    pub phone: Option<Option<&'a str>>,
    pub external_ref: Option<Option<&'a str>>,
    pub planned_sessions: Option<Option<i32>>,
    pub share_name_with_ambassador: Option<bool>,
    pub notes: Option<Option<&'a str>>,
}

/// Parses an edit of client data (`PATCH /v1/referrals/{id}`, the console's form). Check `v`
/// before using the result.
pub fn parse_client_edit(v: &mut Validation, settings: &Settings, e: &ClientEdit<'_>) -> ClientChanges {
    let first_name = e.first_name.map(|n| v.check("first_name", required_text(n, 100)));
    let last_name = e.last_name.map(|n| v.check("last_name", optional_text(n, 100)));
    let email = e.email.map(|m| v.check("email", Email::parse_optional(m)));
    let phone = e.phone.map(|p| v.check("phone", Phone::parse_optional(p, settings.default_country_code())));
    let external_ref = e.external_ref.map(|r| v.check("external_ref", optional_text(r, 100)));
    check_planned_sessions(v, e.planned_sessions.flatten());
    let notes = e.notes.map(|n| v.check("notes", optional_text(n, NOTES_MAX)));
    ClientChanges {
        first_name: first_name.flatten(),
        last_name: last_name.flatten(),
        email: email.flatten(),
        phone: phone.flatten(),
        external_ref: external_ref.flatten(),
        planned_sessions: e.planned_sessions,
        share_name_with_ambassador: e.share_name_with_ambassador,
        notes: notes.flatten(),
    }
}

impl PageRequest {
    /// A list request's `limit` (1–200, default 50) and `cursor` (from the previous page's
    /// `next_cursor`; empty means the first page).
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> super::error::Result<Self> {
        let limit = limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(super::Error::validation("limit", "must be between 1 and 200"));
        }
        let after_id = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                decode_cursor(c).ok_or_else(|| super::Error::validation("cursor", "is not a cursor from this API"))?,
            ),
        };
        Ok(Self { limit, after_id })
    }
}

/// A required single line of text (a payment reference, a reason) of at most `max` characters.
pub fn one_line_text(v: &mut Validation, field: &str, value: &str, max: usize) -> Option<String> {
    v.check(
        field,
        required_text(value, max).and_then(
            |t| {
                if t.contains('\n') {
                    Err("must be a single line".into())
                } else {
                    Ok(t)
                }
            },
        ),
    )
}

/// The largest manual ledger entry either way, in minor units.
pub const ADJUSTMENT_MAX_MINOR: u64 = 100_000_000_000;

/// A manual ledger entry's amount in minor units, reported under `field` (`Err`: why what was
/// typed is not an amount), and its reason; returns both.
pub fn parse_adjustment(
    field: &str,
    amount_minor: Result<i64, String>,
    reason: &str,
) -> Result<(i64, String), crate::domain::DomainError> {
    let mut v = Validation::new();
    let amount = match amount_minor {
        Ok(0) => Err("must not be zero".to_owned()),
        Ok(a) if a.unsigned_abs() > ADJUSTMENT_MAX_MINOR => {
            Err(format!("must be at most {ADJUSTMENT_MAX_MINOR} minor units either way"))
        }
        other => other,
    };
    let amount = v.check(field, amount);
    let reason = v.check("reason", required_text(reason, 500));
    v.finish()?;
    Ok((amount.unwrap_or_default(), reason.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests_are_bounded_and_take_only_our_cursors() {
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(201), None).is_err());
        assert!(PageRequest::parse(None, Some("abc")).is_err());
        let first = PageRequest::parse(None, Some("")).unwrap();
        assert_eq!((first.limit, first.after_id), (50, None));
    }
}
