//! API errors: one enum, one mapping to HTTP status and stable code.
//!
//! Every error answer is `{"error": "<stable_code>", "message": "..."}`;
//! a claim conflict adds `"holders"`.
//!
//! A message that names a rejected value shows it through [`shown`]: its
//! first [`SHOWN_CHARS`] characters and its length, never the whole of a
//! 20 KB path. Whatever else a message quotes (a rejection text of the
//! request's JSON or query), the message sent is at most
//! [`MAX_MESSAGE_CHARS`] characters.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

/// Characters of a rejected value a message shows.
pub const SHOWN_CHARS: usize = 100;

/// Characters of a message sent at most.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// A rejected value as a message shows it: quoted, and when it is longer
/// than [`SHOWN_CHARS`] characters, its first ones, then `… (N bytes)`.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters, with its length.
fn capped(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message,
        Some((cut, _)) => format!("{}… ({} bytes)", &message[..cut], message.len()),
    }
}

/// The holder of a path named in a 409 answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub path: String,
    pub session_id: String,
    pub agent_type: String,
    /// When the claim expires (RFC 3339).
    pub expires_at: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token, or one that does not verify (signature, algorithm,
    /// expiry, claims).
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but its role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of the caller's tenant (and, for role `user`, the caller's
    /// own data) matches. Other tenants' data is reported the same way.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A parameter or body is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over the API's size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A pagination cursor that this query did not produce.
    #[error("{0}")]
    BadCursor(String),
    /// Another live agent holds one of the paths.
    #[error("{message}")]
    ClaimConflict {
        message: String,
        holders: Vec<Holder>,
    },
    /// Too many `follow=true` streams are open (for the tenant or in
    /// total); retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// The request would take the caller past a per-user cap on stored
    /// rows (`--api-max-agents-per-user`, `--api-max-claims-per-user`).
    #[error("{message}")]
    LimitExceeded {
        /// `agents_per_user` or `claims_per_user`.
        limit: &'static str,
        /// The cap.
        max: u64,
        message: String,
        /// Seconds until a place is expected to free up (`Retry-After`).
        retry_after: u64,
    },
    /// The store cannot serve the request now; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of each error: the single mapping.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) | ApiError::BadCursor(_) => StatusCode::BAD_REQUEST,
            ApiError::ClaimConflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) | ApiError::LimitExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BadCursor(_) => "bad_cursor",
            ApiError::ClaimConflict { .. } => "claim_conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::LimitExceeded { .. } => "limit_exceeded",
            ApiError::Unavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError::BadRequest(m.into())
    }

    /// The `message` a client sees. Store and internal failures carry
    /// details (store errors, file paths, decoding errors) that are logged
    /// but never sent: the client gets a fixed text. Others are capped at
    /// [`MAX_MESSAGE_CHARS`] characters.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => {
                "the store is unavailable or overloaded; retry later".into()
            }
            ApiError::Internal(_) => "internal error; the details are in the server log".into(),
            other => capped(other.to_string()),
        }
    }

    /// The JSON error body (`error`, `message`, `holders` for a claim
    /// conflict, `limit` and `max` for a cap); logs the details of server
    /// errors.
    pub fn body(&self) -> serde_json::Value {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, code = self.code(), "API request failed");
        }
        let mut body = serde_json::json!({"error": self.code(), "message": self.public_message()});
        if let ApiError::ClaimConflict { holders, .. } = self {
            body["holders"] = serde_json::json!(holders);
        }
        if let ApiError::LimitExceeded { limit, max, .. } = self {
            body["limit"] = serde_json::json!(limit);
            body["max"] = serde_json::json!(max);
        }
        body
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.unavailable() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(e.body_text())
        } else {
            ApiError::BadRequest(e.body_text())
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::LimitExceeded { retry_after, .. } => Some(*retry_after),
            _ if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                Some(2)
            }
            _ => None,
        };
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_and_messages_are_cut() {
        assert_eq!(shown("a.txt"), "\"a.txt\"");
        let exact: String = "x".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exact), format!("{exact:?}"));
        let long = "é".repeat(20_000);
        let s = shown(&long);
        assert_eq!(s, format!("{:?}… (40000 bytes)", "é".repeat(SHOWN_CHARS)));
        let m = ApiError::bad_request("y".repeat(5000)).public_message();
        assert!(m.ends_with("… (5000 bytes)"), "{m}");
        assert!(m.chars().count() < MAX_MESSAGE_CHARS + 20);
        let short = ApiError::bad_request("limit must be at least 1");
        assert_eq!(short.public_message(), "limit must be at least 1");
    }

    #[test]
    fn every_error_has_a_distinct_code_and_the_documented_status() {
        let all = [
            (ApiError::Unauthorized(String::new()), 401, "unauthorized"),
            (ApiError::Forbidden(String::new()), 403, "forbidden"),
            (ApiError::NotFound(String::new()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed(String::new()),
                405,
                "method_not_allowed",
            ),
            (ApiError::BadRequest(String::new()), 400, "bad_request"),
            (ApiError::BadCursor(String::new()), 400, "bad_cursor"),
            (
                ApiError::ClaimConflict {
                    message: String::new(),
                    holders: vec![],
                },
                409,
                "claim_conflict",
            ),
            (
                ApiError::TooManyRequests(String::new()),
                429,
                "too_many_requests",
            ),
            (
                ApiError::LimitExceeded {
                    limit: "claims_per_user",
                    max: 1,
                    message: String::new(),
                    retry_after: 1,
                },
                429,
                "limit_exceeded",
            ),
            (
                ApiError::Unavailable(String::new()),
                503,
                "store_unavailable",
            ),
            (ApiError::Internal(String::new()), 500, "internal"),
        ];
        for (e, status, code) in all {
            assert_eq!((e.status().as_u16(), e.code()), (status, code));
        }
        assert!(matches!(
            ApiError::from(StoreError::unavailable_msg("down")),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::from(StoreError::Corrupt("x".into())),
            ApiError::Internal(_)
        ));
    }
}
