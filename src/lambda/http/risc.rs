//! `POST /risc`: Google's Security Event Tokens (RFC 8935), whose signature is the
//! credential.

use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;

use super::{ApiError, json_response, media_type};
use crate::google::risc::{SetError, SetErrorCode};
use crate::ports::Ports;
use crate::risc::{RiscError, RiscReceiver};
use crate::upstream::Upstream;

/// The RISC receiver's route (Google's Security Event Tokens).
pub const RISC_PATH: &str = "/risc";
/// The largest SET accepted; Google's are under 2 KiB.
const MAX_SET_BYTES: usize = 16 * 1024;

/// An RFC 8935 refusal: 400 `{"err", "description"}`.
fn set_refusal(code: SetErrorCode, description: &str) -> Response<String> {
    let body = json!({"err": code.as_str(), "description": description}).to_string();
    json_response(StatusCode::BAD_REQUEST, body, None)
}

/// Reads a `POST /risc`: the SET in an `application/secevent+jwt` body (RFC 8935 §2).
pub fn parse_security_event<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<&'b str, &'static str> {
    if media_type(headers).as_deref() != Some("application/secevent+jwt") {
        return Err("send the SET as application/secevent+jwt");
    }
    if body.len() > MAX_SET_BYTES {
        return Err("the SET is over 16 KiB");
    }
    std::str::from_utf8(body)
        .ok()
        .map(str::trim)
        .filter(|set| !set.is_empty() && set.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or("the body is not a compact JWT")
}

/// `POST /risc`: 202 and no body when the SET is taken; 400 with RFC 8935's error codes
/// when it is refused; 503 with `Retry-After` when Google's keys or our store cannot be
/// reached now (Google delivers again).
pub async fn receive_security_event<P: Ports, B: AsRef<[u8]>>(
    risc: &RiscReceiver<P>,
    request: &http::Request<B>,
) -> Response<String> {
    if request.method() != Method::POST {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST").into_response();
    }
    let set = match parse_security_event(request.headers(), request.body().as_ref()) {
        Ok(set) => set,
        Err(description) => {
            tracing::warn!(
                status = 400,
                err = "invalid_request",
                description,
                "security event refused"
            );
            return set_refusal(SetErrorCode::InvalidRequest, description);
        }
    };
    match risc.receive(set).await {
        Ok(_) => {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
        Err(RiscError::Refused(SetError::Invalid { code, description })) => {
            tracing::warn!(status = 400, err = code.as_str(), description, "security event refused");
            set_refusal(code, description)
        }
        Err(e) => {
            let api = match &e {
                RiscError::Upstream(Upstream::Unavailable { retry_after, .. }) => {
                    ApiError::unavailable(true, *retry_after)
                }
                _ => ApiError::misconfigured(),
            };
            api.logged("security event", Some(&e))
        }
    }
}
