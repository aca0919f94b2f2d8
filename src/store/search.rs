//! The console's search box: clients and ambassadors whose keys start with the query. Every
//! condition is a range of one index (`key >= 'ann' AND key < 'ano'`), never a scan: on SQLite
//! the plan is a `MULTI-INDEX OR` of `SEARCH … USING INDEX` (one per key), on PostgreSQL a
//! `BitmapOr` of index scans (`tests/api/console_referrals.rs` checks both plans). Erased
//! clients have no keys left (`referral_search_keys`), so their old data finds nothing.

use diesel::prelude::*;

use crate::db::schema::{ambassadors, referral_codes, referral_search_keys, referrals};
use crate::db::DbConnection;
use crate::domain::search::{prefix_range, SearchQuery};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::referrals::ReferralRow;

/// Up to `limit` matches, newest first, and whether there were more.
#[derive(Debug)]
pub struct Found<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Found<T> {
    fn of(mut rows: Vec<T>, limit: i64) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Self { items: rows, more }
    }
}

/// Clients by name (first or last name first), e-mail, the clinic's id or a phone number's
/// last digits: the newest matching keys first, then those referrals by primary key.
pub fn clients(conn: &mut DbConnection, q: &SearchQuery, limit: i64) -> QueryResult<Found<ReferralRow>> {
    use referral_search_keys as k;
    let (start, end) = prefix_range(&q.text);
    let mut matching = k::table
        .select(k::referral_id)
        .into_boxed()
        .filter(k::name_key.ge(start.clone()).and(k::name_key.lt(end.clone())))
        .or_filter(k::reversed_name_key.ge(start.clone()).and(k::reversed_name_key.lt(end.clone())))
        .or_filter(k::email.ge(start.clone()).and(k::email.lt(end.clone())))
        .or_filter(k::external_ref_key.ge(start).and(k::external_ref_key.lt(end)));
    if let Some(phone) = &q.phone {
        let (start, end) = prefix_range(phone);
        matching = matching.or_filter(k::phone_digits_reversed.ge(start).and(k::phone_digits_reversed.lt(end)));
    }
    let ids: Vec<String> = matching.order(k::referral_id.desc()).limit(limit + 1).load(conn)?;
    let rows = referrals::table
        .filter(referrals::id.eq_any(&ids))
        .select(ReferralRow::as_select())
        .order(referrals::id.desc())
        .load(conn)?;
    Ok(Found::of(rows, limit))
}

/// Ambassadors by name, e-mail or one of their codes (active or not: a code stays theirs).
/// The codes' owners are looked up first: a subquery inside the `OR` would keep PostgreSQL
/// from combining the indexes (it filters every row instead).
pub fn ambassadors(conn: &mut DbConnection, q: &SearchQuery, limit: i64) -> QueryResult<Found<AmbassadorRow>> {
    let owners: Vec<String> = match &q.code {
        Some(code) => {
            let (start, end) = prefix_range(code);
            referral_codes::table
                .filter(referral_codes::normalized.ge(start).and(referral_codes::normalized.lt(end)))
                .select(referral_codes::ambassador_id)
                .distinct()
                .limit(limit + 1)
                .load(conn)?
        }
        None => Vec::new(),
    };
    let (start, end) = prefix_range(&q.text);
    let mut query = ambassadors::table
        .select(AmbassadorRow::as_select())
        .into_boxed()
        .filter(ambassadors::name_key.ge(start.clone()).and(ambassadors::name_key.lt(end.clone())))
        .or_filter(ambassadors::email.ge(start).and(ambassadors::email.lt(end)));
    if !owners.is_empty() {
        query = query.or_filter(ambassadors::id.eq_any(owners));
    }
    let rows = query.order(ambassadors::id.desc()).limit(limit + 1).load(conn)?;
    Ok(Found::of(rows, limit))
}
