//! What waits for someone's decision (and clients gone quiet), for the console's home page.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::max;
use diesel::prelude::*;
use diesel::sql_types::{Date, Nullable};
use serde::Serialize;

use crate::db::schema::{ambassadors, referral_sessions, referrals};
use crate::db::DbConnection;
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::referral::{ReferralSource, ReferralStatus};

/// Share-link submissions accepted on arrival that staff have not acted on yet (no session
/// recorded, not cancelled or rejected).
pub fn share_link_referrals_waiting(conn: &mut DbConnection) -> QueryResult<i64> {
    referrals::table
        .filter(referrals::source.eq(ReferralSource::PublicForm))
        .filter(referrals::status.eq(ReferralStatus::Registered))
        .count()
        .get_result(conn)
}

/// Ambassador applications not yet approved or declined.
pub fn applications_waiting(conn: &mut DbConnection) -> QueryResult<i64> {
    ambassadors::table.filter(ambassadors::status.eq(AmbassadorStatus::Applied)).count().get_result(conn)
}

/// A referral on the home page's lists: who, and where it stands.
#[derive(Debug, Queryable, Serialize)]
pub struct QueuedReferral {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub session_count: i32,
    #[serde(serialize_with = "crate::store::utc::ser")]
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub registered_at: NaiveDateTime,
}

/// The newest `limit` share-link referrals waiting for staff (as counted above). Served by
/// `referrals_status_source_idx (status, source, id)`, walked backwards by id; the count
/// above is the length of the same index range.
pub fn share_link_referrals(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<QueuedReferral>> {
    referrals::table
        .filter(referrals::status.eq(ReferralStatus::Registered))
        .filter(referrals::source.eq(ReferralSource::PublicForm))
        .order(referrals::id.desc())
        .limit(limit)
        .select(QUEUED)
        .load(conn)
}

/// Clients in treatment with no session on or after `since` (oldest referrals first, at most
/// `limit`). Served by `referrals_status_idx (status, id)` for the clients in treatment, and for
/// each one by `referral_sessions_referral_idx (referral_id, id)`: its last session's day, a
/// correlated subquery per client walked. (`NOT EXISTS` of a recent session reads the same, but
/// PostgreSQL turns it into an anti-join that filters every session of every client: 0.4 s at
/// 200,000 referrals, where this is under a millisecond.)
pub fn stale_in_treatment(conn: &mut DbConnection, since: NaiveDate, limit: i64) -> QueryResult<Vec<QueuedReferral>> {
    let last_session = referral_sessions::table
        .filter(referral_sessions::referral_id.eq(referrals::id))
        .select(max(referral_sessions::session_on))
        .single_value();
    referrals::table
        .filter(referrals::status.eq(ReferralStatus::InTreatment))
        .filter(coalesce_day(last_session, NaiveDate::from_ymd_opt(1, 1, 1).expect("a day")).lt(since))
        .order(referrals::id.asc())
        .limit(limit)
        .select(QUEUED)
        .load(conn)
}

diesel::define_sql_function! {
    /// SQL `COALESCE(day, otherwise)`: a day that may be missing, or a default.
    #[sql_name = "COALESCE"]
    fn coalesce_day(day: Nullable<Date>, otherwise: Date) -> Date;
}

/// The newest `limit` ambassador applications, as `(id, name)`. Served by
/// `ambassadors_status_idx (status, id)`.
pub fn applications(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<(String, String)>> {
    ambassadors::table
        .filter(ambassadors::status.eq(AmbassadorStatus::Applied))
        .order(ambassadors::id.desc())
        .limit(limit)
        .select((ambassadors::id, ambassadors::name))
        .load(conn)
}

const QUEUED: (
    referrals::id,
    referrals::client_first_name,
    referrals::client_last_name,
    referrals::session_count,
    referrals::registered_at,
) = (
    referrals::id,
    referrals::client_first_name,
    referrals::client_last_name,
    referrals::session_count,
    referrals::registered_at,
);
