//! `/v1/team` (admin API keys) and `vouch team invite`: team members, the last-admin rule,
//! and sessions ended by a role change or deactivation.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{audit_events, email_outbox, team_members, team_sessions, team_sign_in_links};

use crate::cli::vouch;
use crate::helpers::{assert_problem, problem_fields, spawn_app, TestApp};
use crate::web::{link_path, Visitor};

/// Rows of the team tables and the outbox: (members, links, sessions, outbox, audit).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct TeamCounts(pub i64, pub i64, pub i64, pub i64, pub i64);

impl TestApp {
    pub fn team_counts(&self) -> TeamCounts {
        let mut conn = self.pool.get().unwrap();
        TeamCounts(
            team_members::table.count().get_result(&mut conn).unwrap(),
            team_sign_in_links::table.count().get_result(&mut conn).unwrap(),
            team_sessions::table.count().get_result(&mut conn).unwrap(),
            email_outbox::table.count().get_result(&mut conn).unwrap(),
            audit_events::table.count().get_result(&mut conn).unwrap(),
        )
    }

    /// The initial admin key invites a member; asserts 201 and returns the member.
    pub async fn invite_member(&self, name: &str, email: &str, role: &str) -> Value {
        let res = self.post("/v1/team", &self.admin_key, &json!({ "name": name, "email": email, "role": role })).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "invite failed: {body}");
        body
    }

    /// A public ambassador application (what waits for staff on the console's home).
    pub async fn public_application(&self, name: &str, email: &str) {
        let res = self
            .client
            .post(self.url("/v1/public/ambassador-applications"))
            .json(&json!({ "name": name, "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }

    /// Console sign-in links e-mailed to this address (invitations too), newest first.
    pub async fn console_links(&self, email: &str) -> Vec<String> {
        let mut links: Vec<String> =
            self.mail_to(email).await.iter().filter_map(|m| m.link_containing("/console/link?token=")).collect();
        links.reverse();
        links
    }

    /// The live console sessions of a member: not ended, not expired, not idle (30 minutes).
    pub fn open_sessions(&self, member_id: &str) -> i64 {
        let mut conn = self.pool.get().unwrap();
        let now = vouch::db::now();
        team_sessions::table
            .filter(team_sessions::member_id.eq(member_id))
            .filter(team_sessions::ended_at.is_null())
            .filter(team_sessions::expires_at.gt(now))
            .filter(team_sessions::last_seen_at.gt(now - chrono::TimeDelta::minutes(30)))
            .count()
            .get_result(&mut conn)
            .unwrap()
    }

    /// (actor_type, actor_id, actor_role) of the newest audit event with this action.
    pub fn audit_actor(&self, action: &str) -> (String, Option<String>, Option<String>) {
        let mut conn = self.pool.get().unwrap();
        audit_events::table
            .filter(audit_events::action.eq(action))
            .order(audit_events::id.desc())
            .select((audit_events::actor_type, audit_events::actor_id, audit_events::actor_role))
            .first(&mut conn)
            .unwrap()
    }
}

#[tokio::test]
async fn admins_invite_list_and_read_team_members_and_the_invitee_is_e_mailed_a_link() {
    let app = spawn_app().await;
    let res =
        app.post("/v1/team", &app.admin_key, &json!({ "email": " Jo.Smith@Clinic.TEST ", "role": "staff" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let jo: Value = res.json().await.unwrap();
    assert_eq!(jo["email"], "jo.smith@clinic.test", "trimmed and lower-cased");
    assert_eq!(jo["name"], "jo.smith", "the name defaults to the address's first part");
    assert_eq!((jo["role"].as_str(), jo["status"].as_str()), (Some("staff"), Some("active")));
    assert!(jo["created_at"].as_str().unwrap().ends_with('Z') && jo["deactivated_at"].is_null());
    let id = jo["id"].as_str().unwrap();

    let mail = app.mail_to("jo.smith@clinic.test").await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].subject.contains("console"), "{}", mail[0].subject);
    assert!(mail[0].text.contains("as staff") && mail[0].text.contains("An administrator"), "{}", mail[0].text);
    let link = mail[0].link_containing("/console/link?token=").expect("a sign-in link");
    // Only the link's hash is stored, and the sent e-mail's row no longer holds the link.
    let token = link.split("token=").nth(1).unwrap();
    let mut conn = app.pool.get().unwrap();
    let hashes: Vec<String> = team_sign_in_links::table.select(team_sign_in_links::token_hash).load(&mut conn).unwrap();
    assert_eq!(hashes, [vouch::domain::api_key::hash(token)]);
    let payload: String = email_outbox::table.select(email_outbox::payload).first(&mut conn).unwrap();
    assert!(!payload.contains(token), "{payload}");
    assert_eq!(app.audit_actions(id), ["team_member.invited"]);
    let (kind, _, role) = app.audit_actor("team_member.invited");
    assert_eq!((kind.as_str(), role.as_deref()), ("api_key", Some("admin")));

    app.invite_member("Ann Admin", "ann@clinic.test", "admin").await;
    let list: Value = app.get("/v1/team?limit=1", &app.admin_key).await.json().await.unwrap();
    assert_eq!(list["items"][0]["name"], "Ann Admin", "newest first");
    let next = list["next_cursor"].as_str().expect("a second page");
    let rest: Value = app.get(&format!("/v1/team?limit=1&cursor={next}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(rest["items"][0]["id"], id);
    assert!(rest["next_cursor"].is_null());
    let one: Value = app.get(&format!("/v1/team/{id}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(one, jo);
    assert_problem(app.get("/v1/team/nope", &app.admin_key).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn only_admin_keys_manage_the_team() {
    let app = spawn_app().await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let amb = app.enrol_named(&app.admin_key, "Ann Lee").await;
    let portal = app.portal_session(amb["email"].as_str().unwrap()).await;
    let before = app.team_counts();
    let id = jo["id"].as_str().unwrap();
    for key in [app.key("staff").await, app.key("finance").await, portal] {
        assert_problem(app.get("/v1/team", &key).await, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.post("/v1/team", &key, &json!({ "email": "x@clinic.test", "role": "admin" })).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.patch(&format!("/v1/team/{id}"), &key, &json!({ "role": "admin" })).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.post(&format!("/v1/team/{id}/deactivate"), &key, &json!({})).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let res = app.request(reqwest::Method::GET, "/v1/team", None, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let after = app.team_counts();
    assert_eq!((after.0, after.1, after.2), (before.0, before.1, before.2), "nothing changed");
}

#[tokio::test]
async fn refusals_name_the_rule_and_change_nothing() {
    let app = spawn_app().await;
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let (boss_id, jo_id) = (boss["id"].as_str().unwrap(), jo["id"].as_str().unwrap());
    app.delivered().await;
    let before = app.team_counts();

    let res = app.post("/v1/team", &app.admin_key, &json!({ "email": "JO@Clinic.Test", "role": "finance" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "email-taken").await;
    assert_eq!(problem_fields(&p), ["email"]);
    let res = app.post("/v1/team", &app.admin_key, &json!({ "email": "pat@clinic.test", "role": "owner" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["role"]);
    let res =
        app.post("/v1/team", &app.admin_key, &json!({ "email": "not an address", "role": "staff", "name": " " })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["email"]);
    let res =
        app.post("/v1/team", &app.admin_key, &json!({ "email": "pat@clinic.test", "role": "staff", "x": 1 })).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let res = app.patch(&format!("/v1/team/{jo_id}"), &app.admin_key, &json!({ "role": "boss" })).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), ["role"]);

    // The last active admin keeps the role and cannot be deactivated.
    let res = app.patch(&format!("/v1/team/{boss_id}"), &app.admin_key, &json!({ "role": "staff" })).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "last-admin").await;
    assert!(p["detail"].as_str().unwrap().contains("last active admin"), "{p}");
    let res = app.post(&format!("/v1/team/{boss_id}/deactivate"), &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "last-admin").await;
    let res = app.patch("/v1/team/nope", &app.admin_key, &json!({ "role": "staff" })).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.team_counts(), before, "no refusal stored anything");

    // With a second admin, the first may step down; a deactivated member is final.
    let res = app.patch(&format!("/v1/team/{jo_id}"), &app.admin_key, &json!({ "role": "admin" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.patch(&format!("/v1/team/{boss_id}"), &app.admin_key, &json!({ "role": "finance" })).await;
    let boss: Value = res.json().await.unwrap();
    assert_eq!(boss["role"], "finance");
    let res = app.post(&format!("/v1/team/{jo_id}/deactivate"), &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "last-admin").await;
    let res = app.post(&format!("/v1/team/{boss_id}/deactivate"), &app.admin_key, &json!({})).await;
    let boss: Value = res.json().await.unwrap();
    assert_eq!((boss["status"].as_str(), boss["deactivated_at"].is_string()), (Some("deactivated"), true));
    let res = app.post(&format!("/v1/team/{boss_id}/deactivate"), &app.admin_key, &json!({})).await;
    let p = assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(p["current_status"], "deactivated");
    let res = app.patch(&format!("/v1/team/{boss_id}"), &app.admin_key, &json!({ "role": "admin" })).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(
        app.audit_actions(boss_id),
        ["team_member.invited", "team_member.role_changed", "team_member.deactivated"]
    );
}

#[tokio::test]
async fn a_role_change_and_a_deactivation_end_the_members_console_sessions_at_once() {
    let app = spawn_app().await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let id = jo["id"].as_str().unwrap();
    let (desk, phone) = (Visitor::new(&app), Visitor::new(&app));
    desk.console_sign_in_with(&app.console_links("jo@clinic.test").await[0]).await;
    phone.console_sign_in("jo@clinic.test").await;
    assert_eq!(app.open_sessions(id), 2);

    let res = app.patch(&format!("/v1/team/{id}"), &app.admin_key, &json!({ "role": "finance" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.open_sessions(id), 0);
    for v in [&desk, &phone] {
        assert_eq!(v.get("/console").await.location(), "/console/sign-in");
    }
    let home = phone.console_sign_in("jo@clinic.test").await;
    assert!(home.html.contains("finance"), "signed in again under the new role");

    let res = app.post(&format!("/v1/team/{id}/deactivate"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.open_sessions(id), 0);
    assert_eq!(phone.get("/console").await.location(), "/console/sign-in");
    // A deactivated member gets no more links (the same answer as anyone).
    let mails = app.mail_to("jo@clinic.test").await.len();
    let res = phone.submit("/console/sign-in", "/console/sign-in", &[("email", "jo@clinic.test")]).await;
    assert_eq!(res.location(), "/console/check-email");
    assert_eq!(app.mail_to("jo@clinic.test").await.len(), mails);
}

#[tokio::test]
async fn the_first_admin_is_invited_from_the_command_line_and_signs_in_with_the_printed_link() {
    let app = spawn_app().await;
    let (ok, stdout, stderr) =
        vouch(&app, &["team", "invite", "--role", "admin", "--email", "Boss@Clinic.test", "--name", "Bo Ss"]);
    assert!(ok, "{stderr}");
    let link = stdout.trim().to_owned();
    assert!(link.starts_with(&format!("{}/console/link?token=", app.address)), "{stdout}");
    assert!(stderr.contains("Bo Ss") && stderr.contains("boss@clinic.test") && stderr.contains("admin"), "{stderr}");
    assert_eq!(app.team_counts().3, 0, "no e-mail: the link is printed once");
    let (kind, id, _) = app.audit_actor("team_member.invited");
    assert_eq!((kind.as_str(), id), ("system", None));

    let v = Visitor::new(&app);
    let home = v.console_sign_in_with(&link).await;
    assert!(home.html.contains("Hello, Bo Ss"), "{}", home.html);
    assert_eq!(v.get("/console/team").await.status, StatusCode::OK, "an admin");
    // The printed link worked once.
    let again = v.get(&link_path(&link)).await;
    let res =
        v.post("/console/session", &[("csrf", &again.csrf()), ("token", link.split("token=").nth(1).unwrap())]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    let (ok, _, stderr) = vouch(&app, &["team", "invite", "--role", "staff", "--email", "BOSS@clinic.test"]);
    assert!(!ok && stderr.contains("exists already"), "{stderr}");
    let (ok, _, stderr) = vouch(&app, &["team", "invite", "--role", "staff", "--email", "nope"]);
    assert!(!ok && stderr.contains("--email must be an e-mail address"), "{stderr}");
    let (ok, _, stderr) = vouch(&app, &["team", "invite", "--role", "owner", "--email", "x@clinic.test"]);
    assert!(!ok && stderr.contains("owner"), "{stderr}");
    assert_eq!(app.team_counts().0, 1);
}

#[tokio::test]
async fn two_admins_demoted_at_the_same_moment_leave_one_admin() {
    for round in 0..3 {
        let app = spawn_app().await;
        let a = app.invite_member("A", "a@clinic.test", "admin").await;
        let b = app.invite_member("B", "b@clinic.test", "admin").await;
        let body = json!({ "role": "staff" });
        let (pa, pb) = (format!("/v1/team/{}", id_of(&a)), format!("/v1/team/{}", id_of(&b)));
        let (ra, rb) = tokio::join!(app.patch(&pa, &app.admin_key, &body), app.patch(&pb, &app.admin_key, &body));
        let mut statuses = [ra.status(), rb.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "round {round}: one wins, one is the last admin");
        let list: Value = app.get("/v1/team", &app.admin_key).await.json().await.unwrap();
        let admins = list["items"].as_array().unwrap().iter().filter(|m| m["role"] == "admin").count();
        assert_eq!(admins, 1, "round {round}");
    }
}

fn id_of(member: &Value) -> String {
    member["id"].as_str().unwrap().to_owned()
}
