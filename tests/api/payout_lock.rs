//! The file that finance uploads is the payment: a batch locked for payment (`processing`, by
//! `lock` or by downloading the PayPal file) keeps its lines whatever happens meanwhile
//! (refund, suspension), `mark-paid` settles exactly those lines, a refund inside it ends in a
//! clawback, and cancelling it needs a reason. Races against the lock keep the ledger whole.

use std::collections::HashSet;

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

/// A draft is never marked paid: a team paying by bank from the generic CSV (a report, which
/// locks nothing) could otherwise see a refund or suspension change the draft after the money
/// left, and record less than it sent. The refusal changes nothing and says to lock first;
/// lock, then mark-paid, settles exactly the locked lines.
#[tokio::test]
async fn marking_a_draft_paid_is_refused_until_it_is_locked() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, _, _) = earner(&app, &team, "Ann", 1).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap();
    let (_, rows) = csv_records(app.get(&format!("/v1/payouts/{id}/export.csv"), &team.finance).await, true).await;
    assert_eq!(rows.len(), 1, "finance pays from the generic report");

    let path = format!("/v1/payouts/{id}/mark-paid");
    let before = (app.counts(), app.ledger_counts());
    let res = app.post(&path, &team.finance, &json!({ "reference": "BANK-RUN-1" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "draft");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("POST /v1/payouts/{id}/lock")), "says to lock first: {detail}");
    assert_eq!((app.counts(), app.ledger_counts()), before, "a refused mark-paid changes nothing");
    let still = batch(&app, &team.finance, id).await;
    assert_eq!((still["status"].as_str(), still["reference"].as_str()), (Some("draft"), None));
    assert!(still["locked_at"].is_null() && still["paid_at"].is_null());
    assert_eq!(line_for(&still, &ann)["status"], "pending");
    assert_eq!(app.balance(&team.staff, &ann).await["in_payout_minor"], 10000);
    assert!(app.emails("payout_sent").is_empty());
    assert_eq!(app.audit_actions(id), ["payout.created"]);

    let locked = lock(&app, &team.finance, id).await;
    assert_eq!(locked["status"], "processing");
    let res = app.post(&path, &team.finance, &json!({ "reference": "BANK-RUN-1" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let paid: Value = res.json().await.unwrap();
    assert_eq!((paid["status"].as_str(), paid["reference"].as_str()), (Some("paid"), Some("BANK-RUN-1")));
    assert_eq!(paid["locked_at"], locked["locked_at"], "paying keeps the lock's time");
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(paid[field].as_str().unwrap()).unwrap();
    assert!(at("paid_at") >= at("locked_at"), "{paid}");
    assert_eq!((line_for(&paid, &ann)["status"].as_str(), paid["total_minor"].as_i64()), (Some("paid"), Some(10000)));
    assert_eq!(app.balance(&team.staff, &ann).await["paid_minor"], 10000);
    assert_eq!(app.emails("payout_sent").len(), 1);
    assert_eq!(app.audit_actions(id), ["payout.created", "payout.locked", "payout.paid"]);
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

/// `nothing-to-export` is decided on the lines the PayPal file would hold: a draft whose only
/// PayPal line was released (its reward refunded, the line left under the minimum) has no file,
/// and asking for it locks nothing.
#[tokio::test]
async fn a_paypal_export_whose_paypal_lines_were_all_released_is_refused_and_locks_nothing() {
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
    let (ann, ann_code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (gone, _) = app.completed_referral(&team, &ann_code, "Gone", today()).await;
    let draft = create_batch(&app, &team.finance).await;
    let id = draft["id"].as_str().unwrap();
    assert_eq!(line_for(&draft, &ann)["payout_method"], "paypal");
    refund(&app, &team, &gone).await;
    let after = batch(&app, &team.finance, id).await;
    assert_eq!(line_for(&after, &ann)["status"], "released");

    let before = (app.counts(), app.ledger_counts());
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "nothing-to-export").await;
    assert_eq!(problem_fields(&p), ["format"]);
    assert_eq!((app.counts(), app.ledger_counts()), before);
    let still = batch(&app, &team.finance, id).await;
    assert_eq!(still["status"], "draft", "nothing was downloaded, so nothing is locked");
    assert!(still["locked_at"].is_null());
    assert_eq!(app.audit_actions(id), ["payout.created"]);
    // The bank line is still paid the ordinary way.
    let paid = mark_paid(&app, &team.finance, id).await;
    assert_eq!((paid["status"].as_str(), paid["total_minor"].as_i64()), (Some("paid"), Some(10000)));
    app.assert_ledger_consistent();
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

/// Each race below sends its two requests at once, one or the other first in turn, round after
/// round until every outcome has been seen (at least `MIN_ROUNDS`; `MAX_ROUNDS` keeps a stuck
/// scheduler from looping forever). The requests queue on one row lock (PostgreSQL) or on the
/// single writer (SQLite, `BEGIN IMMEDIATE`), and whichever takes it first wins, so both outcomes
/// happen on both backends. One request may have more work to do before it reaches the lock (a
/// refund writes the referral first, so on PostgreSQL a lock sent at the same instant nearly
/// always wins): after the first two rounds the request sent second waits a head start that
/// grows by a millisecond every two rounds, so the slower one gets to win too.
const MIN_ROUNDS: usize = 6;
const MAX_ROUNDS: usize = 40;

/// Sends `a` and `b` together, `a` first in even rounds and `b` first in odd ones (the other
/// after the round's head start); returns their answers as (a, b).
async fn race<A, B>(round: usize, a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    let head_start = std::time::Duration::from_millis((round / 2) as u64);
    if round.is_multiple_of(2) {
        tokio::join!(a, after(head_start, b))
    } else {
        let (b, a) = tokio::join!(b, after(head_start, a));
        (a, b)
    }
}

async fn after<F: std::future::Future>(delay: std::time::Duration, f: F) -> F::Output {
    tokio::time::sleep(delay).await;
    f.await
}

/// Mark-paid and cancel of a locked batch at once: exactly one settles it, the other is told
/// it is already paid or cancelled (the exact problem), and the ledger adds up. Both "paid won"
/// and "cancelled won" are seen. The loser is never `concurrent-update`, on PostgreSQL either:
/// both take the batch row's lock before reading its status, so the loser reads the winner's.
#[tokio::test]
async fn mark_paid_and_cancel_of_a_locked_batch_at_once_settle_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (pay_body, cancel_body) = (json!({ "reference": "R" }), json!({ "reason": "never uploaded" }));
    let mut winners = HashSet::new();
    let mut round = 0;
    while round < MIN_ROUNDS || (winners.len() < 2 && round < MAX_ROUNDS) {
        let (amb, _, _) = earner(&app, &team, &format!("Settle{round}"), 1).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        lock(&app, &team.finance, &id).await;
        let (pay_path, cancel_path) = (format!("/v1/payouts/{id}/mark-paid"), format!("/v1/payouts/{id}/cancel"));
        let (paid, cancelled) = race(
            round,
            app.post(&pay_path, &team.finance, &pay_body),
            app.post(&cancel_path, &team.finance, &cancel_body),
        )
        .await;
        let statuses = [paid.status(), cancelled.status()];
        let (paid_ok, cancel_ok) = (statuses[0] == StatusCode::OK, statuses[1] == StatusCode::OK);
        assert!(paid_ok ^ cancel_ok, "round {round}: exactly one settles: {statuses:?}");
        let (winner, loser) = if paid_ok { ("paid", cancelled) } else { ("cancelled", paid) };
        let p = assert_problem(loser, StatusCode::CONFLICT, "invalid-transition").await;
        assert_eq!(p["current_status"], winner, "round {round}: {p}");
        let after = batch(&app, &team.finance, &id).await;
        assert_eq!(after["status"], winner, "round {round}");
        let outbox_for_round =
            app.emails("payout_sent").into_iter().filter(|(_, p)| p["reference"] == after["code"]).count();
        let settled =
            app.audit_actions(&id).into_iter().filter(|a| a == "payout.paid" || a == "payout.cancelled").count();
        assert_eq!(settled, 1, "round {round}: one outcome audited");
        if paid_ok {
            assert_eq!(outbox_for_round, 1, "round {round}");
            assert_eq!(app.balance(&team.staff, &amb).await["paid_minor"], 10000);
        } else {
            assert_eq!(outbox_for_round, 0, "round {round}");
            assert_eq!(after["cancel_reason"], "never uploaded");
            assert_eq!(app.balance(&team.staff, &amb).await["payable_minor"], 10000, "round {round}");
            app.assert_ledger_consistent();
            // Pay the released rewards so the next round starts clean.
            let next = create_batch(&app, &team.finance).await;
            mark_paid(&app, &team.finance, next["id"].as_str().unwrap()).await;
        }
        app.assert_ledger_consistent();
        winners.insert(winner);
        round += 1;
    }
    assert_eq!(winners.len(), 2, "both outcomes in {round} rounds: {winners:?}");
}

/// A lock and a cancel (without a reason) of a draft at once: either the cancel came first (the
/// lock is told the batch is cancelled) or the lock did (the cancel now needs a reason: 422,
/// nothing changed). Never both, never a locked batch cancelled without a reason. Both seen.
#[tokio::test]
async fn a_lock_racing_a_cancel_of_the_draft_ends_one_way() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    let mut winners = HashSet::new();
    let mut round = 0;
    while round < MIN_ROUNDS || (winners.len() < 2 && round < MAX_ROUNDS) {
        let (amb, _, _) = earner(&app, &team, &format!("Draft{round}"), 1).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        let (lock_path, cancel_path) = (format!("/v1/payouts/{id}/lock"), format!("/v1/payouts/{id}/cancel"));
        let (locked, cancelled) =
            race(round, app.post(&lock_path, &team.finance, &empty), app.post(&cancel_path, &team.finance, &empty))
                .await;
        let statuses = [locked.status(), cancelled.status()];
        let winner = match statuses {
            [StatusCode::OK, _] => {
                let p = assert_problem(cancelled, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
                assert_eq!(problem_fields(&p), ["reason"], "round {round}");
                "processing"
            }
            [_, StatusCode::OK] => {
                let p = assert_problem(locked, StatusCode::CONFLICT, "invalid-transition").await;
                assert_eq!(p["current_status"], "cancelled", "round {round}");
                "cancelled"
            }
            other => panic!("round {round}: neither won: {other:?}"),
        };
        let after = batch(&app, &team.finance, &id).await;
        assert_eq!(after["status"], winner, "round {round}");
        assert!(after["cancel_reason"].is_null(), "round {round}");
        let expected_audit =
            ["payout.created", if winner == "processing" { "payout.locked" } else { "payout.cancelled" }];
        assert_eq!(app.audit_actions(&id), expected_audit, "round {round}");
        app.assert_ledger_consistent();
        // Settle what is left so the next round starts clean.
        let next = if winner == "processing" {
            id.clone()
        } else {
            create_batch(&app, &team.finance).await["id"].as_str().unwrap().to_owned()
        };
        mark_paid(&app, &team.finance, &next).await;
        assert_eq!(app.balance(&team.staff, &amb).await["paid_minor"], 10000, "round {round}");
        app.assert_ledger_consistent();
        winners.insert(winner);
        round += 1;
    }
    assert_eq!(winners.len(), 2, "both outcomes in {round} rounds: {winners:?}");
}

/// A refund racing the lock never fails and never loses money: either it came first (the
/// reward is voided and leaves the draft) or the lock did (the line stays and the payment
/// claws it back). Both are seen.
#[tokio::test]
async fn a_refund_racing_the_lock_is_taken_out_or_clawed_back() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (empty, refund_body) = (json!({}), json!({ "reason_code": "goodwill" }));
    let mut outcomes = HashSet::new();
    let mut round = 0;
    while round < MIN_ROUNDS || (outcomes.len() < 2 && round < MAX_ROUNDS) {
        let (amb, code, _) = app.paid_ambassador(&team.staff, &format!("Race{round}")).await;
        app.completed_referral(&team, &code, &format!("Keep{round}"), today()).await;
        let (gone, _) = app.completed_referral(&team, &code, &format!("Gone{round}"), today()).await;
        let draft = create_batch(&app, &team.finance).await;
        let id = draft["id"].as_str().unwrap().to_owned();
        let (lock_path, refund_path) = (format!("/v1/payouts/{id}/lock"), format!("/v1/referrals/{gone}/refund"));
        let (locked, refunded) =
            race(round, app.post(&lock_path, &team.finance, &empty), app.post(&refund_path, &team.staff, &refund_body))
                .await;
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
        outcomes.insert(state);
        round += 1;
    }
    assert_eq!(outcomes.len(), 2, "voided and clawed back both seen in {round} rounds: {outcomes:?}");
}

/// Suspending an ambassador while a batch is being created never leaves them with a pending
/// line in a draft: either the batch skips them or the suspension takes the new line out. Both
/// are seen.
#[tokio::test]
async fn suspending_while_a_batch_is_created_never_leaves_a_pending_line() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let empty = json!({});
    let reason = json!({ "reason": "review" });
    let mut outcomes = HashSet::new();
    let mut round = 0;
    while round < MIN_ROUNDS || (outcomes.len() < 2 && round < MAX_ROUNDS) {
        let (sus, _, _) = earner(&app, &team, &format!("Sus{round}"), 1).await;
        earner(&app, &team, &format!("Other{round}"), 1).await;
        let suspend_path = format!("/v1/ambassadors/{sus}/suspend");
        let (created, suspended) =
            race(round, app.post("/v1/payouts", &team.finance, &empty), app.post(&suspend_path, &team.staff, &reason))
                .await;
        assert_eq!((created.status(), suspended.status()), (StatusCode::CREATED, StatusCode::OK), "round {round}");
        let created: Value = created.json().await.unwrap();
        assert_no_suspended_pending_line_in_a_draft(&app);
        let line = created["lines"].as_array().unwrap().iter().find(|l| l["ambassador_id"] == sus.as_str()).cloned();
        let draft = batch(&app, &team.finance, created["id"].as_str().unwrap()).await;
        let outcome = match line {
            // The batch came first: the suspension released the line.
            Some(l) => {
                assert_eq!(line_for(&draft, &sus)["status"], "released", "round {round}: {l}");
                "released"
            }
            // The suspension came first: the batch skipped them.
            None => {
                assert!(
                    created["skipped"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|s| s["ambassador_id"] == sus.as_str() && s["reason"] == "suspended"),
                    "round {round}: {created}"
                );
                "skipped"
            }
        };
        assert_eq!(app.balance(&team.staff, &sus).await["payable_minor"], 10000, "round {round}: their reward waits");
        app.assert_ledger_consistent();
        let res = app
            .post(&format!("/v1/payouts/{}/cancel", created["id"].as_str().unwrap()), &team.finance, &json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        outcomes.insert(outcome);
        round += 1;
    }
    assert_eq!(outcomes.len(), 2, "released and skipped both seen in {round} rounds: {outcomes:?}");
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
