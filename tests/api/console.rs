//! The console's pages over HTTP, as a browser without JavaScript uses them: sign-in by
//! e-mailed link, sessions (idle, absolute, sign-out, everywhere), the role on every page,
//! CSRF on every form, and Admin → Team with the API's rules on its forms.

use chrono::TimeDelta;
use diesel::prelude::*;
use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{team_members, team_sessions, team_sign_in_links};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::web::{input_value, link_path, Page, Visitor};

impl Visitor<'_> {
    /// Signs in to the console through this e-mailed (or printed) link; returns the home page.
    pub async fn console_sign_in_with(&self, link: &str) -> Page {
        let confirm = self.get(&link_path(link)).await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
        let token = input_value(&confirm.html, "token").unwrap();
        let res = self.post("/console/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
        assert_eq!(res.location(), "/console", "{}", res.html);
        let home = self.get("/console").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.html);
        home
    }

    /// Asks for a sign-in link on the form and signs in with it; returns the home page.
    pub async fn console_sign_in(&self, email: &str) -> Page {
        let res = self.submit("/console/sign-in", "/console/sign-in", &[("email", email)]).await;
        assert_eq!(res.location(), "/console/check-email");
        let link = self.app.console_links(email).await.remove(0);
        self.console_sign_in_with(&link).await
    }

    /// A form post with this CSRF token (or none).
    pub async fn post_with(&self, path: &str, token: Option<&str>, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = token.map(|t| vec![("csrf", t)]).unwrap_or_default();
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }
}

fn id_of(member: &Value) -> String {
    member["id"].as_str().unwrap().to_owned()
}

fn member_status(app: &TestApp, id: &str) -> (String, String) {
    let mut conn = app.pool.get().unwrap();
    team_members::table.find(id).select((team_members::role, team_members::status)).first(&mut conn).unwrap()
}

/// Moves a member's sessions' clocks: `last_seen` and `expires` relative to now.
fn age_sessions(app: &TestApp, member_id: &str, last_seen: TimeDelta, expires: TimeDelta) {
    let mut conn = app.pool.get().unwrap();
    let now = vouch::db::now();
    diesel::update(team_sessions::table.filter(team_sessions::member_id.eq(member_id)))
        .set((team_sessions::last_seen_at.eq(now + last_seen), team_sessions::expires_at.eq(now + expires)))
        .execute(&mut conn)
        .unwrap();
}

#[tokio::test]
async fn every_console_page_checks_the_role_on_the_server() {
    let app = spawn_app().await;
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let amb = app.enrol_named(&app.admin_key, "Ann Lee").await;
    let (admin, staff, finance, nobody, ambassador) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let admin_home = admin.console_sign_in("boss@clinic.test").await;
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    ambassador.sign_in(amb["email"].as_str().unwrap()).await;
    assert!(admin_home.html.contains("href=\"/console/team\""), "admins see Team in the navigation");
    for home in [&staff_home, &finance_home] {
        assert!(!home.html.contains("href=\"/console/team\""), "the nav shows only what the role may open");
    }

    let id = id_of(&boss);
    let admin_only =
        ["/console/team".to_owned(), format!("/console/team/{id}"), format!("/console/team/{id}/deactivate")];
    let home = admin.get("/console").await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_html();
    for path in &admin_only {
        let page = admin.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "admin on {path}");
        page.assert_html();
    }
    for (who, v) in [("staff", &staff), ("finance", &finance)] {
        assert_eq!(v.get("/console").await.status, StatusCode::OK, "{who} on the home page");
        for path in &admin_only {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who} on {path}");
            page.assert_html();
            assert!(page.html.contains("Not for your role") && page.html.contains(who), "{}", page.html);
            assert!(!page.html.contains("boss@clinic.test"), "nothing of the page leaks");
        }
    }
    for (who, v) in [("nobody", &nobody), ("an ambassador", &ambassador)] {
        for path in std::iter::once("/console".to_owned()).chain(admin_only.iter().cloned()) {
            let page = v.get(&path).await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{who} on {path}");
            assert_eq!(page.location(), "/console/sign-in", "{who} on {path}");
        }
    }

    // Posts: the wrong role is refused with its own valid token; no session goes to sign-in.
    let before = app.team_counts();
    for (who, v, home) in [("staff", &staff, &staff_home), ("finance", &finance, &finance_home)] {
        let token = home.csrf();
        let posts: [(String, Vec<(&str, &str)>); 3] = [
            ("/console/team".into(), vec![("email", "new@clinic.test"), ("role", "admin")]),
            (format!("/console/team/{id}/role"), vec![("role", "staff")]),
            (format!("/console/team/{id}/deactivate"), vec![]),
        ];
        for (path, fields) in &posts {
            let res = v.post_with(path, Some(&token), fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{who} posting {path}");
        }
        let visitor_token = nobody.get("/console/sign-in").await.csrf();
        for (path, fields) in &posts {
            let res = nobody.post_with(path, Some(&visitor_token), fields).await;
            assert_eq!(res.location(), "/console/sign-in", "nobody posting {path}");
            let res = ambassador.post_with(path, Some(&visitor_token), fields).await;
            assert_eq!(res.location(), "/console/sign-in", "an ambassador posting {path}");
        }
    }
    assert_eq!(app.team_counts(), before, "nothing changed");
    assert_eq!(member_status(&app, &id), ("admin".into(), "active".into()));
}

#[tokio::test]
async fn an_admin_manages_the_team_in_the_console_and_the_audit_trail_names_them() {
    let app = spawn_app().await;
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let boss_id = id_of(&boss);
    let admin = Visitor::new(&app);
    admin.console_sign_in("boss@clinic.test").await;
    let (kind, id, role) = app.audit_actor("team_member.session_started");
    assert_eq!((kind.as_str(), id.as_deref(), role.as_deref()), ("team_member", Some(boss_id.as_str()), Some("admin")));

    let page = admin.get("/console/team").await;
    assert!(page.html.contains("boss@clinic.test") && page.html.contains("(you)"), "{}", page.html);
    let res = admin
        .submit(
            "/console/team",
            "/console/team",
            &[("name", "Sam <Staff>"), ("email", "Sam@Clinic.test"), ("role", "staff")],
        )
        .await;
    assert_eq!(res.location(), "/console/team", "{}", res.html);
    let page = admin.get("/console/team").await;
    assert!(
        page.html.contains("Invitation sent to Sam &lt;Staff&gt; &lt;sam@clinic.test&gt;."),
        "flash: {}",
        page.html
    );
    assert!(!admin.get("/console/team").await.html.contains("Invitation sent"), "a flash is read once");
    let (kind, id, role) = app.audit_actor("team_member.invited");
    assert_eq!((kind.as_str(), id.as_deref(), role.as_deref()), ("team_member", Some(boss_id.as_str()), Some("admin")));
    let invite = app.mail_to("sam@clinic.test").await;
    assert!(invite[0].text.contains("Boss added you") && invite[0].text.contains("as staff"), "{}", invite[0].text);

    let sam_id: String = {
        let mut conn = app.pool.get().unwrap();
        team_members::table
            .filter(team_members::email.eq("sam@clinic.test"))
            .select(team_members::id)
            .first(&mut conn)
            .unwrap()
    };
    let sam = Visitor::new(&app);
    sam.console_sign_in_with(&app.console_links("sam@clinic.test").await[0]).await;
    let member_page = format!("/console/team/{sam_id}");
    let res = admin.submit(&member_page, &format!("{member_page}/role"), &[("role", "finance")]).await;
    assert_eq!(res.location(), member_page);
    let page = admin.get(&member_page).await;
    assert!(page.html.contains("is now finance. Their console sessions have ended."), "{}", page.html);
    assert_eq!(member_status(&app, &sam_id), ("finance".into(), "active".into()));
    assert_eq!(sam.get("/console").await.location(), "/console/sign-in", "Sam's session ended");
    assert_eq!(app.audit_actor("team_member.role_changed").1.as_deref(), Some(boss_id.as_str()));

    // Deactivation asks first; the GET changes nothing.
    let confirm = admin.get(&format!("{member_page}/deactivate")).await;
    assert!(
        confirm.html.contains("Deactivate Sam &lt;Staff&gt;?") && confirm.html.contains("Cancel"),
        "{}",
        confirm.html
    );
    assert_eq!(member_status(&app, &sam_id).1, "active");
    let res = admin.post_with(&format!("{member_page}/deactivate"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/team");
    assert!(admin.get("/console/team").await.html.contains("is deactivated and signed out everywhere."));
    assert_eq!(member_status(&app, &sam_id), ("finance".into(), "deactivated".into()));
    let (kind, id, _) = app.audit_actor("team_member.deactivated");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss_id.as_str())));
    let page = admin.get(&member_page).await;
    assert!(page.html.contains("is deactivated and cannot sign in") && !page.html.contains("Change role"));
}

#[tokio::test]
async fn bad_input_is_shown_on_the_form_with_the_apis_message_and_nothing_is_stored() {
    let app = spawn_app().await;
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let (boss_id, jo_id) = (id_of(&boss), id_of(&jo));
    let admin = Visitor::new(&app);
    admin.console_sign_in("boss@clinic.test").await;
    let before = app.team_counts();

    let res = admin
        .submit("/console/team", "/console/team", &[("name", "Pat"), ("email", "pat at clinic"), ("role", "staff")])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.html.contains("error-summary") && res.html.contains("Must be an e-mail address like name@example.com.")
    );
    assert!(res.html.contains("value=\"pat at clinic\"") && res.html.contains("value=\"Pat\""), "what was typed stays");
    let res = admin.submit("/console/team", "/console/team", &[("email", "pat@clinic.test"), ("role", "owner")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be one of admin, staff, finance."), "{}", res.html);
    let res = admin.submit("/console/team", "/console/team", &[("email", "JO@clinic.test"), ("role", "finance")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("A team member with this e-mail address exists already."), "{}", res.html);

    let boss_page = format!("/console/team/{boss_id}");
    let res = admin.submit(&boss_page, &format!("{boss_page}/role"), &[("role", "janitor")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be one of admin, staff, finance."));
    let res = admin.submit(&boss_page, &format!("{boss_page}/role"), &[("role", "staff")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("This is the last active admin: make another member an admin first."), "{}", res.html);
    let res = admin.submit(&format!("{boss_page}/deactivate"), &format!("{boss_page}/deactivate"), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("last active admin") && res.html.contains("role=\"alert\""), "{}", res.html);
    assert_eq!(app.team_counts(), before, "no refusal stored anything");
    assert_eq!(member_status(&app, &boss_id), ("admin".into(), "active".into()));

    let res = app.post(&format!("/v1/team/{jo_id}/deactivate"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let before = app.team_counts();
    let jo_page = format!("/console/team/{jo_id}");
    let token = admin.get(&jo_page).await.csrf();
    let res = admin.post_with(&format!("{jo_page}/role"), Some(&token), &[("role", "admin")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("Cannot change the role of this team member: it is deactivated."), "{}", res.html);
    let res = admin.post_with(&format!("{jo_page}/deactivate"), Some(&token), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("already deactivated"), "{}", res.html);
    assert_eq!(admin.get("/console/team/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.team_counts(), before);
}

#[tokio::test]
async fn console_forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let jo_id = id_of(&jo);
    let (admin, other) = (Visitor::new(&app), Visitor::new(&app));
    admin.console_sign_in("boss@clinic.test").await;
    let others_token = other.console_sign_in("jo@clinic.test").await.csrf();
    let before = app.team_counts();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/team".into(), vec![("email", "new@clinic.test"), ("role", "admin")]),
        (format!("/console/team/{jo_id}/role"), vec![("role", "admin")]),
        (format!("/console/team/{jo_id}/deactivate"), vec![]),
        ("/console/sign-out".into(), vec![]),
        ("/console/sign-out-everywhere".into(), vec![]),
    ];
    for (path, fields) in &posts {
        for token in [None, Some("forged"), Some(others_token.as_str())] {
            let res = admin.post_with(path, token, fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(res.html.contains("This form has expired"), "{}", res.html);
        }
    }
    assert_eq!(app.team_counts(), before, "nothing stored, no session ended");
    assert_eq!(member_status(&app, &jo_id), ("staff".into(), "active".into()));
    assert_eq!(admin.get("/console").await.status, StatusCode::OK, "still signed in");

    // The anonymous forms too: the sign-in request and the link's button.
    let anonymous = Visitor::new(&app);
    let res = anonymous.post_with("/console/sign-in", None, &[("email", "jo@clinic.test")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let link = app.console_links("jo@clinic.test").await.pop().expect("the invitation, unused");
    let token = link.split("token=").nth(1).unwrap();
    let res = anonymous.post_with("/console/session", Some("forged"), &[("token", token)]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(app.team_counts(), before);
    anonymous.console_sign_in_with(&link).await;
}

#[tokio::test]
async fn sign_in_links_work_once_expire_and_never_tell_who_is_a_member() {
    let app = spawn_app_with(|s| s.rate_limit.login_emails_per_hour = 3).await;
    app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let v = Visitor::new(&app);
    let page = v.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_html();

    // An unknown address gets the same answer, and no e-mail.
    let res = v.submit("/console/sign-in", "/console/sign-in", &[("email", "who@clinic.test")]).await;
    assert_eq!(res.location(), "/console/check-email");
    let res = v.submit("/console/sign-in", "/console/sign-in", &[("email", "not-an-address")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Must be an e-mail address"), "{}", res.html);
    let res = v.submit("/console/sign-in", "/console/sign-in", &[("email", " JO@clinic.test ")]).await;
    assert_eq!(res.location(), "/console/check-email");
    let check = v.get("/console/check-email").await;
    assert_eq!(check.status, StatusCode::OK);
    assert!(app.mail_to("who@clinic.test").await.is_empty());
    let links = app.console_links("jo@clinic.test").await;
    assert_eq!(links.len(), 2, "the invitation and the requested link");
    let mail = app.mail_to("jo@clinic.test").await;
    assert!(mail[1].subject.contains("console sign-in link"), "{}", mail[1].subject);

    // Opening the link twice (a mail scanner, then the person) does not use it; the button does, once.
    let first = v.get(&link_path(&links[0])).await;
    assert!(first.html.contains("Sign in to the console"));
    v.console_sign_in_with(&links[0]).await;
    let w = Visitor::new(&app);
    let again = w.get(&link_path(&links[0])).await;
    let token = input_value(&again.html, "token").unwrap();
    let res = w.post("/console/session", &[("csrf", &again.csrf()), ("token", &token)]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("invalid, expired or already used"), "{}", res.html);
    let res = w.post("/console/session", &[("csrf", &again.csrf()), ("token", "made-up")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    // An expired link (the invitation's, aged past its end) is refused too.
    {
        let mut conn = app.pool.get().unwrap();
        diesel::update(team_sign_in_links::table.filter(team_sign_in_links::used_at.is_null()))
            .set(team_sign_in_links::expires_at.eq(vouch::db::now() - TimeDelta::seconds(1)))
            .execute(&mut conn)
            .unwrap();
    }
    let old = w.get(&link_path(&links[1])).await;
    let token = input_value(&old.html, "token").unwrap();
    let res = w.post("/console/session", &[("csrf", &old.csrf()), ("token", &token)]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Three links an hour per address (the invitation counts): the fourth request sends nothing.
    let res = w.submit("/console/sign-in", "/console/sign-in", &[("email", "jo@clinic.test")]).await;
    assert_eq!(res.location(), "/console/check-email");
    let res = w.submit("/console/sign-in", "/console/sign-in", &[("email", "jo@clinic.test")]).await;
    assert_eq!(res.location(), "/console/check-email", "the same answer");
    assert_eq!(app.console_links("jo@clinic.test").await.len(), 3);
    assert_eq!(w.get("/console/link").await.location(), "/console/sign-in", "a link without its token");
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_absolute_end_and_when_signed_out() {
    let app = spawn_app().await;
    let jo = app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let id = id_of(&jo);
    let v = Visitor::new(&app);
    let link = app.console_links("jo@clinic.test").await.remove(0);
    let confirm = v.get(&link_path(&link)).await;
    let token = input_value(&confirm.html, "token").unwrap();
    let res = v.post("/console/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
    let cookie = res.set_cookie("vouch_console").expect("the session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/console", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    let secret = cookie.split(';').next().unwrap().trim_start_matches("vouch_console=").to_owned();
    assert!(secret.starts_with("vc_"));
    {
        let mut conn = app.pool.get().unwrap();
        let hashes: Vec<String> = team_sessions::table.select(team_sessions::token_hash).load(&mut conn).unwrap();
        assert_eq!(hashes, [vouch::domain::api_key::hash(&secret)], "only the hash is stored");
    }

    // In use 29 minutes after the last request: still live, and the clock restarts.
    age_sessions(&app, &id, TimeDelta::minutes(-29), TimeDelta::hours(11));
    assert_eq!(v.get("/console").await.status, StatusCode::OK);
    let last_seen: chrono::NaiveDateTime = {
        let mut conn = app.pool.get().unwrap();
        team_sessions::table.select(team_sessions::last_seen_at).first(&mut conn).unwrap()
    };
    assert!(vouch::db::now() - last_seen < TimeDelta::minutes(1), "touched");
    // Idle past console.session_idle_minutes (30): signed out.
    age_sessions(&app, &id, TimeDelta::minutes(-31), TimeDelta::hours(11));
    assert_eq!(v.get("/console").await.location(), "/console/sign-in");

    // Past the absolute end (console.session_max_hours), however busy.
    v.console_sign_in("jo@clinic.test").await;
    age_sessions(&app, &id, TimeDelta::zero(), TimeDelta::seconds(-1));
    assert_eq!(v.get("/console").await.location(), "/console/sign-in");

    // Signing out ends the session and clears the cookie.
    let home = v.console_sign_in("jo@clinic.test").await;
    let res = v.post_with("/console/sign-out", Some(&home.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/sign-in");
    assert!(res.set_cookie("vouch_console").unwrap().contains("Max-Age=0"));
    assert_eq!(app.open_sessions(&id), 0);
    let page = v.get("/console/sign-in").await;
    assert!(page.html.contains("You are signed out."), "{}", page.html);
    assert_eq!(app.audit_actions(&id).last().map(String::as_str), Some("team_member.session_ended"));

    // Everywhere: every device's session ends.
    let (desk, phone) = (Visitor::new(&app), Visitor::new(&app));
    desk.console_sign_in("jo@clinic.test").await;
    let home = phone.console_sign_in("jo@clinic.test").await;
    assert_eq!(app.open_sessions(&id), 2);
    let res = phone.post_with("/console/sign-out-everywhere", Some(&home.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/sign-in");
    assert!(phone.get("/console/sign-in").await.html.contains("You are signed out everywhere."));
    assert_eq!(desk.get("/console").await.location(), "/console/sign-in");
    assert_eq!(app.open_sessions(&id), 0);
}

#[tokio::test]
async fn console_cookies_are_secure_when_the_public_url_is_https() {
    let app = spawn_app_with(|s| s.server.public_url = "https://vouch.example".into()).await;
    app.invite_member("Jo", "jo@clinic.test", "staff").await;
    let link = app.console_links("jo@clinic.test").await.remove(0);
    assert!(link.starts_with("https://vouch.example/console/link?token="), "{link}");
    let v = Visitor::new(&app);
    let confirm = v.get(&link_path(&link)).await;
    let token = input_value(&confirm.html, "token").unwrap();
    let res = v.post("/console/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
    let cookie = res.set_cookie("vouch_console").unwrap();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/console"), "{cookie}");
}

#[tokio::test]
async fn portal_and_console_sessions_never_open_each_other() {
    let app = spawn_app().await;
    app.invite_member("Jo", "jo@clinic.test", "admin").await;
    let amb = app.enrol_named(&app.admin_key, "Ann Lee").await;
    let amb_email = amb["email"].as_str().unwrap();

    // An ambassador signed in to the portal is not signed in to the console.
    let v = Visitor::new(&app);
    v.sign_in(amb_email).await;
    assert_eq!(v.get("/console").await.location(), "/console/sign-in");
    let portal_token = app.portal_session(amb_email).await;
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let raw = |path: &str, cookie: String| {
        let req = plain.get(app.url(path)).header(COOKIE, cookie);
        async move { Page::of(req.send().await.unwrap()).await }
    };
    let res = raw("/console", format!("vouch_console={portal_token}")).await;
    assert_eq!(res.location(), "/console/sign-in", "a portal token in the console's cookie");

    // A console session opens neither the portal nor the API.
    let w = Visitor::new(&app);
    let link = app.console_links("jo@clinic.test").await.remove(0);
    let confirm = w.get(&link_path(&link)).await;
    let token = input_value(&confirm.html, "token").unwrap();
    let res = w.post("/console/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
    let cookie = res.set_cookie("vouch_console").unwrap();
    let secret = cookie.split(';').next().unwrap().trim_start_matches("vouch_console=").to_owned();
    let portal = raw("/portal", format!("vouch_session={secret}")).await;
    assert_eq!(portal.status, StatusCode::OK);
    assert!(portal.html.contains("Ambassador sign-in"), "the portal's sign-in page: {}", portal.html);
    assert_eq!(w.get("/portal").await.status, StatusCode::OK);
    assert!(w.get("/portal").await.html.contains("Ambassador sign-in"));
    for path in ["/v1/me", "/v1/team", "/v1/ambassadors"] {
        assert_eq!(app.get(path, &secret).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_home_shows_what_waits_and_the_activity_each_role_may_see() {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let (admin, staff, finance) = (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let home = staff.console_sign_in("sam@clinic.test").await;
    assert!(home.html.contains("Nothing is waiting for a decision."), "empty state: {}", home.html);

    let amb = app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    let res = app
        .client
        .post(app.url("/v1/public/referrals"))
        .json(&json!({ "code": "ANN1", "first_name": "Lou", "last_name": "Reed", "email": "lou@example.com",
                       "consent_to_contact": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.public_application("Pat Doe", "pat@example.com").await;
    app.set_program(json!({ "currency": "EUR" })).await;

    let home = staff.get("/console").await;
    assert!(home.html.contains("<dt>Share-link referrals</dt><dd>1</dd>"), "{}", home.html);
    assert!(home.html.contains("<dt>Ambassador applications</dt><dd>1</dd>"));
    assert!(home.html.contains("Ambassador enrolled") && home.html.contains("Referral registered"), "{}", home.html);
    assert!(!home.html.contains("Program updated"), "staff see what staff work on");
    assert!(home.html.contains("Team member session started"), "and their own sign-in");
    assert!(!home.html.contains("lou@example.com") && !home.html.contains("Reed"), "no client data");
    let home = finance.console_sign_in("fin@clinic.test").await;
    assert!(home.html.contains("Program updated") && !home.html.contains("Ambassador enrolled"), "{}", home.html);
    assert!(!home.html.contains(amb["id"].as_str().unwrap()));
    let home = admin.console_sign_in("boss@clinic.test").await;
    assert!(home.html.contains("Program updated") && home.html.contains("Ambassador enrolled"));
    assert!(home.html.contains("Boss (admin)"), "who did it, by name: {}", home.html);

    // More than a page of activity: older pages follow.
    for i in 0..25 {
        app.enrol_named(&app.admin_key, &format!("Amb {i}")).await;
    }
    let home = admin.get("/console").await;
    let older = home.html.split("href=\"/console?cursor=").nth(1).expect("a link to older activity");
    let cursor = &older[..older.find('"').unwrap()];
    let page2 = admin.get(&format!("/console?cursor={cursor}")).await;
    assert_eq!(page2.status, StatusCode::OK);
    assert!(page2.html.contains("Newest activity") && page2.html.contains("<tbody>"), "{}", page2.html);
    assert_eq!(admin.get("/console?cursor=garbage").await.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A staff member's pages merge the record types staff see with their own record, newest
    // first: every event once, across the pages, down to their own sign-in, the oldest.
    let (mut pages, mut path, mut seen) = (0, "/console".to_owned(), String::new());
    loop {
        let page = staff.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.push_str(&page.html);
        pages += 1;
        match page.html.split("href=\"/console?cursor=").nth(1) {
            Some(rest) => path = format!("/console?cursor={}", &rest[..rest.find('"').unwrap()]),
            None => break,
        }
    }
    assert!(pages >= 2, "more than a page");
    assert_eq!(seen.matches("Team member session started").count(), 1, "{seen}");
    assert_eq!(seen.matches("Ambassador enrolled").count(), 26, "{seen}");
    assert!(!seen.contains("Program updated"));
}
