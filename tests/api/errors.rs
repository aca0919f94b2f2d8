//! Every class of client mistake answers problem+json and changes nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, problem_fields, spawn_app};

#[tokio::test]
async fn body_mistakes_are_precise_problems_with_no_change() {
    let app = spawn_app().await;
    let before = app.counts();
    let post_raw = |body: &'static str, content_type: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/ambassadors"))
                .bearer_auth(&app.admin_key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let p = assert_problem(
        post_raw(r#"{"name": "A", "email": "#, "application/json").await,
        StatusCode::BAD_REQUEST,
        "malformed-request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    assert_problem(post_raw("", "application/json").await, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert_problem(post_raw("[1, 2]", "application/json").await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed")
        .await;
    assert_problem(
        post_raw(r#"{"name":"A","email":"a@example.com"}"#, "text/plain").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    let p = assert_problem(
        post_raw(r#"{"name":"A","email":"a@example.com","admin":true}"#, "application/json").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["admin"]);
    let p = assert_problem(
        post_raw(r#"{"name":"A","email":["a@example.com"]}"#, "application/json").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["email"]);
    let p = assert_problem(
        post_raw(r#"{"name":"A"}"#, "application/json").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["email"]);
    let p = assert_problem(
        post_raw(r#"{"name":"A","email":"a@example.com","notification_preferences":{"referral_updates":"yes","reward_updates":true}}"#, "application/json").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), vec!["notification_preferences.referral_updates"]);

    let big = format!(r#"{{"name":"A","email":"a@example.com","notes":"{}"}}"#, "x".repeat(70 * 1024));
    let res = app
        .client
        .post(app.url("/v1/ambassadors"))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;

    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    let res = app.get("/v1/nothing-here", &app.admin_key).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = app.client.get(app.url("/nothing")).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res =
        app.client.put(app.url("/v1/ambassadors")).bearer_auth(&app.admin_key).json(&json!({})).send().await.unwrap();
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    let res = app.get("/v1/ambassadors/does-not-exist", &app.admin_key).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn errors_never_leak_internals() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/v1/ambassadors",
            &app.admin_key,
            &json!({ "name": "A'; DROP TABLE ambassadors; --", "email": "x@example.com" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "SQL in data is just data");
    let res = app.post("/v1/ambassadors", &app.admin_key, &json!({ "name": "B", "email": "x@example.com" })).await;
    let text = res.text().await.unwrap();
    for leak in ["UNIQUE", "constraint", "duplicate key", "diesel", "sqlite", "postgres"] {
        assert!(!text.to_lowercase().contains(&leak.to_lowercase()), "{leak} leaked: {text}");
    }
}
