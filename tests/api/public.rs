use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, spawn_app_with};

async fn apply(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.client.post(app.url("/v1/public/ambassador-applications")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn applicants_wait_for_approval_then_get_a_code() {
    let app = spawn_app().await;
    let res =
        apply(&app, json!({ "name": "Pat Doe", "email": "Pat@Example.com", "message": "Loved my results" })).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "received");

    let list: Value = app.get("/v1/ambassadors?status=applied", &app.admin_key).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let amb = &items[0];
    assert_eq!(amb["source"], "application");
    assert_eq!(amb["email"], "pat@example.com");
    assert_eq!(amb["application_message"], "Loved my results");
    assert!(amb["codes"].as_array().unwrap().is_empty(), "no code before approval");
    let id = amb["id"].as_str().unwrap();

    let res = app.post(&format!("/v1/ambassadors/{id}/approve"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let approved: Value = res.json().await.unwrap();
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["codes"].as_array().unwrap().len(), 1);
    assert_eq!(app.audit_actions(id), vec!["ambassador.applied", "ambassador.approve"]);
}

#[tokio::test]
async fn applications_never_reveal_a_known_email() {
    let app = spawn_app().await;
    app.enrol_named(&app.admin_key, "Known").await;
    let before = app.counts();
    let res = apply(&app, json!({ "name": "Someone", "email": "KNOWN@example.com" })).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn bad_applications_are_422_and_store_nothing() {
    let app = spawn_app().await;
    let before = app.counts();
    let p = assert_problem(
        apply(&app, json!({ "name": "", "email": "x" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["name", "email"]);
    let p = assert_problem(
        apply(&app, json!({ "name": "A", "email": "a@example.com", "status": "active" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["status"]);
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn declined_applicants_cannot_be_approved_later() {
    let app = spawn_app().await;
    apply(&app, json!({ "name": "No", "email": "no@example.com" })).await;
    let list: Value = app.get("/v1/ambassadors?status=applied", &app.admin_key).await.json().await.unwrap();
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let res =
        app.post(&format!("/v1/ambassadors/{id}/decline"), &app.admin_key, &json!({ "reason": "not a client" })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "declined");
    let res = app.post(&format!("/v1/ambassadors/{id}/approve"), &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
}

#[tokio::test]
async fn public_endpoints_are_rate_limited_per_address() {
    let app = spawn_app_with(|s| s.rate_limit.public_per_minute = 3).await;
    for _ in 0..3 {
        let res = app.client.get(app.url("/v1/public/codes/NOPE")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let res = app.client.get(app.url("/v1/public/codes/NOPE")).send().await.unwrap();
    let retry_after: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    let res = apply(&app, json!({ "name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    let res =
        app.client.post(app.url("/v1/portal/login")).json(&json!({ "email": "a@example.com" })).send().await.unwrap();
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    // Authenticated staff routes are not limited.
    assert_eq!(app.get("/v1/ambassadors", &app.admin_key).await.status(), StatusCode::OK);
}

async fn intake(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.client.post(app.url("/v1/public/referrals")).json(&body).send().await.unwrap()
}

async fn all_referrals(app: &crate::helpers::TestApp) -> Vec<Value> {
    let list: Value = app.get("/v1/referrals", &app.admin_key).await.json().await.unwrap();
    list["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_friend_refers_themselves_through_the_share_link() {
    let app = spawn_app().await;
    let amb =
        app.enrol(&app.admin_key, json!({ "name": "Sharer", "email": "sharer@example.com", "code": "SHARE1" })).await;
    let res = intake(
        &app,
        json!({ "code": "share-1", "first_name": "Lou", "last_name": "Reed", "email": "Lou@Example.com",
                "consent_to_contact": true, "share_name_with_ambassador": true }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "status": "received" }));
    let items = all_referrals(&app).await;
    assert_eq!(items.len(), 1);
    let r = &items[0];
    assert_eq!(r["status"], "registered");
    assert_eq!(r["source"], "public_form");
    assert_eq!(r["ambassador_id"], amb["id"]);
    assert_eq!(r["client_email"], "lou@example.com");
    assert_eq!(r["share_name_with_ambassador"], true);
}

#[tokio::test]
async fn invalid_submissions_answer_the_same_and_are_kept_rejected_for_staff() {
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "Owner", "email": "owner@example.com", "code": "OWNER1" })).await;
    let first = intake(
        &app,
        json!({ "code": "OWNER1", "first_name": "Kim", "email": "kim@example.com", "consent_to_contact": true }),
    )
    .await;
    let first_status = first.status();
    let first_body = first.text().await.unwrap();
    for body in [
        json!({ "code": "OWNER1", "first_name": "Kim", "email": "KIM@example.com", "consent_to_contact": true }),
        json!({ "code": "OWNER1", "first_name": "Me", "email": "owner@example.com", "consent_to_contact": true }),
        json!({ "code": "NO-SUCH", "first_name": "Who", "email": "who@example.com", "consent_to_contact": true }),
    ] {
        let res = intake(&app, body).await;
        assert_eq!(res.status(), first_status, "same answer, valid or not");
        assert_eq!(res.text().await.unwrap(), first_body);
    }
    let items = all_referrals(&app).await;
    let reasons: Vec<(String, String)> = items
        .iter()
        .map(|r| (r["status"].as_str().unwrap().to_owned(), r["reason_code"].as_str().unwrap_or("-").to_owned()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("rejected".to_owned(), "other".to_owned()),
            ("rejected".to_owned(), "self_referral".to_owned()),
            ("rejected".to_owned(), "duplicate".to_owned()),
            ("registered".to_owned(), "-".to_owned()),
        ]
    );
    assert_eq!(items[0]["ambassador_id"], Value::Null, "an unknown code belongs to nobody");
    assert_eq!(items[0]["submitted_code"], "NO-SUCH");
    assert!(items[2]["reason_note"].as_str().unwrap().contains(items[3]["id"].as_str().unwrap()));

    // The owner sees neither the accepted submission nor those rejected on arrival until the
    // clinic has seen the friend: then only the accepted one.
    let me = app.portal_session("owner@example.com").await;
    let mine: Value = app.get("/v1/me/referrals", &me).await.json().await.unwrap();
    assert_eq!(mine["items"], json!([]));
    let accepted = items[3]["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/referrals/{accepted}/sessions"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mine: Value = app.get("/v1/me/referrals", &me).await.json().await.unwrap();
    let mine = mine["items"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], accepted);
}

#[tokio::test]
async fn intake_needs_consent_and_a_contact() {
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "O", "email": "o@example.com", "code": "CONSENT" })).await;
    let p = assert_problem(
        intake(
            &app,
            json!({ "code": "CONSENT", "first_name": "A", "email": "a@example.com", "consent_to_contact": false }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["consent_to_contact"]);
    let p = assert_problem(
        intake(&app, json!({ "code": "CONSENT", "first_name": "A", "consent_to_contact": true })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["email"]);
    assert!(all_referrals(&app).await.is_empty());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_keys_on_the_address_the_proxy_saw() {
    let app = spawn_app_with(|s| {
        s.rate_limit.public_per_minute = 1;
        s.server.trust_forwarded_for = true;
    })
    .await;
    let lookup = |forwarded: &'static str| {
        app.client.get(app.url("/v1/public/codes/NOPE-NOPE")).header("X-Forwarded-For", forwarded).send()
    };
    assert_eq!(lookup("1.1.1.1, 203.0.113.7").await.unwrap().status(), StatusCode::NOT_FOUND);
    // A client that makes up a new first hop each time is still the same client to the proxy.
    assert_eq!(lookup("2.2.2.2, 203.0.113.7").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(lookup("203.0.113.8").await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_ipv6_client_is_limited_by_its_64_network() {
    let app = spawn_app_with(|s| {
        s.rate_limit.public_per_minute = 2;
        s.server.trust_forwarded_for = true;
    })
    .await;
    let lookup = |from: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/v1/public/codes/NOPE1"))
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // A new address per request inside one /64 is still one client.
    assert_eq!(lookup("2001:db8:aa:1::1").await, StatusCode::NOT_FOUND);
    assert_eq!(lookup("2001:db8:aa:1::2").await, StatusCode::NOT_FOUND);
    assert_eq!(lookup("2001:db8:aa:1:ffff::9").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(lookup("2001:db8:aa:2::1").await, StatusCode::NOT_FOUND, "another network is another client");
}
