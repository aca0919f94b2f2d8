//! Ambassadors: enrolment (by staff, or by public application), edits, lifecycle, search and
//! the staff detail.

use serde::Serialize;

use super::audit::{self, Actor, Change, EntityType};
use super::error::{Found, Result};
use super::notices;
use super::{codes, payouts, Error};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::{
    self, AmbassadorStatus, Enrolment, LifecycleEvent, NotificationPreferences, PayoutMethod,
};
use crate::domain::audit::AuditAction;
use crate::domain::reward::Balance;
use crate::email::MailContext;
use crate::store::ambassadors::{self as store, AmbassadorChanges, AmbassadorFilter, AmbassadorRow, NewAmbassador};
use crate::store::codes::{CodeRow, CodeView};
use crate::store::{ensure_unchanged, new_id, Page, PageRequest, WriteError};

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
    pub balance: Option<Balance>,
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
    pub fn with_balance(mut self, balance: Balance) -> Self {
        self.balance = Some(balance);
        self
    }
}

/// An ambassador and their codes.
pub type Enrolled = (AmbassadorRow, Vec<CodeRow>);

/// An ambassador with their codes and referral counts by status: everything the staff view shows.
pub type Full = (AmbassadorRow, Vec<CodeRow>, Vec<(String, i64)>);

fn email_taken() -> Error {
    Error::Conflict {
        kind: "email-taken",
        detail: "An ambassador with this e-mail address already exists.".into(),
        field: Some("email"),
    }
}

/// A write refused because the address was taken at the same moment is the same answer as one
/// refused because it was taken before.
fn unless_email_taken(e: WriteError) -> Error {
    if e.lost_race() {
        email_taken()
    } else {
        e.into()
    }
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
) -> Result<Enrolled> {
    let (status, source, action) = match how {
        Enrolment::ByStaff => (AmbassadorStatus::Active, how, AuditAction::AmbassadorEnrolled),
        Enrolment::Application => (AmbassadorStatus::Applied, how, AuditAction::AmbassadorApplied),
    };
    write_tx(conn, |conn| {
        if store::email_exists(conn, new.email.as_str(), None)? {
            return Err(email_taken());
        }
        let id = new_id();
        store::insert(conn, &id, new, (status, source), now()).map_err(unless_email_taken)?;
        audit::record(
            conn,
            actor,
            Change {
                action,
                entity_type: EntityType::Ambassador,
                entity_id: &id,
                before: None,
                after: Some(status.as_str()),
                details: None,
            },
        )?;
        let first_code = match status {
            AmbassadorStatus::Active => Some(codes::issue(conn, &id, new.vanity_code.as_ref(), actor)?),
            _ => None,
        };
        let (row, codes) = (store::find(conn, &id)?, crate::store::codes::list_for(conn, &id)?);
        match &first_code {
            Some(code) => notices::ambassador_welcome(conn, mail, &row, code)?,
            None => notices::staff_application(conn, mail, &row)?,
        };
        Ok((row, codes))
    })
}

pub fn update(conn: &mut DbConnection, id: &str, changes: &AmbassadorChanges, actor: &Actor) -> Result<AmbassadorRow> {
    write_tx(conn, |conn| {
        let before = store::find(conn, id).or_not_found("ambassador")?;
        let display_name = changes.display_name.as_ref().unwrap_or(&before.display_name);
        if changes.show_name_to_referrals.unwrap_or(before.show_name_to_referrals) && display_name.is_none() {
            return Err(Error::validation("display_name", "is required when show_name_to_referrals is true"));
        }
        if let Some(email) = &changes.email {
            if store::email_exists(conn, email.as_str(), Some(id))? {
                return Err(email_taken());
            }
        }
        store::apply_changes(conn, id, changes, now()).map_err(unless_email_taken)?;
        // Field names only: the audit trail must not become a second copy of personal data.
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::AmbassadorUpdated,
                entity_type: EntityType::Ambassador,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(before.status.as_str()),
                details: Some(serde_json::json!({ "fields": changes.changed_fields() })),
            },
        )?;
        if changes.email.as_ref().is_some_and(|e| e.as_str() != before.email) {
            crate::store::portal::end_all_sessions(conn, id)?;
        }
        Ok(store::find(conn, id)?)
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
) -> Result<AmbassadorRow> {
    write_tx(conn, |conn| {
        let before = store::find(conn, id).or_not_found("ambassador")?;
        let to = ambassador::transition(before.status(), event)?;
        ensure_unchanged(store::set_status(conn, id, (before.status, to), reason, now())?)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::of_lifecycle(event),
                entity_type: EntityType::Ambassador,
                entity_id: id,
                before: Some(before.status.as_str()),
                after: Some(to.as_str()),
                details: reason.map(|r| serde_json::json!({ "reason": r })),
            },
        )?;
        if to == AmbassadorStatus::Suspended {
            payouts::release_for_suspended(conn, id, actor)?;
        }
        if event == LifecycleEvent::Approve {
            let active_code = crate::store::codes::list_for(conn, id)?.into_iter().find(|c| c.active);
            let code = match active_code {
                Some(code) => code,
                None => codes::issue(conn, id, None, actor)?,
            };
            let row = store::find(conn, id)?;
            notices::ambassador_welcome(conn, mail, &row, &code)?;
            return Ok(row);
        }
        Ok(store::find(conn, id)?)
    })
}

/// The ambassador's balance by status.
pub fn balance(conn: &mut DbConnection, id: &str) -> Result<Balance> {
    crate::app::rewards::balance(conn, id)
}

/// The staff detail: the ambassador, codes, referral counts and balance (one statement).
pub fn detail(conn: &mut DbConnection, id: &str) -> Result<(Full, Balance)> {
    use crate::store::reads::{ambassador_summary, View};
    let s = ambassador_summary(conn, id, View::Staff)?.ok_or(Error::NotFound("ambassador"))?;
    Ok(((s.row, s.codes, s.counts), s.balance))
}

/// Search, newest first, each with codes and referral counts (one query each for the page).
pub fn list(conn: &mut DbConnection, filter: &AmbassadorFilter, page: &PageRequest) -> Result<Page<Full>> {
    let page = store::list(conn, filter, page)?;
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut counts = counts_by_ambassador(conn, &ids)?;
    let mut codes = crate::store::codes::for_ambassadors(conn, &ids)?;
    Ok(page.map(|row| {
        let codes = codes.remove(&row.id).unwrap_or_default();
        let counts = counts.remove(&row.id).unwrap_or_default();
        (row, codes, counts)
    }))
}

fn counts_by_ambassador(
    conn: &mut DbConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<(String, i64)>>> {
    Ok(crate::store::tallies::counts_by_ambassador(conn, ids, crate::store::tallies::View::Staff)?)
}
