//! The ambassadors' running totals (`ambassador_tallies`, kept by triggers): the detail, `/v1/me`
//! and the list read their counts and balance from them, they follow every change, a recount
//! from scratch agrees (every test checks that when its app is dropped: `helpers::TestApp`),
//! the migration fills them from an existing database, and a payout batch racing completions
//! for the same ambassador neither deadlocks nor miscounts.

use diesel::prelude::*;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::ambassador_tallies as tallies;
use vouch::db::DbConnection;
use vouch::store::tallies::recount_mismatches;

use crate::cli::vouch;
use crate::helpers::{spawn_app, TestApp};
use crate::money_support::{days_ago, today};
use crate::payouts::{create_batch, mark_paid, no_hold};

async fn detail(app: &TestApp, key: &str, id: &str) -> Value {
    let res = app.get(&format!("/v1/ambassadors/{id}"), key).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn counts(body: &Value) -> Value {
    body["referral_counts"].clone()
}

fn counts_of(registered: i64, in_treatment: i64, completed: i64, refunded: i64, rejected: i64) -> Value {
    json!({ "registered": registered, "in_treatment": in_treatment, "completed": completed,
            "refunded": refunded, "cancelled": 0, "rejected": rejected })
}

/// A share-link submission for `code`; returns its id (as staff see it in the list).
async fn submitted_by_link(app: &TestApp, code: &str, first_name: &str) -> String {
    let body = json!({ "code": code, "first_name": first_name, "last_name": "Friend",
                       "email": format!("{}@friends.example", first_name.to_lowercase()),
                       "consent_to_contact": true });
    let res = app.client.post(app.url("/v1/public/referrals")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let list: Value = app.get("/v1/referrals?status=registered", &app.admin_key).await.json().await.unwrap();
    let found = list["items"].as_array().unwrap().iter().find(|r| r["client_first_name"] == first_name);
    found.expect("the submission")["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn counts_and_balance_follow_every_change_and_come_from_the_running_totals() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb, code, email) = app.paid_ambassador(&team.staff, "Tallied").await;
    let me = app.portal_session(&email).await;

    // Completed a month ago (payable), completed today (held), in treatment, rejected, and a
    // share-link submission the ambassador does not see before the friend's first session.
    app.completed_referral(&team, &code, "Early", days_ago(30)).await;
    let (today_id, _) = app.completed_referral(&team, &code, "Recent", today()).await;
    app.referral_in_treatment(&team.staff, &code, "Ongoing", today()).await;
    let rejected = submitted_by_link(&app, &code, "Doubtful").await;
    let res =
        app.post(&format!("/v1/referrals/{rejected}/reject"), &team.staff, &json!({ "reason_code": "fraud" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let hidden = submitted_by_link(&app, &code, "Quiet").await;

    let staff_view = detail(&app, &team.staff, &amb).await;
    assert_eq!(counts(&staff_view), counts_of(1, 1, 2, 0, 1));
    let balance = &staff_view["balance"];
    assert_eq!((balance["payable_minor"].as_i64(), balance["held_minor"].as_i64()), (Some(10_000), Some(10_000)));
    assert_eq!(balance["lifetime_minor"], 20_000);
    let own: Value = app.get("/v1/me", &me).await.json().await.unwrap();
    assert_eq!(counts(&own), counts_of(0, 1, 2, 0, 0), "neither link submission is seen before a session");
    assert_eq!(own["balance"], *balance);

    // The hidden submission's first session shows it to the ambassador (in treatment).
    let res =
        app.post(&format!("/v1/referrals/{hidden}/sessions"), &team.staff, &json!({ "session_on": today() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let own: Value = app.get("/v1/me", &me).await.json().await.unwrap();
    assert_eq!(counts(&own), counts_of(0, 2, 2, 0, 0));

    // A refund before payment voids the held reward.
    let res =
        app.post(&format!("/v1/referrals/{today_id}/refund"), &team.staff, &json!({ "reason_code": "goodwill" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let staff_view = detail(&app, &team.staff, &amb).await;
    assert_eq!(counts(&staff_view), counts_of(0, 2, 1, 1, 1));
    assert_eq!(staff_view["balance"]["held_minor"], 0);
    assert_eq!(staff_view["balance"]["lifetime_minor"], 10_000);

    // Paid out: the batch moves the reward to in payout, then to paid.
    let batch = create_batch(&app, &team.finance).await;
    let balance = detail(&app, &team.staff, &amb).await["balance"].clone();
    assert_eq!((balance["payable_minor"].as_i64(), balance["in_payout_minor"].as_i64()), (Some(0), Some(10_000)));
    mark_paid(&app, &team.finance, batch["id"].as_str().unwrap()).await;
    let balance = detail(&app, &team.staff, &amb).await["balance"].clone();
    assert_eq!((balance["in_payout_minor"].as_i64(), balance["paid_minor"].as_i64()), (Some(0), Some(10_000)));
    let list: Value = app.get("/v1/ambassadors", &team.staff).await.json().await.unwrap();
    assert_eq!(counts(&list["items"][0]), counts_of(0, 2, 1, 1, 1));

    let mut conn = app.pool.get().unwrap();
    assert_eq!(recount_mismatches(&mut conn).unwrap(), vec![]);

    // The reads take the totals as they are kept: a total changed by hand shows, and the
    // recount names exactly it.
    diesel::update(tallies::table.find((&amb, "completed")))
        .set(tallies::n.eq(tallies::n + 5))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(recount_mismatches(&mut conn).unwrap(), vec![(amb.clone(), "completed".to_owned(), 6, 1)]);
    assert_eq!(counts(&detail(&app, &team.staff, &amb).await)["completed"], 6);
    diesel::update(tallies::table.find((&amb, "completed")))
        .set(tallies::n.eq(tallies::n - 5))
        .execute(&mut conn)
        .unwrap();
}

/// The version of the migration that adds `ambassador_tallies`.
const TALLIES_MIGRATION: &str = "20261210000021";

#[tokio::test]
async fn the_migration_fills_the_totals_from_an_existing_database() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let (amb, code, _) = app.paid_ambassador(&team.staff, "Before").await;
    for client in ["One", "Two", "Three"] {
        app.completed_referral(&team, &code, client, today()).await;
    }
    app.referral_in_treatment(&team.staff, &code, "Four", today()).await;
    submitted_by_link(&app, &code, "Five").await;
    create_batch(&app, &team.finance).await;
    let before = detail(&app, &team.staff, &amb).await;

    // Back to the schema before the totals (their table and triggers gone), then forward
    // again: the migration counts what is there.
    let mut conn = app.pool.get().unwrap();
    let folder = |backend: &str| {
        FileBasedMigrations::from_path(format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    // Newest first, down to and including the totals' migration.
    let mut reverted = 0;
    loop {
        let version = match &mut *conn {
            DbConnection::Postgres(pg) => pg.revert_last_migration(folder("postgres")).unwrap().to_string(),
            DbConnection::Sqlite(sqlite) => sqlite.revert_last_migration(folder("sqlite")).unwrap().to_string(),
        };
        reverted += 1;
        if version == TALLIES_MIGRATION {
            break;
        }
    }
    assert_eq!(vouch::db::run_migrations(&mut conn).unwrap(), reverted);
    assert_eq!(recount_mismatches(&mut conn).unwrap(), vec![]);
    let kept: i64 = tallies::table.filter(tallies::ambassador_id.eq(&amb)).count().get_result(&mut conn).unwrap();
    assert!(kept >= 5, "registered, in treatment, completed, their visible twins and reward sums: {kept}");
    drop(conn);
    let after = detail(&app, &team.staff, &amb).await;
    assert_eq!((counts(&after), &after["balance"]), (counts(&before), &before["balance"]));
    assert_eq!(counts(&after), counts_of(1, 1, 3, 0, 0));
    assert_eq!(after["balance"]["in_payout_minor"], 30_000);
}

#[tokio::test]
async fn a_batch_racing_completions_for_the_same_ambassadors_counts_every_reward_once() {
    let app = spawn_app().await;
    let team = app.team().await;
    no_hold(&app).await;
    let mut pending = Vec::new();
    let mut ambassadors = Vec::new();
    for name in ["Racer", "Rival"] {
        let (amb, code, _) = app.paid_ambassador(&team.staff, name).await;
        for i in 0..3 {
            app.completed_referral(&team, &code, &format!("{name}Paid{i}"), today()).await;
        }
        for i in 0..4 {
            pending.push(app.referral_in_treatment(&team.staff, &code, &format!("{name}Late{i}"), today()).await);
        }
        ambassadors.push(amb);
    }

    // The batch locks both ambassadors and moves their rewards while eight completions add
    // rewards (and move referral totals) for the same two ambassadors.
    let completions = pending.iter().map(|id| {
        let body = json!({ "completed_on": today() });
        let path = format!("/v1/referrals/{id}/complete");
        let app = &app;
        let staff = team.staff.clone();
        async move { app.post(&path, &staff, &body).await.status() }
    });
    let batch = async { app.post("/v1/payouts", &team.finance, &json!({})).await.status() };
    let (batch, completed) = tokio::join!(batch, futures_util::future::join_all(completions));
    assert_eq!(batch, StatusCode::CREATED);
    assert!(completed.iter().all(|s| *s == StatusCode::OK), "{completed:?}");

    let mut conn = app.pool.get().unwrap();
    assert_eq!(recount_mismatches(&mut conn).unwrap(), vec![]);
    drop(conn);
    for amb in &ambassadors {
        let body = detail(&app, &team.staff, amb).await;
        assert_eq!(counts(&body)["completed"], 7);
        let b = &body["balance"];
        let (payable, in_payout) = (b["payable_minor"].as_i64().unwrap(), b["in_payout_minor"].as_i64().unwrap());
        assert_eq!(payable + in_payout, 70_000, "{b}");
        assert!(in_payout >= 30_000, "the three earned before the batch are in it: {b}");
    }
}

#[tokio::test]
async fn the_command_line_checks_the_totals_and_counts_them_again() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (amb, code, _) = app.paid_ambassador(&team.staff, "Checked").await;
    app.completed_referral(&team, &code, "Counted", today()).await;
    let (ok, _, stderr) = vouch(&app, &["tallies", "check"]);
    assert!(ok && stderr.contains("every running total matches"), "{stderr}");

    // Totals changed behind the triggers' back (as SQL run without triggers would leave
    // them): named by the check, which fails; rebuilt by the recount.
    let mut conn = app.pool.get().unwrap();
    diesel::delete(tallies::table.filter(tallies::ambassador_id.eq(&amb))).execute(&mut conn).unwrap();
    drop(conn);
    assert_eq!(counts(&detail(&app, &team.staff, &amb).await)["completed"], 0);
    let (ok, stdout, stderr) = vouch(&app, &["tallies", "check"]);
    assert!(!ok && stderr.contains("differ from a recount"), "{stderr}");
    assert!(stdout.contains(&format!("{amb}\tcompleted\tkept 0\tcounted 1")), "{stdout}");
    assert!(stdout.contains(&format!("{amb}\treward:open\tkept 0\tcounted 10000")), "{stdout}");

    let (ok, _, stderr) = vouch(&app, &["tallies", "recount"]);
    assert!(ok, "{stderr}");
    assert!(vouch(&app, &["tallies", "check"]).0);
    assert_eq!(counts(&detail(&app, &team.staff, &amb).await)["completed"], 1);
}

/// Two transactions that lock the same two ambassadors' totals in opposite orders: PostgreSQL
/// aborts one ("deadlock detected"), and that is a 503 to retry, never a 500. (SQLite has one
/// writer at a time: nothing to cross.)
#[tokio::test]
async fn a_deadlock_postgresql_breaks_is_a_retry_not_a_server_error() {
    let app = spawn_app().await;
    let Some(url) = app.settings.database.url.strip_prefix("postgres").map(|rest| format!("postgres{rest}")) else {
        return;
    };
    let team = app.team().await;
    let mut ids = Vec::new();
    for name in ["Left", "Right"] {
        let (amb, code, _) = app.paid_ambassador(&team.staff, name).await;
        app.referral_in_treatment(&team.staff, &code, &format!("{name}Client"), today()).await;
        ids.push(amb);
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let crossing = |first: String, second: String| {
        let (url, barrier) = (url.clone(), barrier.clone());
        std::thread::spawn(move || {
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            conn.transaction(|conn| {
                let touch = |conn: &mut diesel::PgConnection, amb: &str| {
                    diesel::update(tallies::table.find((amb, "in_treatment")))
                        .set(tallies::n.eq(tallies::n))
                        .execute(conn)
                };
                touch(conn, &first)?;
                barrier.wait();
                touch(conn, &second)
            })
        })
    };
    let one = crossing(ids[0].clone(), ids[1].clone());
    let other = crossing(ids[1].clone(), ids[0].clone());
    let results = [one.join().unwrap(), other.join().unwrap()];
    let lost: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(lost.len(), 1, "PostgreSQL aborts exactly one of the two: {lost:?}");
    let error = vouch::app::Error::from(lost.into_iter().next().unwrap());
    assert!(matches!(error, vouch::app::Error::Unavailable(_)), "{error:?}");
}
