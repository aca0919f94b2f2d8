//! Program rules and the rewards ledger: amounts, tiers, caps, holds, refunds, adjustments.

use chrono::NaiveDate;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app};
use crate::money_support::{days_ago, program, today};

#[tokio::test]
async fn the_program_starts_with_defaults_and_changes_by_new_versions() {
    let app = spawn_app().await;
    let team = app.team().await;
    let current: Value = app.get("/v1/program", &team.staff).await.json().await.unwrap();
    assert_eq!(current["version"], 1);
    assert_eq!(current["reward"], json!({ "type": "flat", "amount_minor": 10000 }));
    assert_eq!((current["holding_days"].as_i64(), current["min_payout_minor"].as_i64()), (Some(14), Some(5000)));
    assert_eq!(
        (current["attribution_days"].as_i64(), current["tax_threshold_minor"].as_i64()),
        (Some(365), Some(60000))
    );

    // Only admins change the rules; bad rules name every bad field and store nothing.
    let res = app.request(Method::PUT, "/v1/program", Some(&team.staff), Some(&program(json!({})))).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let bad = program(json!({ "currency": "EURO", "reward": { "type": "percent", "basis_points": 0 },
                              "holding_days": -1, "tiers": [{ "min_completed": 1, "amount_minor": 5 }] }));
    let res = app.request(Method::PUT, "/v1/program", Some(&app.admin_key), Some(&bad)).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(
        problem_fields(&p),
        ["currency", "reward.basis_points", "tiers[0].min_completed", "tiers[0].basis_points", "holding_days"]
    );
    let res = app.request(Method::PUT, "/v1/program", Some(&app.admin_key), Some(&json!({ "currency": "EUR" }))).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;

    let v2 = app.set_program(json!({ "currency": "EUR", "client_offer": "A free consultation" })).await;
    assert_eq!(v2["version"], 2);
    let versions: Value = app.get("/v1/program/versions", &team.finance).await.json().await.unwrap();
    let numbers: Vec<i64> =
        versions["items"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(app.audit_actions(v2["id"].as_str().unwrap()), ["program.updated"]);

    // The client offer shows on the public code lookup.
    let (_, code, _) = app.paid_ambassador(&team.staff, "Offer Owner").await;
    let res = app.client.get(app.url(&format!("/v1/public/codes/{code}"))).send().await.unwrap();
    let lookup: Value = res.json().await.unwrap();
    assert_eq!(lookup["client_offer"], "A free consultation");

    // Once rewards exist the currency is locked.
    let (_, reward) = app.completed_referral(&team, &code, "Locker", today()).await;
    assert_eq!(reward["currency"], "EUR");
    let res = app
        .request(Method::PUT, "/v1/program", Some(&app.admin_key), Some(&program(json!({ "currency": "GBP" }))))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "currency-locked").await;
}

#[tokio::test]
async fn completion_earns_one_reward_under_the_version_in_force() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb_id, code, email) = app.paid_ambassador(&team.staff, "Earner").await;
    let (referral_id, reward) = app.completed_referral(&team, &code, "Maria", today()).await;
    assert_eq!(reward["kind"], "earned");
    assert_eq!(reward["amount_minor"], 10000);
    assert_eq!(reward["status"], "held");
    assert_eq!(reward["ambassador_id"], amb_id.as_str());
    let holds_until = (today() + chrono::Duration::days(14)).to_string();
    assert!(reward["holds_until"].as_str().unwrap().starts_with(&holds_until), "{reward}");
    assert_eq!(reward["basis"]["type"], "flat");
    assert_eq!(reward["basis"]["completed_in_year"], 1);
    let v1 = reward["program_version_id"].as_str().unwrap().to_owned();
    assert_eq!(app.audit_actions(reward["id"].as_str().unwrap()), ["reward.earned"]);

    // The ambassador hears about it, with the client named only as "First L.".
    let mails: Vec<_> = app.mail_to(&email).await.into_iter().filter(|m| m.subject == "You earned a reward").collect();
    assert_eq!(mails.len(), 1);
    for part in [&mails[0].text, &mails[0].html] {
        assert!(part.contains("Maria C.") && part.contains("100.00 USD"), "{part}");
        assert!(!part.contains("Client") && !part.contains("maria@clients.example"), "{part}");
    }
    assert!(mails[0].text.contains(&holds_until), "{}", mails[0].text);

    // A new version applies to later completions only.
    app.set_program(json!({ "reward": { "type": "flat", "amount_minor": 20000 } })).await;
    let earlier = app.reward_of(&team.finance, &referral_id).await.unwrap();
    assert_eq!(earlier["amount_minor"], 10000);
    assert_eq!(earlier["program_version_id"], v1.as_str());
    let (_, later) = app.completed_referral(&team, &code, "Nina", today()).await;
    assert_eq!(later["amount_minor"], 20000);
    assert_ne!(later["program_version_id"], v1.as_str());

    let balance = app.balance(&team.staff, &amb_id).await;
    assert_eq!(
        balance,
        json!({ "currency": "USD", "held_minor": 30000, "payable_minor": 0, "in_payout_minor": 0,
                                "paid_minor": 0, "lifetime_minor": 30000 })
    );

    // Retrying a completion cannot make a second reward.
    let res = app
        .post(&format!("/v1/referrals/{referral_id}/complete"), &team.staff, &json!({ "completed_on": today() }))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    let all: Value =
        app.get(&format!("/v1/rewards?referral_id={referral_id}"), &team.finance).await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn reward_emails_respect_the_ambassadors_preference() {
    let app = spawn_app().await;
    let team = app.team().await;
    let amb = app
        .enrol(&team.staff, json!({ "name": "Quiet", "email": "quiet@example.com",
                                    "notification_preferences": { "referral_updates": false, "reward_updates": false } }))
        .await;
    let code = amb["codes"][0]["code"].as_str().unwrap();
    app.completed_referral(&team, code, "Silent", today()).await;
    assert!(app.emails("reward_earned").is_empty());
}

#[tokio::test]
async fn percent_rewards_need_the_treatment_value_and_respect_the_max() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "reward": { "type": "percent", "basis_points": 1000, "max_minor": 30000 } })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Percent").await;

    let id = app.referral_in_treatment(&team.staff, &code, "Valueless", today()).await;
    let before = (app.counts(), app.ledger_counts());
    let res = app.post(&format!("/v1/referrals/{id}/complete"), &team.staff, &json!({ "completed_on": today() })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "treatment-value-required").await;
    assert_eq!(problem_fields(&p), ["treatment_value_minor"]);
    assert_eq!((app.counts(), app.ledger_counts()), before, "the completion rolled back");
    let r: Value = app.get(&format!("/v1/referrals/{id}"), &team.staff).await.json().await.unwrap();
    assert_eq!(r["status"], "in_treatment");

    app.complete(&team.staff, &id, today(), Some(250_050)).await;
    let reward = app.reward_of(&team.finance, &id).await.unwrap();
    assert_eq!(reward["amount_minor"], 25005);
    assert_eq!(reward["basis"]["treatment_value_minor"], 250050);
    assert_eq!(reward["basis"]["basis_points"], 1000);

    let id = app.referral_in_treatment(&team.staff, &code, "Bigspender", today()).await;
    app.complete(&team.staff, &id, today(), Some(1_000_000)).await;
    assert_eq!(app.reward_of(&team.finance, &id).await.unwrap()["amount_minor"], 30000);
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[tokio::test]
async fn tiers_count_completions_in_the_calendar_year() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "tiers": [{ "min_completed": 5, "amount_minor": 15000 }] })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Tiered").await;
    let year = today().format("%Y").to_string().parse::<i32>().unwrap() - 1;
    let mut amounts = Vec::new();
    for (i, d) in ["12-20", "12-21", "12-22", "12-23", "12-31"].iter().enumerate() {
        let on = day(&format!("{year}-{d}"));
        let (_, r) = app.completed_referral(&team, &code, &format!("Client{i}"), on).await;
        amounts.push(r["amount_minor"].as_i64().unwrap());
    }
    assert_eq!(amounts, [10000, 10000, 10000, 10000, 15000], "the 5th completion of the year reaches the tier");
    // The year turns: counting starts again.
    let (_, r) = app.completed_referral(&team, &code, "Newyear", day(&format!("{}-01-01", year + 1))).await;
    assert_eq!(r["amount_minor"], 10000);
    assert_eq!(r["basis"]["completed_in_year"], 1);
}

#[tokio::test]
async fn tiers_follow_completion_dates_and_count_only_completions_that_earn() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "tiers": [{ "min_completed": 3, "amount_minor": 15000 }], "attribution_days": 30 })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Ordered").await;
    let year = today().format("%Y").to_string().parse::<i32>().unwrap() - 1;
    let on = |md: &str| day(&format!("{year}-{md}"));
    let place = |r: &Value| (r["amount_minor"].as_i64().unwrap(), r["basis"]["completed_in_year"].as_i64().unwrap());

    let (a, reward_a) = app.completed_referral(&team, &code, "Alpha", on("03-10")).await;
    assert_eq!(place(&reward_a), (10000, 1));
    // Outside the attribution window: completed, earns nothing, so it takes no place.
    let slow = app.referral_in_treatment(&team.staff, &code, "Slow", on("01-02")).await;
    app.complete(&team.staff, &slow, on("03-09"), None).await;
    assert!(app.reward_of(&team.finance, &slow).await.is_none());
    // Refunded: its reward is voided, so it takes no place either.
    let (refunded, reward_r) = app.completed_referral(&team, &code, "Refunded", on("03-08")).await;
    assert_eq!(place(&reward_r), (10000, 1), "dated before Alpha");
    let res =
        app.post(&format!("/v1/referrals/{refunded}/refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let (b, reward_b) = app.completed_referral(&team, &code, "Bravo", on("03-11")).await;
    assert_eq!(place(&reward_b), (10000, 2), "only Alpha earned before it");
    // Recorded late with an earlier date: first of the year, and nobody else's reward moves.
    let (_, reward_c) = app.completed_referral(&team, &code, "Charlie", on("03-01")).await;
    assert_eq!(place(&reward_c), (10000, 1));
    for (id, before) in [(&a, &reward_a), (&b, &reward_b)] {
        let now = app.reward_of(&team.finance, id).await.unwrap();
        assert_eq!(
            (now["amount_minor"].clone(), now["basis"].clone()),
            (before["amount_minor"].clone(), before["basis"].clone())
        );
        assert_eq!(app.audit_actions(now["id"].as_str().unwrap()), ["reward.earned"]);
    }
    let (_, reward_d) = app.completed_referral(&team, &code, "Delta", on("03-20")).await;
    assert_eq!(place(&reward_d), (15000, 4), "Charlie, Alpha and Bravo came before");
    // The same day as Alpha: Alpha was completed first, so it comes after.
    let (_, reward_e) = app.completed_referral(&team, &code, "Echo", on("03-10")).await;
    assert_eq!(place(&reward_e), (15000, 3));
}

#[tokio::test]
async fn the_annual_cap_cuts_rewards_partially_then_to_zero() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "annual_cap_minor": 25000 })).await;
    let (amb_id, code, _) = app.paid_ambassador(&team.staff, "Capped").await;
    let mut got = Vec::new();
    for name in ["Ava", "Ben", "Cai", "Dee"] {
        let (_, r) = app.completed_referral(&team, &code, name, today()).await;
        got.push((r["amount_minor"].as_i64().unwrap(), r["capped_reason"].as_str().map(str::to_owned)));
    }
    assert_eq!(got, [(10000, None), (10000, None), (5000, Some("annual_cap".into())), (0, Some("annual_cap".into()))]);
    assert_eq!(app.balance(&team.staff, &amb_id).await["lifetime_minor"], 25000);
    assert!(app.emails("reward_earned").len() == 3, "no e-mail for a zero reward");
}

#[tokio::test]
async fn rewards_are_held_until_the_refund_window_ends() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb_id, code, _) = app.paid_ambassador(&team.staff, "Holder").await;
    let (_, due) = app.completed_referral(&team, &code, "Boundary", days_ago(14)).await;
    let (_, held) = app.completed_referral(&team, &code, "Inside", days_ago(13)).await;
    assert_eq!(due["status"], "payable", "held until midnight 14 days after completion, payable from then");
    assert_eq!(held["status"], "held");
    let payable: Value = app.get("/v1/rewards?status=payable", &team.finance).await.json().await.unwrap();
    let ids: Vec<&str> = payable["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [due["id"].as_str().unwrap()]);
    let balance = app.balance(&team.staff, &amb_id).await;
    assert_eq!((balance["held_minor"].as_i64(), balance["payable_minor"].as_i64()), (Some(10000), Some(10000)));
}

#[tokio::test]
async fn outside_the_attribution_window_nothing_is_earned() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "attribution_days": 30 })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Late").await;
    let id = app.referral_in_treatment(&team.staff, &code, "Slow", days_ago(40)).await;
    app.complete(&team.staff, &id, today(), None).await;
    let r: Value = app.get(&format!("/v1/referrals/{id}"), &team.staff).await.json().await.unwrap();
    assert_eq!(
        (r["earns"].as_bool(), r["not_earning_reason"].as_str()),
        (Some(false), Some("outside_attribution_window"))
    );
    assert!(app.reward_of(&team.finance, &id).await.is_none());
}

#[tokio::test]
async fn a_refund_before_payment_voids_the_reward() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb_id, code, _) = app.paid_ambassador(&team.staff, "Refunded").await;
    let (id, reward) = app.completed_referral(&team, &code, "Unhappy", today()).await;
    let res = app.post(&format!("/v1/referrals/{id}/refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = app.reward_of(&team.finance, &id).await.unwrap();
    assert_eq!(after["status"], "voided");
    assert_eq!(after["void_reason"], "refunded");
    assert_eq!(app.audit_actions(reward["id"].as_str().unwrap()), ["reward.earned", "reward.voided"]);
    assert_eq!(app.balance(&team.staff, &amb_id).await["lifetime_minor"], 0);
    let clawbacks: Value = app.get("/v1/rewards?kind=clawback", &team.finance).await.json().await.unwrap();
    assert!(clawbacks["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn finance_adjusts_balances_with_a_reason() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb_id, _, _) = app.paid_ambassador(&team.staff, "Adjusted").await;
    let path = "/v1/rewards/adjustments";
    let before = app.ledger_counts();
    for (body, field) in [
        (json!({ "ambassador_id": amb_id, "amount_minor": 0, "reason": "x" }), "amount_minor"),
        (json!({ "ambassador_id": amb_id, "amount_minor": 500, "reason": " " }), "reason"),
    ] {
        let p = assert_problem(
            app.post(path, &team.finance, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        )
        .await;
        assert_eq!(problem_fields(&p), [field]);
    }
    let body = json!({ "ambassador_id": amb_id, "amount_minor": 2500, "reason": "Launch bonus" });
    assert_problem(app.post(path, &team.staff, &body).await, StatusCode::FORBIDDEN, "forbidden").await;
    let missing = json!({ "ambassador_id": "01930000-0000-7000-8000-000000000000", "amount_minor": 1, "reason": "x" });
    assert_problem(app.post(path, &team.finance, &missing).await, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.ledger_counts(), before);

    let res = app.post(path, &team.finance, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bonus: Value = res.json().await.unwrap();
    assert_eq!((bonus["kind"].as_str(), bonus["status"].as_str()), (Some("adjustment"), Some("payable")));
    let res = app
        .post(path, &team.finance, &json!({ "ambassador_id": amb_id, "amount_minor": -1000, "reason": "Correction" }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let balance = app.balance(&team.staff, &amb_id).await;
    assert_eq!(balance["payable_minor"], 1500);
    assert_eq!(app.audit_actions(bonus["id"].as_str().unwrap()), ["reward.adjusted"]);
}

#[tokio::test]
async fn ambassadors_see_their_own_rewards_without_treatment_details() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "reward": { "type": "percent", "basis_points": 1000 } })).await;
    let (_, code, email) = app.paid_ambassador(&team.staff, "Viewer").await;
    let (_, other_code, _) = app.paid_ambassador(&team.staff, "Other").await;
    let id = app.referral_in_treatment(&team.staff, &code, "Private", today()).await;
    app.complete(&team.staff, &id, today(), Some(987_650)).await;
    let other = app.referral_in_treatment(&team.staff, &other_code, "Stranger", today()).await;
    app.complete(&team.staff, &other, today(), Some(100_000)).await;

    let token = app.portal_session(&email).await;
    let res = app.get("/v1/me/rewards", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let raw = res.text().await.unwrap();
    assert!(!raw.contains("987650") && !raw.contains("basis") && !raw.contains("program_version"), "{raw}");
    let mine: Value = serde_json::from_str(&raw).unwrap();
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only their own");
    assert_eq!(items[0]["client"], "Private C.");
    assert_eq!(items[0]["amount_minor"], 98765);
    assert_eq!(items[0]["status"], "held");
    let me: Value = app.get("/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["balance"]["held_minor"], 98765);
    // Ambassadors cannot reach finance routes.
    assert_problem(app.get("/v1/rewards", &token).await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn racing_completion_and_refund_leave_the_ledger_consistent() {
    let app = spawn_app().await;
    let team = app.team().await;
    // No hold, so whatever survives the races is paid below and the ledger check has a
    // payout to check.
    app.set_program(json!({ "holding_days": 0 })).await;
    let (racer, code, _) = app.paid_ambassador(&team.staff, "Racer").await;
    let mut survivors = 0;
    for round in 0..4 {
        let id = app.referral_in_treatment(&team.staff, &code, &format!("Race{round}"), today()).await;
        let complete = json!({ "completed_on": today() });
        let refund = json!({ "reason_code": "goodwill" });
        let (complete_path, refund_path) =
            (format!("/v1/referrals/{id}/complete"), format!("/v1/referrals/{id}/refund"));
        let (a, b) = tokio::join!(
            app.post(&complete_path, &team.staff, &complete),
            app.post(&refund_path, &team.staff, &refund)
        );
        assert_eq!(a.status(), StatusCode::OK, "round {round}");
        let r: Value = app.get(&format!("/v1/referrals/{id}"), &team.staff).await.json().await.unwrap();
        let reward = app.reward_of(&team.finance, &id).await.unwrap();
        match b.status() {
            StatusCode::OK => {
                assert_eq!(r["status"], "refunded");
                assert_eq!(reward["status"], "voided", "round {round}");
            }
            StatusCode::CONFLICT => {
                assert_eq!(r["status"], "completed");
                assert_eq!(reward["status"], "payable", "round {round}");
                survivors += 1;
            }
            other => panic!("round {round}: refund answered {other}"),
        }
        let all: Value = app.get(&format!("/v1/rewards?referral_id={id}"), &team.finance).await.json().await.unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 1, "round {round}: one reward, no clawback");
    }
    // One more that nobody refunds, so there is always something to pay: the batch pays the
    // rewards that survived and no voided one.
    app.completed_referral(&team, &code, "Keeper", today()).await;
    let res = app.post("/v1/payouts", &team.finance, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let batch: Value = res.json().await.unwrap();
    let line = &batch["lines"][0];
    assert_eq!(line["ambassador_id"], racer.as_str());
    assert_eq!(line["amount_minor"].as_i64(), Some(10000 * (survivors + 1)));
    crate::payouts::lock_batch(&app, &team.finance, batch["id"].as_str().unwrap()).await;
    let path = format!("/v1/payouts/{}/mark-paid", batch["id"].as_str().unwrap());
    let res = app.post(&path, &team.finance, &json!({ "reference": "R" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let balance = app.balance(&team.staff, &racer).await;
    assert_eq!(
        (balance["paid_minor"].as_i64(), balance["payable_minor"].as_i64()),
        (Some(10000 * (survivors + 1)), Some(0))
    );
    app.assert_ledger_consistent();
}

#[tokio::test]
async fn completions_at_once_respect_the_annual_cap_together() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "annual_cap_minor": 25000 })).await;
    let (amb_id, code, _) = app.paid_ambassador(&team.staff, "Busy").await;
    for name in ["First", "Second"] {
        app.completed_referral(&team, &code, name, today()).await;
    }
    let a = app.referral_in_treatment(&team.staff, &code, "Third", today()).await;
    let b = app.referral_in_treatment(&team.staff, &code, "Fourth", today()).await;
    let body = json!({ "completed_on": today() });
    let (pa, pb) = (format!("/v1/referrals/{a}/complete"), format!("/v1/referrals/{b}/complete"));
    let (ra, rb) = tokio::join!(app.post(&pa, &team.staff, &body), app.post(&pb, &team.staff, &body));
    assert_eq!((ra.status(), rb.status()), (StatusCode::OK, StatusCode::OK));
    let mut amounts = vec![
        app.reward_of(&team.finance, &a).await.unwrap()["amount_minor"].as_i64().unwrap(),
        app.reward_of(&team.finance, &b).await.unwrap()["amount_minor"].as_i64().unwrap(),
    ];
    amounts.sort();
    assert_eq!(amounts, [0, 5000], "one takes what is left of the cap, the other gets nothing");
    assert_eq!(app.balance(&team.staff, &amb_id).await["lifetime_minor"], 25000);
}

#[tokio::test]
async fn program_rules_left_out_take_the_design_defaults() {
    let app = spawn_app().await;
    let body = json!({ "currency": "GBP", "reward": { "type": "flat", "amount_minor": 7500 } });
    let res = app.request(Method::PUT, "/v1/program", Some(&app.admin_key), Some(&body)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["currency"], "GBP");
    assert_eq!(
        (
            p["holding_days"].as_i64(),
            p["min_payout_minor"].as_i64(),
            p["attribution_days"].as_i64(),
            p["tax_threshold_minor"].as_i64()
        ),
        (Some(14), Some(5000), Some(365), Some(60000))
    );
}

#[tokio::test]
async fn paypal_addresses_that_read_as_formulas_are_refused() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let res = app
        .post(
            "/v1/ambassadors",
            &staff,
            &json!({ "name": "Eve", "email": "eve@example.com",
            "payout_method": { "type": "paypal", "email": "=cmd@example.com" } }),
        )
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["payout_method.email"]);
}

/// Completions share the program row's lock, a rule change takes it alone: completions of
/// different ambassadors run side by side, and a currency change either comes before all of
/// them (every reward in the new currency) or is refused after the first (`currency-locked`),
/// never in between (a reward in a currency the program no longer has).
#[tokio::test]
async fn completions_run_together_but_never_beside_a_currency_change() {
    let app = spawn_app().await;
    let team = app.team().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (_, code, _) = app.paid_ambassador(&team.staff, &format!("Amb {i}")).await;
        ids.push(app.referral_in_treatment(&team.staff, &code, &format!("Client{i}"), today()).await);
    }
    let complete = |id: String| {
        let app = &app;
        let staff = team.staff.clone();
        async move {
            let res =
                app.post(&format!("/v1/referrals/{id}/complete"), &staff, &json!({ "completed_on": today() })).await;
            assert_eq!(res.status(), StatusCode::OK);
        }
    };
    let eur = program(json!({ "currency": "EUR" }));
    let change = app.request(Method::PUT, "/v1/program", Some(&app.admin_key), Some(&eur));
    let (changed, ..) = tokio::join!(
        change,
        complete(ids[0].clone()),
        complete(ids[1].clone()),
        complete(ids[2].clone()),
        complete(ids[3].clone())
    );
    let changed_status = changed.status();
    let currency = app.get("/v1/program", &app.admin_key).await.json::<Value>().await.unwrap()["currency"].clone();
    if changed_status == StatusCode::OK {
        assert_eq!(currency, "EUR");
    } else {
        assert_problem(changed, StatusCode::UNPROCESSABLE_ENTITY, "currency-locked").await;
        assert_eq!(currency, "USD");
    }
    for id in &ids {
        let reward = app.reward_of(&team.finance, id).await.expect("an earned reward");
        assert_eq!(reward["currency"], currency, "{reward}");
    }
}

/// A completion's year to date (its place for tiers, the year's earnings for the cap) is read
/// from two indexes alone on SQLite, not from the tables row by row, so a completion does not
/// cost more with every completion the ambassador had that year (the two statements as
/// `store::rewards::year_to_date` writes them).
#[tokio::test]
async fn the_year_to_date_of_a_completion_is_read_from_indexes_alone() {
    let app = spawn_app().await;
    let mut conn = app.pool.get().unwrap();
    let vouch::db::DbConnection::Sqlite(lite) = &mut *conn else {
        return; // PostgreSQL plans tiny test tables as sequential scans: see the README.
    };
    for (query, index) in [
        (
            "SELECT count(*) FROM referrals WHERE ambassador_id = 'a' AND status = 'completed' AND earns = 1 \
             AND completed_on BETWEEN '2026-01-01' AND '2026-12-07' AND id <> 'r'",
            "referrals_ambassador_status_idx",
        ),
        (
            "SELECT sum(amount_minor) FROM rewards WHERE ambassador_id = 'a' AND kind IN ('earned', 'clawback') \
             AND state <> 'voided' AND earned_on BETWEEN '2026-01-01' AND '2026-12-31'",
            "rewards_ambassador_earned_idx",
        ),
    ] {
        let plan = crate::helpers::sqlite_plan(lite, query);
        assert!(plan.iter().any(|s| s.contains(&format!("USING COVERING INDEX {index}"))), "{query}: {plan:?}");
    }
}
