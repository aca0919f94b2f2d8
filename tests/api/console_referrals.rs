//! Staff → Referrals over HTTP: the list (status filter, pagination), recording a referral on
//! the console's form (whose code it is, with and without the script; the API's refusals on
//! the form with nothing stored), editing client data, and the search box (every key, never an
//! erased client, the plans use the indexes on both databases); the role on every page and
//! CSRF on every form.

use diesel::prelude::*;
use diesel::sql_types::Text;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vouch::db::schema::referrals;
use vouch::db::DbConnection;

use crate::helpers::{spawn_app, TestApp};
use crate::web::Visitor;

/// A form's fields, the status it is refused with, and the message shown.
type Refusal<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str);

fn referral_count(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    referrals::table.count().get_result(&mut conn).unwrap()
}

fn client_of(app: &TestApp, id: &str) -> (Option<String>, Option<String>) {
    let mut conn = app.pool.get().unwrap();
    referrals::table.find(id).select((referrals::client_first_name, referrals::client_email)).first(&mut conn).unwrap()
}

impl TestApp {
    /// A referral recorded by staff through the API; its id.
    pub async fn record_referral(&self, body: Value) -> String {
        let res = self.post("/v1/referrals", &self.admin_key, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }
}

/// A clinic with an admin, a staff and a finance member, Ann Lee (code ANN1, phone +1 415 555
/// 0199) and Lou Reed's referral.
async fn clinic() -> (TestApp, String) {
    let app = spawn_app().await;
    app.invite_member("Boss", "boss@clinic.test", "admin").await;
    app.invite_member("Sam", "sam@clinic.test", "staff").await;
    app.invite_member("Fin", "fin@clinic.test", "finance").await;
    app.enrol(
        &app.admin_key,
        json!({ "name": "Ann Lee", "email": "ann@example.com", "phone": "+1 415 555 0199", "code": "ANN1" }),
    )
    .await;
    let id = app
        .record_referral(json!({ "code": "ANN1", "first_name": "Lou", "last_name": "Reed",
                                 "email": "lou@example.com", "phone": "+44 20 7946 0018", "external_ref": "C-1042" }))
        .await;
    (app, id)
}

#[tokio::test]
async fn the_referral_pages_and_search_are_for_staff_and_admins_and_every_form_checks_role_and_csrf() {
    let (app, id) = clinic().await;
    let (admin, staff, finance, nobody) =
        (Visitor::new(&app), Visitor::new(&app), Visitor::new(&app), Visitor::new(&app));
    admin.console_sign_in("boss@clinic.test").await;
    let staff_home = staff.console_sign_in("sam@clinic.test").await;
    let finance_home = finance.console_sign_in("fin@clinic.test").await;
    assert!(staff_home.html.contains("href=\"/console/referrals\"") && staff_home.html.contains("role=\"search\""));
    assert!(!finance_home.html.contains("/console/referrals") && !finance_home.html.contains("/console/search"));
    for path in [
        "/console/referrals",
        "/console/referrals?status=registered",
        "/console/referrals/new",
        "/console/search?q=lou",
    ] {
        for (who, v) in [("admin", &admin), ("staff", &staff)] {
            let page = v.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{who} on {path}: {}", page.html);
            page.assert_html();
        }
        let page = finance.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "finance on {path}");
        assert!(!page.html.contains("lou@example.com") && !page.html.contains("Reed"), "{}", page.html);
        assert_eq!(nobody.get(path).await.location(), "/console/sign-in", "nobody on {path}");
    }
    let check = finance.get("/console/codes/check?code=ANN1").await;
    assert_eq!(check.status, StatusCode::FORBIDDEN);
    assert!(!check.html.contains("Ann Lee"));

    let new = [("code", "ANN1"), ("first_name", "Kim"), ("email", "kim@example.com")];
    let edit = [("first_name", "Hacked"), ("email", "hacked@example.com")];
    let posts: [(String, &[(&str, &str)]); 2] =
        [("/console/referrals/new".into(), &new), (format!("/console/referrals/{id}/client"), &edit)];
    let (finance_token, staff_token) = (finance_home.csrf(), staff_home.csrf());
    let visitor_token = nobody.get("/console/sign-in").await.csrf();
    for (path, fields) in &posts {
        assert_eq!(finance.post_with(path, Some(&finance_token), fields).await.status, StatusCode::FORBIDDEN);
        assert_eq!(nobody.post_with(path, Some(&visitor_token), fields).await.location(), "/console/sign-in");
        assert_eq!(staff.post_with(path, None, fields).await.status, StatusCode::FORBIDDEN, "no token: {path}");
        let res = staff.post_with(path, Some(&finance_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "another member's token: {path}");
        let res = admin.post_with(path, Some(&staff_token), fields).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "another member's token: {path}");
    }
    assert_eq!(referral_count(&app), 1, "nothing recorded");
    assert_eq!(client_of(&app, &id), (Some("Lou".into()), Some("lou@example.com".into())), "nothing changed");
}

#[tokio::test]
async fn staff_record_a_referral_seeing_whose_code_it_is_and_the_api_s_refusals_on_the_form() {
    let (app, lou) = clinic().await;
    app.enrol(&app.admin_key, json!({ "name": "Bo Old", "email": "bo@example.com", "code": "BO1" })).await;
    let bo: Value = app.get("/v1/ambassadors?q=bo@example.com", &app.admin_key).await.json().await.unwrap();
    let bo_id = bo["items"][0]["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/ambassadors/{bo_id}/suspend"), &app.admin_key, &json!({ "reason": "on leave" })).await;
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;

    // Whose code: on the form's first view, from the script's endpoint, and by "Check code".
    let form = staff.get("/console/referrals/new?code=ann1").await;
    assert!(form.html.contains("Ann Lee&#x27;s code ANN1 (ambassador active)."), "{}", form.html);
    let token = form.csrf();
    for (typed, usable, message) in [
        ("ann-1", true, "Ann Lee's code ANN1 (ambassador active)."),
        ("bo1", false, "Bo Old's code BO1: the ambassador is suspended, so it takes no referrals."),
        ("NOPE", false, "No referral code matches."),
    ] {
        let res = staff.client.get(app.url(&format!("/console/codes/check?code={typed}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let check: Value = res.json().await.unwrap();
        assert_eq!((check["usable"].as_bool(), check["message"].as_str()), (Some(usable), Some(message)), "{typed}");
    }
    let typed = [("code", "bo1"), ("first_name", "Kim"), ("email", "kim@example.com")];
    let res =
        staff.post_with("/console/referrals/new", Some(&token), &[&typed[..], &[("check_code", "yes")]].concat()).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.html.contains("Bo Old&#x27;s code BO1: the ambassador is suspended") && res.html.contains("value=\"Kim\"")
    );
    assert_eq!(referral_count(&app), 1, "checking a code records nothing");

    // Refusals: the API's message on the form, what was typed kept, nothing stored.
    let cases: [Refusal; 6] = [
        (
            &[("code", "ANN1"), ("first_name", ""), ("email", "")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Must not be empty.",
        ),
        (
            &[("code", "ANN1"), ("first_name", "Kim")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "An e-mail address or a phone number is required.",
        ),
        (
            &[("code", "ANN1"), ("first_name", "Kim"), ("email", "kim@example.com"), ("planned_sessions", "many")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Must be a whole number between 1 and 100.",
        ),
        (
            &[("code", "NOPE"), ("first_name", "Kim"), ("email", "kim@example.com")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "No active referral code matches.",
        ),
        (
            &[("code", "BO1"), ("first_name", "Kim"), ("email", "kim@example.com")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "The ambassador for this code is suspended",
        ),
        (
            &[("code", "ANN1"), ("first_name", "Ann"), ("email", "ANN@example.com")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Ambassadors cannot refer themselves.",
        ),
    ];
    for (fields, status, message) in cases {
        let res = staff.post_with("/console/referrals/new", Some(&token), fields).await;
        assert_eq!(res.status, status, "{fields:?}: {}", res.html);
        assert!(res.html.contains(message), "{message}: {}", res.html);
    }
    let duplicate = [("code", "ANN1"), ("first_name", "Louis"), ("phone", "+44 20 7946 0018")];
    let res = staff.post_with("/console/referrals/new", Some(&token), &duplicate).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.html);
    assert!(res.html.contains("This client was already referred"), "{}", res.html);
    assert!(
        res.html.contains(&format!("href=\"/console/referrals/{lou}\">Open the existing referral")),
        "{}",
        res.html
    );
    assert!(res.html.contains("value=\"Louis\""), "what was typed stays");
    assert_eq!(referral_count(&app), 1, "nothing stored");

    // Recorded: to its page with the flash; in the list, newest first.
    let fields = [
        ("code", "ann1"),
        ("first_name", " Kim "),
        ("last_name", "Park"),
        ("email", "Kim@Example.com"),
        ("external_ref", "C-2001"),
        ("planned_sessions", "3"),
        ("share_name_with_ambassador", "yes"),
        ("registered_on", ""),
        ("notes", "Came with Lou"),
    ];
    let res = staff.post_with("/console/referrals/new", Some(&token), &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.html);
    let kim = res.location().trim_start_matches("/console/referrals/").to_owned();
    let page = staff.get(res.location()).await;
    assert!(page.html.contains("Referral of Kim Park recorded."), "{}", page.html);
    assert!(
        page.html.contains("kim@example.com") && page.html.contains("C-2001") && page.html.contains("of 3 planned")
    );
    assert!(page.html.contains("Agrees that the ambassador sees their first name and initial."));
    let api: Value = app.get(&format!("/v1/referrals/{kim}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!((api["source"].as_str(), api["code"].as_str()), (Some("staff"), Some("ANN1")));
    assert_eq!(api["history"][0]["actor_type"], "team_member");
    let list = staff.get("/console/referrals").await;
    let (kim_at, lou_at) = (list.html.find(&kim).unwrap(), list.html.find(&lou).unwrap());
    assert!(kim_at < lou_at, "newest first");
}

#[tokio::test]
async fn the_referrals_list_filters_by_status_and_pages_newest_first() {
    let (app, lou) = clinic().await;
    app.post(&format!("/v1/referrals/{lou}/sessions"), &app.admin_key, &json!({})).await;
    let mut ids = Vec::new();
    for n in 0..26 {
        let email = format!("client{n}@example.com");
        ids.push(
            app.record_referral(json!({ "code": "ANN1", "first_name": format!("Client{n}"), "email": email })).await,
        );
    }
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;
    let first = staff.get("/console/referrals?status=registered").await;
    assert!(first.html.contains("Client25") && !first.html.contains("Client0<") && !first.html.contains("Lou"));
    let next = first.html.split("href=\"/console/referrals?").nth(1).unwrap().split('"').next().unwrap();
    let next = next.replace("&amp;", "&");
    assert!(next.starts_with("status=registered&cursor="), "the filter stays: {next}");
    let second = staff.get(&format!("/console/referrals?{next}")).await;
    assert!(second.html.contains("Client0<") && !second.html.contains("Client25"), "{}", second.html);
    assert!(second.html.contains("href=\"/console/referrals?status=registered\">Newest referrals"));
    let treated = staff.get("/console/referrals?status=in_treatment").await;
    assert!(treated.html.contains("Lou Reed") && !treated.html.contains("Client1"), "{}", treated.html);
    let empty = staff.get("/console/referrals?status=refunded").await;
    assert!(empty.html.contains("No refunded referrals."), "{}", empty.html);
    assert_eq!(staff.get("/console/referrals?status=lost").await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn staff_edit_client_data_on_the_referral_s_page_under_the_api_s_rules() {
    let (app, lou) = clinic().await;
    let kim = app.record_referral(json!({ "code": "ANN1", "first_name": "Kim", "email": "kim@example.com" })).await;
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;
    let path = format!("/console/referrals/{lou}");
    let page = staff.get(&path).await;
    assert!(page.html.contains("Edit client data") && page.html.contains("value=\"C-1042\""), "{}", page.html);
    let token = page.csrf();
    let client = format!("{path}/client");
    let lou_now = (Some("Lou".to_owned()), Some("lou@example.com".to_owned()));

    let refused: [Refusal; 4] = [
        (&[("first_name", ""), ("email", "lou@example.com")], StatusCode::UNPROCESSABLE_ENTITY, "Must not be empty."),
        (
            &[("first_name", "Lou"), ("email", ""), ("phone", "")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "An e-mail address or a phone number is required.",
        ),
        (
            &[("first_name", "Lou"), ("email", "ann@example.com")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "Ambassadors cannot refer themselves.",
        ),
        (
            &[("first_name", "Lou"), ("email", "kim@example.com")],
            StatusCode::CONFLICT,
            "This client was already referred",
        ),
    ];
    for (fields, status, message) in refused {
        let res = staff.post_with(&client, Some(&token), fields).await;
        assert_eq!(res.status, status, "{fields:?}: {}", res.html);
        assert!(res.html.contains(message), "{message}: {}", res.html);
        assert!(res.html.contains("<details class=\"panel\" open>"), "the form stays open");
        assert_eq!(client_of(&app, &lou), lou_now, "nothing stored");
    }
    let res = staff.post_with(&client, Some(&token), &[("first_name", "Lou"), ("email", "kim@example.com")]).await;
    assert!(res.html.contains(&format!("href=\"/console/referrals/{kim}\">Open the existing referral")));

    let fields = [
        ("first_name", "Louis"),
        ("last_name", "Reed"),
        ("email", "louis@example.com"),
        ("phone", ""),
        ("external_ref", ""),
        ("planned_sessions", "4"),
        ("notes", "Prefers mornings"),
        ("share_name_with_ambassador", "yes"),
    ];
    let res = staff.post_with(&client, Some(&token), &fields).await;
    assert_eq!(res.location(), path, "{}", res.html);
    let page = staff.get(&path).await;
    assert!(page.html.contains("Client data saved.") && page.html.contains("Prefers mornings"), "{}", page.html);
    assert_eq!(client_of(&app, &lou), (Some("Louis".into()), Some("louis@example.com".into())));
    let api: Value = app.get(&format!("/v1/referrals/{lou}"), &app.admin_key).await.json().await.unwrap();
    assert_eq!((api["client_phone"].as_str(), api["external_ref"].as_str()), (None, None), "blank fields clear");
    assert_eq!((api["planned_sessions"].as_i64(), api["share_name_with_ambassador"].as_bool()), (Some(4), Some(true)));
    assert!(app.audit_actions(&lou).contains(&"referral.updated".to_owned()));
}

/// The client and ambassador rows a search page lists (their links).
fn found(html: &str, kind: &str) -> usize {
    html.matches(&format!("href=\"/console/{kind}/")).count()
}

#[tokio::test]
async fn the_search_box_finds_clients_and_ambassadors_by_every_key_but_never_an_erased_client() {
    let (app, lou) = clinic().await;
    let kim = app
        .record_referral(json!({ "code": "ANN1", "first_name": "Élodie", "last_name": "Kim",
                                 "phone": "+1 415 555 0100", "external_ref": "X-77" }))
        .await;
    let staff = Visitor::new(&app);
    staff.console_sign_in("sam@clinic.test").await;
    let search = |q: &str| {
        let staff = &staff;
        let q = q.to_owned();
        async move { staff.get(&format!("/console/search?q={}", urlencoding(&q))).await }
    };
    for (q, client) in [
        ("lo", &lou),
        ("reed", &lou),
        ("Lou R", &lou),
        ("reed l", &lou),
        ("LOU@exa", &lou),
        ("c-10", &lou),
        ("0018", &lou),
        ("020 7946 0018", &lou),
        ("+44 20 7946 0018", &lou),
        ("élo", &kim),
        ("ÉLODIE K", &kim),
        ("kim élodie", &kim),
        ("x-77", &kim),
        ("(415) 555-0100", &kim),
    ] {
        let page = search(q).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.html.contains(&format!("href=\"/console/referrals/{client}\"")), "{q}: {}", page.html);
        assert_eq!(found(&page.html, "referrals"), 1, "{q}: only the one client");
    }
    let none = search("lox").await;
    assert!(none.html.contains("No client matches") && none.html.contains("No ambassador matches"));
    let ann: Value = app.get("/v1/ambassadors?q=ann", &app.admin_key).await.json().await.unwrap();
    let ann_id = ann["items"][0]["id"].as_str().unwrap().to_owned();
    for q in ["ann", "ann l", "ann@", "ann1", "an-n"] {
        let page = search(q).await;
        assert!(page.html.contains(&format!("href=\"/console/ambassadors/{ann_id}\"")), "{q}: {}", page.html);
    }
    let short = search("a").await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.html.contains("Must be at least 2 characters."), "{}", short.html);

    // Erased: nothing of Lou finds them any more.
    let res = app
        .request(reqwest::Method::DELETE, &format!("/v1/referrals/{lou}/personal-data"), Some(&app.admin_key), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for q in ["lou", "reed", "lou@example.com", "c-1042", "0018"] {
        let page = search(q).await;
        assert!(!page.html.contains(&lou), "{q} finds the erased client: {}", page.html);
    }

    // More than a group shows: the newest 20, and a note.
    for n in 0..21 {
        app.record_referral(json!({ "code": "ANN1", "first_name": "Max", "last_name": format!("M{n}"),
                                    "email": format!("max{n}@example.com") }))
            .await;
    }
    let page = search("max").await;
    assert_eq!(found(&page.html, "referrals"), 20);
    assert!(page.html.contains("Only the newest 20 clients are shown"), "{}", page.html);
    assert!(page.html.contains("max20@example.com") && !page.html.contains("max0@example.com"), "newest first");
}

fn urlencoding(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The search's statements as `store::search` builds them: each key a range of its index.
const CLIENT_SEARCH: &str = "SELECT referral_id FROM referral_search_keys \
    WHERE (name_key >= 'lou' AND name_key < 'lov') OR (reversed_name_key >= 'lou' AND reversed_name_key < 'lov') \
    OR (email >= 'lou' AND email < 'lov') OR (external_ref_key >= 'lou' AND external_ref_key < 'lov') \
    OR (phone_digits_reversed >= '8100' AND phone_digits_reversed < '8101') \
    ORDER BY referral_id DESC LIMIT 21";
const AMBASSADOR_SEARCH: &str = "SELECT id FROM ambassadors \
    WHERE (name_key >= 'ann' AND name_key < 'ano') OR (email >= 'ann' AND email < 'ano') OR id IN ('a', 'b') \
    ORDER BY id DESC LIMIT 21";
const CODE_SEARCH: &str =
    "SELECT DISTINCT ambassador_id FROM referral_codes WHERE normalized >= 'ANN' AND normalized < 'ANO' LIMIT 21";

#[tokio::test]
async fn the_search_reads_only_index_ranges_on_both_databases() {
    let (app, _) = clinic().await;
    let mut conn = app.pool.get().unwrap();
    match &mut *conn {
        DbConnection::Sqlite(lite) => {
            for (sql, indexes) in [
                (
                    CLIENT_SEARCH,
                    &[
                        "referral_search_keys_name_idx",
                        "referral_search_keys_reversed_name_idx",
                        "referral_search_keys_email_idx",
                        "referral_search_keys_external_ref_idx",
                        "referral_search_keys_phone_idx",
                    ][..],
                ),
                (AMBASSADOR_SEARCH, &["ambassadors_name_key_idx", "(email>? AND email<?)", "(id=?)"][..]),
                (CODE_SEARCH, &["(normalized>? AND normalized<?)"][..]),
            ] {
                let plan = crate::helpers::sqlite_plan(lite, sql);
                assert!(plan.iter().all(|l| !l.starts_with("SCAN")), "a scan: {plan:#?}");
                for index in indexes {
                    assert!(plan.iter().any(|l| l.starts_with("SEARCH") && l.contains(index)), "{index}: {plan:#?}");
                }
            }
        }
        DbConnection::Postgres(pg) => {
            // With no rows a scan is cheapest: forbid it to see which indexes the planner can use.
            diesel::sql_query("SET enable_seqscan = off").execute(pg).unwrap();
            for (sql, indexes) in [
                (
                    CLIENT_SEARCH,
                    &[
                        "referral_search_keys_name_idx",
                        "referral_search_keys_reversed_name_idx",
                        "referral_search_keys_email_idx",
                        "referral_search_keys_external_ref_idx",
                        "referral_search_keys_phone_idx",
                    ][..],
                ),
                (AMBASSADOR_SEARCH, &["ambassadors_name_key_idx", "ambassadors_email_key", "ambassadors_pkey"][..]),
                (CODE_SEARCH, &["referral_codes_normalized_key"][..]),
            ] {
                let plan: Vec<PgPlanRow> = diesel::sql_query(format!("EXPLAIN {sql}")).load(pg).unwrap();
                let plan = plan.into_iter().map(|r| r.line).collect::<Vec<_>>().join("\n");
                assert!(!plan.contains("Seq Scan") && !plan.contains("Filter:"), "{plan}");
                for index in indexes {
                    assert!(plan.contains(index), "{index}: {plan}");
                }
            }
            diesel::sql_query("RESET enable_seqscan").execute(pg).unwrap();
        }
    }
}
