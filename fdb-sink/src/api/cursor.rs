//! Cursors: where a page or a stream stopped, sealed so that a client can
//! neither read nor forge one.
//!
//! A cursor names the store key of the last row a request examined. That
//! row may be one the caller may not see: another user's record, agent row
//! or touch of a path, passed over by a scan that keeps only the caller's
//! own rows until its budget ran out. Its key holds that user's session id,
//! event id and time, so the key is sealed with XChaCha20-Poly1305 under a
//! random key kept in the store (`("api_config", "cursor_key")`, created by
//! the first API server that needs it): every replica opens every other's
//! cursors, and they stay valid across restarts. The query a cursor belongs
//! to (its route and scope, and the caller when the listing depends on who
//! asks) is bound to it as associated data: given to another query or by
//! another user, it does not open, and the request is 400 `bad_cursor`.
//! The query includes its filters (path, time range, event types, ...), so a
//! cursor never starts another listing partway.
//!
//! An empty `cursor=` (or one of blanks) asks for the first page, as an
//! empty filter parameter means no filter: clients that always send
//! `cursor=${next:-}` work on their first page too.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{ApiError, ApiState};
use crate::keys::Keys;
use crate::store::{Store, StoreError, StoreExt};

/// Bytes of the nonce that starts every sealed cursor.
const NONCE_LEN: usize = 24;

/// Bytes of the stored key.
const KEY_LEN: usize = 32;

/// The query a cursor is sealed for: its route and the parts of its scope
/// (tenant, user, ...), `*` for a part the query does not restrict (no id
/// can be `*`), separated by NUL.
pub fn query(route: &str, parts: &[Option<&str>]) -> String {
    let mut q = route.to_owned();
    for part in parts {
        q.push('\0');
        q.push_str(part.unwrap_or("*"));
    }
    q
}

/// The cursor a request gives: `None` (the first page) when it gives none
/// or an empty one.
pub fn given(cursor: Option<&str>) -> Option<&str> {
    cursor.filter(|c| !c.trim().is_empty())
}

/// Seals and opens cursors with the store's cursor key.
pub struct Sealer {
    aead: XChaCha20Poly1305,
}

impl Sealer {
    fn new(key: &[u8]) -> Result<Sealer, StoreError> {
        let aead = XChaCha20Poly1305::new_from_slice(key).map_err(|_| {
            StoreError::Corrupt(format!(
                "the API's cursor key is {} bytes, not {KEY_LEN}",
                key.len()
            ))
        })?;
        Ok(Sealer { aead })
    }

    /// The cursor text for `raw_key` in `query`.
    pub fn seal(&self, query: &str, raw_key: &[u8]) -> Result<String, ApiError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: raw_key,
                    aad: query.as_bytes(),
                },
            )
            .map_err(|_| ApiError::Internal("sealing a cursor failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// The key a cursor of `query` names; `bad_cursor` for anything this
    /// server did not seal for that query.
    pub fn open(&self, query: &str, cursor: &str) -> Result<Vec<u8>, ApiError> {
        let bad = || ApiError::BadCursor("cursor was not produced by this query".into());
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor.trim())
            .map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: query.as_bytes(),
                },
            )
            .map_err(|_| bad())
    }
}

/// The sealer, loaded from the store on first use and then kept.
#[derive(Default)]
pub struct Cursors {
    sealer: OnceLock<Arc<Sealer>>,
}

impl Cursors {
    /// The sealer; reads (or, the first time ever, creates) the store's
    /// cursor key. A store that cannot be reached is 503, like any query.
    pub async fn sealer(state: &Arc<ApiState>) -> Result<Arc<Sealer>, ApiError> {
        if let Some(s) = state.cursors.sealer.get() {
            return Ok(s.clone());
        }
        let sealer = state
            .blocking(|store, keys| Ok(Arc::new(load(store, keys)?)))
            .await?;
        Ok(state.cursors.sealer.get_or_init(|| sealer).clone())
    }
}

/// Reads the cursor key, creating it when absent. Two servers creating it
/// at once both read it absent: on FoundationDB the read conflicts and one
/// of them retries and reads the other's; the embedded store has a single
/// writer.
fn load(store: &dyn Store, keys: &Keys) -> Result<Sealer, StoreError> {
    let key = keys.api_cursor_key();
    let fresh = XChaCha20Poly1305::generate_key(&mut OsRng);
    let stored = store.transact(|txn| match txn.get(&key)? {
        Some(v) => Ok(v),
        None => {
            txn.set(&key, fresh.as_slice())?;
            Ok(fresh.to_vec())
        }
    })?;
    Sealer::new(&stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&[7u8; KEY_LEN]).expect("key")
    }

    #[test]
    fn a_cursor_opens_only_for_its_query_and_hides_the_key() {
        let s = sealer();
        let raw = b"\x02audit\x00\x02agents\x00\x02acme\x00\x02bob-secret\x00";
        let c = s.seal("agents\0acme\0alice", raw).expect("seal");
        assert_eq!(
            s.open("agents\0acme\0alice", &c).expect("open"),
            raw.to_vec()
        );
        assert!(matches!(
            s.open("agents\0acme\0bob", &c),
            Err(ApiError::BadCursor(_))
        ));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&c)
            .expect("b64");
        assert!(!bytes.windows(10).any(|w| w == b"bob-secret"));
        // Two seals of the same key differ (fresh nonce), both open.
        let c2 = s.seal("agents\0acme\0alice", raw).expect("seal");
        assert_ne!(c, c2);
        assert!(s.open("agents\0acme\0alice", &c2).is_ok());
    }

    #[test]
    fn an_empty_cursor_is_the_first_page() {
        assert_eq!(given(None), None);
        assert_eq!(given(Some("")), None);
        assert_eq!(given(Some("  ")), None);
        assert_eq!(given(Some("abc")), Some("abc"));
    }

    #[test]
    fn a_query_names_its_route_and_scope() {
        assert_eq!(
            query("logs", &[Some("acme"), None, Some("s-1")]),
            "logs\0acme\0*\0s-1"
        );
        assert_eq!(query("agents", &[Some("acme"), None]), "agents\0acme\0*");
    }

    #[test]
    fn forged_or_damaged_cursors_are_refused() {
        let s = sealer();
        let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\x02audit\x00");
        for c in ["", "!!!", "AAAA", plain.as_str()] {
            assert!(matches!(s.open("q", c), Err(ApiError::BadCursor(_))), "{c}");
        }
        let c = s.seal("q", b"key").expect("seal");
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&c)
            .expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let damaged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert!(matches!(s.open("q", &damaged), Err(ApiError::BadCursor(_))));
    }

    #[test]
    fn the_key_is_created_once_and_shared() {
        let dir = tempfile::tempdir().expect("dir");
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).expect("store");
        let keys = Keys::default();
        let a = load(&store, &keys).expect("first");
        let b = load(&store, &keys).expect("second");
        let c = a.seal("q", b"k").expect("seal");
        assert_eq!(b.open("q", &c).expect("open"), b"k".to_vec());
    }
}
