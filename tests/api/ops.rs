use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_readiness_and_request_ids() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("x-request-id").is_some());
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/v1/ambassadors", &app.admin_key).await;
    app.get("/v1/ambassadors", "wrong").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"vouch_http_requests_total{method="GET",route="/v1/ambassadors",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"vouch_http_requests_total{method="GET",route="/v1/ambassadors",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("vouch_http_request_duration_seconds_bucket{route=\"/v1/ambassadors\",le=\"+Inf\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_describes_every_endpoint_and_swagger_ui_is_offline() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys/{id}", "delete"),
        ("/v1/ambassadors", "post"),
        ("/v1/ambassadors", "get"),
        ("/v1/ambassadors/{id}", "get"),
        ("/v1/ambassadors/{id}", "patch"),
        ("/v1/ambassadors/{id}/{action}", "post"),
        ("/v1/ambassadors/{id}/codes", "post"),
        ("/v1/ambassadors/{id}/codes", "get"),
        ("/v1/codes/{code}/deactivate", "post"),
        ("/v1/public/codes/{code}", "get"),
        ("/v1/public/ambassador-applications", "post"),
        ("/v1/audit", "get"),
        ("/v1/emails", "get"),
        ("/v1/emails/{id}/retry", "post"),
        ("/v1/referrals", "post"),
        ("/v1/referrals", "get"),
        ("/v1/referrals/{id}", "get"),
        ("/v1/referrals/{id}", "patch"),
        ("/v1/referrals/{id}/sessions", "post"),
        ("/v1/referrals/{id}/sessions", "get"),
        ("/v1/referrals/{id}/complete", "post"),
        ("/v1/referrals/{id}/{action}", "post"),
        ("/v1/referrals/{id}/personal-data", "delete"),
        ("/v1/public/referrals", "post"),
        ("/v1/portal/login", "post"),
        ("/v1/portal/sessions", "post"),
        ("/v1/portal/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/me", "patch"),
        ("/v1/me/codes", "get"),
        ("/v1/me/referrals", "get"),
        ("/v1/me/referrals/{id}", "get"),
        ("/v1/me/rewards", "get"),
        ("/v1/me/payouts", "get"),
        ("/v1/program", "get"),
        ("/v1/program", "put"),
        ("/v1/program/versions", "get"),
        ("/v1/rewards", "get"),
        ("/v1/rewards/adjustments", "post"),
        ("/v1/payouts", "post"),
        ("/v1/payouts", "get"),
        ("/v1/payouts/{id}", "get"),
        ("/v1/payouts/{id}/export.csv", "get"),
        ("/v1/payouts/{id}/lock", "post"),
        ("/v1/payouts/{id}/mark-paid", "post"),
        ("/v1/payouts/{id}/cancel", "post"),
        ("/v1/payouts/{id}/lines/{line}/fail", "post"),
        ("/v1/reports/summary", "get"),
        ("/v1/reports/annual", "get"),
        ("/v1/reports/annual.csv", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from OpenAPI");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Problem",
        "AmbassadorView",
        "EnrolAmbassador",
        "CodeView",
        "PublicCode",
        "ReferralView",
        "MyReferral",
        "MeView",
        "EmailView",
        "EmailList",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(!html.contains("https://"), "Swagger UI must not load assets from the network");
    // Swagger UI loads the same served document (built once, shared by every worker).
    let init = app.client.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await.unwrap().contains("\"/openapi.json\""), "Swagger UI must load /openapi.json");
    let again = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.unwrap(), doc, "the document is the same on every request");
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_methods_and_paths_clients_send() {
    let app = spawn_app().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let res = app.client.request(method.clone(), app.url("/v1/ambassadors")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let res = app.client.request(method, app.url(&format!("/no/such/path/{i}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    app.get("/v1/ambassadors", &app.admin_key).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(!text.contains("/no/such/path"), "{text}");
    assert!(
        text.contains(r#"vouch_http_requests_total{method="other",route="/v1/ambassadors",status="405"} 20"#),
        "{text}"
    );
    assert!(text.contains(r#"vouch_http_requests_total{method="other",route="unmatched",status="404"} 20"#), "{text}");
    assert!(
        text.contains(r#"vouch_http_requests_total{method="GET",route="/v1/ambassadors",status="200"} 1"#),
        "{text}"
    );
    let series = text.lines().filter(|l| l.starts_with("vouch_http_requests_total{")).count();
    assert!(series <= 4, "{text}");
}
