//! The service heals itself: connections killed by a database restart or failover are
//! replaced, `/readyz` tells the truth during an outage, and a panic inside a transaction
//! never leaves an open transaction in the pool.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// The PostgreSQL server the tests run on, when they run on PostgreSQL.
fn pg_admin_url() -> Option<String> {
    crate::helpers::test_postgres_url()
}

/// The name of this test's PostgreSQL database (the last segment of its URL).
fn pg_database(app: &TestApp) -> String {
    let url = app.settings.database.url.split('?').next().unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

/// What a PostgreSQL restart or failover does to the service: every one of its server
/// connections is terminated. Returns how many were.
fn terminate_connections(admin_url: &str, database: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Terminated {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut admin = PgConnection::establish(admin_url).unwrap();
    diesel::sql_query(
        "SELECT COUNT(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind::<diesel::sql_types::Text, _>(database)
    .get_result::<Terminated>(&mut admin)
    .unwrap()
    .n
}

fn allow_connections(admin_url: &str, database: &str, allow: bool) {
    let mut admin = PgConnection::establish(admin_url).unwrap();
    diesel::sql_query(format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allow}")).execute(&mut admin).unwrap();
}

fn quick_timeouts(s: &mut vouch::config::Settings) {
    s.database.pool_size = 4;
    s.database.connect_timeout_secs = 1;
}

/// Sends `GET path` until it answers 200: every answer before that must be a 503
/// `service-unavailable` problem (never a 500). Returns how many 503s came first.
async fn until_served(app: &TestApp, path: &str, key: &str, max_tries: usize) -> usize {
    for attempt in 0..max_tries {
        let res = app.get(path, key).await;
        if res.status() == StatusCode::OK {
            return attempt;
        }
        assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "service-unavailable").await;
    }
    panic!("{path} still not served after {max_tries} tries");
}

#[tokio::test]
async fn requests_are_served_again_right_after_the_database_kills_every_connection() {
    let app = spawn_app_with(quick_timeouts).await;
    let staff = app.key("staff").await;
    app.enrol_named(&staff, "Before Outage").await;
    for _ in 0..8 {
        assert_eq!(app.get("/v1/ambassadors", &staff).await.status(), StatusCode::OK);
    }
    // SQLite has no server to restart and its connections cannot be killed from outside: on
    // SQLite the requests below prove only that nothing else broke (the outage SQLite can
    // have, the database locked by another process, is the readiness test below).
    if let Some(admin_url) = pg_admin_url() {
        let killed = terminate_connections(&admin_url, &pg_database(&app));
        assert!(killed >= 1, "the service had open connections to kill");
    }
    let failures = until_served(&app, "/v1/ambassadors", &staff, 3).await;
    assert!(failures <= 2, "{failures} failures before the first success");
    // From then on everything is served, reads and writes alike, on every pooled connection.
    for i in 0..12 {
        let res = app.get("/v1/ambassadors", &staff).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i} after recovery");
    }
    let amb = app.enrol_named(&staff, "After Outage").await;
    let list: Value = app.get("/v1/ambassadors", &staff).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/readyz", &staff).await.status(), StatusCode::OK);
    assert!(amb["id"].is_string());
}

#[tokio::test]
async fn readyz_fails_while_the_database_is_down_and_recovers_after() {
    let app = spawn_app_with(quick_timeouts).await;
    let staff = app.key("staff").await;
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    let readyz = || async { app.client.get(app.url("/readyz")).send().await.unwrap() };

    let lock = match pg_admin_url() {
        Some(admin_url) => {
            // The server refuses new connections and has dropped the old ones.
            let db = pg_database(&app);
            allow_connections(&admin_url, &db, false);
            terminate_connections(&admin_url, &db);
            None
        }
        None => {
            // Another process holds the SQLite database locked (a stuck `sqlite3` shell in a
            // transaction, a backup tool): nothing can be recorded until it lets go.
            let path = app.settings.database.url.strip_prefix("sqlite://").unwrap().to_owned();
            let mut conn = SqliteConnection::establish(&path).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                "PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE; UPDATE api_keys SET name = name;",
            )
            .unwrap();
            Some(conn)
        }
    };
    // Every readiness check during the outage says so (on SQLite after the busy timeout, so
    // only one check there).
    let checks = if pg_admin_url().is_some() { 3 } else { 1 };
    for _ in 0..checks {
        let started = Instant::now();
        let body = assert_problem(readyz().await, StatusCode::SERVICE_UNAVAILABLE, "service-unavailable").await;
        assert!(started.elapsed() < Duration::from_secs(15), "{body}");
    }
    // A state change fails the same clean way meanwhile, and records nothing.
    let res = app.post("/v1/ambassadors", &staff, &json!({ "name": "Lost", "email": "lost@example.com" })).await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "service-unavailable").await;

    match (pg_admin_url(), lock) {
        (Some(admin_url), _) => allow_connections(&admin_url, &pg_database(&app), true),
        (None, Some(conn)) => drop(conn),
        (None, None) => unreachable!(),
    }
    let mut ready = false;
    for _ in 0..10 {
        if readyz().await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "/readyz did not recover");
    until_served(&app, "/v1/ambassadors", &staff, 3).await;
    let res = app.post("/v1/ambassadors", &staff, &json!({ "name": "Back", "email": "back@example.com" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let list: Value = app.get("/v1/ambassadors", &staff).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_inside_a_transaction_never_leaves_an_open_transaction_in_the_pool() {
    use vouch::db::schema::api_keys;
    // One connection: if the panicked one went back to the pool, every later request would
    // run inside its open transaction (and see its uncommitted write).
    let app = spawn_app_with(|s| s.database.pool_size = 1).await;
    let pool = app.pool.clone();
    // The same write helper and pool every request uses, on a blocking thread like theirs.
    let outcome = std::thread::spawn(move || {
        let mut conn = pool.get().unwrap();
        vouch::db::write_tx(&mut conn, |c| -> Result<(), diesel::result::Error> {
            diesel::update(api_keys::table).set(api_keys::name.eq("written by a request that panicked")).execute(c)?;
            panic!("a bug inside a transaction");
        })
    })
    .join();
    assert!(outcome.is_err(), "the closure panicked");

    let started = Instant::now();
    let list: Value = app.get("/v1/api-keys", &app.admin_key).await.json().await.unwrap();
    assert_eq!(list["items"][0]["name"], "initial admin", "the panicked write was rolled back: {list}");
    // Writes go through at once: no transaction is left holding the write lock.
    let res = app.post("/v1/api-keys", &app.admin_key, &json!({ "name": "after", "role": "staff" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let mut conn = app.pool.get().unwrap();
    let names: Vec<String> = api_keys::table.select(api_keys::name).load(&mut conn).unwrap();
    assert!(!names.iter().any(|n| n.contains("panicked")), "{names:?}");
}
