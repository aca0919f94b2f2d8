//! Payout batches: a draft takes every payable reward at the cutoff into one line per
//! ambassador, is locked for payment (`processing`: explicitly, or by downloading the PayPal
//! file), then is marked paid (every line and reward paid, one e-mail per ambassador; only a
//! locked batch, never a draft) or cancelled (rewards payable again); a line can fail (its
//! rewards payable again).
//!
//! The file that finance uploads is the payment: once locked, a batch's lines never change
//! except a line marked failed. A refund inside a locked batch leaves its line alone and is
//! clawed back when the batch is paid (or voids the reward if the batch is cancelled or the
//! line fails); a suspension leaves it alone.
//!
//! Never twice: a reward points at one line at most (a single column), moves only by
//! compare-and-set on its state, at most one draft exists (partial unique index), and every
//! change to a batch first takes the batch row's lock ([`hold`]), which serialises concurrent
//! changes to it on PostgreSQL as SQLite's single writer does.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{ambassadors, payout_lines, payouts, referrals, rewards};
use crate::db::{now, write_tx, DbConnection};
use crate::domain::ambassador::PayoutMethod;
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::money::{Currency, Money};
use crate::domain::payout::{self, eligibility, Candidate, LineStatus, PayoutEvent, PayoutStatus};
use crate::domain::referral::ReferralStatus;
use crate::domain::reward::{RewardKind, RewardState, RewardStatus};
use crate::email::notices;
use crate::error::{is_unique_violation, ApiError};
use crate::store::audit::{self, Actor, Change};
use crate::store::rewards::{self as ledger, RewardRow};
use crate::store::{ensure_unchanged, new_id, program, Page, PageRequest, StoreError};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payouts)]
pub struct PayoutRow {
    pub id: String,
    pub number: i32,
    pub status: PayoutStatus,
    pub currency: String,
    pub cutoff: NaiveDateTime,
    pub total_minor: i64,
    pub skipped: String,
    pub reference: Option<String>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub paid_at: Option<NaiveDateTime>,
    pub cancelled_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    pub program_version_id: String,
    pub locked_at: Option<NaiveDateTime>,
    pub cancel_reason: Option<String>,
}

impl PayoutRow {
    /// `P12`: short enough for payment references.
    pub fn code(&self) -> String {
        format!("P{}", self.number)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payout_lines)]
pub struct LineRow {
    pub id: String,
    pub payout_id: String,
    pub number: i32,
    pub ambassador_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payout_method: String,
    pub payout_address: Option<String>,
    pub method_seq: i32,
    pub status: LineStatus,
    pub failure_reason: Option<String>,
    pub reward_count: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl LineRow {
    pub fn money(&self) -> Money {
        Money::new(self.amount_minor, Currency::from_stored(&self.currency))
    }
}

/// An ambassador a new batch left out, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub ambassador_id: String,
    pub reason: String,
    /// Their payable balance at the cutoff (carried over).
    pub payable_minor: i64,
}

/// A payout line as finance sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineView {
    pub id: String,
    pub number: i32,
    pub ambassador_id: String,
    pub ambassador_name: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `paypal`, `bank` or `store_credit`, as approved when the batch was made.
    pub payout_method: String,
    /// The PayPal e-mail or bank reference.
    pub payout_address: Option<String>,
    pub status: LineStatus,
    pub failure_reason: Option<String>,
    pub reward_count: i32,
}

impl LineView {
    pub fn new(l: LineRow, ambassador_name: String) -> Self {
        Self {
            status: l.status,
            id: l.id,
            number: l.number,
            ambassador_id: l.ambassador_id,
            ambassador_name,
            amount_minor: l.amount_minor,
            currency: l.currency,
            payout_method: l.payout_method,
            payout_address: l.payout_address,
            failure_reason: l.failure_reason,
            reward_count: l.reward_count,
        }
    }
}

/// A payout batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub id: String,
    /// Short reference (`P12`), used in exports.
    pub code: String,
    pub status: PayoutStatus,
    pub currency: String,
    /// Rewards payable at this moment were taken.
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub cutoff: NaiveDateTime,
    /// Sum of the lines to be paid or paid (failed, released and cancelled lines excluded).
    /// From `processing` on it changes only when a line is marked failed.
    pub total_minor: i64,
    /// Ambassadors left out, with the reason (`below_minimum`, `missing_payout_details`,
    /// `suspended`, `not_active`); their balances carry over.
    pub skipped: Vec<Skipped>,
    /// The payment reference given when it was marked paid.
    pub reference: Option<String>,
    pub created_by: String,
    #[serde(serialize_with = "crate::store::utc::ser")]
    pub created_at: NaiveDateTime,
    /// The program version the batch was built with (its minimum payout applies to refunds
    /// that shrink a draft line).
    pub program_version_id: String,
    /// When it was locked for payment (`lock` or the PayPal download).
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub locked_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub paid_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::store::utc::ser_opt")]
    pub cancelled_at: Option<NaiveDateTime>,
    /// Why it was cancelled (required once it had been locked).
    pub cancel_reason: Option<String>,
    /// Present on the detail; omitted in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineView>>,
}

impl PayoutView {
    pub fn new(p: PayoutRow, lines: Option<Vec<LineView>>) -> Self {
        Self {
            status: p.status,
            code: p.code(),
            skipped: serde_json::from_str(&p.skipped).unwrap_or_default(),
            id: p.id,
            currency: p.currency,
            cutoff: p.cutoff,
            total_minor: p.total_minor,
            reference: p.reference,
            created_by: p.created_by,
            created_at: p.created_at,
            program_version_id: p.program_version_id,
            locked_at: p.locked_at,
            paid_at: p.paid_at,
            cancelled_at: p.cancelled_at,
            cancel_reason: p.cancel_reason,
            lines,
        }
    }
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<PayoutRow, ApiError> {
    payouts::table.find(id).select(PayoutRow::as_select()).first(conn).optional()?.ok_or(ApiError::NotFound("payout"))
}

fn find_line(conn: &mut DbConnection, payout_id: &str, line_id: &str) -> Result<LineRow, ApiError> {
    payout_lines::table
        .find(line_id)
        .filter(payout_lines::payout_id.eq(payout_id))
        .select(LineRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("payout line"))
}

/// A batch with its lines (and each line's ambassador name), lines in order.
pub fn detail(conn: &mut DbConnection, id: &str) -> Result<PayoutView, ApiError> {
    let payout = find(conn, id)?;
    let lines: Vec<(LineRow, String)> = payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(id))
        .order(payout_lines::number.asc())
        .select((LineRow::as_select(), ambassadors::name))
        .load(conn)?;
    Ok(PayoutView::new(payout, Some(lines.into_iter().map(|(l, name)| LineView::new(l, name)).collect())))
}

fn in_progress(draft_id: Option<&str>) -> ApiError {
    ApiError::Conflict {
        kind: "payout-in-progress",
        detail: match draft_id {
            Some(id) => format!("Draft payout {id} is open: lock it for payment or cancel it before creating another."),
            None => "Another payout draft was created at the same moment.".into(),
        },
        field: None,
    }
}

/// Takes the batch row's lock (a no-op update) and reads its status afresh. On PostgreSQL this
/// queues every change to the same batch behind each other, and the status read after the
/// wait is the committed one; SQLite's single writer does the same. Every change to a batch,
/// its lines or the rewards in them starts here, so a lock, payment, cancellation, refund or
/// suspension at the same moment is seen, never raced.
fn hold(conn: &mut DbConnection, payout_id: &str) -> Result<PayoutStatus, ApiError> {
    let found = diesel::update(payouts::table.find(payout_id))
        .set(payouts::updated_at.eq(payouts::updated_at))
        .execute(conn)?;
    if found == 0 {
        return Err(ApiError::NotFound("payout"));
    }
    Ok(find(conn, payout_id)?.status)
}

/// [`hold`] for the batch a line belongs to; returns (batch id, its status).
pub fn hold_batch_of_line(conn: &mut DbConnection, line_id: &str) -> Result<(String, PayoutStatus), ApiError> {
    let payout_id: String = payout_lines::table.find(line_id).select(payout_lines::payout_id).first(conn)?;
    let status = hold(conn, &payout_id)?;
    Ok((payout_id, status))
}

/// Re-sums the batch total from its live lines.
fn refresh_total(conn: &mut DbConnection, payout_id: &str) -> Result<(), ApiError> {
    let total: Option<i64> = payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::status.eq_any([LineStatus::Pending, LineStatus::Paid]))
        .select(crate::store::sum_bigint("amount_minor"))
        .first(conn)?;
    diesel::update(payouts::table.find(payout_id)).set(payouts::total_minor.eq(total.unwrap_or(0))).execute(conn)?;
    Ok(())
}

/// The ambassadors a new batch may pay, their rows locked until the batch is written. A
/// suspension at the same moment then either commits first (and the batch sees the ambassador
/// suspended and skips them) or waits for the batch (and takes the new line out of the draft):
/// never a suspended ambassador with a pending line in a draft. PostgreSQL locks the rows
/// `FOR UPDATE` in id order, so two batch creations never deadlock; SQLite's single writer
/// (`BEGIN IMMEDIATE`) serialises already.
fn candidates_locked(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<crate::store::ambassadors::AmbassadorRow>, ApiError> {
    use crate::store::ambassadors::AmbassadorRow;
    let query = ambassadors::table.filter(ambassadors::id.eq_any(ids)).order(ambassadors::id.asc());
    Ok(match conn {
        DbConnection::Postgres(pg) => query.select(AmbassadorRow::as_select()).for_update().load(pg)?,
        DbConnection::Sqlite(sqlite) => query.select(AmbassadorRow::as_select()).load(sqlite)?,
    })
}

fn current_draft(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    payouts::table.filter(payouts::status.eq(PayoutStatus::Draft)).select(payouts::id).first(conn).optional()
}

/// Creates the draft batch: per ambassador (active or closed, with payout details) all rewards
/// payable at `cutoff`, when they reach the program minimum. Returns the batch id.
pub fn create(conn: &mut DbConnection, cutoff: Option<NaiveDateTime>, actor: &Actor) -> Result<String, ApiError> {
    write_tx(conn, |conn| {
        if let Some(id) = current_draft(conn)? {
            return Err(in_progress(Some(&id)));
        }
        let program::Program { id: version_id, rules } = program::current(conn)?;
        let at = now();
        let cutoff = cutoff.unwrap_or(at);
        let due: Vec<(String, String, i64)> = rewards::table
            .filter(rewards::state.eq(RewardState::Open))
            .filter(rewards::holds_until.le(cutoff))
            .filter(rewards::created_at.le(cutoff))
            .order(rewards::id.asc())
            .select((rewards::id, rewards::ambassador_id, rewards::amount_minor))
            .load(conn)?;
        let mut by_ambassador: BTreeMap<String, (i64, Vec<String>)> = BTreeMap::new();
        for (id, ambassador_id, amount) in due {
            let entry = by_ambassador.entry(ambassador_id).or_default();
            entry.0 += amount;
            entry.1.push(id);
        }
        let mut lines = Vec::new();
        let mut skipped = Vec::new();
        let ids: Vec<String> = by_ambassador.keys().cloned().collect();
        for chunk in ids.chunks(500) {
            for a in candidates_locked(conn, chunk)? {
                let (payable_minor, reward_ids) = by_ambassador.remove(&a.id).unwrap_or_default();
                let candidate = Candidate { status: a.status(), method: a.payout(), payable_minor };
                match eligibility(&candidate, rules.min_payout_minor) {
                    Ok(()) => {
                        lines.push((a.id, candidate.method.expect("eligible has details"), payable_minor, reward_ids))
                    }
                    Err(reason) => {
                        skipped.push(Skipped { ambassador_id: a.id, reason: reason.as_str().to_owned(), payable_minor })
                    }
                }
            }
        }
        if lines.is_empty() {
            // On PostgreSQL a batch created at the same moment may have committed between our
            // draft check and the rewards read (which then finds them taken): say so, not
            // "nothing to pay".
            if let Some(id) = current_draft(conn)? {
                return Err(in_progress(Some(&id)));
            }
            return Err(ApiError::Unprocessable {
                kind: "nothing-to-pay",
                detail: format!(
                    "No ambassador has a payable balance of at least {} with payout details ({} skipped).",
                    Money::new(rules.min_payout_minor, rules.currency.clone()),
                    skipped.len()
                ),
                field: None,
            });
        }
        let number: Option<i32> = payouts::table.select(diesel::dsl::max(payouts::number)).first(conn)?;
        let id = new_id();
        let total: i64 = lines.iter().map(|l| l.2).sum();
        diesel::insert_into(payouts::table)
            .values((
                payouts::id.eq(&id),
                payouts::number.eq(number.unwrap_or(0) + 1),
                payouts::status.eq(PayoutStatus::Draft),
                payouts::currency.eq(rules.currency.as_str()),
                payouts::cutoff.eq(cutoff),
                payouts::total_minor.eq(total),
                payouts::skipped.eq(serde_json::to_string(&skipped).map_err(ApiError::internal)?),
                payouts::created_by.eq(actor.label()),
                payouts::created_at.eq(at),
                payouts::updated_at.eq(at),
                payouts::program_version_id.eq(&version_id),
            ))
            .execute(conn)
            .map_err(|e| if is_unique_violation(&e) { in_progress(None) } else { e.into() })?;
        let mut method_seq: BTreeMap<&'static str, i32> = BTreeMap::new();
        for (n, (ambassador_id, method, amount, reward_ids)) in lines.into_iter().enumerate() {
            let line_id = new_id();
            let seq = method_seq.entry(method.kind()).or_insert(0);
            *seq += 1;
            let address = match &method {
                PayoutMethod::Paypal { email } => Some(email.clone()),
                PayoutMethod::Bank { reference } => Some(reference.clone()),
                PayoutMethod::StoreCredit => None,
            };
            diesel::insert_into(payout_lines::table)
                .values((
                    payout_lines::id.eq(&line_id),
                    payout_lines::payout_id.eq(&id),
                    payout_lines::number.eq(n as i32 + 1),
                    payout_lines::ambassador_id.eq(&ambassador_id),
                    payout_lines::amount_minor.eq(amount),
                    payout_lines::currency.eq(rules.currency.as_str()),
                    payout_lines::payout_method.eq(method.kind()),
                    payout_lines::payout_address.eq(address),
                    payout_lines::method_seq.eq(*seq),
                    payout_lines::status.eq(LineStatus::Pending),
                    payout_lines::reward_count.eq(reward_ids.len() as i32),
                    payout_lines::created_at.eq(at),
                    payout_lines::updated_at.eq(at),
                ))
                .execute(conn)?;
            for chunk in reward_ids.chunks(500) {
                let moved = diesel::update(
                    rewards::table.filter(rewards::id.eq_any(chunk)).filter(rewards::state.eq(RewardState::Open)),
                )
                .set((
                    rewards::state.eq(RewardState::InPayout),
                    rewards::payout_line_id.eq(&line_id),
                    rewards::updated_at.eq(at),
                ))
                .execute(conn)?;
                // A refund voided one of them meanwhile: start over rather than pay a stale sum.
                if moved != chunk.len() {
                    return Err(StoreError::Stale.into());
                }
                let details = serde_json::json!({ "payout_id": id, "payout_line_id": line_id });
                audit_rewards(
                    conn,
                    actor,
                    chunk,
                    AuditAction::RewardInPayout,
                    RewardStatus::Payable.as_str(),
                    RewardState::InPayout.as_str(),
                    &details,
                )?;
            }
        }
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutCreated,
                entity_type: "payout",
                entity_id: &id,
                before: None,
                after: Some(PayoutStatus::Draft.as_str()),
                details: Some(serde_json::json!({
                    "cutoff": crate::store::utc::format(&cutoff),
                    "total_minor": total,
                    "skipped": skipped.len(),
                    "program_version_id": version_id,
                })),
            },
        )?;
        Ok(id)
    })
}

/// How a batch came to be locked for payment (kept in its audit event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedBy {
    /// `POST /v1/payouts/{id}/lock`: finance approved it (before paying it by bank, say).
    Approval,
    /// The PayPal upload file was downloaded: that file is what PayPal will pay.
    PaypalExport,
}

impl LockedBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::PaypalExport => "paypal_export",
        }
    }
}

/// Locks a draft for payment (`processing`): from now on its lines and amounts are what gets
/// paid. Approving a batch that is not a draft is 409 `invalid-transition`; downloading the
/// PayPal file of a batch already locked is the same file again and changes nothing; a PayPal
/// file with no line to pay locks nothing (422 `nothing-to-export`).
pub fn lock(conn: &mut DbConnection, id: &str, via: LockedBy, actor: &Actor) -> Result<(), ApiError> {
    write_tx(conn, |conn| -> Result<(), ApiError> {
        let from = hold(conn, id)?;
        // Checked under the batch's lock: a refund or suspension that released the last PayPal
        // line just before must not leave a locked batch behind an empty file.
        if via == LockedBy::PaypalExport && pending_paypal_lines(conn, id)? == 0 {
            return Err(nothing_to_export());
        }
        if via == LockedBy::PaypalExport && from == PayoutStatus::Processing {
            return Ok(());
        }
        let to = payout::transition(from, PayoutEvent::Lock)?;
        let at = now();
        let changed = diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
            .set((payouts::status.eq(to), payouts::locked_at.eq(at), payouts::updated_at.eq(at)))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        let batch = find(conn, id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLocked,
                entity_type: "payout",
                entity_id: id,
                before: Some(from.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "via": via.as_str(), "total_minor": batch.total_minor })),
            },
        )?)
    })
}

/// Marks a locked batch paid: exactly its pending lines (the locked ones) and their rewards
/// become paid, one e-mail per ambassador, and each reward refunded while the batch was locked
/// is clawed back (netted in a later batch). A draft is refused (409 `invalid-transition`,
/// telling finance to lock it first): what was paid must be fixed before the money left.
pub fn mark_paid(
    conn: &mut DbConnection,
    calendar: &Calendar,
    id: &str,
    reference: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    write_tx(conn, |conn| -> Result<(), ApiError> {
        let from = hold(conn, id)?;
        let to = payout::transition(from, PayoutEvent::MarkPaid).map_err(|e| {
            if from == PayoutStatus::Draft {
                lock_first(id)
            } else {
                e.into()
            }
        })?;
        let before = find(conn, id)?;
        let at = now();
        let changed = diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
            .set((
                payouts::status.eq(to),
                payouts::reference.eq(reference),
                payouts::paid_at.eq(at),
                payouts::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        let lines: Vec<LineRow> = payout_lines::table
            .filter(payout_lines::payout_id.eq(id))
            .filter(payout_lines::status.eq(LineStatus::Pending))
            .select(LineRow::as_select())
            .load(conn)?;
        let line_ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        pay_lines(conn, id, &line_ids, actor, at)?;
        let clawbacks = claw_back_refunded(conn, &line_ids, actor)?;
        notify_paid(conn, &before, &lines, calendar.date_of(at))?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutPaid,
                entity_type: "payout",
                entity_id: id,
                before: Some(from.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({
                    "reference": reference,
                    "lines": lines.len(),
                    "total_minor": before.total_minor,
                    "clawbacks": clawbacks,
                })),
            },
        )?)
    })
}

/// Marking a draft paid: the draft may have changed since finance paid from a report of it, so
/// the refusal says which step comes first.
fn lock_first(id: &str) -> ApiError {
    ApiError::InvalidTransition {
        entity: "payout",
        current: PayoutStatus::Draft.as_str().to_owned(),
        event: PayoutEvent::MarkPaid.as_str().to_owned(),
        hint: Some(format!(
            "Lock the batch for payment first (POST /v1/payouts/{id}/lock, or download its PayPal file), \
             pay exactly its lines, then mark it paid."
        )),
    }
}

/// Lines and the rewards in them → paid.
fn pay_lines(
    conn: &mut DbConnection,
    payout_id: &str,
    line_ids: &[&str],
    actor: &Actor,
    at: NaiveDateTime,
) -> Result<(), ApiError> {
    for chunk in line_ids.chunks(500) {
        diesel::update(payout_lines::table.filter(payout_lines::id.eq_any(chunk)))
            .set((payout_lines::status.eq(LineStatus::Paid), payout_lines::updated_at.eq(at)))
            .execute(conn)?;
        let reward_ids: Vec<String> = rewards::table
            .filter(rewards::payout_line_id.eq_any(chunk))
            .filter(rewards::state.eq(RewardState::InPayout))
            .select(rewards::id)
            .load(conn)?;
        for ids in reward_ids.chunks(500) {
            diesel::update(rewards::table.filter(rewards::id.eq_any(ids)))
                .set((rewards::state.eq(RewardState::Paid), rewards::paid_at.eq(at), rewards::updated_at.eq(at)))
                .execute(conn)?;
            let details = serde_json::json!({ "payout_id": payout_id });
            audit_rewards(
                conn,
                actor,
                ids,
                AuditAction::RewardPaid,
                RewardState::InPayout.as_str(),
                RewardState::Paid.as_str(),
                &details,
            )?;
        }
    }
    Ok(())
}

/// Earned rewards of refunded referrals in these lines, in the given state (`in_payout`: still
/// to be paid; `paid`: just paid).
fn refunded_in_lines(
    conn: &mut DbConnection,
    line_ids: &[&str],
    state: RewardState,
) -> Result<Vec<RewardRow>, ApiError> {
    Ok(rewards::table
        .inner_join(referrals::table)
        .filter(rewards::payout_line_id.eq_any(line_ids))
        .filter(rewards::state.eq(state))
        .filter(rewards::kind.eq(RewardKind::Earned))
        .filter(referrals::status.eq(ReferralStatus::Refunded))
        .order(rewards::id.asc())
        .select(RewardRow::as_select())
        .load(conn)?)
}

/// The file paid rewards whose referral was refunded after the lock: each gets its clawback
/// now (once: a referral that already has one, from an earlier payment, is skipped). Returns
/// how many were made.
fn claw_back_refunded(conn: &mut DbConnection, line_ids: &[&str], actor: &Actor) -> Result<usize, ApiError> {
    let mut made = 0;
    for chunk in line_ids.chunks(500) {
        let paid = refunded_in_lines(conn, chunk, RewardState::Paid)?;
        let referral_ids: Vec<&str> = paid.iter().filter_map(|r| r.referral_id.as_deref()).collect();
        let clawed: Vec<Option<String>> = rewards::table
            .filter(rewards::referral_id.eq_any(&referral_ids))
            .filter(rewards::kind.eq(RewardKind::Clawback))
            .select(rewards::referral_id)
            .load(conn)?;
        for reward in paid.iter().filter(|r| r.amount_minor > 0 && !clawed.contains(&r.referral_id)) {
            ledger::clawback(conn, reward, "referral refunded while its payout was being paid", actor)?;
            made += 1;
        }
    }
    Ok(made)
}

/// One "payout sent" e-mail per paid line.
fn notify_paid(
    conn: &mut DbConnection,
    batch: &PayoutRow,
    lines: &[LineRow],
    paid_on: chrono::NaiveDate,
) -> Result<(), ApiError> {
    for line in lines {
        notices::payout_sent(conn, &batch.id, &batch.code(), &line.ambassador_id, line.money(), paid_on)?;
    }
    Ok(())
}

/// Puts the rewards of the given lines back to payable, except rewards refunded while their
/// batch was locked: those were never paid, so the refund voids them now.
fn release_rewards(
    conn: &mut DbConnection,
    line_ids: &[&str],
    actor: &Actor,
    at: NaiveDateTime,
) -> Result<(), ApiError> {
    for chunk in line_ids.chunks(500) {
        for reward in refunded_in_lines(conn, chunk, RewardState::InPayout)? {
            ledger::void(conn, &reward, "refunded", actor)?;
        }
        let found: Vec<(String, RewardState)> = rewards::table
            .filter(rewards::payout_line_id.eq_any(chunk))
            .filter(rewards::state.eq_any([RewardState::InPayout, RewardState::Paid]))
            .select((rewards::id, rewards::state))
            .load(conn)?;
        let ids: Vec<&str> = found.iter().map(|r| r.0.as_str()).collect();
        diesel::update(rewards::table.filter(rewards::id.eq_any(&ids)))
            .set((
                rewards::state.eq(RewardState::Open),
                rewards::payout_line_id.eq(None::<String>),
                rewards::paid_at.eq(None::<NaiveDateTime>),
                rewards::updated_at.eq(at),
            ))
            .execute(conn)?;
        for (id, state) in &found {
            let details = serde_json::json!({ "payout_line_ids": chunk });
            audit_rewards(
                conn,
                actor,
                &[id.as_str()],
                AuditAction::RewardReleased,
                state.as_str(),
                RewardStatus::Payable.as_str(),
                &details,
            )?;
        }
    }
    Ok(())
}

/// One audit event per reward moved by a batch step.
fn audit_rewards<S: AsRef<str>>(
    conn: &mut DbConnection,
    actor: &Actor,
    ids: &[S],
    action: AuditAction,
    before: &str,
    after: &str,
    details: &serde_json::Value,
) -> Result<(), ApiError> {
    for id in ids {
        audit::record(
            conn,
            actor,
            Change {
                action,
                entity_type: "reward",
                entity_id: id.as_ref(),
                before: Some(before),
                after: Some(after),
                details: Some(details.clone()),
            },
        )?;
    }
    Ok(())
}

/// Cancels a draft or a locked batch: its rewards are payable again (a reward refunded while
/// the batch was locked is voided instead). A locked batch may already have been uploaded, so
/// cancelling it needs a reason, kept on the batch and in the audit trail.
pub fn cancel(conn: &mut DbConnection, id: &str, reason: Option<&str>, actor: &Actor) -> Result<(), ApiError> {
    write_tx(conn, |conn| -> Result<(), ApiError> {
        let from = hold(conn, id)?;
        let to = payout::transition(from, PayoutEvent::Cancel)?;
        if payout::cancel_needs_reason(from) && reason.is_none() {
            return Err(ApiError::validation(
                "reason",
                "is required to cancel a batch locked for payment: say why (for example, the file was never uploaded)",
            ));
        }
        let at = now();
        let changed = diesel::update(payouts::table.find(id).filter(payouts::status.eq(from)))
            .set((
                payouts::status.eq(to),
                payouts::cancelled_at.eq(at),
                payouts::cancel_reason.eq(reason),
                payouts::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        let line_ids: Vec<String> = payout_lines::table
            .filter(payout_lines::payout_id.eq(id))
            .filter(payout_lines::status.eq(LineStatus::Pending))
            .select(payout_lines::id)
            .load(conn)?;
        let refs: Vec<&str> = line_ids.iter().map(String::as_str).collect();
        release_rewards(conn, &refs, actor, at)?;
        for chunk in line_ids.chunks(500) {
            diesel::update(payout_lines::table.filter(payout_lines::id.eq_any(chunk)))
                .set((payout_lines::status.eq(LineStatus::Cancelled), payout_lines::updated_at.eq(at)))
                .execute(conn)?;
        }
        refresh_total(conn, id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutCancelled,
                entity_type: "payout",
                entity_id: id,
                before: Some(from.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "reason": reason, "lines_released": line_ids.len() })),
            },
        )?)
    })
}

/// Marks one line failed (in a draft, in a locked batch when the provider refused it, or after
/// payment when the money came back): its rewards are payable again (refunded ones voided)
/// and the batch total drops. The one change a locked batch allows.
pub fn fail_line(
    conn: &mut DbConnection,
    payout_id: &str,
    line_id: &str,
    reason: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    write_tx(conn, |conn| -> Result<(), ApiError> {
        hold(conn, payout_id)?;
        let line = find_line(conn, payout_id, line_id)?;
        let to = payout::fail_line(line.status)?;
        let at = now();
        let changed = diesel::update(payout_lines::table.find(line_id).filter(payout_lines::status.eq(&line.status)))
            .set((
                payout_lines::status.eq(to.as_str()),
                payout_lines::failure_reason.eq(reason),
                payout_lines::updated_at.eq(at),
            ))
            .execute(conn)?;
        ensure_unchanged(changed)?;
        release_rewards(conn, &[line_id], actor, at)?;
        refresh_total(conn, payout_id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLineFailed,
                entity_type: "payout_line",
                entity_id: line_id,
                before: Some(line.status.as_str()),
                after: Some(to.as_str()),
                details: Some(serde_json::json!({ "payout_id": payout_id, "reason": reason })),
            },
        )?)
    })
}

/// A refund of a reward that sits in a payout line (inside the refund's transaction, after the
/// referral's update). The batch is held first, so its state is the committed one:
/// - a draft: `void` voids the reward and the line is re-summed from the rewards still in it;
///   a line left empty or under the minimum payout of the program version the batch was built
///   with is released, its other rewards payable again (they carry over, as at creation);
/// - a locked batch: the line stays as it is (the money is on its way); paying the batch claws
///   the reward back, cancelling it or failing the line voids it.
pub fn refund_in_batch(
    conn: &mut DbConnection,
    reward: &RewardRow,
    actor: &Actor,
    void: impl FnOnce(&mut DbConnection) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let Some(line_id) = reward.payout_line_id.as_deref() else { return void(conn) };
    let (payout_id, status) = hold_batch_of_line(conn, line_id)?;
    match status {
        PayoutStatus::Draft => {}
        PayoutStatus::Processing => return refund_in_locked_batch(conn, reward, &payout_id, actor),
        // The reward was read before the batch was paid or cancelled: reload and retry.
        PayoutStatus::Paid | PayoutStatus::Cancelled => return Err(StoreError::Stale.into()),
    }
    let at = now();
    void(conn)?;
    let line: LineRow = payout_lines::table.find(line_id).select(LineRow::as_select()).first(conn)?;
    let (sum, count): (Option<i64>, i64) = rewards::table
        .filter(rewards::payout_line_id.eq(line_id))
        .filter(rewards::state.eq(RewardState::InPayout))
        .select((crate::store::sum_bigint("amount_minor"), diesel::dsl::count_star()))
        .first(conn)?;
    let amount = sum.unwrap_or(0);
    let version_id: String = payouts::table.find(&payout_id).select(payouts::program_version_id).first(conn)?;
    let min_payout = program::version(conn, &version_id)?.rules.min_payout_minor;
    let release = count == 0 || amount < min_payout.max(1);
    let status = if release { LineStatus::Released } else { LineStatus::Pending };
    diesel::update(payout_lines::table.find(line_id))
        .set((
            payout_lines::amount_minor.eq(amount),
            payout_lines::reward_count.eq(count as i32),
            payout_lines::status.eq(status.as_str()),
            payout_lines::updated_at.eq(at),
        ))
        .execute(conn)?;
    if release {
        release_rewards(conn, &[line_id], actor, at)?;
    }
    refresh_total(conn, &payout_id)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: if release { AuditAction::PayoutLineReleased } else { AuditAction::PayoutLineReduced },
            entity_type: "payout_line",
            entity_id: line_id,
            before: Some(line.status.as_str()),
            after: Some(status.as_str()),
            details: Some(serde_json::json!({
                "payout_id": payout_id,
                "voided_reward_id": reward.id,
                "amount_minor": amount,
                "min_payout_minor": min_payout,
                "program_version_id": version_id,
            })),
        },
    )?)
}

/// The refund is recorded against the reward; line, amounts and batch stay as locked.
fn refund_in_locked_batch(
    conn: &mut DbConnection,
    reward: &RewardRow,
    payout_id: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardRefundedInLockedPayout,
            entity_type: "reward",
            entity_id: &reward.id,
            before: Some(RewardState::InPayout.as_str()),
            after: Some(RewardState::InPayout.as_str()),
            details: Some(serde_json::json!({
                "payout_id": payout_id,
                "payout_line_id": reward.payout_line_id,
                "then": "clawed back when the batch is paid; voided if it is cancelled or the line fails",
            })),
        },
    )?)
}

/// Takes a suspended ambassador's pending lines out of any draft batch (inside the
/// suspension's transaction): suspended ambassadors are not paid; their rewards wait. A line in
/// a locked batch stays: the money is on its way (only future rewards are held).
pub fn release_for_suspended(conn: &mut DbConnection, ambassador_id: &str, actor: &Actor) -> Result<(), ApiError> {
    let lines: Vec<(String, String)> = payout_lines::table
        .inner_join(payouts::table)
        .filter(payout_lines::ambassador_id.eq(ambassador_id))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .filter(payouts::status.eq(PayoutStatus::Draft))
        .select((payout_lines::id, payout_lines::payout_id))
        .load(conn)?;
    let at = now();
    for (line_id, payout_id) in lines {
        // Locked between the query and now: the line stays.
        if !hold(conn, &payout_id)?.lines_may_change() {
            continue;
        }
        let changed =
            diesel::update(payout_lines::table.find(&line_id).filter(payout_lines::status.eq(LineStatus::Pending)))
                .set((
                    payout_lines::status.eq(LineStatus::Released),
                    payout_lines::failure_reason.eq("ambassador suspended"),
                    payout_lines::updated_at.eq(at),
                ))
                .execute(conn)?;
        ensure_unchanged(changed)?;
        release_rewards(conn, &[line_id.as_str()], actor, at)?;
        refresh_total(conn, &payout_id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLineReleased,
                entity_type: "payout_line",
                entity_id: &line_id,
                before: Some(LineStatus::Pending.as_str()),
                after: Some(LineStatus::Released.as_str()),
                details: Some(serde_json::json!({ "payout_id": payout_id, "reason": "ambassador suspended" })),
            },
        )?;
    }
    Ok(())
}

pub fn list(
    conn: &mut DbConnection,
    status: Option<PayoutStatus>,
    page: &PageRequest,
) -> Result<Page<PayoutRow>, ApiError> {
    let mut query = payouts::table.select(PayoutRow::as_select()).order(payouts::id.desc()).into_boxed();
    if let Some(s) = status {
        query = query.filter(payouts::status.eq(s.as_str()));
    }
    if let Some(after) = &page.after_id {
        query = query.filter(payouts::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.id))
}

/// A line to export, with its ambassador's name and e-mail.
pub type ExportLine = (LineRow, String, String);

/// Up to `limit` live lines of a batch after line `after_number`, in line order. Exports page
/// through a batch with this so memory stays flat.
pub fn lines_after(
    conn: &mut DbConnection,
    payout_id: &str,
    after_number: i32,
    limit: i64,
) -> Result<Vec<ExportLine>, ApiError> {
    Ok(payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::number.gt(after_number))
        .filter(payout_lines::status.eq_any([LineStatus::Pending, LineStatus::Paid]))
        .order(payout_lines::number.asc())
        .select((LineRow::as_select(), ambassadors::name, ambassadors::email))
        .limit(limit)
        .load(conn)?)
}

/// How many PayPal lines of a batch are still to be paid: what its PayPal file would hold.
/// Released, failed and cancelled lines are not in the file.
pub fn pending_paypal_lines(conn: &mut DbConnection, payout_id: &str) -> Result<i64, ApiError> {
    Ok(payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::payout_method.eq("paypal"))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .count()
        .get_result(conn)?)
}

/// A PayPal file would be empty: nothing to upload, so nothing is locked either.
pub fn nothing_to_export() -> ApiError {
    ApiError::Unprocessable {
        kind: "nothing-to-export",
        detail: "No line of this batch is to be paid by PayPal (none was, or each was released, failed or \
                 cancelled)."
            .into(),
        field: Some("format"),
    }
}

/// The highest PayPal sequence number in a batch, whatever its line's status (`None`: no
/// PayPal line). Parts of the PayPal file are fixed ranges of these numbers.
pub fn last_paypal_seq(conn: &mut DbConnection, payout_id: &str) -> Result<Option<i32>, ApiError> {
    Ok(payout_lines::table
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::payout_method.eq("paypal"))
        .select(diesel::dsl::max(payout_lines::method_seq))
        .first(conn)?)
}

/// Up to `limit` pending PayPal lines with a sequence number in `(after_seq, last_seq]`, in
/// order. Parts are fixed ranges of sequence numbers, so they never overlap or shift.
pub fn paypal_lines(
    conn: &mut DbConnection,
    payout_id: &str,
    after_seq: i32,
    last_seq: i32,
    limit: i64,
) -> Result<Vec<ExportLine>, ApiError> {
    Ok(payout_lines::table
        .inner_join(ambassadors::table)
        .filter(payout_lines::payout_id.eq(payout_id))
        .filter(payout_lines::payout_method.eq("paypal"))
        .filter(payout_lines::method_seq.gt(after_seq).and(payout_lines::method_seq.le(last_seq)))
        .filter(payout_lines::status.eq(LineStatus::Pending))
        .order(payout_lines::method_seq.asc())
        .select((LineRow::as_select(), ambassadors::name, ambassadors::email))
        .limit(limit)
        .load(conn)?)
}

/// An ambassador's payout lines (pending, paid or failed), with their batch.
pub fn lines_for_ambassador(
    conn: &mut DbConnection,
    ambassador_id: &str,
    page: &PageRequest,
) -> Result<Page<(LineRow, PayoutRow)>, ApiError> {
    let mut query = payout_lines::table
        .inner_join(payouts::table)
        .filter(payout_lines::ambassador_id.eq(ambassador_id))
        .filter(payout_lines::status.eq_any([
            LineStatus::Pending.as_str(),
            LineStatus::Paid.as_str(),
            LineStatus::Failed.as_str(),
        ]))
        .order(payout_lines::id.desc())
        .select((LineRow::as_select(), PayoutRow::as_select()))
        .into_boxed();
    if let Some(after) = &page.after_id {
        query = query.filter(payout_lines::id.lt(after.clone()));
    }
    let rows = query.limit(page.limit + 1).load(conn)?;
    Ok(page.finish(rows, |r| &r.0.id))
}
