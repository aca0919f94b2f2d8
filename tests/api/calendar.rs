//! The clinic's calendar (`clinic.time_zone`): "today", the holding period, the calendar year
//! of reports; and the dates rule — sessions and the completion are dated between the
//! referral's registration day and today, and a referral can be recorded late.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::payouts;

use crate::helpers::{assert_problem, problem_fields, spawn_app, spawn_app_with, TestApp};
use crate::money_support::{days_ago, today, Team};

/// A zone whose calendar day differs from UTC's right now, its fixed UTC offset (neither zone
/// has daylight saving time), and its day. Kiritimati (UTC+14) is a day ahead from 10:00 UTC on;
/// Pago Pago (UTC−11) is a day behind until 11:00 UTC. Either way the zone's own day does not
/// change while the test runs.
fn zone_off_utc() -> (&'static str, Duration, NaiveDate) {
    let now = Utc::now().naive_utc();
    let (zone, offset) = if now.hour() >= 10 {
        ("Pacific/Kiritimati", Duration::hours(14))
    } else {
        ("Pacific/Pago_Pago", Duration::hours(-11))
    };
    let local_today = (now + offset).date();
    assert_ne!(local_today, now.date(), "the chosen zone is on another day than UTC");
    (zone, offset, local_today)
}

fn instant(v: &Value) -> NaiveDateTime {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().naive_utc()
}

async fn referral(app: &TestApp, staff: &str, code: &str, client: &str, extra: Value) -> Value {
    let mut body =
        json!({ "code": code, "first_name": client, "email": format!("{}@clients.example", client.to_lowercase()) });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let res = app.post("/v1/referrals", staff, &body).await;
    let status = res.status();
    let r: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r
}

#[tokio::test]
async fn today_and_the_holding_period_follow_the_clinics_time_zone() {
    let (zone, offset, local_today) = zone_off_utc();
    let app = spawn_app_with(|s| s.clinic.time_zone = zone.into()).await;
    let team = app.team().await;
    let (amb_id, code, _) = app.paid_ambassador(&team.staff, "Zoned").await;
    let r = referral(&app, &team.staff, &code, "Islander", json!({})).await;
    assert_eq!(r["registered_on"], local_today.to_string(), "registered today in the clinic's calendar");
    let id = r["id"].as_str().unwrap();

    // A session without a date is today's, in the clinic's calendar.
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &team.staff, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.unwrap();
    assert_eq!(session["session_on"], local_today.to_string());

    // Tomorrow in the clinic is the future, even where it is today in UTC.
    let tomorrow = local_today + Duration::days(1);
    let res =
        app.post(&format!("/v1/referrals/{id}/complete"), &team.staff, &json!({ "completed_on": tomorrow })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["completed_on"]);
    app.complete(&team.staff, id, local_today, None).await;

    // Held through the 14 days after completion: payable from the clinic's midnight that ends them.
    let reward = app.reward_of(&team.finance, id).await.unwrap();
    let clinic_midnight = (local_today + Duration::days(14)).and_hms_opt(0, 0, 0).unwrap() - offset;
    assert_eq!(instant(&reward["holds_until"]), clinic_midnight, "{reward}");
    assert_eq!(reward["earned_on"], local_today.to_string());
    let mails = app.emails("reward_earned");
    assert_eq!(mails[0].1["holds_until"], (local_today + Duration::days(14)).to_string());

    // Finance adjustments are dated by the clinic's day too.
    let body = json!({ "ambassador_id": amb_id, "amount_minor": 500, "reason": "Welcome bonus" });
    let res = app.post("/v1/rewards/adjustments", &team.finance, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let bonus: Value = res.json().await.unwrap();
    assert_eq!(bonus["earned_on"], local_today.to_string());

    // Day filters on registration follow the clinic's days.
    let utc_today = Utc::now().date_naive();
    for (day, expected) in [(local_today, 1), (utc_today, 0)] {
        let list: Value =
            app.get(&format!("/v1/referrals?from={day}&to={day}"), &team.staff).await.json().await.unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), expected, "listed on {day}");
        let summary: Value =
            app.get(&format!("/v1/reports/summary?from={day}&to={day}"), &team.finance).await.json().await.unwrap();
        assert_eq!(summary["referrals"]["registered"], expected, "registered on {day}");
    }
}

async fn paid_batch_of_one_reward(app: &TestApp, team: &Team, clinic_today: NaiveDate) -> String {
    app.set_program(json!({ "holding_days": 0 })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Yearly").await;
    app.completed_referral(team, &code, "NewYear", clinic_today).await;
    let res = app.post("/v1/payouts", &team.finance, &json!({})).await;
    let batch: Value = res.json().await.unwrap();
    let id = batch["id"].as_str().expect("a batch").to_owned();
    crate::payouts::lock_batch(app, &team.finance, &id).await;
    let res = app.post(&format!("/v1/payouts/{id}/mark-paid"), &team.finance, &json!({ "reference": "PP-1" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    id
}

#[tokio::test]
async fn payments_are_dated_in_the_clinics_calendar() {
    let (zone, _, local_today) = zone_off_utc();
    let app = spawn_app_with(|s| s.clinic.time_zone = zone.into()).await;
    let team = app.team().await;
    app.set_program(json!({ "holding_days": 0 })).await;
    let (_, code, email) = app.paid_ambassador(&team.staff, "Paid Islander").await;
    app.completed_referral(&team, &code, "Palm", local_today).await;
    let batch: Value = app.post("/v1/payouts", &team.finance, &json!({})).await.json().await.unwrap();
    let id = batch["id"].as_str().expect("a batch");
    crate::payouts::lock_batch(&app, &team.finance, id).await;
    let res = app.post(&format!("/v1/payouts/{id}/mark-paid"), &team.finance, &json!({ "reference": "PP-9" })).await;
    assert_eq!(res.status(), StatusCode::OK);

    let mails = app.emails("payout_sent");
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].1["paid_on"], local_today.to_string(), "the e-mail's date is the clinic's day");
    let session = app.portal_session(&email).await;
    let mine: Value = app.get("/v1/me/payouts", &session).await.json().await.unwrap();
    assert_eq!(mine["items"][0]["paid_on"], local_today.to_string(), "{mine}");
}

#[tokio::test]
async fn the_annual_report_counts_payments_in_the_clinics_year() {
    // Kiritimati is UTC+14: 12:00 UTC on 31 December is already 1 January there.
    let app = spawn_app_with(|s| s.clinic.time_zone = "Pacific/Kiritimati".into()).await;
    let team = app.team().await;
    // The clinic's day, not UTC's: from 10:00 UTC Kiritimati is already on the next day.
    let clinic_today = (Utc::now() + Duration::hours(14)).date_naive();
    let batch = paid_batch_of_one_reward(&app, &team, clinic_today).await;
    let year = clinic_today.year();
    let new_years_eve_utc = NaiveDate::from_ymd_opt(year - 1, 12, 31).unwrap().and_hms_opt(12, 0, 0).unwrap();
    let mut conn = app.pool.get().unwrap();
    diesel::update(payouts::table.find(&batch)).set(payouts::paid_at.eq(new_years_eve_utc)).execute(&mut conn).unwrap();
    drop(conn);

    let this: Value = app.get(&format!("/v1/reports/annual?year={year}"), &team.finance).await.json().await.unwrap();
    assert_eq!(this["total_paid_minor"], 10000, "{this}");
    let last: Value =
        app.get(&format!("/v1/reports/annual?year={}", year - 1), &team.finance).await.json().await.unwrap();
    assert_eq!(last["total_paid_minor"], 0, "{last}");
    let res = app.get(&format!("/v1/reports/annual.csv?year={year}"), &team.finance).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap().lines().count(), 2, "a header and the payment");
}

#[tokio::test]
async fn an_unknown_time_zone_stops_the_start() {
    let mut settings = vouch::config::Settings::defaults();
    settings.clinic.time_zone = "Europe/Atlantis".into();
    let err = vouch::startup::Application::build(settings).err().expect("refused");
    assert!(err.contains("clinic.time_zone") && err.contains("Europe/Atlantis"), "{err}");
}

#[tokio::test]
async fn a_referral_recorded_late_keeps_its_real_dates_and_earns() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "attribution_days": 90 })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Latecomer").await;

    // The client names their ambassador at the final session: staff record the referral with
    // the day it really began.
    let r = referral(&app, &team.staff, &code, "Final", json!({ "registered_on": days_ago(60) })).await;
    assert_eq!(r["registered_on"], days_ago(60).to_string());
    let id = r["id"].as_str().unwrap();
    for day in [days_ago(59), days_ago(30), today()] {
        let res = app.post(&format!("/v1/referrals/{id}/sessions"), &team.staff, &json!({ "session_on": day })).await;
        assert_eq!(res.status(), StatusCode::CREATED, "session on {day}");
    }
    let before = app.counts();
    let res =
        app.post(&format!("/v1/referrals/{id}/sessions"), &team.staff, &json!({ "session_on": days_ago(61) })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["session_on"]);
    assert_eq!(app.counts(), before);
    app.complete(&team.staff, id, today(), None).await;
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &team.staff).await.json().await.unwrap();
    assert_eq!(
        (detail["earns"].as_bool(), detail["first_session_on"].as_str()),
        (Some(true), Some(days_ago(59).to_string().as_str()))
    );
    assert_eq!(app.reward_of(&team.finance, id).await.unwrap()["amount_minor"], 10000);

    // The attribution window counts from the registration day given.
    let late = referral(&app, &team.staff, &code, "Window", json!({ "registered_on": days_ago(89) })).await;
    let late_id = late["id"].as_str().unwrap();
    app.post(&format!("/v1/referrals/{late_id}/sessions"), &team.staff, &json!({ "session_on": days_ago(89) })).await;
    app.complete(&team.staff, late_id, today(), None).await;
    let done: Value = app.get(&format!("/v1/referrals/{late_id}"), &team.staff).await.json().await.unwrap();
    assert_eq!(done["earns"], true, "day 89 of 90: {done}");
}

#[tokio::test]
async fn registration_days_out_of_bounds_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let team = app.team().await;
    app.set_program(json!({ "attribution_days": 30 })).await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Bounds").await;
    let before = app.counts();
    for day in [today() + Duration::days(1), days_ago(31)] {
        let body = json!({ "code": code, "first_name": "Odd", "email": "odd@clients.example", "registered_on": day });
        let res = app.post("/v1/referrals", &team.staff, &body).await;
        let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
        assert_eq!(problem_fields(&p), ["registered_on"], "{day}");
    }
    assert_eq!(app.counts(), before);
    let edge = referral(&app, &team.staff, &code, "Edge", json!({ "registered_on": days_ago(30) })).await;
    assert_eq!(edge["registered_on"], days_ago(30).to_string());
}

#[tokio::test]
async fn sessions_and_completion_may_not_predate_the_registration() {
    let app = spawn_app().await;
    let team = app.team().await;
    let (_, code, _) = app.paid_ambassador(&team.staff, "Strict").await;
    let r = referral(&app, &team.staff, &code, "Prompt", json!({})).await;
    let id = r["id"].as_str().unwrap();
    let before = app.counts();
    let res =
        app.post(&format!("/v1/referrals/{id}/sessions"), &team.staff, &json!({ "session_on": days_ago(1) })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["session_on"]);
    assert!(p["errors"][0]["message"].as_str().unwrap().contains(&today().to_string()), "{p}");
    assert_eq!(app.counts(), before);
    let res = app.post(&format!("/v1/referrals/{id}/sessions"), &team.staff, &json!({ "session_on": today() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res =
        app.post(&format!("/v1/referrals/{id}/complete"), &team.staff, &json!({ "completed_on": days_ago(1) })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["completed_on"]);
    let detail: Value = app.get(&format!("/v1/referrals/{id}"), &team.staff).await.json().await.unwrap();
    assert_eq!((detail["status"].as_str(), detail["session_count"].as_i64()), (Some("in_treatment"), Some(1)));
}
