//! Admin → Webhooks over HTTP as a browser without JavaScript uses it: admins only (the role
//! on every page and post), CSRF on every form, the signing secret shown once in the answer to
//! the post, refusals with the API's messages and nothing stored, edit, rotate, ping and replay
//! reaching a receiver in the test process.

use diesel::prelude::*;
use reqwest::header::CACHE_CONTROL;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{audit_events, webhook_deliveries, webhook_endpoints};

use crate::helpers::{spawn_app_with, TestApp};
use crate::web::{input_value, Visitor};
use crate::webhooks::{endpoint, fast_webhooks, Receiver};

/// Endpoints, deliveries, audit events, and every endpoint's sealed secret and URL.
fn state(app: &TestApp) -> (i64, i64, i64, Vec<(String, String)>) {
    let mut conn = app.pool.get().unwrap();
    let endpoints = webhook_endpoints::table.count().get_result(&mut conn).unwrap();
    let deliveries = webhook_deliveries::table.count().get_result(&mut conn).unwrap();
    let audit = audit_events::table.count().get_result(&mut conn).unwrap();
    let secrets = webhook_endpoints::table
        .select((webhook_endpoints::secret_sealed, webhook_endpoints::url))
        .order(webhook_endpoints::id.asc())
        .load(&mut conn)
        .unwrap();
    (endpoints, deliveries, audit, secrets)
}

/// A signed-in admin (Boss); returns the visitor and Boss's member id.
async fn admin(app: &TestApp) -> (Visitor<'_>, String) {
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let v = Visitor::new(app);
    v.console_sign_in("boss@clinic.test").await;
    (v, boss["id"].as_str().unwrap().to_owned())
}

/// The signing secret on a page that shows it once.
fn secret_on(html: &str) -> String {
    input_value(html, "f-secret")
        .or_else(|| {
            let at = html.find("whsec_")?;
            Some(html[at..].split('"').next()?.to_owned())
        })
        .expect("a secret on the page")
}

async fn endpoint_api(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/webhooks/{id}"), &app.admin_key).await.json().await.unwrap()
}

#[tokio::test]
async fn webhook_pages_are_for_admins_only_and_every_form_checks_its_token() {
    let app = spawn_app_with(fast_webhooks).await;
    let receiver = Receiver::start().await;
    let (admin, _) = admin(&app).await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let (staff, finance, nobody) = (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    let (id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    let res = app.post(&format!("/v1/webhooks/{id}/test"), &app.admin_key, &json!({})).await;
    let delivery = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    receiver.wait_for(1).await;

    let home = admin.get("/console").await;
    assert!(home.html.contains("href=\"/console/webhooks\">Webhooks</a>"), "admins see Webhooks: {}", home.html);
    for other in [&staff_home, &finance_home] {
        assert!(!other.html.contains("href=\"/console/webhooks\""), "only admins see Webhooks");
    }
    let pages = [
        "/console/webhooks".to_owned(),
        format!("/console/webhooks/{id}"),
        format!("/console/webhooks/{id}?status=delivered"),
        format!("/console/webhooks/{id}/rotate-secret"),
        format!("/console/webhooks/{id}/delete"),
    ];
    for path in &pages {
        let page = admin.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "admin on {path}: {}", page.html);
        page.assert_html();
        for (who, v) in [("staff", &staff), ("finance", &finance)] {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who} on {path}");
            assert!(page.html.contains("Not for your role") && !page.html.contains(&receiver.url()), "{who}");
        }
        let page = nobody.get(path).await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/sign-in"), "{path}");
    }
    let url = receiver.url();
    let fields = vec![("url", url.as_str()), ("event.referral.completed", "yes"), ("enabled", "yes")];
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/webhooks".into(), fields.clone()),
        (format!("/console/webhooks/{id}"), fields.clone()),
        (format!("/console/webhooks/{id}/rotate-secret"), vec![]),
        (format!("/console/webhooks/{id}/ping"), vec![]),
        (format!("/console/webhooks/{id}/delete"), vec![]),
        (format!("/console/webhooks/{id}/deliveries/{delivery}/replay"), vec![]),
    ];
    let before = state(&app);
    let admin_token = home.csrf();
    for (path, fields) in &posts {
        for (who, v, token) in [("staff", &staff, staff_home.csrf()), ("finance", &finance, finance_home.csrf())] {
            let res = v.post_with(path, Some(&token), fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{who} posting {path}");
        }
        let res = nobody.post_with(path, Some(&admin_token), fields).await;
        assert_eq!(res.location(), "/console/sign-in", "nobody posting {path}");
        for token in [None, Some("forged"), Some(staff_home.csrf().as_str())] {
            let res = admin.post_with(path, token, fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "admin posting {path} with token {token:?}");
            assert!(res.html.contains("This form has expired"), "{}", res.html);
        }
    }
    assert_eq!(state(&app), before, "nothing changed");
    assert_eq!(receiver.received().len(), 1, "nothing sent");
}

#[tokio::test]
async fn an_endpoint_added_in_the_console_shows_its_secret_once_and_is_edited_pinged_replayed_and_rotated() {
    let app = spawn_app_with(fast_webhooks).await;
    let receiver = Receiver::start().await;
    let (admin, boss) = admin(&app).await;
    let url = receiver.url();

    // Refused: a bad URL, no event, a long description; the API's messages, what was typed
    // kept, nothing stored.
    let before = state(&app);
    let long = "x".repeat(300);
    let bad = [("url", "ftp://example.com/x"), ("description", long.as_str()), ("enabled", "yes")];
    let res = admin.submit("/console/webhooks", "/console/webhooks", &bad).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    res.assert_html();
    for message in ["Must start with https:// (or http://).", "Must name at least one event.", "Must be at most 200"] {
        assert!(res.html.contains(message), "{message}: {}", res.html);
    }
    assert!(res.html.contains("value=\"ftp://example.com/x\""), "what was typed is kept");
    assert_eq!(state(&app), before, "nothing stored");

    // Added: the secret in the answer to the post (no redirect, no flash, not stored by the browser).
    let fields = [
        ("url", url.as_str()),
        ("description", "Booking system"),
        ("event.ambassador.activated", "yes"),
        ("event.referral.completed", "yes"),
        ("enabled", "yes"),
    ];
    let res = admin.submit("/console/webhooks", "/console/webhooks", &fields).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.html);
    res.assert_html();
    assert_eq!(res.headers.get(CACHE_CONTROL).unwrap(), "no-store");
    assert!(res.headers.get("location").is_none() && res.set_cookie("vouch_flash").is_none(), "no redirect, no flash");
    assert!(res.html.contains("shown on this page only"), "{}", res.html);
    let secret = secret_on(&res.html);
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let list: Value = app.get("/v1/webhooks", &app.admin_key).await.json().await.unwrap();
    let created = &list["items"][0];
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["events"], json!(["ambassador.activated", "referral.completed"]));
    assert_eq!((created["enabled"].clone(), created["staff_system"].clone()), (json!(true), json!(false)));
    assert_eq!(created["description"], "Booking system");
    let (kind, actor, _) = app.audit_actor("webhook.created");
    assert_eq!((kind.as_str(), actor.as_deref()), ("team_member", Some(boss.as_str())));

    // It works with that secret, and the secret is never shown again.
    let staff = app.key("staff").await;
    app.enrol_named(&staff, "Ann Hook").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].kind(), "ambassador.activated");
    assert!(got[0].signed_by(&secret));
    let list_page = admin.get("/console/webhooks").await;
    assert!(list_page.html.contains(&url) && list_page.html.contains("Booking system"), "{}", list_page.html);
    let mut page = admin.get(&format!("/console/webhooks/{id}")).await;
    for _ in 0..100 {
        if page.html.contains("badge s-delivered") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        page = admin.get(&format!("/console/webhooks/{id}")).await;
    }
    assert!(page.html.contains("ambassador.activated") && page.html.contains("HTTP 200"), "{}", page.html);
    for html in [&list_page.html, &page.html] {
        assert!(!html.contains(&secret) && !html.contains("whsec_"), "the secret is not shown again");
    }
    assert!(page.html.contains("value=\"Booking system\""), "the edit form holds the endpoint");

    // Edit: refused, then saved (disabled, now a staff system, one event less).
    let endpoint_page = format!("/console/webhooks/{id}");
    let before = state(&app);
    let bad = [("url", "https://user:pw@example.com/x"), ("event.referral.completed", "yes")];
    let res = admin.submit(&endpoint_page, &endpoint_page, &bad).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("Must not carry credentials"), "{}", res.html);
    assert!(res.html.contains("value=\"https://user:pw@example.com/x\""), "what was typed is kept");
    assert_eq!(state(&app), before, "nothing stored");
    let edit =
        [("url", url.as_str()), ("description", "ERP"), ("event.referral.completed", "yes"), ("staff_system", "yes")];
    let res = admin.submit(&endpoint_page, &endpoint_page, &edit).await;
    assert_eq!(res.location(), endpoint_page, "{}", res.html);
    let shown = endpoint_api(&app, &id).await;
    assert_eq!(shown["events"], json!(["referral.completed"]));
    assert_eq!((shown["enabled"].clone(), shown["staff_system"].clone()), (json!(false), json!(true)));
    assert_eq!(shown["description"], "ERP");
    let page = admin.get(&endpoint_page).await;
    assert!(page.html.contains("saved.") && page.html.contains("badge s-disabled"), "{}", page.html);

    // A ping reaches the disabled endpoint; a replay sends the same event again.
    let res = admin.submit(&endpoint_page, &format!("{endpoint_page}/ping"), &[]).await;
    assert_eq!(res.location(), endpoint_page);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].kind(), "webhook.ping");
    assert!(got[1].signed_by(&secret));
    let deliveries: Value =
        app.get(&format!("/v1/webhooks/{id}/deliveries"), &app.admin_key).await.json().await.unwrap();
    let activated = deliveries["items"].as_array().unwrap().iter().find(|d| d["event_type"] == "ambassador.activated");
    let activated = activated.unwrap()["id"].as_str().unwrap().to_owned();
    let res = admin.submit(&endpoint_page, &format!("{endpoint_page}/deliveries/{activated}/replay"), &[]).await;
    assert_eq!(res.location(), endpoint_page, "{}", res.html);
    let page = admin.get(&endpoint_page).await;
    assert!(page.html.contains("queued again"), "{}", page.html);
    // Disabled: the replay waits until the endpoint is enabled again.
    assert_eq!(receiver.received().len(), 2);
    let enable = [("url", url.as_str()), ("event.referral.completed", "yes"), ("enabled", "yes")];
    let res = admin.submit(&endpoint_page, &endpoint_page, &enable).await;
    assert_eq!(res.location(), endpoint_page, "{}", res.html);
    let got = receiver.wait_for(3).await;
    assert_eq!((got[2].kind(), got[2].id.as_str()), ("ambassador.activated", got[0].id.as_str()));
    assert!(app.audit_actions(&activated).contains(&"webhook_delivery.replayed".to_owned()));
    // A delivery of another endpoint is not this page's to replay.
    let (other, _) = endpoint(&app, &url, &["ambassador.applied"], false).await;
    let res =
        admin.submit(&endpoint_page, &format!("/console/webhooks/{other}/deliveries/{activated}/replay"), &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.html);

    // Rotate: a confirmation, then the new secret once; both sign for the grace period.
    let confirm = admin.get(&format!("{endpoint_page}/rotate-secret")).await;
    assert!(confirm.html.contains("Rotate the signing secret of") && confirm.html.contains("Cancel"));
    let res = admin.post_with(&format!("{endpoint_page}/rotate-secret"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.html);
    let new_secret = secret_on(&res.html);
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(res.html.contains("signed with the previous secret too"), "{}", res.html);
    assert!(endpoint_api(&app, &id).await["previous_secret_valid_until"].is_string());
    let res = admin.submit(&endpoint_page, &format!("{endpoint_page}/ping"), &[]).await;
    assert_eq!(res.location(), endpoint_page);
    let got = receiver.wait_for(4).await;
    assert!(got[3].signed_by(&new_secret) && got[3].signed_by(&secret));
    let (kind, actor, _) = app.audit_actor("webhook.secret_rotated");
    assert_eq!((kind.as_str(), actor.as_deref()), ("team_member", Some(boss.as_str())));

    // Delete: a confirmation, then gone with its deliveries.
    let confirm = admin.get(&format!("{endpoint_page}/delete")).await;
    assert!(confirm.html.contains("Delete the webhook endpoint") && confirm.html.contains("Cancel"));
    let res = admin.post_with(&format!("{endpoint_page}/delete"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/webhooks", "{}", res.html);
    let list = admin.get("/console/webhooks").await;
    assert!(list.html.contains("deleted, with its deliveries"), "{}", list.html);
    let res = app.get(&format!("/v1/webhooks/{id}"), &app.admin_key).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (kind, actor, _) = app.audit_actor("webhook.deleted");
    assert_eq!((kind.as_str(), actor.as_deref()), ("team_member", Some(boss.as_str())));
    let res = admin.post_with(&format!("{endpoint_page}/delete"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "twice: {}", res.html);
}

#[tokio::test]
async fn a_private_address_is_refused_on_the_form_unless_the_setting_allows_it() {
    let app = spawn_app_with(|s| {
        fast_webhooks(s);
        s.webhooks.allow_private_addresses = false;
    })
    .await;
    let (admin, _) = admin(&app).await;
    let before = state(&app);
    let fields = [("url", "http://127.0.0.1:9/hooks"), ("event.referral.completed", "yes"), ("enabled", "yes")];
    let res = admin.submit("/console/webhooks", "/console/webhooks", &fields).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("webhooks.allow_private_addresses"), "{}", res.html);
    assert!(res.html.contains("id=\"f-url-error\""), "next to the URL: {}", res.html);
    assert!(res.html.contains("name=\"event.referral.completed\" type=\"checkbox\" value=\"yes\" checked"));
    assert_eq!(state(&app), before, "nothing stored");
}
