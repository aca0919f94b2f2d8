//! E-mail notifications end to end: each flow's `.eml` files (file transport), real SMTP
//! delivery to a listener in this process, retries while the server is down, restarts and
//! several instances that never send one e-mail twice, and the admin outbox.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::config::{MailTransport, Settings, SmtpTls};
use vouch::store::outbox;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};
use crate::mail::{parse, Mail};
use crate::smtp::{self, reserve_port, Behaviour, ServerTls, SmtpServer};

const STAFF_ALERTS: &str = "alerts@clinic.test";

fn branded(s: &mut Settings) {
    s.email.from = "Clinic Care <hello@clinic.test>".into();
    s.email.reply_to = "team@clinic.test".into();
    s.email.brand_name = "Clinic Care".into();
    s.email.staff_alert_to = STAFF_ALERTS.into();
    s.server.public_url = "https://refer.clinic.test".into();
}

fn smtp_on(port: u16) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.email.transport = MailTransport::Smtp;
        s.email.smtp.host = "127.0.0.1".into();
        s.email.smtp.port = port;
        s.email.smtp.tls = SmtpTls::None;
        s.email.smtp.timeout_secs = 2;
        s.email.max_attempts = 1000;
    }
}

async fn enrol(app: &TestApp, name: &str, email: &str, code: &str) -> Value {
    app.enrol(&app.admin_key, json!({ "name": name, "email": email, "code": code })).await
}

async fn admin_emails(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/emails{query}"), &app.admin_key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

fn one<'a>(mails: &'a [Mail], to: &str) -> &'a Mail {
    let found: Vec<&Mail> = mails.iter().filter(|m| m.to.contains(to)).collect();
    assert_eq!(found.len(), 1, "expected one e-mail to {to}, got {found:#?}");
    found[0]
}

fn assert_discreet(mail: &Mail) {
    for word in ["treatment", "hair", "scalp"] {
        assert!(!mail.subject.to_lowercase().contains(word), "subject {:?} mentions {word}", mail.subject);
    }
}

#[tokio::test]
async fn staff_enrolment_sends_one_welcome_with_code_and_share_link() {
    let app = spawn_app_with(branded).await;
    let amb = app
        .enrol(&app.admin_key, json!({ "name": "Ann <b>Lee</b>", "email": "ann@example.com", "code": "ANNLEE" }))
        .await;

    let mails = app.delivered().await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m.to, "ann@example.com");
    assert_eq!(m.from, "\"Clinic Care\" <hello@clinic.test>");
    assert_eq!(m.reply_to.as_deref(), Some("team@clinic.test"));
    assert_eq!(m.subject, "Welcome to the Clinic Care ambassador programme");
    assert!(m.content_type.starts_with("multipart/alternative"), "{}", m.content_type);
    assert!(m.text.contains("Hello Ann <b>Lee</b>,"), "{}", m.text);
    assert!(m.html.contains("Hello Ann &lt;b&gt;Lee&lt;/b&gt;,"), "{}", m.html);
    assert!(!m.html.contains("<b>Lee"));
    for part in [&m.text, &m.html] {
        assert!(part.contains("ANNLEE") && part.contains("https://refer.clinic.test/r/ANNLEE"));
        assert!(part.contains("https://refer.clinic.test/portal"));
        // The terms come from the program rules in force.
        assert!(part.contains("you earn 100.00 USD") && part.contains("payable 14 days after"), "{part}");
        assert!(part.contains("reaches 50.00 USD"), "{part}");
    }
    assert!(m.html.contains("Your personal code and link to share with friends"), "preheader");
    assert_discreet(m);

    // The admin outbox shows it sent, under its dedupe key, without the payload.
    let items = admin_emails(&app, "").await;
    assert_eq!(items.len(), 1);
    let row = &items[0];
    assert_eq!(row["template"], "ambassador_welcome");
    assert_eq!(row["dedupe_key"], format!("ambassador-welcome:{}", amb["id"].as_str().unwrap()));
    assert_eq!(row["to"], "ann@example.com");
    assert_eq!(row["status"], "sent");
    assert_eq!(row["attempts"], 1);
    assert!(row["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(row.get("payload").is_none());
    assert!(m.message_id.contains(row["id"].as_str().unwrap()), "Message-ID derives from the outbox row");

    // Nothing changes the ambassador's welcome into a second one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.mails().len(), 1);
}

#[tokio::test]
async fn applications_alert_staff_and_approval_sends_the_welcome() {
    let app = spawn_app_with(branded).await;
    let res = app
        .client
        .post(app.url("/v1/public/ambassador-applications"))
        .json(&json!({ "name": "Nia Applicant", "email": "nia@example.com", "phone": "+1 415 555 0199",
                        "message": "I love it" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mails = app.delivered().await;
    assert_eq!(mails.len(), 1, "only the staff alert: {mails:#?}");
    let alert = one(&mails, STAFF_ALERTS);
    assert_eq!(alert.subject, "[Clinic Care] New ambassador application");
    assert!(alert.text.contains("Nia Applicant"));
    assert!(!alert.everything().contains("nia@example.com") && !alert.everything().contains("555"));

    let listed: Value = app.get("/v1/ambassadors?status=applied", &app.admin_key).await.json().await.unwrap();
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(alert.text.contains(&id));
    let res = app.post(&format!("/v1/ambassadors/{id}/approve"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let code = res.json::<Value>().await.unwrap()["codes"][0]["code"].as_str().unwrap().to_owned();
    let mails = app.delivered().await;
    assert_eq!(mails.len(), 2);
    let welcome = one(&mails, "nia@example.com");
    assert!(welcome.text.contains(&format!("https://refer.clinic.test/r/{code}")));
}

#[tokio::test]
async fn public_referrals_tell_the_ambassador_discreetly_and_alert_staff() {
    let app = spawn_app_with(branded).await;
    enrol(&app, "Sharer", "sharer@example.com", "SHARE1").await;
    let intake = |body: Value| {
        let app = &app;
        async move {
            let res = app.client.post(app.url("/v1/public/referrals")).json(&body).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
    };
    // Consents to be named: the ambassador sees "First L." only; the name arrives as text.
    intake(json!({ "code": "SHARE1", "first_name": "<script>", "last_name": "Garcia",
                   "email": "maria.client@example.org", "phone": "+44 20 7946 0018",
                   "consent_to_contact": true, "share_name_with_ambassador": true }))
    .await;
    // No consent: an opaque label.
    intake(json!({ "code": "SHARE1", "first_name": "Quiet", "last_name": "Person",
                   "email": "quiet@example.org", "consent_to_contact": true }))
    .await;
    // Already referred: rejected on arrival; the ambassador must not hear of it.
    intake(json!({ "code": "SHARE1", "first_name": "Again", "email": "maria.client@example.org",
                   "consent_to_contact": true, "share_name_with_ambassador": true }))
    .await;
    // Nobody is announced on arrival (accepted and refused submissions look alike)…
    assert!(app.mail_to("sharer@example.com").await.iter().all(|m| m.subject.starts_with("Welcome")));
    // …the accepted ones are, once the clinic has seen the friend.
    first_sessions_of_share_link_referrals(&app).await;

    let mails = app.delivered().await;
    let to_ambassador: Vec<&Mail> =
        mails.iter().filter(|m| m.to == "sharer@example.com" && !m.subject.starts_with("Welcome")).collect();
    assert_eq!(to_ambassador.len(), 2, "{to_ambassador:#?}");
    let named = to_ambassador[0];
    assert_eq!(named.subject, "A new referral is registered");
    assert!(named.text.contains("<script> G. got in touch"), "{}", named.text);
    assert!(named.html.contains("&lt;script&gt; G."), "{}", named.html);
    assert!(!named.html.contains("<script>"));
    let opaque = to_ambassador[1];
    assert!(opaque.text.contains("Referral SHAR… got in touch"), "{}", opaque.text);
    let alerts: Vec<&Mail> = mails.iter().filter(|m| m.to == STAFF_ALERTS).collect();
    assert_eq!(alerts.len(), 3, "staff hear of every submission");
    assert!(alerts[2].text.contains("rejected (duplicate)"), "{}", alerts[2].text);
    for m in &mails {
        assert_discreet(m);
        let all = m.everything();
        for secret in ["Garcia", "maria.client", "quiet@", "Quiet", "Person", "7946", "Again"] {
            assert!(!all.contains(secret), "{secret:?} leaked into {m:#?}");
        }
    }
    assert_eq!(mails.len(), 1 + 2 + 3);

    // Sent e-mails keep no client names in the database.
    let mut conn = app.pool.get().unwrap();
    use diesel::prelude::*;
    use vouch::db::schema::email_outbox as eo;
    let payloads: Vec<String> = eo::table.select(eo::payload).load(&mut conn).unwrap();
    assert!(payloads.iter().all(|p| !p.contains("G.")), "{payloads:?}");
}

/// Staff record the first session of every registered share-link referral, oldest first.
async fn first_sessions_of_share_link_referrals(app: &TestApp) {
    let list: Value = app.get("/v1/referrals?status=registered", &app.admin_key).await.json().await.unwrap();
    for r in list["items"].as_array().unwrap().iter().rev().filter(|r| r["source"] == "public_form") {
        let res = app
            .post(&format!("/v1/referrals/{}/sessions", r["id"].as_str().unwrap()), &app.admin_key, &json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}

#[tokio::test]
async fn erasing_a_client_reaches_the_mail_not_sent_yet() {
    let (socket, port) = reserve_port();
    let app = spawn_app_with(smtp_on(port)).await;
    enrol(&app, "Keen", "keen@example.com", "KEEN1").await;
    let res = app
        .post(
            "/v1/referrals",
            &app.admin_key,
            &json!({ "code": "KEEN1", "first_name": "Maria", "last_name": "Garcia",
                     "email": "maria@example.org", "share_name_with_ambassador": true }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // Completed, so a reward-earned notice naming "Maria G." is waiting too.
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let today = chrono::Utc::now().date_naive().to_string();
    let res =
        app.post(&format!("/v1/referrals/{id}/complete"), &app.admin_key, &json!({ "completed_on": today })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .request(reqwest::Method::DELETE, &format!("/v1/referrals/{id}/personal-data"), Some(&app.admin_key), None)
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    // An attempt the worker began before the erasure carries the name it read then (as mail
    // already sent does); with the server down it fails, so wait for such attempts to end
    // before the server comes up: every later attempt reads the relabelled e-mail.
    eventually("attempts begun before the erasure to end", || {
        use diesel::prelude::*;
        use vouch::db::schema::email_outbox as eo;
        let mut conn = app.pool.get().unwrap();
        eo::table.filter(eo::status.eq("sending")).count().get_result::<i64>(&mut *conn).unwrap() == 0
    })
    .await;

    let server = SmtpServer::listen(socket);
    eventually("welcome, referral and reward notices", || server.received().len() == 3).await;
    let mails: Vec<_> = server.received().into_iter().map(|r| parse(&r.data)).collect();
    let notice = mails.iter().find(|m| m.subject.contains("referral")).unwrap();
    assert!(notice.text.contains("Referral KEEN… got in touch"), "{}", notice.text);
    let reward = mails.iter().find(|m| m.subject.contains("reward")).unwrap();
    assert!(reward.text.contains("Referral KEEN…"), "{}", reward.text);
    for m in &mails {
        assert!(!m.everything().contains("Maria"), "{}", m.text);
    }
}

#[tokio::test]
async fn staff_alerts_need_an_address() {
    let app = spawn_app().await;
    enrol(&app, "Owner", "owner@example.com", "OWNER1").await;
    let res = app
        .client
        .post(app.url("/v1/public/referrals"))
        .json(&json!({ "code": "OWNER1", "first_name": "Al", "email": "al@example.org", "consent_to_contact": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    first_sessions_of_share_link_referrals(&app).await;
    let mails = app.delivered().await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, vec!["Welcome to the Vouch ambassador programme", "A new referral is registered"]);
    assert!(mails.iter().all(|m| m.to == "owner@example.com"));
}

#[tokio::test]
async fn referral_updates_follow_preferences_but_essential_mail_always_goes() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    app.enrol(&staff, json!({ "name": "Keen", "email": "keen@example.com", "code": "KEEN1" })).await;
    app.enrol(
        &staff,
        json!({ "name": "Quiet", "email": "quiet@example.com", "code": "QUIET1",
                "notification_preferences": { "referral_updates": false, "reward_updates": false } }),
    )
    .await;
    let mut ids = HashMap::new();
    for (code, client) in [("KEEN1", "a"), ("KEEN1", "b"), ("KEEN1", "c"), ("QUIET1", "d")] {
        let res = app
            .post(
                "/v1/referrals",
                &staff,
                &json!({ "code": code, "first_name": client.to_uppercase(), "last_name": "Client",
                         "email": format!("{client}@example.org"), "share_name_with_ambassador": true }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        ids.insert(client, res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let close = |id: &str, action: &str, reason: &str| {
        let path = format!("/v1/referrals/{id}/{action}");
        let body = json!({ "reason_code": reason });
        let (app, staff) = (&app, &staff);
        async move {
            let res = app.post(&path, staff, &body).await;
            assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
        }
    };
    close(&ids["a"], "cancel", "client_withdrew").await;
    close(&ids["b"], "reject", "fraud").await;
    let today = chrono::Utc::now().date_naive().to_string();
    let res = app.post(&format!("/v1/referrals/{}/sessions", ids["c"]), &staff, &json!({ "session_on": today })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res =
        app.post(&format!("/v1/referrals/{}/complete", ids["c"]), &staff, &json!({ "completed_on": today })).await;
    assert_eq!(res.status(), StatusCode::OK);
    close(&ids["c"], "refund", "goodwill").await;
    close(&ids["d"], "cancel", "no_show").await;

    let keen: Vec<String> = app.mail_to("keen@example.com").await.into_iter().map(|m| m.subject).collect();
    assert_eq!(
        keen,
        vec![
            "Welcome to the Vouch ambassador programme",
            "A new referral is registered",
            "A new referral is registered",
            "A new referral is registered",
            "An update on one of your referrals",
            "You earned a reward",
            "An update on one of your referrals",
        ],
        "no notice of a rejection"
    );
    let keen_mail = app.mail_to("keen@example.com").await;
    assert!(keen_mail[4].text.contains("A C. has been cancelled"), "{}", keen_mail[4].text);
    assert!(keen_mail[5].text.contains("C C. earned you a reward of 100.00 USD"), "{}", keen_mail[5].text);
    assert!(keen_mail[6].text.contains("C C. has been refunded"), "{}", keen_mail[6].text);

    // Optional notices are off for Quiet; the welcome and the login link are essential.
    let quiet = app.mail_to("quiet@example.com").await;
    assert_eq!(quiet.len(), 1);
    let session = app.portal_session("quiet@example.com").await;
    assert!(session.starts_with("vp_"));
    let quiet = app.mail_to("quiet@example.com").await;
    assert_eq!(quiet.len(), 2);
    assert_eq!(quiet[1].subject, "Your Vouch sign-in link");

    // Once sent, the login link is not kept in the database.
    let mut conn = app.pool.get().unwrap();
    use diesel::prelude::*;
    use vouch::db::schema::email_outbox as eo;
    let payload: String =
        eo::table.filter(eo::template.eq("portal_login")).select(eo::payload).first(&mut conn).unwrap();
    assert!(!payload.contains("token="), "{payload}");
}

#[tokio::test]
async fn reward_and_payout_notices_render_from_the_agreed_payloads() {
    let app = spawn_app_with(branded).await;
    {
        let mut conn = app.pool.get().unwrap();
        let reward = json!({ "ambassador_name": "Ann", "client_label": "Maria G.",
                             "amount": "100.00 EUR", "holds_until": "2026-12-09" });
        assert!(outbox::enqueue(&mut conn, "reward-earned:r1", "reward_earned", "ann@example.com", &reward).unwrap());
        assert!(!outbox::enqueue(&mut conn, "reward-earned:r1", "reward_earned", "ann@example.com", &reward).unwrap());
        let payout = json!({ "ambassador_name": "Ann", "amount": "150.00 EUR",
                             "reference": "PAY-2026-11", "paid_on": "2026-11-30" });
        assert!(outbox::enqueue(&mut conn, "payout-sent:p1:a1", "payout_sent", "ann@example.com", &payout).unwrap());
    }
    let mails = app.mail_to("ann@example.com").await;
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].subject, "You earned a reward");
    for part in [&mails[0].text, &mails[0].html] {
        assert!(part.contains("Maria G.") && part.contains("100.00 EUR") && part.contains("2026-12-09"), "{part}");
    }
    assert_eq!(mails[1].subject, "Your Clinic Care payout is on its way");
    for part in [&mails[1].text, &mails[1].html] {
        assert!(part.contains("150.00 EUR") && part.contains("PAY-2026-11") && part.contains("2026-11-30"), "{part}");
    }
    mails.iter().for_each(assert_discreet);
}

#[tokio::test]
async fn broken_mail_fails_and_admins_list_and_retry_it() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    {
        let mut conn = app.pool.get().unwrap();
        outbox::enqueue(&mut conn, "mystery:1", "no_such_template", "x@example.com", &json!({})).unwrap();
        outbox::enqueue(&mut conn, "payout-sent:p:a", "payout_sent", "y@example.com", &json!({ "amount": "1" }))
            .unwrap();
    }
    enrol(&app, "Ok", "ok@example.com", "OKAY1").await;
    let mails = app.delivered().await;
    assert_eq!(mails.len(), 1, "only the well-formed e-mail goes out");

    let failed = admin_emails(&app, "?status=failed").await;
    assert_eq!(failed.len(), 2);
    let unknown = failed.iter().find(|e| e["template"] == "no_such_template").unwrap();
    assert_eq!(unknown["attempts"], 1, "a permanent error is not retried");
    assert!(unknown["last_error"].as_str().unwrap().contains("unknown e-mail template"), "{unknown}");
    let incomplete = failed.iter().find(|e| e["template"] == "payout_sent").unwrap();
    assert!(incomplete["last_error"].as_str().unwrap().contains("payout_sent"), "{incomplete}");
    assert_eq!(admin_emails(&app, "?status=sent").await.len(), 1);
    assert_eq!(admin_emails(&app, "?limit=2").await.len(), 2);
    assert_problem(
        app.get("/v1/emails?status=lost", &app.admin_key).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_problem(app.get("/v1/emails", &staff).await, StatusCode::FORBIDDEN, "forbidden").await;

    // Retry: failed → queued (audited); it fails again, the template is still unknown.
    let id = unknown["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/emails/{id}/retry"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["attempts"], 0);
    assert_eq!(app.audit_actions(id), vec!["email.retried"]);
    app.delivered().await;
    assert_eq!(admin_emails(&app, "?status=failed").await.len(), 2);

    let sent = admin_emails(&app, "?status=sent").await;
    let p = assert_problem(
        app.post(&format!("/v1/emails/{}/retry", sent[0]["id"].as_str().unwrap()), &app.admin_key, &json!({})).await,
        StatusCode::CONFLICT,
        "invalid-transition",
    )
    .await;
    assert_eq!(p["current_status"], "sent");
    assert_problem(
        app.post("/v1/emails/0190f0f0-0000-7000-8000-000000000000/retry", &app.admin_key, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        app.post(&format!("/v1/emails/{id}/retry"), &staff, &json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vouch_emails_sent_total 1\n"), "{metrics}");
    assert!(metrics.contains("vouch_emails_failed_total 3\n"), "{metrics}");
    assert!(metrics.contains("vouch_emails_queued 0\n"), "{metrics}");
    assert!(metrics.contains("vouch_email_outbox{status=\"failed\"} 2\n"), "{metrics}");
}

#[tokio::test]
async fn an_e_mail_left_sending_by_a_dead_instance_is_taken_over_when_its_claim_lapses() {
    use diesel::prelude::*;
    use vouch::db::schema::email_outbox as eo;
    let app = spawn_app().await;
    let payload = json!({ "ambassador_name": "Ann", "amount": "1.00 EUR", "reference": "R", "paid_on": "2026-11-30" });
    let lapses_at = chrono::Utc::now().naive_utc() + chrono::TimeDelta::milliseconds(300);
    {
        let mut conn = app.pool.get().unwrap();
        outbox::enqueue(&mut conn, "payout-sent:p:a", "payout_sent", "ann@example.com", &payload).unwrap();
        // As a claim by an instance that then died looks: sending, one attempt, a lease.
        diesel::update(eo::table)
            .set((eo::status.eq("sending"), eo::attempts.eq(1), eo::next_attempt_at.eq(lapses_at)))
            .execute(&mut conn)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(app.mails().is_empty(), "not taken while the claim holds");
    let mails = app.mail_to("ann@example.com").await;
    assert_eq!(mails.len(), 1);
    let row = &admin_emails(&app, "").await[0];
    assert_eq!(row["status"], "sent");
    assert_eq!(row["attempts"], 2);
}

/// Waits until `check` holds, for up to 15 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn received_by_message_id(server: &SmtpServer) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in server.received() {
        *seen.entry(parse(&r.data).message_id).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn smtp_delivers_real_multipart_messages() {
    let server = SmtpServer::start();
    let app = spawn_app_with(|s| {
        branded(s);
        smtp_on(server.port)(s);
    })
    .await;
    enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;
    enrol(&app, "Bob Ray", "bob@example.com", "BOB1").await;
    eventually("two messages", || server.received().len() == 2).await;
    app.delivered().await;
    let got = server.received();
    let ann = got.iter().find(|r| r.to == vec!["ann@example.com"]).expect("Ann's welcome");
    assert_eq!(ann.from, "hello@clinic.test");
    let m = parse(&ann.data);
    assert_eq!(m.subject, "Welcome to the Clinic Care ambassador programme");
    assert!(m.text.contains("https://refer.clinic.test/r/ANN1"), "{}", m.text);
    assert!(m.html.contains("ANN1"));
    assert!(got.iter().any(|r| r.to == vec!["bob@example.com"]));
    assert!(app.mails().is_empty(), "no .eml files with the SMTP transport");
}

#[tokio::test]
async fn mail_waits_while_the_smtp_server_is_down_and_goes_once_across_restarts() {
    let (socket, port) = reserve_port();
    let mut app = spawn_app_with(smtp_on(port)).await;
    enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;

    // Down: the welcome stays queued, tried again and again, with the error kept.
    eventually("a few failed tries", || {
        let mut conn = app.pool.get().unwrap();
        use diesel::prelude::*;
        use vouch::db::schema::email_outbox as eo;
        eo::table.select(eo::attempts).first::<i32>(&mut conn).unwrap() >= 3
    })
    .await;
    let rows = admin_emails(&app, "").await;
    assert_eq!(rows.len(), 1);
    assert!(
        ["queued", "sending"].contains(&rows[0]["status"].as_str().unwrap()),
        "still waiting, not failed: {rows:?}"
    );
    assert!(rows[0]["last_error"].as_str().unwrap().contains("SMTP"), "{rows:?}");

    // Restart while the server is still down, then bring the server up.
    app.restart(|_| {}).await;
    let server = SmtpServer::listen(socket);
    eventually("the welcome delivered", || server.received().len() == 1).await;
    app.delivered().await;
    assert_eq!(admin_emails(&app, "?status=sent").await.len(), 1);

    // Another restart, another e-mail: each goes exactly once.
    app.restart(|_| {}).await;
    app.client.post(app.url("/v1/portal/login")).json(&json!({ "email": "ann@example.com" })).send().await.unwrap();
    eventually("the login link delivered", || server.received().len() == 2).await;
    app.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = received_by_message_id(&server);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "nothing sent twice: {seen:?}");
    assert_eq!(app.outbox_pending(), 0);
}

#[tokio::test]
async fn mail_fails_after_the_configured_attempts() {
    let (socket, port) = reserve_port();
    let app = spawn_app_with(|s| {
        smtp_on(port)(s);
        s.email.max_attempts = 3;
    })
    .await;
    enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;
    app.delivered().await;
    let failed = admin_emails(&app, "?status=failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 3);
    assert!(failed[0]["last_error"].as_str().unwrap().contains("SMTP"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vouch_emails_failed_total 1\n"), "{metrics}");

    // The server comes up and an admin retries: delivered.
    let server = SmtpServer::listen(socket);
    let id = failed[0]["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/emails/{id}/retry"), &app.admin_key, &json!({})).await.status(), StatusCode::OK);
    eventually("delivery after the retry", || server.received().len() == 1).await;
}

#[tokio::test]
async fn several_instances_share_the_outbox_without_sending_twice() {
    let server = SmtpServer::start();
    let app = spawn_app_with(|s| {
        smtp_on(server.port)(s);
        s.email.batch_size = 3;
    })
    .await;
    let _second = app.another_instance();
    let _third = app.another_instance();
    {
        let mut conn = app.pool.get().unwrap();
        for i in 0..30 {
            let payload = json!({ "ambassador_name": "Ann", "amount": format!("{i}.00 EUR"),
                                  "reference": format!("R{i}"), "paid_on": "2026-11-30" });
            outbox::enqueue(&mut conn, &format!("payout-sent:p{i}:a"), "payout_sent", "ann@example.com", &payload)
                .unwrap();
        }
    }
    eventually("thirty messages", || server.received().len() >= 30).await;
    app.delivered().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = received_by_message_id(&server);
    assert_eq!(seen.len(), 30);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(admin_emails(&app, "?status=sent&limit=200").await.len(), 30);
}

#[tokio::test]
async fn a_permanent_smtp_refusal_fails_the_email_at_once() {
    let server = SmtpServer::start_with(Behaviour { refuse_recipients: true, ..Default::default() });
    let app = spawn_app_with(smtp_on(server.port)).await;
    enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;
    app.delivered().await;
    let failed = admin_emails(&app, "?status=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["attempts"], 1, "no retry after a 5xx, though max_attempts is 1000: {failed:?}");
    assert!(failed[0]["last_error"].as_str().unwrap().contains("No such mailbox"), "{failed:?}");
    // Retries here come every 50 ms: none follows.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.refusals(), 1);
    assert_eq!(admin_emails(&app, "?status=failed").await[0]["attempts"], 1);
    assert!(server.received().is_empty());
}

/// Writes the test CA where `email.smtp.ca_file` can point at it.
fn ca_file(pem: &str) -> String {
    let path = std::env::temp_dir().join(format!("vouch-test-ca-{}.pem", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

fn smtp_tls_on(port: u16, tls: SmtpTls, ca_file: &str) -> impl FnOnce(&mut Settings) + '_ {
    move |s: &mut Settings| {
        smtp_on(port)(s);
        s.email.smtp.tls = tls;
        s.email.smtp.ca_file = ca_file.to_owned();
    }
}

#[tokio::test]
async fn smtp_delivers_over_starttls_and_implicit_tls_to_a_trusted_certificate() {
    for (name, tls) in [("starttls", SmtpTls::Starttls), ("tls", SmtpTls::Tls)] {
        let (ca, acceptor) = smtp::test_pki();
        let server_tls =
            if tls == SmtpTls::Starttls { ServerTls::Starttls(acceptor) } else { ServerTls::Implicit(acceptor) };
        let server = SmtpServer::start_with(Behaviour { tls: server_tls, ..Default::default() });
        let ca = ca_file(&ca);
        let app = spawn_app_with(smtp_tls_on(server.port, tls, &ca)).await;
        enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;
        eventually("the welcome over TLS", || server.received().len() == 1).await;
        let got = &server.received()[0];
        assert!(got.tls, "{name}: the message travelled encrypted");
        assert_eq!(got.to, vec!["ann@example.com"], "{name}");
        assert!(parse(&got.data).text.contains("ANN1"), "{name}");
        app.delivered().await;
        assert_eq!(admin_emails(&app, "?status=sent").await.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn smtp_tls_refuses_a_certificate_nobody_trusts() {
    let (_, acceptor) = smtp::test_pki();
    let server = SmtpServer::start_with(Behaviour { tls: ServerTls::Starttls(acceptor), ..Default::default() });
    // No ca_file: the test CA is not among the public roots, so the server is not believed.
    let app = spawn_app_with(smtp_tls_on(server.port, SmtpTls::Starttls, "")).await;
    enrol(&app, "Ann Lee", "ann@example.com", "ANN1").await;
    // Wait for the refusal to be recorded, not for the claim: `attempts` counts up when the
    // worker claims the row, before it has even connected.
    eventually("a refused try", || {
        let mut conn = app.pool.get().unwrap();
        use diesel::prelude::*;
        use vouch::db::schema::email_outbox as eo;
        eo::table.select(eo::last_error).first::<Option<String>>(&mut conn).unwrap().is_some()
    })
    .await;
    let rows = admin_emails(&app, "").await;
    let error = rows[0]["last_error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("certificate") || error.contains("issuer"), "{rows:?}");
    assert!(server.received().is_empty(), "nothing sent to an unverified server");
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_the_start() {
    for (path, why) in [("/nonexistent/vouch-ca.pem", "No such file"), (&*ca_file("not a certificate"), "no PEM")] {
        let mut settings = Settings::defaults();
        smtp_tls_on(2525, SmtpTls::Starttls, path)(&mut settings);
        let err = vouch::startup::Application::build(settings).err().expect("refused");
        assert!(err.contains("email.smtp.ca_file") && err.contains(why), "{err}");
    }
}

/// The mail worker has connections of its own (`database.background_pool_size`): with every
/// request connection taken (requests in flight), a burst of e-mails still drains — the worker
/// neither waits for the requests' connections nor takes one they need.
#[tokio::test]
async fn a_burst_of_mail_drains_on_the_workers_own_connections() {
    let app = spawn_app_with(|s| {
        s.database.pool_size = 2;
        s.database.background_pool_size = 1;
        s.database.connect_timeout_secs = 1;
        s.email.batch_size = 5;
    })
    .await;
    let held: Vec<_> = {
        let mut conn = app.pool.get().unwrap();
        for i in 0..40 {
            let payload = json!({ "ambassador_name": "Ann", "amount": format!("{i}.00 EUR"),
                                  "reference": format!("R{i}"), "paid_on": "2026-11-30" });
            outbox::enqueue(&mut conn, &format!("payout-sent:p{i}:a"), "payout_sent", "ann@example.com", &payload)
                .unwrap();
        }
        drop(conn);
        (0..2).map(|_| app.pool.get().unwrap()).collect()
    };
    eventually("forty messages while every request connection is taken", || app.mails().len() == 40).await;
    drop(held);
    assert_eq!(admin_emails(&app, "?status=sent&limit=200").await.len(), 40);
}
