//! Referred clients: recording (code, self-referral and duplicate rules), treatment sessions,
//! completion, cancel/reject/refund, search. Each change is one transaction with its audit row.

use chrono::NaiveDate;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{referral_sessions, referrals};
use crate::db::{lower, now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::contact::{ContactHasher, Email, Phone};
use crate::domain::referral::{self, ReferralEvent, ReferralStatus, DEFAULT_ATTRIBUTION_DAYS};
use crate::error::{is_unique_violation, ApiError};
use crate::store::audit::{self, Actor, Change};
use crate::store::codes::{self, CodeRow};
use crate::store::{like_pattern, new_id, Page, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = referrals)]
pub struct ReferralRow {
    pub id: String,
    pub ambassador_id: String,
    pub code_id: String,
    pub status: String,
    pub source: String,
    pub client_first_name: Option<String>,
    pub client_last_name: Option<String>,
    pub client_email: Option<String>,
    pub client_phone: Option<String>,
    pub notes: Option<String>,
    pub email_key: Option<String>,
    pub phone_key: Option<String>,
    pub external_ref: Option<String>,
    pub share_name_with_ambassador: bool,
    pub planned_sessions: Option<i32>,
    pub session_count: i32,
    pub completed_on: Option<NaiveDate>,
    pub treatment_value_minor: Option<i64>,
    pub earns: Option<bool>,
    pub not_earning_reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_note: Option<String>,
    pub registered_at: chrono::NaiveDateTime,
    pub treatment_started_at: Option<chrono::NaiveDateTime>,
    pub completed_at: Option<chrono::NaiveDateTime>,
    pub refunded_at: Option<chrono::NaiveDateTime>,
    pub cancelled_at: Option<chrono::NaiveDateTime>,
    pub rejected_at: Option<chrono::NaiveDateTime>,
    pub erased_at: Option<chrono::NaiveDateTime>,
    pub updated_at: chrono::NaiveDateTime,
}

impl ReferralRow {
    pub fn status(&self) -> ReferralStatus {
        ReferralStatus::parse(&self.status).unwrap_or(ReferralStatus::Rejected)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = referral_sessions)]
pub struct SessionRow {
    pub id: String,
    #[serde(skip)]
    pub referral_id: String,
    /// The day of the session.
    pub session_on: NaiveDate,
    pub note: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
}

/// A parsed new referral.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub code: String,
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub external_ref: Option<String>,
    pub planned_sessions: Option<i32>,
    pub share_name_with_ambassador: bool,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Staff,
    PublicForm,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::PublicForm => "public_form",
        }
    }
}

fn invalid_code() -> ApiError {
    ApiError::Unprocessable {
        kind: "invalid-code",
        detail: "No active referral code matches.".into(),
        field: Some("code"),
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<ReferralRow, ApiError> {
    referrals::table
        .find(id)
        .select(ReferralRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("referral"))
}

/// The live (not cancelled or rejected) referral holding either contact key, if any.
fn live_holder(
    conn: &mut DbConnection,
    email_key: Option<&str>,
    phone_key: Option<&str>,
    except: Option<&str>,
) -> QueryResult<Option<String>> {
    let dead = [
        ReferralStatus::Cancelled.as_str(),
        ReferralStatus::Rejected.as_str(),
    ];
    let same_contact = referrals::email_key
        .eq(email_key.unwrap_or("\u{1}none"))
        .or(referrals::phone_key.eq(phone_key.unwrap_or("\u{1}none")));
    referrals::table
        .filter(same_contact)
        .filter(referrals::status.ne_all(dead))
        .filter(referrals::id.ne(except.unwrap_or("")))
        .select(referrals::id)
        .order(referrals::id.asc())
        .first(conn)
        .optional()
}

/// Records a referral. Refusals: unknown/inactive code (422 `invalid-code`), ambassador not
/// active (422 `ambassador-inactive`), the ambassador's own contact (422 `self-referral`),
/// a client with a live referral (409 `duplicate-referral`, also when two requests race: the
/// partial unique indexes decide).
pub fn create(
    conn: &mut DbConnection,
    new: &NewReferral,
    source: Source,
    hasher: &ContactHasher,
    actor: &Actor,
) -> Result<(ReferralRow, CodeRow), ApiError> {
    let email_key = new.email.as_ref().map(|e| hasher.email_key(e));
    let phone_key = new.phone.as_ref().map(|p| hasher.phone_key(p));
    write_tx(conn, |conn| {
        let code = codes::find_typed(conn, &new.code)?.filter(|c| c.active).ok_or_else(invalid_code)?;
        let amb = crate::store::ambassadors::find(conn, &code.ambassador_id)?;
        if amb.status() != AmbassadorStatus::Active {
            return Err(ApiError::Unprocessable {
                kind: "ambassador-inactive",
                detail: format!("The ambassador for this code is {}, so it takes no referrals.", amb.status),
                field: Some("code"),
            });
        }
        let same_email = new.email.as_ref().is_some_and(|e| e.as_str() == amb.email);
        let same_phone = new.phone.as_ref().is_some_and(|p| Some(p.as_str()) == amb.phone.as_deref());
        if same_email || same_phone {
            return Err(ApiError::Unprocessable {
                kind: "self-referral",
                detail: "Ambassadors cannot refer themselves.".into(),
                field: Some(if same_email { "email" } else { "phone" }),
            });
        }
        if let Some(existing) = live_holder(conn, email_key.as_deref(), phone_key.as_deref(), None)? {
            return Err(ApiError::DuplicateReferral { existing_referral_id: existing });
        }
        let id = new_id();
        let at = now();
        let inserted = diesel::insert_into(referrals::table)
            .values((
                referrals::id.eq(&id),
                referrals::ambassador_id.eq(&amb.id),
                referrals::code_id.eq(&code.id),
                referrals::status.eq(ReferralStatus::Registered.as_str()),
                referrals::source.eq(source.as_str()),
                referrals::client_first_name.eq(&new.first_name),
                referrals::client_last_name.eq(new.last_name.as_deref()),
                referrals::client_email.eq(new.email.as_ref().map(Email::as_str)),
                referrals::client_phone.eq(new.phone.as_ref().map(Phone::as_str)),
                referrals::notes.eq(new.notes.as_deref()),
                referrals::email_key.eq(email_key.as_deref()),
                referrals::phone_key.eq(phone_key.as_deref()),
                referrals::external_ref.eq(new.external_ref.as_deref()),
                referrals::share_name_with_ambassador.eq(new.share_name_with_ambassador),
                referrals::planned_sessions.eq(new.planned_sessions),
                referrals::registered_at.eq(at),
                referrals::updated_at.eq(at),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => {}
            // Lost a race to a concurrent referral of the same client; on PostgreSQL the
            // transaction is now aborted, so the winner is named after rollback by the caller.
            Err(e) if is_unique_violation(&e) => return Err(ApiError::DuplicateReferral { existing_referral_id: String::new() }),
            Err(e) => return Err(e.into()),
        }
        audit::record(
            conn,
            actor,
            Change {
                action: "referral.registered",
                entity_type: "referral",
                entity_id: &id,
                before: None,
                after: Some(ReferralStatus::Registered.as_str()),
                details: Some(serde_json::json!({ "ambassador_id": amb.id, "code": code.code, "source": source.as_str() })),
            },
        )?;
        Ok((find(conn, &id)?, code))
    })
    .or_else(|e| match e {
        // Name the winner of a lost race, now that the failed transaction is gone.
        ApiError::DuplicateReferral { existing_referral_id } if existing_referral_id.is_empty() => {
            let existing = live_holder(conn, email_key.as_deref(), phone_key.as_deref(), None)?.unwrap_or_default();
            Err(ApiError::DuplicateReferral { existing_referral_id: existing })
        }
        other => Err(other),
    })
}

/// Records a treatment session; the first one starts treatment.
pub fn record_session(
    conn: &mut DbConnection,
    id: &str,
    session_on: NaiveDate,
    note: Option<&str>,
    actor: &Actor,
) -> Result<SessionRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::RecordSession)?;
        let at = now();
        let session_id = new_id();
        diesel::insert_into(referral_sessions::table)
            .values((
                referral_sessions::id.eq(&session_id),
                referral_sessions::referral_id.eq(id),
                referral_sessions::session_on.eq(session_on),
                referral_sessions::note.eq(note),
                referral_sessions::created_at.eq(at),
            ))
            .execute(conn)?;
        diesel::update(referrals::table.find(id))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::session_count.eq(referrals::session_count + 1),
                referrals::treatment_started_at.eq(before.treatment_started_at.unwrap_or(at)),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "referral.session_recorded",
                entity_type: "referral",
                entity_id: id,
                before: Some(&before.status),
                after: Some(to.as_str()),
                details: Some(
                    serde_json::json!({ "session_id": session_id, "session_on": session_on }),
                ),
            },
        )?;
        Ok(referral_sessions::table
            .find(&session_id)
            .select(SessionRow::as_select())
            .first(conn)?)
    })
}

pub fn sessions(conn: &mut DbConnection, id: &str) -> Result<Vec<SessionRow>, ApiError> {
    Ok(referral_sessions::table
        .filter(referral_sessions::referral_id.eq(id))
        .select(SessionRow::as_select())
        .order((
            referral_sessions::session_on.asc(),
            referral_sessions::id.asc(),
        ))
        .load(conn)?)
}

/// Confirms a completed treatment. Outside the attribution window it still completes, but
/// is marked as not earning, with the reason.
pub fn complete(
    conn: &mut DbConnection,
    id: &str,
    completed_on: NaiveDate,
    treatment_value_minor: Option<i64>,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), ReferralEvent::Complete)?;
        let registered_on = before.registered_at.date();
        if completed_on < registered_on {
            return Err(ApiError::validation(
                "completed_on",
                "must not be before the referral was registered",
            ));
        }
        let attribution =
            referral::attribution(registered_on, completed_on, DEFAULT_ATTRIBUTION_DAYS);
        let at = now();
        diesel::update(referrals::table.find(id))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::completed_on.eq(completed_on),
                referrals::treatment_value_minor.eq(treatment_value_minor),
                referrals::earns.eq(attribution.is_ok()),
                referrals::not_earning_reason.eq(attribution.err()),
                referrals::completed_at.eq(at),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: "referral.completed",
                entity_type: "referral",
                entity_id: id,
                before: Some(&before.status),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({
                    "completed_on": completed_on,
                    "earns": attribution.is_ok(),
                    "not_earning_reason": attribution.err(),
                })),
            },
        )?;
        find(conn, id)
    })
}

/// Cancel, reject or refund with a reason code (and note).
pub fn close_out(
    conn: &mut DbConnection,
    id: &str,
    event: ReferralEvent,
    reason_code: &str,
    note: Option<&str>,
    actor: &Actor,
) -> Result<ReferralRow, ApiError> {
    write_tx(conn, |conn| {
        let before = find(conn, id)?;
        let to = referral::transition(before.status(), event)?;
        let at = now();
        let stamp_if = |status: ReferralStatus, old: Option<chrono::NaiveDateTime>| {
            if to == status {
                Some(at)
            } else {
                old
            }
        };
        diesel::update(referrals::table.find(id))
            .set((
                referrals::status.eq(to.as_str()),
                referrals::reason_code.eq(reason_code),
                referrals::reason_note.eq(note),
                referrals::cancelled_at
                    .eq(stamp_if(ReferralStatus::Cancelled, before.cancelled_at)),
                referrals::rejected_at.eq(stamp_if(ReferralStatus::Rejected, before.rejected_at)),
                referrals::refunded_at.eq(stamp_if(ReferralStatus::Refunded, before.refunded_at)),
                referrals::updated_at.eq(at),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: match to {
                    ReferralStatus::Cancelled => "referral.cancelled",
                    ReferralStatus::Rejected => "referral.rejected",
                    _ => "referral.refunded",
                },
                entity_type: "referral",
                entity_id: id,
                before: Some(&before.status),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "reason_code": reason_code, "note": note })),
            },
        )?;
        find(conn, id)
    })
}

#[derive(Debug, Clone, Default)]
pub struct ReferralFilter {
    pub status: Option<ReferralStatus>,
    pub ambassador_id: Option<String>,
    /// Registered on or after this day.
    pub from: Option<NaiveDate>,
    /// Registered on or before this day.
    pub to: Option<NaiveDate>,
    /// Name, e-mail, phone digits or external reference.
    pub q: Option<String>,
}

pub fn list(
    conn: &mut DbConnection,
    filter: &ReferralFilter,
    page: &PageRequest,
) -> Result<Page<ReferralRow>, ApiError> {
    let mut query = referrals::table
        .select(ReferralRow::as_select())
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(referrals::status.eq(status.as_str()));
    }
    if let Some(amb) = &filter.ambassador_id {
        query = query.filter(referrals::ambassador_id.eq(amb.clone()));
    }
    if let Some(from) = filter.from {
        query =
            query.filter(referrals::registered_at.ge(from.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    if let Some(to) = filter.to.and_then(|d| d.succ_opt()) {
        query =
            query.filter(referrals::registered_at.lt(to.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let phone_pattern = if digits.len() >= 4 {
            format!("%{digits}%")
        } else {
            pattern.clone()
        };
        query = query.filter(
            lower(referrals::client_first_name.assume_not_null())
                .like(pattern.clone())
                .escape('\\')
                .or(lower(referrals::client_last_name.assume_not_null())
                    .like(pattern.clone())
                    .escape('\\'))
                .or(referrals::client_email
                    .assume_not_null()
                    .like(pattern.clone())
                    .escape('\\'))
                .or(lower(referrals::external_ref.assume_not_null())
                    .like(pattern)
                    .escape('\\'))
                .or(referrals::client_phone
                    .assume_not_null()
                    .like(phone_pattern)),
        );
    }
    if let Some(after) = &page.after_id {
        query = query.filter(referrals::id.lt(after.clone()));
    }
    let rows = query
        .order(referrals::id.desc())
        .limit(page.limit + 1)
        .load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}
