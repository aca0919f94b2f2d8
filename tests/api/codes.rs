use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app};

#[tokio::test]
async fn staff_add_generated_and_vanity_codes() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol_named(&staff, "Coder").await;
    let id = amb["id"].as_str().unwrap();
    let path = format!("/v1/ambassadors/{id}/codes");

    let res = app.request(Method::POST, &path, Some(&staff), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["kind"], "generated");
    let res = app.post(&path, &staff, &json!({ "code": "summer-24" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let vanity: Value = res.json().await.unwrap();
    assert_eq!(vanity["code"], "SUMMER-24");

    let list: Value = app.get(&path, &staff).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    // Taken, ignoring case and hyphens, by anyone.
    let other = app.enrol_named(&staff, "Other").await;
    let before = app.counts();
    let res = app
        .post(
            &format!("/v1/ambassadors/{}/codes", other["id"].as_str().unwrap()),
            &staff,
            &json!({ "code": "SUMMER24" }),
        )
        .await;
    let p = assert_problem(res, StatusCode::CONFLICT, "code-taken").await;
    assert_eq!(problem_fields(&p), vec!["code"]);
    let res = app.post(&path, &staff, &json!({ "code": "no spaces" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.post("/v1/ambassadors/unknown/codes", &staff, &json!({})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn deactivated_codes_stop_matching_and_stay_reserved() {
    let app = spawn_app().await;
    let amb = app.enrol(&app.admin_key, json!({ "name": "D", "email": "d@example.com", "code": "KEEPME" })).await;
    assert_eq!(app.client.get(app.url("/v1/public/codes/keepme")).send().await.unwrap().status(), StatusCode::OK);

    let res = app.post("/v1/codes/keep-me/deactivate", &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], false);
    assert!(body["deactivated_at"].is_string());

    let res = app.client.get(app.url("/v1/public/codes/KEEPME")).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = app.post("/v1/codes/KEEPME/deactivate", &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    let res = app.post("/v1/codes/NOSUCH/deactivate", &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = app
        .post(
            &format!("/v1/ambassadors/{}/codes", amb["id"].as_str().unwrap()),
            &app.admin_key,
            &json!({ "code": "keepme" }),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "code-taken").await;
}

#[tokio::test]
async fn closed_ambassadors_get_no_new_codes() {
    let app = spawn_app().await;
    let amb = app.enrol_named(&app.admin_key, "Closing").await;
    let id = amb["id"].as_str().unwrap();
    app.post(&format!("/v1/ambassadors/{id}/close"), &app.admin_key, &json!({ "reason": "left" })).await;
    let res = app.post(&format!("/v1/ambassadors/{id}/codes"), &app.admin_key, &json!({})).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "closed");
}

#[tokio::test]
async fn public_lookup_is_case_and_hyphen_insensitive_and_discreet() {
    let app = spawn_app().await;
    let anon = app
        .enrol(&app.admin_key, json!({ "name": "Anon Person", "email": "anon@example.com", "display_name": "Anon" }))
        .await;
    let shown = app
        .enrol(&app.admin_key, json!({ "name": "Shown Person", "email": "shown@example.com", "display_name": "Sam", "show_name_to_referrals": true }))
        .await;
    let anon_code = anon["codes"][0]["code"].as_str().unwrap();
    let shown_code = shown["codes"][0]["code"].as_str().unwrap();

    let lookup = |code: String| {
        let app = &app;
        async move { app.client.get(app.url(&format!("/v1/public/codes/{code}"))).send().await.unwrap() }
    };
    let res = lookup(anon_code.to_lowercase().replace('-', "")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], anon_code);
    assert_eq!(body["valid"], true);
    assert_eq!(body["ambassador_display_name"], Value::Null, "no name without opt-in");
    let text = body.to_string();
    assert!(!text.contains("Anon") && !text.contains("anon@"), "{text}");

    let body: Value = lookup(shown_code.to_owned()).await.json().await.unwrap();
    assert_eq!(body["ambassador_display_name"], "Sam");
    assert!(!body.to_string().contains("Shown Person"));

    assert_problem(lookup("NOPE-NOPE".into()).await, StatusCode::NOT_FOUND, "not-found").await;
    // A suspended ambassador's code takes no referrals.
    app.post(
        &format!("/v1/ambassadors/{}/suspend", shown["id"].as_str().unwrap()),
        &app.admin_key,
        &json!({ "reason": "x" }),
    )
    .await;
    assert_problem(lookup(shown_code.to_owned()).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn lookalike_letters_typed_for_digits_match_a_generated_code() {
    use diesel::prelude::*;
    use vouch::db::schema::referral_codes as rc;
    let app = spawn_app().await;
    let amb = app.enrol(&app.admin_key, json!({ "name": "Card Holder", "email": "card@example.com" })).await;
    assert_eq!(amb["codes"][0]["kind"], "generated");
    // Pin the random code to one with every digit that has a look-alike letter, so the typos
    // below are typos in every run.
    let mut conn = app.pool.get().unwrap();
    let pinned = diesel::update(rc::table.filter(rc::ambassador_id.eq(amb["id"].as_str().unwrap())))
        .set((rc::code.eq("10Q4-K1M0"), rc::normalized.eq("10Q4K1M0")))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(pinned, 1);
    drop(conn);
    let lookup = |code: &str| {
        let url = app.url(&format!("/v1/public/codes/{code}"));
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    for typo in ["IOQ4-KLMO", "loq4kimo", "1OQ4-K1M0", "10Q4-KIMO"] {
        let res = lookup(typo).await;
        assert_eq!(res.status(), StatusCode::OK, "{typo}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "10Q4-K1M0", "{typo}");
    }
    // Only the look-alikes are forgiven.
    assert_problem(lookup("10Q4-K1M8").await, StatusCode::NOT_FOUND, "not-found").await;
    assert_problem(lookup("IOQ4-KLMU").await, StatusCode::NOT_FOUND, "not-found").await;
}
