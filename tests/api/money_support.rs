//! Story helpers for the money tests: a finance team, completed referrals (back-dated where
//! a test needs the past), program changes, and the ledger invariants checked after races.

use chrono::{Duration, NaiveDate, Utc};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{ambassadors, payout_lines, payouts, referrals, rewards};

use crate::helpers::TestApp;

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub fn days_ago(n: i64) -> NaiveDate {
    today() - Duration::days(n)
}

/// The program rules with DESIGN defaults, changed by `overrides`.
pub fn program(overrides: Value) -> Value {
    let mut p = json!({
        "currency": "USD",
        "reward": { "type": "flat", "amount_minor": 10000 },
        "tiers": [],
        "holding_days": 14,
        "min_payout_minor": 5000,
        "annual_cap_minor": null,
        "attribution_days": 365,
        "client_offer": null,
        "tax_threshold_minor": 60000
    });
    for (k, v) in overrides.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

pub struct Team {
    pub staff: String,
    pub finance: String,
}

impl TestApp {
    pub async fn team(&self) -> Team {
        Team { staff: self.key("staff").await, finance: self.key("finance").await }
    }

    /// The admin replaces the program rules; asserts 200.
    pub async fn set_program(&self, overrides: Value) -> Value {
        let res =
            self.request(reqwest::Method::PUT, "/v1/program", Some(&self.admin_key), Some(&program(overrides))).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Enrols an ambassador paid by PayPal; returns (id, code, email).
    pub async fn paid_ambassador(&self, staff: &str, name: &str) -> (String, String, String) {
        let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
        let amb = self
            .enrol(
                staff,
                json!({ "name": name, "email": email,
                        "payout_method": { "type": "paypal", "email": format!("pp.{email}") } }),
            )
            .await;
        (amb["id"].as_str().unwrap().to_owned(), amb["codes"][0]["code"].as_str().unwrap().to_owned(), email)
    }

    /// Records a referral for `code`, registered on `registered_on` (back-dated in the
    /// database when in the past), with one session. Returns the referral id.
    pub async fn referral_in_treatment(
        &self,
        staff: &str,
        code: &str,
        client: &str,
        registered_on: NaiveDate,
    ) -> String {
        let body = json!({ "code": code, "first_name": client, "last_name": "Client",
                           "email": format!("{}@clients.example", client.to_lowercase()),
                           "share_name_with_ambassador": true });
        let res = self.post("/v1/referrals", staff, &body).await;
        let status = res.status();
        let r: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{r}");
        let id = r["id"].as_str().unwrap().to_owned();
        if registered_on < today() {
            let mut conn = self.pool.get().unwrap();
            diesel::update(referrals::table.find(&id))
                .set(referrals::registered_at.eq(registered_on.and_hms_opt(9, 0, 0).unwrap()))
                .execute(&mut conn)
                .unwrap();
        }
        let res =
            self.post(&format!("/v1/referrals/{id}/sessions"), staff, &json!({ "session_on": registered_on })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        id
    }

    /// Completes a referral; asserts 200.
    pub async fn complete(&self, staff: &str, referral_id: &str, completed_on: NaiveDate, value: Option<i64>) {
        let mut body = json!({ "completed_on": completed_on });
        if let Some(v) = value {
            body["treatment_value_minor"] = json!(v);
        }
        let res = self.post(&format!("/v1/referrals/{referral_id}/complete"), staff, &body).await;
        let status = res.status();
        let r: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{r}");
    }

    /// A referral registered and completed on `on`; returns (referral id, its earned reward).
    pub async fn completed_referral(&self, team: &Team, code: &str, client: &str, on: NaiveDate) -> (String, Value) {
        let id = self.referral_in_treatment(&team.staff, code, client, on).await;
        self.complete(&team.staff, &id, on, None).await;
        let reward = self.reward_of(&team.finance, &id).await.expect("an earned reward");
        (id, reward)
    }

    /// The earned reward of a referral, if any.
    pub async fn reward_of(&self, finance: &str, referral_id: &str) -> Option<Value> {
        let list: Value = self
            .get(&format!("/v1/rewards?referral_id={referral_id}&kind=earned"), finance)
            .await
            .json()
            .await
            .unwrap();
        list["items"].as_array().unwrap().first().cloned()
    }

    pub async fn balance(&self, staff: &str, ambassador_id: &str) -> Value {
        let amb: Value = self.get(&format!("/v1/ambassadors/{ambassador_id}"), staff).await.json().await.unwrap();
        amb["balance"].clone()
    }

    /// (rewards, payouts, payout lines) row counts.
    pub fn ledger_counts(&self) -> (i64, i64, i64) {
        let mut conn = self.pool.get().unwrap();
        (
            rewards::table.count().get_result(&mut conn).unwrap(),
            payouts::table.count().get_result(&mut conn).unwrap(),
            payout_lines::table.count().get_result(&mut conn).unwrap(),
        )
    }

    /// Never paid twice: every paid reward is in exactly one paid line of a paid batch, the
    /// paid rewards add up to the paid lines, and every batch total is the sum of its live
    /// lines, which is the sum of their rewards. And the file is the payment: a paid batch
    /// has nothing left pending, no suspended ambassador has a pending line in a draft, and a
    /// refunded referral's reward is voided, clawed back, or waiting in a locked batch.
    pub fn assert_ledger_consistent(&self) {
        self.assert_batches_follow_their_state();
        let mut conn = self.pool.get().unwrap();
        let paid_rewards: Vec<(i64, Option<String>)> = rewards::table
            .filter(rewards::state.eq("paid"))
            .select((rewards::amount_minor, rewards::payout_line_id))
            .load(&mut conn)
            .unwrap();
        let paid_lines: Vec<(String, i64)> = payout_lines::table
            .filter(payout_lines::status.eq("paid"))
            .select((payout_lines::id, payout_lines::amount_minor))
            .load(&mut conn)
            .unwrap();
        let reward_sum: i64 = paid_rewards.iter().map(|r| r.0).sum();
        let line_sum: i64 = paid_lines.iter().map(|l| l.1).sum();
        assert_eq!(reward_sum, line_sum, "paid rewards must equal paid lines");
        for (line_id, amount) in &paid_lines {
            let in_line: i64 =
                paid_rewards.iter().filter(|r| r.1.as_deref() == Some(line_id.as_str())).map(|r| r.0).sum();
            assert_eq!(in_line, *amount, "line {line_id} equals its rewards");
        }
        let batches: Vec<(String, i64)> =
            payouts::table.select((payouts::id, payouts::total_minor)).load(&mut conn).unwrap();
        for (id, total) in batches {
            let lines: Vec<(String, i64)> = payout_lines::table
                .filter(payout_lines::payout_id.eq(&id))
                .filter(payout_lines::status.eq_any(["pending", "paid"]))
                .select((payout_lines::id, payout_lines::amount_minor))
                .load(&mut conn)
                .unwrap();
            assert_eq!(lines.iter().map(|l| l.1).sum::<i64>(), total, "batch {id} total");
            for (line_id, amount) in lines {
                let sum: Option<i64> = rewards::table
                    .filter(rewards::payout_line_id.eq(&line_id))
                    .select(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                        "CAST(SUM(amount_minor) AS BIGINT)",
                    ))
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(sum.unwrap_or(0), amount, "line {line_id} equals its rewards");
            }
        }
    }

    /// Outbox rows for a template, as (to, payload).
    pub fn emails(&self, template: &str) -> Vec<(String, Value)> {
        use vouch::db::schema::email_outbox as o;
        let mut conn = self.pool.get().unwrap();
        let rows: Vec<(String, String)> = o::table
            .filter(o::template.eq(template))
            .order(o::id.asc())
            .select((o::to_address, o::payload))
            .load(&mut conn)
            .unwrap();
        rows.into_iter().map(|(to, p)| (to, serde_json::from_str(&p).unwrap())).collect()
    }
}

impl TestApp {
    fn assert_batches_follow_their_state(&self) {
        let mut conn = self.pool.get().unwrap();
        let pending_in_settled: Vec<String> = payout_lines::table
            .inner_join(payouts::table)
            .filter(payouts::status.eq_any(["paid", "cancelled"]))
            .filter(payout_lines::status.eq("pending"))
            .select(payout_lines::id)
            .load(&mut conn)
            .unwrap();
        assert!(pending_in_settled.is_empty(), "pending lines in settled batches: {pending_in_settled:?}");
        let suspended_in_draft: Vec<String> = payout_lines::table
            .inner_join(payouts::table)
            .inner_join(ambassadors::table)
            .filter(payouts::status.eq("draft"))
            .filter(payout_lines::status.eq("pending"))
            .filter(ambassadors::status.eq("suspended"))
            .select(payout_lines::id)
            .load(&mut conn)
            .unwrap();
        assert!(suspended_in_draft.is_empty(), "suspended ambassadors pending in a draft: {suspended_in_draft:?}");
        let refunded: Vec<(String, String, String, Option<String>)> = rewards::table
            .inner_join(referrals::table)
            .filter(referrals::status.eq("refunded"))
            .filter(rewards::kind.eq("earned"))
            .select((rewards::id, referrals::id, rewards::state, rewards::payout_line_id))
            .load(&mut conn)
            .unwrap();
        for (reward, referral, state, line) in refunded {
            let clawed_back: i64 = rewards::table
                .filter(rewards::referral_id.eq(&referral))
                .filter(rewards::kind.eq("clawback"))
                .count()
                .get_result(&mut conn)
                .unwrap();
            let batch_status: Option<String> = line.as_ref().map(|line| {
                payout_lines::table
                    .inner_join(payouts::table)
                    .filter(payout_lines::id.eq(line))
                    .select(payouts::status)
                    .first(&mut conn)
                    .unwrap()
            });
            let ok = state == "voided"
                || clawed_back == 1
                || (state == "in_payout" && batch_status.as_deref() == Some("processing"));
            assert!(
                ok,
                "refunded referral {referral}: reward {reward} is {state} ({batch_status:?}), {clawed_back} clawbacks"
            );
        }
    }
}
