use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app};

fn is_generated_code(code: &str) -> bool {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    code.len() == 9 && &code[4..5] == "-" && code.chars().filter(|c| *c != '-').all(|c| CROCKFORD.contains(c))
}

#[tokio::test]
async fn staff_enrol_an_active_ambassador_with_a_code() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app
        .enrol(
            &staff,
            json!({
                "name": " Ann Lee ",
                "email": " Ann.Lee@Example.COM ",
                "phone": "+1 (415) 555-0100",
                "display_name": "Ann",
                "show_name_to_referrals": true,
                "payout_method": { "type": "paypal", "email": "Ann@PayPal.com" },
                "notification_preferences": { "referral_updates": false, "reward_updates": true },
                "notes": "Met at open day"
            }),
        )
        .await;
    assert_eq!(amb["status"], "active");
    assert_eq!(amb["source"], "staff");
    assert_eq!(amb["name"], "Ann Lee");
    assert_eq!(amb["email"], "ann.lee@example.com");
    assert_eq!(amb["phone"], "+14155550100");
    assert_eq!(amb["payout_method"], json!({ "type": "paypal", "email": "ann@paypal.com" }));
    assert_eq!(amb["notification_preferences"]["referral_updates"], false);
    assert!(amb["created_at"].as_str().unwrap().ends_with('Z'));
    let codes = amb["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 1);
    let code = codes[0]["code"].as_str().unwrap();
    assert!(is_generated_code(code), "{code}");
    assert_eq!(codes[0]["share_url"], format!("{}/r/{code}", app.settings.public_url()));

    let id = amb["id"].as_str().unwrap();
    let fetched: Value = app.get(&format!("/v1/ambassadors/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(fetched, amb);
    assert_eq!(app.audit_actions(id), vec!["ambassador.enrolled"]);
    assert_eq!(app.audit_actions(codes[0]["id"].as_str().unwrap()), vec!["code.created"]);
}

#[tokio::test]
async fn enrol_with_a_vanity_code() {
    let app = spawn_app().await;
    let amb = app.enrol(&app.admin_key, json!({ "name": "James", "email": "j@example.com", "code": "james-10" })).await;
    assert_eq!(amb["codes"][0]["code"], "JAMES-10");
    assert_eq!(amb["codes"][0]["kind"], "vanity");
}

#[tokio::test]
async fn invalid_enrolments_are_refused_with_every_field_named() {
    let app = spawn_app().await;
    let before = app.counts();
    let res = app
        .post(
            "/v1/ambassadors",
            &app.admin_key,
            &json!({
                "name": "",
                "email": "not-an-email",
                "phone": "415 555 0100",
                "show_name_to_referrals": true,
                "payout_method": { "type": "paypal", "email": "nope" },
                "code": "a!"
            }),
        )
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let fields: HashSet<String> = problem_fields(&p).into_iter().collect();
    for f in ["name", "email", "phone", "display_name", "payout_method.email", "code"] {
        assert!(fields.contains(f), "{f} not reported in {p}");
    }
    let res = app
        .post(
            "/v1/ambassadors",
            &app.admin_key,
            &json!({ "name": "A", "email": "a@example.com", "payout_method": { "type": "cheque" } }),
        )
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["payout_method.type"]);
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "Ann", "email": "ann@example.com" })).await;
    let before = app.counts();
    let res =
        app.post("/v1/ambassadors", &app.admin_key, &json!({ "name": "Ann 2", "email": "ANN@example.com " })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "email-taken").await;
    assert_eq!(problem_fields(&p), vec!["email"]);
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn racing_enrolments_of_one_email_give_one_201_and_one_409() {
    let app = spawn_app().await;
    for round in 0..3 {
        let body = json!({ "name": "Racer", "email": format!("racer{round}@example.com") });
        let (a, b) = tokio::join!(
            app.post("/v1/ambassadors", &app.admin_key, &body),
            app.post("/v1/ambassadors", &app.admin_key, &body)
        );
        let mut results = Vec::new();
        for res in [a, b] {
            let status = res.status();
            results.push((status, res.json::<Value>().await.unwrap()));
        }
        results.sort_by_key(|(s, _)| *s);
        let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
        assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::CONFLICT], "round {round}: {results:?}");
        assert_eq!(results[1].1["type"], "email-taken", "round {round}: {results:?}");
        assert_eq!(problem_fields(&results[1].1), vec!["email"], "round {round}");
    }
    assert_eq!(app.counts().ambassadors, 3);
    assert_eq!(app.counts().codes, 3);
}

#[tokio::test]
async fn racing_vanity_codes_leave_no_half_enrolled_ambassador() {
    let app = spawn_app().await;
    let a = json!({ "name": "A", "email": "a@example.com", "code": "SPRING" });
    let b = json!({ "name": "B", "email": "b@example.com", "code": "spr-ing" });
    let (a, b) =
        tokio::join!(app.post("/v1/ambassadors", &app.admin_key, &a), app.post("/v1/ambassadors", &app.admin_key, &b));
    let mut results = Vec::new();
    for res in [a, b] {
        let status = res.status();
        results.push((status, res.json::<Value>().await.unwrap()));
    }
    results.sort_by_key(|(s, _)| *s);
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
    assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::CONFLICT], "{results:?}");
    assert_eq!(results[1].1["type"], "code-taken", "{results:?}");
    // Either request may win; its code is shown as that request typed it (upper-cased).
    let held = results[0].1["codes"][0]["code"].as_str().unwrap().replace('-', "");
    assert_eq!(held, "SPRING", "the winner holds the code: {results:?}");
    // The loser's ambassador row was rolled back with its code.
    let counts = app.counts();
    assert_eq!((counts.ambassadors, counts.codes), (1, 1));
}

#[tokio::test]
async fn staff_edit_an_ambassador() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app
        .enrol(&staff, json!({ "name": "Ann", "email": "ann@example.com", "phone": "+44 20 7946 0018", "notes": "x" }))
        .await;
    app.enrol(&staff, json!({ "name": "Bob", "email": "bob@example.com" })).await;
    let id = amb["id"].as_str().unwrap();
    let path = format!("/v1/ambassadors/{id}");

    let res = app
        .patch(
            &path,
            &staff,
            &json!({
                "display_name": "Annie",
                "show_name_to_referrals": true,
                "phone": null,
                "notes": null,
                "payout_method": { "type": "bank", "reference": " IBAN GB00 1234 " }
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["display_name"], "Annie");
    assert_eq!(updated["show_name_to_referrals"], true);
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["notes"], Value::Null);
    assert_eq!(updated["payout_method"], json!({ "type": "bank", "reference": "IBAN GB00 1234" }));
    assert_eq!(updated["name"], "Ann", "absent fields are left alone");

    let before = app.counts();
    let res = app.patch(&path, &staff, &json!({ "email": "BOB@example.com" })).await;
    assert_problem(res, StatusCode::CONFLICT, "email-taken").await;
    let res = app.patch(&path, &staff, &json!({ "nickname": "x" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["nickname"]);
    let res = app.patch(&path, &staff, &json!({ "name": "" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(app.counts(), before);
    let res = app.patch("/v1/ambassadors/unknown", &staff, &json!({ "name": "X" })).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;

    let unchanged: Value = app.get(&path, &staff).await.json().await.unwrap();
    assert_eq!(unchanged["email"], "ann@example.com");
    assert_eq!(app.audit_actions(id), vec!["ambassador.enrolled", "ambassador.updated"]);
}

#[tokio::test]
async fn lifecycle_follows_the_state_machine() {
    let app = spawn_app().await;
    let amb = app.enrol_named(&app.admin_key, "Life Cycle").await;
    let id = amb["id"].as_str().unwrap();
    let act = |action: &str| format!("/v1/ambassadors/{id}/{action}");

    // Suspending needs a reason.
    let res = app.post(&act("suspend"), &app.admin_key, &json!({})).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["reason"]);

    let res = app.post(&act("suspend"), &app.admin_key, &json!({ "reason": "paused by request" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "suspended");
    assert_eq!(body["status_reason"], "paused by request");

    let res = app.post(&act("suspend"), &app.admin_key, &json!({ "reason": "again" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "suspended");
    let res = app.post(&act("approve"), &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;

    // An empty body is fine where no reason is needed.
    let res = app.client.post(app.url(&act("reactivate"))).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "active");

    let res = app.post(&act("close"), &app.admin_key, &json!({ "reason": "moved away" })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "closed");
    for action in ["reactivate", "suspend", "approve", "decline", "close"] {
        let res = app.post(&act(action), &app.admin_key, &json!({ "reason": "x" })).await;
        let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
        assert_eq!(p["current_status"], "closed");
    }
    assert_eq!(
        app.audit_actions(id),
        vec!["ambassador.enrolled", "ambassador.suspend", "ambassador.reactivate", "ambassador.close"]
    );
    let res = app.post("/v1/ambassadors/unknown/suspend", &app.admin_key, &json!({ "reason": "x" })).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn list_filters_by_status_and_query() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let ann =
        app.enrol(&staff, json!({ "name": "Ann Lee", "email": "ann@example.com", "phone": "+1 415 555 0100" })).await;
    app.enrol(&staff, json!({ "name": "Bob Stone", "email": "bob@clinic.test" })).await;
    app.enrol(&staff, json!({ "name": "Cara 100%_Real", "email": "cara@example.com", "display_name": "CJ" })).await;
    let id = ann["id"].as_str().unwrap();
    app.post(&format!("/v1/ambassadors/{id}/suspend"), &staff, &json!({ "reason": "x" })).await;

    let names = |v: Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
    };
    let get = |q: &str| {
        let path = format!("/v1/ambassadors?{q}");
        let staff = staff.clone();
        let app = &app;
        async move {
            let res = app.get(&path, &staff).await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(names(get("status=suspended").await), vec!["Ann Lee"]);
    assert_eq!(names(get("status=active").await), vec!["Cara 100%_Real", "Bob Stone"]);
    assert_eq!(names(get("q=STONE").await), vec!["Bob Stone"]);
    assert_eq!(names(get("q=clinic.test").await), vec!["Bob Stone"]);
    assert_eq!(names(get("q=cj").await), vec!["Cara 100%_Real"]);
    assert_eq!(names(get("q=5550100").await), vec!["Ann Lee"]);
    assert_eq!(names(get("q=100%25_").await), vec!["Cara 100%_Real"], "LIKE wildcards are literal");
    assert_eq!(names(get("q=%25").await), vec!["Cara 100%_Real"]);
    assert!(names(get("q=nobody").await).is_empty());

    for (q, field) in [
        ("status=gone", "status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("cursor=zzz", "cursor"),
        ("sort=name", "sort"),
    ] {
        let res = app.get(&format!("/v1/ambassadors?{q}"), &staff).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), vec![field], "{q}");
    }
}

#[tokio::test]
async fn pagination_walks_every_item_once_newest_first() {
    let app = spawn_app().await;
    let mut enrolled = Vec::new();
    for i in 0..7 {
        let a = app.enrol_named(&app.admin_key, &format!("Person {i}")).await;
        enrolled.push(a["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/ambassadors?limit=3&cursor={c}"),
            None => "/v1/ambassadors?limit=3".to_owned(),
        };
        let page: Value = app.get(&path, &app.admin_key).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        // Rows added while paging must not disturb the walk.
        if pages == 1 {
            app.enrol_named(&app.admin_key, "Late Comer").await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    enrolled.reverse();
    assert_eq!(seen, enrolled, "every item exactly once, newest first");
}
