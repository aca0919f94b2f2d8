//! `kill -9` of the real `vouch` binary in the middle of a burst of batch creations,
//! completions and e-mail sending loses nothing and leaves nothing half-written: every
//! change is one transaction (audit and outbox rows included), and an e-mail claimed by a
//! process that died is sent when its claim lapses.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{ambassadors, audit_events, email_outbox, payout_lines, payouts, referrals, rewards};

use crate::helpers::{spawn_app, TestApp};
use crate::money_support::{today, Team};
use crate::smtp::SmtpServer;

const ROUNDS: usize = 4;
const COMPLETIONS_PER_ROUND: usize = 5;
const ENROLMENTS_PER_ROUND: usize = 4;

/// The `vouch serve` child process, on its own port, sharing the test's database.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(app: &TestApp, smtp_port: u16) -> Service {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(app.data_dir.with_file_name("service.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vouch"))
            .arg("serve")
            // No config/ folder there: the embedded defaults plus these variables.
            .current_dir(app.data_dir.parent().unwrap())
            .env("VOUCH__DATABASE__URL", &app.settings.database.url)
            .env("VOUCH__DATABASE__POOL_SIZE", "4")
            .env("VOUCH__DATA_DIR", &app.data_dir)
            .env("VOUCH__SERVER__HOST", "127.0.0.1")
            .env("VOUCH__SERVER__PORT", port.to_string())
            .env("VOUCH__SERVER__WORKERS", "2")
            .env("VOUCH__LOG__LEVEL", "warn")
            .env("VOUCH__EMAIL__TRANSPORT", "smtp")
            .env("VOUCH__EMAIL__SMTP__HOST", "127.0.0.1")
            .env("VOUCH__EMAIL__SMTP__PORT", smtp_port.to_string())
            .env("VOUCH__EMAIL__SMTP__TLS", "none")
            // Small claims polled often: many claim → send → record cycles are in flight.
            .env("VOUCH__EMAIL__POLL_INTERVAL_MS", "20")
            .env("VOUCH__EMAIL__BATCH_SIZE", "2")
            .env("VOUCH__EMAIL__RETRY_BASE_MS", "50")
            .env("VOUCH__EMAIL__RETRY_MAX_SECS", "1")
            .env("VOUCH__EMAIL__LEASE_SECS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the vouch binary starts");
        Service { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("vouch exited during start-up: {status}");
            }
            if let Ok(res) = client.get(format!("{}/readyz", self.base)).send().await {
                if res.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "vouch not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no draining, no chance to finish anything.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
enum Request {
    Complete(String),
    Enrol(String),
    CreateBatch,
}

async fn send(client: &reqwest::Client, base: &str, team: &(String, String), request: &Request) -> Option<StatusCode> {
    let (staff, finance) = team;
    let req = match request {
        Request::Complete(id) => client
            .post(format!("{base}/v1/referrals/{id}/complete"))
            .bearer_auth(staff)
            .json(&json!({ "completed_on": today() })),
        Request::Enrol(email) => client.post(format!("{base}/v1/ambassadors")).bearer_auth(staff).json(&json!({
            "name": "Crash Test", "email": email,
            "payout_method": { "type": "paypal", "email": format!("pp.{email}") } })),
        Request::CreateBatch => client.post(format!("{base}/v1/payouts")).bearer_auth(finance),
    };
    req.send().await.ok().map(|r| r.status())
}

/// Cancels the draft batch, if there is one, so the next round can create a batch again.
async fn cancel_draft(client: &reqwest::Client, base: &str, finance: &str) {
    let list: Value = client
        .get(format!("{base}/v1/payouts?status=draft"))
        .bearer_auth(finance)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for batch in list["items"].as_array().unwrap() {
        let id = batch["id"].as_str().unwrap();
        let res = client
            .post(format!("{base}/v1/payouts/{id}/cancel"))
            .bearer_auth(finance)
            .json(&json!({ "reason": "crash test: the file was never uploaded" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// Enrols paid ambassadors and puts `n` referrals in treatment; returns their ids.
async fn referrals_in_treatment(app: &TestApp, team: &Team, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    for i in 0..3 {
        codes.push(app.paid_ambassador(&team.staff, &format!("Sender {i}")).await.1);
    }
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.referral_in_treatment(&team.staff, &codes[i % codes.len()], &format!("Client{i}"), today()).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_batches_completions_and_mail_loses_nothing_and_leaves_nothing_half_written() {
    let app = spawn_app().await;
    let team = app.team().await;
    // Rewards payable at once and small enough to batch, so batches race the completions.
    app.set_program(json!({ "holding_days": 0, "min_payout_minor": 1000 })).await;
    let pending = referrals_in_treatment(&app, &team, ROUNDS * COMPLETIONS_PER_ROUND).await;
    app.delivered().await;
    let mut conn = app.pool.get().unwrap();
    let mails_before: BTreeSet<String> =
        email_outbox::table.select(email_outbox::id).load::<String>(&mut conn).unwrap().into_iter().collect();
    drop(conn);
    // From here on only the child process touches the data.
    let mut app = app;
    app.stop().await;

    let smtp = SmtpServer::start();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let keys = (team.staff.clone(), team.finance.clone());
    let mut acknowledged: Vec<(Request, StatusCode)> = Vec::new();
    let mut all_requests = Vec::new();
    for round in 0..ROUNDS {
        let mut service = Service::start(&app, smtp.port);
        service.wait_ready(&client).await;
        cancel_draft(&client, &service.base, &team.finance).await;
        let mut burst: Vec<Request> = pending[round * COMPLETIONS_PER_ROUND..(round + 1) * COMPLETIONS_PER_ROUND]
            .iter()
            .map(|id| Request::Complete(id.clone()))
            .collect();
        burst.extend((0..ENROLMENTS_PER_ROUND).map(|i| Request::Enrol(format!("crash{round}.{i}@example.com"))));
        burst.insert(2, Request::CreateBatch);
        burst.push(Request::CreateBatch);
        let tasks: Vec<_> = burst
            .into_iter()
            .map(|request| {
                let (client, base, keys) = (client.clone(), service.base.clone(), keys.clone());
                tokio::spawn(async move {
                    let status = send(&client, &base, &keys, &request).await;
                    (request, status)
                })
            })
            .collect();
        // Somewhere in the middle of the burst (and of the mail it queues).
        let delay = rand::thread_rng().gen_range(5..200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        service.kill_9();
        let mut answered = 0;
        for task in tasks {
            let (request, status) = task.await.unwrap();
            if let Some(status) = status {
                assert!(!status.is_server_error(), "{request:?} answered {status} before the kill");
                acknowledged.push((request, status));
                answered += 1;
            }
        }
        eprintln!("round {round}: killed after {delay} ms, {answered} answered");
        all_requests
            .extend(pending[round * COMPLETIONS_PER_ROUND..(round + 1) * COMPLETIONS_PER_ROUND].iter().cloned());
    }

    // Restarted: the client retries what it never heard back about, and mail drains.
    let mut service = Service::start(&app, smtp.port);
    service.wait_ready(&client).await;
    for id in &all_requests {
        let status = send(&client, &service.base, &keys, &Request::Complete(id.clone())).await.unwrap();
        assert!(status == StatusCode::OK || status == StatusCode::CONFLICT, "retrying {id}: {status}");
    }
    for round in 0..ROUNDS {
        for i in 0..ENROLMENTS_PER_ROUND {
            let status =
                send(&client, &service.base, &keys, &Request::Enrol(format!("crash{round}.{i}@example.com"))).await;
            let status = status.unwrap();
            assert!(status == StatusCode::CREATED || status == StatusCode::CONFLICT, "{status}");
        }
    }
    wait_for_outbox(&app).await;
    service.kill_9();

    let mut conn = app.pool.get().unwrap();
    // Acknowledged work survived the kills.
    for (request, status) in &acknowledged {
        match (request, *status) {
            (Request::Complete(id), StatusCode::OK) => {
                let status: String = referrals::table.find(id).select(referrals::status).first(&mut conn).unwrap();
                assert_eq!(status, "completed", "acknowledged completion of {id} lost");
            }
            (Request::Enrol(email), StatusCode::CREATED) => {
                let n: i64 =
                    ambassadors::table.filter(ambassadors::email.eq(email)).count().get_result(&mut conn).unwrap();
                assert_eq!(n, 1, "acknowledged enrolment of {email} lost");
            }
            _ => {}
        }
    }
    // Every completion is whole: status, one audit row, one earned reward (with its mail).
    for id in &all_requests {
        let status: String = referrals::table.find(id).select(referrals::status).first(&mut conn).unwrap();
        assert_eq!(status, "completed");
        let audits: i64 = audit_events::table
            .filter(audit_events::entity_id.eq(id))
            .filter(audit_events::action.eq("referral.completed"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(audits, 1, "referral {id}");
        let earned: i64 = rewards::table
            .filter(rewards::referral_id.eq(id))
            .filter(rewards::kind.eq("earned"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(earned, 1, "referral {id}");
    }
    // Each enrolment exactly once.
    let enrolled: i64 =
        ambassadors::table.filter(ambassadors::email.like("crash%")).count().get_result(&mut conn).unwrap();
    assert_eq!(enrolled, (ROUNDS * ENROLMENTS_PER_ROUND) as i64);
    // Every batch is whole: lines that add up to its total, never an empty one.
    let batches: Vec<(String, String, i64)> =
        payouts::table.select((payouts::id, payouts::status, payouts::total_minor)).load(&mut conn).unwrap();
    for (id, status, total) in &batches {
        let lines: i64 =
            payout_lines::table.filter(payout_lines::payout_id.eq(id)).count().get_result(&mut conn).unwrap();
        assert!(lines > 0 && (*total > 0 || status == "cancelled"), "batch {id} ({status}) has {lines} lines");
    }
    assert!(batches.iter().filter(|b| b.1 == "draft").count() <= 1);
    drop(conn);
    app.assert_ledger_consistent();

    // No e-mail lost: every one queued is sent, and the SMTP server has each.
    let mut conn = app.pool.get().unwrap();
    let rows: Vec<(String, String)> =
        email_outbox::table.select((email_outbox::id, email_outbox::status)).load(&mut conn).unwrap();
    let received: BTreeMap<String, usize> = smtp.received().iter().fold(BTreeMap::new(), |mut m, r| {
        let id = crate::mail::parse(&r.data).message_id;
        *m.entry(id).or_default() += 1;
        m
    });
    let mut new_mails = 0;
    for (id, status) in rows.iter().filter(|(id, _)| !mails_before.contains(id)) {
        new_mails += 1;
        assert_eq!(status, "sent", "e-mail {id}");
        assert!(received.keys().any(|m| m.contains(id.as_str())), "e-mail {id} never reached the SMTP server");
    }
    // Welcome e-mails for the enrolments and reward notices for the completions at least.
    assert!(new_mails >= ROUNDS * (ENROLMENTS_PER_ROUND + COMPLETIONS_PER_ROUND), "{new_mails} e-mails");
}

async fn wait_for_outbox(app: &TestApp) {
    let started = Instant::now();
    loop {
        let mut conn = app.pool.get().unwrap();
        let open: i64 =
            email_outbox::table.filter(email_outbox::status.ne("sent")).count().get_result(&mut conn).unwrap();
        if open == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{open} e-mails still not sent after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
