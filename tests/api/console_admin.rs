//! Admin → API keys, Program rules, E-mail outbox, Audit trail and reactivating a member, over
//! HTTP as a browser without JavaScript uses them: the role on every page and post, CSRF on
//! every form, each form's success and its refusals (the API's messages, nothing stored), the
//! key's secret shown once, the program example worked out by the ledger's calculation, the
//! audit filters and their query plans.

use diesel::prelude::*;
use reqwest::header::CACHE_CONTROL;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{api_keys, audit_events, email_outbox, program_versions, team_members};

use crate::helpers::{assert_problem, spawn_app, TestApp};
use crate::web::{Page, Visitor};

fn count_keys(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    api_keys::table.count().get_result(&mut conn).unwrap()
}

fn count_versions(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    program_versions::table.count().get_result(&mut conn).unwrap()
}

fn count_audit(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    audit_events::table.count().get_result(&mut conn).unwrap()
}

/// The newest e-mail to `to`, marked failed as the worker leaves one that ran out of tries.
pub(crate) fn fail_newest_mail(app: &TestApp, to: &str) -> String {
    let mut conn = app.pool.get().unwrap();
    let id: String = email_outbox::table
        .filter(email_outbox::to_address.eq(to))
        .order(email_outbox::id.desc())
        .select(email_outbox::id)
        .first(&mut conn)
        .unwrap();
    diesel::update(email_outbox::table.find(&id))
        .set((
            email_outbox::status.eq("failed"),
            email_outbox::attempts.eq(5),
            email_outbox::last_error.eq(Some("550 mailbox unavailable")),
        ))
        .execute(&mut conn)
        .unwrap();
    id
}

fn mail_status(app: &TestApp, id: &str) -> String {
    let mut conn = app.pool.get().unwrap();
    email_outbox::table.find(id).select(email_outbox::status).first(&mut conn).unwrap()
}

/// A signed-in admin (Boss), and the key made through the API that the pages show.
async fn admin(app: &TestApp) -> (Visitor<'_>, String) {
    let boss = app.invite_member("Boss", "boss@clinic.test", "admin").await;
    let v = Visitor::new(app);
    v.console_sign_in("boss@clinic.test").await;
    (v, boss["id"].as_str().unwrap().to_owned())
}

/// The program form's fields: a flat 100.00 with the defaults, then `changes`.
fn program_form<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("currency", "EUR"),
        ("reward.type", "flat"),
        ("reward.amount_minor", "10000"),
        ("reward.basis_points", ""),
        ("reward.max_minor", ""),
        ("tiers[0].min_completed", ""),
        ("tiers[0].value", ""),
        ("tiers[1].min_completed", ""),
        ("tiers[1].value", ""),
        ("tiers[2].min_completed", ""),
        ("tiers[2].value", ""),
        ("holding_days", "14"),
        ("min_payout_minor", "5000"),
        ("annual_cap_minor", ""),
        ("attribution_days", "365"),
        ("tax_threshold_minor", "60000"),
        ("client_offer", ""),
        ("treatment_value_minor", "100000"),
        ("completed_in_year", "1"),
        ("earned_this_year_minor", "0"),
        ("action", "save"),
    ];
    for (k, v) in changes {
        match fields.iter_mut().find(|(f, _)| f == k) {
            Some(f) => f.1 = v,
            None => fields.push((k, v)),
        }
    }
    fields
}

#[tokio::test]
async fn admin_pages_are_for_admins_only_and_every_form_checks_its_token() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let (staff, finance, nobody) = (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    let key = app.key("staff").await;
    let key_id: String = {
        let mut conn = app.pool.get().unwrap();
        api_keys::table.order(api_keys::id.desc()).select(api_keys::id).first(&mut conn).unwrap()
    };
    let mail = fail_newest_mail(&app, "boss@clinic.test");
    let home = admin.get("/console").await;
    for (href, label) in [
        ("/console/api-keys", "API keys"),
        ("/console/program", "Program"),
        ("/console/outbox", "Outbox"),
        ("/console/audit", "Audit"),
    ] {
        assert!(home.html.contains(&format!("href=\"{href}\">{label}</a>")), "admins see {label}: {}", home.html);
        for other in [&staff_home, &finance_home] {
            assert!(!other.html.contains(&format!("href=\"{href}\"")), "only admins see {label}");
        }
    }

    let pages = [
        "/console/api-keys".to_owned(),
        format!("/console/api-keys/{key_id}/revoke"),
        "/console/program".to_owned(),
        "/console/outbox".to_owned(),
        "/console/outbox?status=failed".to_owned(),
        format!("/console/outbox/{mail}/retry"),
        "/console/audit".to_owned(),
        format!("/console/audit?actor_id={boss}&action=team_member.invited"),
    ];
    for path in &pages {
        let page = admin.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "admin on {path}: {}", page.html);
        page.assert_html();
        for (who, v) in [("staff", &staff), ("finance", &finance)] {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who} on {path}");
            assert!(page.html.contains("Not for your role") && !page.html.contains("boss@clinic.test"), "{who}");
        }
        let page = nobody.get(path).await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/sign-in"), "{path}");
    }

    // Every post: the wrong role with its own valid token, nobody, and the admin without a
    // valid token are refused, and nothing changes.
    let program = program_form(&[("reward.amount_minor", "20000")]);
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/api-keys".into(), vec![("name", "Booking system"), ("role", "staff")]),
        (format!("/console/api-keys/{key_id}/revoke"), vec![]),
        ("/console/program".into(), program.clone()),
        ("/console/program/example".into(), program.clone()),
        (format!("/console/outbox/{mail}/retry"), vec![]),
        (format!("/console/team/{boss}/reactivate"), vec![]),
    ];
    let before = (count_keys(&app), count_versions(&app), count_audit(&app), mail_status(&app, &mail));
    let admin_token = home.csrf();
    for (path, fields) in &posts {
        for (who, v, token) in [("staff", &staff, staff_home.csrf()), ("finance", &finance, finance_home.csrf())] {
            let res = v.post_with(path, Some(&token), fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{who} posting {path}");
        }
        let res = nobody.post_with(path, Some(&admin_token), fields).await;
        assert_eq!(res.location(), "/console/sign-in", "nobody posting {path}");
        for token in [None, Some("forged"), Some(staff_home.csrf().as_str())] {
            let res = admin.post_with(path, token, fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "admin posting {path} with token {token:?}");
            assert!(res.html.contains("This form has expired"), "{}", res.html);
        }
    }
    let after = (count_keys(&app), count_versions(&app), count_audit(&app), mail_status(&app, &mail));
    assert_eq!(after, before, "nothing changed");
    assert_eq!(app.get("/v1/program", &key).await.status(), StatusCode::OK, "the key still works");
}

#[tokio::test]
async fn a_new_keys_secret_is_shown_once_and_the_key_can_be_revoked() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    let keys = count_keys(&app);

    // Refused: blank name, unknown role; nothing stored, what was typed kept.
    let res = admin.submit("/console/api-keys", "/console/api-keys", &[("name", "  "), ("role", "owner")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("Must not be empty.") && res.html.contains("Must be one of admin, staff, finance."));
    assert_eq!(count_keys(&app), keys, "nothing stored");

    let res =
        admin.submit("/console/api-keys", "/console/api-keys", &[("name", "Booking system"), ("role", "staff")]).await;
    assert_eq!(res.status, StatusCode::OK, "the secret is in the answer to the post: {}", res.html);
    res.assert_html();
    assert_eq!(res.headers.get(CACHE_CONTROL).unwrap(), "no-store");
    assert!(res.headers.get("location").is_none() && res.set_cookie("vouch_flash").is_none(), "no redirect, no flash");
    let secret = crate::web::input_value(&res.html, "f-secret")
        .or_else(|| {
            let at = res.html.find("vk_live_")?;
            Some(res.html[at..].split('"').next()?.to_owned())
        })
        .unwrap();
    assert!(secret.starts_with("vk_live_") && secret.len() > 40, "{secret}");
    assert!(res.html.contains("shown on this page only"), "{}", res.html);
    assert_eq!(count_keys(&app), keys + 1);
    assert_eq!(app.get("/v1/referrals", &secret).await.status(), StatusCode::OK, "a working staff key");
    assert_eq!(app.get("/v1/api-keys", &secret).await.status(), StatusCode::FORBIDDEN, "of the staff role");
    let (kind, id, _) = app.audit_actor("api_key.created");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss.as_str())));

    // Never again: not on the list, not from the API, not in the database.
    let list = admin.get("/console/api-keys").await;
    assert!(list.html.contains("Booking system") && list.html.contains(&secret[..14]), "the prefix: {}", list.html);
    assert!(!list.html.contains(&secret), "the secret is not listed");
    let api: Value = app.get("/v1/api-keys", &app.admin_key).await.json().await.unwrap();
    assert!(!api.to_string().contains(&secret));
    let stored: Vec<(String, String)> = {
        let mut conn = app.pool.get().unwrap();
        api_keys::table.select((api_keys::prefix, api_keys::secret_hash)).load(&mut conn).unwrap()
    };
    assert!(stored.iter().all(|(p, h)| !p.contains(&secret) && !h.contains(&secret)));

    // Revoke: a confirmation, then the key stops working at once.
    let key_id = api["items"].as_array().unwrap().iter().find(|k| k["name"] == "Booking system").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm = admin.get(&format!("/console/api-keys/{key_id}/revoke")).await;
    assert!(confirm.html.contains("Revoke API key “Booking system”?") && confirm.html.contains("Cancel"));
    assert_eq!(app.get("/v1/referrals", &secret).await.status(), StatusCode::OK, "looking changes nothing");
    let res = admin.post_with(&format!("/console/api-keys/{key_id}/revoke"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/api-keys", "{}", res.html);
    let list = admin.get("/console/api-keys").await;
    assert!(list.html.contains("API key “Booking system” revoked: it stops working at once."), "{}", list.html);
    assert!(list.html.contains("Revoked"));
    assert_eq!(app.get("/v1/referrals", &secret).await.status(), StatusCode::UNAUTHORIZED);
    let (kind, id, _) = app.audit_actor("api_key.revoked");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss.as_str())));

    // Twice: the API's refusal on the confirmation page, nothing recorded.
    let audit = count_audit(&app);
    let res = admin.post_with(&format!("/console/api-keys/{key_id}/revoke"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.html);
    assert!(res.html.contains("already revoked"), "{}", res.html);
    assert_eq!(count_audit(&app), audit);
}

#[tokio::test]
async fn the_program_changes_through_the_form_with_an_example_worked_out_like_the_ledger() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    let versions = count_versions(&app);
    let page = admin.get("/console/program").await;
    assert!(page.html.contains("In force: version 1") && page.html.contains("Save as version 2"), "{}", page.html);
    assert!(page.html.contains("data-example=\"/console/program/example\""));
    let token = page.csrf();

    // Preview (JavaScript off): a percent program with a tier and a cap, nothing stored.
    let preview = program_form(&[
        ("reward.type", "percent"),
        ("reward.basis_points", "1000"),
        ("reward.max_minor", "20000"),
        ("tiers[0].min_completed", "5"),
        ("tiers[0].value", "1500"),
        ("annual_cap_minor", "50000"),
        ("treatment_value_minor", "120000"),
        ("completed_in_year", "5"),
        ("earned_this_year_minor", "40000"),
        ("action", "preview"),
    ]);
    let res = admin.post_with("/console/program", Some(&token), &preview).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.html);
    res.assert_html();
    // 15 % of 1,200.00 is 180.00; the cap leaves 100.00 of 500.00 this year.
    assert!(res.html.contains("This referral would earn <strong>100.00 EUR</strong>"), "{}", res.html);
    assert!(res.html.contains("the tier from number 5 applies") && res.html.contains("15 % of the treatment value"));
    assert!(res.html.contains("cuts it from 180.00 EUR"), "{}", res.html);
    assert!(res.html.contains("value=\"1500\""), "the form keeps what was typed");
    assert!(res.html.contains("A preview: nothing is saved until you press"), "{}", res.html);
    assert_eq!(count_versions(&app), versions, "a preview stores nothing");

    // The same section for the page's script.
    let res = admin.post_with("/console/program/example", Some(&token), &preview).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.html.contains("100.00 EUR") && !res.html.contains("<html"), "a fragment: {}", res.html);
    let no_value =
        program_form(&[("reward.type", "percent"), ("reward.basis_points", "1000"), ("treatment_value_minor", "")]);
    let res = admin.post_with("/console/program/example", Some(&token), &no_value).await;
    assert!(res.html.contains("The program pays a percentage of the treatment value"), "{}", res.html);
    let res =
        admin.post_with("/console/program/example", Some(&token), &program_form(&[("reward.amount_minor", "0")])).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Amount per referral: must be between 1 and"), "{}", res.html);

    // Refusals: the API's messages next to the fields (a tier row by its place on the form).
    let bad = program_form(&[
        ("currency", "EURO"),
        ("reward.amount_minor", "ten"),
        ("tiers[1].min_completed", "1"),
        ("tiers[1].value", "500"),
        ("holding_days", "400"),
    ]);
    let res = admin.post_with("/console/program", Some(&token), &bad).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    res.assert_html();
    for message in [
        "Must be a whole number.",
        "Must be between 0 and 365.",
        "Must be at least 2, at most 10000, and increase from tier to tier.",
    ] {
        assert!(res.html.contains(message), "{message}: {}", res.html);
    }
    assert!(res.html.contains("id=\"f-tiers[1]-min_completed-error\""), "{}", res.html);
    assert!(res.html.contains("value=\"EURO\""), "what was typed is kept");
    assert_eq!(count_versions(&app), versions, "nothing stored");

    // Save: a new version, in force at once, as the API shows it; audited as Boss.
    let save =
        program_form(&[("reward.amount_minor", "12000"), ("tiers[0].min_completed", "3"), ("tiers[0].value", "15000")]);
    let res = admin.post_with("/console/program", Some(&token), &save).await;
    assert_eq!(res.location(), "/console/program", "{}", res.html);
    let page = admin.get("/console/program").await;
    assert!(page.html.contains("Version 2 of the rules is in force."), "{}", page.html);
    assert!(
        page.html.contains("In force: version 2") && page.html.contains("<td data-label=\"Set by\">Boss</td>"),
        "{}",
        page.html
    );
    let program: Value = app.get("/v1/program", &app.admin_key).await.json().await.unwrap();
    assert_eq!(program["version"], 2);
    assert_eq!(program["reward"], json!({ "type": "flat", "amount_minor": 12000 }));
    assert_eq!(program["tiers"], json!([{ "min_completed": 3, "amount_minor": 15000 }]));
    assert_eq!(program["annual_cap_minor"], Value::Null);
    let (kind, id, _) = app.audit_actor("program.updated");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss.as_str())));

    // The currency is fixed once a reward exists: the API's refusal, on the form.
    let team = app.team().await;
    crate::payouts::earner(&app, &team, "Ann", 1).await;
    let versions = count_versions(&app);
    let res = admin.post_with("/console/program", Some(&token), &program_form(&[("currency", "USD")])).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("the program currency can no longer change"), "{}", res.html);
    assert_eq!(count_versions(&app), versions);
}

#[tokio::test]
async fn the_outbox_counts_lists_by_status_and_retries_a_failed_email() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    let mail = fail_newest_mail(&app, "boss@clinic.test");
    let page = admin.get("/console/outbox").await;
    assert!(page.html.contains("sam@clinic.test") && page.html.contains("boss@clinic.test"), "{}", page.html);
    let failed = admin.get("/console/outbox?status=failed").await;
    assert!(failed.html.contains("550 mailbox unavailable") && !failed.html.contains("sam@clinic.test"));
    assert!(failed.html.contains(&format!("href=\"/console/outbox/{mail}/retry\"")));
    assert!(!failed.html.contains("token="), "never a payload: {}", failed.html);
    let queued = admin.get("/console/outbox?status=queued").await;
    assert!(queued.html.contains("No queued e-mails.") || queued.html.contains("Queued"), "{}", queued.html);
    let bad = admin.get("/console/outbox?status=lost").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let confirm = admin.get(&format!("/console/outbox/{mail}/retry")).await;
    assert!(confirm.html.contains("Retry the e-mail") && confirm.html.contains("550 mailbox unavailable"));
    assert_eq!(mail_status(&app, &mail), "failed", "looking changes nothing");
    let res = admin.post_with(&format!("/console/outbox/{mail}/retry"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.location(), "/console/outbox?status=failed", "{}", res.html);
    let page = admin.get("/console/outbox?status=failed").await;
    assert!(page.html.contains("is queued again with a fresh set of tries"), "{}", page.html);
    assert_ne!(mail_status(&app, &mail), "failed");
    let (kind, id, _) = app.audit_actor("email.retried");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss.as_str())));

    // Only a failed e-mail is retried: the API's refusal on the confirmation page.
    let audit = count_audit(&app);
    let res = admin.post_with(&format!("/console/outbox/{mail}/retry"), Some(&confirm.csrf()), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.html);
    assert!(res.html.contains("Only failed e-mails are retried") || res.html.contains("retry"), "{}", res.html);
    assert_eq!(count_audit(&app), audit);
}

/// An action as the trail's table shows it (the filter's options name every action).
fn code(action: &str) -> String {
    format!("<span class=\"code\">{action}</span>")
}

#[tokio::test]
async fn the_audit_trail_filters_by_record_actor_action_and_days_a_page_at_a_time() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    for i in 0..27 {
        let res = app.post("/v1/api-keys", &app.admin_key, &json!({ "name": format!("k{i}"), "role": "staff" })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let sam = app.invite_member("Sam", "sam@clinic.test", "staff").await;
    let sam = sam["id"].as_str().unwrap();
    admin.submit("/console/api-keys", "/console/api-keys", &[("name", "Booking system"), ("role", "finance")]).await;

    // Everything, newest first, a page at a time; the actor by name.
    let page = admin.get("/console/audit").await;
    assert!(
        page.html.contains("Boss (admin)") && page.html.contains("API key “initial admin” (admin)"),
        "{}",
        page.html
    );
    assert!(page.html.contains("rel=\"next\""));

    // By action (with its pages keeping the filter).
    let page = admin.get("/console/audit?action=api_key.created").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains(&code("team_member.invited")), "only that action");
    let next = page.html.split("rel=\"next\"").next().unwrap().rsplit("href=\"").next().unwrap();
    let next = next.split('"').next().unwrap().to_owned();
    assert!(next.starts_with("/console/audit?action=api_key.created&amp;cursor="), "{next}");
    let older = admin.get(&next.replace("&amp;", "&")).await;
    assert_eq!(older.status, StatusCode::OK);
    assert!(older.html.contains(&code("api_key.created")) && older.html.contains("Newest events"), "{}", older.html);

    // By actor: Boss made one key in the console; by record; by record type.
    let page = admin.get(&format!("/console/audit?actor_id={boss}&action=api_key.created")).await;
    assert_eq!(page.html.matches(&code("api_key.created")).count(), 1, "{}", page.html);
    let page = admin.get(&format!("/console/audit?entity_id={sam}")).await;
    assert!(
        page.html.contains(&code("team_member.invited")) && !page.html.contains(&code("api_key.created")),
        "{}",
        page.html
    );
    let page = admin.get("/console/audit?entity_type=team_member").await;
    assert!(page.html.contains(&code("team_member.invited")) && !page.html.contains(&code("api_key.created")));

    // Days of the clinic's calendar: today has them all, yesterday nothing.
    let today = chrono::Utc::now().date_naive();
    let yesterday = today - chrono::TimeDelta::days(1);
    let page = admin.get(&format!("/console/audit?from={today}&to={today}&action=team_member.invited")).await;
    assert!(page.html.contains(&code("team_member.invited")), "{}", page.html);
    let page = admin.get(&format!("/console/audit?from={yesterday}&to={yesterday}")).await;
    assert!(page.html.contains("No events match these filters."), "{}", page.html);
    let page = admin.get(&format!("/console/audit?from={today}")).await;
    assert!(page.html.contains(&code("team_member.invited")));

    // Bad filters: the messages next to them, no events.
    let page = admin.get(&format!("/console/audit?from=31.12.2026&to={yesterday}&action=nope")).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_html();
    assert!(page.html.contains("Must be a date like 2026-12-31.") && page.html.contains("Is not an action."));
    let page = admin.get(&format!("/console/audit?from={today}&to={yesterday}")).await;
    assert!(page.html.contains("Must not be before the start date."), "{}", page.html);
}

#[tokio::test]
async fn each_audit_filter_reads_one_index_range_in_order() {
    let app = spawn_app().await;
    let mut conn = app.pool.get().unwrap();
    let vouch::db::DbConnection::Sqlite(lite) = &mut *conn else {
        return; // PostgreSQL plans tiny test tables as sequential scans: see the README.
    };
    let range = "id >= '0190' AND id < 'ffff'";
    for (filter, index) in [
        ("entity_id = 'x'", "audit_events_entity_idx"),
        ("actor_id = 'x'", "audit_events_actor_idx"),
        ("action = 'x'", "audit_events_action_idx"),
        ("entity_type = 'x'", "audit_events_entity_type_idx"),
        ("1 = 1", "sqlite_autoindex_audit_events_1"),
    ] {
        let sql = format!("SELECT * FROM audit_events WHERE {filter} AND {range} ORDER BY id DESC LIMIT 26");
        let plan = crate::helpers::sqlite_plan(lite, &sql);
        assert!(plan.iter().any(|s| s.contains(index)), "{filter}: {plan:?}");
        assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{filter}: sorted, not read in order: {plan:?}");
    }
}

#[tokio::test]
async fn a_deactivated_member_is_reactivated_and_signs_in_again() {
    let app = spawn_app().await;
    let (admin, boss) = admin(&app).await;
    let sam = app.invite_member("Sam", "sam@clinic.test", "finance").await;
    let sam = sam["id"].as_str().unwrap().to_owned();
    let sam_browser = Visitor::new(&app);
    sam_browser.console_sign_in_with(&app.console_links("sam@clinic.test").await[0]).await;
    let res = app.post(&format!("/v1/team/{sam}/deactivate"), &app.admin_key, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The API: admin only; an active member is refused.
    let staff = app.key("staff").await;
    let res = app.post(&format!("/v1/team/{sam}/reactivate"), &staff, &json!({})).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.post(&format!("/v1/team/{boss}/reactivate"), &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::CONFLICT, "invalid-transition").await;
    let res = app.post("/v1/team/nobody/reactivate", &app.admin_key, &json!({})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;

    // The console: the member's page offers it; the member keeps their role and signs in anew.
    let page = admin.get(&format!("/console/team/{sam}")).await;
    assert!(page.html.contains("Reactivate Sam"), "{}", page.html);
    let res = admin.post_with(&format!("/console/team/{sam}/reactivate"), Some(&page.csrf()), &[]).await;
    assert_eq!(res.location(), format!("/console/team/{sam}"), "{}", res.html);
    let page: Page = admin.get(&format!("/console/team/{sam}")).await;
    assert!(page.html.contains("Sam is active again as finance."), "{}", page.html);
    let (role, status): (String, String) = {
        let mut conn = app.pool.get().unwrap();
        team_members::table.find(&sam).select((team_members::role, team_members::status)).first(&mut conn).unwrap()
    };
    assert_eq!((role.as_str(), status.as_str()), ("finance", "active"));
    let (kind, id, _) = app.audit_actor("team_member.reactivated");
    assert_eq!((kind.as_str(), id.as_deref()), ("team_member", Some(boss.as_str())));
    assert_eq!(sam_browser.get("/console").await.location(), "/console/sign-in", "the old session stays ended");
    sam_browser.console_sign_in("sam@clinic.test").await;

    // Twice: the API's refusal on the member's page, nothing recorded.
    let audit = count_audit(&app);
    let res = admin.post_with(&format!("/console/team/{sam}/reactivate"), Some(&page.csrf()), &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.html);
    assert_eq!(count_audit(&app), audit);
    let member: Value = app.get(&format!("/v1/team/{sam}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(member["status"], "active");
}
