//! The staff's console pages over HTTP: the home's lists (share-link referrals and
//! applications waiting, clients gone quiet), a referral's page and its forms (session,
//! completion, cancel / reject / refund after a confirmation), with the role on every page,
//! CSRF on every form and the API's refusals shown on the form with nothing stored.

use chrono::TimeDelta;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{referral_sessions, referrals};

use crate::helpers::{spawn_app, TestApp};
use crate::web::{Page, Visitor};

impl TestApp {
    /// A friend's submission on the share-link form with code `code`; its referral id.
    pub async fn share_link_referral(&self, code: &str, first: &str, last: &str, email: &str) -> String {
        let body = json!({ "code": code, "first_name": first, "last_name": last, "email": email,
                           "consent_to_contact": true });
        let res = self.client.post(self.url("/v1/public/referrals")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let list: Value = self.get(&format!("/v1/referrals?q={email}"), &self.admin_key).await.json().await.unwrap();
        list["items"][0]["id"].as_str().unwrap().to_owned()
    }

    /// A referral's status and session count, read from the database.
    pub fn referral_state(&self, id: &str) -> (String, i32) {
        let mut conn = self.pool.get().unwrap();
        referrals::table.find(id).select((referrals::status, referrals::session_count)).first(&mut conn).unwrap()
    }
}

fn sessions_stored(app: &TestApp, id: &str) -> i64 {
    let mut conn = app.pool.get().unwrap();
    referral_sessions::table.filter(referral_sessions::referral_id.eq(id)).count().get_result(&mut conn).unwrap()
}

/// A clinic with a staff member, a finance member and an admin, an ambassador with code ANN1
/// and Lou Reed's share-link referral.
async fn clinic() -> (TestApp, String) {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    let id = app.share_link_referral("ANN1", "Lou", "Reed", "lou@example.com").await;
    (app, id)
}

#[tokio::test]
async fn a_referral_page_is_for_staff_and_admins_and_every_form_checks_role_and_csrf() {
    let (app, id) = clinic().await;
    let (admin, staff, finance, nobody) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    admin.console_sign_in("boss@clinic.test").await;
    staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    let pages = [
        format!("/console/referrals/{id}"),
        format!("/console/referrals/{id}/cancel"),
        format!("/console/referrals/{id}/reject"),
        format!("/console/referrals/{id}/refund"),
    ];
    for path in &pages {
        for (who, v) in [("admin", &admin), ("staff", &staff)] {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{who} on {path}");
            page.assert_html();
            assert!(page.html.contains("Lou"), "{}", page.html);
        }
    }
    let page = admin.get(&pages[0]).await;
    assert!(page.html.contains("lou@example.com") && page.html.contains("Ann Lee"), "{}", page.html);
    for path in &pages {
        let page = finance.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "finance on {path}");
        assert!(page.html.contains("Not for your role") && !page.html.contains("lou@example.com"), "{}", page.html);
        let page = nobody.get(path).await;
        assert_eq!(page.location(), "/console/sign-in", "nobody on {path}");
    }
    assert_eq!(admin.get("/console/referrals/nope").await.status, StatusCode::NOT_FOUND);

    let today = chrono::Utc::now().date_naive().to_string();
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (format!("/console/referrals/{id}/sessions"), vec![("session_on", &today)]),
        (format!("/console/referrals/{id}/complete"), vec![("completed_on", &today)]),
        (format!("/console/referrals/{id}/cancel"), vec![("reason_code", "no_show")]),
        (format!("/console/referrals/{id}/reject"), vec![("reason_code", "fraud")]),
        (format!("/console/referrals/{id}/refund"), vec![("reason_code", "medical")]),
    ];
    let finance_token = finance_home.csrf();
    let visitor_token = nobody.get("/console/sign-in").await.csrf();
    for (path, fields) in &posts {
        let res = finance.post_with(path, Some(&finance_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "finance posting {path}");
        let res = nobody.post_with(path, Some(&visitor_token), fields).await;
        assert_eq!(res.location(), "/console/sign-in", "nobody posting {path}");
        let res = staff.post_with(path, None, fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token on {path}");
        let res = staff.post_with(path, Some(&finance_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "another member's CSRF token on {path}");
    }
    assert_eq!(app.referral_state(&id), ("registered".into(), 0), "nothing changed");
    assert_eq!(sessions_stored(&app, &id), 0);
}

#[tokio::test]
async fn staff_record_sessions_complete_and_refund_with_the_api_s_refusals_on_the_forms() {
    let (app, id) = clinic().await;
    let staff = Visitor::new(&app);
    let home = staff.console_sign_in("sam@clinic.test").await;
    let link = format!("href=\"/console/referrals/{id}\"");
    assert!(home.html.contains(&link) && home.html.contains("Lou R."), "the waiting referral, linked: {}", home.html);
    let path = format!("/console/referrals/{id}");
    let page = staff.get(&path).await;
    assert!(page.html.contains("Does not share their name with the ambassador."), "consent: {}", page.html);
    assert!(page.html.contains("ANN1") && page.html.contains("Referral registered"), "{}", page.html);
    let token = page.csrf();

    // Refused: a day in the future, a day that is not a date, a missing reason.
    let tomorrow = (chrono::Utc::now() + TimeDelta::days(2)).date_naive().to_string();
    let sessions = format!("{path}/sessions");
    let res = staff.post_with(&sessions, Some(&token), &[("session_on", &tomorrow), ("note", "first")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("Must not be in the future"), "the API's message on the form: {}", res.html);
    assert!(res.html.contains(&format!("value=\"{tomorrow}\"")), "what was typed stays");
    let res = staff.post_with(&sessions, Some(&token), &[("session_on", "31/12/2026")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be a date like 2026-12-31"), "{}", res.html);
    assert_eq!(sessions_stored(&app, &id), 0, "nothing stored");
    let cancel = format!("{path}/cancel");
    let res = staff.post_with(&cancel, Some(&token), &[("reason_code", "other")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Is required when reason_code is other"), "{}", res.html);
    let res = staff.post_with(&cancel, Some(&token), &[("reason_code", "medical")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be one of: client_withdrew"), "{}", res.html);
    assert_eq!(app.referral_state(&id), ("registered".into(), 0));

    // Two sessions (the day defaults to today), then completion.
    for note in ["first", ""] {
        let res = staff.post_with(&sessions, Some(&token), &[("session_on", ""), ("note", note)]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
        assert_eq!(res.location(), path);
        let page = staff.get(&path).await;
        assert!(page.html.contains("Session on") && page.html.contains("recorded."), "the flash: {}", page.html);
    }
    assert_eq!(app.referral_state(&id), ("in_treatment".into(), 2));
    let page = staff.get(&path).await;
    assert!(page.html.contains("Referral session recorded") && page.html.contains("registered → in_treatment"));
    let complete = format!("{path}/complete");
    let res =
        staff.post_with(&complete, Some(&token), &[("completed_on", ""), ("treatment_value_minor", "12.5")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be a whole number of minor units"), "{}", res.html);
    let res = staff.post_with(&complete, Some(&token), &[("completed_on", ""), ("treatment_value_minor", "")]).await;
    assert_eq!(res.location(), path, "{}", res.html);
    assert!(staff.get(&path).await.html.contains("Treatment completed."));
    assert_eq!(app.referral_state(&id).0, "completed");
    let res = staff.post_with(&complete, Some(&token), &[("completed_on", "")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "completed twice: the API's refusal");
    assert!(res.html.contains("notice warn"), "{}", res.html);

    // Refund after the confirmation page; a cancelled one cannot be.
    let refund = format!("{path}/refund");
    let confirm = staff.get(&refund).await;
    assert!(confirm.html.contains("Refund the referral of Lou?") && confirm.html.contains("Keep it"));
    let res = staff.post_with(&refund, Some(&token), &[("reason_code", "medical"), ("note", "")]).await;
    assert_eq!(res.location(), path, "{}", res.html);
    assert_eq!(app.referral_state(&id).0, "refunded");
    let res = staff.post_with(&cancel, Some(&token), &[("reason_code", "no_show")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(app.referral_state(&id).0, "refunded");
    let audit: Value = app.get(&format!("/v1/referrals/{id}"), &app.admin_key).await.json().await.unwrap();
    let history = audit["history"].as_array().unwrap();
    assert!(history.iter().all(|h| h["action"] != "referral.cancelled"));
    assert_eq!(history.iter().filter(|h| h["actor_type"] == "team_member").count(), 4, "{history:?}");
}

#[tokio::test]
async fn the_staff_home_lists_what_waits_and_clients_gone_quiet_but_finance_sees_no_names() {
    let (app, id) = clinic().await;
    app.public_application("Pat Doe", "pat@example.com").await;
    let quiet = app.share_link_referral("ANN1", "Max", "Moe", "max@example.com").await;
    app.post(&format!("/v1/referrals/{quiet}/sessions"), &app.admin_key, &json!({})).await;
    let (staff, finance) = (Visitor::new(&app), Visitor::new(&app));
    let home: Page = staff.console_sign_in("sam@clinic.test").await;
    assert!(home.html.contains(&format!("href=\"/console/referrals/{id}\"")) && home.html.contains("Pat Doe"));
    assert!(home.html.contains("Every client in treatment had a session in the last 21 days."), "{}", home.html);

    // Max's only session was 30 days ago.
    {
        let mut conn = app.pool.get().unwrap();
        let day = (chrono::Utc::now() - TimeDelta::days(30)).date_naive();
        diesel::update(referral_sessions::table.filter(referral_sessions::referral_id.eq(&quiet)))
            .set(referral_sessions::session_on.eq(day))
            .execute(&mut conn)
            .unwrap();
    }
    let home = staff.get("/console").await;
    let gone_quiet = home.html.split("Clients gone quiet").nth(1).unwrap();
    assert!(gone_quiet.contains(&format!("href=\"/console/referrals/{quiet}\"")) && gone_quiet.contains("Max M."));
    assert!(!gone_quiet.contains(&format!("/console/referrals/{id}\"")), "Lou has no session yet: waiting instead");
    let home = finance.console_sign_in("fin@clinic.test").await;
    assert!(home.html.contains("<dt>Share-link referrals</dt><dd>1</dd>"), "{}", home.html);
    for name in ["Lou", "Max", "Pat Doe", "Clients gone quiet"] {
        assert!(!home.html.contains(name), "finance see no {name}: {}", home.html);
    }
}
