//! The console's search box: one query, the clients and the ambassadors it finds (each group
//! newest first, at most [`PER_GROUP`], and whether there were more).

use super::Result;
use crate::db::DbConnection;
use crate::domain::search::SearchQuery;
use crate::store::ambassadors::AmbassadorRow;
use crate::store::referrals::ReferralRow;
use crate::store::search::{self, Found};

/// Matches shown per group; the page says when there are more (type more of the name).
pub const PER_GROUP: i64 = 20;

pub struct Results {
    pub clients: Found<ReferralRow>,
    pub ambassadors: Found<AmbassadorRow>,
}

pub fn find(conn: &mut DbConnection, q: &SearchQuery) -> Result<Results> {
    Ok(Results { clients: search::clients(conn, q, PER_GROUP)?, ambassadors: search::ambassadors(conn, q, PER_GROUP)? })
}
