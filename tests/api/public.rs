use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, spawn_app_with};

async fn apply(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/public/ambassador-applications"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn applicants_wait_for_approval_then_get_a_code() {
    let app = spawn_app().await;
    let res = apply(
        &app,
        json!({ "name": "Pat Doe", "email": "Pat@Example.com", "message": "Loved my results" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "received");

    let list: Value = app
        .get("/v1/ambassadors?status=applied", &app.admin_key)
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let amb = &items[0];
    assert_eq!(amb["source"], "application");
    assert_eq!(amb["email"], "pat@example.com");
    assert_eq!(amb["application_message"], "Loved my results");
    assert!(
        amb["codes"].as_array().unwrap().is_empty(),
        "no code before approval"
    );
    let id = amb["id"].as_str().unwrap();

    let res = app
        .post(
            &format!("/v1/ambassadors/{id}/approve"),
            &app.admin_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let approved: Value = res.json().await.unwrap();
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["codes"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.audit_actions(id),
        vec!["ambassador.applied", "ambassador.approve"]
    );
}

#[tokio::test]
async fn applications_never_reveal_a_known_email() {
    let app = spawn_app().await;
    app.enrol_named(&app.admin_key, "Known").await;
    let before = app.counts();
    let res = apply(
        &app,
        json!({ "name": "Someone", "email": "KNOWN@example.com" }),
    )
    .await;
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
        apply(
            &app,
            json!({ "name": "A", "email": "a@example.com", "status": "active" }),
        )
        .await,
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
    let list: Value = app
        .get("/v1/ambassadors?status=applied", &app.admin_key)
        .await
        .json()
        .await
        .unwrap();
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/v1/ambassadors/{id}/decline"),
            &app.admin_key,
            &json!({ "reason": "not a client" }),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "declined");
    let res = app
        .post(
            &format!("/v1/ambassadors/{id}/approve"),
            &app.admin_key,
            &json!({}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
}

#[tokio::test]
async fn public_endpoints_are_rate_limited_per_address() {
    let app = spawn_app_with(|s| s.rate_limit.public_per_minute = 3).await;
    for _ in 0..3 {
        let res = app
            .client
            .get(app.url("/v1/public/codes/NOPE"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let res = app
        .client
        .get(app.url("/v1/public/codes/NOPE"))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    let res = apply(&app, json!({ "name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    // Authenticated staff routes are not limited.
    assert_eq!(
        app.get("/v1/ambassadors", &app.admin_key).await.status(),
        StatusCode::OK
    );
}
