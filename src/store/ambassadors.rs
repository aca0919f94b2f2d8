//! Ambassadors: the rows and views, and the queries behind `crate::app::ambassadors`
//! (enrolment, edits, lifecycle, search).

use diesel::prelude::*;

use crate::db::schema::{ambassadors, referral_codes};
use crate::db::{lower, DbConnection};
use crate::domain::ambassador::{AmbassadorStatus, NotificationPreferences, PayoutMethod};
use crate::domain::code::ReferralCode;
use crate::domain::contact::{Email, Phone};
use crate::domain::search;
use crate::store::{like_pattern, Page, PageRequest, StoreError, WriteError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ambassadors)]
pub struct AmbassadorRow {
    pub id: String,
    pub status: AmbassadorStatus,
    pub source: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub display_name: Option<String>,
    pub show_name_to_referrals: bool,
    pub payout_method: Option<String>,
    pub payout_paypal_email: Option<String>,
    pub payout_bank_reference: Option<String>,
    pub notify_referral_updates: bool,
    pub notify_reward_updates: bool,
    pub notes: Option<String>,
    pub application_message: Option<String>,
    pub status_reason: Option<String>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: chrono::NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: chrono::NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub status_changed_at: chrono::NaiveDateTime,
}

impl AmbassadorRow {
    pub fn status(&self) -> AmbassadorStatus {
        self.status
    }

    pub fn payout(&self) -> Option<PayoutMethod> {
        PayoutMethod::from_columns(
            self.payout_method.as_deref(),
            self.payout_paypal_email.as_deref(),
            self.payout_bank_reference.as_deref(),
        )
    }
}

/// A parsed enrolment or application.
#[derive(Debug, Clone)]
pub struct NewAmbassador {
    pub name: String,
    pub email: Email,
    pub phone: Option<Phone>,
    pub display_name: Option<String>,
    pub show_name_to_referrals: bool,
    pub payout_method: Option<PayoutMethod>,
    pub notifications: NotificationPreferences,
    pub notes: Option<String>,
    pub application_message: Option<String>,
    /// A vanity code to issue instead of a generated one (staff enrolment only).
    pub vanity_code: Option<ReferralCode>,
}

pub use crate::domain::ambassador::Enrolment;

/// A parsed PATCH: `None` leaves a field alone, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct AmbassadorChanges {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<Option<Phone>>,
    pub display_name: Option<Option<String>>,
    pub show_name_to_referrals: Option<bool>,
    pub payout_method: Option<Option<PayoutMethod>>,
    pub notifications: Option<NotificationPreferences>,
    pub notes: Option<Option<String>>,
}

impl AmbassadorChanges {
    /// The names of the fields this changes (what the audit trail keeps: never the values).
    pub fn changed_fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        let pairs: [(&'static str, bool); 8] = [
            ("name", self.name.is_some()),
            ("email", self.email.is_some()),
            ("phone", self.phone.is_some()),
            ("display_name", self.display_name.is_some()),
            ("show_name_to_referrals", self.show_name_to_referrals.is_some()),
            ("payout_method", self.payout_method.is_some()),
            ("notification_preferences", self.notifications.is_some()),
            ("notes", self.notes.is_some()),
        ];
        for (name, set) in pairs {
            if set {
                f.push(name);
            }
        }
        f
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = ambassadors)]
struct Changeset {
    name: Option<String>,
    name_key: Option<String>,
    email: Option<String>,
    phone: Option<Option<String>>,
    display_name: Option<Option<String>>,
    show_name_to_referrals: Option<bool>,
    payout_method: Option<Option<String>>,
    payout_paypal_email: Option<Option<String>>,
    payout_bank_reference: Option<Option<String>>,
    notify_referral_updates: Option<bool>,
    notify_reward_updates: Option<bool>,
    notes: Option<Option<String>>,
    updated_at: chrono::NaiveDateTime,
}

/// Whether another ambassador (not `except_id`) has this e-mail address.
pub fn email_exists(conn: &mut DbConnection, email: &str, except_id: Option<&str>) -> QueryResult<bool> {
    let same_email =
        ambassadors::table.filter(ambassadors::email.eq(email)).filter(ambassadors::id.ne(except_id.unwrap_or("")));
    diesel::select(diesel::dsl::exists(same_email)).get_result(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<AmbassadorRow> {
    ambassadors::table.find(id).select(AmbassadorRow::as_select()).first(conn)
}

/// Writes a new ambassador; `LostRace` when the e-mail address was taken at the same moment.
pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    new: &NewAmbassador,
    (status, source): (AmbassadorStatus, Enrolment),
    at: chrono::NaiveDateTime,
) -> Result<(), WriteError> {
    let (method, paypal, bank) = PayoutMethod::to_columns(new.payout_method.as_ref());
    diesel::insert_into(ambassadors::table)
        .values((
            ambassadors::id.eq(id),
            ambassadors::status.eq(status),
            ambassadors::source.eq(source),
            ambassadors::name.eq(&new.name),
            ambassadors::name_key.eq(search::text_key(&new.name)),
            ambassadors::email.eq(new.email.as_str()),
            ambassadors::phone.eq(new.phone.as_ref().map(Phone::as_str)),
            ambassadors::display_name.eq(new.display_name.as_deref()),
            ambassadors::show_name_to_referrals.eq(new.show_name_to_referrals),
            ambassadors::payout_method.eq(method),
            ambassadors::payout_paypal_email.eq(paypal),
            ambassadors::payout_bank_reference.eq(bank),
            ambassadors::notify_referral_updates.eq(new.notifications.referral_updates),
            ambassadors::notify_reward_updates.eq(new.notifications.reward_updates),
            ambassadors::notes.eq(new.notes.as_deref()),
            ambassadors::application_message.eq(new.application_message.as_deref()),
            ambassadors::created_at.eq(at),
            ambassadors::updated_at.eq(at),
            ambassadors::status_changed_at.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    Ok(())
}

/// Writes the changed fields; `LostRace` when a new e-mail address was taken at the same moment.
pub fn apply_changes(
    conn: &mut DbConnection,
    id: &str,
    changes: &AmbassadorChanges,
    at: chrono::NaiveDateTime,
) -> Result<(), WriteError> {
    let (payout_method, payout_paypal_email, payout_bank_reference) = match &changes.payout_method {
        None => (None, None, None),
        Some(m) => {
            let (a, b, c) = PayoutMethod::to_columns(m.as_ref());
            (Some(a), Some(b), Some(c))
        }
    };
    let set = Changeset {
        name: changes.name.clone(),
        name_key: changes.name.as_deref().map(search::text_key),
        email: changes.email.as_ref().map(|e| e.as_str().to_owned()),
        phone: changes.phone.as_ref().map(|p| p.as_ref().map(|p| p.as_str().to_owned())),
        display_name: changes.display_name.clone(),
        show_name_to_referrals: changes.show_name_to_referrals,
        payout_method,
        payout_paypal_email,
        payout_bank_reference,
        notify_referral_updates: changes.notifications.map(|n| n.referral_updates),
        notify_reward_updates: changes.notifications.map(|n| n.reward_updates),
        notes: changes.notes.clone(),
        updated_at: at,
    };
    diesel::update(ambassadors::table.find(id)).set(&set).execute(conn).map_err(StoreError::unique_race)?;
    Ok(())
}

/// `from` → `to`, with the reason, if still `from`; returns the rows changed.
pub fn set_status(
    conn: &mut DbConnection,
    id: &str,
    (from, to): (AmbassadorStatus, AmbassadorStatus),
    reason: Option<&str>,
    at: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(ambassadors::table.find(id).filter(ambassadors::status.eq(&from)))
        .set((
            ambassadors::status.eq(to.as_str()),
            ambassadors::status_reason.eq(reason),
            ambassadors::status_changed_at.eq(at),
            ambassadors::updated_at.eq(at),
        ))
        .execute(conn)
}

#[derive(Debug, Clone, Default)]
pub struct AmbassadorFilter {
    pub status: Option<AmbassadorStatus>,
    /// Matches name, display name, e-mail or phone, case-insensitively, or one of the
    /// ambassador's codes exactly (any case, with or without hyphens).
    pub q: Option<String>,
}

/// A page of ambassadors matching the filter, newest first.
pub fn list(
    conn: &mut DbConnection,
    filter: &AmbassadorFilter,
    page: &PageRequest,
) -> QueryResult<Page<AmbassadorRow>> {
    let mut query = ambassadors::table.select(AmbassadorRow::as_select()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(ambassadors::status.eq(status.as_str()));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        // Phones are stored as `+` and digits: match the digits typed, however they were spaced.
        let phone_pattern = if digits.len() >= 4 { format!("%{digits}%") } else { pattern.clone() };
        // A code, typed as staff see it on a card, matches exactly (through the codes' unique index).
        let by_code = referral_codes::table
            .filter(referral_codes::normalized.eq_any(crate::domain::code::lookup_candidates(q)))
            .select(referral_codes::ambassador_id);
        query = query.filter(
            lower(ambassadors::name)
                .like(pattern.clone())
                .escape('\\')
                .or(ambassadors::email.like(pattern.clone()).escape('\\'))
                .or(lower(ambassadors::display_name.assume_not_null()).like(pattern).escape('\\'))
                .or(ambassadors::phone.assume_not_null().like(phone_pattern))
                .or(ambassadors::id.eq_any(by_code)),
        );
    }
    if let Some(after) = &page.after_id {
        query = query.filter(ambassadors::id.lt(after.clone()));
    }
    let rows = query.order(ambassadors::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// The ambassador with this (normalised) e-mail address, if any.
pub fn find_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<AmbassadorRow>> {
    ambassadors::table.filter(ambassadors::email.eq(email)).select(AmbassadorRow::as_select()).first(conn).optional()
}
