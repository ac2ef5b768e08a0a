//! API authentication and isolation: bad tokens on every route get 401;
//! other tenants' and other users' data is never returned.

use base64::Engine;
use fdb_sink::api::auth::{Claims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::api_harness::{ev, fixture, http, send, token, token_with, ts, Api};

const MONITOR: &str = "0190b5a0-0000-7000-8000-0000000000a1";
const SECRET_PATH: &str = "secret/alice-only.rs";

/// One concrete request per served route.
fn requests() -> Vec<(&'static str, String, Option<Value>)> {
    let mut out = Vec::new();
    for (method, template) in fdb_sink::api::ROUTES {
        let path = template
            .replace("{session_id}", "s-alice")
            .replace("{monitor_id}", MONITOR);
        let (path, body) = match (*method, *template) {
            ("get", "/api/v5/files/history") => (format!("{path}?path={SECRET_PATH}"), None),
            ("get", "/api/v5/files/duplicates") => {
                (format!("{path}?checksum=sha256:{:064x}", 1), None)
            }
            ("post", "/api/v5/agents/heartbeat") => (
                path,
                Some(
                    json!({"session_id": "s-alice", "agent_type": "claude", "status": "Active",
                            "last_heartbeat": ts(1), "files_claimed": []}),
                ),
            ),
            ("post", "/api/v5/agents/claims") => (
                path,
                Some(json!({"session_id": "s-alice", "agent_type": "claude",
                            "paths": [SECRET_PATH], "ttl_seconds": 60})),
            ),
            ("delete", "/api/v5/agents/claims") => (
                path,
                Some(json!({"session_id": "s-alice", "paths": [SECRET_PATH]})),
            ),
            _ => (path, None),
        };
        out.push((*method, path, body));
    }
    assert_eq!(out.len(), 9);
    out
}

fn call(
    api: &Api,
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: &Option<Value>,
) -> (u16, Value) {
    let c = http();
    let mut req = match method {
        "get" => c.get(api.url(path)),
        "post" => c.post(api.url(path)),
        "delete" => c.delete(api.url(path)),
        m => panic!("method {m}"),
    };
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    send(req)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn claims(tenant: &str, user: &str) -> Claims {
    Claims {
        tenant_id: tenant.into(),
        user_id: user.into(),
        role: Role::Admin,
        exp: jsonwebtoken::get_current_timestamp() + 3600,
    }
}

/// Alice's data: records, a heartbeat and a claim.
fn seed(api: &Api) {
    api.ingest(&[
        ev(
            "acme",
            "alice",
            "s-alice",
            MONITOR,
            1,
            &ts(10),
            "create",
            SECRET_PATH,
        ),
        ev(
            "acme",
            "alice",
            "s-alice",
            MONITOR,
            2,
            &ts(20),
            "update",
            SECRET_PATH,
        ),
    ]);
    let alice = token("acme", "alice", Role::User);
    for (method, path, body) in requests() {
        if method == "post" {
            let (s, r) = api.post(&alice, &path, body.as_ref().expect("body"));
            assert_eq!(s, 200, "{path}: {r}");
        }
    }
}

#[test]
fn bad_tokens_get_401_on_every_route() {
    let api = Api::start(&[]);
    seed(&api);
    let body = serde_json::to_string(&claims("acme", "alice")).expect("json");
    let rs_private = std::fs::read(fixture("rs256-private.pem")).expect("pem");
    let rs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("acme", "alice"),
        &EncodingKey::from_rsa_pem(&rs_private).expect("rsa key"),
    )
    .expect("rs256");
    let good = token("acme", "alice", Role::Admin);
    let mut tampered: Vec<&str> = good.split('.').collect();
    let evil_claims = b64(&serde_json::to_string(&claims("globex", "mallory")).expect("json"));
    tampered[1] = &evil_claims;
    let tampered = tampered.join(".");
    let now = jsonwebtoken::get_current_timestamp();
    let not_yet = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"tenant_id": "acme", "user_id": "alice", "role": "admin",
                            "exp": now + 3600, "nbf": now + 600}),
        &EncodingKey::from_secret(crate::api_harness::SECRET),
    )
    .expect("nbf token");
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some(format!("Basic {}", b64("alice:pw")))),
        ("garbage", Some("Bearer not.a.token".into())),
        (
            "forged signature",
            Some(format!(
                "Bearer {}",
                token_with(b"wrong-secret", "acme", "alice", Role::Admin, 3600)
            )),
        ),
        ("tampered claims", Some(format!("Bearer {tampered}"))),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                token_with(
                    crate::api_harness::SECRET,
                    "acme",
                    "alice",
                    Role::Admin,
                    -600
                )
            )),
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&body)
            )),
        ),
        ("wrong algorithm", Some(format!("Bearer {rs256}"))),
        ("not valid yet (nbf)", Some(format!("Bearer {not_yet}"))),
    ];
    for (method, path, req_body) in requests() {
        for (what, auth) in &bad {
            let (s, r) = call(&api, auth.as_deref(), method, &path, &req_body);
            assert_eq!(s, 401, "{what} on {method} {path}: {r}");
            assert_eq!(r["error"], "unauthorized", "{what} on {method} {path}: {r}");
            assert!(r["message"].is_string());
            assert!(!r.to_string().contains("s-alice\",\"agent_type"), "{r}");
        }
        // The valid token works on the same request.
        let (s, r) = call(
            &api,
            Some(&format!("Bearer {good}")),
            method,
            &path,
            &req_body,
        );
        assert!(s == 200, "valid token on {method} {path}: {s} {r}");
    }
}

#[test]
fn other_tenants_and_users_never_see_the_data() {
    let api = Api::start(&[]);
    seed(&api);
    let leaks = |r: &Value| {
        let t = r.to_string();
        t.contains(SECRET_PATH) || t.contains("\"alice\"")
    };
    // Another tenant, even as admin: nothing of acme, on every route.
    let globex = format!("Bearer {}", token("globex", "mallory", Role::Admin));
    // Another user of the same tenant.
    let bob = format!("Bearer {}", token("acme", "bob", Role::User));
    for (who, auth) in [("other tenant", &globex), ("other user", &bob)] {
        for (method, path, body) in requests() {
            let (s, r) = call(&api, Some(auth), method, &path, &body);
            assert!(
                [200, 403, 404].contains(&s),
                "{who} {method} {path}: {s} {r}"
            );
            if s == 200 && method == "get" {
                assert!(!leaks(&r), "{who} {method} {path} leaked: {r}");
            }
            if s >= 400 {
                assert!(
                    ["forbidden", "not_found"].contains(&r["error"].as_str().unwrap_or("")),
                    "{r}"
                );
            }
        }
    }
    // Specific expectations.
    let (s, _) = call(
        &api,
        Some(&globex),
        "get",
        "/api/v5/agents/s-alice/logs",
        &None,
    );
    assert_eq!(s, 404);
    let (s, _) = call(
        &api,
        Some(&bob),
        "get",
        "/api/v5/agents/s-alice/logs",
        &None,
    );
    assert_eq!(s, 404);
    let (s, _) = call(
        &api,
        Some(&bob),
        "get",
        "/api/v5/agents/logs?user_id=alice",
        &None,
    );
    assert_eq!(s, 403);
    let (s, _) = call(
        &api,
        Some(&globex),
        "get",
        &format!("/api/v5/monitors/{MONITOR}/delivery"),
        &None,
    );
    assert_eq!(s, 404);
    let (s, _) = call(
        &api,
        Some(&bob),
        "post",
        "/api/v5/agents/heartbeat",
        &Some(json!({"session_id": "s-alice", "agent_type": "x", "status": "Idle"})),
    );
    assert_eq!(s, 403, "bob cannot heartbeat for alice's session");
    let (s, _) = call(
        &api,
        Some(&bob),
        "delete",
        "/api/v5/agents/claims",
        &Some(json!({"session_id": "s-alice", "paths": [SECRET_PATH]})),
    );
    assert_eq!(s, 403, "bob cannot release alice's claim");
    // Alice and acme's admin do see it.
    let alice = token("acme", "alice", Role::User);
    let (s, r) = api.get(&alice, "/api/v5/agents/s-alice/logs");
    assert_eq!(
        (s, r["records"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{r}"
    );
    let admin = token("acme", "root", Role::Admin);
    let (s, r) = api.get(&admin, "/api/v5/agents");
    assert_eq!(s, 200);
    assert_eq!(r["agents"][0]["session_id"], "s-alice", "{r}");
    // The claim survived bob's attempts: globex's claim lives in globex.
    let (s, r) = api.post(&admin, "/api/v5/agents/claims",
        &json!({"session_id": "s-root", "agent_type": "x", "paths": [SECRET_PATH], "ttl_seconds": 60}));
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["holders"][0]["session_id"], "s-alice", "{r}");
}

#[test]
fn public_key_servers_accept_only_their_algorithm() {
    for (alg, public, private) in [
        (Algorithm::RS256, "rs256-public.pem", "rs256-private.pem"),
        (Algorithm::ES256, "es256-public.pem", "es256-private.pem"),
    ] {
        let api = Api::start_public_key(&fixture(public));
        let pem = std::fs::read(fixture(private)).expect("pem");
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("key");
        let good =
            jsonwebtoken::encode(&Header::new(alg), &claims("acme", "alice"), &key).expect("sign");
        let (s, r) = api.get(&good, "/api/v5/agents");
        assert_eq!(s, 200, "{alg:?}: {r}");
        // The classic confusion attack: HS256 keyed with the public key.
        let public_pem = std::fs::read(fixture(public)).expect("pem");
        let confused = token_with(&public_pem, "acme", "alice", Role::Admin, 3600);
        let (s, r) = api.get(&confused, "/api/v5/agents");
        assert_eq!(
            (s, r["error"].as_str()),
            (401, Some("unauthorized")),
            "{alg:?}"
        );
        let hs = token("acme", "alice", Role::Admin);
        assert_eq!(api.get(&hs, "/api/v5/agents").0, 401);
    }
}

#[test]
fn the_api_refuses_to_start_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = crate::api_harness::serve_command(dir.path(), None)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jwt-secret-file"));
}

/// A short HS256 secret can be guessed offline from any token it signed,
/// and then signs tokens for every tenant: serve and token refuse it.
#[test]
fn a_secret_under_32_bytes_is_refused_by_serve_and_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, "password1234\n").expect("secret");
    let serve = crate::api_harness::serve_command(dir.path(), Some(&secret))
        .output()
        .expect("run");
    let token = std::process::Command::new(crate::harness::BIN)
        .args(["token", "--tenant", "acme", "--user", "alice"])
        .arg("--jwt-secret-file")
        .arg(&secret)
        .output()
        .expect("run");
    for out in [serve, token] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("12 bytes; HS256 needs at least 32"), "{err}");
        assert!(out.stdout.is_empty(), "no token printed");
    }
}

#[test]
fn the_token_tool_mints_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.key");
    std::fs::write(&secret, [crate::api_harness::SECRET, b"\n"].concat()).expect("secret");
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "token", "--tenant", "acme", "--user", "alice", "--role", "admin", "--ttl", "2h",
        ])
        .arg("--jwt-secret-file")
        .arg(&secret)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let caller = fdb_sink::api::auth::Verifier::from_secret_file(&secret)
        .expect("verifier")
        .verify(&tok)
        .expect("the server's verifier accepts it");
    assert_eq!(
        (caller.tenant.as_str(), caller.user.as_str(), caller.role),
        ("acme", "alice", Role::Admin)
    );
    let api = Api::start(&[]);
    assert_eq!(api.get(&tok, "/api/v5/agents").0, 200);
    for (bad, says) in [
        (
            ["--tenant", "acme", "--user", "alice", "--ttl", "soon"],
            "bad duration",
        ),
        (
            ["--tenant", "acme", "--user", "alice", "--role", "root"],
            "root",
        ),
        (
            ["--tenant", "a b", "--user", "alice", "--ttl", "1h"],
            "--tenant and --user",
        ),
    ] {
        let out = std::process::Command::new(crate::harness::BIN)
            .arg("token")
            .args(bad)
            .arg("--jwt-secret-file")
            .arg(&secret)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{bad:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

/// Rotating the key file takes effect without a restart: tokens of the new
/// key are accepted and tokens of the old one refused from then on.
#[test]
fn a_rotated_key_file_is_used_without_a_restart() {
    let api = Api::start(&[]);
    let old = token("acme", "alice", Role::User);
    assert_eq!(api.get(&old, "/api/v5/agents").0, 200);
    let new_secret = b"rotated-secret-9876543210-abcdefghij";
    std::fs::write(api.secret_file(), [&new_secret[..], b"\n"].concat()).expect("rotate");
    let new = token_with(new_secret, "acme", "alice", Role::User, 3600);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while api.get(&new, "/api/v5/agents").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "a token of the new key is still refused"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, body) = api.get(&old, "/api/v5/agents");
    assert_eq!(status, 401, "a token of the replaced key: {body}");
    // A key file that does not load keeps the current key.
    std::fs::write(api.secret_file(), b"  \n").expect("empty");
    std::thread::sleep(std::time::Duration::from_secs(7));
    assert_eq!(api.get(&new, "/api/v5/agents").0, 200);
}

/// With --jwt-audience and --jwt-issuer, `aud` and `iss` are required and
/// must match; without --jwt-audience a token carrying an `aud` is refused.
#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let mint = |extra: Value| {
        let mut c = json!({"tenant_id": "acme", "user_id": "alice", "role": "user",
                           "exp": jsonwebtoken::get_current_timestamp() + 600});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(crate::api_harness::SECRET),
        )
        .expect("mint")
    };
    let api = Api::start(&[
        "--jwt-audience",
        "fdb-sink-api",
        "--jwt-issuer",
        "https://idp",
    ]);
    let cases = [
        (json!({"aud": "fdb-sink-api", "iss": "https://idp"}), 200),
        (
            json!({"aud": ["other", "fdb-sink-api"], "iss": "https://idp"}),
            200,
        ),
        (json!({"aud": "other-service", "iss": "https://idp"}), 401),
        (json!({"aud": "fdb-sink-api", "iss": "https://evil"}), 401),
        (json!({"iss": "https://idp"}), 401),
        (json!({"aud": "fdb-sink-api"}), 401),
        (json!({}), 401),
    ];
    for (extra, want) in cases {
        let (status, body) = api.get(&mint(extra.clone()), "/api/v5/agents");
        assert_eq!(status, want, "{extra}: {body}");
    }
    let plain = Api::start(&[]);
    assert_eq!(plain.get(&mint(json!({})), "/api/v5/agents").0, 200);
    let (status, body) = plain.get(&mint(json!({"aud": "other-service"})), "/api/v5/agents");
    assert_eq!(status, 401, "{body}");
}

/// A store or decoding failure answers 500 `internal` with a fixed message:
/// the details (what failed to decode, store paths) go to the log only.
#[test]
fn server_errors_do_not_leak_internal_details() {
    use fdb_sink::keys::Keys;
    use fdb_sink::store::embedded::EmbeddedStore;
    use fdb_sink::store::StoreExt;
    let api = Api::start_prepared(&[], |dir| {
        let store = EmbeddedStore::open(dir).expect("open");
        store
            .transact(|t| t.set(&Keys::default().agent("acme", "s-x"), b"{not json"))
            .expect("write");
    });
    let admin = token("acme", "ops", Role::Admin);
    let (status, body) = api.get(&admin, "/api/v5/agents");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "internal", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for leak in [
        "agent row",
        "key must be",
        "line 1",
        "column",
        "corrupt",
        "/",
    ] {
        assert!(!message.contains(leak), "message leaks {leak:?}: {message}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = api.sink.log.lock().map(|l| l.clone()).unwrap_or_default();
        if log.contains("agent row") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "detail not logged:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A token whose `exp` lies further ahead than --jwt-max-lifetime (7 days by
/// default) is refused, as is one whose header lists critical extensions.
#[test]
fn far_future_expiry_and_critical_extensions_are_refused() {
    let mint = |exp: u64, crit: bool| {
        let mut header = Header::new(Algorithm::HS256);
        if crit {
            header.crit = Some(vec!["exp".into()]);
        }
        jsonwebtoken::encode(
            &header,
            &json!({"tenant_id": "acme", "user_id": "alice", "role": "user", "exp": exp}),
            &EncodingKey::from_secret(crate::api_harness::SECRET),
        )
        .expect("mint")
    };
    let now = jsonwebtoken::get_current_timestamp();
    let day = 24 * 3600;
    let api = Api::start(&[]);
    let cases = [
        (now + 6 * day, false, 200),
        (now + 8 * day, false, 401),
        (u64::MAX / 2, false, 401),
        (now + 600, true, 401),
    ];
    for (exp, crit, want) in cases {
        let (status, body) = api.get(&mint(exp, crit), "/api/v5/agents");
        assert_eq!(status, want, "exp {exp} crit {crit}: {body}");
    }
    let longer = Api::start(&["--jwt-max-lifetime", "30d"]);
    assert_eq!(
        longer.get(&mint(now + 8 * day, false), "/api/v5/agents").0,
        200
    );
}

/// A key rotated after the server loaded its key but before the reload loop
/// first looked at the file is still picked up at the first interval: the
/// loop compares the file with what the key in use was read from.
#[test]
fn a_rotation_during_start_up_is_not_missed() {
    use fdb_sink::api::auth::{reload_loop, SharedVerifier, Verifier, KEY_RELOAD_INTERVAL};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwt.key");
    std::fs::write(&path, b"start-up-secret-0123456789-abcdefghij\n").expect("key");
    let shared = Arc::new(SharedVerifier::new(
        Verifier::from_secret_file(&path).expect("load"),
    ));
    // The rotation lands while the server is still starting.
    let new_secret = b"rotated-at-start-9876543210-abcdefghij";
    std::fs::write(&path, [&new_secret[..], b"\n"].concat()).expect("rotate");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let load_path = path.clone();
    runtime.spawn(reload_loop(
        path.clone(),
        shared.clone(),
        move || Verifier::from_secret_file(&load_path).map_err(|e| e.to_string()),
        stop,
    ));
    let new = token_with(new_secret, "acme", "alice", Role::User, 3600);
    let deadline = std::time::Instant::now() + KEY_RELOAD_INTERVAL * 3;
    while shared.current().verify(&new).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the key rotated during start-up was never loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let old = token_with(
        b"start-up-secret-0123456789-abcdefghij",
        "acme",
        "alice",
        Role::User,
        3600,
    );
    assert!(shared.current().verify(&old).is_err());
    let _ = stop_tx.send(true);
}

#[test]
fn a_key_file_that_fails_to_load_once_is_loaded_when_read_again() {
    use fdb_sink::api::auth::{reload_loop, SharedVerifier, Verifier, KEY_RELOAD_INTERVAL};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwt.key");
    std::fs::write(&path, b"first-secret-0123456789-abcdefghij0123\n").expect("key");
    let shared = Arc::new(SharedVerifier::new(
        Verifier::from_secret_file(&path).expect("load"),
    ));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let new_secret = b"second-secret-9876543210-abcdefghij0123";
    std::fs::write(&path, [&new_secret[..], b"\n"].concat()).expect("rotate");
    // The first load after the change reads the file half written (as a
    // writer that truncates and then writes can leave it for a moment);
    // the file then holds the complete new key, unchanged.
    let loads = Arc::new(AtomicUsize::new(0));
    let (load_path, counter) = (path.clone(), loads.clone());
    runtime.spawn(reload_loop(
        path.clone(),
        shared.clone(),
        move || {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err("the key file is empty".to_owned());
            }
            Verifier::from_secret_file(&load_path).map_err(|e| e.to_string())
        },
        stop,
    ));
    let new = token_with(new_secret, "acme", "alice", Role::User, 3600);
    let deadline = std::time::Instant::now() + KEY_RELOAD_INTERVAL * 4;
    while shared.current().verify(&new).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never loaded after one failed load ({} loads)",
            loads.load(Ordering::SeqCst)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = stop_tx.send(true);
}

/// A bad token's 401 says what is wrong in plain words, not the token
/// library's internal names.
#[test]
fn token_faults_are_named_in_plain_words() {
    let api = Api::start(&[]);
    let now = jsonwebtoken::get_current_timestamp();
    let not_yet = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"tenant_id": "acme", "user_id": "alice", "role": "user",
                "exp": now + 3600, "nbf": now + 600}),
        &EncodingKey::from_secret(crate::api_harness::SECRET),
    )
    .expect("nbf token");
    let cases = [
        (
            token_with(b"wrong-secret", "acme", "alice", Role::User, 3600),
            "signature does not verify",
        ),
        (
            token_with(
                crate::api_harness::SECRET,
                "acme",
                "alice",
                Role::User,
                -600,
            ),
            "expired",
        ),
        ("abc.def".to_owned(), "not a JWT"),
        (not_yet, "not valid yet"),
    ];
    for (tok, want) in cases {
        let (s, r) = api.get(&tok, "/api/v5/agents");
        assert_eq!(s, 401, "{r}");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{want:?} not in {message:?}");
        for internal in [
            "InvalidSignature",
            "ExpiredSignature",
            "InvalidToken",
            "Immature",
        ] {
            assert!(!message.contains(internal), "{message}");
        }
    }
}

/// While the store cannot be opened (here: locked by another process),
/// every route answers 503 `store_unavailable` with `Retry-After` and a
/// fixed message: no store path, lock or error chain.
#[test]
fn every_route_answers_503_without_details_while_the_store_is_down() {
    use fdb_sink::store::embedded::EmbeddedStore;
    let mut holder = None;
    let mut store_dir = std::path::PathBuf::new();
    let api = Api::start_prepared(&[], |dir| {
        holder = Some(EmbeddedStore::open(dir).expect("open"));
        store_dir = dir.to_path_buf();
    });
    let admin = format!("Bearer {}", token("acme", "ops", Role::Admin));
    for (method, path, body) in requests() {
        let mut req = match method {
            "get" => http().get(api.url(&path)),
            "post" => http().post(api.url(&path)),
            _ => http().delete(api.url(&path)),
        }
        .header("authorization", &admin);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let retry = resp.headers().get("retry-after").cloned();
        let text = resp.text().unwrap_or_default();
        assert_eq!(status, 503, "{method} {path}: {text}");
        assert!(retry.is_some(), "{method} {path}: no Retry-After");
        let r: Value = serde_json::from_str(&text).expect("JSON body");
        assert_eq!(r["error"], "store_unavailable", "{method} {path}: {r}");
        for leak in [
            store_dir.to_str().expect("utf8"),
            "lock",
            "fjall",
            "audit.fjall",
            "/",
        ] {
            assert!(
                !text.contains(leak),
                "{method} {path} leaks {leak:?}: {text}"
            );
        }
    }
    drop(holder);
}
