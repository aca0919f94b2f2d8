use reqwest::StatusCode;
use serde_json::{json, Value};

use diesel::prelude::*;
use vouch::db::schema::{audit_events, idempotency_keys as ik, portal_sessions, rewards};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

async fn post_with_key(app: &crate::helpers::TestApp, api_key: &str, idem: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/ambassadors"))
        .bearer_auth(api_key)
        .header("idempotency-key", idem)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_post_replays_the_first_response() {
    let app = spawn_app().await;
    let body = json!({ "name": "Once", "email": "once@example.com" });
    let first = post_with_key(&app, &app.admin_key, "retry-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = post_with_key(&app, &app.admin_key, "retry-1", &body).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(app.counts().ambassadors, 1);
    assert_eq!(app.counts().codes, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    post_with_key(&app, &app.admin_key, "k", &json!({ "name": "A", "email": "a@example.com" })).await;
    let before = app.counts();
    let res = post_with_key(&app, &app.admin_key, "k", &json!({ "name": "B", "email": "b@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused").await;
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn refusals_are_replayed_too() {
    let app = spawn_app().await;
    let body = json!({ "name": "", "email": "a@example.com" });
    assert_eq!(post_with_key(&app, &app.admin_key, "bad", &body).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = post_with_key(&app, &app.admin_key, "bad", &body).await;
    assert_eq!(res.headers().get("idempotent-replayed").unwrap(), "true");
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
}

#[tokio::test]
async fn concurrent_retries_create_one_ambassador() {
    let app = spawn_app().await;
    let body = json!({ "name": "Race", "email": "race@example.com" });
    let (a, b) = tokio::join!(
        post_with_key(&app, &app.admin_key, "same", &body),
        post_with_key(&app, &app.admin_key, "same", &body)
    );
    // Exactly one ran; the other was either replayed (same body) or told to wait.
    let mut fresh = Vec::new();
    let mut replayed = Vec::new();
    for res in [a, b] {
        let status = res.status();
        let was_replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        match status {
            StatusCode::CREATED if was_replayed => replayed.push(res.json::<Value>().await.unwrap()),
            StatusCode::CREATED => fresh.push(res.json::<Value>().await.unwrap()),
            _ => {
                assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
            }
        }
    }
    assert_eq!(fresh.len(), 1, "exactly one request ran: {fresh:?}");
    assert!(replayed.iter().all(|r| *r == fresh[0]), "a replay is the first response");
    let again = post_with_key(&app, &app.admin_key, "same", &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), fresh[0]);
    assert_eq!(app.counts().ambassadors, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let one = app.key("staff").await;
    let two = app.key("staff").await;
    let res = post_with_key(&app, &one, "shared", &json!({ "name": "A", "email": "a@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = post_with_key(&app, &two, "shared", &json!({ "name": "B", "email": "b@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.counts().ambassadors, 2);
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(300);
    let res = post_with_key(&app, &app.admin_key, &long, &json!({ "name": "A", "email": "a@example.com" })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(app.counts().ambassadors, 0);
}

async fn post_keyed(app: &TestApp, path: &str, api_key: Option<&str>, idem: &str, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).header("idempotency-key", idem).json(body);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

fn replayed(res: &reqwest::Response) -> bool {
    res.headers().get("idempotent-replayed").is_some_and(|v| v == "true")
}

/// Every stored reply body, to prove what is (not) kept at rest.
fn stored_bodies(app: &TestApp) -> Vec<String> {
    let mut conn = app.pool.get().unwrap();
    ik::table.select(ik::response_body).load::<Option<String>>(&mut conn).unwrap().into_iter().flatten().collect()
}

fn is_postgres(app: &TestApp) -> bool {
    app.settings.database.url.starts_with("postgres")
}

/// Makes the database refuse `event` (INSERT/UPDATE) on `table`, as a full disk or a dropped
/// connection would, until [`mend`].
fn break_writes(app: &TestApp, table: &str, event: &str) {
    let mut conn = app.pool.get().unwrap();
    let sql = if is_postgres(app) {
        format!(
            "CREATE OR REPLACE FUNCTION vouch_test_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'simulated storage failure'; END $$; \
             CREATE TRIGGER test_break_{table} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION vouch_test_fail();"
        )
    } else {
        format!(
            "CREATE TRIGGER test_break_{table} BEFORE {event} ON {table} \
             BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END;"
        )
    };
    diesel::connection::SimpleConnection::batch_execute(&mut *conn, &sql).unwrap();
}

fn mend(app: &TestApp, table: &str) {
    let mut conn = app.pool.get().unwrap();
    let sql = if is_postgres(app) {
        format!("DROP TRIGGER test_break_{table} ON {table}")
    } else {
        format!("DROP TRIGGER test_break_{table}")
    };
    diesel::connection::SimpleConnection::batch_execute(&mut *conn, &sql).unwrap();
}

/// Turns every stored reply back into an open claim: what a process that died between its
/// commit and storing the reply leaves behind.
fn forget_stored_replies(app: &TestApp) {
    let mut conn = app.pool.get().unwrap();
    diesel::update(ik::table)
        .set((ik::status_code.eq(None::<i32>), ik::response_body.eq(None::<String>)))
        .execute(&mut conn)
        .unwrap();
}

/// Moves every open claim back in time past the point where it counts as abandoned.
fn age_open_claims(app: &TestApp) {
    let mut conn = app.pool.get().unwrap();
    let long_ago = chrono::Utc::now().naive_utc() - chrono::TimeDelta::minutes(3);
    diesel::update(ik::table.filter(ik::status_code.is_null()))
        .set(ik::created_at.eq(long_ago))
        .execute(&mut conn)
        .unwrap();
}

#[tokio::test]
async fn a_new_api_keys_secret_is_never_stored_nor_replayed() {
    let app = spawn_app().await;
    let body = json!({ "name": "front desk", "role": "staff" });
    let first = post_keyed(&app, "/v1/api-keys", Some(&app.admin_key), "key-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!replayed(&first));
    let first: Value = first.json().await.unwrap();
    let secret = first["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("vk_live_"));
    let keys_before = app.counts().api_keys;

    let again = post_keyed(&app, "/v1/api-keys", Some(&app.admin_key), "key-1", &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(replayed(&again));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "the same key, not a second one");
    assert_eq!(again["secret"], Value::Null);
    assert!(again["secret_withheld"].as_str().unwrap().contains("shown once"), "{again}");
    assert_eq!(app.counts().api_keys, keys_before, "no second key minted");
    // Nothing at rest holds the secret, and the key still works.
    assert!(stored_bodies(&app).iter().all(|b| !b.contains(&secret)));
    assert_eq!(app.get("/v1/referrals", &secret).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_portal_session_token_is_never_stored_nor_replayed() {
    let app = spawn_app().await;
    app.enrol_named(&app.admin_key, "Tess Token").await;
    let res = app
        .client
        .post(app.url("/v1/portal/login"))
        .json(&json!({ "email": "tess.token@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let link = app.login_links("tess.token@example.com").await.remove(0);
    let body = json!({ "token": link.split("token=").nth(1).unwrap() });
    let first = post_keyed(&app, "/v1/portal/sessions", None, "session-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let token = first["token"].as_str().unwrap().to_owned();

    let again = post_keyed(&app, "/v1/portal/sessions", None, "session-1", &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(replayed(&again));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["token"], Value::Null);
    assert!(again["token_withheld"].is_string(), "{again}");
    assert_eq!(again["expires_at"], first["expires_at"]);
    let mut conn = app.pool.get().unwrap();
    let sessions: i64 = portal_sessions::table.count().get_result(&mut conn).unwrap();
    assert_eq!(sessions, 1, "a replay never opens a second session");
    assert!(stored_bodies(&app).iter().all(|b| !b.contains(&token)));
    assert_eq!(app.get("/v1/me", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn erasing_a_client_scrubs_the_stored_replies_about_them() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    app.enrol(&staff, json!({ "name": "Eve", "email": "eve@example.com", "code": "ERASE1" })).await;
    let create = json!({ "code": "ERASE1", "first_name": "Maria", "last_name": "Garcia",
                         "email": "maria.erased@example.org", "phone": "+1 917 555 0142" });
    let res = post_keyed(&app, "/v1/referrals", Some(&staff), "ref-1", &create).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let session = json!({ "note": "Maria said her sister may come too" });
    let res = post_keyed(&app, &format!("/v1/referrals/{id}/sessions"), Some(&staff), "ses-1", &session).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Before erasure, a replay is the stored response.
    let res = post_keyed(&app, "/v1/referrals", Some(&staff), "ref-1", &create).await;
    assert!(replayed(&res));
    assert_eq!(res.json::<Value>().await.unwrap()["client_email"], "maria.erased@example.org");

    let res = app
        .request(reqwest::Method::DELETE, &format!("/v1/referrals/{id}/personal-data"), Some(&app.admin_key), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let before = app.counts();
    for (path, key, body) in
        [("/v1/referrals".to_owned(), "ref-1", &create), (format!("/v1/referrals/{id}/sessions"), "ses-1", &session)]
    {
        let res = post_keyed(&app, &path, Some(&staff), key, body).await;
        assert!(replayed(&res), "{path}: still answered from the stored reply, not run again");
        let raw = assert_problem(res, StatusCode::GONE, "personal-data-erased").await.to_string();
        assert!(!raw.contains("Maria") && !raw.contains("maria"), "{raw}");
    }
    assert_eq!(app.counts(), before, "nothing ran again");
    for stored in stored_bodies(&app) {
        for secret in ["Maria", "Garcia", "maria.erased", "9175550142", "sister"] {
            assert!(!stored.contains(secret), "{secret} kept at rest in {stored}");
        }
    }
}

#[tokio::test]
async fn server_errors_are_not_stored_so_the_retry_runs() {
    let app = spawn_app().await;
    let body = json!({ "name": "Retry Later", "email": "retry.later@example.com" });
    break_writes(&app, "audit_events", "INSERT");
    let res = post_with_key(&app, &app.admin_key, "flaky", &body).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.counts().ambassadors, 0, "the failed request changed nothing");
    assert!(stored_bodies(&app).is_empty(), "a 5xx is not kept");
    mend(&app, "audit_events");

    let res = post_with_key(&app, &app.admin_key, "flaky", &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(!replayed(&res), "the retry ran");
    assert_eq!(app.counts().ambassadors, 1);
}

#[tokio::test]
async fn a_reply_that_could_not_be_stored_never_runs_its_request_twice() {
    let app = spawn_app().await;
    let finance = app.key("finance").await;
    let amb = app.enrol_named(&app.admin_key, "Ada Adjusted").await;
    let body = json!({ "ambassador_id": amb["id"], "amount_minor": 2500, "reason": "Launch bonus" });
    let path = "/v1/rewards/adjustments";

    // The adjustment commits, but its reply never gets stored (the process died right after
    // the commit, or the database stayed away longer than the background retries).
    let first = post_keyed(&app, path, Some(&finance), "bonus-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let request_id = first.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    forget_stored_replies(&app);

    // A prompt retry waits for the claim…
    let res = post_keyed(&app, path, Some(&finance), "bonus-1", &body).await;
    assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
    // …and once the claim counts as abandoned, the audit trail shows the request was carried
    // out: a clear problem, never a second adjustment.
    age_open_claims(&app);
    for _ in 0..2 {
        let res = post_keyed(&app, path, Some(&finance), "bonus-1", &body).await;
        let problem = assert_problem(res, StatusCode::CONFLICT, "idempotency-reply-lost").await;
        assert_eq!(problem["request_id"], request_id.as_str());
    }
    let mut conn = app.pool.get().unwrap();
    let adjustments: i64 = rewards::table.filter(rewards::kind.eq("adjustment")).count().get_result(&mut conn).unwrap();
    assert_eq!(adjustments, 1, "the adjustment ran exactly once");
    let audited: i64 =
        audit_events::table.filter(audit_events::request_id.eq(&request_id)).count().get_result(&mut conn).unwrap();
    assert!(audited >= 1);
}

#[tokio::test]
async fn a_reply_the_database_could_not_take_is_stored_once_it_is_back() {
    let app = spawn_app().await;
    let finance = app.key("finance").await;
    let amb = app.enrol_named(&app.admin_key, "Bea Backlog").await;
    let body = json!({ "ambassador_id": amb["id"], "amount_minor": 1500, "reason": "Spring bonus" });
    let path = "/v1/rewards/adjustments";

    // The adjustment commits; storing its reply fails while the table refuses writes.
    break_writes(&app, "idempotency_keys", "UPDATE");
    let first = post_keyed(&app, path, Some(&finance), "bonus-2", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED, "the request itself succeeded");
    let first: Value = first.json().await.unwrap();
    let res = post_keyed(&app, path, Some(&finance), "bonus-2", &body).await;
    assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
    mend(&app, "idempotency_keys");

    // The reply is stored in the background as soon as the database takes it: a retry gets
    // the first reply within seconds, not a conflict until the claim is judged abandoned.
    let started = std::time::Instant::now();
    let replay = loop {
        let res = post_keyed(&app, path, Some(&finance), "bonus-2", &body).await;
        if res.status() == StatusCode::CREATED {
            break res;
        }
        assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reply was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(replayed(&replay));
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let mut conn = app.pool.get().unwrap();
    let adjustments: i64 = rewards::table.filter(rewards::kind.eq("adjustment")).count().get_result(&mut conn).unwrap();
    assert_eq!(adjustments, 1, "the adjustment ran exactly once");
}

#[tokio::test]
async fn an_abandoned_claim_that_changed_nothing_runs_on_retry() {
    let app = spawn_app().await;
    let body = json!({ "name": "Dropped", "email": "dropped@example.com" });
    // A refusal changes nothing; its reply never got stored either.
    let res =
        post_with_key(&app, &app.admin_key, "k-abandoned", &json!({ "name": "", "email": "dropped@example.com" }))
            .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    forget_stored_replies(&app);
    age_open_claims(&app);
    // The abandoned claim left no audit trail: the retry (same key, same body) runs afresh.
    let res =
        post_with_key(&app, &app.admin_key, "k-abandoned", &json!({ "name": "", "email": "dropped@example.com" }))
            .await;
    assert!(!replayed(&res));
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = post_with_key(&app, &app.admin_key, "k-other", &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn public_replies_are_scoped_by_client_address() {
    let app = spawn_app_with(|s| s.server.trust_forwarded_for = true).await;
    let apply = |from: &'static str, email: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/public/ambassador-applications"))
                .header("x-forwarded-for", from)
                .header("idempotency-key", "apply-1")
                .json(&json!({ "name": "Applicant", "email": email }))
                .send()
                .await
                .unwrap()
        }
    };
    let res = apply("203.0.113.7", "one@example.com").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(!replayed(&res));
    // Another address, the same key, another body: its own request, not a mismatch or replay.
    let res = apply("198.51.100.9", "two@example.com").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(!replayed(&res));
    // The first address retrying is replayed.
    let res = apply("203.0.113.7", "one@example.com").await;
    assert!(replayed(&res));
    assert_eq!(app.counts().ambassadors, 2);
}

#[tokio::test]
async fn anonymous_clients_cannot_fill_the_reply_table() {
    let app = spawn_app_with(|s| s.rate_limit.public_per_minute = 2).await;
    // Rate limited before the idempotency step: refused requests leave no row.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = json!({ "name": "Flood", "email": format!("flood{i}@example.com") });
        let res = post_keyed(&app, "/v1/public/ambassador-applications", None, &format!("flood-{i}"), &body).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429, 429, 429]);
    // Without credentials, other routes keep nothing either (they answer 401).
    for i in 0..3 {
        let res = post_keyed(&app, "/v1/ambassadors", None, &format!("anon-{i}"), &json!({ "name": "x" })).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let mut conn = app.pool.get().unwrap();
    let rows: i64 = ik::table.count().get_result(&mut conn).unwrap();
    assert_eq!(rows, 2, "only the two requests that ran are kept");
}

#[tokio::test]
async fn housekeeping_purges_expired_replies_links_and_sessions() {
    let app = spawn_app_with(|s| s.server.housekeeping_interval_secs = 1).await;
    let res = post_with_key(&app, &app.admin_key, "old", &json!({ "name": "Old", "email": "old@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let old_id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let res = post_with_key(&app, &app.admin_key, "new", &json!({ "name": "New", "email": "new@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let live = app.portal_session("new@example.com").await;
    let ended = app.portal_session("old@example.com").await;
    let res = app.post("/v1/portal/logout", &ended, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.audit_actions(&old_id).last().map(String::as_str), Some("portal.session_ended"));
    {
        use vouch::db::schema::portal_login_tokens as plt;
        let mut conn = app.pool.get().unwrap();
        let long_ago = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(25);
        diesel::update(ik::table.filter(ik::idem_key.eq("old")))
            .set(ik::created_at.eq(long_ago))
            .execute(&mut conn)
            .unwrap();
        // Every login link so far was used and is long expired.
        diesel::update(plt::table).set(plt::expires_at.eq(long_ago)).execute(&mut conn).unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        use vouch::db::schema::portal_login_tokens as plt;
        let mut conn = app.pool.get().unwrap();
        let keys: Vec<String> = ik::table.select(ik::idem_key).load(&mut conn).unwrap();
        let links: i64 = plt::table.count().get_result(&mut conn).unwrap();
        let sessions: i64 = portal_sessions::table.count().get_result(&mut conn).unwrap();
        if keys == ["new"] && links == 0 && sessions == 1 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "not purged: {keys:?} {links} {sessions}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/v1/me", &live).await.status(), StatusCode::OK, "live sessions stay");
}

/// On PostgreSQL a stored reply commits without waiting for the disk (the request's change,
/// and the claim inside it, still do): the statement turns `synchronous_commit` off for its own
/// transaction, and the setting never outlives it.
#[tokio::test]
async fn replies_relax_only_their_own_commit() {
    use diesel::sql_types::Text;
    use vouch::store::idempotency::{self, Claim, Reply, Request};
    let app = spawn_app().await;
    if !is_postgres(&app) {
        return;
    }
    let mut conn = app.pool.get().unwrap();
    let setting = |c: &mut vouch::db::DbConnection| -> String {
        diesel::select(diesel::dsl::sql::<Text>("current_setting('synchronous_commit')")).get_result(c).unwrap()
    };
    let req = Request { scope: "key:test", key: "relaxed-1", hash: "h1", id: "request-1" };
    let reply = Reply { status: 201, body: "{}", subject_id: None };
    for step in ["claim", "reply"] {
        conn.transaction(|c| {
            assert_eq!(setting(c), "on");
            match step {
                "claim" => {
                    assert_eq!(idempotency::claim(c, &req)?, Claim::Fresh);
                    assert_eq!(setting(c), "on", "a claim commits as the change it is part of");
                }
                _ => {
                    idempotency::complete(c, &req, &reply)?;
                    assert_eq!(setting(c), "off", "the reply relaxes the commit of its transaction");
                }
            }
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
        assert_eq!(setting(&mut conn), "on", "the {step}'s setting ended with its transaction");
    }
    let stored: (Option<i32>, Option<String>) = ik::table
        .find(("key:test", "relaxed-1"))
        .select((ik::status_code, ik::response_body))
        .first(&mut conn)
        .unwrap();
    assert_eq!(stored, (Some(201), Some("{}".into())));
    assert_eq!(idempotency::claim(&mut conn, &req).unwrap(), Claim::Replay { status: 201, body: "{}".into() });
}

/// A referral for `email` made with the code of a new ambassador, under `idem`.
async fn refer_keyed(app: &TestApp, staff: &str, code: &str, idem: &str, email: &str) -> reqwest::Response {
    let body = json!({ "code": code, "first_name": "Kim", "last_name": "Keyed", "email": email });
    post_keyed(app, "/v1/referrals", Some(staff), idem, &body).await
}

/// The claim is the first statement of the change's own transaction: it commits with the
/// change (on PostgreSQL the two rows carry the same transaction id), and a change that fails
/// takes its claim with it, so the retry runs.
#[tokio::test]
async fn the_claim_commits_with_the_change_or_not_at_all() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol_named(&app.admin_key, "Cora Claim").await;
    let code = amb["codes"][0]["code"].as_str().unwrap().to_owned();

    break_writes(&app, "audit_events", "INSERT");
    let res = refer_keyed(&app, &staff, &code, "with-change", "kim@example.com").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    mend(&app, "audit_events");
    let mut conn = app.pool.get().unwrap();
    let claims: i64 = ik::table.count().get_result(&mut conn).unwrap();
    assert_eq!(claims, 0, "the failed change took its claim with it");
    assert_eq!(app.counts().referrals, 0);

    // The retry runs. Its reply cannot be stored for now, which leaves the claim row as the
    // change's transaction wrote it.
    break_writes(&app, "idempotency_keys", "UPDATE");
    let res = refer_keyed(&app, &staff, &code, "with-change", "kim@example.com").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(!replayed(&res), "the retry ran");
    let referral_id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let status: Option<i32> = ik::table.select(ik::status_code).first(&mut conn).unwrap();
    assert_eq!(status, None, "claimed, the reply not stored yet");
    if is_postgres(&app) {
        use diesel::sql_types::Text;
        let mut xmin = |sql: &str, id: &str| -> String {
            diesel::sql_query(sql).bind::<Text, _>(id).get_result::<Xmin>(&mut conn).unwrap().xmin
        };
        let referral = xmin("SELECT xmin::text AS xmin FROM referrals WHERE id = $1", &referral_id);
        let claim = xmin("SELECT xmin::text AS xmin FROM idempotency_keys WHERE idem_key = $1", "with-change");
        assert_eq!(claim, referral, "the claim and the referral were written by one transaction");
    }
    mend(&app, "idempotency_keys");
    let started = std::time::Instant::now();
    loop {
        let res = refer_keyed(&app, &staff, &code, "with-change", "kim@example.com").await;
        if replayed(&res) {
            assert_eq!(res.json::<Value>().await.unwrap()["id"], referral_id.as_str());
            break;
        }
        assert_problem(res, StatusCode::CONFLICT, "idempotency-in-progress").await;
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reply was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.counts().referrals, 1);
}

/// A refusal changes nothing and is stored with its claim afterwards. A retry with the same key
/// runs the request's checks again, but the stored refusal holds the key, so even a retry that
/// would now succeed changes nothing and gets the refusal replayed.
#[tokio::test]
async fn a_retried_refusal_is_replayed_even_when_it_would_now_succeed() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol_named(&app.admin_key, "Dora Dup").await;
    let code = amb["codes"][0]["code"].as_str().unwrap().to_owned();
    let first = refer_keyed(&app, &staff, &code, "first", "dup@example.com").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_id = first.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let dup = refer_keyed(&app, &staff, &code, "second", "dup@example.com").await;
    let refusal = assert_problem(dup, StatusCode::CONFLICT, "duplicate-referral").await;
    // The first referral is rejected: the client could be referred again now…
    let res = app.post(&format!("/v1/referrals/{first_id}/reject"), &staff, &json!({ "reason_code": "fraud" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    // …but a retry of the refused request is its refusal, replayed, and records nothing.
    let res = refer_keyed(&app, &staff, &code, "second", "dup@example.com").await;
    assert!(replayed(&res));
    assert_eq!(assert_problem(res, StatusCode::CONFLICT, "duplicate-referral").await, refusal);
    assert_eq!(app.counts().referrals, 1);
    // A new key is a new request.
    let res = refer_keyed(&app, &staff, &code, "third", "dup@example.com").await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// Hand-written statements and diesel updates wrapped in `db::Prepared` are prepared once per
/// connection on PostgreSQL (diesel alone prepares an UPDATE anew on every call).
#[tokio::test]
async fn hot_statements_stay_prepared_on_the_connection() {
    use vouch::db::Prepared;
    use vouch::store::idempotency::{self, Reply, Request};
    let app = spawn_app().await;
    if !is_postgres(&app) {
        return;
    }
    let mut conn = app.pool.get().unwrap();
    let prepared = |c: &mut vouch::db::DbConnection, like: &str| -> i64 {
        use diesel::sql_types::Text;
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1")
            .bind::<Text, _>(like)
            .get_result::<N>(c)
            .unwrap()
            .n
    };
    for n in 0..3 {
        let (key, id) = (format!("p-{n}"), format!("request-{n}"));
        let req = Request { scope: "key:test", key: &key, hash: "h", id: &id };
        assert!(idempotency::claim_with_change(&mut conn, &req).unwrap());
        idempotency::complete(&mut conn, &req, &Reply { status: 201, body: "{}", subject_id: None }).unwrap();
        let touch = || diesel::update(ik::table.find(("key:test", key.as_str()))).set(ik::status_code.eq(202));
        Prepared(touch().returning(ik::idem_key)).load::<String>(&mut conn).unwrap();
        touch().execute(&mut conn).unwrap();
    }
    assert_eq!(prepared(&mut conn, "INSERT INTO idempotency_keys%ON CONFLICT%"), 1, "the claim");
    assert_eq!(prepared(&mut conn, "UPDATE idempotency_keys SET status_code%"), 1, "the reply");
    assert_eq!(prepared(&mut conn, "UPDATE \"idempotency_keys\"%RETURNING%"), 1, "a wrapped update");
    assert_eq!(prepared(&mut conn, "UPDATE \"idempotency_keys\"%"), 1, "diesel alone does not keep the plain one");
}

#[derive(QueryableByName)]
struct Xmin {
    #[diesel(sql_type = diesel::sql_types::Text)]
    xmin: String,
}

/// On PostgreSQL a second claim of a key whose first claim is still in an open transaction is
/// refused at once instead of waiting for that transaction (which would hold a pooled
/// connection for as long as the first request's change takes).
#[tokio::test]
async fn a_claim_never_waits_for_another_requests_transaction() {
    use vouch::store::idempotency::{self, Request};
    let app = spawn_app().await;
    if !is_postgres(&app) {
        return;
    }
    let mut first = app.pool.get().unwrap();
    let pool = app.pool.clone();
    first
        .transaction(|c| {
            let req = Request { scope: "key:test", key: "slow", hash: "h", id: "request-1" };
            assert!(idempotency::claim_with_change(c, &req)?);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut second = pool.get().unwrap();
                let req = Request { scope: "key:test", key: "slow", hash: "h", id: "request-2" };
                let _ = tx.send(idempotency::claim_with_change(&mut second, &req));
            });
            let second = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the second claim waited");
            assert!(!second.unwrap(), "the key is held by the open transaction");
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
    let holder: String = ik::table.select(ik::request_id.assume_not_null()).first(&mut first).unwrap();
    assert_eq!(holder, "request-1");
}
