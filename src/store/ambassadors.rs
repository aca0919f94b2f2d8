//! Ambassadors: enrolment (by staff, or by public application), edits, lifecycle, search.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, referral_codes};
use crate::db::{lower, now, write_tx, DbConnection};
use crate::domain::ambassador::{self, AmbassadorStatus, LifecycleEvent, NotificationPreferences, PayoutMethod};
use crate::domain::audit::AuditAction;
use crate::domain::code::ReferralCode;
use crate::domain::contact::{Email, Phone};
use crate::email::{notices, MailContext};
use crate::error::{is_unique_violation, ApiError};
use crate::store::audit::{self, Actor, Change};
use crate::store::codes::{self, CodeRow, CodeView};
use crate::store::{like_pattern, new_id, Page, PageRequest};

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
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
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

/// An ambassador as staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AmbassadorView {
    pub id: String,
    pub status: AmbassadorStatus,
    /// `staff` (enrolled by staff) or `application` (applied through the public form).
    pub source: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    /// Name shown to referred friends, only when `show_name_to_referrals` is true.
    pub display_name: Option<String>,
    pub show_name_to_referrals: bool,
    pub payout_method: Option<PayoutMethod>,
    pub notification_preferences: NotificationPreferences,
    /// Staff-only notes.
    pub notes: Option<String>,
    pub application_message: Option<String>,
    /// Reason given for the last status change, if any.
    pub status_reason: Option<String>,
    pub codes: Vec<CodeView>,
    /// Referrals by status.
    pub referral_counts: std::collections::BTreeMap<String, i64>,
    /// Money by status (on the detail; omitted in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<crate::domain::reward::Balance>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub updated_at: chrono::NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub status_changed_at: chrono::NaiveDateTime,
}

impl AmbassadorView {
    pub fn new(row: AmbassadorRow, codes: Vec<CodeRow>, counts: Vec<(String, i64)>, public_url: &str) -> Self {
        Self {
            referral_counts: crate::domain::referral::full_counts(counts),
            balance: None,
            status: row.status(),
            payout_method: row.payout(),
            notification_preferences: NotificationPreferences {
                referral_updates: row.notify_referral_updates,
                reward_updates: row.notify_reward_updates,
            },
            codes: codes.into_iter().map(|c| CodeView::new(c, public_url)).collect(),
            id: row.id,
            source: row.source,
            name: row.name,
            email: row.email,
            phone: row.phone,
            display_name: row.display_name,
            show_name_to_referrals: row.show_name_to_referrals,
            notes: row.notes,
            application_message: row.application_message,
            status_reason: row.status_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
            status_changed_at: row.status_changed_at,
        }
    }
}

impl AmbassadorView {
    pub fn with_balance(mut self, balance: crate::domain::reward::Balance) -> Self {
        self.balance = Some(balance);
        self
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
    fn changed_fields(&self) -> Vec<&'static str> {
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

fn email_taken() -> ApiError {
    ApiError::Conflict {
        kind: "email-taken",
        detail: "An ambassador with this e-mail address already exists.".into(),
        field: Some("email"),
    }
}

fn email_exists(conn: &mut DbConnection, email: &str, except_id: Option<&str>) -> QueryResult<bool> {
    let same_email =
        ambassadors::table.filter(ambassadors::email.eq(email)).filter(ambassadors::id.ne(except_id.unwrap_or("")));
    diesel::select(diesel::dsl::exists(same_email)).get_result(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<AmbassadorRow, ApiError> {
    ambassadors::table
        .find(id)
        .select(AmbassadorRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("ambassador"))
}

/// An ambassador with their codes and referral counts by status: everything the staff view shows.
pub type Full = (AmbassadorRow, Vec<CodeRow>, Vec<(String, i64)>);

pub fn find_full(conn: &mut DbConnection, id: &str) -> Result<Full, ApiError> {
    let (row, codes) = find_with_codes(conn, id)?;
    let counts = crate::store::referrals::counts_by_ambassador(conn, &[id])?.remove(id).unwrap_or_default();
    Ok((row, codes, counts))
}

pub fn find_with_codes(conn: &mut DbConnection, id: &str) -> Result<(AmbassadorRow, Vec<CodeRow>), ApiError> {
    let row = find(conn, id)?;
    let codes = codes::list_for(conn, id)?;
    Ok((row, codes))
}

/// Enrols an ambassador (and, when active, issues their first code) in one transaction, with
/// its e-mail: the welcome (staff enrolment) or the staff alert (application).
/// A taken e-mail is a 409 `email-taken`, also when two requests race.
pub fn enrol(
    conn: &mut DbConnection,
    new: &NewAmbassador,
    how: Enrolment,
    mail: &MailContext,
    actor: &Actor,
) -> Result<(AmbassadorRow, Vec<CodeRow>), ApiError> {
    let (status, source, action) = match how {
        Enrolment::ByStaff => (AmbassadorStatus::Active, how, AuditAction::AmbassadorEnrolled),
        Enrolment::Application => (AmbassadorStatus::Applied, how, AuditAction::AmbassadorApplied),
    };
    write_tx(conn, |conn| {
        if email_exists(conn, new.email.as_str(), None)? {
            return Err(email_taken());
        }
        let id = new_id();
        let at = now();
        let (method, paypal, bank) = PayoutMethod::to_columns(new.payout_method.as_ref());
        diesel::insert_into(ambassadors::table)
            .values((
                ambassadors::id.eq(&id),
                ambassadors::status.eq(status),
                ambassadors::source.eq(source),
                ambassadors::name.eq(&new.name),
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
            .map_err(|e| if is_unique_violation(&e) { email_taken() } else { e.into() })?;
        audit::record(
            conn,
            actor,
            Change {
                action,
                entity_type: "ambassador",
                entity_id: &id,
                before: None,
                after: Some(status.as_str()),
                details: None,
            },
        )?;
        let first_code = match status {
            AmbassadorStatus::Active => Some(codes::insert(conn, &id, new.vanity_code.as_ref(), actor)?),
            _ => None,
        };
        let (row, codes) = find_with_codes(conn, &id)?;
        match &first_code {
            Some(code) => notices::ambassador_welcome(conn, mail, &row, code)?,
            None => notices::staff_application(conn, mail, &row)?,
        };
        Ok((row, codes))
    })
}

pub fn update(
    conn: &mut DbConnection,
    id: &str,
    changes: &AmbassadorChanges,
    actor: &Actor,
) -> Result<AmbassadorRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let display_name = changes.display_name.as_ref().unwrap_or(&before.display_name);
        if changes.show_name_to_referrals.unwrap_or(before.show_name_to_referrals) && display_name.is_none() {
            return Err(ApiError::validation("display_name", "is required when show_name_to_referrals is true"));
        }
        if let Some(email) = &changes.email {
            if email_exists(conn, email.as_str(), Some(id))? {
                return Err(email_taken());
            }
        }
        let (payout_method, payout_paypal_email, payout_bank_reference) = match &changes.payout_method {
            None => (None, None, None),
            Some(m) => {
                let (a, b, c) = PayoutMethod::to_columns(m.as_ref());
                (Some(a), Some(b), Some(c))
            }
        };
        let set = Changeset {
            name: changes.name.clone(),
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
            updated_at: now(),
        };
        diesel::update(ambassadors::table.find(id)).set(&set).execute(conn).map_err(|e| {
            if is_unique_violation(&e) {
                email_taken()
            } else {
                e.into()
            }
        })?;
        // Field names only: the audit trail must not become a second copy of personal data.
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::AmbassadorUpdated,
                entity_type: "ambassador",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: Some(serde_json::json!({ "fields": changes.changed_fields() })),
            },
        )?;
        if changes.email.as_ref().is_some_and(|e| e.as_str() != before.email) {
            crate::store::portal::end_all_sessions(conn, id)?;
        }
        find(conn, id)
    })
}

/// Applies a lifecycle event. Approval issues the first code if the ambassador has none, and
/// queues the welcome e-mail.
pub fn transition(
    conn: &mut DbConnection,
    id: &str,
    event: LifecycleEvent,
    reason: Option<&str>,
    mail: &MailContext,
    actor: &Actor,
) -> Result<AmbassadorRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = ambassador::transition(before.status(), event)?;
        let at = now();
        let changed = diesel::update(ambassadors::table.find(id).filter(ambassadors::status.eq(&before.status)))
            .set((
                ambassadors::status.eq(to.as_str()),
                ambassadors::status_reason.eq(reason),
                ambassadors::status_changed_at.eq(at),
                ambassadors::updated_at.eq(at),
            ))
            .execute(conn)?;
        crate::store::ensure_unchanged(changed)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::of_lifecycle(event),
                entity_type: "ambassador",
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: reason.map(|r| serde_json::json!({ "reason": r })),
            },
        )?;
        if to == AmbassadorStatus::Suspended {
            crate::store::payouts::release_for_suspended(conn, id, actor)?;
        }
        if event == LifecycleEvent::Approve {
            let active_code = codes::list_for(conn, id)?.into_iter().find(|c| c.active);
            let code = match active_code {
                Some(code) => code,
                None => codes::insert(conn, id, None, actor)?,
            };
            let row = find(conn, id)?;
            notices::ambassador_welcome(conn, mail, &row, &code)?;
            return Ok(row);
        }
        find(conn, id)
    })
}

#[derive(Debug, Clone, Default)]
pub struct AmbassadorFilter {
    pub status: Option<AmbassadorStatus>,
    /// Matches name, display name, e-mail or phone, case-insensitively.
    pub q: Option<String>,
}

pub fn list(conn: &mut DbConnection, filter: &AmbassadorFilter, page: &PageRequest) -> Result<Page<Full>, ApiError> {
    let mut query = ambassadors::table.select(AmbassadorRow::as_select()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(ambassadors::status.eq(status.as_str()));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        // Phones are stored as `+` and digits: match the digits typed, however they were spaced.
        let phone_pattern = if digits.len() >= 4 { format!("%{digits}%") } else { pattern.clone() };
        query = query.filter(
            lower(ambassadors::name)
                .like(pattern.clone())
                .escape('\\')
                .or(ambassadors::email.like(pattern.clone()).escape('\\'))
                .or(lower(ambassadors::display_name.assume_not_null()).like(pattern).escape('\\'))
                .or(ambassadors::phone.assume_not_null().like(phone_pattern)),
        );
    }
    if let Some(after) = &page.after_id {
        query = query.filter(ambassadors::id.lt(after.clone()));
    }
    let rows = query.order(ambassadors::id.desc()).limit(page.limit + 1).load(conn)?;
    let page = page.finish(rows, |r| &r.id);
    // Codes and counts for the page in one query each, rather than per ambassador.
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut counts = crate::store::referrals::counts_by_ambassador(conn, &ids)?;
    let mut codes_by_owner: std::collections::HashMap<String, Vec<CodeRow>> = Default::default();
    let all_codes: Vec<CodeRow> = referral_codes::table
        .filter(referral_codes::ambassador_id.eq_any(&ids))
        .select(CodeRow::as_select())
        .order(referral_codes::id.desc())
        .load(conn)?;
    for code in all_codes {
        codes_by_owner.entry(code.ambassador_id.clone()).or_default().push(code);
    }
    Ok(page.map(|row| {
        let codes = codes_by_owner.remove(&row.id).unwrap_or_default();
        let counts = counts.remove(&row.id).unwrap_or_default();
        (row, codes, counts)
    }))
}
