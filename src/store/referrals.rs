//! Referred clients' queries: the rows, the contact keys a duplicate is found by, the
//! compare-and-set transitions (each updates `WHERE status = <the status read>`), sessions,
//! search and the counts and labels other views show. The rules and the flows around them
//! are `app::referrals`.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{referral_codes, referral_search_keys, referral_sessions, referrals};
use crate::db::{lower, DbConnection, Prepared};
use crate::domain::calendar::Calendar;
use crate::domain::contact::{Email, Phone};
use crate::domain::referral::{self, ReferralSource, ReferralStatus};
use crate::domain::search;
use crate::store::codes::CodeRow;
use crate::store::{like_pattern, Page, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = referrals)]
pub struct ReferralRow {
    pub id: String,
    pub ambassador_id: Option<String>,
    pub code_id: Option<String>,
    pub submitted_code: Option<String>,
    pub status: ReferralStatus,
    pub source: ReferralSource,
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
    #[diesel(deserialize_as = crate::db::time::MaybeDay)]
    pub first_session_on: Option<NaiveDate>,
    #[diesel(deserialize_as = crate::db::time::MaybeDay)]
    pub completed_on: Option<NaiveDate>,
    pub treatment_value_minor: Option<i64>,
    pub earns: Option<bool>,
    pub not_earning_reason: Option<String>,
    pub reason_code: Option<String>,
    pub reason_note: Option<String>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub registered_at: chrono::NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub treatment_started_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub completed_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub refunded_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub cancelled_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub rejected_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub erased_at: Option<chrono::NaiveDateTime>,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: chrono::NaiveDateTime,
}

impl ReferralRow {
    pub fn status(&self) -> ReferralStatus {
        self.status
    }

    /// The day the client was referred, in the clinic's calendar: the day it was recorded, or
    /// the earlier day staff gave when recording it late. Sessions and the completion may not
    /// be dated before it, and the attribution window counts from it.
    pub fn registered_on(&self, calendar: &Calendar) -> NaiveDate {
        calendar.date_of(self.registered_at)
    }

    /// Whether the ambassador sees this referral (portal, API, e-mails). A share-link form
    /// submission shows only from the friend's first treatment session: until the clinic has
    /// seen the friend, a submission it accepted and one it refused on arrival (say, because
    /// the friend was already somebody's client) must look alike — so neither shows.
    pub fn visible_to_ambassador(&self) -> bool {
        !self.from_share_link() || self.treatment_started_at.is_some()
    }

    /// Left by the friend on the share-link form (not recorded by staff).
    pub fn from_share_link(&self) -> bool {
        self.source == ReferralSource::PublicForm
    }

    /// How its ambassador sees this client ("First L." with consent, else an opaque label
    /// from `code`, the code used, or else what the client typed): the one rule behind the
    /// portal, the API and the e-mails.
    pub fn label_for_ambassador(&self, code: Option<&str>) -> String {
        referral::name_for_ambassador(
            self.client_first_name.as_deref(),
            self.client_last_name.as_deref(),
            self.share_name_with_ambassador,
            code.or(self.submitted_code.as_deref()).unwrap_or(""),
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = referral_sessions)]
pub struct SessionRow {
    pub id: String,
    #[serde(skip)]
    pub referral_id: String,
    /// The day of the session.
    #[diesel(deserialize_as = crate::db::time::Day)]
    pub session_on: NaiveDate,
    pub note: Option<String>,
    #[serde(serialize_with = "crate::store::utc::ser")]
    #[diesel(deserialize_as = crate::db::time::Stamp)]
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
    /// Staff recording a referral late: the earlier day the client was referred (checked
    /// against the attribution window). `None`: now.
    pub registered_on: Option<NaiveDate>,
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ReferralRow>> {
    referrals::table.find(id).select(ReferralRow::as_select()).first(conn).optional()
}

/// The referral with the code it was made with (as [`code_of`] gives it), in one query.
pub fn find_with_code(conn: &mut DbConnection, id: &str) -> QueryResult<Option<(ReferralRow, Option<String>)>> {
    referrals::table
        .left_join(referral_codes::table.on(referrals::code_id.eq(referral_codes::id.nullable())))
        .filter(referrals::id.eq(id))
        .select((ReferralRow::as_select(), referral_codes::code.nullable()))
        .first(conn)
        .optional()
}

/// The code a referral was made with, as issued (none for a public submission whose code
/// matched nothing).
pub fn code_of(conn: &mut DbConnection, referral: &ReferralRow) -> QueryResult<Option<String>> {
    match &referral.code_id {
        Some(id) => referral_codes::table.find(id).select(referral_codes::code).first(conn).optional(),
        None => Ok(None),
    }
}

/// The live (not cancelled or rejected) referral holding either contact key, if any (the
/// first recorded, should the two keys be held by two referrals).
///
/// One lookup per key, each answered by its partial unique index (`referrals_live_email_key`,
/// `referrals_live_phone_key`; diesel's multi-backend has no `UNION`). Written as `email_key = ? OR
/// phone_key = ?`, SQLite walked the whole table in id order instead (1.2 s at 200,000
/// referrals, inside the write lock: bench/results/PROFILE.md). SQLite uses a partial index
/// only when the query states the index's condition itself, so the status condition is
/// spelled out as in the migration rather than bound.
pub fn live_holder(
    conn: &mut DbConnection,
    email_key: Option<&str>,
    phone_key: Option<&str>,
    except: Option<&str>,
) -> QueryResult<Option<String>> {
    let live = || {
        diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "status NOT IN ('{}', '{}')",
            ReferralStatus::Cancelled.as_str(),
            ReferralStatus::Rejected.as_str()
        ))
    };
    let mut holders: Vec<String> = Vec::with_capacity(2);
    if let Some(key) = email_key {
        let query = referrals::table.filter(referrals::email_key.eq(key)).filter(live()).select(referrals::id);
        holders.extend(query.load::<String>(conn)?);
    }
    if let Some(key) = phone_key {
        let query = referrals::table.filter(referrals::phone_key.eq(key)).filter(live()).select(referrals::id);
        holders.extend(query.load::<String>(conn)?);
    }
    Ok(holders.into_iter().filter(|id| Some(id.as_str()) != except).min())
}

/// Where a new referral row goes: whose it is, and whether it starts rejected.
pub struct Placement {
    pub ambassador_id: Option<String>,
    pub code_id: Option<String>,
    pub status: ReferralStatus,
    pub reason_code: Option<&'static str>,
    pub reason_note: Option<String>,
}

impl Placement {
    pub fn registered(code: &CodeRow) -> Self {
        Self {
            ambassador_id: Some(code.ambassador_id.clone()),
            code_id: Some(code.id.clone()),
            status: ReferralStatus::Registered,
            reason_code: None,
            reason_note: None,
        }
    }
}

/// A client's contact details and the keyed hashes a duplicate is found by.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub email_key: Option<String>,
    pub phone_key: Option<String>,
}

/// Writes a new referral and returns it as stored (`RETURNING`: no second read). The partial
/// unique indexes on the contact keys refuse a second live referral of the same client (a
/// unique violation: a lost race).
#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    new: &NewReferral,
    contact: &Contact,
    source: ReferralSource,
    placement: &Placement,
    registered_at: NaiveDateTime,
    at: NaiveDateTime,
) -> QueryResult<ReferralRow> {
    let rejected = placement.status == ReferralStatus::Rejected;
    let row = diesel::insert_into(referrals::table)
        .values((
            referrals::id.eq(id),
            referrals::ambassador_id.eq(placement.ambassador_id.as_deref()),
            referrals::code_id.eq(placement.code_id.as_deref()),
            referrals::submitted_code.eq(Some(new.code.as_str())),
            referrals::status.eq(placement.status.as_str()),
            referrals::source.eq(source.as_str()),
            referrals::client_first_name.eq(&new.first_name),
            referrals::client_last_name.eq(new.last_name.as_deref()),
            referrals::client_email.eq(contact.email.as_ref().map(Email::as_str)),
            referrals::client_phone.eq(contact.phone.as_ref().map(Phone::as_str)),
            referrals::notes.eq(new.notes.as_deref()),
            referrals::email_key.eq(contact.email_key.as_deref()),
            referrals::phone_key.eq(contact.phone_key.as_deref()),
            referrals::external_ref.eq(new.external_ref.as_deref()),
            referrals::share_name_with_ambassador.eq(new.share_name_with_ambassador),
            referrals::planned_sessions.eq(new.planned_sessions),
            referrals::reason_code.eq(placement.reason_code),
            referrals::reason_note.eq(placement.reason_note.as_deref()),
            referrals::registered_at.eq(registered_at),
            referrals::rejected_at.eq(rejected.then_some(at)),
            referrals::updated_at.eq(at),
        ))
        .returning(referrals::all_columns)
        .get_result::<ReferralRow>(conn)?;
    insert_search_keys(conn, id, (&new.first_name, new.last_name.as_deref()), contact, new.external_ref.as_deref())?;
    Ok(row)
}

pub fn insert_session(
    conn: &mut DbConnection,
    session_id: &str,
    referral_id: &str,
    session_on: NaiveDate,
    note: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<SessionRow> {
    diesel::insert_into(referral_sessions::table)
        .values((
            referral_sessions::id.eq(session_id),
            referral_sessions::referral_id.eq(referral_id),
            referral_sessions::session_on.eq(session_on),
            referral_sessions::note.eq(note),
            referral_sessions::created_at.eq(at),
        ))
        .returning(referral_sessions::all_columns)
        .get_result(conn)
}

/// Counts a session on the referral (the first starts treatment); returns the row as it now
/// is (`None`: a concurrent request changed its status first).
pub fn count_session(
    conn: &mut DbConnection,
    before: &ReferralRow,
    to: ReferralStatus,
    session_on: NaiveDate,
    at: NaiveDateTime,
) -> QueryResult<Option<ReferralRow>> {
    let update = diesel::update(referrals::table.find(&before.id).filter(referrals::status.eq(&before.status)))
        .set((
            referrals::status.eq(to.as_str()),
            referrals::session_count.eq(referrals::session_count + 1),
            referrals::first_session_on.eq(before.first_session_on.map_or(session_on, |d| d.min(session_on))),
            referrals::treatment_started_at.eq(before.treatment_started_at.unwrap_or(at)),
            referrals::updated_at.eq(at),
        ))
        .returning(referrals::all_columns);
    Prepared(update).get_result(conn).optional()
}

pub fn sessions(conn: &mut DbConnection, id: &str) -> QueryResult<Vec<SessionRow>> {
    referral_sessions::table
        .filter(referral_sessions::referral_id.eq(id))
        .select(SessionRow::as_select())
        .order((referral_sessions::session_on.asc(), referral_sessions::id.asc()))
        .load(conn)
}

/// What a completion records.
pub struct Completion<'a> {
    pub completed_on: NaiveDate,
    pub treatment_value_minor: Option<i64>,
    /// `None`: it earns a reward; else why not.
    pub not_earning_reason: Option<&'a str>,
}

/// Marks the referral completed; returns the row as it now is (`None`: a concurrent request
/// changed its status first).
pub fn complete(
    conn: &mut DbConnection,
    before: &ReferralRow,
    to: ReferralStatus,
    completion: &Completion<'_>,
    at: NaiveDateTime,
) -> QueryResult<Option<ReferralRow>> {
    let update = diesel::update(referrals::table.find(&before.id).filter(referrals::status.eq(&before.status)))
        .set((
            referrals::status.eq(to.as_str()),
            referrals::completed_on.eq(completion.completed_on),
            referrals::treatment_value_minor.eq(completion.treatment_value_minor),
            referrals::earns.eq(completion.not_earning_reason.is_none()),
            referrals::not_earning_reason.eq(completion.not_earning_reason),
            referrals::completed_at.eq(at),
            referrals::updated_at.eq(at),
        ))
        .returning(referrals::all_columns);
    Prepared(update).get_result(conn).optional()
}

/// Cancels, rejects or refunds the referral (`to`) with a reason, stamping the matching time;
/// returns the rows changed (0: a concurrent request changed its status first).
pub fn close_out(
    conn: &mut DbConnection,
    before: &ReferralRow,
    to: ReferralStatus,
    reason_code: &str,
    note: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    let stamp_if = |status: ReferralStatus, old: Option<NaiveDateTime>| {
        if to == status {
            Some(at)
        } else {
            old
        }
    };
    diesel::update(referrals::table.find(&before.id).filter(referrals::status.eq(&before.status)))
        .set((
            referrals::status.eq(to.as_str()),
            referrals::reason_code.eq(reason_code),
            referrals::reason_note.eq(note),
            referrals::cancelled_at.eq(stamp_if(ReferralStatus::Cancelled, before.cancelled_at)),
            referrals::rejected_at.eq(stamp_if(ReferralStatus::Rejected, before.rejected_at)),
            referrals::refunded_at.eq(stamp_if(ReferralStatus::Refunded, before.refunded_at)),
            referrals::updated_at.eq(at),
        ))
        .execute(conn)
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
    /// Whether `q` may match e-mail and phone: only for callers who see them (not finance),
    /// or the search would answer what the view hides.
    pub q_matches_contact: bool,
}

pub fn list(
    conn: &mut DbConnection,
    calendar: &Calendar,
    filter: &ReferralFilter,
    page: &PageRequest,
) -> QueryResult<Page<ReferralRow>> {
    let mut query = referrals::table.select(ReferralRow::as_select()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(referrals::status.eq(status.as_str()));
    }
    if let Some(amb) = &filter.ambassador_id {
        query = query.filter(referrals::ambassador_id.eq(amb.clone()));
    }
    if let Some(from) = filter.from {
        query = query.filter(referrals::registered_at.ge(calendar.start_of(from)));
    }
    if let Some(to) = filter.to.and_then(|d| d.succ_opt()) {
        query = query.filter(referrals::registered_at.lt(calendar.start_of(to)));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = like_pattern(q);
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let phone_pattern = if digits.len() >= 4 { format!("%{digits}%") } else { pattern.clone() };
        let visible = lower(referrals::client_first_name.assume_not_null())
            .like(pattern.clone())
            .escape('\\')
            .or(lower(referrals::client_last_name.assume_not_null()).like(pattern.clone()).escape('\\'))
            .or(lower(referrals::external_ref.assume_not_null()).like(pattern.clone()).escape('\\'));
        if filter.q_matches_contact {
            query = query.filter(
                visible
                    .or(referrals::client_email.assume_not_null().like(pattern).escape('\\'))
                    .or(referrals::client_phone.assume_not_null().like(phone_pattern)),
            );
        } else {
            query = query.filter(visible);
        }
    }
    if let Some(after) = &page.after_id {
        query = query.filter(referrals::id.lt(after.clone()));
    }
    let rows = query.order(referrals::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// A parsed PATCH of a referral's client data: `None` leaves a field alone, `Some(None)`
/// clears a nullable one.

#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub first_name: Option<String>,
    pub last_name: Option<Option<String>>,
    pub email: Option<Option<Email>>,
    pub phone: Option<Option<Phone>>,
    pub external_ref: Option<Option<String>>,
    pub planned_sessions: Option<Option<i32>>,
    pub share_name_with_ambassador: Option<bool>,
    pub notes: Option<Option<String>>,
}

/// Writes a referral's edited client data: each field from `changes`, or as it was; the
/// contact as given. A contact key another live referral holds is a unique violation (a lost
/// race).
pub fn update_client(
    conn: &mut DbConnection,
    before: &ReferralRow,
    changes: &ClientChanges,
    contact: &Contact,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let first_name = changes.first_name.clone().or(before.client_first_name.clone());
    let last_name = changes.last_name.clone().unwrap_or(before.client_last_name.clone());
    let external_ref = changes.external_ref.clone().unwrap_or(before.external_ref.clone());
    let name = first_name.as_deref().map(|first| (first, last_name.as_deref()));
    write_search_keys(conn, &before.id, name, contact, external_ref.as_deref())?;
    diesel::update(referrals::table.find(&before.id))
        .set((
            referrals::client_first_name.eq(&first_name),
            referrals::client_last_name.eq(&last_name),
            referrals::client_email.eq(contact.email.as_ref().map(Email::as_str)),
            referrals::client_phone.eq(contact.phone.as_ref().map(Phone::as_str)),
            referrals::email_key.eq(contact.email_key.as_deref()),
            referrals::phone_key.eq(contact.phone_key.as_deref()),
            referrals::external_ref.eq(&external_ref),
            referrals::planned_sessions.eq(changes.planned_sessions.unwrap_or(before.planned_sessions)),
            referrals::share_name_with_ambassador
                .eq(changes.share_name_with_ambassador.unwrap_or(before.share_name_with_ambassador)),
            referrals::notes.eq(changes.notes.clone().unwrap_or(before.notes.clone())),
            referrals::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Clears a client's personal data: names, contact details and every note (the referral's
/// and its sessions'). The keyed contact hashes stay.
pub fn erase(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(referrals::table.find(id))
        .set((
            referrals::client_first_name.eq(None::<String>),
            referrals::client_last_name.eq(None::<String>),
            referrals::client_email.eq(None::<String>),
            referrals::client_phone.eq(None::<String>),
            referrals::notes.eq(None::<String>),
            referrals::reason_note.eq(None::<String>),
            referrals::external_ref.eq(None::<String>),
            referrals::erased_at.eq(Some(at)),
            referrals::updated_at.eq(at),
        ))
        .execute(conn)?;
    diesel::update(referral_sessions::table.filter(referral_sessions::referral_id.eq(id)))
        .set(referral_sessions::note.eq(None::<String>))
        .execute(conn)?;
    write_search_keys(conn, id, None, &Contact::default(), None)
}

/// Rewrites the console search's keys of a client ([`crate::domain::search`]) from their
/// name (first, last), contact and the clinic's id; without a name (erased), none are kept.
fn write_search_keys(
    conn: &mut DbConnection,
    id: &str,
    name: Option<(&str, Option<&str>)>,
    contact: &Contact,
    external_ref: Option<&str>,
) -> QueryResult<()> {
    diesel::delete(referral_search_keys::table.find(id)).execute(conn)?;
    match name {
        Some(name) => insert_search_keys(conn, id, name, contact, external_ref),
        None => Ok(()),
    }
}

/// The search keys of a referral that has none yet (a new one: no delete first).
fn insert_search_keys(
    conn: &mut DbConnection,
    id: &str,
    (first, last): (&str, Option<&str>),
    contact: &Contact,
    external_ref: Option<&str>,
) -> QueryResult<()> {
    let (name_key, reversed_name_key) = search::name_keys(first, last);
    diesel::insert_into(referral_search_keys::table)
        .values((
            referral_search_keys::referral_id.eq(id),
            referral_search_keys::name_key.eq(name_key),
            referral_search_keys::reversed_name_key.eq(reversed_name_key),
            referral_search_keys::email.eq(contact.email.as_ref().map(Email::as_str)),
            referral_search_keys::phone_digits_reversed
                .eq(contact.phone.as_ref().map(|p| search::phone_key(p.as_str()))),
            referral_search_keys::external_ref_key.eq(external_ref.map(search::text_key)),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) type Visible = diesel::dsl::Or<
    diesel::dsl::NotEq<referrals::source, &'static str>,
    diesel::dsl::IsNotNull<referrals::treatment_started_at>,
>;

/// [`ReferralRow::visible_to_ambassador`] in SQL.
pub(crate) fn ambassador_visible() -> Visible {
    referrals::source.ne(ReferralSource::PublicForm.as_str()).or(referrals::treatment_started_at.is_not_null())
}

/// How each referral is named to its ambassador ("First L." with consent, else an opaque
/// label from the code), for ledger rows and e-mails.
pub fn labels_for_ambassador(conn: &mut DbConnection, ids: &[&str]) -> QueryResult<HashMap<String, String>> {
    let rows: Vec<(ReferralRow, Option<String>)> = referrals::table
        .left_join(referral_codes::table.on(referrals::code_id.eq(referral_codes::id.nullable())))
        .filter(referrals::id.eq_any(ids))
        .select((ReferralRow::as_select(), referral_codes::code.nullable()))
        .load(conn)?;
    Ok(rows.iter().map(|(r, code)| (r.id.clone(), r.label_for_ambassador(code.as_deref()))).collect())
}

/// The referral with this `external_ref` (the clinic's own client id), if any: how an import
/// finds a row it has written before.
///
/// The first one recorded when several share it, chosen here rather than by `ORDER BY id LIMIT
/// 1`: PostgreSQL, its statistics not yet updated in the middle of a large import, walked the
/// primary key in id order for that, reading the whole table per row (20,000 rows: 7 minutes).
pub fn find_by_external_ref(conn: &mut DbConnection, external_ref: &str) -> QueryResult<Option<ReferralRow>> {
    let rows: Vec<ReferralRow> = referrals::table
        .filter(referrals::external_ref.eq(external_ref))
        .select(ReferralRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().min_by(|a, b| a.id.cmp(&b.id)))
}

/// The ambassador's referral of this client (either contact key) registered at this moment, in
/// any status: how an import finds a row without `external_ref` it has written before.
pub fn find_same_client(
    conn: &mut DbConnection,
    ambassador_id: &str,
    registered_at: NaiveDateTime,
    email_key: Option<&str>,
    phone_key: Option<&str>,
) -> QueryResult<Option<ReferralRow>> {
    // No `ORDER BY id LIMIT 1` (see `find_by_external_ref`): the first recorded is chosen here.
    let mine = || {
        referrals::table
            .filter(referrals::ambassador_id.eq(ambassador_id.to_owned()))
            .filter(referrals::registered_at.eq(registered_at))
            .select(ReferralRow::as_select())
    };
    let first = |rows: Vec<ReferralRow>| rows.into_iter().min_by(|a, b| a.id.cmp(&b.id));
    if let Some(key) = email_key {
        if let Some(row) = first(mine().filter(referrals::email_key.eq(key.to_owned())).load(conn)?) {
            return Ok(Some(row));
        }
    }
    match phone_key {
        Some(key) => Ok(first(mine().filter(referrals::phone_key.eq(key.to_owned())).load(conn)?)),
        None => Ok(None),
    }
}

/// Where an imported referral had got to in the old system, written over the `registered`
/// row just inserted: its status, treatment, completion and closing, with their times.
pub struct ImportedHistory<'a> {
    pub status: ReferralStatus,
    pub first_session_on: Option<NaiveDate>,
    pub treatment_started_at: Option<NaiveDateTime>,
    pub completed_on: Option<NaiveDate>,
    pub completed_at: Option<NaiveDateTime>,
    pub treatment_value_minor: Option<i64>,
    /// `None` unless completed (or refunded): whether it earned, and why not.
    pub earns: Option<bool>,
    pub not_earning_reason: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub reason_note: Option<&'a str>,
    /// When it was cancelled, rejected or refunded (by `status`).
    pub closed_at: Option<NaiveDateTime>,
}

pub fn set_imported_history(
    conn: &mut DbConnection,
    id: &str,
    h: &ImportedHistory<'_>,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    let closed = |status: ReferralStatus| if h.status == status { h.closed_at } else { None };
    diesel::update(referrals::table.find(id))
        .set((
            referrals::status.eq(h.status.as_str()),
            referrals::session_count.eq(i32::from(h.first_session_on.is_some())),
            referrals::first_session_on.eq(h.first_session_on),
            referrals::treatment_started_at.eq(h.treatment_started_at),
            referrals::completed_on.eq(h.completed_on),
            referrals::completed_at.eq(h.completed_at),
            referrals::treatment_value_minor.eq(h.treatment_value_minor),
            referrals::earns.eq(h.earns),
            referrals::not_earning_reason.eq(h.not_earning_reason),
            referrals::reason_code.eq(h.reason_code),
            referrals::reason_note.eq(h.reason_note),
            referrals::cancelled_at.eq(closed(ReferralStatus::Cancelled)),
            referrals::rejected_at.eq(closed(ReferralStatus::Rejected)),
            referrals::refunded_at.eq(closed(ReferralStatus::Refunded)),
            referrals::updated_at.eq(at),
        ))
        .execute(conn)
}
