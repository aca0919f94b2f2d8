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
//! Never twice: see `store::payouts` (one line per reward, compare-and-set on every state, one
//! draft at most, and every change to a batch starts by holding the batch row).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::Connection;
use serde::Serialize;

use super::audit::{self, Actor, Change, EntityType};
use super::error::{Found, Result};
use super::notices;
use super::Error;
use crate::db::{bulk_write_tx, now, write_tx, DbConnection};
use crate::domain::ambassador::PayoutMethod;
use crate::domain::audit::AuditAction;
use crate::domain::calendar::Calendar;
use crate::domain::money::Money;
use crate::domain::payout::PaypalPart;
use crate::domain::payout::{self, eligibility, paypal_part, Candidate, LineStatus, PayoutEvent, PayoutStatus};
use crate::domain::program::ProgramRules;
use crate::domain::reward::{RewardState, RewardStatus};
use crate::store::payouts::{self, ExportLine, LineRow, NewBatch, NewLine, PayoutRow, PayoutView, Skipped};
use crate::store::rewards::RewardRow;
use crate::store::{ensure_unchanged, new_id, program, Page, PageRequest, StoreError};

/// Ids per `IN (…)` list when reading or updating by id.
const CHUNK: usize = 500;

fn in_progress(draft_id: Option<&str>) -> Error {
    Error::Conflict {
        kind: "payout-in-progress",
        detail: match draft_id {
            Some(id) => format!("Draft payout {id} is open: lock it for payment or cancel it before creating another."),
            None => "Another payout draft was created at the same moment.".into(),
        },
        field: None,
    }
}

/// Holds the batch (see `store::payouts::hold`) and returns its committed status.
fn hold(conn: &mut DbConnection, payout_id: &str) -> Result<PayoutStatus> {
    payouts::hold(conn, payout_id).or_not_found("payout")
}

pub fn detail(conn: &mut DbConnection, id: &str) -> Result<PayoutView> {
    payouts::detail(conn, id).or_not_found("payout")
}

/// A batch as people read it: its detail, who created it (the member's or the key's name) and
/// the names of the ambassadors it skipped, by id.
#[derive(Debug, Serialize)]
pub struct NamedBatch {
    #[serde(flatten)]
    pub batch: PayoutView,
    pub created_by_name: String,
    pub skipped_names: BTreeMap<String, String>,
}

pub fn detail_named(conn: &mut DbConnection, id: &str) -> Result<NamedBatch> {
    let batch = detail(conn, id)?;
    let created_by_name = super::team::actor_named(conn, &batch.created_by)?;
    let ids: Vec<&str> = batch.skipped.iter().map(|s| s.ambassador_id.as_str()).collect();
    let skipped_names = payouts::ambassador_names(conn, &ids)?;
    Ok(NamedBatch { batch, created_by_name, skipped_names })
}

pub fn list(conn: &mut DbConnection, status: Option<PayoutStatus>, page: &PageRequest) -> Result<Page<PayoutRow>> {
    Ok(payouts::list(conn, status, page)?)
}

/// What creating a batch now would do, written nowhere: who is paid (a line each) and who is
/// skipped and why.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub currency: String,
    pub min_payout_minor: i64,
    pub total_minor: i64,
    pub lines: Vec<PreviewLine>,
    pub skipped: Vec<PreviewSkip>,
    /// The open draft, which has to be locked or cancelled before another batch is made.
    pub draft_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PreviewLine {
    pub ambassador_id: String,
    pub ambassador_name: String,
    pub payout_method: &'static str,
    pub amount_minor: i64,
    pub reward_count: usize,
}

#[derive(Debug, Serialize)]
pub struct PreviewSkip {
    pub ambassador_id: String,
    pub ambassador_name: String,
    pub reason: String,
    pub payable_minor: i64,
}

/// The next batch as [`create`] would make it now (the same planning, in a transaction that
/// writes nothing).
pub fn preview(conn: &mut DbConnection) -> Result<Preview> {
    conn.transaction(|conn| {
        let draft_id = payouts::current_draft(conn)?;
        let rules = program::current(conn)?.rules;
        let (lines, skipped) = plan(conn, now(), &rules)?;
        let ids: Vec<&str> = lines
            .iter()
            .map(|l| l.ambassador_id.as_str())
            .chain(skipped.iter().map(|s| s.ambassador_id.as_str()))
            .collect();
        let names = payouts::ambassador_names(conn, &ids)?;
        let name = |id: &str| names.get(id).cloned().unwrap_or_default();
        let mut lines: Vec<PreviewLine> = lines
            .into_iter()
            .map(|l| PreviewLine {
                ambassador_name: name(&l.ambassador_id),
                payout_method: l.method.kind(),
                amount_minor: l.amount_minor,
                reward_count: l.reward_ids.len(),
                ambassador_id: l.ambassador_id,
            })
            .collect();
        lines.sort_by(|a, b| a.ambassador_name.cmp(&b.ambassador_name));
        let mut skipped: Vec<PreviewSkip> = skipped
            .into_iter()
            .map(|s| PreviewSkip {
                ambassador_name: name(&s.ambassador_id),
                reason: s.reason,
                payable_minor: s.payable_minor,
                ambassador_id: s.ambassador_id,
            })
            .collect();
        skipped.sort_by(|a, b| a.ambassador_name.cmp(&b.ambassador_name));
        Ok(Preview {
            currency: rules.currency.to_string(),
            min_payout_minor: rules.min_payout_minor,
            total_minor: lines.iter().map(|l| l.amount_minor).sum(),
            lines,
            skipped,
            draft_id,
        })
    })
}

/// A line a new batch will make: the ambassador, where the money goes, and the rewards in it.
struct PlannedLine {
    ambassador_id: String,
    method: PayoutMethod,
    amount_minor: i64,
    reward_ids: Vec<String>,
}

/// Creates the draft batch: per ambassador (active or closed, with payout details) all rewards
/// payable at `cutoff`, when they reach the program minimum. Returns the batch id.
pub fn create(conn: &mut DbConnection, cutoff: Option<NaiveDateTime>, actor: &Actor) -> Result<String> {
    bulk_write_tx(conn, |conn| {
        if let Some(id) = payouts::current_draft(conn)? {
            return Err(in_progress(Some(&id)));
        }
        let program::Program { id: version_id, rules } = program::current(conn)?;
        let at = now();
        let cutoff = cutoff.unwrap_or(at);
        let (lines, skipped) = plan(conn, cutoff, &rules)?;
        if lines.is_empty() {
            return Err(nothing_to_pay(conn, &rules, skipped.len())?);
        }
        let id = new_id();
        let total: i64 = lines.iter().map(|l| l.amount_minor).sum();
        let batch = NewBatch {
            id: &id,
            number: payouts::next_number(conn)?,
            currency: rules.currency.as_str(),
            cutoff,
            total_minor: total,
            skipped: &serde_json::to_string(&skipped).map_err(Error::internal)?,
            created_by: &actor.label(),
            at,
            program_version_id: &version_id,
        };
        payouts::insert_batch(conn, &batch).map_err(|e| if e.lost_race() { in_progress(None) } else { e.into() })?;
        write_lines(conn, &batch, &lines, actor)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutCreated,
                entity_type: EntityType::Payout,
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

/// The lines a batch at `cutoff` makes and the ambassadors it skips, with the ambassadors' rows
/// locked until the batch is written (see `store::payouts::candidates_locked`).
fn plan(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    rules: &ProgramRules,
) -> Result<(Vec<PlannedLine>, Vec<Skipped>)> {
    let mut by_ambassador: BTreeMap<String, (i64, Vec<String>)> = BTreeMap::new();
    for (id, ambassador_id, amount) in payouts::payable_rewards(conn, cutoff)? {
        let entry = by_ambassador.entry(ambassador_id).or_default();
        entry.0 += amount;
        entry.1.push(id);
    }
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    let ids: Vec<String> = by_ambassador.keys().cloned().collect();
    for a in payouts::candidates_locked(conn, &ids)? {
        let (payable_minor, reward_ids) = by_ambassador.remove(&a.id).unwrap_or_default();
        let candidate = Candidate { status: a.status(), method: a.payout(), payable_minor };
        match eligibility(&candidate, rules.min_payout_minor) {
            Ok(()) => lines.push(PlannedLine {
                ambassador_id: a.id,
                method: candidate.method.expect("eligible has details"),
                amount_minor: payable_minor,
                reward_ids,
            }),
            Err(reason) => {
                skipped.push(Skipped { ambassador_id: a.id, reason: reason.as_str().to_owned(), payable_minor })
            }
        }
    }
    Ok((lines, skipped))
}

/// No line to make. On PostgreSQL a batch created at the same moment may have committed
/// between the draft check and the rewards read (which then finds them taken): say so, not
/// "nothing to pay".
fn nothing_to_pay(conn: &mut DbConnection, rules: &ProgramRules, skipped: usize) -> Result<Error> {
    if let Some(id) = payouts::current_draft(conn)? {
        return Ok(in_progress(Some(&id)));
    }
    Ok(Error::Unprocessable {
        kind: "nothing-to-pay",
        detail: format!(
            "No ambassador has a payable balance of at least {} with payout details ({skipped} skipped).",
            Money::new(rules.min_payout_minor, rules.currency.clone()),
        ),
        field: None,
    })
}

/// Writes the batch's lines and moves their rewards into them, set by set (a statement per
/// thousands of rows: see `store::payouts::{insert_lines, take_rewards}` and
/// `store::audit::record_many`), all in the batch's transaction. Lines are numbered in order,
/// and within their payout method (the PayPal file's parts).
fn write_lines(conn: &mut DbConnection, batch: &NewBatch<'_>, lines: &[PlannedLine], actor: &Actor) -> Result<()> {
    let line_ids: Vec<String> = lines.iter().map(|_| new_id()).collect();
    let mut method_seq: BTreeMap<&'static str, i32> = BTreeMap::new();
    let rows: Vec<NewLine<'_>> = lines
        .iter()
        .zip(&line_ids)
        .enumerate()
        .map(|(n, (line, id))| {
            let seq = method_seq.entry(line.method.kind()).or_insert(0);
            *seq += 1;
            NewLine {
                id,
                payout_id: batch.id,
                number: n as i32 + 1,
                ambassador_id: &line.ambassador_id,
                amount_minor: line.amount_minor,
                currency: batch.currency,
                payout_method: line.method.kind(),
                payout_address: match &line.method {
                    PayoutMethod::Paypal { email } => Some(email.as_str()),
                    PayoutMethod::Bank { reference } => Some(reference.as_str()),
                    PayoutMethod::StoreCredit => None,
                },
                method_seq: *seq,
                reward_count: line.reward_ids.len() as i32,
                at: batch.at,
            }
        })
        .collect();
    payouts::insert_lines(conn, &rows)?;
    let moves: Vec<(&str, &str)> = lines
        .iter()
        .zip(&line_ids)
        .flat_map(|(l, line_id)| l.reward_ids.iter().map(move |r| (r.as_str(), line_id.as_str())))
        .collect();
    // A refund voided one of them meanwhile: start over rather than pay a stale sum.
    if payouts::take_rewards(conn, &moves, batch.at)? != moves.len() {
        return Err(StoreError::Stale.into());
    }
    let moved = (RewardStatus::Payable.as_str(), RewardState::InPayout.as_str());
    let changes = lines.iter().zip(&line_ids).flat_map(|(line, line_id)| {
        let details = serde_json::json!({ "payout_id": batch.id, "payout_line_id": line_id });
        line.reward_ids.iter().map(move |id| reward_change(id, AuditAction::RewardInPayout, moved, &details))
    });
    Ok(audit::record_many(conn, actor, changes)?)
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

/// A PayPal file would be empty: nothing to upload, so nothing is locked either.
pub fn nothing_to_export() -> Error {
    Error::Unprocessable {
        kind: "nothing-to-export",
        detail: "No line of this batch is to be paid by PayPal (none was, or each was released, failed or \
                 cancelled)."
            .into(),
        field: Some("format"),
    }
}

/// Locks a draft for payment (`processing`): from now on its lines and amounts are what gets
/// paid. Approving a batch that is not a draft is 409 `invalid-transition`; downloading the
/// PayPal file of a batch already locked is the same file again and changes nothing; a PayPal
/// file with no line to pay locks nothing (422 `nothing-to-export`).
pub fn lock(conn: &mut DbConnection, id: &str, via: LockedBy, actor: &Actor) -> Result<()> {
    write_tx(conn, |conn| {
        let from = hold(conn, id)?;
        // Checked under the batch's lock: a refund or suspension that released the last PayPal
        // line just before must not leave a locked batch behind an empty file.
        if via == LockedBy::PaypalExport && !payouts::has_pending_paypal_line(conn, id)? {
            return Err(nothing_to_export());
        }
        if via == LockedBy::PaypalExport && from == PayoutStatus::Processing {
            return Ok(());
        }
        let to = payout::transition(from, PayoutEvent::Lock)?;
        let at = now();
        ensure_unchanged(payouts::set_locked(conn, id, from, to, at)?)?;
        let batch = payouts::find(conn, id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLocked,
                entity_type: EntityType::Payout,
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
pub fn mark_paid(conn: &mut DbConnection, calendar: &Calendar, id: &str, reference: &str, actor: &Actor) -> Result<()> {
    write_tx(conn, |conn| {
        let from = hold(conn, id)?;
        let to = payout::transition(from, PayoutEvent::MarkPaid).map_err(|e| {
            if from == PayoutStatus::Draft {
                lock_first(id)
            } else {
                e.into()
            }
        })?;
        let before = payouts::find(conn, id)?;
        let at = now();
        ensure_unchanged(payouts::set_paid(conn, id, (from, to), reference, at)?)?;
        let lines = payouts::pending_lines(conn, id)?;
        let line_ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        pay_lines(conn, id, &line_ids, actor, at)?;
        let clawbacks = claw_back_refunded(conn, &line_ids, actor)?;
        notify_paid(conn, &before, &lines, calendar.date_of(at))?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutPaid,
                entity_type: EntityType::Payout,
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
fn lock_first(id: &str) -> Error {
    Error::InvalidTransition {
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
) -> Result<()> {
    for chunk in line_ids.chunks(CHUNK) {
        payouts::set_lines_status(conn, chunk, LineStatus::Paid, at)?;
        let reward_ids = payouts::reward_ids_in_lines(conn, chunk, RewardState::InPayout)?;
        for ids in reward_ids.chunks(CHUNK) {
            payouts::set_rewards_paid(conn, ids, at)?;
            let details = serde_json::json!({ "payout_id": payout_id });
            let moved = (RewardState::InPayout.as_str(), RewardState::Paid.as_str());
            audit_rewards(conn, actor, ids, AuditAction::RewardPaid, moved, &details)?;
        }
    }
    Ok(())
}

/// The file paid rewards whose referral was refunded after the lock: each gets its clawback
/// now (once: a referral that already has one, from an earlier payment, is skipped). Returns
/// how many were made.
fn claw_back_refunded(conn: &mut DbConnection, line_ids: &[&str], actor: &Actor) -> Result<usize> {
    let mut made = 0;
    for chunk in line_ids.chunks(CHUNK) {
        let paid = payouts::refunded_in_lines(conn, chunk, RewardState::Paid)?;
        let referral_ids: Vec<&str> = paid.iter().filter_map(|r| r.referral_id.as_deref()).collect();
        let clawed = payouts::clawed_back(conn, &referral_ids)?;
        for reward in paid.iter().filter(|r| r.amount_minor > 0 && !clawed.contains(&r.referral_id)) {
            crate::app::ledger::clawback(conn, reward, "referral refunded while its payout was being paid", actor)?;
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
) -> Result<()> {
    for line in lines {
        notices::payout_sent(conn, &batch.id, &batch.code(), &line.ambassador_id, line.money(), paid_on)?;
    }
    Ok(())
}

/// Puts the rewards of the given lines back to payable, except rewards refunded while their
/// batch was locked: those were never paid, so the refund voids them now.
fn release_rewards(conn: &mut DbConnection, line_ids: &[&str], actor: &Actor, at: NaiveDateTime) -> Result<()> {
    for chunk in line_ids.chunks(CHUNK) {
        for reward in payouts::refunded_in_lines(conn, chunk, RewardState::InPayout)? {
            crate::app::ledger::void(conn, &reward, "refunded", actor)?;
        }
        let found = payouts::rewards_in_lines(conn, chunk)?;
        let ids: Vec<&str> = found.iter().map(|r| r.0.as_str()).collect();
        payouts::reopen_rewards(conn, &ids, at)?;
        let details = serde_json::json!({ "payout_line_ids": chunk });
        let changes = found.iter().map(|(id, state)| {
            reward_change(id, AuditAction::RewardReleased, (state.as_str(), RewardStatus::Payable.as_str()), &details)
        });
        audit::record_many(conn, actor, changes)?;
    }
    Ok(())
}

/// One audit event per reward moved by a batch step (`moved`: from, to), written in bulk.
fn audit_rewards<S: AsRef<str>>(
    conn: &mut DbConnection,
    actor: &Actor,
    ids: &[S],
    action: AuditAction,
    moved: (&str, &str),
    details: &serde_json::Value,
) -> Result<()> {
    let changes = ids.iter().map(|id| reward_change(id.as_ref(), action, moved, details));
    Ok(audit::record_many(conn, actor, changes)?)
}

/// The audit event of one reward moved by a batch step.
fn reward_change<'a>(
    id: &'a str,
    action: AuditAction,
    (before, after): (&'a str, &'a str),
    details: &serde_json::Value,
) -> Change<'a> {
    Change {
        action,
        entity_type: EntityType::Reward,
        entity_id: id,
        before: Some(before),
        after: Some(after),
        details: Some(details.clone()),
    }
}

/// Cancels a draft or a locked batch: its rewards are payable again (a reward refunded while
/// the batch was locked is voided instead). A locked batch may already have been uploaded, so
/// cancelling it needs a reason, kept on the batch and in the audit trail.
pub fn cancel(conn: &mut DbConnection, id: &str, reason: Option<&str>, actor: &Actor) -> Result<()> {
    write_tx(conn, |conn| {
        let from = hold(conn, id)?;
        let to = payout::transition(from, PayoutEvent::Cancel)?;
        if payout::cancel_needs_reason(from) && reason.is_none() {
            return Err(Error::validation(
                "reason",
                "is required to cancel a batch locked for payment: say why (for example, the file was never uploaded)",
            ));
        }
        let at = now();
        ensure_unchanged(payouts::set_cancelled(conn, id, (from, to), reason, at)?)?;
        let line_ids = payouts::pending_line_ids(conn, id)?;
        let refs: Vec<&str> = line_ids.iter().map(String::as_str).collect();
        release_rewards(conn, &refs, actor, at)?;
        for chunk in line_ids.chunks(CHUNK) {
            payouts::set_lines_status(conn, chunk, LineStatus::Cancelled, at)?;
        }
        payouts::refresh_total(conn, id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutCancelled,
                entity_type: EntityType::Payout,
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
pub fn fail_line(conn: &mut DbConnection, payout_id: &str, line_id: &str, reason: &str, actor: &Actor) -> Result<()> {
    write_tx(conn, |conn| {
        hold(conn, payout_id)?;
        let line = payouts::find_line(conn, payout_id, line_id).or_not_found("payout line")?;
        let to = payout::fail_line(line.status)?;
        let at = now();
        ensure_unchanged(payouts::set_line_failed(conn, line_id, (line.status, to), reason, at)?)?;
        release_rewards(conn, &[line_id], actor, at)?;
        payouts::refresh_total(conn, payout_id)?;
        Ok(audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLineFailed,
                entity_type: EntityType::PayoutLine,
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
/// - a draft: the reward is voided and the line is re-summed from the rewards still in it;
///   a line left empty or under the minimum payout of the program version the batch was built
///   with is released, its other rewards payable again (they carry over, as at creation);
/// - a locked batch: the line stays as it is (the money is on its way); paying the batch claws
///   the reward back, cancelling it or failing the line voids it.
pub fn refund_in_batch(conn: &mut DbConnection, reward: &RewardRow, actor: &Actor) -> Result<()> {
    let void = |c: &mut DbConnection| super::ledger::void(c, reward, "refunded", actor);
    let Some(line_id) = reward.payout_line_id.as_deref() else { return void(conn) };
    let (payout_id, status) = payouts::hold_batch_of_line(conn, line_id)?;
    match status {
        PayoutStatus::Draft => {}
        PayoutStatus::Processing => return refund_in_locked_batch(conn, reward, &payout_id, actor),
        // The reward was read before the batch was paid or cancelled: reload and retry.
        PayoutStatus::Paid | PayoutStatus::Cancelled => return Err(StoreError::Stale.into()),
    }
    void(conn)?;
    shrink_draft_line(conn, reward, line_id, &payout_id, actor)
}

/// A draft line after a refund voided one of its rewards: re-summed, or released when left
/// empty or under the minimum payout of the batch's program version.
fn shrink_draft_line(
    conn: &mut DbConnection,
    reward: &RewardRow,
    line_id: &str,
    payout_id: &str,
    actor: &Actor,
) -> Result<()> {
    let at = now();
    let line = payouts::line(conn, line_id)?;
    let (sum, count) = payouts::line_rewards_sum(conn, line_id)?;
    let amount = sum.unwrap_or(0);
    let version_id = payouts::program_version_of(conn, payout_id)?;
    let min_payout = program::version(conn, &version_id)?.rules.min_payout_minor;
    let release = count == 0 || amount < min_payout.max(1);
    let status = if release { LineStatus::Released } else { LineStatus::Pending };
    payouts::resize_line(conn, line_id, (amount, count), status, at)?;
    if release {
        release_rewards(conn, &[line_id], actor, at)?;
    }
    payouts::refresh_total(conn, payout_id)?;
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: if release { AuditAction::PayoutLineReleased } else { AuditAction::PayoutLineReduced },
            entity_type: EntityType::PayoutLine,
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
fn refund_in_locked_batch(conn: &mut DbConnection, reward: &RewardRow, payout_id: &str, actor: &Actor) -> Result<()> {
    Ok(audit::record(
        conn,
        actor,
        Change {
            action: AuditAction::RewardRefundedInLockedPayout,
            entity_type: EntityType::Reward,
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
pub fn release_for_suspended(conn: &mut DbConnection, ambassador_id: &str, actor: &Actor) -> Result<()> {
    let lines = payouts::pending_draft_lines_of(conn, ambassador_id)?;
    let at = now();
    for (line_id, payout_id) in lines {
        // Locked between the query and now: the line stays.
        if !hold(conn, &payout_id)?.lines_may_change() {
            continue;
        }
        ensure_unchanged(payouts::release_line(conn, &line_id, "ambassador suspended", at)?)?;
        release_rewards(conn, &[line_id.as_str()], actor, at)?;
        payouts::refresh_total(conn, &payout_id)?;
        audit::record(
            conn,
            actor,
            Change {
                action: AuditAction::PayoutLineReleased,
                entity_type: EntityType::PayoutLine,
                entity_id: &line_id,
                before: Some(LineStatus::Pending.as_str()),
                after: Some(LineStatus::Released.as_str()),
                details: Some(serde_json::json!({ "payout_id": payout_id, "reason": "ambassador suspended" })),
            },
        )?;
    }
    Ok(())
}

/// The batch a generic CSV report is made of (any batch; it locks nothing).
pub fn for_report(conn: &mut DbConnection, id: &str) -> Result<PayoutRow> {
    payouts::find(conn, id).or_not_found("payout")
}

/// The batch and which part of its PayPal upload file to send, after locking the batch for
/// payment: that file is the payment, so from this download on the lines in it are fixed.
/// Refused for a paid or cancelled batch (uploading it again would pay twice, or pay what was
/// called off) and when no PayPal line is left to pay (nothing is locked then).
pub fn for_paypal(
    conn: &mut DbConnection,
    id: &str,
    (part, rows_per_file): (i64, i64),
    actor: &Actor,
) -> Result<(PayoutRow, PaypalPart)> {
    let batch = payouts::find(conn, id).or_not_found("payout")?;
    let last_seq = payouts::last_paypal_seq(conn, id)?;
    let pending_paypal = payouts::has_pending_paypal_line(conn, id)?;
    if !batch.status.exportable_for_payment() {
        return Err(Error::InvalidTransition {
            entity: "payout",
            current: batch.status.to_string(),
            event: "export for PayPal".into(),
            hint: None,
        });
    }
    // Decided on the lines the file would hold (pending PayPal lines), not on every PayPal
    // line ever made: a draft whose PayPal lines were all released has no file, and
    // downloading nothing must not lock it. The lock re-checks under the batch lock.
    let Some(last_seq) = last_seq.filter(|s| *s > 0 && pending_paypal) else {
        return Err(nothing_to_export());
    };
    let part = paypal_part(last_seq, rows_per_file, part)
        .map_err(|parts| Error::validation("part", format!("must be between 1 and {parts}")))?;
    lock(conn, id, LockedBy::PaypalExport, actor)?;
    Ok((batch, part))
}

/// The live lines of a batch numbered in `(after, last]` (the generic report's pages).
pub fn report_lines(conn: &mut DbConnection, id: &str, range: (i32, i32)) -> Result<Vec<ExportLine>> {
    Ok(payouts::lines_between(conn, id, range)?)
}

/// The highest line number of a batch (0: none), where its generic report ends.
pub fn last_line_number(conn: &mut DbConnection, id: &str) -> Result<i32> {
    Ok(payouts::last_line_number(conn, id)?.unwrap_or(0))
}

/// The pending PayPal lines with a sequence number in `(after_seq, last_seq]` (the PayPal
/// file's pages).
pub fn paypal_lines(conn: &mut DbConnection, id: &str, (after_seq, last_seq): (i32, i32)) -> Result<Vec<ExportLine>> {
    Ok(payouts::paypal_lines(conn, id, after_seq, last_seq)?)
}
