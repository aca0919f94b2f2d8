//! Team members, their one-time sign-in links and their console sessions: queries only (the
//! use cases in `app::team` run the transactions, rules, audit rows and e-mails).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{team_members as tm, team_sessions as ts, team_sign_in_links as tl};
use crate::db::DbConnection;
use crate::domain::team::{MemberStatus, NewMember, Role, SessionEnd};
use crate::store::{Page, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tm)]
pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub status: MemberStatus,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub updated_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub deactivated_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ts)]
pub struct SessionRow {
    pub id: String,
    pub member_id: String,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub last_seen_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub expires_at: NaiveDateTime,
}

/// Inserts a member (active); a unique violation means the e-mail is taken.
pub fn insert_member(conn: &mut DbConnection, id: &str, new: &NewMember, at: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(tm::table)
        .values((
            tm::id.eq(id),
            tm::name.eq(&new.name),
            tm::email.eq(new.email.as_str()),
            tm::role.eq(new.role),
            tm::status.eq(MemberStatus::Active),
            tm::created_at.eq(at),
            tm::updated_at.eq(at),
        ))
        .execute(conn)
        .map(drop)
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<MemberRow>> {
    tm::table.find(id).select(MemberRow::as_select()).first(conn).optional()
}

/// The member, row-locked on PostgreSQL until the transaction ends (SQLite's writers queue
/// behind `BEGIN IMMEDIATE` already).
pub fn lock(conn: &mut DbConnection, id: &str) -> QueryResult<Option<MemberRow>> {
    match conn {
        DbConnection::Postgres(pg) => {
            tm::table.find(id).select(MemberRow::as_select()).for_update().first(pg).optional()
        }
        DbConnection::Sqlite(lite) => tm::table.find(id).select(MemberRow::as_select()).first(lite).optional(),
    }
}

pub fn by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<MemberRow>> {
    tm::table.filter(tm::email.eq(email)).select(MemberRow::as_select()).first(conn).optional()
}

/// A page of members, newest first.
pub fn list(conn: &mut DbConnection, page: &PageRequest) -> QueryResult<Page<MemberRow>> {
    let mut query = tm::table.select(MemberRow::as_select()).into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(tm::id.lt(after.clone()));
    }
    let rows = query.order(tm::id.desc()).limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// Names of these members by id (who did what, on the console's pages).
pub fn names(conn: &mut DbConnection, ids: &[&str]) -> QueryResult<Vec<(String, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tm::table.filter(tm::id.eq_any(ids)).select((tm::id, tm::name)).load(conn)
}

/// The ids of the active admins. On PostgreSQL their rows are locked (in id order, so two
/// such transactions never deadlock) until the transaction ends: two admins demoting each
/// other at once cannot both pass the last-admin rule. SQLite's writers queue behind
/// `BEGIN IMMEDIATE` already.
pub fn lock_active_admins(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    let query = tm::table
        .filter(tm::status.eq(MemberStatus::Active))
        .filter(tm::role.eq(Role::Admin))
        .order(tm::id.asc())
        .select(tm::id);
    match conn {
        DbConnection::Postgres(pg) => query.for_update().load(pg),
        DbConnection::Sqlite(lite) => query.load(lite),
    }
}

/// The e-mail addresses of the active admins (for alerts meant for them).
pub fn active_admin_emails(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    tm::table
        .filter(tm::status.eq(MemberStatus::Active))
        .filter(tm::role.eq(Role::Admin))
        .order(tm::id.asc())
        .select(tm::email)
        .load(conn)
}

/// Compare-and-set of an active member's role; 0 rows: it changed meanwhile.
pub fn set_role(conn: &mut DbConnection, id: &str, from: Role, to: Role, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(tm::table.find(id).filter(tm::role.eq(from)).filter(tm::status.eq(MemberStatus::Active)))
        .set((tm::role.eq(to), tm::updated_at.eq(at)))
        .execute(conn)
}

/// Compare-and-set from active to deactivated; 0 rows: it changed meanwhile.
pub fn set_deactivated(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(tm::table.find(id).filter(tm::status.eq(MemberStatus::Active)))
        .set((tm::status.eq(MemberStatus::Deactivated), tm::deactivated_at.eq(at), tm::updated_at.eq(at)))
        .execute(conn)
}

/// Compare-and-set from deactivated to active; 0 rows: it changed meanwhile.
pub fn set_reactivated(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(tm::table.find(id).filter(tm::status.eq(MemberStatus::Deactivated)))
        .set((tm::status.eq(MemberStatus::Active), tm::deactivated_at.eq(None::<NaiveDateTime>), tm::updated_at.eq(at)))
        .execute(conn)
}

/// A one-time link, stored as the hash of its token.
pub struct NewLink<'a> {
    pub id: &'a str,
    pub member_id: &'a str,
    pub token_hash: &'a str,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

pub fn insert_link(conn: &mut DbConnection, link: &NewLink<'_>) -> QueryResult<()> {
    diesel::insert_into(tl::table)
        .values((
            tl::id.eq(link.id),
            tl::member_id.eq(link.member_id),
            tl::token_hash.eq(link.token_hash),
            tl::expires_at.eq(link.expires_at),
            tl::created_at.eq(link.created_at),
        ))
        .execute(conn)
        .map(drop)
}

/// Links made for a member since `since` (the per-address limit on sign-in e-mails).
pub fn links_since(conn: &mut DbConnection, member_id: &str, since: NaiveDateTime) -> QueryResult<i64> {
    tl::table.filter(tl::member_id.eq(member_id)).filter(tl::created_at.gt(since)).count().get_result(conn)
}

/// Uses the unexpired, unused link with this hash (compare-and-set: a link works once);
/// returns its member's id.
pub fn use_link(conn: &mut DbConnection, token_hash: &str, at: NaiveDateTime) -> QueryResult<Option<String>> {
    let used = diesel::update(tl::table.filter(tl::token_hash.eq(token_hash)))
        .filter(tl::used_at.is_null())
        .filter(tl::expires_at.gt(at))
        .set(tl::used_at.eq(at))
        .execute(conn)?;
    if used != 1 {
        return Ok(None);
    }
    tl::table.filter(tl::token_hash.eq(token_hash)).select(tl::member_id).first(conn).optional()
}

/// Expires a member's unused links (deactivation).
pub fn expire_links(conn: &mut DbConnection, member_id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(tl::table.filter(tl::member_id.eq(member_id)).filter(tl::used_at.is_null()))
        .set(tl::expires_at.eq(at))
        .execute(conn)
}

pub fn insert_session(conn: &mut DbConnection, row: &SessionRow, token_hash: &str) -> QueryResult<()> {
    diesel::insert_into(ts::table)
        .values((
            ts::id.eq(&row.id),
            ts::member_id.eq(&row.member_id),
            ts::token_hash.eq(token_hash),
            ts::created_at.eq(row.created_at),
            ts::last_seen_at.eq(row.last_seen_at),
            ts::expires_at.eq(row.expires_at),
        ))
        .execute(conn)
        .map(drop)
}

/// The session with this token hash that was not ended, with its member.
pub fn open_session(conn: &mut DbConnection, token_hash: &str) -> QueryResult<Option<(SessionRow, MemberRow)>> {
    ts::table
        .inner_join(tm::table)
        .filter(ts::token_hash.eq(token_hash))
        .filter(ts::ended_at.is_null())
        .select((SessionRow::as_select(), MemberRow::as_select()))
        .first(conn)
        .optional()
}

/// Notes that the session is in use (the idle timeout counts from here).
pub fn touch_session(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(ts::table.find(id)).set(ts::last_seen_at.eq(at)).execute(conn).map(drop)
}

/// Ends one session if it is open; returns whether it was.
pub fn end_session(conn: &mut DbConnection, id: &str, why: SessionEnd, at: NaiveDateTime) -> QueryResult<bool> {
    let ended = diesel::update(ts::table.find(id).filter(ts::ended_at.is_null()))
        .set((ts::ended_at.eq(at), ts::end_reason.eq(why.as_str())))
        .execute(conn)?;
    Ok(ended == 1)
}

/// Ends every open session of a member; returns how many.
pub fn end_sessions_of(
    conn: &mut DbConnection,
    member_id: &str,
    why: SessionEnd,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(ts::table.filter(ts::member_id.eq(member_id)).filter(ts::ended_at.is_null()))
        .set((ts::ended_at.eq(at), ts::end_reason.eq(why.as_str())))
        .execute(conn)
}

/// Deletes links past the sign-in mail window and sessions that ended or expired
/// (housekeeping): none of them can sign anyone in any more.
pub fn purge_expired(conn: &mut DbConnection, window: chrono::TimeDelta) -> QueryResult<usize> {
    let at = crate::db::now();
    let links = diesel::delete(tl::table.filter(tl::expires_at.lt(at - window))).execute(conn)?;
    let sessions =
        diesel::delete(ts::table.filter(ts::expires_at.lt(at).or(ts::ended_at.is_not_null()))).execute(conn)?;
    Ok(links + sessions)
}
