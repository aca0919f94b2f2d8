//! Admin → Import in headless Chromium: an admin checks a file without choosing one (refused),
//! then uploads the ambassadors sample file, reads the dry run's row-by-row report and imports
//! it for real. Every page is checked with axe-core and captured at 1280 px and 375 px
//! (`console-import-*.png`).

use fantoccini::Locator;
use serde_json::Value;

use crate::browser::{app_with_real_links, Driver, Screen, DESKTOP_WIDTH};
use crate::console_browser::{capture, sign_in};

#[tokio::test]
async fn an_admin_checks_the_ambassadors_file_then_imports_it() {
    let app = app_with_real_links().await;
    app.invite_member("Boss Admin", "boss@clinic.test", "admin").await;

    let driver = Driver::start();
    let mut screen = Screen::with_width(&driver, &app.address, DESKTOP_WIDTH).await;
    sign_in(&screen, &app, "boss@clinic.test", "Boss Admin").await;

    screen.click("nav a[href='/console/import']").await;
    screen.wait_for_heading("Import").await;
    capture(&mut screen, "import-01-form").await;

    // Refused: no file chosen; the message at the field, nothing stored.
    screen.click("main form.grid-form button[type=submit]").await;
    screen.wait_for_heading("Import").await;
    assert!(screen.text().await.contains("Choose a CSV file"));
    capture(&mut screen, "import-02-refused").await;
    let before: Value = app.get("/v1/ambassadors", &app.admin_key).await.json().await.unwrap();
    assert_eq!(before["items"], serde_json::json!([]));

    // The dry run: every row reported, nothing stored.
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/config/import/ambassadors.sample.csv");
    screen.click("#f-kind option[value=ambassadors]").await;
    screen.client.find(Locator::Id("f-file")).await.unwrap().send_keys(sample).await.unwrap();
    screen.click("main form.grid-form button[type=submit]").await;
    screen.wait_for_heading("Import").await;
    let text = screen.text().await;
    assert!(
        text.contains("Dry run: nothing was changed") && text.contains("2 Created jamie.rivera@example.com"),
        "{text}"
    );
    capture(&mut screen, "import-03-dry-run").await;
    let after_dry_run: Value = app.get("/v1/ambassadors", &app.admin_key).await.json().await.unwrap();
    assert_eq!(after_dry_run["items"], serde_json::json!([]), "a dry run stores nothing");

    // The real run, from the report's button: the file travels with it.
    screen.click("main form.panel button[type=submit]").await;
    screen.wait_for_heading("Import").await;
    let text = screen.text().await;
    assert!(text.contains("Imported") && !text.contains("Dry run"), "{text}");
    capture(&mut screen, "import-04-imported").await;
    let found: Value =
        app.get("/v1/ambassadors?q=jamie.rivera@example.com", &app.admin_key).await.json().await.unwrap();
    assert_eq!(found["items"][0]["name"], "Jamie Rivera", "{found}");
}
