//! Staff → Ambassadors over HTTP: the list with its filters, enrolment, an ambassador's page
//! (codes, referrals as first name and initial, balance), the lifecycle steps after their
//! confirmation pages, adding and deactivating codes and the printable share page with its QR
//! codes, editing the profile; the role on every page, CSRF on every form, the API's refusals
//! on the forms with nothing stored.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{ambassadors, referral_codes};

use crate::helpers::{spawn_app, TestApp};
use crate::web::Visitor;

impl TestApp {
    /// An ambassador's status and status reason, read from the database.
    pub fn ambassador_state(&self, id: &str) -> (String, Option<String>) {
        let mut conn = self.pool.get().unwrap();
        ambassadors::table.find(id).select((ambassadors::status, ambassadors::status_reason)).first(&mut conn).unwrap()
    }

    /// An ambassador's codes as (code, active), oldest first.
    pub fn codes_of(&self, id: &str) -> Vec<(String, bool)> {
        let mut conn = self.pool.get().unwrap();
        referral_codes::table
            .filter(referral_codes::ambassador_id.eq(id))
            .order(referral_codes::id.asc())
            .select((referral_codes::code, referral_codes::active))
            .load(&mut conn)
            .unwrap()
    }

    /// The id of the ambassador with this e-mail (through the API, as staff search).
    pub async fn ambassador_id(&self, email: &str) -> String {
        let list: Value = self.get(&format!("/v1/ambassadors?q={email}"), &self.admin_key).await.json().await.unwrap();
        list["items"][0]["id"].as_str().expect("the ambassador exists").to_owned()
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A clinic with an admin, a staff and a finance member; Ann Lee (active, code ANN1) and Pat
/// Doe's application. Returns the app, Ann's id, her code's id and Pat's id.
async fn clinic() -> (TestApp, String, String, String) {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let ann = app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    app.public_application("Pat Doe", "pat@example.com").await;
    let pat = app.ambassador_id("pat@example.com").await;
    (app, id_of(&ann), id_of(&ann["codes"][0]), pat)
}

#[tokio::test]
async fn ambassador_pages_are_for_staff_and_admins_and_every_form_checks_role_and_csrf() {
    let (app, ann, code, pat) = clinic().await;
    let (admin, staff, finance, nobody) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    admin.console_sign_in("boss@clinic.test").await;
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    assert!(staff_home.html.contains("href=\"/console/ambassadors\""), "staff see Ambassadors in the navigation");
    assert!(!finance_home.html.contains("href=\"/console/ambassadors\""), "finance do not");
    assert!(staff_home.html.contains(&format!("href=\"/console/ambassadors/{pat}\"")), "the application, linked");

    let pages = [
        "/console/ambassadors".to_owned(),
        "/console/ambassadors?status=active&q=ann".to_owned(),
        "/console/ambassadors/new".to_owned(),
        format!("/console/ambassadors/{ann}"),
        format!("/console/ambassadors/{ann}/share"),
        format!("/console/ambassadors/{ann}/suspend"),
        format!("/console/ambassadors/{ann}/close"),
        format!("/console/ambassadors/{ann}/reactivate"),
        format!("/console/ambassadors/{pat}/approve"),
        format!("/console/ambassadors/{pat}/decline"),
        format!("/console/ambassadors/{ann}/codes/{code}/deactivate"),
    ];
    for path in &pages {
        for (who, v) in [("admin", &admin), ("staff", &staff)] {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{who} on {path}: {}", page.html);
            page.assert_html();
            assert!(page.html.contains("aria-current=\"page\">Ambassadors"), "{who} on {path}");
        }
        let page = finance.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "finance on {path}");
        assert!(page.html.contains("Not for your role") && !page.html.contains("ann@example.com"), "{}", page.html);
        let page = nobody.get(path).await;
        assert_eq!(page.location(), "/console/sign-in", "nobody on {path}");
    }
    assert_eq!(staff.get("/console/ambassadors/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(staff.get("/console/ambassadors/nope/share").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        staff.get(&format!("/console/ambassadors/{pat}/codes/{code}/deactivate")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(staff.get("/console/ambassadors?status=happy").await.status, StatusCode::UNPROCESSABLE_ENTITY);

    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/ambassadors".into(), vec![("name", "Bea Cole"), ("email", "bea@example.com")]),
        (format!("/console/ambassadors/{ann}/codes"), vec![("code", "ANN2")]),
        (format!("/console/ambassadors/{ann}/profile"), vec![("name", "Hacked"), ("email", "hacked@example.com")]),
        (format!("/console/ambassadors/{ann}/codes/{code}/deactivate"), vec![]),
        (format!("/console/ambassadors/{ann}/suspend"), vec![("reason", "paused")]),
        (format!("/console/ambassadors/{ann}/close"), vec![("reason", "moved away")]),
        (format!("/console/ambassadors/{pat}/approve"), vec![]),
        (format!("/console/ambassadors/{pat}/decline"), vec![]),
    ];
    let before = app.counts();
    let finance_token = finance_home.csrf();
    let visitor_token = nobody.get("/console/sign-in").await.csrf();
    for (path, fields) in &posts {
        let res = finance.post_with(path, Some(&finance_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "finance posting {path}");
        let res = nobody.post_with(path, Some(&visitor_token), fields).await;
        assert_eq!(res.location(), "/console/sign-in", "nobody posting {path}");
        let res = staff.post_with(path, None, fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token on {path}");
        let res = staff.post_with(path, Some(&finance_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "another member's CSRF token on {path}");
    }
    assert_eq!(app.counts(), before, "nothing stored");
    assert_eq!(app.ambassador_state(&ann).0, "active");
    assert_eq!(app.ambassador_state(&pat).0, "applied");
    assert_eq!(app.codes_of(&ann), vec![("ANN1".to_owned(), true)]);
    let ann_now: Value = app.get(&format!("/v1/ambassadors/{ann}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!((ann_now["name"].as_str(), ann_now["email"].as_str()), (Some("Ann Lee"), Some("ann@example.com")));
}

#[tokio::test]
async fn staff_enrol_an_ambassador_on_the_form_with_the_api_s_refusals_and_nothing_stored() {
    let (app, _, _, _) = clinic().await;
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;
    let form = staff.get("/console/ambassadors/new").await;
    assert!(form.html.contains("name=\"referral_updates\" type=\"checkbox\" value=\"yes\" checked"), "{}", form.html);
    let token = form.csrf();
    let before = app.counts();

    // Every bad field at once, what was typed kept.
    let res = staff
        .post_with(
            "/console/ambassadors",
            Some(&token),
            &[("name", ""), ("email", "bea at example"), ("show_name_to_referrals", "yes"), ("code", "x")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    for message in [
        "Must not be empty.",
        "Must be an e-mail address like name@example.com.",
        "Is required when show_name_to_referrals is true.",
        "Must be 3 to 32 characters.",
    ] {
        assert!(res.html.contains(message), "{message}: {}", res.html);
    }
    assert!(res.html.contains("value=\"bea at example\""), "what was typed stays");
    // A payout method without its details; a taken e-mail; a taken code.
    let res = staff
        .post_with(
            "/console/ambassadors",
            Some(&token),
            &[("name", "Bea Cole"), ("email", "bea@example.com"), ("payout_method", "paypal"), ("payout_email", "")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("id=\"f-payout_method-email-error\""), "next to the PayPal field: {}", res.html);
    let res = staff
        .post_with("/console/ambassadors", Some(&token), &[("name", "Ann Again"), ("email", "ANN@example.com")])
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("An ambassador with this e-mail address already exists."), "{}", res.html);
    let res = staff
        .post_with(
            "/console/ambassadors",
            Some(&token),
            &[("name", "Bea"), ("email", "bea@example.com"), ("code", "ann-1")],
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("This code is already taken"), "{}", res.html);
    assert_eq!(app.counts(), before, "nothing stored");

    let res = staff
        .post_with(
            "/console/ambassadors",
            Some(&token),
            &[
                ("name", "Bea Cole"),
                ("email", "Bea@Example.com"),
                ("phone", "+1 415 555 0199"),
                ("payout_method", "paypal"),
                ("payout_email", "bea@pay.example"),
                ("referral_updates", "yes"),
                ("code", "bea10"),
                ("notes", "Met at the open day"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    let id = app.ambassador_id("bea@example.com").await;
    assert_eq!(res.location(), format!("/console/ambassadors/{id}"));
    let page = staff.get(res.location()).await;
    assert!(
        page.html.contains("Bea Cole is enrolled with code BEA10. The welcome e-mail is on its way."),
        "{}",
        page.html
    );
    for shown in ["bea@example.com", "PayPal: bea@pay.example", "Met at the open day", "Reward updates: no", "BEA10"] {
        assert!(page.html.contains(shown), "{shown}: {}", page.html);
    }
    let after = app.counts();
    assert_eq!(
        (after.ambassadors, after.codes, after.outbox),
        (before.ambassadors + 1, before.codes + 1, before.outbox + 1)
    );
    let detail: Value = app.get(&format!("/v1/ambassadors/{id}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(detail["notification_preferences"], json!({ "referral_updates": true, "reward_updates": false }));
    assert_eq!(app.audit_actions(&id), vec!["ambassador.enrolled"]);
}

#[tokio::test]
async fn staff_approve_suspend_reactivate_and_close_after_a_confirmation_with_the_reason_the_api_wants() {
    let (app, ann, _, pat) = clinic().await;
    let staff = Visitor::new(&app);
    let token = staff.console_sign_in("sam@clinic.test").await.csrf();

    // Pat's application: approving issues a code and the welcome e-mail.
    let page = staff.get(&format!("/console/ambassadors/{pat}")).await;
    assert!(page.html.contains(&format!("href=\"/console/ambassadors/{pat}/approve\"")), "{}", page.html);
    assert!(page.html.contains("approving the application issues one"), "no code yet: {}", page.html);
    let confirm = staff.get(&format!("/console/ambassadors/{pat}/approve")).await;
    assert!(confirm.html.contains("Approve the application of Pat Doe?"), "{}", confirm.html);
    let res = staff.post_with(&format!("/console/ambassadors/{pat}/approve"), Some(&token), &[("reason", "")]).await;
    assert_eq!(res.location(), format!("/console/ambassadors/{pat}"), "{}", res.html);
    assert!(staff.get(res.location()).await.html.contains("Pat Doe is approved"));
    assert_eq!(app.ambassador_state(&pat).0, "active");
    assert_eq!(app.codes_of(&pat).len(), 1);
    // Approved twice: the API's refusal on the confirmation page.
    let res = staff.post_with(&format!("/console/ambassadors/{pat}/approve"), Some(&token), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("notice warn") && res.html.contains("this step does not apply"), "{}", res.html);

    // Suspending wants a reason; nothing changes without one.
    let suspend = format!("/console/ambassadors/{ann}/suspend");
    let confirm = staff.get(&suspend).await;
    assert!(confirm.html.contains("Suspend Ann Lee?") && confirm.html.contains("stop taking referrals"));
    let before = app.counts();
    let res = staff.post_with(&suspend, Some(&token), &[("reason", "  ")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Is required to suspend."), "{}", res.html);
    let res = staff.post_with(&suspend, Some(&token), &[("reason", &"x".repeat(1001))]).await;
    assert!(res.html.contains("Must be at most 1000 characters."), "{}", res.html);
    assert_eq!(app.counts(), before);
    assert_eq!(app.ambassador_state(&ann), ("active".into(), None));
    let res = staff.post_with(&suspend, Some(&token), &[("reason", "Asked for a break")]).await;
    assert_eq!(res.location(), format!("/console/ambassadors/{ann}"));
    assert_eq!(app.ambassador_state(&ann), ("suspended".into(), Some("Asked for a break".into())));
    let page = staff.get(res.location()).await;
    assert!(page.html.contains("Ann Lee is suspended") && page.html.contains("Asked for a break"), "{}", page.html);
    assert!(page.html.contains(&format!("/console/ambassadors/{ann}/reactivate")), "the next step offered");

    let res = staff.post_with(&format!("/console/ambassadors/{ann}/reactivate"), Some(&token), &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    assert_eq!(app.ambassador_state(&ann).0, "active");
    let res = staff.post_with(&format!("/console/ambassadors/{ann}/close"), Some(&token), &[("reason", "")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Is required to close."));
    let res =
        staff.post_with(&format!("/console/ambassadors/{ann}/close"), Some(&token), &[("reason", "Moved away")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(app.ambassador_state(&ann).0, "closed");
    let page = staff.get(&format!("/console/ambassadors/{ann}")).await;
    assert!(!page.html.contains("id=\"code-form\""), "a closed ambassador gets no new code");
    let actions = app.audit_actions(&ann);
    assert!(
        actions.ends_with(&["ambassador.suspend".into(), "ambassador.reactivate".into(), "ambassador.close".into()]),
        "{actions:?}"
    );

    // Declining another application.
    app.public_application("Ray Fox", "ray@example.com").await;
    let ray = app.ambassador_id("ray@example.com").await;
    let res = staff
        .post_with(&format!("/console/ambassadors/{ray}/decline"), Some(&token), &[("reason", "Not a client")])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(app.ambassador_state(&ray), ("declined".into(), Some("Not a client".into())));
    assert!(app.codes_of(&ray).is_empty());
}

#[tokio::test]
async fn staff_add_and_deactivate_codes_and_print_the_share_page_with_a_qr_code_per_active_code() {
    let (app, ann, code, pat) = clinic().await;
    let staff = Visitor::new(&app);
    let token = staff.console_sign_in("sam@clinic.test").await.csrf();
    let path = format!("/console/ambassadors/{ann}");
    let codes = format!("{path}/codes");
    let before = app.counts();

    for (typed, status, message) in [
        ("a", StatusCode::UNPROCESSABLE_ENTITY, "Must be 3 to 32 characters."),
        ("ann 2!", StatusCode::UNPROCESSABLE_ENTITY, "May contain only letters A-Z, digits and"),
        ("ann-1", StatusCode::CONFLICT, "This code is already taken"),
    ] {
        let res = staff.post_with(&codes, Some(&token), &[("code", typed)]).await;
        assert_eq!(res.status, status, "{typed}");
        assert!(res.html.contains(message), "{typed}: {}", res.html);
        assert!(res.html.contains(&format!("value=\"{typed}\"")), "what was typed stays");
    }
    assert_eq!(app.counts(), before, "nothing stored");
    let res = staff.post_with(&codes, Some(&token), &[("code", "spring-24")]).await;
    assert_eq!(res.location(), path);
    assert!(staff.get(&path).await.html.contains("Code SPRING-24 added"));
    let res = staff.post_with(&codes, Some(&token), &[("code", "")]).await;
    assert_eq!(res.location(), path, "an empty code is a generated one");
    let all = app.codes_of(&ann);
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].0.len(), 9, "generated: XXXX-XXXX {all:?}");

    // Deactivating ANN1 after its confirmation page; a second time is refused.
    let deactivate = format!("{path}/codes/{code}/deactivate");
    let confirm = staff.get(&deactivate).await;
    assert!(confirm.html.contains("Deactivate code <span class=\"code\">ANN1</span>?"), "{}", confirm.html);
    let res = staff.post_with(&deactivate, Some(&token), &[]).await;
    assert_eq!(res.location(), path);
    assert!(staff.get(&path).await.html.contains("Code ANN1 is deactivated; it stays reserved."));
    assert_eq!(app.codes_of(&ann)[0], ("ANN1".into(), false));
    let res = staff.post_with(&deactivate, Some(&token), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("The code is already deactivated."), "{}", res.html);
    // Through another ambassador's address: not found, nothing changed.
    let spring = staff.get(&path).await;
    let other = format!("/console/ambassadors/{pat}/codes/{code}/deactivate");
    assert_eq!(staff.post_with(&other, Some(&token), &[]).await.status, StatusCode::NOT_FOUND);
    assert!(spring.html.contains("SPRING-24"));

    // The share page: one QR code per active code, with its absolute link; none for ANN1.
    let share = staff.get(&format!("{path}/share")).await;
    assert_eq!(share.status, StatusCode::OK);
    let base = app.settings.public_url();
    assert!(share.html.contains(&format!("{base}/r/SPRING-24</span>")), "the absolute link: {}", share.html);
    assert!(!share.html.contains("/r/ANN1"), "not the deactivated code");
    assert_eq!(share.html.matches("<svg role=\"img\" aria-label=\"QR code of the share link for code").count(), 2);
    assert!(!share.html.contains("<?xml"), "inline SVG, not a document");
    assert!(share.html.contains("a friend recommends us") && !share.html.contains(">Ann Lee</h1>"), "anonymous");
    // Pat has no code yet: an empty state instead.
    let share = staff.get(&format!("/console/ambassadors/{pat}/share")).await;
    assert!(share.html.contains("has no active code") && !share.html.contains("<svg"), "{}", share.html);
}

#[tokio::test]
async fn the_list_filters_and_pages_and_an_ambassador_s_page_shows_referrals_by_first_name_and_initial() {
    let (app, ann, _, pat) = clinic().await;
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;

    let list = staff.get("/console/ambassadors").await;
    for shown in ["Ann Lee", "Pat Doe", "ann@example.com", "ANN1"] {
        assert!(list.html.contains(shown), "{shown}: {}", list.html);
    }
    let applied = staff.get("/console/ambassadors?status=applied").await;
    assert!(applied.html.contains(&format!("/console/ambassadors/{pat}\"")) && !applied.html.contains("Ann Lee"));
    let found = staff.get("/console/ambassadors?q=ANN%40example").await;
    assert!(found.html.contains("Ann Lee") && !found.html.contains("Pat Doe"), "{}", found.html);
    let by_code = staff.get("/console/ambassadors?q=ann-1").await;
    assert!(
        by_code.html.contains("Ann Lee") && !by_code.html.contains("Pat Doe"),
        "a code, as typed: {}",
        by_code.html
    );
    let api: Value = app.get("/v1/ambassadors?q=%20ann1%20", &app.admin_key).await.json().await.unwrap();
    assert_eq!(api["items"].as_array().unwrap().len(), 1, "the API searches codes too: {api}");
    let none = staff.get("/console/ambassadors?q=nobody&status=active").await;
    assert!(none.html.contains("No ambassador matches."), "{}", none.html);

    // 25 a page: the next keeps the filter.
    for n in 0..25 {
        app.enrol(&app.admin_key, json!({ "name": format!("Amb {n:02}"), "email": format!("amb{n}@example.com") }))
            .await;
    }
    let first = staff.get("/console/ambassadors?status=active").await;
    assert!(first.html.contains("Amb 24") && !first.html.contains("Ann Lee"), "newest first");
    let next =
        first.html.split("href=\"/console/ambassadors?").find(|s| s.contains("rel=\"next\"")).expect("a next page");
    let next = next.split('"').next().unwrap().replace("&amp;", "&");
    assert!(next.starts_with("status=active&cursor="), "{next}");
    let second = staff.get(&format!("/console/ambassadors?{next}")).await;
    assert!(second.html.contains("Ann Lee") && !second.html.contains("Pat Doe"), "{}", second.html);
    assert!(second.html.contains("href=\"/console/ambassadors?status=active\">Newest ambassadors"));

    // Ann's referrals: first name and initial, linked; ten a page.
    for n in 0..11 {
        let body = json!({ "code": "ANN1", "first_name": format!("Client{n:02}"), "last_name": "Secret",
                           "email": format!("client{n}@example.org") });
        let res = app.post("/v1/referrals", &app.admin_key, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let page = staff.get(&format!("/console/ambassadors/{ann}")).await;
    assert!(page.html.contains("Client10 S.</a>") && !page.html.contains("Secret"), "{}", page.html);
    assert!(!page.html.contains("client10@example.org"), "no client contact details here");
    assert!(!page.html.contains("Client00"), "ten a page");
    assert!(page.html.contains("Registered: 11"), "counts by status: {}", page.html);
    let link = page.html.split("href=\"/console/referrals/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(staff.get(&format!("/console/referrals/{link}")).await.status, StatusCode::OK);
    let older = page.html.split(&format!("href=\"/console/ambassadors/{ann}?cursor=")).nth(1).expect("older referrals");
    let cursor = older.split('"').next().unwrap();
    let page = staff.get(&format!("/console/ambassadors/{ann}?cursor={cursor}")).await;
    assert!(page.html.contains("Client00 S.") && !page.html.contains("Client10"), "{}", page.html);
    // Balance, all zero so far, in the programme's currency.
    assert!(page.html.contains("<dt>Lifetime</dt>"), "{}", page.html);
}

/// The first field message of an API problem as the console shows it (a sentence).
fn as_sentence(problem: &Value) -> String {
    let message = problem["errors"][0]["message"].as_str().unwrap_or_else(|| problem["detail"].as_str().unwrap());
    let mut chars = message.chars();
    let first: String = chars.next().unwrap().to_uppercase().collect();
    let s = first + chars.as_str();
    if s.ends_with('.') {
        s
    } else {
        s + "."
    }
}

#[tokio::test]
async fn staff_and_admins_edit_an_ambassador_s_profile_with_the_api_s_messages_and_finance_cannot() {
    let (app, ann, _, _) = clinic().await;
    let (admin, staff, finance) = (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    admin.console_sign_in("boss@clinic.test").await;
    staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    let path = format!("/console/ambassadors/{ann}");
    let page = staff.get(&path).await;
    assert!(page.html.contains("Edit profile") && page.html.contains("value=\"ann@example.com\""), "{}", page.html);
    page.assert_html();
    let token = page.csrf();
    let profile = format!("{path}/profile");
    let api = format!("/v1/ambassadors/{ann}");
    let read = || async { app.get(&api, &app.admin_key).await.json::<Value>().await.unwrap() };
    let before = read().await;

    // Each refusal: the status and the message the API gives for the same input, on the
    // form (kept open), and nothing stored.
    let refused: [(&[(&str, &str)], Value); 5] = [
        (&[("name", ""), ("email", "ann@example.com")], json!({ "name": "" })),
        (&[("name", "Ann Lee"), ("email", "not-an-email")], json!({ "email": "not-an-email" })),
        (&[("name", "Ann Lee"), ("email", "pat@example.com")], json!({ "email": "pat@example.com" })),
        (
            &[("name", "Ann Lee"), ("email", "ann@example.com"), ("show_name_to_referrals", "yes")],
            json!({ "show_name_to_referrals": true, "display_name": null }),
        ),
        (
            &[("name", "Ann Lee"), ("email", "ann@example.com"), ("payout_method", "paypal"), ("payout_email", "")],
            json!({ "payout_method": { "type": "paypal", "email": "" } }),
        ),
    ];
    for (fields, body) in refused {
        let res = app.patch(&api, &app.admin_key, &body).await;
        let status = res.status();
        let problem: Value = res.json().await.unwrap();
        assert!(status.is_client_error(), "{body}: {problem}");
        let page = staff.post_with(&profile, Some(&token), fields).await;
        assert_eq!(page.status.as_u16(), status.as_u16(), "{fields:?}: {}", page.html);
        let message = as_sentence(&problem);
        assert!(page.html.contains(&message), "{message}: {}", page.html);
        assert!(page.html.contains("<details class=\"panel\" open>"), "the form stays open");
        assert_eq!(read().await, before, "nothing stored: {fields:?}");
    }

    // Every field at once: a blank one clears, an unticked box turns off.
    let fields = [
        ("name", "Ann Lee-Park"),
        ("email", "ann.park@example.com"),
        ("phone", "+1 415 555 0100"),
        ("display_name", "Ann"),
        ("show_name_to_referrals", "yes"),
        ("payout_method", "bank"),
        ("payout_reference", "GB29 NWBK 6016 1331 9268 19"),
        ("referral_updates", "yes"),
        ("notes", ""),
    ];
    let res = staff.post_with(&profile, Some(&token), &fields).await;
    assert_eq!(res.location(), path, "{}", res.html);
    let page = staff.get(&path).await;
    assert!(page.html.contains("Ann Lee-Park&#x27;s profile is saved."), "{}", page.html);
    let after = read().await;
    assert_eq!((after["name"].as_str(), after["email"].as_str()), (Some("Ann Lee-Park"), Some("ann.park@example.com")));
    assert_eq!((after["display_name"].as_str(), after["show_name_to_referrals"].as_bool()), (Some("Ann"), Some(true)));
    assert_eq!(after["payout_method"], json!({ "type": "bank", "reference": "GB29 NWBK 6016 1331 9268 19" }));
    assert_eq!(after["notification_preferences"], json!({ "referral_updates": true, "reward_updates": false }));
    assert!(after["phone"].is_string() && after["notes"].is_null(), "{after}");
    assert_eq!(app.audit_actions(&ann).last().map(String::as_str), Some("ambassador.updated"));

    // An admin too; finance not (and their page is not shown either).
    let token = admin.get(&path).await.csrf();
    let mut fields = fields.to_vec();
    fields[0] = ("name", "Ann Park");
    assert_eq!(admin.post_with(&profile, Some(&token), &fields).await.location(), path);
    assert_eq!(read().await["name"], "Ann Park");
    fields[0] = ("name", "Finance Was Here");
    let res = finance.post_with(&profile, Some(&finance_home.csrf()), &fields).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(finance.get(&path).await.status, StatusCode::FORBIDDEN);
    assert_eq!(read().await["name"], "Ann Park");
}
