use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, TestApp};

async fn exchange(app: &TestApp, token: &str) -> reqwest::Response {
    app.client.post(app.url("/v1/portal/sessions")).json(&json!({ "token": token })).send().await.unwrap()
}

async fn login(app: &TestApp, email: &str) -> reqwest::Response {
    app.client.post(app.url("/v1/portal/login")).json(&json!({ "email": email })).send().await.unwrap()
}

#[tokio::test]
async fn an_ambassador_signs_in_with_a_one_time_link() {
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com" })).await;

    let res = login(&app, " ANN@example.com ").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let links = app.login_links("ann@example.com").await;
    assert_eq!(links.len(), 1);
    assert!(links[0].starts_with(&format!("{}/portal/login?token=", app.settings.public_url())));
    let token = links[0].split("token=").nth(1).unwrap();

    let res = exchange(&app, token).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.unwrap();
    let bearer = session["token"].as_str().unwrap();
    assert!(bearer.starts_with("vp_"));
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));

    let me: Value = app.get("/v1/me", bearer).await.json().await.unwrap();
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["referral_counts"]["registered"], 0);

    // The link works once.
    let p = assert_problem(exchange(&app, token).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-login-link").await;
    assert_eq!(problem_fields(&p), vec!["token"]);
    assert_problem(exchange(&app, "made-up").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-login-link").await;

    // Signing out ends the session.
    let res = app.client.post(app.url("/v1/portal/logout")).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/v1/me", bearer).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn login_never_reveals_who_is_an_ambassador() {
    let app = spawn_app().await;
    let amb = app.enrol(&app.admin_key, json!({ "name": "Sus", "email": "sus@example.com" })).await;
    app.post(
        &format!("/v1/ambassadors/{}/suspend", amb["id"].as_str().unwrap()),
        &app.admin_key,
        &json!({ "reason": "x" }),
    )
    .await;
    let before = app.outbox_count();
    for email in ["nobody@example.com", "sus@example.com"] {
        let res = login(&app, email).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({ "status": "received" }));
    }
    assert_eq!(app.outbox_count(), before, "no link for unknown or inactive ambassadors");
    let p =
        assert_problem(login(&app, "not-an-email").await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["email"]);
}

#[tokio::test]
async fn expired_links_are_refused() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "Late", "email": "late@example.com" })).await;
    login(&app, "late@example.com").await;
    let token = app.login_links("late@example.com").await[0].split("token=").nth(1).unwrap().to_owned();
    {
        use vouch::db::schema::portal_login_tokens as plt;
        let mut conn = app.pool.get().unwrap();
        let past = chrono::Utc::now().naive_utc() - chrono::TimeDelta::minutes(16);
        diesel::update(plt::table).set(plt::expires_at.eq(past)).execute(&mut conn).unwrap();
    }
    assert_problem(exchange(&app, &token).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-login-link").await;
}

#[tokio::test]
async fn ambassadors_manage_their_own_profile() {
    let app = spawn_app().await;
    app.enrol(&app.admin_key, json!({ "name": "Pro File", "email": "pro@example.com", "code": "PROFILE1" })).await;
    let me = app.portal_session("pro@example.com").await;

    let res = app
        .patch(
            "/v1/me",
            &me,
            &json!({
                "display_name": "Pro",
                "show_name_to_referrals": true,
                "payout_method": { "type": "paypal", "email": "Pro@PayPal.com" },
                "notification_preferences": { "referral_updates": false, "reward_updates": true }
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["display_name"], "Pro");
    assert_eq!(body["payout_method"], json!({ "type": "paypal", "email": "pro@paypal.com" }));
    assert_eq!(body["notification_preferences"]["referral_updates"], false);

    // Refusals change nothing.
    let res = app.patch("/v1/me", &me, &json!({ "name": "New Name" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["name"]);
    let res = app.patch("/v1/me", &me, &json!({ "display_name": null })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["display_name"]);
    let res = app.patch("/v1/me", &me, &json!({ "payout_method": { "type": "bank", "reference": "" } })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let now: Value = app.get("/v1/me", &me).await.json().await.unwrap();
    assert_eq!(now["display_name"], "Pro");
    assert_eq!(now["payout_method"]["type"], "paypal");

    let codes: Value = app.get("/v1/me/codes", &me).await.json().await.unwrap();
    assert_eq!(codes["items"][0]["code"], "PROFILE1");
    assert_eq!(codes["items"][0]["share_url"], format!("{}/r/PROFILE1", app.settings.public_url()));
    // Staff-side the change is visible and audited as the ambassador's.
    let id = now["id"].as_str().unwrap();
    let audit: Value = app.get(&format!("/v1/audit?entity_id={id}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(audit["items"][0]["action"], "ambassador.updated");
    assert_eq!(audit["items"][0]["actor_type"], "ambassador");
}

/// `/v1/me/referrals` pages newest first with a cursor and filters by status, over the
/// ambassador's own referrals only.
#[tokio::test]
async fn ambassadors_page_and_filter_their_referrals() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    app.enrol(&staff, json!({ "name": "Amb P", "email": "p@example.com", "code": "AMBP" })).await;
    app.enrol(&staff, json!({ "name": "Amb Q", "email": "q@example.com", "code": "AMBQ" })).await;
    let mut ids = Vec::new();
    for (code, name) in [("AMBP", "one"), ("AMBQ", "theirs"), ("AMBP", "two"), ("AMBP", "three")] {
        let body = json!({ "code": code, "first_name": name, "email": format!("{name}@private.test") });
        let res = app.post("/v1/referrals", &staff, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let reason = json!({ "reason_code": "duplicate", "note": "seen before" });
    assert_eq!(app.post(&format!("/v1/referrals/{}/reject", ids[2]), &staff, &reason).await.status(), StatusCode::OK);

    let me = app.portal_session("p@example.com").await;
    let first: Value = app.get("/v1/me/referrals?limit=2", &me).await.json().await.unwrap();
    let page_ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(page_ids(&first), [ids[3].clone(), ids[2].clone()], "newest first");
    assert_eq!(first["items"][0]["code"], "AMBP");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second: Value = app.get(&format!("/v1/me/referrals?limit=2&cursor={cursor}"), &me).await.json().await.unwrap();
    assert_eq!(page_ids(&second), [ids[0].clone()]);
    assert!(second["next_cursor"].is_null());

    let rejected: Value = app.get("/v1/me/referrals?status=rejected", &me).await.json().await.unwrap();
    assert_eq!(page_ids(&rejected), [ids[2].clone()]);
    assert_eq!(rejected["items"][0]["status"], "rejected");
    let registered: Value = app.get("/v1/me/referrals?status=registered", &me).await.json().await.unwrap();
    assert_eq!(page_ids(&registered), [ids[3].clone(), ids[0].clone()]);
}

#[tokio::test]
async fn ambassadors_see_their_referrals_masked_and_nothing_else() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    app.enrol(&staff, json!({ "name": "Amb A", "email": "a@example.com", "code": "AMBA" })).await;
    app.enrol(&staff, json!({ "name": "Amb B", "email": "b@example.com", "code": "AMBB" })).await;
    let consenting = json!({
        "code": "AMBA", "first_name": "maria", "last_name": "garcia", "email": "maria@private.test",
        "phone": "+1 917 555 0147", "external_ref": "CL-SECRET", "notes": "private note", "share_name_with_ambassador": true
    });
    let private =
        json!({ "code": "AMBA", "first_name": "Hidden", "last_name": "Person", "email": "hidden@private.test" });
    let other = json!({ "code": "AMBB", "first_name": "Other", "email": "other@private.test" });
    let mut ids = Vec::new();
    for body in [consenting, private, other] {
        let res = app.post("/v1/referrals", &staff, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let today = chrono::Utc::now().date_naive().to_string();
    app.post(&format!("/v1/referrals/{}/sessions", ids[0]), &staff, &json!({ "note": "session note" })).await;
    app.post(
        &format!("/v1/referrals/{}/complete", ids[0]),
        &staff,
        &json!({ "completed_on": today, "treatment_value_minor": 199900 }),
    )
    .await;

    let me = app.portal_session("a@example.com").await;
    let res = app.get("/v1/me/referrals", &me).await;
    assert_eq!(res.status(), StatusCode::OK);
    let raw = res.text().await.unwrap();
    let list: Value = serde_json::from_str(&raw).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "only A's referrals");
    assert_eq!(items[0]["client"], "Referral AMBA…");
    assert_eq!(items[1]["client"], "maria G.");
    assert_eq!(items[1]["status"], "completed");
    assert_eq!(items[1]["session_count"], 1);
    assert_eq!(items[1]["completed_on"], today.as_str());

    // The privacy rule on every /v1/me response, checked on the raw JSON.
    let mut bodies = vec![raw];
    for path in [
        "/v1/me".to_owned(),
        "/v1/me/codes".to_owned(),
        format!("/v1/me/referrals/{}", ids[0]),
        format!("/v1/me/referrals/{}", ids[1]),
    ] {
        let res = app.get(&path, &me).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        bodies.push(res.text().await.unwrap());
    }
    for body in &bodies {
        for secret in [
            "private.test",
            "9175550147",
            "CL-SECRET",
            "private note",
            "session note",
            "199900",
            "Hidden",
            "Person",
            "garcia",
        ] {
            assert!(!body.contains(secret), "{secret} leaked to the ambassador: {body}");
        }
    }
    let me_view: Value = app.get("/v1/me", &me).await.json().await.unwrap();
    assert_eq!(me_view["referral_counts"]["completed"], 1);
    assert_eq!(me_view["referral_counts"]["registered"], 1);

    // Another ambassador's referral does not exist for A; staff routes are closed to A.
    assert_problem(app.get(&format!("/v1/me/referrals/{}", ids[2]), &me).await, StatusCode::NOT_FOUND, "not-found")
        .await;
    assert_problem(app.get(&format!("/v1/referrals/{}", ids[2]), &me).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(app.get("/v1/ambassadors", &me).await, StatusCode::FORBIDDEN, "forbidden").await;
    // And /v1/me is for ambassadors only.
    assert_problem(app.get("/v1/me", &staff).await, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.client.get(app.url("/v1/me/referrals")).send().await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn suspension_and_a_changed_email_end_portal_access() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol(&staff, json!({ "name": "Sam", "email": "sam@example.com" })).await;
    let id = amb["id"].as_str().unwrap();
    let token = app.portal_session("sam@example.com").await;
    assert_eq!(app.get("/v1/me", &token).await.status(), StatusCode::OK);

    let res = app.post(&format!("/v1/ambassadors/{id}/suspend"), &staff, &json!({ "reason": "fraud review" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(app.get("/v1/me", &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app.request(reqwest::Method::PATCH, "/v1/me", Some(&token), Some(&json!({ "display_name": "x" }))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no profile changes while suspended");

    let res = app.post(&format!("/v1/ambassadors/{id}/reactivate"), &staff, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", &token).await.status(), StatusCode::OK);

    // Staff change the sign-in address: sessions opened through the old one end.
    let res = app.patch(&format!("/v1/ambassadors/{id}"), &staff, &json!({ "email": "sam.new@example.com" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(app.get("/v1/me", &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// The dashboard page as the signed-in ambassador sees it (the API session token is also the
/// portal cookie).
async fn dashboard(app: &TestApp, session: &str) -> String {
    let res =
        app.client.get(app.url("/portal")).header("cookie", format!("vouch_session={session}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

#[tokio::test]
async fn a_share_link_submission_shows_alike_whether_or_not_the_friend_was_already_a_client() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    app.enrol(&staff, json!({ "name": "Curious", "email": "curious@example.com", "code": "CURIOUS1" })).await;
    app.enrol(&staff, json!({ "name": "Earlier", "email": "earlier@example.com", "code": "EARLIER1" })).await;
    // The friend Kim is already somebody else's client.
    let res = app
        .post("/v1/referrals", &staff, &json!({ "code": "EARLIER1", "first_name": "Kim", "email": "kim@example.org" }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let me = app.portal_session("curious@example.com").await;
    let empty_dashboard = dashboard(&app, &me).await;
    assert!(empty_dashboard.contains("No referrals yet"));

    // The ambassador types Kim (a duplicate, refused on arrival) and Lou (new) into their link.
    let mut ids = Vec::new();
    for (first, email) in [("Kim", "kim@example.org"), ("Lou", "lou@example.org")] {
        let res = app
            .client
            .post(app.url("/v1/public/referrals"))
            .json(&json!({ "code": "CURIOUS1", "first_name": first, "email": email, "consent_to_contact": true,
                           "share_name_with_ambassador": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let staff_view: Value = app.get(&format!("/v1/referrals?q={email}"), &staff).await.json().await.unwrap();
        let mine = staff_view["items"].as_array().unwrap().iter().find(|r| r["code"] == "CURIOUS1").unwrap().clone();
        ids.push(mine["id"].as_str().unwrap().to_owned());
    }
    let staff_statuses: Vec<Value> = {
        let mut out = Vec::new();
        for id in &ids {
            out.push(
                app.get(&format!("/v1/referrals/{id}"), &staff).await.json::<Value>().await.unwrap()["status"].clone(),
            );
        }
        out
    };
    assert_eq!(staff_statuses, [json!("rejected"), json!("registered")], "staff see the truth");

    // The portal shows both alike: neither, in the list, the counts, the detail, the page, the mail.
    let list: Value = app.get("/v1/me/referrals", &me).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    let profile: Value = app.get("/v1/me", &me).await.json().await.unwrap();
    assert!(profile["referral_counts"].as_object().unwrap().values().all(|n| n == 0), "{profile}");
    for id in &ids {
        assert_problem(app.get(&format!("/v1/me/referrals/{id}"), &me).await, StatusCode::NOT_FOUND, "not-found").await;
    }
    assert!(dashboard(&app, &me).await.contains("No referrals yet"));
    let told: Vec<String> = app
        .mail_to("curious@example.com")
        .await
        .into_iter()
        .map(|m| m.subject)
        .filter(|s| s.contains("referral"))
        .collect();
    assert!(told.is_empty(), "{told:?}");

    // Once the clinic has seen Lou, Lou is the ambassador's referral and shows (and is announced).
    let res = app.post(&format!("/v1/referrals/{}/sessions", ids[1]), &staff, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let list: Value = app.get("/v1/me/referrals", &me).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["id"].as_str(), items[0]["status"].as_str()), (Some(ids[1].as_str()), Some("in_treatment")));
    let page = dashboard(&app, &me).await;
    assert!(page.contains("In treatment") && !page.contains("Kim"), "only Lou shows");
    let told: Vec<String> = app
        .mail_to("curious@example.com")
        .await
        .into_iter()
        .map(|m| m.subject)
        .filter(|s| s.contains("referral"))
        .collect();
    assert_eq!(told, ["A new referral is registered"]);
}

#[tokio::test]
async fn a_login_link_for_the_old_address_dies_when_staff_change_it() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol(&staff, json!({ "name": "Moving", "email": "old.address@example.com" })).await;
    assert_eq!(login(&app, "old.address@example.com").await.status(), StatusCode::ACCEPTED);
    let link = app.login_links("old.address@example.com").await.remove(0);
    let token = link.split("token=").nth(1).unwrap().to_owned();

    let id = amb["id"].as_str().unwrap();
    let res = app.patch(&format!("/v1/ambassadors/{id}"), &staff, &json!({ "email": "new.address@example.com" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(exchange(&app, &token).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-login-link").await;
    // The new address signs in as usual.
    let session = app.portal_session("new.address@example.com").await;
    assert_eq!(app.get("/v1/me", &session).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_request_racing_an_address_change_never_leaves_a_live_link() {
    use diesel::prelude::*;
    use vouch::db::schema::portal_login_tokens as plt;
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    for round in 0..8 {
        let (old, new) = (format!("before{round}@example.com"), format!("after{round}@example.com"));
        let amb = app.enrol(&staff, json!({ "name": "Mover", "email": old })).await;
        let id = amb["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/ambassadors/{id}");
        let change = json!({ "email": new });
        let (asked, changed) = tokio::join!(login(&app, &old), app.patch(&path, &staff, &change));
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
        assert_eq!(changed.status(), StatusCode::OK);
        // Whichever came first, no link sent to the old address may still sign anyone in.
        let mut conn = app.pool.get().unwrap();
        let live: i64 = plt::table
            .filter(plt::ambassador_id.eq(&id))
            .filter(plt::used_at.is_null())
            .filter(plt::expires_at.gt(chrono::Utc::now().naive_utc()))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(live, 0, "round {round}: a link for the old address outlived the change");
    }
}

#[tokio::test]
async fn login_e_mails_are_limited_per_address() {
    let app = crate::helpers::spawn_app_with(|s| s.rate_limit.login_emails_per_hour = 2).await;
    app.enrol(&app.admin_key, json!({ "name": "Target", "email": "target@example.com" })).await;
    app.enrol(&app.admin_key, json!({ "name": "Other", "email": "other@example.com" })).await;
    for _ in 0..5 {
        assert_eq!(login(&app, "target@example.com").await.status(), StatusCode::ACCEPTED, "the answer never changes");
    }
    assert_eq!(app.login_links("target@example.com").await.len(), 2, "no mail bombing");
    // Other addresses are not affected.
    assert_eq!(login(&app, "other@example.com").await.status(), StatusCode::ACCEPTED);
    assert_eq!(app.login_links("other@example.com").await.len(), 1);
}
