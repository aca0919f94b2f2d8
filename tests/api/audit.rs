use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn admins_read_who_changed_what_in_which_request() {
    let app = spawn_app().await;
    let staff = app.key("staff").await;
    let amb = app.enrol_named(&staff, "Audited").await;
    let id = amb["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/ambassadors/{id}/suspend"), &staff, &json!({ "reason": "checking" })).await;
    let request_id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();

    let res = app.get(&format!("/v1/audit?entity_id={id}"), &app.admin_key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page: Value = res.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let suspend = &items[0];
    assert_eq!(suspend["action"], "ambassador.suspend");
    assert_eq!(suspend["entity_type"], "ambassador");
    assert_eq!(suspend["before_status"], "active");
    assert_eq!(suspend["after_status"], "suspended");
    assert_eq!(suspend["actor_type"], "api_key");
    assert_eq!(suspend["actor_role"], "staff");
    assert_eq!(suspend["request_id"], request_id.as_str());
    assert!(suspend["details"].as_str().unwrap().contains("checking"));
    assert_eq!(items[1]["action"], "ambassador.enrolled");

    let all: Value = app.get("/v1/audit?limit=2", &app.admin_key).await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert!(all["next_cursor"].is_string());
}
