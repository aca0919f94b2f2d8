//! Finance → Reports in the console over HTTP: who may open it, the funnel, the ledger totals,
//! rewards per month and the yearly totals showing the very figures the API's reports answer
//! for the same data, the choices of period and year with their refusals, the empty states,
//! the CSV (the API's own file), and no client anywhere on the page.

use chrono::Datelike;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};
use crate::money_support::{today, Team};
use crate::payouts::{create_batch, earner, mark_paid, no_hold};
use crate::web::Visitor;

/// Ann (two completions) and Bob (one) paid in one batch, Cat completed and payable, one
/// client still in treatment; the tax threshold at 200.00 (Ann reaches it). Returns the team,
/// Ann's and Bob's ids.
pub(crate) async fn paid_year(app: &TestApp) -> (Team, String, String) {
    let team = app.team().await;
    no_hold(app).await;
    app.set_program(json!({ "holding_days": 0, "tax_threshold_minor": 20000 })).await;
    let (ann, code, _) = earner(app, &team, "Ann", 2).await;
    let (bob, _, _) = earner(app, &team, "Bob", 1).await;
    app.referral_in_treatment(&team.staff, &code, "Pending", today()).await;
    let batch = create_batch(app, &team.finance).await;
    mark_paid(app, &team.finance, batch["id"].as_str().unwrap()).await;
    earner(app, &team, "Cat", 1).await;
    (team, ann, bob)
}

/// One row of a figures table: its header cell, then its cells.
fn row(head: &str, label: &str, cells: &[(&str, String)]) -> String {
    let mut html = format!("<th scope=\"row\" data-label=\"{head}\">{label}</th>");
    for (name, value) in cells {
        html.push_str(&format!("<td data-label=\"{name}\">{value}</td>"));
    }
    html
}

fn money(minor: &Value) -> String {
    let minor = minor.as_i64().unwrap();
    format!("{}.{:02} USD", minor / 100, minor % 100)
}

#[tokio::test]
async fn reports_are_for_finance_and_admins_only() {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let (admin, staff, finance, nobody) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    let year = today().year();
    let csv = format!("/console/reports/annual.csv?year={year}");
    for (v, email) in [(&admin, "boss@clinic.test"), (&finance, "fin@clinic.test")] {
        let home = v.console_sign_in(email).await;
        assert!(home.html.contains("href=\"/console/reports\""), "{email} sees Reports in the navigation");
        let page = v.get("/console/reports").await;
        assert_eq!(page.status, StatusCode::OK, "{email}: {}", page.html);
        page.assert_html();
        assert!(page.html.contains("aria-current=\"page\">Reports"), "{}", page.html);
        assert_eq!(v.get(&csv).await.status, StatusCode::OK, "{email}");
    }
    let home = staff.console_sign_in("sam@clinic.test").await;
    assert!(!home.html.contains("/console/reports"), "staff are not shown Reports");
    for path in ["/console/reports", "/console/reports?period=this_year", csv.as_str()] {
        let page = staff.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "staff on {path}");
        assert!(page.html.contains("Not for your role"), "{}", page.html);
        let page = nobody.get(path).await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/sign-in"), "{path}");
    }
}

#[tokio::test]
async fn the_reports_page_shows_what_the_apis_reports_answer() {
    let app = spawn_app().await;
    let (team, ann, bob) = paid_year(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let fin = Visitor::new(&app);
    fin.console_sign_in("fin@clinic.test").await;
    let day = today();
    let (first, year) = (day.with_day(1).unwrap(), day.year());

    // This month (the default) is the API's summary from the 1st to today.
    let page = fin.get("/console/reports").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = &page.html;
    let summary: Value =
        app.get(&format!("/v1/reports/summary?from={first}&to={day}"), &team.finance).await.json().await.unwrap();
    let f = &summary["referrals"];
    assert_eq!(
        (&f["registered"], &f["started_treatment"], &f["completed"], &f["paid"]),
        (&json!(5), &json!(5), &json!(4), &json!(3)),
        "{summary}"
    );
    let steps = [
        ("Registered", &f["registered"], "—"),
        ("Started treatment", &f["started_treatment"], "100.0 %"),
        ("Completed", &f["completed"], "80.0 %"),
        ("Paid", &f["paid"], "75.0 %"),
    ];
    for (label, count, rate) in steps {
        let figures = row("Step", label, &[("Referrals", count.to_string()), ("Of the step before", rate.into())]);
        assert!(html.contains(&figures), "{figures} in {html}");
    }
    assert!(html.contains("Completed of registered: <strong>80.0 %</strong>"), "{html}");
    assert!(html.contains("role=\"img\"") && html.contains("<title id=\"funnel-title\">Referral funnel</title>"));
    for (status, total) in summary["rewards"].as_object().unwrap() {
        let mut label = status.replace('_', " ");
        label[..1].make_ascii_uppercase();
        let figures = row(
            "Status",
            &label,
            &[("Entries", total["count"].to_string()), ("Amount", money(&total["amount_minor"]))],
        );
        assert!(html.contains(&figures), "{figures}");
    }
    let top = &summary["top_ambassadors"][0];
    assert_eq!(top["ambassador_id"], ann.as_str());
    assert!(html.contains(&format!("?ambassador_id={ann}\">Ann<")), "Ann, linked to her entries: {html}");

    // Rewards per month: this month has the year's four rewards.
    let month =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][day.month0() as usize];
    let figures = row("Month", month, &[("Rewards", "4".into()), ("Amount", "400.00 USD".into())]);
    assert!(html.contains(&figures), "{figures}");
    assert!(html.contains("<title id=\"months-title\">Rewards earned per month"), "{html}");

    // The yearly totals: the API's rows, flagged at the threshold; the CSV is the API's file.
    let annual: Value = app.get(&format!("/v1/reports/annual?year={year}"), &team.finance).await.json().await.unwrap();
    assert_eq!(annual["items"].as_array().unwrap().len(), 2);
    for item in annual["items"].as_array().unwrap() {
        let flag = if item["over_tax_threshold"] == true { "Reached" } else { "Below" };
        let id = item["ambassador_id"].as_str().unwrap();
        let cells = format!(
            "<td data-label=\"E-mail\">{}</td>\n      <td data-label=\"Paid\">{}</td>\n      <td data-label=\"Payouts\">{}</td>",
            item["email"].as_str().unwrap(),
            money(&item["paid_minor"]),
            item["payouts"]
        );
        assert!(html.contains(&cells), "{cells} in {html}");
        let after = &html[html.find(&cells).unwrap()..];
        assert!(after[..after.find("</tr>").unwrap()].contains(flag), "{id}: {flag}");
    }
    assert!(html.contains(&format!("href=\"/console/reports/annual.csv?year={year}\"")));
    let file = fin.get(&format!("/console/reports/annual.csv?year={year}")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert!(file.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(file.headers["content-disposition"].to_str().unwrap().contains(&format!("annual-{year}.csv")));
    let api_file = app.get(&format!("/v1/reports/annual.csv?year={year}"), &team.finance).await.text().await.unwrap();
    assert_eq!(file.html, api_file);
    assert_eq!(file.html.lines().count(), 3, "a header and Ann's and Bob's rows: {}", file.html);
    assert!(file.html.contains(&ann) && file.html.contains(&bob));

    // Finance never sees a client here.
    assert!(!html.contains("Client0") && !html.contains("Pending"), "{html}");
}

#[tokio::test]
async fn periods_and_years_are_chosen_on_the_page_and_bad_choices_are_explained() {
    let app = spawn_app().await;
    let (team, _, _) = paid_year(&app).await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    let fin = Visitor::new(&app);
    fin.console_sign_in("fin@clinic.test").await;
    let day = today();

    // This year, and days of one's choosing, agree with the API.
    let jan1 = day.with_ordinal(1).unwrap();
    let page = fin.get("/console/reports?period=this_year").await;
    assert!(page.html.contains(&row(
        "Step",
        "Completed",
        &[("Referrals", "4".into()), ("Of the step before", "80.0 %".into())]
    )));
    assert!(page.html.contains(&format!("from <time datetime=\"{jan1}\">{jan1}</time>")), "{}", page.html);
    let page = fin.get(&format!("/console/reports?period=custom&from={day}&to={day}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains(&row(
        "Step",
        "Registered",
        &[("Referrals", "5".into()), ("Of the step before", "—".into())]
    )));
    let page = fin.get("/console/reports?period=custom").await;
    assert!(page.html.contains("at any time") && page.html.contains("Registered: 5"), "{}", page.html);

    // Empty states: a month with nothing registered, a year with nothing earned or paid.
    let earlier = (day - chrono::Duration::days(400)).format("%Y-%m-%d");
    let page = fin.get(&format!("/console/reports?period=custom&from={earlier}&to={earlier}&year=2001")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = &page.html;
    assert!(html.contains("No referrals were registered in this period."), "{html}");
    assert!(html.contains("No treatment was completed in this period."), "{html}");
    assert!(html.contains("No rewards were earned in 2001.") && html.contains("No one was paid in 2001."), "{html}");
    assert!(!html.contains("role=\"img\""), "no empty charts");
    let empty: Value = app.get("/v1/reports/annual?year=2001", &team.finance).await.json().await.unwrap();
    assert_eq!(empty["items"], json!([]));

    // Refusals: the page again with the field's message and no figures.
    let bad = [
        (
            format!("period=custom&from={day}&to={}", day - chrono::Duration::days(1)),
            "f-to-error",
            "Must not be before from.",
        ),
        ("period=custom&from=31/12/2026".to_owned(), "f-from-error", "Must be a date like 2026-01-31."),
        ("period=fortnight".to_owned(), "f-period-error", "Must be one of this_month"),
        ("year=1999".to_owned(), "f-year-error", "Must be between 2000 and"),
        ("year=next".to_owned(), "f-year-error", "Must be a year like 2026."),
    ];
    for (query, id, message) in bad {
        let page = fin.get(&format!("/console/reports?{query}")).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(page.html.contains(id) && page.html.contains(message), "{query}: {}", page.html);
        assert!(page.html.contains("error-summary") && !page.html.contains("Referral funnel"), "{query}");
    }
    assert_eq!(fin.get("/console/reports?cursor=garbage").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fin.get("/console/reports/annual.csv?year=1999").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fin.get("/console/reports/annual.csv").await.status, StatusCode::UNPROCESSABLE_ENTITY);
}
