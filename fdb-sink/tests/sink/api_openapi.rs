//! docs/openapi.yaml against the running server: every documented
//! operation exists and answers with a documented status and a body that
//! validates against the documented schema; every served route is documented.

use std::collections::BTreeSet;

use fdb_sink::api::auth::Role;
use serde_json::{json, Map, Value};

use crate::api_harness::{ev, http, send, token, ts, Api};

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
    serde_yaml::from_str(&text).expect("valid YAML")
}

/// Follows a local `$ref`.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.strip_prefix('#').expect("local $ref");
            deref(
                doc,
                doc.pointer(ptr)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => v,
    }
}

/// An OpenAPI 3.0 schema as plain JSON Schema: `$ref`s inlined, `nullable`
/// turned into a `null` type.
fn json_schema(doc: &Value, v: &Value) -> Value {
    match deref(doc, v) {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "nullable" | "example" | "format" => {}
                    "properties" => {
                        let props = v
                            .as_object()
                            .expect("properties")
                            .iter()
                            .map(|(k, v)| (k.clone(), json_schema(doc, v)))
                            .collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(k.clone(), json_schema(doc, v));
                    }
                }
            }
            if m.get("nullable") == Some(&json!(true)) {
                if let Some(t) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| json_schema(doc, x)).collect()),
        other => other.clone(),
    }
}

const MONITOR: &str = "0190b5a0-0000-7000-8000-0000000000d1";

#[test]
fn the_openapi_document_matches_the_server() {
    let doc = spec();
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    // Documented operations == served routes.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = fdb_sink::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and the router differ"
    );

    let api = Api::start(&[]);
    let mut e = ev(
        "acme",
        "alice",
        "s-1",
        MONITOR,
        1,
        &ts(1),
        "create",
        "src/a.rs",
    );
    e["checksum"] = json!(format!("sha256:{:064x}", 0xaa));
    api.ingest(&[
        e,
        ev(
            "acme",
            "alice",
            "s-1",
            MONITOR,
            2,
            &ts(2),
            "update",
            "src/b.rs",
        ),
    ]);
    let admin = token("acme", "alice", Role::Admin);

    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let mut url = path.clone();
        let mut query = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = deref(&doc, p);
            let name = p["name"].as_str().expect("name");
            let required = p["required"].as_bool().unwrap_or(false);
            match (p["in"].as_str(), required) {
                (Some("path"), _) => {
                    let ex = p["example"]
                        .as_str()
                        .expect("path parameters have examples");
                    url = url.replace(&format!("{{{name}}}"), ex);
                }
                (Some("query"), true) => {
                    let ex = p["example"]
                        .as_str()
                        .expect("required parameters have examples");
                    query.push((name.to_owned(), ex.to_owned()));
                }
                // An optional parameter with an example is one of a set of
                // alternatives (path or path_b64): the example is sent.
                (Some("query"), false) => {
                    if let Some(ex) = p["example"].as_str() {
                        query.push((name.to_owned(), ex.to_owned()));
                    }
                }
                _ => {}
            }
        }
        let body = op["requestBody"]["content"]["application/json"]["example"].clone();
        let build = |tok: Option<&str>| {
            let c = http();
            let full = api.url(&url);
            let mut req = match method.as_str() {
                "get" => c.get(full),
                "post" => c.post(full),
                "delete" => c.delete(full),
                m => panic!("undocumented method {m}"),
            }
            .query(&query);
            if let Some(t) = tok {
                req = req.bearer_auth(t);
            }
            if !body.is_null() {
                req = req.json(&body);
            }
            req
        };
        for (who, tok) in [("admin", Some(admin.as_str())), ("anonymous", None)] {
            let (status, resp) = send(build(tok));
            let documented = &op["responses"][status.to_string()];
            assert!(
                !documented.is_null(),
                "{method} {path} as {who} answered undocumented {status}: {resp}"
            );
            if who == "admin" {
                assert_eq!(status, 200, "{method} {path}: {resp}");
            }
            let response = deref(&doc, documented);
            let schema = json_schema(&doc, &response["content"]["application/json"]["schema"]);
            let validator = jsonschema::validator_for(&schema).expect("schema compiles");
            let errors: Vec<String> = validator
                .iter_errors(&resp)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} {status} does not match its schema: {errors:?}\n{resp}"
            );
        }
    }
    // The conflict answer matches its schema too.
    let (s, r) = api.post(
        &token("acme", "bob", Role::User),
        "/api/v5/agents/claims",
        &json!({"session_id": "s-bob", "agent_type": "x", "paths": ["src/x.rs"], "ttl_seconds": 60}),
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = api.post(
        &admin,
        "/api/v5/agents/claims",
        &json!({"session_id": "s-1", "agent_type": "x", "paths": ["src/x.rs"], "ttl_seconds": 60}),
    );
    assert_eq!(s, 409);
    let schema = json_schema(&doc, &json!({"$ref": "#/components/schemas/ClaimConflict"}));
    assert!(
        jsonschema::validator_for(&schema)
            .expect("schema")
            .is_valid(&r),
        "{r}"
    );
}
