use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

async fn post_with_key(app: &crate::helpers::TestApp, api_key: &str, idem: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/ambassadors"))
        .bearer_auth(api_key)
        .header("idempotency-key", idem)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_post_replays_the_first_response() {
    let app = spawn_app().await;
    let body = json!({ "name": "Once", "email": "once@example.com" });
    let first = post_with_key(&app, &app.admin_key, "retry-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = post_with_key(&app, &app.admin_key, "retry-1", &body).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(app.counts().ambassadors, 1);
    assert_eq!(app.counts().codes, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    post_with_key(&app, &app.admin_key, "k", &json!({ "name": "A", "email": "a@example.com" })).await;
    let before = app.counts();
    let res = post_with_key(&app, &app.admin_key, "k", &json!({ "name": "B", "email": "b@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused").await;
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn refusals_are_replayed_too() {
    let app = spawn_app().await;
    let body = json!({ "name": "", "email": "a@example.com" });
    assert_eq!(post_with_key(&app, &app.admin_key, "bad", &body).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = post_with_key(&app, &app.admin_key, "bad", &body).await;
    assert_eq!(res.headers().get("idempotent-replayed").unwrap(), "true");
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
}

#[tokio::test]
async fn concurrent_retries_create_one_ambassador() {
    let app = spawn_app().await;
    let body = json!({ "name": "Race", "email": "race@example.com" });
    let (a, b) = tokio::join!(
        post_with_key(&app, &app.admin_key, "same", &body),
        post_with_key(&app, &app.admin_key, "same", &body)
    );
    for res in [a, b] {
        let status = res.status();
        assert!(status == StatusCode::CREATED || status == StatusCode::CONFLICT, "{status}");
        if status == StatusCode::CONFLICT {
            assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
        }
    }
    assert_eq!(app.counts().ambassadors, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let one = app.key("staff").await;
    let two = app.key("staff").await;
    let res = post_with_key(&app, &one, "shared", &json!({ "name": "A", "email": "a@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = post_with_key(&app, &two, "shared", &json!({ "name": "B", "email": "b@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.counts().ambassadors, 2);
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(300);
    let res = post_with_key(&app, &app.admin_key, &long, &json!({ "name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(app.counts().ambassadors, 0);
}
