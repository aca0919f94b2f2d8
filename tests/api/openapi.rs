//! `/openapi.json` is a valid OpenAPI 3.1 document that client generators can use: checked
//! by a maintained validator, by a walk of our own (unique operation ids, every reference
//! defined), and against what the server really accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, problem_fields, spawn_app, TestApp};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn document(app: &TestApp) -> Value {
    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Follows a local JSON pointer (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[tokio::test]
async fn operation_ids_are_unique_and_every_reference_is_defined() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                ids.entry(id.to_owned()).or_default().push(format!("{method} {path}"));
            }
        }
    }
    let repeated: Vec<_> = ids.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(repeated.is_empty(), "operationIds used more than once: {repeated:?}");
    assert!(ids.len() >= 54, "{} operations", ids.len());

    let mut refs = BTreeSet::new();
    collect_refs(&doc, &mut refs);
    let dangling: Vec<_> = refs.iter().filter(|r| resolve(&doc, r).is_none()).collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
    for name in ["EmailStatus", "ExportFormat"] {
        assert!(refs.contains(&format!("#/components/schemas/{name}")), "{name} is used");
        assert!(doc["components"]["schemas"][name]["enum"].is_array(), "{name} is defined");
    }
    // The parameters that use them carry their values, so generated clients keep both calls.
    let emails = &doc["paths"]["/v1/emails"]["get"];
    let status = emails["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "status").unwrap();
    let status_schema = serde_json::to_string(&status["schema"]).unwrap();
    assert!(status_schema.contains("#/components/schemas/EmailStatus"), "{status_schema}");
}

#[tokio::test]
async fn the_document_passes_a_standard_openapi_validator() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let file = app.data_dir.with_file_name("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    // openapi-spec-validator (python-openapi), installed by tests/openapi-validate.sh.
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs (the OpenAPI validator needs it)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        !stderr.contains("No module named openapi_spec_validator"),
        "the OpenAPI validator is not installed: run `bash tests/openapi-validate.sh`\n{stderr}"
    );
    assert!(out.status.success(), "the validator refused /openapi.json:\n{stdout}\n{stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
}

#[tokio::test]
async fn request_bodies_are_objects_as_their_schemas_say() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let staff = app.key("staff").await;
    // Every documented JSON request body is an object with no other properties.
    let mut optional = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(schema) =
                item.get(method).and_then(|op| op.pointer("/requestBody/content/application~1json/schema"))
            else {
                continue;
            };
            // An optional body is documented as `oneOf: [null, the object]`.
            let branches = match schema["oneOf"].as_array() {
                Some(one_of) => {
                    assert_eq!(one_of.len(), 2, "{method} {path}: {schema}");
                    assert!(one_of.iter().any(|b| b["type"] == "null"), "{method} {path}: {schema}");
                    optional.push(path.clone());
                    one_of.iter().filter(|b| b["type"] != "null").collect()
                }
                None => vec![schema],
            };
            for branch in branches {
                let object = match branch.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(&doc, r).unwrap(),
                    None => branch,
                };
                assert_eq!(object["type"], "object", "{method} {path}: {object}");
                assert_eq!(object["additionalProperties"], false, "{method} {path}: {object}");
            }
        }
    }
    // The optional bodies take `null` as the schema says (as they take no body at all).
    assert!(optional.contains(&"/v1/ambassadors/{id}/codes".to_owned()), "{optional:?}");
    let amb = app.enrol_named(&staff, "Cy Null").await;
    let amb_id = amb["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/ambassadors/{amb_id}/codes"), &staff, &Value::Null).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    // A referral patched with a JSON array (serde would fill the struct by position) is
    // refused, as the schema's `type: object` says; the same change as an object is taken.
    let amb = app.enrol_named(&staff, "Ann Lee").await;
    let code = amb["codes"][0]["code"].as_str().unwrap();
    let res =
        app.post("/v1/referrals", &staff, &json!({ "code": code, "first_name": "Zed", "email": "z@c.example" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let positional = json!(["Changed", null, null, null, null, null, null, null]);
    let res = app.patch(&format!("/v1/referrals/{id}"), &staff, &positional).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["body"]);
    let got: Value = app.get(&format!("/v1/referrals/{id}"), &staff).await.json().await.unwrap();
    assert_eq!(got["client_first_name"], "Zed");
    let res = app.patch(&format!("/v1/referrals/{id}"), &staff, &json!({ "first_name": "Changed" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Other bodies alike.
    let res = app.post("/v1/ambassadors", &staff, &json!(["Bo", "bo@example.com"])).await;
    let p = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem_fields(&p), vec!["body"]);
}
