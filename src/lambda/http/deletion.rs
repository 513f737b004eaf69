//! `DELETE /grants/me`: the user deletes their data (DESIGN §12), with their Google ID
//! token as the bearer credential.

use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::json;

use super::{ApiError, json_response, require_requested_with};
use crate::deletion::{AtGoogle, DeleteGrant, DeletionError};
use crate::job::metrics;
use crate::ports::Ports;
use crate::upstream::Upstream;

/// The route of the user's own grant.
pub const GRANTS_ME_PATH: &str = "/grants/me";
/// The longest ID token accepted; Google's are about 1.2 KiB.
const MAX_ID_TOKEN_BYTES: usize = 8 * 1024;

/// Reads a `DELETE /grants/me`: the ID token from `Authorization: Bearer`, or the error.
pub fn parse_deletion(headers: &HeaderMap) -> Result<String, ApiError> {
    require_requested_with(headers)?;
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_id_token",
            "send Authorization: Bearer <the user's Google ID token for this app>",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.len() > MAX_ID_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(unauthorized());
    }
    Ok(token.to_owned())
}

/// The one mapping from a deletion failure to an HTTP answer.
pub fn deletion_error_for(error: &DeletionError) -> ApiError {
    match error {
        DeletionError::InvalidIdToken(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_id_token",
            "the ID token failed verification",
        ),
        DeletionError::Upstream(Upstream::Unavailable {
            throttled, retry_after, ..
        }) => ApiError::unavailable(*throttled, *retry_after),
        DeletionError::Upstream(Upstream::Misconfigured { .. })
        | DeletionError::Store(_)
        | DeletionError::Crypto(_) => ApiError::misconfigured(),
    }
}

/// `DELETE /grants/me`: 200 `{"sub", "google"}`, or the error table's answer.
pub async fn delete_own_grant<P: Ports, B>(deletion: &DeleteGrant<P>, request: &http::Request<B>) -> Response<String> {
    if request.method() != Method::DELETE {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use DELETE").into_response();
    }
    let outcome = match parse_deletion(request.headers()) {
        Ok(id_token) => deletion
            .delete(&id_token)
            .await
            .map_err(|e| (deletion_error_for(&e), Some(e))),
        Err(api) => Err((api, None)),
    };
    match outcome {
        Ok(done) => {
            if done.google == AtGoogle::Unrevocable {
                metrics::emit(&metrics::count_emf("auth-code", "Unrevocable", 1, metrics::now_ms()));
            }
            let body = json!({"sub": done.sub, "google": done.google.as_str()});
            json_response(StatusCode::OK, body.to_string(), None)
        }
        Err((api, cause)) => api.logged("deletion", cause.as_ref().map(|e| e as &dyn std::error::Error)),
    }
}
