//! Staff → Ambassadors in headless Chromium: a staff member finds an ambassador in the list,
//! enrols a new one (after a refused first try), adds a code, opens the printable share page
//! with its QR codes, deactivates a code and suspends the ambassador (after a refused try, on
//! the confirmation pages), then approves a waiting application from the home page. Every page
//! is checked with axe-core and captured at 1280 px and 375 px (`console-ambassadors-*.png`).

use serde_json::json;

use crate::browser::{app_with_real_links, Driver, Screen, DESKTOP_WIDTH};
use crate::console_browser::{capture, sign_in};

#[tokio::test]
async fn a_staff_member_enrols_an_ambassador_prints_the_share_page_and_approves_an_application() {
    let app = app_with_real_links().await;
    app.invite_member("Sam Staff", "sam@clinic.test", "staff").await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    app.public_application("Pat Doe", "pat@example.com").await;
    let pat = app.ambassador_id("pat@example.com").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    sign_in(&screen, &app, "sam@clinic.test", "Sam Staff").await;

    // The list, then a search.
    screen.click("nav a[href='/console/ambassadors']").await;
    screen.wait_for_heading("Ambassadors").await;
    let text = screen.text().await;
    assert!(text.contains("Ann Lee") && text.contains("Pat Doe") && text.contains("ANN1"), "{text}");
    capture(&mut screen, "ambassadors-01-list").await;
    screen.fill("q-q", "pat").await;
    screen.click("main form[role=search] button[type=submit]").await;
    screen.wait_for_heading("Ambassadors").await;
    let text = screen.text().await;
    assert!(text.contains("Matching ambassadors") && text.contains("Pat Doe") && !text.contains("Ann Lee"), "{text}");

    // Enrolment: refused first (nothing stored), then Bea Cole with PayPal and a vanity code.
    screen.click("main a[href='/console/ambassadors/new']").await;
    screen.wait_for_heading("Enrol an ambassador").await;
    capture(&mut screen, "ambassadors-02-enrol").await;
    let before = app.counts();
    screen.fill("f-name", "Bea Cole").await;
    screen.fill("f-email", "bea at example").await;
    screen.click("form.enrol button[type=submit]").await;
    screen.wait_for_heading("Enrol an ambassador").await;
    assert!(screen.text().await.contains("Must be an e-mail address like name@example.com."));
    capture(&mut screen, "ambassadors-03-enrol-refused").await;
    assert_eq!(app.counts(), before, "nothing stored");
    screen.fill("f-email", "bea@example.com").await;
    screen.click("#f-payout_method option[value=paypal]").await;
    screen.fill("f-payout_method-email", "bea@pay.example").await;
    screen.fill("f-code", "BEA10").await;
    screen.click("form.enrol button[type=submit]").await;
    screen.wait_for_heading("Bea Cole").await;
    let text = screen.text().await;
    assert!(
        text.contains("Bea Cole is enrolled with code BEA10.") && text.contains("PayPal: bea@pay.example"),
        "{text}"
    );
    let bea = app.ambassador_id("bea@example.com").await;
    capture(&mut screen, "ambassadors-04-detail").await;

    // Another code, then the printable share page: one QR code per active code.
    screen.fill("f-code", "BEA-SPRING").await;
    screen.click("#code-form button[type=submit]").await;
    screen.wait_for_heading("Bea Cole").await;
    assert!(screen.text().await.contains("Code BEA-SPRING added"));
    screen.click(&format!("a[href='/console/ambassadors/{bea}/share']")).await;
    screen.wait_for_heading("Clinic Care: a friend recommends us").await;
    let text = screen.text().await;
    assert!(text.contains(&format!("{}/r/BEA10", app.address)) && text.contains("/r/BEA-SPRING"), "{text}");
    capture(&mut screen, "ambassadors-05-share").await;

    // Deactivating the newest code after its confirmation page.
    screen.open(&format!("/console/ambassadors/{bea}")).await;
    screen.wait_for_heading("Bea Cole").await;
    screen.click(&format!("a[href^='/console/ambassadors/{bea}/codes/']")).await;
    screen.wait_for_heading("Deactivate code BEA-SPRING?").await;
    capture(&mut screen, "ambassadors-06-code-deactivate").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Bea Cole").await;
    assert!(screen.text().await.contains("Code BEA-SPRING is deactivated"));
    assert_eq!(app.codes_of(&bea), vec![("BEA10".to_owned(), true), ("BEA-SPRING".to_owned(), false)]);

    // Suspending wants a reason.
    screen.click(&format!("a[href='/console/ambassadors/{bea}/suspend']")).await;
    screen.wait_for_heading("Suspend Bea Cole?").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Suspend Bea Cole?").await;
    assert!(screen.text().await.contains("Is required to suspend."));
    capture(&mut screen, "ambassadors-07-suspend-refused").await;
    assert_eq!(app.ambassador_state(&bea).0, "active");
    screen.fill("f-reason", "Asked for a break").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Bea Cole").await;
    assert!(screen.text().await.contains("Bea Cole is suspended"));
    assert_eq!(app.ambassador_state(&bea), ("suspended".into(), Some("Asked for a break".into())));

    // Pat's application, from the home page's queue.
    screen.click("nav a[href='/console']").await;
    screen.wait_for_heading("Hello, Sam Staff").await;
    screen.click(&format!("a[href='/console/ambassadors/{pat}']")).await;
    screen.wait_for_heading("Pat Doe").await;
    capture(&mut screen, "ambassadors-08-application").await;
    screen.click(&format!("a[href='/console/ambassadors/{pat}/approve']")).await;
    screen.wait_for_heading("Approve the application of Pat Doe?").await;
    capture(&mut screen, "ambassadors-09-approve").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Pat Doe").await;
    assert!(screen.text().await.contains("Pat Doe is approved"));
    assert_eq!(app.ambassador_state(&pat).0, "active");

    screen.close().await;
}
