//! A staff member's day in headless Chromium: signs in through the e-mailed link, finds a
//! share-link referral on the home page, records two sessions (after a refused try) and
//! completes the treatment; a refund is confirmed on its own page. Every page is checked
//! with axe-core and captured at 1280 px and 375 px (`console-staff-*.png`).

use serde_json::json;

use crate::browser::{app_with_real_links, Driver, Screen, DESKTOP_WIDTH};
use crate::console_browser::{capture, sign_in};

#[tokio::test]
async fn a_staff_member_signs_in_finds_a_share_link_referral_records_two_sessions_and_completes_it() {
    let app = app_with_real_links().await;
    app.invite_member("Sam Staff", "sam@clinic.test", "staff").await;
    app.enrol(&app.admin_key, json!({ "name": "Ann Lee", "email": "ann@example.com", "code": "ANN1" })).await;
    let id = app.share_link_referral("ANN1", "Lou", "Reed", "lou@example.com").await;
    app.public_application("Pat Doe", "pat@example.com").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    sign_in(&screen, &app, "sam@clinic.test", "Sam Staff").await;
    assert!(screen.text().await.contains("Pat Doe"), "the waiting application");
    capture(&mut screen, "staff-01-home").await;

    // The waiting share-link referral, from the home page.
    screen.click(&format!("a[href='/console/referrals/{id}']")).await;
    screen.wait_for_heading("Lou Reed").await;
    let text = screen.text().await;
    assert!(text.contains("lou@example.com") && text.contains("Ann Lee") && text.contains("No session recorded yet."));
    capture(&mut screen, "staff-02-referral").await;

    // A refused close-out: the API's message on the form, nothing changed.
    screen.click(&format!("a[href='/console/referrals/{id}/cancel']")).await;
    screen.wait_for_heading("Cancel the referral of Lou?").await;
    screen.click("#f-reason_code option[value=other]").await;
    screen.click("form.confirm button[type=submit]").await;
    screen.wait_for_heading("Cancel the referral of Lou?").await;
    assert!(screen.text().await.contains("Is required when reason_code is other"));
    capture(&mut screen, "staff-03-cancel-refused").await;
    assert_eq!(app.referral_state(&id), ("registered".into(), 0));
    screen.click("form.confirm a").await;
    screen.wait_for_heading("Lou Reed").await;

    // Two sessions (today, the default day), then completion.
    for note in ["First consultation", "Second session"] {
        screen.fill("f-note", note).await;
        screen.click("#session-form button[type=submit]").await;
        screen.wait_for_heading("Lou Reed").await;
        let text = screen.text().await;
        assert!(text.contains("recorded.") && text.contains(note), "{text}");
    }
    assert_eq!(app.referral_state(&id), ("in_treatment".into(), 2));
    capture(&mut screen, "staff-04-two-sessions").await;
    screen.click("#complete-form button[type=submit]").await;
    screen.wait_for_heading("Lou Reed").await;
    assert!(screen.text().await.contains("Treatment completed."));
    assert_eq!(app.referral_state(&id).0, "completed");
    capture(&mut screen, "staff-05-completed").await;

    // The refund's confirmation page (left without refunding).
    screen.click(&format!("a[href='/console/referrals/{id}/refund']")).await;
    screen.wait_for_heading("Refund the referral of Lou?").await;
    capture(&mut screen, "staff-06-refund-confirm").await;
    assert_eq!(app.referral_state(&id).0, "completed");

    screen.close().await;
}
