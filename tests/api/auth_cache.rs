//! Verified credentials are cached per instance for `auth.cache_ttl_secs`: ending them on an
//! instance takes effect there at once, and on every other instance within the TTL.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app_with, Instance, TestApp};

const TTL_SECS: u64 = 2;

async fn status_on(app: &TestApp, instance: &Instance, path: &str, token: &str) -> StatusCode {
    app.client.get(format!("{}{path}", instance.address)).bearer_auth(token).send().await.unwrap().status()
}

/// Polls the other instance until `token` is refused there; returns how long after `since`
/// that was. Fails if it takes past the TTL (plus slack for a loaded machine).
async fn refused_within_ttl(app: &TestApp, other: &Instance, path: &str, token: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(TTL_SECS) + Duration::from_millis(1500);
    loop {
        if status_on(app, other, path, token).await == StatusCode::UNAUTHORIZED {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "{path} still answered {TTL_SECS} s after the credential ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_here_and_within_the_ttl_elsewhere() {
    let app = spawn_app_with(|s| s.auth.cache_ttl_secs = TTL_SECS).await;
    let other = app.another_instance();
    let staff = app.key("staff").await;
    let keys: serde_json::Value = app.get("/v1/api-keys", &app.admin_key).await.json().await.unwrap();
    let id = keys["items"].as_array().unwrap().iter().find(|k| k["role"] == "staff").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Both instances verify the key (and keep it).
    assert_eq!(app.get("/v1/ambassadors", &staff).await.status(), StatusCode::OK);
    let cached_at = Instant::now();
    assert_eq!(status_on(&app, &other, "/v1/ambassadors", &staff).await, StatusCode::OK);

    let res = app.request(Method::DELETE, &format!("/v1/api-keys/{id}"), Some(&app.admin_key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The revoking instance forgot it at once.
    assert_eq!(app.get("/v1/ambassadors", &staff).await.status(), StatusCode::UNAUTHORIZED);
    // The other one trusts what it verified until the entry runs out: proof it does not ask
    // the database on every request (checked only while surely inside the TTL).
    let still = status_on(&app, &other, "/v1/ambassadors", &staff).await;
    if cached_at.elapsed() < Duration::from_millis(TTL_SECS * 1000 - 500) {
        assert_eq!(still, StatusCode::OK, "the other instance asked the database again within the TTL");
    }
    refused_within_ttl(&app, &other, "/v1/ambassadors", &staff, cached_at).await;
    // Nothing was written in the key's name after the revocation.
    assert_eq!(app.audit_actions(&id), vec!["api_key.created", "api_key.revoked"]);
}

#[tokio::test]
async fn an_ended_portal_session_or_a_suspension_is_refused_at_once_here_and_within_the_ttl_elsewhere() {
    let app = spawn_app_with(|s| s.auth.cache_ttl_secs = TTL_SECS).await;
    let other = app.another_instance();
    let amb = app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com" })).await;
    let amb_id = amb["id"].as_str().unwrap();

    // Signing out.
    let first = app.portal_session("ann@example.com").await;
    assert_eq!(app.get("/v1/me", &first).await.status(), StatusCode::OK);
    let cached_at = Instant::now();
    assert_eq!(status_on(&app, &other, "/v1/me", &first).await, StatusCode::OK);
    let res = app.client.post(app.url("/v1/portal/logout")).bearer_auth(&first).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/me", &first).await.status(), StatusCode::UNAUTHORIZED);
    refused_within_ttl(&app, &other, "/v1/me", &first, cached_at).await;

    // Suspension: the session stays unrevoked, but only an active ambassador's sessions count.
    let second = app.portal_session("ann@example.com").await;
    assert_eq!(app.get("/v1/me", &second).await.status(), StatusCode::OK);
    let cached_at = Instant::now();
    assert_eq!(status_on(&app, &other, "/v1/me", &second).await, StatusCode::OK);
    let res = app.post(&format!("/v1/ambassadors/{amb_id}/suspend"), &app.admin_key, &json!({ "reason": "x" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", &second).await.status(), StatusCode::UNAUTHORIZED);
    refused_within_ttl(&app, &other, "/v1/me", &second, cached_at).await;

    // Reactivated, the session counts again; a changed e-mail address ends it for good.
    let res = app.post(&format!("/v1/ambassadors/{amb_id}/reactivate"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", &second).await.status(), StatusCode::OK);
    let res =
        app.patch(&format!("/v1/ambassadors/{amb_id}"), &app.admin_key, &json!({ "email": "ann@new.example" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", &second).await.status(), StatusCode::UNAUTHORIZED);
}
