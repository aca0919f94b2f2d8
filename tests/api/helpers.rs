//! `spawn_app()` and story-style helpers shared by every test.

use std::path::PathBuf;

use diesel::prelude::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use vouch::config::Settings;
use vouch::db::schema;
use vouch::db::DbPool;
use vouch::startup::{Application, INITIAL_ADMIN_KEY_FILE};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where one test's data lives; removed (or dropped) when the test ends.
enum TestDb {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

pub struct TestApp {
    pub address: String,
    pub pool: DbPool,
    pub admin_key: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    pub settings: Settings,
    dir: PathBuf,
    db: TestDb,
    handle: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        // Whatever the test did, the ambassadors' running totals (kept by triggers) must
        // match a count from scratch: every test checks every write path it took. Not while
        // a failed test unwinds, nor when the test left the database unreachable.
        if !std::thread::panicking() {
            if let Ok(mut conn) = self.pool.get() {
                let wrong = vouch::store::tallies::recount_mismatches(&mut conn).expect("recounting the tallies");
                assert!(
                    wrong.is_empty(),
                    "tallies that differ from a recount (ambassador, tally, kept, counted): {wrong:?}"
                );
            }
        }
        if let TestDb::Postgres { admin_url, name } = &self.db {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces the database name in a PostgreSQL URL.
/// The PostgreSQL server the suite runs on (`VOUCH_TEST_DATABASE_URL`), if it runs on one,
/// without TLS unless the URL asks for it (`sslmode=…`): the test process exits while test
/// servers' threads still hold connections, and OpenSSL's clean-up at exit under a live TLS
/// connection can abort the process (`free(): invalid pointer`) after every test has passed.
pub fn test_postgres_url() -> Option<String> {
    let url = std::env::var("VOUCH_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())?;
    Some(match (url.contains("sslmode="), url.contains('?')) {
        (true, _) => url,
        (false, true) => format!("{url}&sslmode=disable"),
        (false, false) => format!("{url}?sslmode=disable"),
    })
}

pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("vouch-test-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = Settings::defaults();
    settings.data_dir = dir.join("data");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.shutdown_timeout_secs = 1;
    settings.database.pool_size = 4;
    settings.rate_limit.public_per_minute = 10_000;
    // The mail worker polls often and retries quickly, so tests see mail within milliseconds.
    settings.email.poll_interval_ms = 50;
    settings.email.retry_base_ms = 50;
    settings.email.retry_max_secs = 1;
    let db = match test_postgres_url() {
        Some(admin_url) => {
            let name = format!("vouch_test_{id}");
            let mut conn = PgConnection::establish(&admin_url)
                .unwrap_or_else(|e| panic!("VOUCH_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
            diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).expect("create test database");
            settings.database.url = with_database(&admin_url, &name);
            TestDb::Postgres { admin_url, name }
        }
        None => {
            settings.database.url = format!("sqlite://{}", dir.join("vouch.db").display());
            TestDb::Sqlite
        }
    };
    customize(&mut settings);
    let app = Application::build(settings.clone()).expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool();
    let handle = app.handle();
    let running = Some(tokio::spawn(app.run_until_stopped()));
    let admin_key = std::fs::read_to_string(settings.data_dir.join(INITIAL_ADMIN_KEY_FILE))
        .expect("initial admin key written")
        .trim()
        .to_owned();
    TestApp {
        address,
        pool,
        admin_key,
        data_dir: settings.data_dir.clone(),
        client: reqwest::Client::new(),
        settings,
        dir,
        db,
        handle,
        running,
    }
}

/// Another instance of the app on the same database (scale-out); stopped when dropped.
pub struct Instance {
    pub address: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Row counts of every table, to prove a refused request changed nothing.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Counts {
    pub api_keys: i64,
    pub ambassadors: i64,
    pub codes: i64,
    pub audit: i64,
    pub referrals: i64,
    pub sessions: i64,
    pub outbox: i64,
}

impl TestApp {
    /// Stops the app gracefully (requests drained, the mail worker finished) and starts it
    /// again on the same database and data folder, with `customize` applied to its settings.
    pub async fn restart(&mut self, customize: impl FnOnce(&mut Settings)) {
        self.stop().await;
        customize(&mut self.settings);
        let app = Application::build(self.settings.clone()).expect("application builds again");
        self.address = format!("http://127.0.0.1:{}", app.port());
        self.pool = app.pool();
        self.handle = app.handle();
        self.running = Some(tokio::spawn(app.run_until_stopped()));
    }

    /// Stops the app gracefully and waits until its mail worker has finished.
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            running.await.expect("server task").expect("server ran");
        }
    }

    /// Starts a second instance on the same database, with the same settings.
    pub fn another_instance(&self) -> Instance {
        let app = Application::build(self.settings.clone()).expect("second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Instance { address, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn request(&self, method: Method, path: &str, key: Option<&str>, body: Option<&Value>) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.request(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(key), Some(body)).await
    }

    /// A new API key with this role, created through the API by the initial admin.
    pub async fn key(&self, role: &str) -> String {
        let res =
            self.post("/v1/api-keys", &self.admin_key, &json!({ "name": format!("{role} key"), "role": role })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned()
    }

    /// Staff enrol an ambassador; asserts 201 and returns the body.
    pub async fn enrol(&self, staff_key: &str, body: Value) -> Value {
        let res = self.post("/v1/ambassadors", staff_key, &body).await;
        let status = res.status();
        let body = res.json::<Value>().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "enrol failed: {body}");
        body
    }

    pub async fn enrol_named(&self, staff_key: &str, name: &str) -> Value {
        let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
        self.enrol(staff_key, json!({ "name": name, "email": email })).await
    }

    pub fn counts(&self) -> Counts {
        let mut conn = self.pool.get().unwrap();
        Counts {
            api_keys: schema::api_keys::table.count().get_result(&mut conn).unwrap(),
            ambassadors: schema::ambassadors::table.count().get_result(&mut conn).unwrap(),
            codes: schema::referral_codes::table.count().get_result(&mut conn).unwrap(),
            audit: schema::audit_events::table.count().get_result(&mut conn).unwrap(),
            referrals: schema::referrals::table.count().get_result(&mut conn).unwrap(),
            sessions: schema::referral_sessions::table.count().get_result(&mut conn).unwrap(),
            outbox: schema::email_outbox::table.count().get_result(&mut conn).unwrap(),
        }
    }

    /// Audit actions recorded for an entity, oldest first.
    pub fn audit_actions(&self, entity_id: &str) -> Vec<String> {
        let mut conn = self.pool.get().unwrap();
        schema::audit_events::table
            .filter(schema::audit_events::entity_id.eq(entity_id))
            .order(schema::audit_events::id.asc())
            .select(schema::audit_events::action)
            .load(&mut conn)
            .unwrap()
    }
}

/// Asserts a problem+json response with this status and `type`; returns the body.
/// SQLite's `EXPLAIN QUERY PLAN` of `query`, one line per step (`SEARCH … USING INDEX …`).
pub fn sqlite_plan(conn: &mut diesel::SqliteConnection, query: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let plan: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}")).load(conn).unwrap();
    plan.into_iter().map(|s| s.detail).collect()
}

pub async fn assert_problem(res: Response, status: StatusCode, kind: &str) -> Value {
    let got = res.status();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(got, status, "unexpected status; body: {body}");
    assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON), "body: {body}");
    assert_eq!(body["type"], kind, "body: {body}");
    assert_eq!(body["status"], status.as_u16(), "body: {body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "body: {body}");
    body
}

/// The `field`s named in a validation problem.
pub fn problem_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().map(|f| f["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

impl TestApp {
    /// Login links e-mailed to this address, newest first (read from the delivered e-mails).
    pub async fn login_links(&self, email: &str) -> Vec<String> {
        let mut links: Vec<String> =
            self.mail_to(email).await.iter().filter_map(|m| m.link_containing("/portal/login?token=")).collect();
        links.reverse();
        links
    }

    /// An ambassador signs in through the e-mailed link; returns their session token.
    pub async fn portal_session(&self, email: &str) -> String {
        let res = self.client.post(self.url("/v1/portal/login")).json(&json!({ "email": email })).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let link = self.login_links(email).await.into_iter().next().expect("a login link was e-mailed");
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let res =
            self.client.post(self.url("/v1/portal/sessions")).json(&json!({ "token": token })).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    pub fn outbox_count(&self) -> i64 {
        let mut conn = self.pool.get().unwrap();
        schema::email_outbox::table.count().get_result(&mut conn).unwrap()
    }
}
