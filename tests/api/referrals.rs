use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, TestApp};
use crate::money_support::days_ago;

/// Enrols an ambassador and returns (ambassador id, code).
async fn ambassador(app: &TestApp, staff: &str, name: &str) -> (String, String) {
    let email = format!("{}@example.com", name.to_lowercase());
    let amb = app.enrol(staff, json!({ "name": name, "email": email, "phone": "+1 415 555 0100" })).await;
    (amb["id"].as_str().unwrap().to_owned(), amb["codes"][0]["code"].as_str().unwrap().to_owned())
}

async fn refer(app: &TestApp, staff: &str, body: Value) -> Value {
    let res = app.post("/v1/referrals", staff, &body).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn a_referral_goes_from_registration_to_completion() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (amb_id, code) = ambassador(&app, &staff, "Ann").await;

    let r = refer(
        &app,
        &staff,
        json!({
            "code": code.to_lowercase().replace('-', ""),
            "first_name": "Maria", "last_name": "Garcia",
            "email": " Maria@Example.com ", "phone": "+44 20 7946 0018",
            "external_ref": "CL-1001", "planned_sessions": 3,
            "share_name_with_ambassador": true, "notes": "prefers mornings",
            "registered_on": days_ago(30)
        }),
    )
    .await;
    assert_eq!(r["status"], "registered");
    assert_eq!(r["registered_on"], days_ago(30).to_string());
    assert_eq!(r["ambassador_id"], amb_id.as_str());
    assert_eq!(r["code"], code.as_str());
    assert_eq!(r["client_email"], "maria@example.com");
    assert_eq!(r["client_phone"], "+442079460018");
    assert_eq!(r["source"], "staff");
    let id = r["id"].as_str().unwrap().to_owned();

    let sessions = format!("/v1/referrals/{id}/sessions");
    let res = app.post(&sessions, &staff, &json!({ "session_on": days_ago(20), "note": "first pass" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app.post(&sessions, &staff, &json!({ "session_on": days_ago(6) })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(detail["status"], "in_treatment");
    assert_eq!(detail["session_count"], 2);
    assert_eq!(detail["first_session_on"], days_ago(20).to_string());
    assert!(detail["treatment_started_at"].is_string());
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 2);

    let today = chrono::Utc::now().date_naive().to_string();
    let res = app
        .post(
            &format!("/v1/referrals/{id}/complete"),
            &staff,
            &json!({ "completed_on": today, "treatment_value_minor": 250000 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["earns"], true);
    assert_eq!(done["treatment_value_minor"], 250000);

    // Completing twice is refused and changes nothing.
    let before = app.counts();
    let res = app.post(&format!("/v1/referrals/{id}/complete"), &staff, &json!({ "completed_on": today })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "completed");
    assert_eq!(app.counts(), before);

    let amb: Value = app.get(&format!("/v1/ambassadors/{amb_id}"), &staff).await.json().await.unwrap();
    assert_eq!(amb["referral_counts"]["completed"], 1);
    assert_eq!(amb["referral_counts"]["registered"], 0);
    let listed: Value = app.get("/v1/ambassadors?q=ann", &staff).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["referral_counts"]["completed"], 1);

    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
    let actions: Vec<&str> =
        detail["history"].as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec!["referral.registered", "referral.session_recorded", "referral.session_recorded", "referral.completed"]
    );
}

#[tokio::test]
async fn refusals_name_their_rule_and_store_nothing() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (amb_id, code) = ambassador(&app, &staff, "Rules").await;
    let before = app.counts();

    let cases = [
        (
            json!({ "code": "NOPE-NOPE", "first_name": "A", "email": "a@example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-code",
        ),
        (
            json!({ "code": code, "first_name": "A", "email": "RULES@example.com" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "self-referral",
        ),
        (
            json!({ "code": code, "first_name": "A", "phone": "+1 (415) 555-0100" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "self-referral",
        ),
        (json!({ "code": code, "first_name": "A" }), StatusCode::UNPROCESSABLE_ENTITY, "validation-failed"),
        (
            json!({ "code": code, "first_name": "", "email": "bad", "planned_sessions": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
        (
            json!({ "code": code, "first_name": "A", "email": "a@example.com", "vip": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-failed",
        ),
    ];
    for (body, status, kind) in cases {
        let res = app.post("/v1/referrals", &staff, &body).await;
        assert_problem(res, status, kind).await;
    }
    let res = app
        .post(
            "/v1/referrals",
            &staff,
            &json!({ "code": code, "first_name": "", "email": "bad", "planned_sessions": 0 }),
        )
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let fields: HashSet<String> = problem_fields(&p).into_iter().collect();
    assert_eq!(fields, ["first_name", "email", "planned_sessions"].into_iter().map(String::from).collect());

    // A suspended ambassador's code takes no referrals; a deactivated code is unknown.
    app.post(&format!("/v1/ambassadors/{amb_id}/suspend"), &staff, &json!({ "reason": "x" })).await;
    let res =
        app.post("/v1/referrals", &staff, &json!({ "code": code, "first_name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "ambassador-inactive").await;
    app.post(&format!("/v1/ambassadors/{amb_id}/reactivate"), &staff, &json!({})).await;
    app.post(&format!("/v1/codes/{code}/deactivate"), &staff, &json!({})).await;
    let res =
        app.post("/v1/referrals", &staff, &json!({ "code": code, "first_name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid-code").await;

    let after = app.counts();
    assert_eq!((after.ambassadors, after.referrals), (before.ambassadors, before.referrals));
    let list: Value = app.get("/v1/referrals", &staff).await.json().await.unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_can_only_be_referred_once_while_live() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code_a) = ambassador(&app, &staff, "Alpha").await;
    let (_, code_b) = ambassador(&app, &staff, "Beta").await;
    let first = refer(
        &app,
        &staff,
        json!({ "code": code_a, "first_name": "Sam", "email": "sam@example.com", "phone": "+1 212 555 0199" }),
    )
    .await;
    let first_id = first["id"].as_str().unwrap();

    for body in [
        json!({ "code": code_b, "first_name": "Sam", "email": "SAM@example.com" }),
        json!({ "code": code_b, "first_name": "Samuel", "phone": "+1 (212) 555-0199" }),
    ] {
        let res = app.post("/v1/referrals", &staff, &body).await;
        let p = assert_problem(res, StatusCode::CONFLICT, "duplicate-referral").await;
        assert_eq!(p["existing_referral_id"], first_id);
    }

    // Once the first is rejected, the client may be referred again.
    let res = app
        .post(
            &format!("/v1/referrals/{first_id}/reject"),
            &staff,
            &json!({ "reason_code": "duplicate", "note": "entered twice" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    refer(&app, &staff, json!({ "code": code_b, "first_name": "Sam", "email": "sam@example.com" })).await;
}

#[tokio::test]
async fn two_staff_racing_for_one_client_get_one_201_and_one_409() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code_a) = ambassador(&app, &staff, "Racea").await;
    let (_, code_b) = ambassador(&app, &staff, "Raceb").await;
    for round in 0..3 {
        let email = format!("client{round}@example.com");
        let a = json!({ "code": code_a, "first_name": "C", "email": email });
        let b = json!({ "code": code_b, "first_name": "C", "email": email });
        let (ra, rb) = tokio::join!(app.post("/v1/referrals", &staff, &a), app.post("/v1/referrals", &staff, &b));
        let mut results = Vec::new();
        for res in [ra, rb] {
            let status = res.status();
            results.push((status, res.json::<Value>().await.unwrap()));
        }
        results.sort_by_key(|(s, _)| *s);
        assert_eq!(results[0].0, StatusCode::CREATED, "round {round}: {results:?}");
        assert_eq!(results[1].0, StatusCode::CONFLICT, "round {round}: {results:?}");
        assert_eq!(results[1].1["type"], "duplicate-referral");
        assert_eq!(results[1].1["existing_referral_id"], results[0].1["id"], "the winner is named");
    }
    let list: Value = app.get("/v1/referrals", &staff).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn state_machine_refusals_are_409_with_current_status() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Machine").await;
    let r = refer(&app, &staff, json!({ "code": code, "first_name": "X", "email": "x@example.com" })).await;
    let id = r["id"].as_str().unwrap();
    let today = chrono::Utc::now().date_naive().to_string();

    // Completion needs treatment to have started.
    let res = app.post(&format!("/v1/referrals/{id}/complete"), &staff, &json!({ "completed_on": today })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "registered");
    let res = app.post(&format!("/v1/referrals/{id}/refund"), &staff, &json!({ "reason_code": "goodwill" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;

    // Reason codes are checked per action, and `other` needs a note.
    let res = app.post(&format!("/v1/referrals/{id}/cancel"), &staff, &json!({ "reason_code": "fraud" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["reason_code"]);
    let res = app.post(&format!("/v1/referrals/{id}/cancel"), &staff, &json!({ "reason_code": "other" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["note"]);

    let res = app
        .post(
            &format!("/v1/referrals/{id}/cancel"),
            &staff,
            &json!({ "reason_code": "client_withdrew", "note": "moved" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["reason_code"], "client_withdrew");
    assert_eq!(cancelled["reason_note"], "moved");
    assert!(cancelled["cancelled_at"].is_string());

    // Cancelled is final: no sessions, no completion, no reject.
    let before = app.counts();
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({ "session_on": today })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "cancelled");
    let res = app.post(&format!("/v1/referrals/{id}/reject"), &staff, &json!({ "reason_code": "fraud" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(app.counts(), before);
    let sessions: Value = app.get(&format!("/v1/referrals/{id}/sessions"), &staff).await.json().await.unwrap();
    assert!(sessions["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn completed_referrals_can_be_refunded_once() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Refunder").await;
    let r = refer(&app, &staff, json!({ "code": code, "first_name": "R", "phone": "+1 646 555 0142" })).await;
    let id = r["id"].as_str().unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({})).await;
    app.post(&format!("/v1/referrals/{id}/complete"), &staff, &json!({ "completed_on": today })).await;
    let res =
        app.post(&format!("/v1/referrals/{id}/refund"), &staff, &json!({ "reason_code": "client_dissatisfied" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "refunded");
    let res = app.post(&format!("/v1/referrals/{id}/refund"), &staff, &json!({ "reason_code": "goodwill" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "refunded");
}

#[tokio::test]
async fn bad_dates_and_values_are_refused() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Dates").await;
    let r = refer(&app, &staff, json!({ "code": code, "first_name": "D", "email": "d@example.com" })).await;
    let id = r["id"].as_str().unwrap();
    let future = (chrono::Utc::now().date_naive() + chrono::TimeDelta::days(5)).to_string();
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({ "session_on": future })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["session_on"]);
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({ "session_on": "10/01/2026" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["session_on"]);
    app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({})).await;
    let res = app.post(&format!("/v1/referrals/{id}/complete"), &staff, &json!({ "completed_on": "2001-01-01" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["completed_on"]);
    let today = chrono::Utc::now().date_naive().to_string();
    let res = app
        .post(
            &format!("/v1/referrals/{id}/complete"),
            &staff,
            &json!({ "completed_on": today, "treatment_value_minor": -1 }),
        )
        .await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["treatment_value_minor"]);
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(detail["status"], "in_treatment");
    assert_problem(app.get("/v1/referrals/nope", &staff).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn search_filters_and_pages() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (amb_a, code_a) = ambassador(&app, &staff, "Searcha").await;
    let (_, code_b) = ambassador(&app, &staff, "Searchb").await;
    refer(&app, &staff, json!({ "code": code_a, "first_name": "Lena", "last_name": "Olsen", "email": "lena@example.com", "external_ref": "CL-77" })).await;
    refer(&app, &staff, json!({ "code": code_a, "first_name": "Tom", "phone": "+1 303 555 0111" })).await;
    let third = refer(&app, &staff, json!({ "code": code_b, "first_name": "Ivy", "email": "ivy@example.com" })).await;
    app.post(&format!("/v1/referrals/{}/sessions", third["id"].as_str().unwrap()), &staff, &json!({})).await;

    let names = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["client_first_name"].as_str().unwrap().to_owned()).collect()
    };
    let get = |q: String| {
        let app = &app;
        let staff = staff.clone();
        async move {
            let res = app.get(&format!("/v1/referrals?{q}"), &staff).await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(names(&get(format!("ambassador_id={amb_a}")).await), vec!["Tom", "Lena"]);
    assert_eq!(names(&get("status=in_treatment".into()).await), vec!["Ivy"]);
    assert_eq!(names(&get("q=olsen".into()).await), vec!["Lena"]);
    assert_eq!(names(&get("q=cl-77".into()).await), vec!["Lena"]);
    assert_eq!(names(&get("q=3035550111".into()).await), vec!["Tom"]);
    assert_eq!(names(&get("q=ivy@".into()).await), vec!["Ivy"]);
    let today = chrono::Utc::now().date_naive();
    assert_eq!(names(&get(format!("from={today}&to={today}")).await).len(), 3);
    assert!(names(&get(format!("to={}", today - chrono::TimeDelta::days(1))).await).is_empty());
    let page: Value = get("limit=2".into()).await;
    assert_eq!(names(&page), vec!["Ivy", "Tom"]);
    let next: Value = get(format!("limit=2&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!(names(&next), vec!["Lena"]);
    assert!(next["next_cursor"].is_null());

    for (q, field) in
        [("status=done", "status"), ("from=2026-13-01", "from"), ("from=2026-02-01&to=2026-01-01", "from")]
    {
        let res = app.get(&format!("/v1/referrals?{q}"), &staff).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), vec![field], "{q}");
    }
}

#[tokio::test]
async fn finance_reads_referrals_without_contact_details_and_staff_only_write() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let finance = app.key("finance").await;
    let (_, code) = ambassador(&app, &staff, "Masked").await;
    let r = refer(&app, &staff, json!({ "code": code, "first_name": "Nina", "email": "nina@private.test", "phone": "+1 718 555 0123", "notes": "secret note" })).await;
    let id = r["id"].as_str().unwrap();
    app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({ "note": "session secret" })).await;

    for path in [format!("/v1/referrals/{id}"), "/v1/referrals".to_owned(), format!("/v1/referrals/{id}/sessions")] {
        let res = app.get(&path, &finance).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let text = res.text().await.unwrap();
        for secret in
            ["nina@private.test", "7185550123", "secret note", "session secret", "client_email", "client_phone"]
        {
            assert!(!text.contains(secret), "{secret} leaked to finance at {path}: {text}");
        }
    }
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &finance).await.json().await.unwrap();
    assert_eq!(detail["client_first_name"], "Nina");
    assert_eq!(detail["status"], "in_treatment");

    // Finance may not write; neither may an unauthenticated caller.
    let res = app
        .post("/v1/referrals", &finance, &json!({ "code": code, "first_name": "A", "email": "a@example.com" }))
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.post(&format!("/v1/referrals/{id}/cancel"), &finance, &json!({ "reason_code": "no_show" })).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.client.get(app.url("/v1/referrals")).send().await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The public intake form only takes submissions: it lists nothing.
    let res = app.client.get(app.url("/v1/public/referrals")).send().await.unwrap();
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}

#[tokio::test]
async fn finance_cannot_find_a_client_by_what_finance_may_not_see() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let finance = app.key("finance").await;
    let (_, code) = ambassador(&app, &staff, "Searched").await;
    let r = refer(
        &app,
        &staff,
        json!({ "code": code, "first_name": "Petra", "last_name": "Novak", "email": "petra.private@example.org",
                "phone": "+1 646 555 0177", "external_ref": "CL-4242" }),
    )
    .await;
    let ids = |body: Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
    };
    for q in ["petra.private", "example.org", "6465550177", "555-0177"] {
        let path = format!("/v1/referrals?q={}", urlencoding(q));
        let by_staff: Value = app.get(&path, &staff).await.json().await.unwrap();
        assert_eq!(ids(by_staff), [r["id"].as_str().unwrap()], "staff find by {q}");
        let res = app.get(&path, &finance).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(ids(res.json().await.unwrap()), Vec::<String>::new(), "finance must not find by {q}");
    }
    // What finance sees, finance may search.
    for q in ["petra", "novak", "cl-4242"] {
        let found: Value = app.get(&format!("/v1/referrals?q={q}"), &finance).await.json().await.unwrap();
        assert_eq!(ids(found), [r["id"].as_str().unwrap()], "finance find by {q}");
    }
}

fn urlencoding(q: &str) -> String {
    q.replace('+', "%2B").replace('@', "%40")
}

#[tokio::test]
async fn staff_edit_client_data_under_the_same_rules() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Editor").await;
    let one = refer(&app, &staff, json!({ "code": code, "first_name": "One", "email": "one@example.com" })).await;
    refer(&app, &staff, json!({ "code": code, "first_name": "Two", "email": "two@example.com" })).await;
    let path = format!("/v1/referrals/{}", one["id"].as_str().unwrap());

    let res = app
        .patch(&path, &staff, &json!({ "phone": "+1 (305) 555 0100", "last_name": "Uno", "notes": "call after 5" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["client_phone"], "+13055550100");
    assert_eq!(updated["client_last_name"], "Uno");
    assert_eq!(updated["client_email"], "one@example.com");

    let res = app.patch(&path, &staff, &json!({ "email": "TWO@example.com" })).await;
    assert_problem(res, StatusCode::CONFLICT, "duplicate-referral").await;
    let res = app.patch(&path, &staff, &json!({ "email": "editor@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "self-referral").await;
    let res = app.patch(&path, &staff, &json!({ "email": null, "phone": null })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.patch(&path, &staff, &json!({ "status": "completed" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let now: Value = app.get(&path, &staff).await.json().await.unwrap();
    assert_eq!(now["client_email"], "one@example.com");
    assert_eq!(now["status"], "registered");
}

#[tokio::test]
async fn erasure_scrubs_personal_data_but_keeps_the_record_and_duplicate_detection() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Eraser").await;
    let r = refer(
        &app,
        &staff,
        json!({ "code": code, "first_name": "Gone", "last_name": "Soon", "email": "gone@example.com",
                "phone": "+1 415 555 0199", "notes": "n", "external_ref": "CL-9", "share_name_with_ambassador": true }),
    )
    .await;
    let id = r["id"].as_str().unwrap();
    app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({ "note": "private" })).await;
    let path = format!("/v1/referrals/{id}/personal-data");

    let res = app.request(reqwest::Method::DELETE, &path, Some(&staff), None).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.request(reqwest::Method::DELETE, &path, Some(&app.admin_key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let erased: Value = res.json().await.unwrap();
    for field in ["client_first_name", "client_last_name", "client_email", "client_phone", "notes", "external_ref"] {
        assert_eq!(erased[field], Value::Null, "{field}");
    }
    assert_eq!(erased["status"], "in_treatment");
    assert!(erased["erased_at"].is_string());
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(detail["sessions"][0]["note"], Value::Null);
    let text = detail.to_string();
    assert!(!text.contains("gone@") && !text.contains("4155550199") && !text.contains("Gone"), "{text}");

    // Erasing again is harmless; editing erased data is refused.
    let res = app.request(reqwest::Method::DELETE, &path, Some(&app.admin_key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.patch(&format!("/v1/referrals/{id}"), &staff, &json!({ "first_name": "Back" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;

    // The same client is still caught as a duplicate.
    let (_, other_code) = ambassador(&app, &staff, "Another").await;
    let res = app
        .post("/v1/referrals", &staff, &json!({ "code": other_code, "first_name": "G", "email": "gone@example.com" }))
        .await;
    let p = assert_problem(res, StatusCode::CONFLICT, "duplicate-referral").await;
    assert_eq!(p["existing_referral_id"], id);
    assert_eq!(
        app.audit_actions(id).iter().filter(|a| *a == "referral.personal_data_erased").count(),
        1,
        "audited once"
    );
}

/// The two ways a request can lose a race for one referral: it ran after the winner
/// committed (`invalid-transition`, naming the winner's status), or — on PostgreSQL, where both
/// read the referral before either wrote — its compare-and-set found the row changed
/// (`concurrent-update`). SQLite queues writers, so there the loser always runs after.
fn assert_lost_race(loser: &Value, winner_status: &str, on_postgres: bool, round: usize) {
    match loser["type"].as_str() {
        Some("invalid-transition") => assert_eq!(loser["current_status"], winner_status, "round {round}: {loser}"),
        Some("concurrent-update") if on_postgres => {}
        _ => panic!("round {round}: unexpected loser {loser}"),
    }
    assert_eq!(loser["status"], 409, "round {round}: {loser}");
}

#[tokio::test]
async fn racing_completion_and_cancellation_leave_one_consistent_outcome() {
    let app = spawn_app().await;
    let on_postgres = vouch::db::is_postgres(&app.pool.get().unwrap());
    let staff = app.key("staff").await;
    let (_, code) = ambassador(&app, &staff, "Racer").await;
    let today = chrono::Utc::now().date_naive().to_string();
    let (mut winners, mut loser_types) = (HashSet::new(), HashSet::new());
    // Each round starts the two requests together, the completion or the cancellation sent
    // first in turn, until both have won at least once and, on PostgreSQL, a loser has met the
    // compare-and-set (a bound keeps a stuck scheduler from looping forever).
    let seen_all = |winners: &HashSet<&str>, losers: &HashSet<String>| {
        winners.len() == 2 && (!on_postgres || losers.contains("concurrent-update"))
    };
    let mut round = 0;
    while round < 6 || (!seen_all(&winners, &loser_types) && round < 40) {
        let r =
            refer(&app, &staff, json!({ "code": code, "first_name": "R", "email": format!("r{round}@example.com") }))
                .await;
        let id = r["id"].as_str().unwrap().to_owned();
        let res = app.post(&format!("/v1/referrals/{id}/sessions"), &staff, &json!({})).await;
        assert_eq!(res.status(), StatusCode::CREATED, "round {round}: the session makes completion possible");
        let (complete_path, cancel_path) =
            (format!("/v1/referrals/{id}/complete"), format!("/v1/referrals/{id}/cancel"));
        let (complete_body, cancel_body) =
            (json!({ "completed_on": today }), json!({ "reason_code": "client_withdrew" }));
        let complete = app.post(&complete_path, &staff, &complete_body);
        let cancel = app.post(&cancel_path, &staff, &cancel_body);
        let (a, b) = if round % 2 == 0 {
            tokio::join!(complete, cancel)
        } else {
            let (b, a) = tokio::join!(cancel, complete);
            (a, b)
        };
        let (sa, sb) = (a.status(), b.status());
        assert!((sa == StatusCode::OK) ^ (sb == StatusCode::OK), "round {round}: exactly one wins, got {sa} and {sb}");
        let (winner, loser) = if sa == StatusCode::OK { ("completed", b) } else { ("cancelled", a) };
        assert_eq!(loser.status(), StatusCode::CONFLICT, "round {round}");
        let loser: Value = loser.json().await.unwrap();
        assert_lost_race(&loser, winner, on_postgres, round);
        let detail: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
        assert_eq!(detail["status"], winner, "round {round}");
        let ends = app
            .audit_actions(&id)
            .into_iter()
            .filter(|a| a == "referral.completed" || a == "referral.cancelled")
            .count();
        assert_eq!(ends, 1, "round {round}: one outcome audited");
        winners.insert(winner);
        loser_types.insert(loser["type"].as_str().unwrap().to_owned());
        round += 1;
    }
    assert!(seen_all(&winners, &loser_types), "in {round} rounds: winners {winners:?}, losers {loser_types:?}");
}
