//! Admin → Import over HTTP, as a browser without JavaScript uses it: a multipart upload
//! checked by a dry run (the report table, nothing stored), then imported for real with the
//! file sent back from the page; the role on the page and the post, CSRF on both forms.

use reqwest::StatusCode;

use crate::helpers::spawn_app;
use crate::helpers::TestApp;
use crate::imports::sample;
use crate::web::{input_value, Page, Visitor};

const BOUNDARY: &str = "----vouch-test-boundary-7MA4YWxk";

/// A `multipart/form-data` body with these text fields and, if given, a file in `file`.
fn multipart(fields: &[(&str, &str)], file: Option<&str>) -> Vec<u8> {
    let mut body = String::new();
    for (name, value) in fields {
        body += &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
    }
    if let Some(content) = file {
        body += &format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"import.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n{content}\r\n"
        );
    }
    body += &format!("--{BOUNDARY}--\r\n");
    body.into_bytes()
}

impl Visitor<'_> {
    /// Posts the import form as the browser does (multipart).
    async fn upload(&self, fields: &[(&str, &str)], file: Option<&str>) -> Page {
        let res = self
            .client
            .post(self.app.url("/console/import"))
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(multipart(fields, file))
            .send()
            .await
            .unwrap();
        Page::of(res).await
    }
}

async fn member<'a>(app: &'a TestApp, role: &str) -> (Visitor<'a>, String) {
    let email = format!("{role}@clinic.test");
    app.invite_member(role, &email, role).await;
    let v = Visitor::new(app);
    let home = v.console_sign_in(&email).await;
    let token = home.csrf();
    (v, token)
}

/// Decodes the few entities the templates' escaping writes into an attribute.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn an_admin_checks_a_file_by_dry_run_then_imports_it() {
    let app = spawn_app().await;
    let (admin, _) = member(&app, "admin").await;
    let page = admin.get("/console/import").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_html();
    assert!(page.html.contains("enctype=\"multipart/form-data\"") && page.html.contains("type=\"file\""));
    assert!(page.html.contains("href=\"/console/import\""), "Import is in the admin's navigation");
    let token = page.csrf();

    // The dry run: the report table, a button to import for real, nothing stored.
    let before = (app.counts(), app.outbox_count());
    let csv = sample("ambassadors.sample.csv");
    let checked = admin.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "check")], Some(&csv)).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.html);
    checked.assert_html();
    assert!(checked.html.contains("Dry run: nothing was changed"), "{}", checked.html);
    assert!(checked.html.contains("4 would be created"), "{}", checked.html);
    assert!(checked.html.contains("jamie.rivera@example.com"));
    assert!(checked.html.contains("Import 4 rows"));
    assert_eq!((app.counts(), app.outbox_count()), before, "a dry run stores nothing");

    // "Import": the page sends the same file back.
    let back = unescape(&input_value(&checked.html, "csv").expect("the file travels with the button"));
    assert_eq!(back, csv);
    let token = checked.csrf();
    let done =
        admin.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "import"), ("csv", &back)], None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(
        done.html.contains("<h2 id=\"report-h\">Imported</h2>") && done.html.contains("4 created"),
        "{}",
        done.html
    );
    assert!(input_value(&done.html, "csv").is_none(), "nothing more to import");
    let after = app.counts();
    assert_eq!(after.ambassadors, before.0.ambassadors + 4);
    assert_eq!(app.outbox_count(), before.1, "no welcome unless asked");

    // Again: nothing new.
    let again =
        admin.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "import"), ("csv", &back)], None).await;
    assert!(again.html.contains("0 created") && again.html.contains("4 unchanged"), "{}", again.html);
    assert_eq!(app.counts().ambassadors, after.ambassadors);
}

#[tokio::test]
async fn refused_rows_and_a_bad_header_are_shown_and_store_nothing() {
    let app = spawn_app().await;
    let (admin, token) = member(&app, "admin").await;
    let before = app.counts();
    let bad = "name,email,codes\nAnn Good,ann@example.com,ANN1\n,not-an-email,\n";
    let page = admin.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "check")], Some(bad)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("1 refused"), "{}", page.html);
    assert!(
        page.html.contains("<strong>name</strong>") && page.html.contains("<strong>email</strong>"),
        "{}",
        page.html
    );
    assert!(page.html.contains("Import 1 row"));
    assert_eq!(app.counts(), before);

    let page = admin.upload(&[("csrf", &token), ("kind", "referrals"), ("mode", "check")], Some(bad)).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.html);
    page.assert_html();
    assert!(page.html.contains("unknown column") && page.html.contains("f-file-error"), "{}", page.html);
    let page = admin.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "check")], None).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("Choose a CSV file"));
    assert_eq!(app.counts(), before);
}

#[tokio::test]
async fn only_admins_import_and_every_post_needs_its_token() {
    let app = spawn_app().await;
    let (admin, admin_token) = member(&app, "admin").await;
    let csv = sample("ambassadors.sample.csv");
    let before = app.counts();
    for role in ["staff", "finance"] {
        let (v, token) = member(&app, role).await;
        let home = v.get("/console").await;
        assert!(!home.html.contains("href=\"/console/import\""), "{role} has no Import in the navigation");
        let page = v.get("/console/import").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{role}");
        let page =
            v.upload(&[("csrf", &token), ("kind", "ambassadors"), ("mode", "import"), ("csv", &csv)], None).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{role}: {}", page.html);
    }
    let nobody = Visitor::new(&app);
    let page = nobody.upload(&[("kind", "ambassadors"), ("mode", "import"), ("csv", &csv)], None).await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/sign-in"));

    // CSRF: none, or another member's, is refused before anything is read or written.
    for token in [None, Some("forged")] {
        let mut fields = vec![("kind", "ambassadors"), ("mode", "import"), ("csv", csv.as_str())];
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let page = admin.upload(&fields, None).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    }
    assert_eq!(app.counts().ambassadors, before.ambassadors);
    assert!(app.counts().audit >= before.audit);

    // A real run from the console is the member's, in the audit trail.
    let page =
        admin.upload(&[("csrf", &admin_token), ("kind", "ambassadors"), ("mode", "import"), ("csv", &csv)], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let events: serde_json::Value = app.get("/v1/audit", &app.admin_key).await.json().await.unwrap();
    let import = events["items"].as_array().unwrap().iter().find(|e| e["action"] == "import.chunk_applied").unwrap();
    assert_eq!(import["actor_type"], "team_member", "{import}");
}
