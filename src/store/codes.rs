//! Referral codes: the rows and views, matching a typed code, and the queries behind
//! `crate::app::codes` (issue, deactivate).

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, referral_codes};
use crate::db::DbConnection;
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::code::{self, CodeKind, ReferralCode};
use crate::store::ambassadors::AmbassadorRow;
use crate::store::{StoreError, WriteError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = referral_codes)]
pub struct CodeRow {
    pub id: String,
    pub ambassador_id: String,
    pub code: String,
    pub normalized: String,
    pub kind: CodeKind,
    pub active: bool,
    #[diesel(deserialize_as = crate::db::time::Stamp)]
    pub created_at: chrono::NaiveDateTime,
    #[diesel(deserialize_as = crate::db::time::MaybeStamp)]
    pub deactivated_at: Option<chrono::NaiveDateTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CodeView {
    pub id: String,
    pub ambassador_id: String,
    /// As shown: `7Q4K-9MZD` or a vanity code like `JAMES10`.
    pub code: String,
    /// `generated` or `vanity`.
    pub kind: String,
    pub active: bool,
    /// Link a friend opens to be referred with this code.
    pub share_url: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: chrono::NaiveDateTime,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub deactivated_at: Option<chrono::NaiveDateTime>,
}

impl CodeView {
    pub fn new(row: CodeRow, public_url: &str) -> Self {
        Self {
            share_url: format!("{public_url}/r/{}", row.code),
            id: row.id,
            ambassador_id: row.ambassador_id,
            code: row.code,
            kind: row.kind.as_str().to_owned(),
            active: row.active,
            created_at: row.created_at,
            deactivated_at: row.deactivated_at,
        }
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<CodeRow> {
    referral_codes::table.find(id).select(CodeRow::as_select()).first(conn)
}

/// Writes an active code; `LostRace` when it was taken at the same moment (codes are unique
/// by their normalised form).
pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    ambassador_id: &str,
    (code, kind): (&ReferralCode, CodeKind),
    at: chrono::NaiveDateTime,
) -> Result<(), WriteError> {
    diesel::insert_into(referral_codes::table)
        .values((
            referral_codes::id.eq(id),
            referral_codes::ambassador_id.eq(ambassador_id),
            referral_codes::code.eq(code.display()),
            referral_codes::normalized.eq(code.normalized()),
            referral_codes::kind.eq(kind.as_str()),
            referral_codes::active.eq(true),
            referral_codes::created_at.eq(at),
        ))
        .execute(conn)
        .map_err(StoreError::unique_race)?;
    Ok(())
}

/// Whether any code, active or not, has this normalised form (codes stay reserved forever).
pub fn normalized_exists(conn: &mut DbConnection, normalized: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(referral_codes::table.filter(referral_codes::normalized.eq(normalized))))
        .get_result(conn)
}

pub fn set_inactive(conn: &mut DbConnection, id: &str, at: chrono::NaiveDateTime) -> QueryResult<()> {
    diesel::update(referral_codes::table.find(id))
        .set((referral_codes::active.eq(false), referral_codes::deactivated_at.eq(at)))
        .execute(conn)?;
    Ok(())
}

pub fn list_for(conn: &mut DbConnection, ambassador_id: &str) -> QueryResult<Vec<CodeRow>> {
    referral_codes::table
        .filter(referral_codes::ambassador_id.eq(ambassador_id))
        .select(CodeRow::as_select())
        .order(referral_codes::id.desc())
        .load(conn)
}

/// Finds a code by what someone typed (any case, with or without hyphens).
pub fn find_typed(conn: &mut DbConnection, typed: &str) -> QueryResult<Option<CodeRow>> {
    first_candidate(typed, |candidate| {
        referral_codes::table
            .filter(referral_codes::normalized.eq(candidate))
            .select(CodeRow::as_select())
            .first(conn)
            .optional()
    })
}

/// What `find` gives for the first of the typed code's lookup candidates that names a code.
fn first_candidate<T>(typed: &str, mut find: impl FnMut(&str) -> QueryResult<Option<T>>) -> QueryResult<Option<T>> {
    for candidate in code::lookup_candidates(typed) {
        if let Some(found) = find(&candidate)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Finds a code by what someone typed, with its ambassador: [`find_typed`] and the owner's
/// row in one query (recording a referral checks both).
pub fn find_typed_with_owner(conn: &mut DbConnection, typed: &str) -> QueryResult<Option<(CodeRow, AmbassadorRow)>> {
    first_candidate(typed, |candidate| {
        referral_codes::table
            .inner_join(ambassadors::table)
            .filter(referral_codes::normalized.eq(candidate))
            .select((CodeRow::as_select(), AmbassadorRow::as_select()))
            .first(conn)
            .optional()
    })
}

/// The code and its ambassador when the code can take referrals now: code active and
/// ambassador active.
pub fn find_usable(conn: &mut DbConnection, typed: &str) -> QueryResult<Option<(CodeRow, AmbassadorRow)>> {
    let Some(code) = find_typed(conn, typed)?.filter(|c| c.active) else {
        return Ok(None);
    };
    let amb = ambassadors::table.find(&code.ambassador_id).select(AmbassadorRow::as_select()).first(conn)?;
    Ok((amb.status == AmbassadorStatus::Active).then_some((code, amb)))
}

/// The codes of these ambassadors (newest first), by ambassador id: one query for a page.
pub fn for_ambassadors(
    conn: &mut DbConnection,
    ambassador_ids: &[&str],
) -> QueryResult<std::collections::HashMap<String, Vec<CodeRow>>> {
    let mut codes_by_owner: std::collections::HashMap<String, Vec<CodeRow>> = Default::default();
    let all_codes: Vec<CodeRow> = referral_codes::table
        .filter(referral_codes::ambassador_id.eq_any(ambassador_ids))
        .select(CodeRow::as_select())
        .order(referral_codes::id.desc())
        .load(conn)?;
    for code in all_codes {
        codes_by_owner.entry(code.ambassador_id.clone()).or_default().push(code);
    }
    Ok(codes_by_owner)
}

/// Display codes by code id, for labelling referrals.
pub fn display_codes(conn: &mut DbConnection, ids: &[&str]) -> QueryResult<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = referral_codes::table
        .filter(referral_codes::id.eq_any(ids))
        .select((referral_codes::id, referral_codes::code))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}
