//! The server-rendered pages over HTTP, as a browser without JavaScript uses them: a
//! cookie-keeping client that does not follow redirects, posting HTML forms.

use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const ALERTS: &str = "alerts@clinic.test";

/// One browser: keeps its cookies, shows redirects instead of following them.
pub struct Visitor<'a> {
    pub app: &'a TestApp,
    pub client: reqwest::Client,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    pub async fn of(res: Response) -> Self {
        let (status, headers) = (res.status(), res.headers().clone());
        Self { status, headers, html: res.text().await.unwrap() }
    }

    /// The CSRF token of the (first) form on the page.
    pub fn csrf(&self) -> String {
        input_value(&self.html, "csrf").expect("the page has a form with a CSRF token")
    }

    pub fn location(&self) -> &str {
        self.headers.get(LOCATION).expect("a redirect").to_str().unwrap()
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// An HTML page with the pages' safety headers.
    pub fn assert_html(&self) {
        let h = |n| self.headers.get(n).map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned());
        assert_eq!(h(CONTENT_TYPE).as_deref(), Some("text/html; charset=utf-8"), "{}", self.html);
        assert_eq!(h(CACHE_CONTROL).as_deref(), Some("no-store"));
        let csp = h(CONTENT_SECURITY_POLICY).unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(self.headers.get("referrer-policy").unwrap(), "no-referrer");
        assert!(self.html.starts_with("<!doctype html>"));
        assert!(self.html.contains("<h1>"), "every page has a heading");
        self.assert_assets_self_hosted();
    }

    /// Every stylesheet, script and image the page loads comes from this service (a path on
    /// the same origin), as the CSP's `'self'` demands: nothing from another host, not even
    /// over https. The page has its stylesheet, so the check is never vacuous.
    fn assert_assets_self_hosted(&self) {
        let mut stylesheets = 0;
        for (tag, attr) in [("<link", "href"), ("<script", "src"), ("<img", "src")] {
            for (at, _) in self.html.match_indices(tag) {
                let element = &self.html[at..at + self.html[at..].find('>').expect("tag closes")];
                let Some(url) = attribute(element, attr) else { continue };
                assert!(url.starts_with('/') && !url.starts_with("//"), "{element} loads from elsewhere");
                if element.contains("rel=\"stylesheet\"") {
                    stylesheets += 1;
                }
            }
        }
        assert!(stylesheets > 0, "the page has a stylesheet: {}", self.html);
    }
}

/// An attribute's value in one HTML start tag (double-quoted, as the templates write them).
fn attribute(element: &str, name: &str) -> Option<String> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = element[start..].find('"')?;
    Some(element[start..start + end].to_owned())
}

/// The `value` of the input named `name` (attributes as the templates write them).
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + "value=\"".len();
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_owned())
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder().cookie_store(true).redirect(redirect::Policy::none()).build().unwrap();
        Self { app, client }
    }

    pub async fn get(&self, path: &str) -> Page {
        Page::of(self.client.get(self.app.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Page::of(self.client.post(self.app.url(path)).form(fields).send().await.unwrap()).await
    }

    /// Opens the page, fills its form (with its CSRF token) and sends it.
    pub async fn submit(&self, page_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(page_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        let token = page.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }
}

impl Visitor<'_> {
    /// Signs in through the newest e-mailed link; returns the dashboard.
    pub async fn sign_in(&self, email: &str) -> Page {
        let res = self.submit("/portal", "/portal/login", &[("email", email)]).await;
        assert_eq!(res.location(), "/portal/check-email");
        let link = self.app.login_links(email).await.remove(0);
        let confirm = self.get(&link_path(&link)).await;
        let token = input_value(&confirm.html, "token").unwrap();
        let res = self.post("/portal/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
        assert_eq!(res.location(), "/portal", "{}", res.html);
        self.get("/portal").await
    }
}

/// The path and query of an e-mailed link (tests serve on another port than `public_url`).
pub fn link_path(link: &str) -> String {
    let after_scheme = link.split_once("://").unwrap().1;
    after_scheme[after_scheme.find('/').unwrap()..].to_owned()
}

fn with_alerts(s: &mut vouch::config::Settings) {
    s.email.brand_name = "Clinic & Care".into();
    s.email.staff_alert_to = ALERTS.into();
}

fn code_of(amb: &Value) -> String {
    amb["codes"][0]["code"].as_str().unwrap().to_owned()
}

async fn staff_referrals(app: &TestApp) -> Vec<Value> {
    let list: Value = app.get("/v1/referrals", &app.admin_key).await.json().await.unwrap();
    list["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_share_link_page_shows_the_offer_and_the_name_only_if_the_ambassador_chose_to() {
    let app = spawn_app_with(with_alerts).await;
    app.set_program(json!({ "currency": "EUR", "client_offer": "A free <consultation> & scalp check" })).await;
    let shy = app
        .enrol(&app.admin_key, json!({ "name": "Sam Shy", "email": "sam@example.com", "display_name": "Sammy" }))
        .await;
    let open = app
        .enrol(
            &app.admin_key,
            json!({ "name": "Ann Lee", "email": "ann@example.com", "display_name": "Ann", "show_name_to_referrals": true }),
        )
        .await;
    let v = Visitor::new(&app);

    let page = v.get(&format!("/r/{}", code_of(&shy))).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_html();
    assert!(page.html.contains("Clinic &amp; Care"), "brand, escaped");
    assert!(page.html.contains("A free &lt;consultation&gt; &amp; scalp check"), "offer, escaped");
    assert!(page.html.contains("A friend invited you"));
    assert!(!page.html.contains("Sammy") && !page.html.contains("Sam Shy"), "no name without opt-in");
    for field in ["first_name", "last_name", "email", "phone", "consent_to_contact", "share_name_with_ambassador"] {
        assert!(page.html.contains(&format!("name=\"{field}\"")), "{field}");
        assert!(page.html.contains(&format!("for=\"f-{field}\"")), "{field} has a label");
    }
    let cookie = page.set_cookie("vouch_csrf").expect("a CSRF cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"), "{cookie}");

    // Any case, without the hyphen: the code as the ambassador typed it.
    let code = code_of(&open);
    let page = v.get(&format!("/r/{}", code.replace('-', "").to_lowercase())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Ann invited you"));
    assert!(page.html.contains(&format!("action=\"/r/{code}\"")));
    assert!(page.set_cookie("vouch_csrf").is_none(), "the visitor keeps their nonce");

    for unknown in ["NOPE-NOPE", "x".repeat(100).as_str()] {
        let page = v.get(&format!("/r/{unknown}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        page.assert_html();
        assert!(page.html.contains("This link is not active"));
        assert!(!page.html.contains("<form"), "no form for an unknown code");
    }
    // A deactivated code is not active either.
    app.post(&format!("/v1/codes/{code}/deactivate"), &app.admin_key, &json!({})).await;
    assert_eq!(v.get(&format!("/r/{code}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_friend_leaves_their_details_and_staff_see_the_referral() {
    let app = spawn_app_with(with_alerts).await;
    let amb = app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com" })).await;
    let code = code_of(&amb);
    let v = Visitor::new(&app);
    let res = v
        .submit(
            &format!("/r/{}", code.to_lowercase()),
            &format!("/r/{code}"),
            &[
                ("first_name", "Maria"),
                ("last_name", "Garcia"),
                ("email", "Maria@Example.com"),
                ("phone", ""),
                ("consent_to_contact", "yes"),
                ("share_name_with_ambassador", "yes"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    assert_eq!(res.location(), format!("/r/{code}/thanks"));
    let thanks = v.get(res.location()).await;
    assert_eq!(thanks.status, StatusCode::OK);
    thanks.assert_html();
    assert!(thanks.html.contains("Thank you"));

    let items = staff_referrals(&app).await;
    assert_eq!(items.len(), 1);
    let r = &items[0];
    assert_eq!(r["source"], "public_form");
    assert_eq!(r["status"], "registered");
    assert_eq!(r["client_email"], "maria@example.com");
    assert_eq!(r["share_name_with_ambassador"], true);
    assert_eq!(app.audit_actions(r["id"].as_str().unwrap())[0], "referral.registered");
    assert_eq!(app.mail_to(ALERTS).await.len(), 1, "staff alerted");
    assert_eq!(told_of_maria(&app).await, 0, "the ambassador hears of it at the friend's first session");

    // The same friend again: the same neutral page, never "already referred".
    let again = v
        .submit(
            &format!("/r/{code}"),
            &format!("/r/{code}"),
            &[("first_name", "Maria"), ("email", "maria@example.com"), ("consent_to_contact", "yes")],
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), format!("/r/{code}/thanks"));
    let items = staff_referrals(&app).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["status"], "rejected", "kept for staff as a duplicate");

    let accepted = items[1]["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/referrals/{accepted}/sessions"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(told_of_maria(&app).await, 1, "told once the clinic has seen the friend");
}

async fn told_of_maria(app: &TestApp) -> usize {
    app.mail_to("ann@example.com").await.iter().filter(|m| m.everything().contains("Maria G.")).count()
}

#[tokio::test]
async fn bad_intake_input_shows_the_form_again_with_the_errors_and_stores_nothing() {
    let app = spawn_app().await;
    let amb = app.enrol_named(&app.admin_key, "Ann Lee").await;
    let code = code_of(&amb);
    let v = Visitor::new(&app);
    let before = app.counts();
    let res = v
        .submit(
            &format!("/r/{code}"),
            &format!("/r/{code}"),
            &[("first_name", ""), ("last_name", "<b>Bold</b>"), ("email", ""), ("phone", "")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    res.assert_html();
    assert!(res.html.contains("Please check the highlighted fields"));
    assert!(res.html.contains("id=\"f-first_name-error\""));
    assert!(res.html.contains("id=\"f-email-error\""));
    assert!(res.html.contains("id=\"f-consent_to_contact-error\""));
    assert!(res.html.contains("aria-invalid=\"true\""));
    assert!(
        res.html.contains("value=\"&lt;b&gt;Bold&lt;&#x2f;b&gt;\"")
            || res.html.contains("value=\"&lt;b&gt;Bold&lt;/b&gt;\"")
    );
    assert!(!res.html.contains("<b>Bold"), "values are escaped");
    assert!(res.html.contains("name=\"csrf\""), "the form can be sent again");

    let res = v
        .submit(
            &format!("/r/{code}"),
            &format!("/r/{code}"),
            &[("first_name", "Mo"), ("email", "not-an-email"), ("consent_to_contact", "yes")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("id=\"f-email-error\"") && !res.html.contains("id=\"f-first_name-error\""));
    assert!(res.html.contains("value=\"Mo\"") && res.html.contains("value=\"not-an-email\""));
    assert!(res
        .html
        .contains("id=\"f-consent_to_contact\" name=\"consent_to_contact\" type=\"checkbox\" value=\"yes\" checked"));
    assert_eq!(app.counts(), before, "nothing stored");
}

#[tokio::test]
async fn form_posts_without_a_valid_csrf_token_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let amb = app.enrol_named(&app.admin_key, "Ann Lee").await;
    let code = code_of(&amb);
    let fields = [("first_name", "Maria"), ("email", "maria@example.com"), ("consent_to_contact", "yes")];
    let before = app.counts();

    let v = Visitor::new(&app);
    let page = v.get(&format!("/r/{code}")).await;
    // No token at all.
    let res = v.post(&format!("/r/{code}"), &fields).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    res.assert_html();
    assert!(res.html.contains("This form has expired"));
    // A token that is not this visitor's (another visitor's, or made up).
    let other = Visitor::new(&app);
    let other_token = other.get(&format!("/r/{code}")).await.csrf();
    for token in [other_token.as_str(), "forged", ""] {
        let mut all = vec![("csrf", token)];
        all.extend_from_slice(&fields);
        assert_eq!(v.post(&format!("/r/{code}"), &all).await.status, StatusCode::FORBIDDEN, "{token}");
    }
    // The right token without the cookie it belongs to (a cross-site post from a fresh browser).
    let bare = Visitor::new(&app);
    let token = page.csrf();
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(&fields);
    assert_eq!(bare.post(&format!("/r/{code}"), &all).await.status, StatusCode::FORBIDDEN);
    for path in ["/apply", "/portal/login", "/portal/session", "/portal/profile"] {
        let res = bare.post(path, &[("csrf", token.as_str()), ("email", "ann.lee@example.com"), ("name", "X")]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Signing out without a session has nothing to protect: it only clears the cookie.
    assert_eq!(bare.post("/portal/logout", &[]).await.location(), "/portal");
    assert_eq!(app.counts(), before, "nothing stored");
    // The token works with its own cookie.
    assert_eq!(v.post(&format!("/r/{code}"), &all).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_application_form_creates_an_applied_ambassador_and_alerts_staff() {
    let app = spawn_app_with(with_alerts).await;
    let v = Visitor::new(&app);
    let page = v.get("/apply").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_html();

    let before = app.counts();
    let res = v.submit("/apply", "/apply", &[("name", ""), ("email", "pat@"), ("message", "<i>hi</i>")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("id=\"f-name-error\"") && res.html.contains("id=\"f-email-error\""));
    assert!(res.html.contains("&lt;i&gt;hi&lt;"), "message kept, escaped");
    assert_eq!(app.counts(), before, "nothing stored");

    let res = v
        .submit(
            "/apply",
            "/apply",
            &[
                ("name", "Pat Doe"),
                ("email", "Pat@Example.com"),
                ("display_name", "Pat"),
                ("show_name_to_referrals", "yes"),
                ("message", "Loved my results"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    assert_eq!(res.location(), "/apply/thanks");
    let thanks = v.get("/apply/thanks").await;
    assert_eq!(thanks.status, StatusCode::OK);
    assert!(thanks.html.contains("Thank you for applying"));

    let list: Value = app.get("/v1/ambassadors?status=applied", &app.admin_key).await.json().await.unwrap();
    let amb = &list["items"][0];
    assert_eq!(amb["email"], "pat@example.com");
    assert_eq!(amb["show_name_to_referrals"], true);
    assert_eq!(amb["application_message"], "Loved my results");
    assert_eq!(app.mail_to(ALERTS).await.len(), 1, "staff alerted");

    // A known address gets the same answer and changes nothing.
    let before = app.counts();
    let res = v.submit("/apply", "/apply", &[("name", "Someone"), ("email", "pat@example.com")]).await;
    assert_eq!(res.location(), "/apply/thanks");
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn an_ambassador_signs_in_sees_masked_referrals_edits_the_profile_and_signs_out() {
    let app = spawn_app().await;
    app.set_program(json!({ "currency": "EUR" })).await;
    let amb = app
        .enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "phone": "+1 415 555 0100" }))
        .await;
    let (id, code) = (amb["id"].as_str().unwrap().to_owned(), code_of(&amb));
    for (first, last, email, phone, consent) in [
        ("Maria", "Garcia", "maria@example.com", "+1 415 555 0199", true),
        ("Secret", "Person", "secret@example.com", "+1 415 555 0188", false),
    ] {
        let res = app
            .post(
                "/v1/referrals",
                &app.admin_key,
                &json!({ "code": code, "first_name": first, "last_name": last, "email": email,
                         "phone": phone, "share_name_with_ambassador": consent }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let _ = res.text().await;
    }
    let v = Visitor::new(&app);
    let login = v.get("/portal").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_html();
    assert!(login.html.contains("Ambassador sign-in"));

    // Opening the link does not use it up (mail scanners open links too): the button does.
    let res = v.submit("/portal", "/portal/login", &[("email", "ann@example.com")]).await;
    assert_eq!(res.location(), "/portal/check-email");
    assert!(v.get("/portal/check-email").await.html.contains("Check your e-mail"));
    let link = app.login_links("ann@example.com").await.remove(0);
    let confirm = v.get(&link_path(&link)).await;
    confirm.assert_html();
    let again = v.get(&link_path(&link)).await;
    let token = input_value(&again.html, "token").unwrap();
    let res = v.post("/portal/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let cookie = res.set_cookie("vouch_session").unwrap();
    assert!(cookie.starts_with("vouch_session=vp_"), "{cookie}");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/portal", "Max-Age=2592000"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "public_url is http here");
    // The link works once.
    let reused = v.post("/portal/session", &[("csrf", &confirm.csrf()), ("token", &token)]).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reused.html.contains("invalid, expired or already used"));

    let dash = v.get("/portal").await;
    assert_eq!(dash.status, StatusCode::OK);
    dash.assert_html();
    assert!(dash.html.contains("Hello, Ann Lee"));
    assert!(dash.html.contains(&format!("value=\"{}/r/{code}\"", app.settings.public_url())), "share link");
    assert!(dash.html.contains("data-copy=\"share-1\""), "copy button");
    assert!(dash.html.contains("0.00 EUR"), "balance");
    // Names exactly as the API shows them to the ambassador; never contact details.
    let session = app.portal_session("ann@example.com").await;
    let mine: Value = app.get("/v1/me/referrals", &session).await.json().await.unwrap();
    let labels: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&"Maria G."));
    for label in labels {
        let escaped = label.replace('&', "&amp;");
        assert!(dash.html.contains(&format!("<span class=\"who\">{escaped}</span>")), "{label}");
    }
    for secret in ["Garcia", "maria@example.com", "Secret", "Person", "secret@", "555 01", "55501"] {
        assert!(!dash.html.contains(secret), "dashboard shows {secret}");
    }
    assert!(dash.html.contains("Registered"));

    // Profile: bad payout details are shown and nothing changes.
    let profile = v.get("/portal/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    profile.assert_html();
    let before = app.counts();
    let token = profile.csrf();
    let res = v
        .post(
            "/portal/profile",
            &[("csrf", &token), ("payout_method", "paypal"), ("paypal_email", "nope"), ("display_name", "Annie")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("id=\"f-payout_method-email-error\""), "{}", res.html);
    assert!(res.html.contains("value=\"Annie\""));
    assert_eq!(app.counts(), before);
    // Another visitor's token is refused.
    let res = v.post("/portal/profile", &[("csrf", &login.csrf()), ("payout_method", "store_credit")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(app.counts(), before);

    let res = v
        .post(
            "/portal/profile",
            &[
                ("csrf", &token),
                ("display_name", "Annie"),
                ("show_name_to_referrals", "yes"),
                ("payout_method", "paypal"),
                ("paypal_email", "Ann.Pays@Example.com"),
                ("notify_referral_updates", "yes"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    assert_eq!(res.location(), "/portal/profile?saved=1");
    let saved = v.get(res.location()).await;
    assert!(saved.html.contains("Your changes are saved"));
    assert!(saved.html.contains("value=\"ann.pays@example.com\""));
    let me: Value = app.get("/v1/me", &session).await.json().await.unwrap();
    assert_eq!(me["payout_method"], json!({ "type": "paypal", "email": "ann.pays@example.com" }));
    assert_eq!(me["display_name"], "Annie");
    assert_eq!(me["show_name_to_referrals"], true);
    assert_eq!(me["notification_preferences"], json!({ "referral_updates": true, "reward_updates": false }));
    assert!(app.audit_actions(&id).iter().any(|a| a == "ambassador.updated"), "{:?}", app.audit_actions(&id));

    // Sign out: the cookie is cleared and the session ends for good.
    let secret = cookie.split(';').next().unwrap().trim_start_matches("vouch_session=").to_owned();
    let res = v.post("/portal/logout", &[("csrf", &token)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/portal?signed_out=1");
    assert!(res.set_cookie("vouch_session").unwrap().contains("Max-Age=0"));
    let after = v.get("/portal?signed_out=1").await;
    assert!(after.html.contains("You are signed out") && after.html.contains("Ambassador sign-in"));
    let stolen = app
        .client
        .get(app.url("/portal"))
        .header("cookie", format!("vouch_session={secret}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stolen.contains("Ambassador sign-in") && !stolen.contains("Hello, Ann"), "the old cookie is dead");
    assert_eq!(v.get("/portal/profile").await.location(), "/portal");
}

#[tokio::test]
async fn sign_in_refuses_bad_addresses_and_links_and_never_reveals_who_is_an_ambassador() {
    let app = spawn_app().await;
    let v = Visitor::new(&app);
    let before = app.outbox_count();
    let res = v.submit("/portal", "/portal/login", &[("email", "not an email")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("id=\"f-email-error\"") && res.html.contains("value=\"not an email\""));
    let res = v.submit("/portal", "/portal/login", &[("email", "nobody@example.com")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/portal/check-email", "same answer for strangers");
    assert_eq!(app.outbox_count(), before);

    let page = v.get("/portal/login?token=made-up").await;
    let res = v.post("/portal/session", &[("csrf", &page.csrf()), ("token", "made-up")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("invalid, expired or already used"));
    assert!(res.set_cookie("vouch_session").is_none());
    assert_eq!(v.get("/portal/login").await.location(), "/portal", "no token: back to sign-in");
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let app = spawn_app_with(|s| s.server.public_url = "https://refer.clinic.test".into()).await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com" })).await;
    let client = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
    let res = client.get(app.url("/portal")).send().await.unwrap();
    let page = Page::of(res).await;
    let nonce = page.set_cookie("vouch_csrf").unwrap();
    assert!(nonce.contains("Secure") && nonce.contains("HttpOnly"), "{nonce}");
    // Sign in by hand (a Secure cookie is not sent back over plain http by a cookie store).
    let nonce_pair = nonce.split(';').next().unwrap().to_owned();
    let post = |path: &str, fields: Vec<(&str, String)>| {
        client.post(app.url(path)).header("cookie", nonce_pair.clone()).form(&fields).send()
    };
    post("/portal/login", vec![("csrf", page.csrf()), ("email", "ann@example.com".into())]).await.unwrap();
    let link = app.login_links("ann@example.com").await.remove(0);
    assert!(link.starts_with("https://refer.clinic.test/portal/login?token="));
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let res = post("/portal/session", vec![("csrf", page.csrf()), ("token", token)]).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = Page::of(res).await.set_cookie("vouch_session").unwrap();
    assert!(session.contains("Secure") && session.contains("HttpOnly") && session.contains("SameSite=Lax"));
}

#[tokio::test]
async fn public_form_posts_are_rate_limited_with_an_html_page() {
    let app = spawn_app_with(|s| s.rate_limit.public_per_minute = 2).await;
    let v = Visitor::new(&app);
    let page = v.get("/apply").await;
    let fields = [("csrf", page.csrf()), ("name", String::new()), ("email", String::new())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        assert_eq!(v.post("/apply", &fields).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let res = v.post("/apply", &fields).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    res.assert_html();
    assert!(res.headers.get("retry-after").is_some());
    assert!(res.html.contains("Too many attempts"));
    assert_eq!(v.get("/apply").await.status, StatusCode::OK, "reading pages is not limited");
}

#[tokio::test]
async fn assets_are_served_from_the_binary_and_pages_are_not_in_the_api_document() {
    let app = spawn_app().await;
    let v = Visitor::new(&app);
    let css = app.client.get(app.url("/assets/vouch.css")).send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains(".primary"));
    let js = app.client.get(app.url("/assets/vouch.js")).send().await.unwrap();
    assert_eq!(js.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(js.text().await.unwrap().contains("navigator.clipboard"));
    // Pages reference nothing outside this server.
    for path in ["/apply", "/portal"] {
        let html = v.get(path).await.html;
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "{path}");
    }
    let res = app.client.put(app.url("/apply")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    // The API keeps problem+json; the OpenAPI document covers /v1 only.
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for page in ["/r/", "/apply", "/portal", "/assets"] {
        assert!(!paths.iter().any(|p| p.starts_with(page)), "{page} in {paths:?}");
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_balance_and_the_payout_history() {
    let app = spawn_app().await;
    app.set_program(json!({ "currency": "EUR", "holding_days": 0 })).await;
    let amb = app
        .enrol(
            &app.admin_key,
            json!({ "name": "Ann <b>Lee</b>", "email": "ann@example.com", "display_name": "<script>alert(1)</script>",
                    "show_name_to_referrals": true, "payout_method": { "type": "paypal", "email": "ann@example.com" } }),
        )
        .await;
    let code = code_of(&amb);
    // The display name a friend sees is escaped too.
    let landing = Visitor::new(&app).get(&format!("/r/{code}")).await;
    assert!(
        landing.html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; invited you")
            || landing.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; invited you")
    );
    assert!(!landing.html.contains("<script>alert"));

    for client in ["Jamie", "Kim"] {
        let id = app.referral_in_treatment(&app.admin_key, &code, client, crate::money_support::today()).await;
        app.complete(&app.admin_key, &id, crate::money_support::today(), None).await;
    }
    let res = app.post("/v1/payouts", &app.admin_key, &json!({})).await;
    let batch: Value = res.json().await.unwrap();
    let batch_id = batch["id"].as_str().expect("a draft batch");
    crate::payouts::lock_batch(&app, &app.admin_key, batch_id).await;
    let res =
        app.post(&format!("/v1/payouts/{batch_id}/mark-paid"), &app.admin_key, &json!({ "reference": "PP-1" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let _ = res.text().await;
    let session = app.portal_session("ann@example.com").await;
    let payouts: Value = app.get("/v1/me/payouts", &session).await.json().await.unwrap();
    let line = &payouts["items"][0];

    let v = Visitor::new(&app);
    let dash = v.sign_in("ann@example.com").await;
    assert_eq!(dash.status, StatusCode::OK, "{}", dash.html);
    assert!(dash.html.contains("Hello, Ann &lt;b&gt;Lee&lt;"), "escaped name");
    assert!(!dash.html.contains("<b>Lee") && !dash.html.contains("<script>alert"));
    assert!(dash.html.contains("<dt>Paid</dt><dd>200.00 EUR</dd>"), "{}", dash.html);
    assert!(dash.html.contains("<dt>Payable</dt><dd>0.00 EUR</dd>"));
    let paid_on = &line["paid_at"].as_str().unwrap()[..10];
    let batch = line["batch"].as_str().unwrap();
    assert!(dash.html.contains(&format!("{batch} · Paypal · paid {paid_on}")), "{}", dash.html);
    assert!(dash.html.contains("<span class=\"badge s-paid\">Paid</span>"));
    assert!(!dash.html.contains("Add your payout details"), "payout details are set");
}

#[tokio::test]
async fn oversized_form_posts_get_a_413_page() {
    let app = spawn_app().await;
    let v = Visitor::new(&app);
    let token = v.get("/apply").await.csrf();
    let before = app.counts();
    let huge = "x".repeat(70 * 1024);
    let res = v.post("/apply", &[("csrf", &token), ("name", &huge), ("email", "pat@example.com")]).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    res.assert_html();
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn share_link_lookups_are_rate_limited_like_the_api_lookup() {
    let app = spawn_app_with(|s| s.rate_limit.public_per_minute = 2).await;
    let v = Visitor::new(&app);
    for _ in 0..2 {
        assert_eq!(v.get("/r/NOPE-NOPE").await.status, StatusCode::NOT_FOUND);
    }
    let res = v.get("/r/NOPE-NOPE").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    res.assert_html();
}

#[tokio::test]
async fn the_sign_in_form_shares_the_login_e_mail_limit() {
    let app = spawn_app_with(|s| s.rate_limit.login_emails_per_hour = 1).await;
    app.enrol(&app.admin_key, json!({ "name": "Form User", "email": "form.user@example.com" })).await;
    let v = Visitor::new(&app);
    for _ in 0..3 {
        let res = v.submit("/portal", "/portal/login", &[("email", "form.user@example.com")]).await;
        assert_eq!(res.location(), "/portal/check-email", "the same answer every time");
    }
    assert_eq!(app.login_links("form.user@example.com").await.len(), 1);
}
