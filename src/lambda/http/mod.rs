//! The HTTP API behind API Gateway (DESIGN §7), one module a route: `POST /authcode`
//! ([`sign_in`]), `DELETE /grants/me` ([`deletion`]) and `POST /risc` ([`risc`]).
//! [`serve`] dispatches; each route turns a request into a use-case call and its outcome
//! into an answer. Errors are JSON `{"error": "<stable code>", "message": "<text>"}` (the
//! RISC route answers RFC 8935's `{"err", "description"}`); no body ever carries a token,
//! a code, a secret or an internal detail.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::app::HttpApi;
use crate::ports::Ports;

pub mod deletion;
pub mod risc;
pub mod sign_in;

pub use deletion::{GRANTS_ME_PATH, delete_own_grant, deletion_error_for, parse_deletion};
pub use risc::{RISC_PATH, parse_security_event, receive_security_event};
pub use sign_in::{AUTHCODE_PATH, MAX_BODY_BYTES, check_parse_invariants, error_for, handle, parse_request, success};

/// An error answer: status, stable code, safe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub(super) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// A dependency failed transiently: 503 when it throttled, else 502; `Retry-After`
    /// always (at least 1 s).
    pub(super) fn unavailable(throttled: bool, retry_after: Option<std::time::Duration>) -> Self {
        Self {
            retry_after_secs: Some(retry_after.map_or(1, |d| d.as_secs().max(1))),
            ..Self::new(
                if throttled {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                },
                "upstream_unavailable",
                "a service we depend on is unavailable; retry later",
            )
        }
    }

    pub(super) fn misconfigured() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
            "the server is misconfigured; the operator has been alerted",
        )
    }

    /// Logs a refusal by its code and cause chain (loudly when it is ours), then answers.
    pub(super) fn logged(self, what: &str, cause: Option<&dyn std::error::Error>) -> Response<String> {
        let cause = cause.map(error_chain);
        if self.code == "server_misconfigured" {
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                cause,
                "{} failed: MISCONFIGURATION",
                what
            );
        } else {
            tracing::warn!(
                status = self.status.as_u16(),
                code = self.code,
                cause,
                "{} refused",
                what
            );
        }
        self.into_response()
    }
}

impl ApiError {
    pub fn into_response(self) -> Response<String> {
        let body = json!({"error": self.code, "message": self.message}).to_string();
        json_response(self.status, body, self.retry_after_secs)
    }
}

/// Serves every route of the HTTP API: `POST /authcode`, `DELETE /grants/me` and
/// `POST /risc`.
pub async fn serve<P: Ports, B: AsRef<[u8]>>(api: &HttpApi<P>, request: &http::Request<B>) -> Response<String> {
    match request.uri().path().trim_end_matches('/') {
        GRANTS_ME_PATH => delete_own_grant(&api.deletion, request).await,
        RISC_PATH => receive_security_event(&api.risc, request).await,
        _ => handle(&api.sign_in, request).await,
    }
}

pub(super) fn json_response(status: StatusCode, body: String, retry_after: Option<u64>) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The answer carries personal data: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Google's server-side sign-in guide: require X-Requested-With so a cross-site form
/// cannot forge the request (a browser cannot add it without a CORS preflight). An empty
/// value is no header: a proxy or a careless client must not make it count.
pub(super) fn require_requested_with(headers: &HeaderMap) -> Result<(), ApiError> {
    let requested_with = headers.get("x-requested-with").map(|v| v.as_bytes().trim_ascii());
    if requested_with.is_none_or(<[u8]>::is_empty) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the X-Requested-With header is required",
        ));
    }
    Ok(())
}

pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// The cause chain of an error for the log. Our errors carry only codes and classes.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    chain
}
