//! Bearer JWT authentication and the caller's identity.
//!
//! Tokens are verified with exactly one algorithm, fixed by the key the
//! server was started with: HS256 for `--jwt-secret-file`, RS256 or ES256 for
//! a PEM public key in `--jwt-public-key-file`. A token naming another
//! algorithm (including `none`) is refused before any signature check, so a
//! public key can never be used as an HMAC secret; so is a header listing
//! critical extensions (`crit`). `exp` is required and checked (with
//! [`LEEWAY_SECS`] of clock skew) and may lie at most `--jwt-max-lifetime`
//! ahead; `aud` and `iss` are checked when `--jwt-audience`/`--jwt-issuer`
//! are given (without an audience, a token carrying `aud` is refused). The
//! claims `tenant_id`, `user_id` and `role` (`user` or `admin`) are required.
//! The key file is read again every [`KEY_RELOAD_INTERVAL`]: a changed key
//! replaces the old one without a restart ([`reload_loop`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ApiState;
use crate::record::valid_id;

/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// How often the key file is read again; a changed key replaces the old one
/// without a restart.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Own sessions and records only.
    User,
    /// Everything of the tenant.
    Admin,
}

/// The claims the API requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub tenant_id: String,
    pub user_id: String,
    pub role: Role,
    /// Expiry, seconds since the epoch. A fraction (RFC 7519's NumericDate
    /// allows one) is rounded to the nearest second, as the signature
    /// check's own expiry test does.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
}

/// A NumericDate claim as whole seconds: an integer, or a finite,
/// non-negative number with a fraction.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(secs) = n.as_u64() {
        return Ok(secs);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && (0.0..u64::MAX as f64).contains(&f) => Ok(f.round() as u64),
        _ => Err(serde::de::Error::custom(format!(
            "a NumericDate must be a number of seconds since the epoch, not {n}"
        ))),
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub user: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The user whose data a request may read: the caller's own for role
    /// `user` (asking for another is 403), any (or the given one) for admins.
    pub fn user_scope(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        if let Some(u) = requested.filter(|u| !crate::record::valid_id(u)) {
            return Err(ApiError::bad_request(format!(
                "user_id {u:?} is not an id: 1-128 characters of [A-Za-z0-9._:@-]"
            )));
        }
        match (self.role, requested) {
            (Role::Admin, r) => Ok(r.map(str::to_owned)),
            (Role::User, None) => Ok(Some(self.user.clone())),
            (Role::User, Some(u)) if u == self.user => Ok(Some(self.user.clone())),
            (Role::User, Some(_)) => Err(ApiError::Forbidden(
                "role `user` may read only its own records".into(),
            )),
        }
    }
}

/// Failure to load a verification key.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    /// The cause is part of the message (not a `source`), so a report that
    /// prints the chain does not repeat it.
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0} is empty")]
    Empty(String),
    #[error(
        "{path} holds a secret of {len} bytes; HS256 needs at least {MIN_SECRET_BYTES} \
         (e.g. `head -c 32 /dev/urandom | base64 > {path}`)"
    )]
    ShortSecret { path: String, len: usize },
    #[error("{0} holds neither an RSA nor an EC (P-256) public key in PEM form")]
    NotAPublicKey(String),
}

/// Longest token lifetime accepted by default (`--jwt-max-lifetime`).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Verifies bearer tokens with one key and one algorithm.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// A token whose `exp` lies further ahead than this is refused.
    max_lifetime: Duration,
    /// The key file's content the key was read from (`None`: not read from
    /// a file). [`reload_loop`] compares the file with it.
    source: Option<Vec<u8>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Verifier {
    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        // A token not valid yet (`nbf` in the future) is refused too.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Verifier {
            key,
            validation,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            source: None,
        }
    }

    fn read_from(mut self, content: Vec<u8>) -> Self {
        self.source = Some(content);
        self
    }

    /// The key file's content this verifier was built from, if it was read
    /// from a file.
    pub fn source(&self) -> Option<&[u8]> {
        self.source.as_deref()
    }

    /// Refuses tokens whose `exp` is more than `max` ahead
    /// (`--jwt-max-lifetime`): a token that practically never expires stays
    /// usable for as long as its key if it leaks.
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Also requires `aud` to be `audience` (`--jwt-audience`). Without it, a
    /// token carrying any `aud` is refused: it was issued for some other
    /// service.
    pub fn with_audience(mut self, audience: Option<&str>) -> Self {
        if let Some(a) = audience {
            self.validation.set_audience(&[a]);
            self.validation.set_required_spec_claims(&["exp", "aud"]);
        }
        self
    }

    /// Also requires `iss` to be `issuer` (`--jwt-issuer`).
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Self {
        if let Some(i) = issuer {
            self.validation.set_issuer(&[i]);
            let mut required: Vec<&str> = vec!["exp", "iss"];
            if self.validation.required_spec_claims.contains("aud") {
                required.push("aud");
            }
            self.validation.set_required_spec_claims(&required);
        }
        self
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// RS256 or ES256, from a PEM public key (the kind of key decides).
    pub fn from_public_pem(pem: &[u8], name: &str) -> Result<Self, KeyLoadError> {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(k, Algorithm::RS256));
        }
        if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with(k, Algorithm::ES256));
        }
        Err(KeyLoadError::NotAPublicKey(name.to_owned()))
    }

    /// HS256 from a secret file (surrounding whitespace ignored).
    pub fn from_secret_file(path: &Path) -> Result<Self, KeyLoadError> {
        let raw = read_key_file(path)?;
        let secret = trimmed_secret(&raw, path)?;
        Ok(Self::hs256(&secret).read_from(raw))
    }

    pub fn from_public_key_file(path: &Path) -> Result<Self, KeyLoadError> {
        let pem = read_key_file(path)?;
        Ok(Self::from_public_pem(&pem, &path.display().to_string())?.read_from(pem))
    }

    /// The one algorithm accepted.
    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// Verifies a token and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let unauthorized = |m: String| ApiError::Unauthorized(m);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("malformed token: {}", token_error(&e))))?;
        if header.alg != self.algorithm() {
            return Err(unauthorized(format!(
                "token algorithm {:?} is not accepted (this server verifies {:?})",
                header.alg,
                self.algorithm()
            )));
        }
        // RFC 7515 §4.1.11: a token naming critical extensions the verifier
        // does not implement must be refused; this server implements none.
        if header.crit.is_some() {
            return Err(unauthorized(
                "token header lists critical extensions (crit), which this server does not support"
                    .into(),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| unauthorized(format!("invalid token: {}", token_error(&e))))?;
        let c = data.claims;
        let latest = jsonwebtoken::get_current_timestamp()
            .saturating_add(self.max_lifetime.as_secs())
            .saturating_add(LEEWAY_SECS);
        if c.exp > latest {
            return Err(unauthorized(format!(
                "token expires more than {}s from now (the longest lifetime accepted); \
                 issue tokens with a shorter exp",
                self.max_lifetime.as_secs()
            )));
        }
        if !valid_id(&c.tenant_id) || !valid_id(&c.user_id) {
            return Err(unauthorized(
                "tenant_id and user_id must be 1-128 chars of [A-Za-z0-9._:@-]".into(),
            ));
        }
        Ok(Caller {
            tenant: c.tenant_id,
            user: c.user_id,
            role: c.role,
        })
    }
}

/// A token's fault in words a client can act on (the library's own names,
/// such as `InvalidSignature`, say little).
fn token_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidToken => "not a JWT (expected three base64url parts separated by dots)".into(),
        K::InvalidSignature => "the signature does not verify with this server's key".into(),
        K::ExpiredSignature => "the token has expired (exp is in the past)".into(),
        K::ImmatureSignature => "the token is not valid yet (nbf is in the future)".into(),
        K::InvalidAudience => "the token's aud is not the audience this server requires \
             (--jwt-audience; without it, no aud is accepted)"
            .into(),
        K::InvalidIssuer => "the token's iss is not the issuer this server requires".into(),
        K::InvalidSubject => "the token's sub is not accepted".into(),
        K::MissingRequiredClaim(c) => format!("the token lacks the required claim {c:?}"),
        K::InvalidClaimFormat(c) => format!("the token's claim {c:?} has the wrong type"),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            "the token's alg is missing or not accepted".into()
        }
        K::Base64(_) => "a part of the token is not base64url".into(),
        K::Utf8(_) => "a part of the token is not UTF-8".into(),
        K::Json(j) => format!("its header or claims are not as expected: {j}"),
        _ => e.to_string(),
    }
}

/// The verifier in use, replaced when the key file changes.
#[derive(Debug)]
pub struct SharedVerifier {
    current: RwLock<Arc<Verifier>>,
}

impl SharedVerifier {
    pub fn new(v: Verifier) -> Self {
        SharedVerifier {
            current: RwLock::new(Arc::new(v)),
        }
    }

    /// The verifier to check a token with now.
    pub fn current(&self) -> Arc<Verifier> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the verifier: from now on only the new key is accepted.
    pub fn replace(&self, v: Verifier) {
        match self.current.write() {
            Ok(mut cur) => *cur = Arc::new(v),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(v),
        }
    }
}

/// Reads the key file every [`KEY_RELOAD_INTERVAL`] and, when its content
/// differs from the content the verifier in use was built from, replaces the
/// verifier with one built by `load` (a file that does not load keeps the
/// previous key and is logged). Comparing with the verifier's own source, not
/// with a read made when the loop starts, means a rotation that lands between
/// the key's first load and the loop's start is picked up at the first
/// interval. Ends when `stop` turns true.
pub async fn reload_loop(
    path: PathBuf,
    shared: Arc<SharedVerifier>,
    load: impl Fn() -> Result<Verifier, String> + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = shared.current().source().map(<[u8]>::to_vec);
    // The content of the file last found not to load: warned about once.
    let mut failed: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(KEY_RELOAD_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = std::fs::read(&path).ok();
        if now.is_none() || now == seen {
            continue;
        }
        match load() {
            Ok(v) => {
                // What the new key was read from: the file may have changed
                // again between the comparison above and the load.
                seen = v.source().map(<[u8]>::to_vec).or(now);
                shared.replace(v);
                tracing::info!(path = %path.display(), "API token key reloaded");
            }
            Err(e) => {
                // `seen` stays: the load may have read the file half
                // written, and the same content read again is retried.
                if failed != now {
                    tracing::warn!(path = %path.display(), error = %e,
                        "API token key file changed but does not load; keeping the previous key");
                    failed = now;
                }
            }
        }
    }
}

/// Shortest HS256 secret accepted: the hash's size (RFC 7518, 3.2). A
/// shorter one can be guessed offline from any token, and a guessed secret
/// mints tokens for every tenant.
pub const MIN_SECRET_BYTES: usize = 32;

/// Reads a secret file, trimmed; an empty or short one is an error.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, KeyLoadError> {
    trimmed_secret(&read_key_file(path)?, path)
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyLoadError> {
    std::fs::read(path).map_err(|error| KeyLoadError::Read {
        path: path.display().to_string(),
        error,
    })
}

fn trimmed_secret(raw: &[u8], path: &Path) -> Result<Vec<u8>, KeyLoadError> {
    let secret = raw.trim_ascii().to_vec();
    if secret.is_empty() {
        return Err(KeyLoadError::Empty(path.display().to_string()));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyLoadError::ShortSecret {
            path: path.display().to_string(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Mints an HS256 token (the `fdb-sink token` development tool, and tests).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer <token>".into())
            })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("Authorization header is not ASCII".into()))?;
        let token = crate::ingest::http::bearer(value)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
            })?;
        state.verifier.current().verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn claims(exp_offset: i64) -> Claims {
        Claims {
            tenant_id: "acme".into(),
            user_id: "alice".into(),
            role: Role::User,
            exp: (jsonwebtoken::get_current_timestamp() as i64 + exp_offset) as u64,
        }
    }

    #[test]
    fn hs256_tokens_verify_and_forgeries_do_not() {
        let v = Verifier::hs256(b"secret");
        let t = mint_hs256(b"secret", &claims(60)).expect("mint");
        let c = v.verify(&t).expect("valid");
        assert_eq!((c.tenant.as_str(), c.user.as_str()), ("acme", "alice"));
        let forged = mint_hs256(b"other", &claims(60)).expect("mint");
        assert!(matches!(v.verify(&forged), Err(ApiError::Unauthorized(_))));
        let expired = mint_hs256(b"secret", &claims(-120)).expect("mint");
        assert!(matches!(v.verify(&expired), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn alg_none_and_missing_claims_are_refused() {
        let v = Verifier::hs256(b"secret");
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let body = serde_json::to_string(&claims(60)).expect("json");
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&body));
        assert!(matches!(v.verify(&none), Err(ApiError::Unauthorized(_))));
        let no_role = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"tenant_id": "a", "user_id": "b", "exp": u64::MAX / 2}),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("mint");
        assert!(matches!(v.verify(&no_role), Err(ApiError::Unauthorized(_))));
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"tenant_id": "a", "user_id": "b", "role": "admin"}),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("mint");
        assert!(matches!(v.verify(&no_exp), Err(ApiError::Unauthorized(_))));
    }

    /// RFC 7519's NumericDate may have a fraction (`time.time() + 3600` in
    /// Python gives one); the expiry is still checked.
    #[test]
    fn a_fractional_exp_is_accepted_and_still_checked() {
        let v = Verifier::hs256(b"secret");
        let now = jsonwebtoken::get_current_timestamp() as f64;
        let mint = |exp: f64| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &serde_json::json!({"tenant_id": "acme", "user_id": "alice", "role": "user", "exp": exp}),
                &EncodingKey::from_secret(b"secret"),
            )
            .expect("mint")
        };
        let c = v
            .verify(&mint(now + 60.25))
            .expect("a fractional exp ahead is valid");
        assert_eq!(c.user, "alice");
        let Err(ApiError::Unauthorized(m)) = v.verify(&mint(now - 120.5)) else {
            panic!("an expired fractional exp must be refused");
        };
        assert!(m.contains("expired"), "{m}");
        let Err(ApiError::Unauthorized(m)) = v.verify(&mint(-1.5)) else {
            panic!("a negative exp must be refused");
        };
        assert!(m.contains("exp"), "{m}");
    }

    #[test]
    fn a_requested_user_that_is_not_an_id_is_a_bad_request_for_every_role() {
        for role in [Role::User, Role::Admin] {
            let c = Caller {
                tenant: "t".into(),
                user: "alice".into(),
                role,
            };
            for bad in ["u x", "", &"u".repeat(129)] {
                assert!(
                    matches!(c.user_scope(Some(bad)), Err(ApiError::BadRequest(_))),
                    "{role:?} {bad:?}"
                );
            }
        }
    }

    #[test]
    fn user_scope_confines_users_to_themselves() {
        let u = Caller {
            tenant: "t".into(),
            user: "alice".into(),
            role: Role::User,
        };
        assert_eq!(u.user_scope(None).ok().flatten().as_deref(), Some("alice"));
        assert!(matches!(
            u.user_scope(Some("bob")),
            Err(ApiError::Forbidden(_))
        ));
        let a = Caller {
            role: Role::Admin,
            ..u
        };
        assert_eq!(a.user_scope(None).ok().flatten(), None);
        assert_eq!(
            a.user_scope(Some("bob")).ok().flatten().as_deref(),
            Some("bob")
        );
    }
}
