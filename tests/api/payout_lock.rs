//! The file that finance uploads is the payment: a batch locked for payment (`processing`, by
//! `lock` or by downloading the PayPal file) keeps its lines whatever happens meanwhile
//! (refund, suspension), `mark-paid` settles exactly those lines, a refund inside it ends in a
//! clawback, and cancelling it needs a reason. Races against the lock keep the ledger whole.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{ambassadors, payout_lines, payouts, rewards};

use crate::helpers::{assert_problem, problem_fields, spawn_app, TestApp};
use crate::money_support::{days_ago, today, Team};
use crate::payouts::{create_batch, csv_records, earner, line_for, mark_paid, no_hold};

async fn batch(app: &TestApp, finance: &str, id: &str) -> Value {
    let res = app.get(&format!("/v1/payouts/{id}"), finance).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The PayPal upload file (one part), as rows, and its total in cents.
async fn paypal_file(app: &TestApp, finance: &str, id: &str) -> (Vec<Vec<String>>, i64) {
    let (_, rows) =
        csv_records(app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), finance).await, false).await;
    let cents = rows.iter().map(|r| r[1].replace('.', "").parse::<i64>().unwrap()).sum();
    (rows, cents)
}

async fn refund(app: &TestApp, team: &Team, referral_id: &str) {
    let res = app
        .post(&format!("/v1/referrals/{referral_id}/refund"), &team.staff, &json!({ "reason_code": "goodwill" }))
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn lifecycle(app: &TestApp, team: &Team, ambassador_id: &str, action: &str) {
    let res = app
        .post(&format!("/v1/ambassadors/{ambassador_id}/{action}"), &team.staff, &json!({ "reason": "review" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{action}");
}

async fn clawbacks(app: &TestApp, finance: &str, referral_id: &str) -> Vec<Value> {
    let list: Value =
        app.get(&format!("/v1/rewards?referral_id={referral_id}&kind=clawback"), finance).await.json().await.unwrap();
    list["items"].as_array().unwrap().clone()
}

async fn lock(app: &TestApp, finance: &str, id: &str) -> Value {
    let res = app.post(&format!("/v1/payouts/{id}/lock"), finance, &json!({})).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Which line (if any) a reward sits in, straight from the ledger.
fn line_of_reward(app: &TestApp, reward_id: &str) -> Option<String> {
    let mut conn = app.pool.get().unwrap();
    rewards::table.find(reward_id).select(rewards::payout_line_id).first(&mut conn).unwrap()
}

/// The reproduction: download the PayPal file, suspend one ambassador, refund the
/// other's client, mark paid. The batch pays what the file paid, the refund is clawed back,
/// and the suspended ambassador's reward is paid once and never again.
#[tokio::test]
async fn the_paypal_file_is_what_gets_paid_whatever_happens_before_mark_paid() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, ann_code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (ann_referral, _) = app.completed_referral(&team, &ann_code, "Client", today()).await;
    let (bob, bob_code, _) = app.paid_ambassador(&team.staff, "Bob").await;
    let (_, bob_reward) = app.completed_referral(&team, &bob_code, "Friend", today()).await;
    let bob_reward = bob_reward["id"].as_str().unwrap().to_owned();

    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    assert_eq!(draft["status"], "draft");
    let (file, file_cents) = paypal_file(&app, &team.finance, &id).await;
    assert_eq!((file.len(), file_cents), (2, 20000), "the file pays both: 200.00");
    let locked = batch(&app, &team.finance, &id).await;
    assert_eq!(locked["status"], "processing", "downloading the PayPal file locks the batch");
    assert!(locked["locked_at"].is_string());

    lifecycle(&app, &team, &bob, "suspend").await;
    refund(&app, &team, &ann_referral).await;
    let still = batch(&app, &team.finance, &id).await;
    assert_eq!(still["total_minor"], 20000, "lines and amounts are fixed once locked");
    for who in [&ann, &bob] {
        assert_eq!(line_for(&still, who)["status"], "pending");
        assert_eq!(line_for(&still, who)["amount_minor"], 10000);
    }
    assert_eq!(app.reward_of(&team.finance, &ann_referral).await.unwrap()["status"], "in_payout");
    let ann_reward = app.reward_of(&team.finance, &ann_referral).await.unwrap()["id"].as_str().unwrap().to_owned();
    assert!(app.audit_actions(&ann_reward).contains(&"reward.refunded_in_locked_payout".to_owned()));
    // A second download is the same file.
    let (again, _) = paypal_file(&app, &team.finance, &id).await;
    assert_eq!(again, file);

    let paid = mark_paid(&app, &team.finance, &id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["total_minor"].as_i64(), Some(file_cents), "the batch records what the file paid");
    assert!(paid["lines"].as_array().unwrap().iter().all(|l| l["status"] == "paid"));
    assert_eq!(app.emails("payout_sent").len(), 2);
    assert_eq!(app.reward_of(&team.finance, &ann_referral).await.unwrap()["status"], "paid");
    let claws = clawbacks(&app, &team.finance, &ann_referral).await;
    assert_eq!(claws.len(), 1, "the refunded reward is clawed back");
    assert_eq!((claws[0]["amount_minor"].as_i64(), claws[0]["status"].as_str()), (Some(-10000), Some("payable")));
    let bob_paid_line = line_of_reward(&app, &bob_reward).expect("in a line");
    assert_eq!(bob_paid_line, line_for(&paid, &bob)["id"].as_str().unwrap());
    assert_eq!(app.audit_actions(&id), ["payout.created", "payout.locked", "payout.paid"]);
    app.assert_ledger_consistent();

    // Bob back and earning: the next batch pays his new reward only; Ann's clawback is netted.
    lifecycle(&app, &team, &bob, "reactivate").await;
    let bob_balance = app.balance(&team.staff, &bob).await;
    assert_eq!((bob_balance["paid_minor"].as_i64(), bob_balance["payable_minor"].as_i64()), (Some(10000), Some(0)));
    app.completed_referral(&team, &bob_code, "Another", today()).await;
    let next = create_batch(&app, &team.finance).await;
    let bob_line = line_for(&next, &bob);
    assert_eq!((bob_line["amount_minor"].as_i64(), bob_line["reward_count"].as_i64()), (Some(10000), Some(1)));
    assert_eq!(line_of_reward(&app, &bob_reward), Some(bob_paid_line), "paid once, never in a later batch");
    let skipped = &next["skipped"][0];
    assert_eq!(
        (skipped["ambassador_id"].as_str(), skipped["reason"].as_str(), skipped["payable_minor"].as_i64()),
        (Some(ann.as_str()), Some("below_minimum"), Some(-10000))
    );
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn lock_fixes_a_draft_and_only_finance_may_lock() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (first, _) = app.completed_referral(&team, &code, "One", today()).await;
    app.completed_referral(&team, &code, "Two", today()).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payouts/{id}/lock");
    assert_problem(app.post(&path, &team.staff, &json!({})).await, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.post("/v1/payouts/01930000-0000-7000-8000-000000000000/lock", &team.finance, &json!({})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    // The generic CSV is a report: it locks nothing.
    let (_, rows) = csv_records(app.get(&format!("/v1/payouts/{id}/export.csv"), &team.finance).await, true).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(batch(&app, &team.finance, &id).await["status"], "draft");
    // A PayPal part that does not exist is refused before anything is locked.
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=9"), &team.finance).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(batch(&app, &team.finance, &id).await["status"], "draft");

    let locked = lock(&app, &team.finance, &id).await;
    assert_eq!(locked["status"], "processing");
    assert!(locked["locked_at"].is_string() && locked["paid_at"].is_null());
    let before = (app.counts(), app.ledger_counts());
    let p =
        assert_problem(app.post(&path, &team.finance, &json!({})).await, StatusCode::CONFLICT, "invalid-transition")
            .await;
    assert_eq!(p["current_status"], "processing");
    assert_eq!((app.counts(), app.ledger_counts()), before, "a refused lock changes nothing");

    // A refund no longer shrinks the line.
    refund(&app, &team, &first).await;
    let after = batch(&app, &team.finance, &id).await;
    assert_eq!(
        (line_for(&after, &ann)["amount_minor"].as_i64(), after["total_minor"].as_i64()),
        (Some(20000), Some(20000))
    );
    // The next draft can be made while this one is being paid; it never takes its rewards.
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    let next = create_batch(&app, &team.finance).await;
    assert_eq!(next["lines"].as_array().unwrap().len(), 1);
    assert_eq!(line_for(&next, &bob)["amount_minor"], 10000);
    app.assert_ledger_consistent();

    let paid = mark_paid(&app, &team.finance, &id).await;
    assert_eq!((paid["status"].as_str(), paid["total_minor"].as_i64()), (Some("paid"), Some(20000)));
    assert_eq!(clawbacks(&app, &team.finance, &first).await.len(), 1);
    let p =
        assert_problem(app.post(&path, &team.finance, &json!({})).await, StatusCode::CONFLICT, "invalid-transition")
            .await;
    assert_eq!(p["current_status"], "paid");
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    app.assert_ledger_consistent();
}

/// Marking a draft paid locks and pays it in one step (one state change, one audit event).
#[tokio::test]
async fn marking_a_draft_paid_locks_and_pays_it_at_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    earner(&app, &team, "Ann", 1).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap();
    let paid = mark_paid(&app, &team.finance, id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["locked_at"], paid["paid_at"]);
    assert_eq!(app.audit_actions(id), ["payout.created", "payout.paid"]);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn cancelling_a_locked_batch_needs_a_reason_and_voids_what_was_refunded() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (gone, _) = app.completed_referral(&team, &code, "Gone", today()).await;
    let (kept, _) = app.completed_referral(&team, &code, "Kept", today()).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    paypal_file(&app, &team.finance, &id).await;
    refund(&app, &team, &gone).await;

    let path = format!("/v1/payouts/{id}/cancel");
    let before = (app.counts(), app.ledger_counts());
    for body in [json!({}), json!({ "reason": "" }), json!({ "reason": null })] {
        let p = assert_problem(
            app.post(&path, &team.finance, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        )
        .await;
        assert_eq!(problem_fields(&p), ["reason"], "{body}");
    }
    let res = app.request(reqwest::Method::POST, &path, Some(&team.finance), None).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["reason"]);
    assert_eq!((app.counts(), app.ledger_counts()), before, "a refused cancel changes nothing");
    assert_eq!(batch(&app, &team.finance, &id).await["status"], "processing");

    let res = app.post(&path, &team.finance, &json!({ "reason": "The file was never uploaded" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "The file was never uploaded");
    assert_eq!(cancelled["total_minor"], 0);
    assert!(cancelled["lines"].as_array().unwrap().iter().all(|l| l["status"] == "cancelled"));
    assert_eq!(app.reward_of(&team.finance, &gone).await.unwrap()["status"], "voided", "the refund voids normally");
    assert!(clawbacks(&app, &team.finance, &gone).await.is_empty());
    assert_eq!(app.reward_of(&team.finance, &kept).await.unwrap()["status"], "payable");
    assert_eq!(app.balance(&team.staff, &ann).await["payable_minor"], 10000);
    assert_eq!(app.balance(&team.staff, &bob).await["payable_minor"], 10000);
    assert_eq!(app.audit_actions(&id), ["payout.created", "payout.locked", "payout.cancelled"]);
    let reason: String = {
        use vouch::db::schema::audit_events as a;
        let mut conn = app.pool.get().unwrap();
        a::table
            .filter(a::entity_id.eq(&id))
            .filter(a::action.eq("payout.cancelled"))
            .select(a::details.assume_not_null())
            .first(&mut conn)
            .unwrap()
    };
    assert!(reason.contains("The file was never uploaded"), "{reason}");
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    // The released rewards are paid by the next batch, the voided one never.
    let next = create_batch(&app, &team.finance).await;
    assert_eq!(line_for(&next, &ann)["amount_minor"], 10000);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn a_draft_is_still_cancelled_without_a_reason() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    earner(&app, &team, "Ann", 1).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/payouts/{id}/cancel"), &team.finance, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!((cancelled["status"].as_str(), cancelled["cancel_reason"].as_str()), (Some("cancelled"), None));
    assert!(cancelled["locked_at"].is_null());
}

/// A failed line is the one change a locked batch allows: its rewards are payable again, a
/// reward refunded after the lock is voided, and mark-paid settles the other lines only.
#[tokio::test]
async fn a_line_failed_in_a_locked_batch_leaves_the_rest_to_be_paid() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (gone, _) = app.completed_referral(&team, &code, "Gone", today()).await;
    let (kept, _) = app.completed_referral(&team, &code, "Kept", today()).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    lock(&app, &team.finance, &id).await;
    refund(&app, &team, &gone).await;
    let line = line_for(&draft, &ann)["id"].as_str().unwrap().to_owned();
    let res = app
        .post(&format!("/v1/payouts/{id}/lines/{line}/fail"), &team.finance, &json!({ "reason": "PayPal refused it" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after: Value = res.json().await.unwrap();
    assert_eq!((after["status"].as_str(), after["total_minor"].as_i64()), (Some("processing"), Some(10000)));
    assert_eq!(line_for(&after, &ann)["status"], "failed");
    assert_eq!(app.reward_of(&team.finance, &gone).await.unwrap()["status"], "voided");
    assert_eq!(app.reward_of(&team.finance, &kept).await.unwrap()["status"], "payable");
    let (file, cents) = paypal_file(&app, &team.finance, &id).await;
    assert_eq!((file.len(), cents), (1, 10000), "the failed line is not uploaded again");
    let paid = mark_paid(&app, &team.finance, &id).await;
    assert_eq!(paid["total_minor"], 10000);
    assert_eq!(line_for(&paid, &bob)["status"], "paid");
    assert_eq!(line_for(&paid, &ann)["status"], "failed");
    assert!(clawbacks(&app, &team.finance, &gone).await.is_empty());
    assert_eq!(app.balance(&team.staff, &ann).await["payable_minor"], 10000);
    app.assert_ledger_consistent();
}

/// A refund that shrinks a draft line checks the minimum payout of the rules the batch was
/// built with: a later rule change does not empty the batch.
#[tokio::test]
async fn a_refund_in_a_draft_checks_the_minimum_the_batch_was_built_with() {
    let app = spawn_app().await;
    let team = app.team().await;
    let built_with = app.set_program(json!({ "holding_days": 0 })).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (first, _) = app.completed_referral(&team, &code, "One", today()).await;
    app.completed_referral(&team, &code, "Two", today()).await;
    let draft = create_batch(&app, &team.finance).await;
    assert_eq!(draft["program_version_id"], built_with["id"]);
    let id = draft["id"].as_str().unwrap();
    // Today's rules would not pay 100.00; the batch's rules (50.00 minimum) do.
    app.set_program(json!({ "holding_days": 0, "min_payout_minor": 15000 })).await;
    refund(&app, &team, &first).await;
    let after = batch(&app, &team.finance, id).await;
    let line = line_for(&after, &ann);
    assert_eq!(
        (line["status"].as_str(), line["amount_minor"].as_i64(), line["reward_count"].as_i64()),
        (Some("pending"), Some(10000), Some(1))
    );
    assert_eq!(after["total_minor"], 10000);
    app.assert_ledger_consistent();
}

/// The cutoff cuts: a reward created or payable only after it stays out of the batch.
#[tokio::test]
async fn a_batch_takes_only_rewards_payable_at_its_cutoff() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "holding_days": 2 })).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    // Payable three days ago; payable only since yesterday; created just now.
    let early = app.referral_in_treatment(&team.staff, &code, "Early", days_ago(5)).await;
    app.complete(&team.staff, &early, days_ago(5), None).await;
    let late = app.referral_in_treatment(&team.staff, &code, "Late", days_ago(3)).await;
    app.complete(&team.staff, &late, days_ago(3), None).await;
    let (early_reward, late_reward) = (
        app.reward_of(&team.finance, &early).await.unwrap()["id"].as_str().unwrap().to_owned(),
        app.reward_of(&team.finance, &late).await.unwrap()["id"].as_str().unwrap().to_owned(),
    );
    {
        let mut conn = app.pool.get().unwrap();
        let long_ago = days_ago(6).and_hms_opt(12, 0, 0).unwrap();
        diesel::update(rewards::table.filter(rewards::id.eq_any([&early_reward, &late_reward])))
            .set(rewards::created_at.eq(long_ago))
            .execute(&mut conn)
            .unwrap();
    }
    let fresh = app.referral_in_treatment(&team.staff, &code, "Fresh", days_ago(5)).await;
    app.complete(&team.staff, &fresh, days_ago(5), None).await;

    let cutoff = days_ago(2).and_hms_opt(12, 0, 0).unwrap().and_utc();
    let res = app.post("/v1/payouts", &team.finance, &json!({ "cutoff": cutoff.to_rfc3339() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cut: Value = res.json().await.unwrap();
    let line = line_for(&cut, &ann);
    assert_eq!((line["amount_minor"].as_i64(), line["reward_count"].as_i64()), (Some(10000), Some(1)));
    assert_eq!(line_of_reward(&app, &early_reward), line["id"].as_str().map(str::to_owned));
    assert_eq!(line_of_reward(&app, &late_reward), None, "payable only after the cutoff");
    assert_eq!(app.reward_of(&team.finance, &fresh).await.unwrap()["status"], "payable", "created after the cutoff");
    assert_eq!(app.balance(&team.staff, &ann).await["payable_minor"], 20000);
    let res = app.post(&format!("/v1/payouts/{}/cancel", cut["id"].as_str().unwrap()), &team.finance, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A cutoff before anything was payable: nothing to pay.
    let before_all = days_ago(30).and_hms_opt(0, 0, 0).unwrap().and_utc().to_rfc3339();
    let res = app.post("/v1/payouts", &team.finance, &json!({ "cutoff": before_all })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "nothing-to-pay").await;
    // Without a cutoff (now), all three.
    let now = create_batch(&app, &team.finance).await;
    assert_eq!(line_for(&now, &ann)["reward_count"], 3);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn a_paypal_export_without_paypal_lines_is_refused_and_locks_nothing() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let bank = app
        .enrol(
            &team.staff,
            json!({ "name": "Dan", "email": "dan@example.com",
                    "payout_method": { "type": "bank", "reference": "GB00 0000" } }),
        )
        .await;
    app.completed_referral(&team, bank["codes"][0]["code"].as_str().unwrap(), "Dclient", today()).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap();
    let before = (app.counts(), app.ledger_counts());
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "nothing-to-export").await;
    assert_eq!(problem_fields(&p), ["format"]);
    assert_eq!((app.counts(), app.ledger_counts()), before);
    assert_eq!(batch(&app, &team.finance, id).await["status"], "draft");
    assert_eq!(app.audit_actions(id), ["payout.created"]);
}

async fn summary(app: &TestApp, finance: &str, from: chrono::NaiveDate, to: chrono::NaiveDate) -> Value {
    let res = app.get(&format!("/v1/reports/summary?from={from}&to={to}"), finance).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_summary_report_counts_only_its_period() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let old = app.referral_in_treatment(&team.staff, &code, "Old", days_ago(40)).await;
    app.complete(&team.staff, &old, days_ago(40), None).await;
    let recent = app.referral_in_treatment(&team.staff, &code, "Recent", days_ago(5)).await;
    app.complete(&team.staff, &recent, days_ago(5), None).await;
    app.referral_in_treatment(&team.staff, &code, "Going", days_ago(5)).await;

    let recent_period = summary(&app, &team.finance, days_ago(10), today()).await;
    assert_eq!(recent_period["from"], days_ago(10).to_string());
    assert_eq!(
        (recent_period["referrals"]["registered"].as_i64(), recent_period["referrals"]["completed"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(recent_period["rewards"]["held"], json!({ "count": 1, "amount_minor": 10000 }));
    assert_eq!(recent_period["rewards"]["payable"], json!({ "count": 0, "amount_minor": 0 }));
    assert_eq!(recent_period["top_ambassadors"][0]["ambassador_id"], ann.as_str());
    assert_eq!(recent_period["top_ambassadors"][0]["completed"], 1);

    let old_period = summary(&app, &team.finance, days_ago(50), days_ago(30)).await;
    assert_eq!(
        (old_period["referrals"]["registered"].as_i64(), old_period["referrals"]["completed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(old_period["rewards"]["payable"], json!({ "count": 1, "amount_minor": 10000 }));
    assert_eq!(old_period["rewards"]["held"], json!({ "count": 0, "amount_minor": 0 }));
    assert_eq!(old_period["top_ambassadors"][0]["earned_minor"], 10000);

    // Both ends count (a one-day period on the day of the old referral).
    let one_day = summary(&app, &team.finance, days_ago(40), days_ago(40)).await;
    assert_eq!(one_day["referrals"]["registered"], 1);
    let empty = summary(&app, &team.finance, days_ago(29), days_ago(11)).await;
    assert_eq!(empty["referrals"]["registered"], 0);
    assert_eq!(empty["top_ambassadors"], json!([]));

    let res = app.get(&format!("/v1/reports/summary?from={}&to={}", today(), days_ago(1)), &team.finance).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["to"]);
}

// ----- races (on PostgreSQL the requests truly run at once; on SQLite the writers queue) -----

/// Two locks at once: one locks, the other is told it is no longer a draft.
#[tokio::test]
async fn two_locks_at_once_lock_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    for round in 0..4 {
        earner(&app, &team, &format!("Lock{round}"), 1).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/payouts/{id}/lock");
        let (a, b) = tokio::join!(app.post(&path, &team.finance, &empty), app.post(&path, &team.finance, &empty));
        let (winner, loser) = if a.status() == StatusCode::OK { (a, b) } else { (b, a) };
        assert_eq!(winner.status(), StatusCode::OK, "round {round}");
        let p = assert_problem(loser, StatusCode::CONFLICT, "invalid-transition").await;
        assert_eq!(p["current_status"], "processing", "round {round}");
        assert_eq!(app.audit_actions(&id).iter().filter(|a| *a == "payout.locked").count(), 1);
        mark_paid(&app, &team.finance, &id).await;
        app.assert_ledger_consistent();
    }
}

/// Lock, mark-paid and cancel at once: exactly one of paying and cancelling wins, every other
/// request is refused as an invalid transition, and the ledger adds up.
#[tokio::test]
async fn lock_mark_paid_and_cancel_at_once_settle_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    for round in 0..4 {
        let (amb, _, _) = earner(&app, &team, &format!("Settle{round}"), 1).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        let (lock_path, pay_path, cancel_path) = (
            format!("/v1/payouts/{id}/lock"),
            format!("/v1/payouts/{id}/mark-paid"),
            format!("/v1/payouts/{id}/cancel"),
        );
        let (pay_body, cancel_body) = (json!({ "reference": "R" }), json!({ "reason": "never uploaded" }));
        let (locked, paid, cancelled) = tokio::join!(
            app.post(&lock_path, &team.finance, &empty),
            app.post(&pay_path, &team.finance, &pay_body),
            app.post(&cancel_path, &team.finance, &cancel_body)
        );
        let statuses = [locked.status(), paid.status(), cancelled.status()];
        let (paid_ok, cancel_ok) = (statuses[1] == StatusCode::OK, statuses[2] == StatusCode::OK);
        assert!(paid_ok ^ cancel_ok, "round {round}: exactly one settles: {statuses:?}");
        for res in [locked, paid, cancelled] {
            if res.status() != StatusCode::OK {
                assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
            }
        }
        let after = batch(&app, &team.finance, &id).await;
        let outbox_for_round =
            app.emails("payout_sent").into_iter().filter(|(_, p)| p["reference"] == after["code"]).count();
        if paid_ok {
            assert_eq!(after["status"], "paid", "round {round}");
            assert_eq!(outbox_for_round, 1, "round {round}");
            assert_eq!(app.balance(&team.staff, &amb).await["paid_minor"], 10000);
        } else {
            assert_eq!(after["status"], "cancelled", "round {round}");
            assert_eq!(outbox_for_round, 0, "round {round}");
            assert_eq!(after["cancel_reason"], "never uploaded");
            // Pay the released rewards so the next round starts clean.
            let next = create_batch(&app, &team.finance).await;
            mark_paid(&app, &team.finance, next["id"].as_str().unwrap()).await;
        }
        app.assert_ledger_consistent();
    }
}

/// A refund racing the lock never fails and never loses money: either it came first (the
/// reward leaves the draft) or the lock did (the line stays and the payment claws it back).
#[tokio::test]
async fn a_refund_racing_the_lock_is_taken_out_or_clawed_back() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    for round in 0..4 {
        let (amb, code, _) = app.paid_ambassador(&team.staff, &format!("Race{round}")).await;
        app.completed_referral(&team, &code, &format!("Keep{round}"), today()).await;
        let (gone, _) = app.completed_referral(&team, &code, &format!("Gone{round}"), today()).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        let (lock_path, refund_path) = (format!("/v1/payouts/{id}/lock"), format!("/v1/referrals/{gone}/refund"));
        let refund_body = json!({ "reason_code": "goodwill" });
        let (locked, refunded) = tokio::join!(
            app.post(&lock_path, &team.finance, &empty),
            app.post(&refund_path, &team.staff, &refund_body)
        );
        assert_eq!((locked.status(), refunded.status()), (StatusCode::OK, StatusCode::OK), "round {round}");
        let line_amount = line_for(&batch(&app, &team.finance, &id).await, &amb)["amount_minor"].as_i64();
        let state = app.reward_of(&team.finance, &gone).await.unwrap()["status"].as_str().unwrap().to_owned();
        app.assert_ledger_consistent();
        let paid = mark_paid(&app, &team.finance, &id).await;
        let claws = clawbacks(&app, &team.finance, &gone).await.len();
        match state.as_str() {
            // The refund came first: out of the draft, nothing to claw back.
            "voided" => assert_eq!((line_amount, claws), (Some(10000), 0), "round {round}"),
            // The lock came first: paid as the file said, then clawed back once.
            "in_payout" => assert_eq!((line_amount, claws), (Some(20000), 1), "round {round}"),
            other => panic!("round {round}: reward {other}"),
        }
        assert_eq!(paid["total_minor"].as_i64(), line_amount);
        // The net owed to the ambassador is what was not refunded.
        let balance = app.balance(&team.staff, &amb).await;
        assert_eq!(balance["paid_minor"].as_i64().unwrap() + balance["payable_minor"].as_i64().unwrap(), 10000);
        app.assert_ledger_consistent();
    }
}

/// Suspending an ambassador while a batch is being created never leaves them with a pending
/// line in a draft: either the batch skips them or the suspension takes the new line out.
#[tokio::test]
async fn suspending_while_a_batch_is_created_never_leaves_a_pending_line() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    let reason = json!({ "reason": "review" });
    for round in 0..6 {
        let (sus, _, _) = earner(&app, &team, &format!("Sus{round}"), 1).await;
        earner(&app, &team, &format!("Other{round}"), 1).await;
        let suspend_path = format!("/v1/ambassadors/{sus}/suspend");
        let (created, suspended) =
            tokio::join!(app.post("/v1/payouts", &team.finance, &empty), app.post(&suspend_path, &team.staff, &reason));
        assert_eq!((created.status(), suspended.status()), (StatusCode::CREATED, StatusCode::OK), "round {round}");
        let created: Value = created.json().await.unwrap();
        assert_no_suspended_pending_line_in_a_draft(&app);
        let line = created["lines"].as_array().unwrap().iter().find(|l| l["ambassador_id"] == sus.as_str()).cloned();
        let draft = batch(&app, &team.finance, created["id"].as_str().unwrap()).await;
        match line {
            // The batch came first: the suspension released the line.
            Some(l) => assert_eq!(line_for(&draft, &sus)["status"], "released", "round {round}: {l}"),
            // The suspension came first: the batch skipped them.
            None => assert!(
                created["skipped"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["ambassador_id"] == sus.as_str() && s["reason"] == "suspended"),
                "round {round}: {created}"
            ),
        }
        assert_eq!(app.balance(&team.staff, &sus).await["payable_minor"], 10000, "round {round}: their reward waits");
        app.assert_ledger_consistent();
        let res = app
            .post(&format!("/v1/payouts/{}/cancel", created["id"].as_str().unwrap()), &team.finance, &json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// No suspended ambassador has a pending line in a draft batch (read straight from the tables).
fn assert_no_suspended_pending_line_in_a_draft(app: &TestApp) {
    let mut conn = app.pool.get().unwrap();
    let offending: Vec<String> = payout_lines::table
        .inner_join(payouts::table)
        .inner_join(ambassadors::table)
        .filter(payouts::status.eq("draft"))
        .filter(payout_lines::status.eq("pending"))
        .filter(ambassadors::status.eq("suspended"))
        .select(payout_lines::id)
        .load(&mut conn)
        .unwrap();
    assert!(offending.is_empty(), "pending lines of suspended ambassadors in a draft: {offending:?}");
}
