//! Referral codes: issue generated or vanity codes, list an ambassador's, deactivate.

use super::error::{Found, Result};
use super::Error;
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::AmbassadorStatus;
use crate::domain::audit::AuditAction;
use crate::domain::code::{CodeKind, ReferralCode};
use crate::store::audit::{self, Actor, Change, EntityType};
use crate::store::codes::{self as store, CodeRow};
use crate::store::new_id;

fn code_taken() -> Error {
    Error::Conflict {
        kind: "code-taken",
        detail: "This code is already taken (codes stay reserved even after deactivation).".into(),
        field: Some("code"),
    }
}

/// Issues a code for an ambassador inside the caller's transaction. A generated code that
/// collides (about one in 10^12) is drawn again; a vanity code that is taken is a 409.
pub(crate) fn issue(
    conn: &mut DbConnection,
    ambassador_id: &str,
    vanity: Option<&ReferralCode>,
    actor: &Actor,
) -> Result<CodeRow> {
    let (code, kind) = match vanity {
        Some(v) => (v.clone(), CodeKind::Vanity),
        None => (fresh_generated(conn)?, CodeKind::Generated),
    };
    if vanity.is_some() && store::normalized_exists(conn, code.normalized())? {
        return Err(code_taken());
    }
    let id = new_id();
    store::insert(conn, &id, ambassador_id, (&code, kind), now()).map_err(|e| {
        if e.lost_race() {
            code_taken()
        } else {
            e.into()
        }
    })?;
    audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::CodeCreated,
            entity_type: EntityType::ReferralCode,
            entity_id: &id,
            before: None,
            after: Some("active"),
            details: Some(
                serde_json::json!({ "code": code.display(), "kind": kind.as_str(), "ambassador_id": ambassador_id }),
            ),
        },
    )?;
    Ok(store::find(conn, &id)?)
}

fn fresh_generated(conn: &mut DbConnection) -> Result<ReferralCode> {
    for _ in 0..8 {
        let candidate = ReferralCode::generate();
        if !store::normalized_exists(conn, candidate.normalized())? {
            return Ok(candidate);
        }
    }
    Err(Error::internal("could not draw an unused referral code in 8 tries"))
}

/// Adds a code (vanity if given, else generated) to an ambassador who can still refer.
pub fn create(
    conn: &mut DbConnection,
    ambassador_id: &str,
    vanity: Option<&ReferralCode>,
    actor: &Actor,
) -> Result<CodeRow> {
    write_tx(conn, |conn| {
        let amb = crate::store::ambassadors::find(conn, ambassador_id).or_not_found("ambassador")?;
        if matches!(amb.status, AmbassadorStatus::Closed | AmbassadorStatus::Declined) {
            return Err(Error::InvalidTransition {
                entity: "ambassador",
                current: amb.status.as_str().to_owned(),
                event: "add a code to".into(),
                hint: None,
            });
        }
        issue(conn, ambassador_id, vanity, actor)
    })
}

/// An ambassador's codes, newest first (404 for an unknown ambassador).
pub fn list(conn: &mut DbConnection, ambassador_id: &str) -> Result<Vec<CodeRow>> {
    crate::store::ambassadors::find(conn, ambassador_id).or_not_found("ambassador")?;
    Ok(store::list_for(conn, ambassador_id)?)
}

/// Deactivates a code (typed in any case, with or without hyphens); it stays reserved.
pub fn deactivate(conn: &mut DbConnection, typed: &str, actor: &Actor) -> Result<CodeRow> {
    write_tx(conn, |conn| {
        let code = store::find_typed(conn, typed)?.ok_or(Error::NotFound("referral code"))?;
        if !code.active {
            return Err(Error::InvalidTransition {
                entity: "code",
                current: "inactive".into(),
                event: "deactivate".into(),
                hint: None,
            });
        }
        store::set_inactive(conn, &code.id, now())?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::CodeDeactivated,
                entity_type: EntityType::ReferralCode,
                entity_id: &code.id,
                before: Some("active"),
                after: Some("inactive"),
                details: Some(serde_json::json!({ "code": code.code, "ambassador_id": code.ambassador_id })),
            },
        )?;
        Ok(store::find(conn, &code.id)?)
    })
}

/// Whose a typed code is, as staff see it while recording a referral.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CodeOwner {
    /// The code as issued.
    pub code: String,
    pub active: bool,
    pub ambassador_name: String,
    pub ambassador_status: AmbassadorStatus,
    /// Whether a referral may be recorded with it now (code and ambassador active).
    pub usable: bool,
}

/// The ambassador a typed code belongs to (any case, hyphens optional), active or not; `None`
/// when no code matches.
pub fn owner(conn: &mut DbConnection, typed: &str) -> Result<Option<CodeOwner>> {
    let Some(code) = store::find_typed(conn, typed)? else {
        return Ok(None);
    };
    let amb = crate::store::ambassadors::find(conn, &code.ambassador_id).or_not_found("ambassador")?;
    let usable = code.active && amb.status == AmbassadorStatus::Active;
    Ok(Some(CodeOwner {
        code: code.code,
        active: code.active,
        ambassador_name: amb.name,
        ambassador_status: amb.status,
        usable,
    }))
}
