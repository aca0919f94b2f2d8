//! Referral codes: issue generated or vanity codes, deactivate, and match a typed code.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, referral_codes};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::audit::AuditAction;
use crate::domain::code::{self, CodeKind, ReferralCode};
use crate::error::{is_unique_violation, ApiError};
use crate::store::ambassadors::{self as amb_store, AmbassadorRow};
use crate::store::audit::{self, Actor, Change};
use crate::store::new_id;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = referral_codes)]
pub struct CodeRow {
    pub id: String,
    pub ambassador_id: String,
    pub code: String,
    pub normalized: String,
    pub kind: CodeKind,
    pub active: bool,
    pub created_at: chrono::NaiveDateTime,
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

/// Inserts a code for an ambassador inside the caller's transaction. A generated code that
/// collides (about one in 10^12) is drawn again; a vanity code that is taken is a 409.
pub(crate) fn insert(
    conn: &mut DbConnection,
    ambassador_id: &str,
    vanity: Option<&ReferralCode>,
    actor: &Actor,
) -> Result<CodeRow, ApiError> {
    let (code, kind) = match vanity {
        Some(v) => (v.clone(), CodeKind::Vanity),
        None => (fresh_generated(conn)?, CodeKind::Generated),
    };
    if vanity.is_some() && normalized_exists(conn, code.normalized())? {
        return Err(code_taken());
    }
    let id = new_id();
    diesel::insert_into(referral_codes::table)
        .values((
            referral_codes::id.eq(&id),
            referral_codes::ambassador_id.eq(ambassador_id),
            referral_codes::code.eq(code.display()),
            referral_codes::normalized.eq(code.normalized()),
            referral_codes::kind.eq(kind.as_str()),
            referral_codes::active.eq(true),
            referral_codes::created_at.eq(now()),
        ))
        .execute(conn)
        .map_err(|e| if is_unique_violation(&e) { code_taken() } else { e.into() })?;
    audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::CodeCreated,
            entity_type: "referral_code",
            entity_id: &id,
            before: None,
            after: Some("active"),
            details: Some(
                serde_json::json!({ "code": code.display(), "kind": kind.as_str(), "ambassador_id": ambassador_id }),
            ),
        },
    )?;
    Ok(referral_codes::table.find(&id).select(CodeRow::as_select()).first(conn)?)
}

fn fresh_generated(conn: &mut DbConnection) -> Result<ReferralCode, ApiError> {
    for _ in 0..8 {
        let candidate = ReferralCode::generate();
        if !normalized_exists(conn, candidate.normalized())? {
            return Ok(candidate);
        }
    }
    Err(ApiError::internal("could not draw an unused referral code in 8 tries"))
}

fn normalized_exists(conn: &mut DbConnection, normalized: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(referral_codes::table.filter(referral_codes::normalized.eq(normalized))))
        .get_result(conn)
}

fn code_taken() -> ApiError {
    ApiError::Conflict {
        kind: "code-taken",
        detail: "This code is already taken (codes stay reserved even after deactivation).".into(),
        field: Some("code"),
    }
}

/// Adds a code (vanity if given, else generated) to an ambassador who can still refer.
pub fn create(
    conn: &mut DbConnection,
    ambassador_id: &str,
    vanity: Option<&ReferralCode>,
    actor: &Actor,
) -> Result<CodeRow, ApiError> {
    write_tx(conn, |conn| {
        let amb = amb_store::find(conn, ambassador_id)?;
        if matches!(amb.status, AmbassadorStatus::Closed | AmbassadorStatus::Declined) {
            return Err(ApiError::InvalidTransition {
                entity: "ambassador",
                current: amb.status.as_str().to_owned(),
                event: "add a code to".into(),
                hint: None,
            });
        }
        insert(conn, ambassador_id, vanity, actor)
    })
}

pub fn list_for(conn: &mut DbConnection, ambassador_id: &str) -> Result<Vec<CodeRow>, ApiError> {
    Ok(referral_codes::table
        .filter(referral_codes::ambassador_id.eq(ambassador_id))
        .select(CodeRow::as_select())
        .order(referral_codes::id.desc())
        .load(conn)?)
}

/// Finds a code by what someone typed (any case, with or without hyphens).
pub fn find_typed(conn: &mut DbConnection, typed: &str) -> Result<Option<CodeRow>, ApiError> {
    for candidate in code::lookup_candidates(typed) {
        let row = referral_codes::table
            .filter(referral_codes::normalized.eq(&candidate))
            .select(CodeRow::as_select())
            .first(conn)
            .optional()?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// The code and its ambassador when the code can take referrals now: code active and
/// ambassador active.
pub fn find_usable(conn: &mut DbConnection, typed: &str) -> Result<Option<(CodeRow, AmbassadorRow)>, ApiError> {
    let Some(code) = find_typed(conn, typed)?.filter(|c| c.active) else {
        return Ok(None);
    };
    let amb = ambassadors::table.find(&code.ambassador_id).select(AmbassadorRow::as_select()).first(conn)?;
    Ok((amb.status == AmbassadorStatus::Active).then_some((code, amb)))
}

pub fn deactivate(conn: &mut DbConnection, typed: &str, actor: &Actor) -> Result<CodeRow, ApiError> {
    write_tx(conn, |conn| {
        let code = find_typed(conn, typed)?.ok_or(ApiError::NotFound("referral code"))?;
        if !code.active {
            return Err(ApiError::InvalidTransition {
                entity: "code",
                current: "inactive".into(),
                event: "deactivate".into(),
                hint: None,
            });
        }
        diesel::update(referral_codes::table.find(&code.id))
            .set((referral_codes::active.eq(false), referral_codes::deactivated_at.eq(now())))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::CodeDeactivated,
                entity_type: "referral_code",
                entity_id: &code.id,
                before: Some("active"),
                after: Some("inactive"),
                details: Some(serde_json::json!({ "code": code.code, "ambassador_id": code.ambassador_id })),
            },
        )?;
        Ok(referral_codes::table.find(&code.id).select(CodeRow::as_select()).first(conn)?)
    })
}

/// Display codes by code id, for labelling referrals.
pub fn display_codes(
    conn: &mut DbConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let rows: Vec<(String, String)> = referral_codes::table
        .filter(referral_codes::id.eq_any(ids))
        .select((referral_codes::id, referral_codes::code))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}
