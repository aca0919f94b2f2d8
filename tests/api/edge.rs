//! What the edge refuses before any handler runs: control characters in ids and text (a NUL
//! is a 500 from PostgreSQL otherwise), oversized request heads.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app};
use crate::web::Visitor;

#[tokio::test]
async fn control_characters_in_paths_and_query_strings_are_refused_on_both_databases() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    for path in ["/v1/ambassadors/%00", "/v1/ambassadors/abc%00def", "/v1/referrals/%01", "/v1/public/codes/AB%7F"] {
        let p =
            assert_problem(app.get(path, &staff).await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), vec!["path"], "{path}: {p}");
    }
    for (query, field) in [("q=%00", "q"), ("status=active&q=a%0Ab", "q"), ("bad%00name=1", "bad\u{0}name")] {
        let res = app.get(&format!("/v1/referrals?{query}"), &staff).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), vec![field], "{query}: {p}");
    }
    // Ordinary escapes still work.
    assert_eq!(app.get("/v1/referrals?q=a%20b", &staff).await.status(), StatusCode::OK);
    assert_problem(app.get("/v1/ambassadors/no%20such", &staff).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn control_characters_in_json_string_fields_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let before = app.counts();
    for (body, field) in [
        (json!({ "name": "Ann\u{0}Lee", "email": "ann@example.com" }), "name"),
        (json!({ "name": "Ann Lee", "email": "ann@example.com\u{1b}" }), "email"),
        (
            json!({ "name": "Ann Lee", "email": "ann@example.com",
                    "payout_method": { "type": "paypal", "email": "pp\u{0}@example.com" } }),
            "payout_method.email",
        ),
        (json!({ "name": "Ann Lee", "email": "ann@example.com", "notes": "a\u{7f}" }), "notes"),
    ] {
        let res = app.post("/v1/ambassadors", &staff, &body).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), vec![field], "{body}: {p}");
    }
    // An id or code in a body is no different (PostgreSQL would fail on the NUL in a lookup).
    let res = app
        .post("/v1/referrals", &staff, &json!({ "code": "ABCD\u{0}1234", "first_name": "Zed", "email": "z@c.example" }))
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["code"]);
    let res =
        app.client.post(app.url("/v1/portal/sessions")).json(&json!({ "token": "vl_\u{0}" })).send().await.unwrap();
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["token"]);
    assert_eq!(app.counts(), before);
    // Free text keeps its line breaks and tabs.
    let amb = app
        .enrol(&staff, json!({ "name": "Ann Lee", "email": "ann@example.com", "notes": "line one\nline\ttwo" }))
        .await;
    assert_eq!(amb["notes"], "line one\nline\ttwo");
    // A PATCH body is read by the same reader.
    let id = amb["id"].as_str().unwrap();
    let res = app.patch(&format!("/v1/ambassadors/{id}"), &staff, &json!({ "name": "\u{0}" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["name"]);
    let got: Value = app.get(&format!("/v1/ambassadors/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(got["name"], "Ann Lee");
}

#[tokio::test]
async fn control_characters_in_form_fields_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let v = Visitor::new(&app);
    let before = app.counts();
    let res = v.submit("/apply", "/apply", &[("name", "Pat\u{0}Doe"), ("email", "pat@example.com")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert_eq!(app.counts(), before);
    // A token looked up in the database, from the sign-in form.
    let res = v.submit("/portal", "/portal/session", &[("token", "abc\u{0}def")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    let res = v.submit("/apply", "/apply", &[("name", "Pat Doe"), ("email", "pat@example.com")]).await;
    assert!(res.status.is_redirection() || res.status.is_success(), "{}", res.html);
    assert_eq!(app.counts().ambassadors, before.ambassadors + 1);
}

#[tokio::test]
async fn oversized_request_heads_get_431_and_normal_ones_are_served() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let send = |size: usize| {
        app.client.get(app.url("/v1/ambassadors")).bearer_auth(&staff).header("x-padding", "a".repeat(size)).send()
    };
    assert_eq!(send(4 * 1024).await.unwrap().status(), StatusCode::OK);
    assert_problem(send(64 * 1024).await.unwrap(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large")
        .await;
    // Many small headers count together, and so does a long query string.
    let mut req = app.client.get(app.url("/v1/ambassadors")).bearer_auth(&staff);
    for i in 0..40 {
        req = req.header(format!("x-pad-{i}"), "b".repeat(500));
    }
    assert_problem(req.send().await.unwrap(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
    let long_query = format!("/v1/referrals?q={}", "c".repeat(20 * 1024));
    let res = app.get(&long_query, &staff).await;
    assert_problem(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
    // The refusals changed nothing and the service keeps serving.
    assert_eq!(send(100).await.unwrap().status(), StatusCode::OK);
}
