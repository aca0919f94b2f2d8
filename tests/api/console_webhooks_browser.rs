//! Admin → Webhooks in headless Chromium: an admin adds an endpoint (after a refused try),
//! copies its secret from the page that shows it once, sees the first delivery with its
//! attempt on the endpoint's page, sends a test ping and opens the rotation's confirmation.
//! Every page is checked with axe-core and captured at 1280 px and 375 px
//! (`console-webhooks-*.png`).

use crate::browser::{app_with_real_links_and, Driver, Screen, DESKTOP_WIDTH};
use crate::console_browser::{capture, sign_in};
use crate::webhooks::{fast_webhooks, Receiver};

#[tokio::test]
async fn an_admin_adds_a_webhook_endpoint_and_follows_its_deliveries() {
    let app = app_with_real_links_and(fast_webhooks).await;
    let receiver = Receiver::start().await;
    app.invite_member("Boss Admin", "boss@clinic.test", "admin").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    sign_in(&screen, &app, "boss@clinic.test", "Boss Admin").await;

    screen.click("nav a[href='/console/webhooks']").await;
    screen.wait_for_heading("Webhooks").await;
    capture(&mut screen, "webhooks-01-list-empty").await;

    // Refused: no event ticked; the message next to the events, nothing stored.
    screen.fill("f-url", &receiver.url()).await;
    screen.fill("f-description", "Booking system").await;
    screen.click("main form button[type=submit]").await;
    screen.wait_for_heading("Webhooks").await;
    assert!(screen.text().await.contains("Must name at least one event."));
    capture(&mut screen, "webhooks-02-refused").await;
    let list: serde_json::Value = app.get("/v1/webhooks", &app.admin_key).await.json().await.unwrap();
    assert_eq!(list["items"], serde_json::json!([]));

    // Added: the secret on the answer's page.
    screen.click("#f-event-ambassador-activated").await;
    screen.click("main form button[type=submit]").await;
    screen.wait_for_heading(&format!("Webhook endpoint {} added", receiver.url())).await;
    let text = screen.text().await;
    assert!(text.contains("shown on this page only"), "{text}");
    capture(&mut screen, "webhooks-03-secret-once").await;

    // A delivery and its attempt on the endpoint's page.
    let staff = app.key("staff").await;
    app.enrol_named(&staff, "Ann Hook").await;
    receiver.wait_for(1).await;
    screen.click("a.button.secondary").await;
    screen.wait_for_heading(&format!("Webhook {}", receiver.url())).await;
    for _ in 0..100 {
        if screen.text().await.contains("Delivered") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        screen.client.refresh().await.unwrap();
    }
    screen.click("details summary").await;
    assert!(screen.text().await.contains("HTTP 200"));
    capture(&mut screen, "webhooks-04-endpoint").await;

    // A test ping, then the rotation's confirmation (cancelled).
    screen.click("form[action$='/ping'] button").await;
    screen.wait_for_heading(&format!("Webhook {}", receiver.url())).await;
    assert!(screen.text().await.contains("webhook.ping event is on its way"));
    assert_eq!(receiver.wait_for(2).await[1].kind(), "webhook.ping");
    screen.click("a[href$='/rotate-secret']").await;
    screen.wait_for_heading(&format!("Rotate the signing secret of {}?", receiver.url())).await;
    capture(&mut screen, "webhooks-05-rotate-confirm").await;
    screen.click("form.confirm a").await;
    screen.wait_for_heading(&format!("Webhook {}", receiver.url())).await;
}
