//! Staff → Referrals in headless Chromium: the list, recording a referral with the code's
//! owner shown as the code is typed (the page's script), a refused duplicate with its link,
//! editing client data, and the search box in the header. Every page is checked with axe-core
//! and captured at 1280 px and 375 px (`console-referrals-*.png`).

use serde_json::json;

use crate::browser::{app_with_real_links, Driver, Screen, DESKTOP_WIDTH};
use crate::console_browser::{capture, sign_in};

#[tokio::test]
async fn staff_record_a_referral_seeing_whose_code_it_is_edit_the_client_and_find_them() {
    let app = app_with_real_links().await;
    app.invite_member("Sam Staff", "sam@clinic.test", "staff").await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    let lou = app
        .record_referral(
            json!({ "code": "ANN1", "first_name": "Lou", "last_name": "Reed", "email": "lou@example.com" }),
        )
        .await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    sign_in(&screen, &app, "sam@clinic.test", "Sam Staff").await;

    screen.click("nav a[href='/console/referrals']").await;
    screen.wait_for_heading("Referrals").await;
    assert!(screen.text().await.contains("Lou Reed"));
    capture(&mut screen, "referrals-01-list").await;

    // The code's owner appears as it is typed (no "Check code" button with the script).
    screen.click("a[href='/console/referrals/new']").await;
    screen.wait_for_heading("Record a referral").await;
    screen.fill("f-code", "ann1").await;
    let mut owner = String::new();
    for _ in 0..50 {
        owner = screen.client.find(fantoccini::Locator::Id("f-code-owner")).await.unwrap().text().await.unwrap();
        if !owner.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(owner, "Ann Lee's code ANN1 (ambassador active).");
    assert!(!screen.text().await.contains("Check code"), "the script's check replaces the button");
    capture(&mut screen, "referrals-02-new").await;

    // A duplicate: the API's message, with a link to the referral that holds the client.
    screen.fill("f-first_name", "Louis").await;
    screen.fill("f-email", "LOU@example.com").await;
    screen.click("form button.primary").await;
    screen.wait_for_heading("Record a referral").await;
    assert!(screen.text().await.contains("This client was already referred"));
    capture(&mut screen, "referrals-03-duplicate").await;
    screen.click(&format!("a[href='/console/referrals/{lou}']")).await;
    screen.wait_for_heading("Lou Reed").await;

    // Edit the client's data (a refused try first).
    screen.click("details summary").await;
    screen.fill("f-email", "ann@example.com").await;
    screen.click("#client-form button[type=submit]").await;
    screen.wait_for_heading("Lou Reed").await;
    assert!(screen.text().await.contains("Ambassadors cannot refer themselves."));
    capture(&mut screen, "referrals-04-edit-refused").await;
    screen.fill("f-email", "lou.reed@example.com").await;
    screen.click("#client-form button[type=submit]").await;
    screen.wait_for_heading("Lou Reed").await;
    let text = screen.text().await;
    assert!(text.contains("Client data saved.") && text.contains("lou.reed@example.com"), "{text}");

    // The search box in the header.
    screen.fill("top-q", "reed\u{E007}").await;
    screen.wait_for_heading("Search").await;
    assert!(screen.text().await.contains("lou.reed@example.com"));
    capture(&mut screen, "referrals-05-search").await;

    screen.close().await;
}
