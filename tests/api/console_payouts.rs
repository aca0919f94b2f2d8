//! Finance → Payouts and Ledger in the console over HTTP: the role on every page and post,
//! the preview that writes nothing, creating, the files, locking, marking paid, cancelling and
//! failing a line with the API's refusals on the forms, the ledger's filters, pages and
//! adjustments, CSRF on every form, and no client contact details anywhere finance looks.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::{audit_events, payouts};

use crate::helpers::{spawn_app, TestApp};
use crate::money_support::Team;
use crate::payouts::{earner, no_hold};
use crate::web::Visitor;

/// Ann (two rewards) and Bob (one) are payable; Nod has no payout details and is skipped.
pub(crate) async fn payable(app: &TestApp) -> (Team, String, String) {
    let team = app.team().await;
    no_hold(app).await;
    let (ann, _, _) = earner(app, &team, "Ann", 2).await;
    earner(app, &team, "Bob", 1).await;
    let nod = app.enrol(&team.staff, json!({ "name": "Nod", "email": "nod@example.com" })).await;
    let code = nod["codes"][0]["code"].as_str().unwrap();
    app.completed_referral(&team, code, "NodClient", crate::money_support::today()).await;
    (team, ann, nod["id"].as_str().unwrap().to_owned())
}

fn batch_count(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    payouts::table.count().get_result(&mut conn).unwrap()
}

fn audit_count(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    audit_events::table.count().get_result(&mut conn).unwrap()
}

async fn batch(app: &TestApp, team: &Team, id: &str) -> Value {
    app.get(&format!("/v1/payouts/{id}"), &team.finance).await.json().await.unwrap()
}

/// Creates the draft on the preview page; returns its id.
async fn create_on_the_page(v: &Visitor<'_>) -> String {
    let res = v.submit("/console/payouts/preview", "/console/payouts", &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    res.location().trim_start_matches("/console/payouts/").to_owned()
}

/// Every finance form's post (batch `id`, its `line`, an adjustment for `ann`).
fn finance_posts<'a>(id: &str, line: &str, ann: &'a str) -> Vec<(String, Vec<(&'static str, &'a str)>)> {
    vec![
        ("/console/payouts".to_owned(), vec![]),
        (format!("/console/payouts/{id}/paypal"), vec![("part", "1")]),
        (format!("/console/payouts/{id}/lock"), vec![]),
        (format!("/console/payouts/{id}/mark-paid"), vec![("reference", "PP-1")]),
        (format!("/console/payouts/{id}/cancel"), vec![("reason", "no")]),
        (format!("/console/payouts/{id}/lines/{line}/fail"), vec![("reason", "bounced")]),
        ("/console/ledger".to_owned(), vec![("ambassador_id", ann), ("amount", "1.00"), ("reason", "x")]),
    ]
}

#[tokio::test]
async fn payout_pages_are_for_finance_and_admins_only() {
    let app = spawn_app().await;
    let (team, ann, _) = payable(&app).await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let (admin, staff, finance, nobody) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let admin_home = admin.console_sign_in("boss@clinic.test").await;
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    for home in [&admin_home, &finance_home] {
        assert!(home.html.contains("href=\"/console/payouts\""), "finance and admins see Payouts");
        assert!(home.html.contains("href=\"/console/ledger\""), "and the Ledger");
    }
    assert!(!staff_home.html.contains("href=\"/console/payouts\"") && !staff_home.html.contains("/console/ledger"));
    let id = crate::payouts::create_batch(&app, &team.finance).await["id"].as_str().unwrap().to_owned();
    let line = batch(&app, &team, &id).await["lines"][0]["id"].as_str().unwrap().to_owned();

    let pages = [
        "/console/ledger".to_owned(),
        format!("/console/ledger?ambassador_id={ann}&status=payable"),
        "/console/payouts".to_owned(),
        "/console/payouts/preview".to_owned(),
        format!("/console/payouts/{id}"),
        format!("/console/payouts/{id}/lock"),
        format!("/console/payouts/{id}/mark-paid"),
        format!("/console/payouts/{id}/cancel"),
        format!("/console/payouts/{id}/lines/{line}/fail"),
    ];
    for (who, v) in [("admin", &admin), ("finance", &finance)] {
        for path in &pages {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{who} on {path}: {}", page.html);
            page.assert_html();
        }
        // Ambassadors are named, linked to their page for admins (a staff page), else to their
        // ledger entries.
        let page = v.get(&format!("/console/payouts/{id}")).await;
        let link = if who == "admin" {
            format!("href=\"/console/ambassadors/{ann}\">Ann</a>")
        } else {
            format!("href=\"/console/ledger?ambassador_id={ann}\">Ann<")
        };
        assert!(page.html.contains(&link), "{who}: {link} in {}", page.html);
        let csv = v.get(&format!("/console/payouts/{id}/export.csv")).await;
        assert_eq!(csv.status, StatusCode::OK, "{who}");
        assert!(csv.html.starts_with("payout,line,ambassador_id"), "{}", csv.html);
    }
    let page = finance.get(&format!("/console/payouts/{id}")).await;
    assert!(page.html.contains("<dt>Created by</dt><dd>API key “finance key”</dd>"), "{}", page.html);
    for path in pages.iter().cloned().chain([format!("/console/payouts/{id}/export.csv")]) {
        let page = staff.get(&path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "staff on {path}");
        assert!(page.html.contains("Not for your role") && !page.html.contains("Ann"), "{}", page.html);
        let page = nobody.get(&path).await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/sign-in"), "{path}");
    }

    // Staff's posts, with their own valid token, change nothing.
    let token = staff_home.csrf();
    let before = (batch_count(&app), audit_count(&app));
    let posts = finance_posts(&id, &line, &ann);
    for (path, fields) in &posts {
        let res = staff.post_with(path, Some(&token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "staff posting {path}");
        let res = nobody.post_with(path, Some(&token), fields).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "nobody posting {path}");
    }
    assert_eq!((batch_count(&app), audit_count(&app)), before);
    assert_eq!(batch(&app, &team, &id).await["status"], "draft");
}

#[tokio::test]
async fn finance_previews_creates_downloads_and_pays_a_batch_without_seeing_clients() {
    let app = spawn_app().await;
    let (team, ann, nod) = payable(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let fin = Visitor::new(&app);
    fin.console_sign_in("fin@clinic.test").await;
    let mut seen = Vec::new();

    // The preview: who is paid, who is skipped and why; nothing written.
    let before = (batch_count(&app), audit_count(&app));
    let preview = fin.get("/console/payouts/preview").await;
    assert_eq!(preview.status, StatusCode::OK);
    let text = &preview.html;
    assert!(text.contains("Paid: 2 ambassadors") && text.contains("Ann") && text.contains("Bob"), "{text}");
    assert!(text.contains("Skipped: 1") && text.contains("Missing payout details"), "{text}");
    assert!(text.contains(&format!("href=\"/console/ledger?ambassador_id={nod}\">Nod<")), "Nod, named: {text}");
    assert_eq!((batch_count(&app), audit_count(&app)), before, "a preview writes nothing");
    seen.push(preview.html);

    // Create: the batch's page, with the flash.
    let id = create_on_the_page(&fin).await;
    let page = fin.get(&format!("/console/payouts/{id}")).await;
    assert!(page.html.contains("Draft batch created") && page.html.contains("pp.ann@example.com"), "{}", page.html);
    // Who made it and whom it skipped, by name: not `team_member:<id>`, not a raw id.
    assert!(page.html.contains("<dt>Created by</dt><dd>Fin</dd>"), "{}", page.html);
    assert!(page.html.contains(&format!("ambassador_id={nod}\">Nod<")) && !page.html.contains("team_member:"));
    assert!(!page.html.contains(&format!("<li>{nod}")), "{}", page.html);
    assert_eq!(batch(&app, &team, &id).await["status"], "draft");
    // A second one is refused on the preview page with the API's message; nothing stored.
    let before = (batch_count(&app), audit_count(&app));
    let res = fin.submit("/console/payouts/preview", "/console/payouts", &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.html.contains("lock it for payment or cancel it before creating another"), "{}", res.html);
    assert_eq!((batch_count(&app), audit_count(&app)), before);
    seen.push(page.html);

    // Mark paid is refused while a draft (lock first), and changes nothing.
    let path = format!("/console/payouts/{id}/mark-paid");
    let res = fin.submit(&path, &path, &[("reference", "PP-77")]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.html);
    assert!(res.html.contains("Lock the batch for payment first"), "{}", res.html);
    assert_eq!(batch(&app, &team, &id).await["status"], "draft");

    // The PayPal file: a form post that locks the batch. A bad part is refused on the page.
    let page_path = format!("/console/payouts/{id}");
    let res = fin.submit(&page_path, &format!("/console/payouts/{id}/paypal"), &[("part", "2")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.html);
    assert!(res.html.contains("Must be between 1 and 1"), "{}", res.html);
    assert_eq!(batch(&app, &team, &id).await["status"], "draft");
    let file = fin.submit(&page_path, &format!("/console/payouts/{id}/paypal"), &[("part", "1")]).await;
    assert_eq!(file.status, StatusCode::OK);
    assert!(file.headers["content-disposition"].to_str().unwrap().contains("-paypal.csv"));
    assert!(file.html.contains("pp.ann@example.com,200.00,"), "{}", file.html);
    assert_eq!(file.html.lines().count(), 2);
    assert_eq!(batch(&app, &team, &id).await["status"], "processing");

    // Mark paid: a reference is required (the API's message), then it is paid.
    let res = fin.submit(&path, &path, &[("reference", "  ")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("aria-invalid=\"true\""), "{}", res.html);
    assert_eq!(batch(&app, &team, &id).await["status"], "processing");
    seen.push(fin.get(&path).await.html);
    let res = fin.submit(&path, &path, &[("reference", "PP-77")]).await;
    assert_eq!(res.location(), page_path);
    let after = batch(&app, &team, &id).await;
    assert_eq!((after["status"].as_str(), after["reference"].as_str()), (Some("paid"), Some("PP-77")));
    assert_eq!(app.balance(&team.staff, &ann).await["paid_minor"], 20000);
    let page = fin.get(&page_path).await;
    assert!(page.html.contains("Batch marked paid") && page.html.contains("PP-77"), "{}", page.html);
    seen.push(page.html);
    seen.push(fin.get("/console/payouts").await.html);

    // Finance never sees a client's name or contact details on these pages.
    for html in &seen {
        assert!(!html.contains("clients.example") && !html.contains("AnnClient"), "{html}");
    }
}

#[tokio::test]
async fn cancelling_a_locked_batch_needs_a_reason_and_failing_a_line_releases_it() {
    let app = spawn_app().await;
    let (team, ann, _) = payable(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let fin = Visitor::new(&app);
    fin.console_sign_in("fin@clinic.test").await;
    let id = create_on_the_page(&fin).await;

    // Fail Ann's line: a reason is required, then her rewards are payable again.
    let line = crate::payouts::line_for(&batch(&app, &team, &id).await, &ann)["id"].as_str().unwrap().to_owned();
    let fail = format!("/console/payouts/{id}/lines/{line}/fail");
    let res = fin.submit(&fail, &fail, &[("reason", "")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("f-reason-error"), "{}", res.html);
    assert_eq!(crate::payouts::line_for(&batch(&app, &team, &id).await, &ann)["status"], "pending");
    let res = fin.submit(&fail, &fail, &[("reason", "bounced")]).await;
    assert_eq!(res.location(), format!("/console/payouts/{id}"));
    let after = batch(&app, &team, &id).await;
    assert_eq!(crate::payouts::line_for(&after, &ann)["status"], "failed");
    assert_eq!(after["total_minor"], 10000);
    assert_eq!(app.balance(&team.staff, &ann).await["payable_minor"], 20000);

    // Lock after the confirmation, then cancel: a reason is required once locked.
    let lock = format!("/console/payouts/{id}/lock");
    let res = fin.submit(&lock, &lock, &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    assert_eq!(batch(&app, &team, &id).await["status"], "processing");
    let res = fin.submit(&lock, &lock, &[]).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "locking twice is refused on the form: {}", res.html);
    let cancel = format!("/console/payouts/{id}/cancel");
    let before = audit_count(&app);
    let res = fin.submit(&cancel, &cancel, &[("reason", "")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.html.contains("Is required to cancel a batch locked for payment"), "{}", res.html);
    assert_eq!((batch(&app, &team, &id).await["status"].as_str(), audit_count(&app)), (Some("processing"), before));
    let res = fin.submit(&cancel, &cancel, &[("reason", "file never uploaded")]).await;
    assert_eq!(res.location(), format!("/console/payouts/{id}"));
    let after = batch(&app, &team, &id).await;
    assert_eq!(
        (after["status"].as_str(), after["cancel_reason"].as_str()),
        (Some("cancelled"), Some("file never uploaded"))
    );
    assert_eq!(fin.get("/console/payouts/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn payout_forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (team, ann, _) = payable(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    app.invite_member("Fay", "fay@clinic.test", "finance").await;
    let (fin, other) = (Visitor::new(&app), Visitor::new(&app));
    fin.console_sign_in("fin@clinic.test").await;
    let others_token = other.console_sign_in("fay@clinic.test").await.csrf();
    let id = crate::payouts::create_batch(&app, &team.finance).await["id"].as_str().unwrap().to_owned();
    let line = batch(&app, &team, &id).await["lines"][0]["id"].as_str().unwrap().to_owned();
    let before = (batch_count(&app), audit_count(&app));
    let posts = finance_posts(&id, &line, &ann);
    for (path, fields) in &posts {
        for token in [None, Some("forged"), Some(others_token.as_str())] {
            let res = fin.post_with(path, token, fields).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(res.html.contains("This form has expired"), "{}", res.html);
        }
    }
    assert_eq!((batch_count(&app), audit_count(&app)), before);
    let after = batch(&app, &team, &id).await;
    assert_eq!((after["status"].as_str(), after["lines"][0]["status"].as_str()), (Some("draft"), Some("pending")));
}

fn reward_count(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    vouch::db::schema::rewards::table.count().get_result(&mut conn).unwrap()
}

#[tokio::test]
async fn finance_filters_the_ledger_pages_through_it_and_adds_an_adjustment() {
    let app = spawn_app().await;
    let (team, ann, nod) = payable(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let fin = Visitor::new(&app);
    fin.console_sign_in("fin@clinic.test").await;

    // Filtered by ambassador: their entries and balance only.
    let page = fin.get(&format!("/console/ledger?ambassador_id={ann}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Balance") && page.html.contains("200.00"), "{}", page.html);
    assert!(!page.html.contains(&nod), "only Ann's entries");
    let page = fin.get(&format!("/console/ledger?ambassador_id={ann}&status=paid")).await;
    assert!(page.html.contains("No entries."), "{}", page.html);
    assert_eq!(fin.get("/console/ledger?status=nonsense").await.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Each entry names its ambassador; the form takes money in the program's currency.
    let page = fin.get("/console/ledger").await;
    assert!(page.html.contains(&format!("ambassador_id={ann}\">Ann<")), "{}", page.html);
    assert!(page.html.contains("<label for=\"f-amount\">Amount (USD)</label>"), "{}", page.html);

    // A refused adjustment shows the message next to its field and stores nothing.
    let before = (reward_count(&app), audit_count(&app));
    let bad = [
        (
            vec![("ambassador_id", ann.as_str()), ("amount", "0"), ("reason", "typo")],
            "f-amount-error",
            "Must not be zero.",
        ),
        (
            vec![("ambassador_id", ann.as_str()), ("amount", "1,000.00"), ("reason", "typo")],
            "f-amount-error",
            "no thousands separators",
        ),
        (
            vec![("ambassador_id", ann.as_str()), ("amount", "12.505"), ("reason", "typo")],
            "f-amount-error",
            "Must have at most 2 decimal places for USD.",
        ),
        (
            vec![("ambassador_id", ann.as_str()), ("amount", "2500"), ("reason", " ")],
            "f-reason-error",
            "Must not be empty",
        ),
        (
            vec![("ambassador_id", "0190d2a4-0000-7000-8000-000000000000"), ("amount", "5"), ("reason", "typo")],
            "f-ambassador_id-error",
            "Is not the id of an ambassador.",
        ),
        (
            vec![("ambassador_id", "nobody"), ("amount", "5"), ("reason", "typo")],
            "f-ambassador_id-error",
            "Is not the id",
        ),
    ];
    for (fields, error, message) in &bad {
        let res = fin.submit("/console/ledger", "/console/ledger", fields).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(res.html.contains(error) && res.html.contains(message), "{message}: {}", res.html);
        assert!(res.html.contains("Add an adjustment"), "the ledger page again, not the error page");
    }
    assert_eq!((reward_count(&app), audit_count(&app)), before);

    // A good one: back on Ann's ledger, payable at once, in minor units.
    let res = fin
        .submit(
            "/console/ledger",
            "/console/ledger",
            &[("ambassador_id", &ann), ("amount", "-25.50"), ("reason", "Duplicate")],
        )
        .await;
    assert_eq!(res.location(), format!("/console/ledger?ambassador_id={ann}"));
    assert_eq!(reward_count(&app), before.0 + 1);
    assert_eq!(app.balance(&team.staff, &ann).await["payable_minor"], 17450);
    let page = fin.get(res.location()).await;
    assert!(page.html.contains("Adjustment added") && page.html.contains("Duplicate"), "{}", page.html);
    assert!(page.html.contains("-25.50 USD"), "{}", page.html);

    // 25 entries a page; the next page keeps the filter.
    for i in 0..25 {
        let body = json!({ "ambassador_id": ann, "amount_minor": 100, "reason": format!("bonus {i}") });
        assert_eq!(app.post("/v1/rewards/adjustments", &team.finance, &body).await.status(), StatusCode::CREATED);
    }
    let first = fin.get(&format!("/console/ledger?ambassador_id={ann}&kind=adjustment")).await;
    assert_eq!(first.html.matches("<tr>").count(), 26, "a header and 25 rows");
    let next = first.html.split("href=\"/console/ledger?").find(|s| s.contains("rel=\"next\"")).expect("a next link");
    let next = next.split('"').next().unwrap().replace("&amp;", "&");
    assert!(next.contains(&format!("ambassador_id={ann}")) && next.contains("kind=adjustment"), "{next}");
    let second = fin.get(&format!("/console/ledger?{next}")).await;
    assert_eq!(second.html.matches("<tr>").count(), 2, "the 26th adjustment: {}", second.html);
    assert!(second.html.contains("Duplicate"));
}
