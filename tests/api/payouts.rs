//! Payout batches end to end: lines and skips, settle exactly once, refunds around payment,
//! CSV exports read back by a CSV reader, and the finance reports.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, spawn_app_with, TestApp};
use crate::money_support::{today, Team};

/// Rewards payable at once (no hold) so batches can be made in the test.
pub(crate) async fn no_hold(app: &TestApp) {
    app.set_program(json!({ "holding_days": 0 })).await;
}

pub(crate) async fn create_batch(app: &TestApp, finance: &str) -> Value {
    let res = app.post("/v1/payouts", finance, &json!({})).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Locks a draft for payment (as finance does before paying it by bank); asserts 200.
pub(crate) async fn lock_batch(app: &TestApp, finance: &str, id: &str) -> Value {
    let res = app.post(&format!("/v1/payouts/{id}/lock"), finance, &json!({})).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Pays a batch as finance does: a draft is locked first (only a locked batch is marked paid),
/// a batch already locked (by `lock` or the PayPal download) is paid as it is; asserts 200.
pub(crate) async fn mark_paid(app: &TestApp, finance: &str, id: &str) -> Value {
    let batch: Value = app.get(&format!("/v1/payouts/{id}"), finance).await.json().await.unwrap();
    if batch["status"] == "draft" {
        lock_batch(app, finance, id).await;
    }
    let res = app.post(&format!("/v1/payouts/{id}/mark-paid"), finance, &json!({ "reference": "PP-BATCH-1" })).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// An ambassador with `n` completed referrals (payable at once under `no_hold`).
pub(crate) async fn earner(app: &TestApp, team: &Team, name: &str, n: usize) -> (String, String, String) {
    let (id, code, email) = app.paid_ambassador(&team.staff, name).await;
    for i in 0..n {
        app.completed_referral(team, &code, &format!("{name}Client{i}"), today()).await;
    }
    (id, code, email)
}

pub(crate) fn line_for<'a>(batch: &'a Value, ambassador_id: &str) -> &'a Value {
    batch["lines"].as_array().unwrap().iter().find(|l| l["ambassador_id"] == ambassador_id).expect("a line")
}

#[tokio::test]
async fn a_batch_pays_eligible_ambassadors_once_and_reports_the_rest() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, _, ann_email) = earner(&app, &team, "Ann", 2).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    // Below the minimum after a correction; suspended; no payout details.
    let (low, _, _) = earner(&app, &team, "Low", 1).await;
    let res = app
        .post(
            "/v1/rewards/adjustments",
            &team.finance,
            &json!({ "ambassador_id": low, "amount_minor": -6000, "reason": "Duplicate payment last year" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (sus, _, _) = earner(&app, &team, "Sus", 1).await;
    let res = app.post(&format!("/v1/ambassadors/{sus}/suspend"), &team.staff, &json!({ "reason": "review" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let nod = app.enrol(&team.staff, json!({ "name": "Nod", "email": "nod@example.com" })).await;
    let nod_code = nod["codes"][0]["code"].as_str().unwrap();
    app.completed_referral(&team, nod_code, "NodClient", today()).await;
    let nod = nod["id"].as_str().unwrap();

    let batch = create_batch(&app, &team.finance).await;
    assert_eq!(batch["status"], "draft");
    assert_eq!(batch["total_minor"], 30000);
    assert_eq!(batch["lines"].as_array().unwrap().len(), 2);
    assert_eq!(line_for(&batch, &ann)["amount_minor"], 20000);
    assert_eq!(line_for(&batch, &ann)["payout_address"], "pp.ann@example.com");
    assert_eq!(line_for(&batch, &bob)["reward_count"], 1);
    let mut skipped: Vec<(String, String, i64)> = batch["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ambassador_id"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
                s["payable_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    skipped.sort();
    let mut expected = vec![
        (low.clone(), "below_minimum".to_owned(), 4000),
        (sus.clone(), "suspended".to_owned(), 10000),
        (nod.to_owned(), "missing_payout_details".to_owned(), 10000),
    ];
    expected.sort();
    assert_eq!(skipped, expected);
    let ann_balance = app.balance(&team.staff, &ann).await;
    assert_eq!(
        (ann_balance["payable_minor"].as_i64(), ann_balance["in_payout_minor"].as_i64()),
        (Some(0), Some(20000))
    );

    // One draft at a time.
    let res = app.post("/v1/payouts", &team.finance, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "payout-in-progress").await;

    let id = batch["id"].as_str().unwrap();
    let paid = mark_paid(&app, &team.finance, id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["reference"], "PP-BATCH-1");
    let paid_lines = paid["lines"].as_array().unwrap();
    assert_eq!(paid_lines.len(), 2, "both lines are in the paid batch");
    assert!(paid_lines.iter().all(|l| l["status"] == "paid"));
    // Paying twice is refused and changes nothing.
    let before = (app.counts(), app.ledger_counts());
    let res = app.post(&format!("/v1/payouts/{id}/mark-paid"), &team.finance, &json!({ "reference": "again" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "paid");
    assert_eq!((app.counts(), app.ledger_counts()), before);
    assert_eq!(app.audit_actions(id), ["payout.created", "payout.locked", "payout.paid"]);

    // One e-mail per ambassador paid; balances moved to paid; the carried balances stay.
    assert_eq!(app.emails("payout_sent").len(), 2);
    let ann_mail: Vec<_> = app.mail_to(&ann_email).await.into_iter().filter(|m| m.subject.contains("payout")).collect();
    assert_eq!(ann_mail.len(), 1, "one e-mail per ambassador paid");
    assert!(ann_mail[0].text.contains("200.00 USD"), "{}", ann_mail[0].text);
    assert!(ann_mail[0].text.contains(paid["code"].as_str().unwrap()), "{}", ann_mail[0].text);
    assert_eq!(app.balance(&team.staff, &ann).await["paid_minor"], 20000);
    assert_eq!(app.balance(&team.staff, &low).await["payable_minor"], 4000);
    app.assert_ledger_consistent();

    // The ambassador sees the payment.
    let token = app.portal_session(&ann_email).await;
    let mine: Value = app.get("/v1/me/payouts", &token).await.json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["status"], "paid");
    assert_eq!(mine["items"][0]["amount_minor"], 20000);
    assert_eq!(mine["items"][0]["batch"], paid["code"]);

    // Nothing left to pay for anyone eligible.
    let res = app.post("/v1/payouts", &team.finance, &json!({})).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "nothing-to-pay").await;
}

#[tokio::test]
async fn payout_routes_are_for_finance_and_refuse_bad_input() {
    let app = spawn_app().await;
    let team = app.team().await;
    assert_problem(app.get("/v1/payouts", &team.staff).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(app.post("/v1/payouts", &team.staff, &json!({})).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(app.get("/v1/reports/summary", &team.staff).await, StatusCode::FORBIDDEN, "forbidden").await;
    let future = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let res = app.post("/v1/payouts", &team.finance, &json!({ "cutoff": future })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["cutoff"]);
    let res = app.post("/v1/payouts", &team.finance, &json!({ "cutoff": "yesterday" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["cutoff"]);
    let res = app.get("/v1/payouts/01930000-0000-7000-8000-000000000000", &team.finance).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.ledger_counts().1, 0);
}

#[tokio::test]
async fn two_finance_users_creating_a_batch_at_once_get_one_batch() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    earner(&app, &team, "Solo", 1).await;
    let empty = json!({});
    let (a, b) =
        tokio::join!(app.post("/v1/payouts", &team.finance, &empty), app.post("/v1/payouts", &team.finance, &empty));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let loser = if a.status() == StatusCode::CONFLICT { a } else { b };
    assert_problem(loser, StatusCode::CONFLICT, "payout-in-progress").await;
    assert_eq!(app.ledger_counts().1, 1);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn marking_a_batch_paid_twice_at_once_pays_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    earner(&app, &team, "Twice", 2).await;
    let batch = create_batch(&app, &team.finance).await;
    // Only a locked batch is paid: the two payments race on it.
    lock_batch(&app, &team.finance, batch["id"].as_str().unwrap()).await;
    let path = format!("/v1/payouts/{}/mark-paid", batch["id"].as_str().unwrap());
    let body = json!({ "reference": "R1" });
    let (a, b) = tokio::join!(app.post(&path, &team.finance, &body), app.post(&path, &team.finance, &body));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    assert_eq!(app.emails("payout_sent").len(), 1);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn cancelling_a_draft_or_failing_a_line_makes_rewards_payable_again() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, _, _) = earner(&app, &team, "Ann", 1).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 2).await;
    let batch = create_batch(&app, &team.finance).await;
    let id = batch["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/payouts/{id}/cancel"), &team.finance, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(app.balance(&team.staff, &bob).await["payable_minor"], 20000);
    let res = app.post(&format!("/v1/payouts/{id}/mark-paid"), &team.finance, &json!({ "reference": "x" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;

    // A new batch takes the same rewards again; a bounced line releases them.
    let batch = create_batch(&app, &team.finance).await;
    let id = batch["id"].as_str().unwrap();
    let paid = mark_paid(&app, &team.finance, id).await;
    let line = line_for(&paid, &bob)["id"].as_str().unwrap().to_owned();
    let fail = format!("/v1/payouts/{id}/lines/{line}/fail");
    let res = app.post(&fail, &team.finance, &json!({ "reason": "" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.post(&fail, &team.finance, &json!({ "reason": "PayPal account unclaimed" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let after: Value = res.json().await.unwrap();
    assert_eq!(line_for(&after, &bob)["status"], "failed");
    assert_eq!(after["total_minor"], 10000);
    let bob_balance = app.balance(&team.staff, &bob).await;
    assert_eq!((bob_balance["paid_minor"].as_i64(), bob_balance["payable_minor"].as_i64()), (Some(0), Some(20000)));
    assert_eq!(app.balance(&team.staff, &ann).await["paid_minor"], 10000);
    let res = app.post(&fail, &team.finance, &json!({ "reason": "again" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    app.assert_ledger_consistent();
    // Bob is paid in the next batch.
    let next = create_batch(&app, &team.finance).await;
    assert_eq!(line_for(&next, &bob)["amount_minor"], 20000);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn refunds_leave_draft_batches_and_claw_back_paid_rewards() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (r1, _) = app.completed_referral(&team, &code, "One", today()).await;
    let (r2, _) = app.completed_referral(&team, &code, "Two", today()).await;
    let (r3, _) = app.completed_referral(&team, &code, "Three", today()).await;

    // Refunded while in a draft: the reward leaves the line, the totals follow.
    let batch = create_batch(&app, &team.finance).await;
    let id = batch["id"].as_str().unwrap().to_owned();
    assert_eq!(batch["total_minor"], 30000);
    let res = app.post(&format!("/v1/referrals/{r1}/refund"), &team.staff, &json!({ "reason_code": "medical" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let draft: Value = app.get(&format!("/v1/payouts/{id}"), &team.finance).await.json().await.unwrap();
    assert_eq!(draft["total_minor"], 20000);
    assert_eq!(line_for(&draft, &ann)["amount_minor"], 20000);
    assert_eq!(line_for(&draft, &ann)["reward_count"], 2);
    assert_eq!(app.reward_of(&team.finance, &r1).await.unwrap()["status"], "voided");
    app.assert_ledger_consistent();
    mark_paid(&app, &team.finance, &id).await;

    // Refunded after payment: one negative clawback, payable at once, netted next time.
    let res = app.post(&format!("/v1/referrals/{r2}/refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.reward_of(&team.finance, &r2).await.unwrap()["status"], "paid", "the paid reward stays paid");
    let claws: Value =
        app.get(&format!("/v1/rewards?referral_id={r2}&kind=clawback"), &team.finance).await.json().await.unwrap();
    let claws = claws["items"].as_array().unwrap();
    assert_eq!(claws.len(), 1);
    assert_eq!((claws[0]["amount_minor"].as_i64(), claws[0]["status"].as_str()), (Some(-10000), Some("payable")));
    let balance = app.balance(&team.staff, &ann).await;
    assert_eq!((balance["payable_minor"].as_i64(), balance["paid_minor"].as_i64()), (Some(-10000), Some(20000)));

    // A negative balance carries over: the next batch skips Ann until she earns it back.
    let (_, _, _) = earner(&app, &team, "Other", 1).await;
    let next = create_batch(&app, &team.finance).await;
    let skipped = next["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0]["ambassador_id"].as_str(), skipped[0]["reason"].as_str()),
        (Some(ann.as_str()), Some("below_minimum"))
    );
    assert_eq!(skipped[0]["payable_minor"], -10000);
    mark_paid(&app, &team.finance, next["id"].as_str().unwrap()).await;
    for n in 0..2 {
        app.completed_referral(&team, &code, &format!("More{n}"), today()).await;
    }
    let third = create_batch(&app, &team.finance).await;
    assert_eq!(line_for(&third, &ann)["amount_minor"], 10000, "20000 earned less the 10000 clawback");
    assert_eq!(line_for(&third, &ann)["reward_count"], 3);
    let _ = r3;
    app.assert_ledger_consistent();
}

pub(crate) async fn csv_records(res: reqwest::Response, has_headers: bool) -> (Vec<String>, Vec<Vec<String>>) {
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut reader = csv::ReaderBuilder::new().has_headers(has_headers).from_reader(text.as_bytes());
    let headers = if has_headers { reader.headers().unwrap().iter().map(str::to_owned).collect() } else { vec![] };
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    (headers, rows)
}

#[tokio::test]
async fn payout_exports_read_back_with_totals_and_no_formulas() {
    let app = spawn_app_with(|s| s.export.paypal_rows_per_file = 2).await;
    let team = app.team().await;
    no_hold(&app).await;
    for name in ["=HYPERLINK(\"http://evil\")", "Bea", "Cy"] {
        let email = format!("{}@example.com", name.len());
        let amb = app
            .enrol(
                &team.staff,
                json!({ "name": name, "email": email,
            "payout_method": { "type": "paypal", "email": format!("pp{}@example.com", name.len()) } }),
            )
            .await;
        let code = amb["codes"][0]["code"].as_str().unwrap();
        app.completed_referral(&team, code, &format!("C{}", name.len()), today()).await;
    }
    let bank = app
        .enrol(
            &team.staff,
            json!({ "name": "Dan", "email": "dan@example.com",
        "payout_method": { "type": "bank", "reference": "+IBAN GB00 0000" } }),
        )
        .await;
    app.completed_referral(&team, bank["codes"][0]["code"].as_str().unwrap(), "Dclient", today()).await;
    let batch = create_batch(&app, &team.finance).await;
    let id = batch["id"].as_str().unwrap();

    let (headers, rows) =
        csv_records(app.get(&format!("/v1/payouts/{id}/export.csv"), &team.finance).await, true).await;
    assert_eq!(
        headers,
        [
            "payout",
            "line",
            "ambassador_id",
            "ambassador_name",
            "ambassador_email",
            "payout_method",
            "payout_details",
            "amount",
            "currency",
            "status",
            "reward_count",
            "reference"
        ]
    );
    assert_eq!(rows.len(), 4);
    let total: f64 = rows.iter().map(|r| r[7].parse::<f64>().unwrap()).sum();
    assert_eq!((total * 100.0).round() as i64, batch["total_minor"].as_i64().unwrap());
    assert!(rows.iter().all(|r| r[7] == "100.00" && r[8] == "USD"));
    let evil = rows.iter().find(|r| r[3].contains("HYPERLINK")).unwrap();
    assert!(evil[3].starts_with("'="), "neutralised: {:?}", evil[3]);
    let dan = rows.iter().find(|r| r[3] == "Dan").unwrap();
    assert_eq!(dan[6], "'+IBAN GB00 0000");

    // PayPal: no header, five columns, PayPal lines only, in parts of 2.
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    assert_eq!(res.headers()["vouch-export-parts"], "2");
    let (_, part1) = csv_records(res, false).await;
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=2"), &team.finance).await;
    let (_, part2) = csv_records(res, false).await;
    assert_eq!((part1.len(), part2.len()), (2, 1));
    let all: Vec<&Vec<String>> = part1.iter().chain(part2.iter()).collect();
    for row in &all {
        assert_eq!(row.len(), 5);
        assert!(row[0].starts_with("pp") && row[0].ends_with("@example.com"), "{row:?}");
        assert_eq!((row[1].as_str(), row[2].as_str()), ("100.00", "USD"));
        assert!(row[3].len() <= 30 && !row[3].contains(' ') && row[3].starts_with("VOUCH-P"), "{row:?}");
        assert!(!row[4].to_lowercase().contains("hair") && !row[4].is_empty());
    }
    let ids: std::collections::HashSet<&str> = all.iter().map(|r| r[3].as_str()).collect();
    assert_eq!((all.len(), ids.len()), (3, 3), "no row twice across parts");
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=3"), &team.finance).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=xml"), &team.finance).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["format"]);
    let res = app.get(&format!("/v1/payouts/{id}/export.csv"), &team.staff).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn reports_sum_the_funnel_the_ledger_and_the_year() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    app.set_program(json!({ "holding_days": 0, "tax_threshold_minor": 20000 })).await;
    let (ann, code, _) = earner(&app, &team, "Ann", 2).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    app.referral_in_treatment(&team.staff, &code, "Pending", today()).await;
    let batch = create_batch(&app, &team.finance).await;
    mark_paid(&app, &team.finance, batch["id"].as_str().unwrap()).await;
    earner(&app, &team, "Cat", 1).await;

    let summary: Value = app.get("/v1/reports/summary", &team.finance).await.json().await.unwrap();
    assert_eq!(summary["referrals"]["registered"], 5);
    assert_eq!(summary["referrals"]["started_treatment"], 5, "every one of them had a session");
    assert_eq!(summary["referrals"]["completed"], 4);
    assert_eq!(summary["referrals"]["paid"], 3, "Ann's two and Bob's rewards were paid");
    assert_eq!(summary["referrals"]["conversion_rate"], 0.8);
    assert_eq!(summary["referrals"]["by_status"]["in_treatment"], 1);
    assert_eq!(summary["rewards"]["paid"], json!({ "count": 3, "amount_minor": 30000 }));
    assert_eq!(summary["rewards"]["payable"], json!({ "count": 1, "amount_minor": 10000 }));
    assert_eq!(summary["top_ambassadors"][0]["ambassador_id"], ann.as_str());
    assert_eq!(summary["top_ambassadors"][0]["completed"], 2);
    assert_eq!(summary["top_ambassadors"][0]["earned_minor"], 20000);

    let year = today().format("%Y").to_string();
    let annual: Value = app.get(&format!("/v1/reports/annual?year={year}"), &team.finance).await.json().await.unwrap();
    assert_eq!(annual["total_paid_minor"], 30000);
    let items = annual["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let row = |id: &str| items.iter().find(|r| r["ambassador_id"] == id).unwrap().clone();
    assert_eq!(
        (row(&ann)["paid_minor"].as_i64(), row(&ann)["over_tax_threshold"].as_bool()),
        (Some(20000), Some(true))
    );
    assert_eq!(
        (row(&bob)["paid_minor"].as_i64(), row(&bob)["over_tax_threshold"].as_bool()),
        (Some(10000), Some(false))
    );

    let (headers, rows) =
        csv_records(app.get(&format!("/v1/reports/annual.csv?year={year}"), &team.finance).await, true).await;
    assert_eq!(
        headers,
        ["year", "ambassador_id", "name", "email", "paid", "currency", "payouts", "over_tax_threshold"]
    );
    assert_eq!(rows.len(), 2);
    let ann_row = rows.iter().find(|r| r[1] == ann).unwrap();
    assert_eq!((ann_row[4].as_str(), ann_row[7].as_str()), ("200.00", "true"));

    let empty: Value = app.get("/v1/reports/annual?year=2001", &team.finance).await.json().await.unwrap();
    assert_eq!(empty["items"], json!([]));
    let res = app.get("/v1/reports/annual?year=1999", &team.finance).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.request(Method::GET, "/v1/reports/annual", Some(&team.finance), None).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["year"]);
}

#[tokio::test]
async fn refunding_while_a_batch_is_marked_paid_never_pays_a_voided_reward() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    for round in 0..4 {
        // A fresh ambassador per round; earlier rounds leave only balances below the minimum.
        let (_, code, _) = app.paid_ambassador(&team.staff, &format!("Edge{round}")).await;
        let (keep, _) = app.completed_referral(&team, &code, &format!("Keep{round}"), today()).await;
        let (refunded, _) = app.completed_referral(&team, &code, &format!("Gone{round}"), today()).await;
        let batch = create_batch(&app, &team.finance).await;
        // Only a locked batch is paid: the payment races the refund on it.
        lock_batch(&app, &team.finance, batch["id"].as_str().unwrap()).await;
        let (pay_path, refund_path) = (
            format!("/v1/payouts/{}/mark-paid", batch["id"].as_str().unwrap()),
            format!("/v1/referrals/{refunded}/refund"),
        );
        let (pay_body, refund_body) = (json!({ "reference": "R" }), json!({ "reason_code": "goodwill" }));
        let (paid, refund) = tokio::join!(
            app.post(&pay_path, &team.finance, &pay_body),
            app.post(&refund_path, &team.staff, &refund_body)
        );
        assert_eq!(paid.status(), StatusCode::OK, "round {round}");
        let gone = app.reward_of(&team.finance, &refunded).await.unwrap();
        let claws: Value = app
            .get(&format!("/v1/rewards?referral_id={refunded}&kind=clawback"), &team.finance)
            .await
            .json()
            .await
            .unwrap();
        let claws = claws["items"].as_array().unwrap().len();
        // The batch is locked, so a refund never takes the reward out of it (never voided): the
        // file pays it and the refund is clawed back.
        match (refund.status(), gone["status"].as_str().unwrap()) {
            // Refunded first (left in the locked line, clawed back by the payment), or paid
            // first (then clawed back by the refund): paid, and clawed back once.
            (StatusCode::OK, "paid") => assert_eq!(claws, 1, "round {round}"),
            // Lost the race to the payment: nothing changed; a retry would claw back.
            (StatusCode::CONFLICT, "paid") => assert_eq!(claws, 0, "round {round}"),
            (s, st) => panic!("round {round}: refund {s}, reward {st}"),
        }
        assert_eq!(app.reward_of(&team.finance, &keep).await.unwrap()["status"], "paid");
        app.assert_ledger_consistent();
    }
}

#[tokio::test]
async fn a_retried_batch_request_replays_instead_of_failing() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    earner(&app, &team, "Retry", 1).await;
    let send = || {
        app.client
            .post(app.url("/v1/payouts"))
            .bearer_auth(&team.finance)
            .header("Idempotency-Key", "batch-2026-11")
            .json(&json!({}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.ledger_counts().1, 1);
}

/// Many ambassadors with a payable balance, written straight to the database (the API path
/// is covered above; this is about volume): ambassador `i` gets `rewards_of(i)` payable
/// adjustments, the `k`th of all of `5000 + k` minor units. Returns the total.
fn seed_payable_ambassadors(app: &TestApp, n: usize, rewards_of: impl Fn(usize) -> usize) -> i64 {
    use diesel::prelude::*;
    use vouch::db::schema::{ambassadors as a, rewards as r};
    let mut conn = app.pool.get().unwrap();
    let at = chrono::Utc::now().naive_utc() - chrono::Duration::hours(1);
    let mut k = 0;
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        for i in 0..n {
            let id = uuid::Uuid::now_v7().to_string();
            diesel::insert_into(a::table)
                .values((
                    a::id.eq(&id),
                    a::status.eq("active"),
                    a::source.eq("staff"),
                    a::name.eq(format!("Bulk {i:05}")),
                    a::email.eq(format!("bulk{i}@example.com")),
                    a::payout_method.eq("paypal"),
                    a::payout_paypal_email.eq(format!("pp{i}@example.com")),
                    a::created_at.eq(at),
                    a::updated_at.eq(at),
                    a::status_changed_at.eq(at),
                ))
                .execute(conn)?;
            for _ in 0..rewards_of(i) {
                k += 1;
                diesel::insert_into(r::table)
                    .values((
                        r::id.eq(uuid::Uuid::now_v7().to_string()),
                        r::ambassador_id.eq(&id),
                        r::kind.eq("adjustment"),
                        r::amount_minor.eq(5000 + k - 1),
                        r::currency.eq("USD"),
                        r::state.eq("open"),
                        r::holds_until.eq(at),
                        r::earned_on.eq(at.date()),
                        r::reason.eq("bulk"),
                        r::created_by.eq("test"),
                        r::created_at.eq(at),
                        r::updated_at.eq(at),
                    ))
                    .execute(conn)?;
            }
        }
        Ok(())
    })
    .unwrap();
    (0..k).map(|k| 5000 + k).sum()
}

#[tokio::test]
async fn a_large_batch_is_written_in_chunks_with_every_line_reward_and_audit_event() {
    use diesel::prelude::*;
    use vouch::db::schema::{audit_events as e, payout_lines as l, rewards as r};
    let app = spawn_app().await;
    // 5,100 lines and 5,600 rewards: more than one statement for each of the lines, the
    // rewards' move and their audit events on PostgreSQL (5,000 rows each), and for the lines
    // and the audit events on SQLite (1,000 rows each).
    let (n, many) = (5_100, 125);
    let rewards_of = |i: usize| if i < many { 5 } else { 1 };
    let expected_total = seed_payable_ambassadors(&app, n, rewards_of);
    // The key after the (slow, blocking) seeding: a keep-alive connection left idle through it
    // may be closed by the server just as the next request goes out.
    let finance = app.key("finance").await;
    let rewards = many * 5 + (n - many);
    assert_eq!(rewards, 5_600);

    let batch = create_batch(&app, &finance).await;
    let id = batch["id"].as_str().unwrap();
    assert_eq!(batch["total_minor"], expected_total);
    let lines = batch["lines"].as_array().unwrap();
    assert_eq!(lines.len(), n);
    let numbers: Vec<i64> = lines.iter().map(|l| l["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=n as i64).collect::<Vec<_>>(), "lines numbered in order, none missing");
    assert_eq!(lines.iter().map(|l| l["reward_count"].as_i64().unwrap()).sum::<i64>(), rewards as i64);
    assert_eq!(lines.iter().filter(|l| l["reward_count"] == 5).count(), many);

    let mut conn = app.pool.get().unwrap();
    let seqs: Vec<i32> =
        l::table.filter(l::payout_id.eq(id)).order(l::method_seq.asc()).select(l::method_seq).load(&mut conn).unwrap();
    assert_eq!(seqs, (1..=n as i32).collect::<Vec<_>>(), "PayPal sequence numbers without gaps");
    // Every reward is in its own ambassador's line, and each line is the sum of its rewards.
    let moved: Vec<(String, String, i64, Option<String>)> = r::table
        .inner_join(l::table)
        .filter(l::payout_id.eq(id))
        .select((r::id, r::state, r::amount_minor, r::payout_line_id))
        .load::<(String, String, i64, Option<String>)>(&mut conn)
        .unwrap();
    assert_eq!(moved.len(), rewards);
    assert!(moved.iter().all(|m| m.1 == "in_payout"));
    let mismatched: i64 = r::table
        .inner_join(l::table)
        .filter(l::payout_id.eq(id))
        .filter(r::ambassador_id.ne(l::ambassador_id))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(mismatched, 0, "no reward in another ambassador's line");
    app.assert_ledger_consistent();

    // The audit trail: the batch, and one event per reward naming its batch and line.
    assert_eq!(app.audit_actions(id), ["payout.created"]);
    let events: Vec<(String, Option<String>)> =
        e::table.filter(e::action.eq("reward.in_payout")).select((e::entity_id, e::details)).load(&mut conn).unwrap();
    assert_eq!(events.len(), rewards);
    let by_reward: std::collections::BTreeMap<String, Value> =
        events.into_iter().map(|(r, d)| (r, serde_json::from_str(&d.unwrap()).unwrap())).collect();
    assert_eq!(by_reward.len(), rewards, "one event per reward");
    for (reward, _, _, line) in &moved {
        let details = &by_reward[reward];
        assert_eq!(details["payout_id"], id);
        assert_eq!(details["payout_line_id"].as_str(), line.as_deref(), "reward {reward}");
    }
}

/// A batch's move of its rewards is a compare-and-set: a reward that stopped being open
/// between the plan and the move (a refund voided it) stays where it is and the count comes up
/// short, which makes `app::payouts::create` refuse the whole batch as stale. Called on the
/// store directly (each backend has its own statement for it): the race cannot be timed
/// through the API.
#[tokio::test]
async fn taking_rewards_into_lines_moves_only_open_ones_and_counts_them() {
    use diesel::prelude::*;
    use vouch::db::schema::{payout_lines as l, rewards as r};
    let app = spawn_app().await;
    seed_payable_ambassadors(&app, 2, |_| 2);
    let finance = app.key("finance").await;
    // A cancelled draft leaves its lines behind and its rewards open: lines to move them into.
    let batch = create_batch(&app, &finance).await;
    let id = batch["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/payouts/{id}/cancel"), &finance, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut conn = app.pool.get().unwrap();
    let line_of: std::collections::BTreeMap<String, String> = l::table
        .filter(l::payout_id.eq(id))
        .select((l::ambassador_id, l::id))
        .load(&mut conn)
        .unwrap()
        .into_iter()
        .collect();
    let rewards: Vec<(String, String)> =
        r::table.order(r::id.asc()).select((r::id, r::ambassador_id)).load(&mut conn).unwrap();
    let moves: Vec<(&str, &str)> = rewards.iter().map(|(id, a)| (id.as_str(), line_of[a].as_str())).collect();
    assert_eq!(moves.len(), 4);
    let at = chrono::Utc::now().naive_utc();
    conn.test_transaction::<_, diesel::result::Error, _>(|conn| {
        diesel::update(r::table.find(moves[2].0))
            .set((r::state.eq("voided"), r::voided_at.eq(at), r::void_reason.eq("refund")))
            .execute(conn)?;
        assert_eq!(vouch::store::payouts::take_rewards(conn, &moves, at)?, 3, "the voided reward is not counted");
        let after: Vec<(String, String, Option<String>)> =
            r::table.order(r::id.asc()).select((r::id, r::state, r::payout_line_id)).load(conn)?;
        for ((id, state, line), (moved, to)) in after.iter().zip(&moves) {
            assert_eq!(id, moved);
            if id == moves[2].0 {
                assert_eq!((state.as_str(), line.as_deref()), ("voided", None));
            } else {
                assert_eq!((state.as_str(), line.as_deref()), ("in_payout", Some(*to)));
            }
        }
        // Taken already: nothing is open to take again.
        assert_eq!(vouch::store::payouts::take_rewards(conn, &moves, at)?, 0);
        Ok(())
    });
}

#[tokio::test]
async fn exports_of_large_batches_stream_every_line_once_across_pages_and_parts() {
    let app = spawn_app_with(|s| s.export.paypal_rows_per_file = 1000).await;
    let n = 1_150; // more than one page of 1,000 line numbers (app::payout_files::PAGE_ROWS)
    let expected_total = seed_payable_ambassadors(&app, n, |_| 1);
    let finance = app.key("finance").await; // after the seeding (see above)
    let batch = create_batch(&app, &finance).await;
    let id = batch["id"].as_str().unwrap();
    assert_eq!(batch["total_minor"], expected_total);

    let res = app.get(&format!("/v1/payouts/{id}/export.csv"), &finance).await;
    assert!(res.headers().get("content-length").is_none(), "streamed (chunked), not buffered");
    let (_, rows) = csv_records(res, true).await;
    assert_eq!(rows.len(), n);
    let lines: std::collections::BTreeSet<i64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(lines.len(), n, "no line twice");
    let cents: i64 = rows.iter().map(|r| r[7].replace('.', "").parse::<i64>().unwrap()).sum();
    assert_eq!(cents, expected_total);

    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &finance).await;
    assert_eq!(res.headers()["vouch-export-parts"], "2");
    let (_, part1) = csv_records(res, false).await;
    let (_, part2) =
        csv_records(app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=2"), &finance).await, false).await;
    assert_eq!((part1.len(), part2.len()), (1000, 150));
    let ids: std::collections::BTreeSet<&str> = part1.iter().chain(part2.iter()).map(|r| r[3].as_str()).collect();
    assert_eq!(ids.len(), n, "parts do not overlap");
    let cents: i64 = part1.iter().chain(part2.iter()).map(|r| r[1].replace('.', "").parse::<i64>().unwrap()).sum();
    assert_eq!(cents, expected_total);
}

#[tokio::test]
async fn two_refunds_at_once_in_one_draft_line_leave_it_equal_to_its_rewards() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let mut refs = Vec::new();
    for name in ["One", "Two", "Three"] {
        refs.push(app.completed_referral(&team, &code, name, today()).await.0);
    }
    let batch = create_batch(&app, &team.finance).await;
    let (p1, p2) = (format!("/v1/referrals/{}/refund", refs[0]), format!("/v1/referrals/{}/refund", refs[1]));
    let body = json!({ "reason_code": "goodwill" });
    let (a, b) = tokio::join!(app.post(&p1, &team.staff, &body), app.post(&p2, &team.staff, &body));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let draft: Value =
        app.get(&format!("/v1/payouts/{}", batch["id"].as_str().unwrap()), &team.finance).await.json().await.unwrap();
    let line = line_for(&draft, &ann);
    assert_eq!((line["amount_minor"].as_i64(), line["reward_count"].as_i64()), (Some(10000), Some(1)));
    assert_eq!(draft["total_minor"], 10000);
    app.assert_ledger_consistent();
    // A third refund leaves the line empty: it is released, nothing is paid for it.
    let res = app.post(&format!("/v1/referrals/{}/refund", refs[2]), &team.staff, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let draft: Value =
        app.get(&format!("/v1/payouts/{}", batch["id"].as_str().unwrap()), &team.finance).await.json().await.unwrap();
    assert_eq!(line_for(&draft, &ann)["status"], "released");
    assert_eq!(draft["total_minor"], 0);
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn a_refund_leaving_a_draft_line_under_the_minimum_carries_it_over() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, code, _) = app.paid_ambassador(&team.staff, "Ann").await;
    let (refunded, _) = app.completed_referral(&team, &code, "Gone", today()).await;
    let res = app
        .post(
            "/v1/rewards/adjustments",
            &team.finance,
            &json!({ "ambassador_id": ann, "amount_minor": 2000, "reason": "bonus" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let batch = create_batch(&app, &team.finance).await;
    assert_eq!(batch["total_minor"], 12000);
    let res =
        app.post(&format!("/v1/referrals/{refunded}/refund"), &team.staff, &json!({ "reason_code": "medical" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let draft: Value =
        app.get(&format!("/v1/payouts/{}", batch["id"].as_str().unwrap()), &team.finance).await.json().await.unwrap();
    assert_eq!(line_for(&draft, &ann)["status"], "released", "2000 is under the 5000 minimum");
    let balance = app.balance(&team.staff, &ann).await;
    assert_eq!((balance["payable_minor"].as_i64(), balance["in_payout_minor"].as_i64()), (Some(2000), Some(0)));
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn suspending_an_ambassador_takes_them_out_of_the_draft() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (ann, _, _) = earner(&app, &team, "Ann", 1).await;
    let (bob, _, _) = earner(&app, &team, "Bob", 1).await;
    let batch = create_batch(&app, &team.finance).await;
    let res = app.post(&format!("/v1/ambassadors/{bob}/suspend"), &team.staff, &json!({ "reason": "review" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = batch["id"].as_str().unwrap();
    let paid = mark_paid(&app, &team.finance, id).await;
    assert_eq!(line_for(&paid, &bob)["status"], "released");
    assert_eq!(line_for(&paid, &ann)["status"], "paid");
    assert_eq!(paid["total_minor"], 10000);
    let bob_balance = app.balance(&team.staff, &bob).await;
    assert_eq!((bob_balance["payable_minor"].as_i64(), bob_balance["paid_minor"].as_i64()), (Some(10000), Some(0)));
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn paypal_parts_stay_fixed_and_paid_batches_cannot_be_uploaded_again() {
    let app = spawn_app_with(|s| s.export.paypal_rows_per_file = 2).await;
    let team = app.team().await;
    no_hold(&app).await;
    for name in ["Ann", "Bob", "Cat", "Dan"] {
        earner(&app, &team, name, 1).await;
    }
    let batch = create_batch(&app, &team.finance).await;
    let id = batch["id"].as_str().unwrap();
    let part2 = format!("/v1/payouts/{id}/export.csv?format=paypal&part=2");
    let (_, before) = csv_records(app.get(&part2, &team.finance).await, false).await;
    // A line of part 1 fails: part 2 keeps exactly its lines.
    let first = batch["lines"][0]["id"].as_str().unwrap();
    let res = app
        .post(&format!("/v1/payouts/{id}/lines/{first}/fail"), &team.finance, &json!({ "reason": "closed account" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, after) = csv_records(app.get(&part2, &team.finance).await, false).await;
    assert_eq!(before, after);
    let (_, part1) =
        csv_records(app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=1"), &team.finance).await, false)
            .await;
    assert_eq!(part1.len(), 1, "the failed line is left out, nothing moves up");
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal&part=99999999999"), &team.finance).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;

    mark_paid(&app, &team.finance, id).await;
    let res = app.get(&format!("/v1/payouts/{id}/export.csv?format=paypal"), &team.finance).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    let res = app.get(&format!("/v1/payouts/{id}/export.csv"), &team.finance).await;
    assert_eq!(res.status(), StatusCode::OK, "the generic file stays available for the records");
}
