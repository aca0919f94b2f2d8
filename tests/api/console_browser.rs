//! The console in headless Chromium: an admin signs in through the e-mailed link, invites a
//! staff member (after a refused first try), looks at the member and the deactivation step,
//! changes the program (a refused preview, the live example, saved), creates and revokes an
//! API key, retries a failed e-mail, filters the audit trail, signs out; the staff member signs
//! in through the invitation and meets the 403 page. A finance member previews, creates,
//! downloads the PayPal file of and pays a batch, adjusts the ledger and reads the reports. Every
//! console page is checked with axe-core (no serious or critical violation) and captured at
//! 1280 px and 375 px into `<target dir>/screenshots/console-*.png`.

use crate::browser::{app_with_real_links, Driver, Screen, DESKTOP_WIDTH, PHONE_WIDTH};
use crate::helpers::TestApp;

/// Checks the page at both widths (nothing sideways, axe-core) and keeps a screenshot of each.
pub(crate) async fn capture(screen: &mut Screen, name: &str) {
    for width in [DESKTOP_WIDTH, PHONE_WIDTH] {
        screen.resize(width).await;
        screen.assert_fits_the_phone().await;
        screen.assert_accessible(name).await;
        screen.screenshot(&format!("console-{name}-{width}")).await;
    }
    screen.resize(DESKTOP_WIDTH).await;
}

/// Signs `email` in as a member does, from the sign-in page through the e-mailed link and its
/// button, up to their home page ("Hello, `name`").
pub(crate) async fn sign_in(screen: &Screen, app: &TestApp, email: &str, name: &str) {
    screen.open("/console/sign-in").await;
    screen.wait_for_heading("Console sign-in").await;
    screen.fill("f-email", &format!("{email}\u{E007}")).await;
    screen.wait_for_heading("Check your e-mail").await;
    let link = app.console_links(email).await.remove(0);
    screen.client.goto(&link).await.unwrap();
    screen.wait_for_heading("Sign in to the console").await;
    screen.click("main button[type=submit]").await;
    screen.wait_for_heading(&format!("Hello, {name}")).await;
}

/// Waits until the page says `text` (a script's update).
async fn wait_for_text(screen: &Screen, text: &str) {
    for _ in 0..100 {
        if screen.text().await.contains(text) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the page never said {text:?}: {}", screen.text().await);
}

#[tokio::test]
async fn an_admin_signs_in_by_e_mail_invites_a_staff_member_who_then_signs_in() {
    let app = app_with_real_links().await;
    app.invite_member("Boss Admin", "boss@clinic.test", "admin").await;
    app.public_application("Pat Doe", "pat@example.com").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;

    // Not signed in: the console sends the admin to its sign-in page; Enter sends the form.
    screen.open("/console").await;
    screen.wait_for_heading("Console sign-in").await;
    capture(&mut screen, "01-sign-in").await;
    screen.fill("f-email", "boss@clinic.test\u{E007}").await;
    screen.wait_for_heading("Check your e-mail").await;
    capture(&mut screen, "02-check-email").await;
    let link = app.console_links("boss@clinic.test").await.remove(0);
    screen.client.goto(&link).await.unwrap();
    screen.wait_for_heading("Sign in to the console").await;
    capture(&mut screen, "03-confirm-sign-in").await;
    screen.click("main button[type=submit]").await;
    screen.wait_for_heading("Hello, Boss Admin").await;
    let text = screen.text().await;
    assert!(text.contains("Ambassador applications") && text.contains("Team member invited"), "{text}");
    capture(&mut screen, "04-home-admin").await;

    // Admin → Team: a refused invitation shows the message on the form, then the real one.
    screen.click("nav a[href='/console/team']").await;
    screen.wait_for_heading("Team").await;
    capture(&mut screen, "05-team").await;
    screen.fill("f-email", "sam at clinic").await;
    screen.click("form.grid-form button[type=submit]").await;
    screen.wait_for_heading("Team").await;
    assert!(screen.text().await.contains("Must be an e-mail address like name@example.com."));
    capture(&mut screen, "06-team-invite-refused").await;
    assert_eq!(app.team_counts().0, 1, "nothing stored");
    screen.fill("f-name", "Sam Staff").await;
    screen.fill("f-email", "sam@clinic.test").await;
    screen.click("#f-role option[value=staff]").await;
    screen.click("form.grid-form button[type=submit]").await;
    screen.wait_for_heading("Team").await;
    assert!(screen.text().await.contains("Invitation sent to Sam Staff <sam@clinic.test>."));
    capture(&mut screen, "07-team-invited").await;

    // Sam's page, and the deactivation step, cancelled.
    let list: serde_json::Value = app.get("/v1/team", &app.admin_key).await.json().await.unwrap();
    let sam = list["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["items"][0]["role"], "staff");
    screen.open(&format!("/console/team/{sam}")).await;
    screen.wait_for_heading("Sam Staff").await;
    capture(&mut screen, "08-member").await;
    screen.click("a.button.danger").await;
    screen.wait_for_heading("Deactivate Sam Staff?").await;
    capture(&mut screen, "09-deactivate-confirm").await;
    screen.click("form.confirm a").await;
    screen.wait_for_heading("Sam Staff").await;
    assert_eq!(list["items"][0]["status"], "active");

    // Program rules: a refused preview, then the live example as the amount is typed, saved.
    screen.click("nav a[href='/console/program']").await;
    screen.wait_for_heading("Program rules").await;
    assert!(screen.text().await.contains("This referral would earn 100.00 USD"));
    capture(&mut screen, "60-program").await;
    screen.fill("f-reward-amount_minor", "0").await;
    screen.click("button[value=preview]").await;
    wait_for_text(&screen, "Please check the highlighted field").await;
    assert!(screen.text().await.contains("Must be between 1 and"));
    capture(&mut screen, "61-program-refused").await;
    assert_eq!(app.get("/v1/program", &app.admin_key).await.json::<serde_json::Value>().await.unwrap()["version"], 1);
    screen.fill("f-reward-amount_minor", "12500").await;
    wait_for_text(&screen, "This referral would earn 125.00 USD").await;
    capture(&mut screen, "62-program-live-example").await;
    screen.click("button[value=save]").await;
    wait_for_text(&screen, "Version 2 of the rules is in force.").await;
    let program: serde_json::Value = app.get("/v1/program", &app.admin_key).await.json().await.unwrap();
    assert_eq!((program["version"].as_i64(), program["reward"]["amount_minor"].as_i64()), (Some(2), Some(12500)));

    // API keys: the secret once, then revoked after the confirmation.
    screen.click("nav a[href='/console/api-keys']").await;
    screen.wait_for_heading("API keys").await;
    capture(&mut screen, "63-api-keys").await;
    screen.fill("f-name", "Booking system").await;
    screen.click("form.grid-form button[type=submit]").await;
    screen.wait_for_heading("API key “Booking system” created").await;
    capture(&mut screen, "64-api-key-created").await;
    screen.click("main a.button").await;
    screen.wait_for_heading("API keys").await;
    screen.click("main a[href$='/revoke']").await;
    screen.wait_for_heading("Revoke API key “Booking system”?").await;
    capture(&mut screen, "65-api-key-revoke").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("API keys").await;
    assert!(screen.text().await.contains("API key “Booking system” revoked"));

    // The outbox: a failed e-mail, retried after the confirmation.
    crate::console_admin::fail_newest_mail(&app, "boss@clinic.test");
    screen.click("nav a[href='/console/outbox']").await;
    screen.wait_for_heading("E-mail outbox").await;
    capture(&mut screen, "66-outbox").await;
    screen.click("main a[href$='/retry']").await;
    screen.wait_for_heading("Retry the team sign in e-mail to boss@clinic.test?").await;
    capture(&mut screen, "67-outbox-retry").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("E-mail outbox").await;
    assert!(screen.text().await.contains("is queued again"));

    // The audit trail, filtered by action.
    screen.click("nav a[href='/console/audit']").await;
    screen.wait_for_heading("Audit trail").await;
    capture(&mut screen, "68-audit").await;
    screen.open("/console/audit?action=program.updated").await;
    wait_for_text(&screen, "Clear the filters").await;
    let text = screen.text().await;
    assert!(text.contains("Boss Admin (admin)") && text.contains("program.updated"), "{text}");
    capture(&mut screen, "69-audit-filtered").await;

    // Sign out: back at the sign-in page with the message.
    screen.click("header button[type=submit]").await;
    screen.wait_for_heading("Console sign-in").await;
    assert!(screen.text().await.contains("You are signed out."));

    // Sam signs in through the invitation: a staff home, and no Team page.
    let link = app.console_links("sam@clinic.test").await.remove(0);
    screen.client.goto(&link).await.unwrap();
    screen.wait_for_heading("Sign in to the console").await;
    screen.click("main button[type=submit]").await;
    screen.wait_for_heading("Hello, Sam Staff").await;
    let nav = screen.client.find(fantoccini::Locator::Css("header nav")).await.unwrap().text().await.unwrap();
    assert!(!nav.contains("Team"), "{nav}");
    capture(&mut screen, "10-home-staff").await;
    screen.open("/console/team").await;
    screen.wait_for_heading("Not for your role").await;
    capture(&mut screen, "11-forbidden").await;

    screen.close().await;
}

#[tokio::test]
async fn a_finance_member_pays_a_batch_through_the_paypal_file_and_adjusts_the_ledger() {
    let app = app_with_real_links().await;
    let (team, _, _) = crate::console_payouts::payable(&app).await;
    app.invite_member("Fin Finance", "fin@clinic.test", "finance").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    let link = app.console_links("fin@clinic.test").await.remove(0);
    screen.client.goto(&link).await.unwrap();
    screen.wait_for_heading("Sign in to the console").await;
    screen.click("main button[type=submit]").await;
    screen.wait_for_heading("Hello, Fin Finance").await;

    // Payouts → the preview: who is paid, who is skipped and why.
    screen.click("nav a[href='/console/payouts']").await;
    screen.wait_for_heading("Payouts").await;
    capture(&mut screen, "20-payouts-empty").await;
    screen.click("main a[href='/console/payouts/preview']").await;
    screen.wait_for_heading("Next payout batch").await;
    let text = screen.text().await;
    assert!(text.contains("Paid: 2 ambassadors") && text.contains("Missing payout details"), "{text}");
    capture(&mut screen, "21-payout-preview").await;

    // Create: the draft's page.
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Payout P1").await;
    assert!(screen.text().await.contains("Draft batch created"));
    capture(&mut screen, "22-payout-draft").await;
    let list: serde_json::Value = app.get("/v1/payouts", &team.finance).await.json().await.unwrap();
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();

    // The PayPal file: the download locks the batch.
    screen.click("form.inline-form button[type=submit]").await;
    let mut status = String::new();
    for _ in 0..50 {
        let b: serde_json::Value = app.get(&format!("/v1/payouts/{id}"), &team.finance).await.json().await.unwrap();
        status = b["status"].as_str().unwrap().to_owned();
        if status == "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "processing", "downloading the PayPal file locked the batch");

    // Mark paid: refused without a reference, then paid.
    screen.open(&format!("/console/payouts/{id}")).await;
    screen.wait_for_heading("Payout P1").await;
    capture(&mut screen, "23-payout-locked").await;
    screen.click(&format!("main a[href='/console/payouts/{id}/mark-paid']")).await;
    screen.wait_for_heading("Mark payout P1 paid?").await;
    capture(&mut screen, "24-payout-mark-paid").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Mark payout P1 paid?").await;
    assert!(screen.text().await.contains("Payment reference"));
    capture(&mut screen, "25-payout-mark-paid-refused").await;
    screen.fill("f-reference", "PP-2026-12").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Payout P1").await;
    let text = screen.text().await;
    assert!(text.contains("Batch marked paid") && text.contains("PP-2026-12"), "{text}");
    capture(&mut screen, "26-payout-paid").await;
    let b: serde_json::Value = app.get(&format!("/v1/payouts/{id}"), &team.finance).await.json().await.unwrap();
    assert_eq!((b["status"].as_str(), b["reference"].as_str()), (Some("paid"), Some("PP-2026-12")));

    // The other confirmation steps, looked at only.
    let line = b["lines"][0]["id"].as_str().unwrap();
    screen.open(&format!("/console/payouts/{id}/lines/{line}/fail")).await;
    screen.wait_for_heading("Mark line 1 of P1 failed?").await;
    capture(&mut screen, "27-payout-fail-line").await;
    screen.open(&format!("/console/payouts/{id}/cancel")).await;
    screen.wait_for_heading("Cancel payout P1?").await;
    capture(&mut screen, "28-payout-cancel").await;
    screen.open("/console/payouts").await;
    screen.wait_for_heading("Payouts").await;
    capture(&mut screen, "29-payouts").await;

    // Ledger: Ann's entries and balance; a refused adjustment, then one added.
    screen.click("nav a[href='/console/ledger']").await;
    screen.wait_for_heading("Ledger").await;
    capture(&mut screen, "30-ledger").await;
    let ann = b["lines"][0]["ambassador_id"].as_str().unwrap();
    screen.fill("f-ambassador_id", ann).await;
    screen.fill("f-amount", "1,500").await;
    screen.fill("f-reason", "Goodwill").await;
    screen.click("form[method=post].grid-form button[type=submit]").await;
    screen.wait_for_heading("Ledger").await;
    assert!(screen.text().await.contains("no thousands separators"));
    capture(&mut screen, "31-ledger-adjust-refused").await;
    screen.fill("f-amount", "15.00").await;
    screen.click("form[method=post].grid-form button[type=submit]").await;
    screen.wait_for_heading("Ledger").await;
    let text = screen.text().await;
    assert!(text.contains("Adjustment added") && text.contains("Balance") && text.contains("15.00 USD"), "{text}");
    capture(&mut screen, "32-ledger-ambassador").await;

    // Reports: the funnel and the months as charts with their figures, the yearly totals; then
    // a year with nothing in it.
    screen.click("nav a[href='/console/reports']").await;
    screen.wait_for_heading("Reports").await;
    let text = screen.text().await;
    assert!(text.contains("Referral funnel") && text.contains("Paid per ambassador"), "{text}");
    capture(&mut screen, "33-reports").await;
    screen.click("#f-period option[value=last_month]").await;
    screen.click("#f-year option[value='2001']").await;
    screen.click("form.report-form button[type=submit]").await;
    screen.wait_for_heading("Reports").await;
    assert!(screen.text().await.contains("No one was paid in 2001."));
    screen.open("/console/reports?period=custom&from=2001-01-01&to=2001-12-31&year=2001").await;
    screen.wait_for_heading("Reports").await;
    let text = screen.text().await;
    assert!(
        text.contains("No referrals were registered in this period.") && text.contains("No one was paid in 2001."),
        "{text}"
    );
    capture(&mut screen, "34-reports-empty").await;

    screen.close().await;
}
