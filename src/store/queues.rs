//! What waits for someone's decision, counted for the console's home page.

use diesel::prelude::*;

use crate::db::schema::{ambassadors, referrals};
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
