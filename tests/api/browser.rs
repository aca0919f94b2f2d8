//! The pages in a real browser: headless Chromium driven over WebDriver (fantoccini →
//! chromedriver) in a phone-sized (or desktop-sized) viewport, against the real server. Each
//! test starts its own chromedriver on a free port and kills it (and the browser it started)
//! when done. Without chromedriver these tests fail: install Debian's `chromium` and
//! `chromium-driver` (`.ci/run` does). Screenshots of every page, 375 px wide (and 1280 px for
//! the console), go to `<target dir>/screenshots/`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use vouch::config::Settings;

use crate::helpers::{spawn_app_with, TestApp};
use crate::money_support::today;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
pub const PHONE_WIDTH: u32 = 375;
const PHONE_HEIGHT: u32 = 812;
pub const DESKTOP_WIDTH: u32 = 1280;
const DESKTOP_HEIGHT: u32 = 800;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A chromedriver process in its own process group; dropping it kills the group, so no
/// browser outlives the test even when an assertion fails half-way.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub fn start() -> Self {
        let driver = std::env::var("VOUCH_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        assert!(
            std::path::Path::new(&driver).exists(),
            "chromedriver not found at {driver}: the browser tests need Debian's `chromium` and \
             `chromium-driver` (apt-get install -y chromium chromium-driver; .ci/run installs them)"
        );
        let port = free_port();
        let mut cmd = Command::new(&driver);
        cmd.arg(format!("--port={port}")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {driver}: {e}"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(15), "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    async fn browser(&self) -> Client {
        let browser = std::env::var("VOUCH_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
                         "--window-size=500,900"],
            }),
        );
        // chromedriver listens on plain http on this machine: no TLS stack needed.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Chrome DevTools Protocol command sent through chromedriver (`goog/cdp/execute`): the
/// only way to get an exact 375 px layout viewport (desktop windows cannot be that narrow).
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// One browser with a phone-sized (or desktop-sized) layout viewport.
pub struct Screen {
    pub client: Client,
    base: String,
    width: u32,
}

impl Screen {
    /// A phone: 375 px wide.
    pub async fn new(driver: &Driver, base: &str) -> Self {
        Self::with_width(driver, base, PHONE_WIDTH).await
    }

    pub async fn with_width(driver: &Driver, base: &str, width: u32) -> Self {
        let screen = Self { client: driver.browser().await, base: base.to_owned(), width };
        screen.viewport(screen.height()).await;
        screen
    }

    fn mobile(&self) -> bool {
        self.width < DESKTOP_WIDTH
    }

    fn height(&self) -> u32 {
        if self.mobile() {
            PHONE_HEIGHT
        } else {
            DESKTOP_HEIGHT
        }
    }

    /// Another width from now on (the same browser, cookies and page).
    pub async fn resize(&mut self, width: u32) {
        self.width = width;
        self.viewport(self.height()).await;
    }

    /// The layout viewport, `height` px tall.
    async fn viewport(&self, height: u32) {
        let params = json!({ "width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": self.mobile() });
        self.client
            .issue_cmd(Cdp(json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params })))
            .await
            .expect("phone emulation");
    }

    pub async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    pub async fn heading(&self) -> String {
        self.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap()
    }

    /// Waits for a page whose `<h1>` is `heading`.
    pub async fn wait_for_heading(&self, heading: &str) {
        let started = Instant::now();
        loop {
            if let Ok(h1) = self.client.find(Locator::Css("h1")).await {
                if h1.text().await.is_ok_and(|t| t == heading) {
                    return;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no page titled {heading:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn fill(&self, id: &str, text: &str) {
        let input = self.client.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// The page's text; read again if the page was replaced while it was read (a navigation
    /// still finishing leaves the old `<body>` stale).
    pub async fn text(&self) -> String {
        let started = Instant::now();
        loop {
            let read = match self.client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(text) => return text,
                Err(e) => assert!(started.elapsed() < Duration::from_secs(10), "the page's text: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the whole page at this width (the viewport grows to the page's height).
    pub async fn screenshot(&self, name: &str) {
        let height = self
            .client
            .execute("return Math.ceil(document.documentElement.scrollHeight);", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(self.height().into()) as u32;
        self.viewport(height.max(self.height())).await;
        let png = self.client.screenshot().await.unwrap();
        self.viewport(self.height()).await;
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(width, self.width, "{name}: screenshot width");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// Nothing overflows sideways at this width.
    pub async fn assert_fits_the_phone(&self) {
        let widths = self
            .client
            .execute("return [window.innerWidth, document.documentElement.scrollWidth];", vec![])
            .await
            .unwrap();
        assert_eq!(widths, json!([self.width, self.width]), "page wider than the screen: {}", self.heading().await);
    }

    /// Ends the browser session once the test's assertions have passed. Quitting is clean-up,
    /// not what the test checks: on a loaded machine chromedriver can give up waiting for
    /// Chromium to exit and answer an error, and the `Driver` kills the whole process group
    /// when it is dropped anyway. So a failed quit is reported, not a failed test.
    pub async fn close(self) {
        if let Err(e) = self.client.close().await {
            eprintln!("the browser session did not quit cleanly (chromedriver is killed next): {e}");
        }
    }
}

/// axe-core (the accessibility engine), from the npm registry: installed once into
/// `<target dir>/axe` by the test set-up (never by the service's build or at its run time),
/// then read from there. Needs `npm` (on the machine; `.ci/run` checks it).
fn axe_source() -> &'static str {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let dir = target_dir().join("axe");
        let script = dir.join("node_modules/axe-core/axe.min.js");
        if !script.exists() {
            let out = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg("axe-core@4")
                .output()
                .unwrap_or_else(|e| panic!("running npm to install axe-core (the console's accessibility check): {e}"));
            assert!(out.status.success(), "npm install axe-core@4 failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("reading {}: {e}", script.display()))
    })
}

impl Screen {
    /// Runs axe-core on the page as it is: no serious or critical violation (the others are
    /// printed). The script is injected over WebDriver, not served by Vouch.
    pub async fn assert_accessible(&self, name: &str) {
        let loaded =
            self.client.execute(&format!("{}\nreturn typeof window.axe;", axe_source()), vec![]).await.unwrap();
        assert_eq!(loaded, json!("object"), "{name}: axe-core did not load");
        let run = r#"const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ["violations"] })
              .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                                       nodes: v.nodes.map(n => n.target.join(" ")) }))))
              .catch(e => done({ error: String(e) }));"#;
        let violations = self.client.execute_async(run, vec![]).await.unwrap();
        let all = violations.as_array().unwrap_or_else(|| panic!("{name}: axe failed: {violations}"));
        let (bad, minor): (Vec<&Value>, Vec<&Value>) =
            all.iter().partition(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")));
        if !minor.is_empty() {
            eprintln!("{name} ({} px): minor accessibility findings: {minor:?}", self.width);
        }
        assert!(bad.is_empty(), "{name} ({} px): serious or critical accessibility violations: {bad:#?}", self.width);
    }
}

/// The app on a port known before it starts, so the links in its e-mails open as they are.
pub async fn app_with_real_links() -> TestApp {
    app_with_real_links_and(|_| {}).await
}

/// [`app_with_real_links`] with further settings of the test's own.
pub async fn app_with_real_links_and(more: impl FnOnce(&mut Settings)) -> TestApp {
    let port = free_port();
    spawn_app_with(move |s| {
        s.server.port = port;
        s.email.brand_name = "Clinic Care".into();
        s.email.staff_alert_to = "alerts@clinic.test".into();
        more(s);
    })
    .await
}

#[tokio::test]
async fn a_friend_refers_through_the_share_link_and_the_ambassador_follows_it_on_a_phone() {
    let app = app_with_real_links().await;
    app.set_program(json!({ "currency": "EUR", "client_offer": "A free consultation and 10% off your first visit" }))
        .await;
    let amb = app
        .enrol(
            &app.admin_key,
            json!({ "name": "Ann Lee", "email": "ann@example.com", "phone": "+1 415 555 0100",
                    "display_name": "Ann", "show_name_to_referrals": true }),
        )
        .await;
    let (amb_id, code) = (amb["id"].as_str().unwrap().to_owned(), amb["codes"][0]["code"].as_str().unwrap().to_owned());
    let share_url = amb["codes"][0]["share_url"].as_str().unwrap().to_owned();
    assert!(share_url.starts_with(&app.address), "{share_url}");
    // A friend referred earlier has completed: a held reward shows on the dashboard.
    let earlier = app.referral_in_treatment(&app.admin_key, &code, "Jamie", today()).await;
    app.complete(&app.admin_key, &earlier, today(), None).await;

    let driver = Driver::start();
    let phone = Screen::new(&driver, &app.address).await;

    // The friend opens the share link and leaves their details.
    phone.client.goto(&share_url).await.unwrap();
    phone.wait_for_heading("Ann invited you").await;
    phone.assert_fits_the_phone().await;
    assert!(phone.text().await.contains("A free consultation and 10% off your first visit"));
    phone.screenshot("01-landing").await;
    phone.fill("f-first_name", "Maria").await;
    phone.fill("f-last_name", "Garcia").await;
    phone.fill("f-email", "maria@example.com").await;
    phone.fill("f-phone", "+1 415 555 0199").await;
    // Sent without consent first: the form comes back with the error, nothing stored.
    phone.click("button[type=submit]").await;
    phone.wait_for_heading("Ann invited you").await;
    assert!(phone.text().await.contains("only record your details if it may contact you"));
    assert_eq!(app.counts().referrals, 1);
    phone.screenshot("02-landing-error").await;
    phone.click("#f-consent_to_contact").await;
    phone.click("#f-share_name_with_ambassador").await;
    phone.click("button[type=submit]").await;
    phone.wait_for_heading("Thank you").await;
    phone.screenshot("03-thanks").await;

    // Staff see the referral.
    let list: Value = app.get("/v1/referrals?q=maria", &app.admin_key).await.json().await.unwrap();
    let referral = &list["items"][0];
    assert_eq!(referral["client_first_name"], "Maria");
    assert_eq!(referral["source"], "public_form");
    assert_eq!(referral["status"], "registered");
    assert_eq!(referral["ambassador_id"], amb_id.as_str());
    // The clinic sees Maria: from her first session on she shows in the ambassador's portal.
    let first_session = format!("/v1/referrals/{}/sessions", referral["id"].as_str().unwrap());
    assert!(app.post(&first_session, &app.admin_key, &serde_json::json!({})).await.status().is_success());

    // An unknown code, and the application form.
    phone.open("/r/NOPE-NOPE").await;
    phone.wait_for_heading("This link is not active").await;
    phone.screenshot("04-unknown-code").await;
    phone.open("/apply").await;
    phone.wait_for_heading("Become an ambassador").await;
    phone.assert_fits_the_phone().await;
    phone.screenshot("05-apply").await;
    phone.fill("f-name", "Pat Doe").await;
    phone.fill("f-email", "pat@example.com").await;
    phone.click("button[type=submit]").await;
    phone.wait_for_heading("Thank you for applying").await;
    phone.screenshot("06-applied").await;

    // The ambassador asks for a sign-in link and opens it from the e-mail file.
    phone.open("/portal").await;
    phone.wait_for_heading("Ambassador sign-in").await;
    phone.screenshot("07-portal-sign-in").await;
    phone.fill("f-email", "ann@example.com").await;
    phone.click("button[type=submit]").await;
    phone.wait_for_heading("Check your e-mail").await;
    phone.screenshot("08-check-email").await;
    let link = app.login_links("ann@example.com").await.into_iter().next().expect("a sign-in e-mail");
    phone.client.goto(&link).await.unwrap();
    phone.wait_for_heading("Sign in to your ambassador portal").await;
    phone.screenshot("09-confirm-sign-in").await;
    phone.click("button[type=submit]").await;
    phone.wait_for_heading("Hello, Ann Lee").await;
    phone.assert_fits_the_phone().await;

    // The referral appears masked, exactly as the API shows it; no contact details.
    let body = phone.text().await;
    assert!(body.contains("Maria G.") && body.contains("Jamie C."), "{body}");
    for secret in ["Garcia", "maria@example.com", "555 0199"] {
        assert!(!body.contains(secret), "the dashboard shows {secret}");
    }
    assert!(body.contains("100.00 EUR"), "the held reward: {body}");
    // The copy button copies the share link.
    let input = phone.client.find(Locator::Id("share-1")).await.unwrap();
    assert_eq!(input.prop("value").await.unwrap().as_deref(), Some(share_url.as_str()));
    phone.screenshot("10-dashboard").await;
    let button = phone.client.find(Locator::Css("button[data-copy=share-1]")).await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Copy");
    button.click().await.unwrap();
    let started = Instant::now();
    while button.text().await.unwrap() != "Copied" {
        assert!(started.elapsed() < Duration::from_secs(5), "the copy button says {:?}", button.text().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = phone.client.find(Locator::Id("copy-status")).await.unwrap();
    assert_eq!(status.prop("textContent").await.unwrap().as_deref(), Some("Link copied"));

    // Payout details on the profile page.
    phone.click("nav a[href='/portal/profile']").await;
    phone.wait_for_heading("Your profile").await;
    phone.assert_fits_the_phone().await;
    phone.screenshot("11-profile").await;
    phone.click("#pm-paypal").await;
    phone.fill("f-payout_method-email", "ann.pays@example.com").await;
    phone.click("button.primary").await;
    phone.wait_for_heading("Your profile").await;
    assert!(phone.text().await.contains("Your changes are saved"));
    phone.screenshot("12-profile-saved").await;
    let staff_view: Value = app.get(&format!("/v1/ambassadors/{amb_id}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!(staff_view["payout_method"], json!({ "type": "paypal", "email": "ann.pays@example.com" }));

    // Sign out: back at the sign-in page, and the portal stays closed.
    phone.click("nav button").await;
    phone.wait_for_heading("Ambassador sign-in").await;
    assert!(phone.text().await.contains("You are signed out"));
    phone.screenshot("13-signed-out").await;
    phone.open("/portal").await;
    phone.wait_for_heading("Ambassador sign-in").await;

    phone.close().await;
}
