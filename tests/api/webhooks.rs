//! Webhooks end to end: a receiver in the test process checks the Standard Webhooks
//! signatures, the order per record, retries after errors, an outage and a restart, that two
//! instances never send an event twice, replays, secret rotation, and what is refused
//! (private addresses without the setting, redirects, bad input).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{assert_problem, problem_fields, spawn_app_with, TestApp};
use crate::money_support::today;
use vouch::config::Settings;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub id: String,
    timestamp: i64,
    signatures: Vec<String>,
    pub raw: String,
    pub body: Value,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// Whether one of the signatures is this secret's (as a receiver's library checks it).
    pub fn signed_by(&self, secret: &str) -> bool {
        let key = B64.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{}.{}.{}", self.id, self.timestamp, self.raw).as_bytes());
        let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
        self.signatures.contains(&expected)
    }
}

/// A tiny HTTP/1.1 server: records each request, answers with the next scripted status (200
/// once the script is used up), optionally after a delay.
#[derive(Clone)]
pub(crate) struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    delay: Arc<Mutex<Duration>>,
    /// Extra delays, one per request, before answering (a stalled receiver).
    stalls: Arc<Mutex<VecDeque<Duration>>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Self {
            port: listener.local_addr().unwrap().port(),
            got: Arc::default(),
            script: Arc::default(),
            delay: Arc::default(),
            stalls: Arc::default(),
            task: Arc::default(),
        };
        receiver.serve(listener);
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let this = this.clone();
                tokio::spawn(async move { this.handle(stream).await });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Stops listening: connections are refused (an outage).
    fn go_down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    async fn come_back(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("rebind the receiver's port");
        self.serve(listener);
    }

    fn answer(&self, statuses: &[(u16, &'static str)]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    async fn handle(&self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, length) = loop {
            let Ok(n) = stream.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let Ok(n) = stream.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let raw = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        let stall = self.stalls.lock().unwrap().pop_front().unwrap_or_default();
        let delay = *self.delay.lock().unwrap() + stall;
        tokio::time::sleep(delay).await;
        self.got.lock().unwrap().push(Received {
            id: header("webhook-id").unwrap_or_default(),
            timestamp: header("webhook-timestamp").and_then(|t| t.parse().ok()).unwrap_or_default(),
            signatures: header("webhook-signature").unwrap_or_default().split(' ').map(str::to_owned).collect(),
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        });
        let (status, extra) = self.script.lock().unwrap().pop_front().unwrap_or((200, ""));
        let body = if status >= 500 { "x".repeat(3000) } else { "ok".into() };
        let response = format!(
            "HTTP/1.1 {status} Status\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (or panics after 15 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..300 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} webhook requests, got {:#?}",
            self.received().iter().map(Received::kind).collect::<Vec<_>>()
        );
    }
}

pub(crate) fn fast_webhooks(s: &mut Settings) {
    s.webhooks.allow_private_addresses = true;
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.retry_base_ms = 100;
    s.webhooks.retry_max_secs = 1;
    s.webhooks.timeout_secs = 5;
    s.webhooks.lease_secs = 10;
}

async fn app() -> TestApp {
    spawn_app_with(fast_webhooks).await
}

/// Registers an endpoint; returns (id, secret).
pub(crate) async fn endpoint(app: &TestApp, url: &str, events: &[&str], staff_system: bool) -> (String, String) {
    let res = app
        .post(
            "/v1/webhooks",
            &app.admin_key,
            &json!({ "url": url, "events": events, "description": "booking system", "staff_system": staff_system }),
        )
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

/// Enrols an ambassador; returns (id, code).
async fn ambassador(app: &TestApp, staff: &str, name: &str) -> (String, String) {
    let amb = app.enrol_named(staff, name).await;
    (amb["id"].as_str().unwrap().to_owned(), amb["codes"][0]["code"].as_str().unwrap().to_owned())
}

/// Records a referred client with contact details; returns its id.
async fn refer(app: &TestApp, staff: &str, code: &str) -> String {
    let body = json!({ "code": code, "first_name": "Maria", "last_name": "Garcia",
        "email": "maria@example.com", "phone": "+44 20 7946 0018", "external_ref": "CL-1" });
    let res = app.post("/v1/referrals", staff, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn first_session(app: &TestApp, staff: &str, referral: &str) {
    let today = chrono::Utc::now().date_naive().to_string();
    let res = app.post(&format!("/v1/referrals/{referral}/sessions"), staff, &json!({ "session_on": today })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/webhooks/{endpoint}/deliveries"), &app.admin_key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

/// Waits until no delivery of the endpoint is pending or being sent.
async fn settled(app: &TestApp, endpoint: &str) -> Vec<Value> {
    for _ in 0..300 {
        let items = deliveries(app, endpoint).await;
        if items.iter().all(|d| d["status"] == "delivered" || d["status"] == "failed") {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries never settled: {:#?}", deliveries(app, endpoint).await);
}

#[tokio::test]
async fn signed_events_arrive_in_order_and_only_staff_systems_see_the_client() {
    let app = app().await;
    let staff = app.key("staff").await;
    let (clinic, staff_system) = (Receiver::start().await, Receiver::start().await);
    let events = ["ambassador.activated", "referral.registered", "referral.in_treatment", "referral.completed"];
    let (_, secret) = endpoint(&app, &clinic.url(), &events, false).await;
    let (staff_endpoint, staff_secret) = endpoint(&app, &staff_system.url(), &events[1..2], true).await;

    let (ambassador_id, code) = ambassador(&app, &staff, "Ann Lee").await;
    let referral = refer(&app, &staff, &code).await;
    first_session(&app, &staff, &referral).await;
    let today = chrono::Utc::now().date_naive().to_string();
    let res = app.post(&format!("/v1/referrals/{referral}/complete"), &staff, &json!({ "completed_on": today })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let mut got = clinic.wait_for(4).await;
    // Events about one record arrive in order (about different records, in any order).
    let at = got.iter().position(|r| r.kind() == "ambassador.activated").expect("ambassador.activated");
    let activated = got.remove(at);
    got.insert(0, activated);
    let kinds: Vec<&str> = got.iter().map(Received::kind).collect();
    assert_eq!(&kinds[1..], &["referral.registered", "referral.in_treatment", "referral.completed"]);
    for r in &got {
        assert!(r.signed_by(&secret), "signature verifies: {r:?}");
        assert!((chrono::Utc::now().timestamp() - r.timestamp).abs() < 60);
        assert_eq!(r.body["version"], 1);
        assert!(r.body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(got[0].body["data"]["id"], ambassador_id.as_str());
    assert_eq!(got[3].body["data"]["id"], referral.as_str());
    assert_eq!(got[3].body["data"]["status"], "completed");
    assert_eq!(got[1].body["data"]["status"], "registered", "each payload is the record as it was then");
    // No client names or contact details for an ordinary endpoint …
    for r in &got[1..] {
        for needle in ["maria", "Maria", "Garcia", "7946", "client_"] {
            assert!(!r.raw.contains(needle), "{needle} in {}", r.raw);
        }
    }
    // … staff's view for a staff system (and each endpoint its own signature).
    let staff_got = staff_system.wait_for(1).await;
    assert!(staff_got[0].signed_by(&staff_secret) && !staff_got[0].signed_by(&secret));
    assert_eq!(staff_got[0].body["data"]["client_email"], "maria@example.com");
    assert_eq!(staff_got[0].body["data"]["client_first_name"], "Maria");
    assert_eq!(staff_got[0].id, got[1].id, "one event, one webhook-id, whichever endpoint");
    assert!(clinic.received().iter().all(|r| !r.raw.contains("notes")));

    // Erasing the client's personal data removes it from the deliveries kept too.
    let res = app
        .request(Method::DELETE, &format!("/v1/referrals/{referral}/personal-data"), Some(&app.admin_key), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let kept = deliveries(&app, &staff_endpoint).await;
    assert_eq!(kept.len(), 1);
    assert!(!kept[0]["payload"].to_string().contains("maria"), "{}", kept[0]["payload"]);
    assert_eq!(kept[0]["payload"]["data"]["id"], referral.as_str());
}

#[tokio::test]
async fn failures_are_retried_and_later_events_about_the_record_wait() {
    let app = app().await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    receiver.answer(&[(500, ""), (503, "")]);
    let (endpoint_id, _) =
        endpoint(&app, &receiver.url(), &["referral.registered", "referral.in_treatment"], false).await;
    let (_, code) = ambassador(&app, &staff, "Bo Chen").await;
    let referral = refer(&app, &staff, &code).await;
    first_session(&app, &staff, &referral).await;

    let got = receiver.wait_for(4).await;
    let kinds: Vec<&str> = got.iter().map(Received::kind).collect();
    assert_eq!(kinds, ["referral.registered", "referral.registered", "referral.registered", "referral.in_treatment"]);
    assert!(got[..3].iter().all(|r| r.id == got[0].id), "a retry keeps its webhook-id");

    let items = settled(&app, &endpoint_id).await;
    let registered = items.iter().find(|d| d["event_type"] == "referral.registered").unwrap();
    assert_eq!(registered["status"], "delivered");
    let log = registered["attempt_log"].as_array().unwrap();
    let codes: Vec<i64> = log.iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 503, 200]);
    assert_eq!(log[0]["response_body"].as_str().unwrap().len(), 1024, "bodies are kept up to 1 KiB");
    assert!(log[0]["error"].as_str().unwrap().contains("500"));
    let endpoint: Value = app.get(&format!("/v1/webhooks/{endpoint_id}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(endpoint["failure_streak"], 0, "a success ends the streak");
}

#[tokio::test]
async fn nothing_is_lost_across_an_outage_and_a_restart() {
    let mut app = app().await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    let (endpoint_id, secret) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    receiver.go_down();
    let mut ids = Vec::new();
    for name in ["Cy One", "Cy Two", "Cy Three"] {
        ids.push(ambassador(&app, &staff, name).await.0);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let failing = deliveries(&app, &endpoint_id).await;
    assert!(failing.iter().any(|d| d["attempts"].as_i64().unwrap() >= 1), "tried during the outage");
    assert!(failing.iter().all(|d| d["status"] != "delivered"));

    app.restart(|_| {}).await;
    receiver.come_back().await;
    let got = receiver.wait_for(3).await;
    settled(&app, &endpoint_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = receiver.received();
    assert_eq!(got_now.len(), 3, "each event once: {got:?}");
    let mut delivered: Vec<String> =
        got_now.iter().map(|r| r.body["data"]["id"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    assert!(got_now.iter().all(|r| r.signed_by(&secret)));
}

#[tokio::test]
async fn two_instances_never_send_the_same_event_twice() {
    let app = app().await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    *receiver.delay.lock().unwrap() = Duration::from_millis(30);
    let (endpoint_id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    let _second = app.another_instance();
    let n = 12;
    for i in 0..n {
        ambassador(&app, &staff, &format!("Dee Number{i}")).await;
    }
    receiver.wait_for(n).await;
    settled(&app, &endpoint_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *per_id.entry(r.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), n);
    assert!(per_id.values().all(|&c| c == 1), "sent twice: {per_id:?}");
}

#[tokio::test]
async fn replays_rotation_and_the_test_ping() {
    let app = app().await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    let (endpoint_id, old_secret) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;

    // The ping.
    let res = app.post(&format!("/v1/webhooks/{endpoint_id}/test"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let ping = &receiver.wait_for(1).await[0];
    assert_eq!(ping.kind(), "webhook.ping");
    assert!(ping.signed_by(&old_secret));

    // A replay sends the same event again, with the same webhook-id.
    ambassador(&app, &staff, "Eve Adams").await;
    let first = receiver.wait_for(2).await[1].clone();
    let items = settled(&app, &endpoint_id).await;
    let delivered = items.iter().find(|d| d["event_type"] == "ambassador.activated").unwrap();
    let replay = format!("/v1/webhook-deliveries/{}/replay", delivered["id"].as_str().unwrap());
    let res = app.post(&replay, &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again = receiver.wait_for(3).await[2].clone();
    assert_eq!((again.id.as_str(), again.raw.as_str()), (first.id.as_str(), first.raw.as_str()));
    settled(&app, &endpoint_id).await;
    assert!(app.audit_actions(delivered["id"].as_str().unwrap()).contains(&"webhook_delivery.replayed".to_owned()));

    // Rotation: the new secret is shown once; both sign during the grace period.
    let res = app.post(&format!("/v1/webhooks/{endpoint_id}/rotate-secret"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_valid_until"].is_string());
    ambassador(&app, &staff, "Fay Brown").await;
    let after = receiver.wait_for(4).await[3].clone();
    assert_eq!(after.signatures.len(), 2, "{after:?}");
    assert!(after.signed_by(&new_secret) && after.signed_by(&old_secret));
    // Secrets are never shown again, nor stored in the clear.
    let shown: Value = app.get(&format!("/v1/webhooks/{endpoint_id}"), &app.admin_key).await.json().await.unwrap();
    assert!(shown.get("secret").is_none());
    let mut conn = app.pool.get().unwrap();
    use diesel::prelude::*;
    let sealed: String = vouch::db::schema::webhook_endpoints::table
        .find(&endpoint_id)
        .select(vouch::db::schema::webhook_endpoints::secret_sealed)
        .first(&mut conn)
        .unwrap();
    assert!(!sealed.contains(new_secret.trim_start_matches("whsec_")));
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::start().await;
    let strict = spawn_app_with(|s| {
        fast_webhooks(s);
        s.webhooks.allow_private_addresses = false;
    })
    .await;
    for url in [receiver.url(), "http://localhost:9/x".to_owned(), "http://169.254.169.254/latest".to_owned()] {
        let body = json!({ "url": url, "events": ["ambassador.activated"] });
        let res = strict.post("/v1/webhooks", &strict.admin_key, &body).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "webhook-url-refused").await;
        assert!(p["detail"].as_str().unwrap().contains("allow_private_addresses"), "{p}");
    }
    let list: Value = strict.get("/v1/webhooks", &strict.admin_key).await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));

    // Saved while allowed, then refused at send time once the setting is off.
    let mut app = app().await;
    let staff = app.key("staff").await;
    let (endpoint_id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    app.restart(|s| s.webhooks.allow_private_addresses = false).await;
    ambassador(&app, &staff, "Gus Grey").await;
    for _ in 0..100 {
        let items = deliveries(&app, &endpoint_id).await;
        if items.first().is_some_and(|d| d["attempts"].as_i64() >= Some(1) && d["last_error"].is_string()) {
            assert!(items[0]["last_error"].as_str().unwrap().contains("not a public address"), "{items:?}");
            assert!(receiver.received().is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no refused attempt recorded");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = app().await;
    let staff = app.key("staff").await;
    let (redirecting, target) = (Receiver::start().await, Receiver::start().await);
    let location: &'static str = Box::leak(format!("location: {}\r\n", target.url()).into_boxed_str());
    redirecting.answer(&[(302, location)]);
    let (endpoint_id, _) = endpoint(&app, &redirecting.url(), &["ambassador.activated"], false).await;
    ambassador(&app, &staff, "Hal Ito").await;
    redirecting.wait_for(2).await; // the redirect, then the retry (answered 200)
    let items = settled(&app, &endpoint_id).await;
    let log = items[0]["attempt_log"].as_array().unwrap();
    assert_eq!(log[0]["status_code"], 302);
    assert!(log[0]["error"].as_str().unwrap().contains("redirects are not followed"));
    assert!(target.received().is_empty(), "the redirect target was never called");
}

#[tokio::test]
async fn a_long_failure_streak_disables_the_endpoint_and_tells_the_admins() {
    let app = spawn_app_with(|s| {
        fast_webhooks(s);
        s.webhooks.disable_after_failures = 3;
        s.webhooks.max_attempts = 2;
        s.email.staff_alert_to = "alerts@clinic.example".into();
    })
    .await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    receiver.answer(&[(500, ""); 10]);
    let (endpoint_id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    ambassador(&app, &staff, "Ida One").await;
    ambassador(&app, &staff, "Ida Two").await;
    let mut endpoint = Value::Null;
    for _ in 0..200 {
        endpoint = app.get(&format!("/v1/webhooks/{endpoint_id}"), &app.admin_key).await.json().await.unwrap();
        if endpoint["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    // Two deliveries fail side by side: the one that disables it may be the third or the fourth.
    let reason = endpoint["disabled_reason"].as_str().unwrap();
    let streak: i64 = reason.split(' ').next().unwrap().parse().unwrap();
    assert!(streak >= 3 && reason.contains(" attempts in a row failed since "), "{reason}");
    assert_eq!(app.audit_actions(&endpoint_id).last().map(String::as_str), Some("webhook.disabled"));
    let alerts = app.mail_to("alerts@clinic.example").await;
    assert!(alerts.iter().any(|m| m.everything().contains(&receiver.url())), "the admins are e-mailed");

    // Disabled: no new events; enabled again: the streak starts afresh.
    let before = deliveries(&app, &endpoint_id).await.len();
    ambassador(&app, &staff, "Ida Three").await;
    assert_eq!(deliveries(&app, &endpoint_id).await.len(), before);
    let res = app.patch(&format!("/v1/webhooks/{endpoint_id}"), &app.admin_key, &json!({ "enabled": true })).await;
    let enabled: Value = res.json().await.unwrap();
    assert_eq!((enabled["enabled"].clone(), enabled["failure_streak"].clone()), (json!(true), json!(0)));
    assert!(enabled["disabled_reason"].is_null());
}

#[tokio::test]
async fn endpoints_are_managed_by_admins_and_bad_input_changes_nothing() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let staff = app.key("staff").await;
    let body = json!({ "url": receiver.url(), "events": ["referral.completed"] });
    assert_eq!(app.post("/v1/webhooks", &staff, &body).await.status(), StatusCode::FORBIDDEN);

    let before = app.counts();
    let bad = json!({ "url": "ftp://example.com", "events": ["referral.deleted"], "description": "x".repeat(300) });
    let p = assert_problem(
        app.post("/v1/webhooks", &app.admin_key, &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), ["url", "description", "events"]);
    let none = json!({ "url": receiver.url(), "events": [] });
    let p = assert_problem(
        app.post("/v1/webhooks", &app.admin_key, &none).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), ["events"]);
    let unknown = json!({ "url": receiver.url(), "events": ["referral.completed"], "secret": "mine" });
    let p = assert_problem(
        app.post("/v1/webhooks", &app.admin_key, &unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem_fields(&p), ["secret"], "a secret is never chosen by the caller");
    assert_eq!(app.counts(), before);

    let (id, _) = endpoint(&app, &receiver.url(), &["referral.completed", "ambassador.applied"], false).await;
    let res = app
        .patch(
            &format!("/v1/webhooks/{id}"),
            &app.admin_key,
            &json!({ "events": ["reward.earned"], "description": "ERP" }),
        )
        .await;
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["events"], json!(["reward.earned"]));
    assert_eq!(changed["description"], "ERP");
    let list: Value = app.get("/v1/webhooks", &app.admin_key).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let res = app.request(Method::DELETE, &format!("/v1/webhooks/{id}"), Some(&app.admin_key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(app.get(&format!("/v1/webhooks/{id}"), &app.admin_key).await, StatusCode::NOT_FOUND, "not-found")
        .await;
    assert_problem(
        app.post("/v1/webhook-deliveries/0190a0a0-0000-7000-8000-000000000000/replay", &app.admin_key, &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let actions = app.audit_actions(&id);
    assert_eq!(actions, ["webhook.created", "webhook.updated", "webhook.deleted"]);

    // The events are documented in the OpenAPI 3.1 `webhooks` section.
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let hooks = doc["webhooks"].as_object().expect("a webhooks section");
    assert_eq!(hooks.len(), 15);
    let completed = &hooks["referral.completed"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(completed["properties"]["data"]["$ref"], "#/components/schemas/ReferralData");
    assert!(doc["components"]["schemas"]["ReferralData"].is_object());
}

#[tokio::test]
async fn money_events_carry_the_ledger_and_the_batch() {
    let app = app().await;
    let team = app.team().await;
    let receiver = Receiver::start().await;
    let events = ["reward.earned", "payout.locked", "payout.line_failed", "payout.paid"];
    let (endpoint_id, secret) = endpoint(&app, &receiver.url(), &events, false).await;
    app.set_program(json!({ "holding_days": 0 })).await;
    let (paid_ambassador, code_a, _) = app.paid_ambassador(&team.staff, "Jo Paid").await;
    let (failed_ambassador, code_b, _) = app.paid_ambassador(&team.staff, "Kim Failed").await;
    app.completed_referral(&team, &code_a, "Lou", today()).await;
    app.completed_referral(&team, &code_b, "Max", today()).await;
    let batch: Value = app.post("/v1/payouts", &team.finance, &json!({})).await.json().await.unwrap();
    let batch_id = batch["id"].as_str().expect("a batch").to_owned();
    crate::payouts::lock_batch(&app, &team.finance, &batch_id).await;
    let line = batch["lines"].as_array().unwrap().iter().find(|l| l["ambassador_id"] == failed_ambassador.as_str());
    let line_id = line.unwrap()["id"].as_str().unwrap().to_owned();
    let fail = format!("/v1/payouts/{batch_id}/lines/{line_id}/fail");
    assert_eq!(app.post(&fail, &team.finance, &json!({ "reason": "account closed" })).await.status(), StatusCode::OK);
    let paid =
        app.post(&format!("/v1/payouts/{batch_id}/mark-paid"), &team.finance, &json!({ "reference": "PP-1" })).await;
    assert_eq!(paid.status(), StatusCode::OK);

    let got = receiver.wait_for(5).await;
    settled(&app, &endpoint_id).await;
    assert!(got.iter().all(|r| r.signed_by(&secret)));
    let of = |kind: &str| got.iter().filter(|r| r.kind() == kind).cloned().collect::<Vec<_>>();
    let earned = of("reward.earned");
    assert_eq!(earned.len(), 2);
    assert!(earned
        .iter()
        .all(|r| r.body["data"]["kind"] == "earned" && r.body["data"]["amount_minor"].as_i64() > Some(0)));
    assert!(earned.iter().any(|r| r.body["data"]["ambassador_id"] == paid_ambassador.as_str()));
    assert_eq!(of("payout.locked")[0].body["data"]["status"], "processing");
    let failed = &of("payout.line_failed")[0].body["data"];
    assert_eq!(
        (failed["payout_id"].as_str(), failed["id"].as_str()),
        (Some(batch_id.as_str()), Some(line_id.as_str()))
    );
    assert_eq!(failed["status"], "failed");
    let paid = &of("payout.paid")[0].body["data"];
    assert_eq!((paid["id"].as_str(), paid["status"].as_str()), (Some(batch_id.as_str()), Some("paid")));
    assert_eq!(paid["reference"], "PP-1");
    // Events about one batch arrive in the order they happened.
    let batch_events: Vec<&str> = got.iter().map(Received::kind).filter(|k| k.starts_with("payout.")).collect();
    assert_eq!(batch_events, ["payout.locked", "payout.line_failed", "payout.paid"]);
    assert!(got.iter().all(|r| !r.raw.contains("Lou") && !r.raw.contains("Max")), "no client names");
}

#[tokio::test]
async fn a_ping_reaches_a_disabled_endpoint() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    let res = app.patch(&format!("/v1/webhooks/{endpoint_id}"), &app.admin_key, &json!({ "enabled": false })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["enabled"], false);
    let res = app.post(&format!("/v1/webhooks/{endpoint_id}/test"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(receiver.wait_for(1).await[0].kind(), "webhook.ping");
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_is_tried_again() {
    let app = spawn_app_with(|s| {
        fast_webhooks(s);
        s.webhooks.timeout_secs = 1;
        s.webhooks.lease_secs = 3;
    })
    .await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    receiver.stalls.lock().unwrap().push_back(Duration::from_millis(2500));
    let (endpoint_id, secret) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    ambassador(&app, &staff, "Jay Slow").await;
    let items = settled(&app, &endpoint_id).await;
    assert_eq!(items[0]["status"], "delivered", "{items:?}");
    let log = items[0]["attempt_log"].as_array().unwrap();
    assert!(log[0]["status_code"].is_null(), "{log:?}");
    assert!(log[0]["error"].as_str().unwrap().contains("timed out"), "{log:?}");
    assert!(log[0]["duration_ms"].as_i64().unwrap() < 2000, "the attempt gave up at the timeout: {log:?}");
    assert_eq!(log.last().unwrap()["status_code"], 200);
    assert!(receiver.wait_for(2).await.iter().all(|r| r.signed_by(&secret)));
}

#[tokio::test]
async fn a_claim_left_by_a_dead_instance_is_sent_once_its_lease_lapses() {
    use vouch::store::webhooks as outbox;
    // The server's worker sleeps: the test claims first, as an instance that then dies.
    let mut app = spawn_app_with(|s| {
        fast_webhooks(s);
        s.webhooks.poll_interval_ms = 600_000;
    })
    .await;
    let staff = app.key("staff").await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = endpoint(&app, &receiver.url(), &["ambassador.activated"], false).await;
    ambassador(&app, &staff, "Kai Lost").await;
    let claimed_at = std::time::Instant::now();
    let dead_claim = {
        let mut conn = app.pool.get().unwrap();
        let mut claimed = outbox::claim(&mut conn, 10, chrono::TimeDelta::seconds(1)).unwrap();
        assert_eq!(claimed.len(), 1);
        claimed.remove(0)
    };
    app.restart(|s| s.webhooks.poll_interval_ms = 50).await;
    assert_eq!(deliveries(&app, &endpoint_id).await[0]["status"], "sending");

    let got = receiver.wait_for(1).await;
    assert!(claimed_at.elapsed() >= Duration::from_secs(1), "not before the lease lapsed");
    let items = settled(&app, &endpoint_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "sent once: {got:?}");
    assert_eq!((items[0]["status"].as_str(), items[0]["attempts"].as_i64()), (Some("delivered"), Some(2)));

    // The dead instance's late outcome is fenced off by its attempt number: nothing written.
    let mut conn = app.pool.get().unwrap();
    let late = outbox::Outcome { status_code: Some(500), response_body: None, error: Some("late"), duration_ms: 1 };
    assert!(!outbox::record_attempt(&mut conn, &dead_claim, &late, Some(None)).unwrap());
    assert!(!outbox::renew(&mut conn, &dead_claim.id, dead_claim.attempts, vouch::db::now()).unwrap());
    let after = deliveries(&app, &endpoint_id).await;
    assert_eq!(after[0]["status"], "delivered");
    let log = after[0]["attempt_log"].as_array().unwrap();
    assert_eq!((log.len(), log[0]["attempt"].as_i64()), (1, Some(2)), "{log:?}");
}

#[tokio::test]
async fn every_event_goes_out_when_its_change_happens() {
    let app = app().await;
    let team = app.team().await;
    let receiver = Receiver::start().await;
    let all: Vec<String> = vouch::domain::webhook::EventType::ALL.iter().map(|e| e.as_str().to_owned()).collect();
    let events: Vec<&str> = all.iter().map(String::as_str).collect();
    let (endpoint_id, secret) = endpoint(&app, &receiver.url(), &events, false).await;
    app.set_program(json!({ "holding_days": 0 })).await;

    // An applicant approved, then suspended.
    let body = json!({ "name": "Ola Apply", "email": "ola@example.com" });
    let res = app.client.post(app.url("/v1/public/ambassador-applications")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let list: Value = app.get("/v1/ambassadors?status=applied", &app.admin_key).await.json().await.unwrap();
    let applicant = list["items"][0]["id"].as_str().unwrap().to_owned();
    let res = app.post(&format!("/v1/ambassadors/{applicant}/approve"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post(&format!("/v1/ambassadors/{applicant}/suspend"), &team.staff, &json!({ "reason": "x" })).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Referrals cancelled, rejected, refunded before their reward was paid and after.
    let (_, code, _) = app.paid_ambassador(&team.staff, "Pia Paid").await;
    let cancelled = refer(&app, &team.staff, &code).await;
    let close = |id: &str, action: &str| format!("/v1/referrals/{id}/{action}");
    let res = app.post(&close(&cancelled, "cancel"), &team.staff, &json!({ "reason_code": "client_withdrew" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json!({ "code": code, "first_name": "Rex", "email": "rex@example.com" });
    let rejected: Value = app.post("/v1/referrals", &team.staff, &body).await.json().await.unwrap();
    let rejected = rejected["id"].as_str().unwrap().to_owned();
    let res = app.post(&close(&rejected, "reject"), &team.staff, &json!({ "reason_code": "fraud" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (voided, _) = app.completed_referral(&team, &code, "Val", today()).await;
    let res = app.post(&close(&voided, "refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (clawed, _) = app.completed_referral(&team, &code, "Cal", today()).await;
    let batch: Value = app.post("/v1/payouts", &team.finance, &json!({})).await.json().await.unwrap();
    crate::payouts::mark_paid(&app, &team.finance, batch["id"].as_str().expect("a batch")).await;
    let res = app.post(&close(&clawed, "refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let got = receiver.wait_for(22).await;
    let items = settled(&app, &endpoint_id).await;
    assert!(items.iter().all(|d| d["status"] == "delivered"));
    assert!(got.iter().all(|r| r.signed_by(&secret)));
    let mut kinds: Vec<&str> = got.iter().map(Received::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut expected: Vec<&str> = events.iter().copied().filter(|e| *e != "payout.line_failed").collect();
    expected.sort_unstable();
    assert_eq!(kinds, expected, "every event but a failed line (see money_events_carry_the_ledger_and_the_batch)");
    let of = |kind: &str| got.iter().find(|r| r.kind() == kind).unwrap().body["data"].clone();
    assert_eq!(of("ambassador.suspended")["id"], applicant.as_str());
    assert_eq!(of("referral.cancelled")["reason_code"], "client_withdrew");
    assert_eq!(of("reward.voided")["referral_id"], voided.as_str());
    assert_eq!(of("reward.clawed_back")["referral_id"], clawed.as_str());
    for r in &got {
        for needle in ["Maria", "Rex", "rex@", "Val", "Cal", "ola@"] {
            assert!(!r.raw.contains(needle), "{needle} in {}", r.raw);
        }
    }
}
