//! Google: the client secret, the OAuth token endpoint, and ID-token verification.

pub mod client_secret;
pub mod drive;
pub mod id_token;
pub mod keys;
pub mod revoke;
pub mod risc;
pub mod risc_api;
pub mod token;
pub mod tokeninfo;

pub use client_secret::{
    CachedClientSecret, ClientCredentials, ClientSecrets, SecretSource, SecretsManagerSource, Stage, as_client,
    refresh_as_client,
};
pub use drive::{DriveApi, DriveError, DriveListing, HttpDrive};
pub use id_token::{GoogleIdTokenVerifier, HttpJwksFetcher, IdTokenError, JwksFetcher, VerifiedIdToken, VerifyIdToken};
pub use revoke::{Revocation, TokenRevocation};
pub use token::{CodeExchange, GoogleTokenError, HttpTokenEndpoint, TokenEndpoint, TokenRefresh, Tokens};
pub use tokeninfo::{DEFAULT_TOKENINFO_URI, TokenInfo};

/// Google's production endpoints (DESIGN §3 defaults).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_CERTS_URI: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const DEFAULT_REVOKE_URI: &str = "https://oauth2.googleapis.com/revoke";
pub const DEFAULT_DRIVE_API: &str = "https://www.googleapis.com/drive/v3";

/// The largest token or key-set answer read: Google's are a few KiB.
pub(crate) const MAX_SMALL_ANSWER_BYTES: usize = 64 * 1024;

/// A JSON answer from Google: status, `Retry-After`, body.
pub(crate) type JsonAnswer = (http::StatusCode, Option<std::time::Duration>, serde_json::Value);

/// Reads a JSON answer from Google of at most `limit` bytes, or classifies why it is not
/// one. `Ok(None)`: the body is larger than `limit`, and no more of it was read than that.
pub(crate) async fn read_json_answer(
    service: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
    limit: usize,
) -> Result<Option<JsonAnswer>, crate::upstream::Upstream> {
    use crate::upstream::{Upstream, parse_retry_after};
    let mut response = response.map_err(|e| {
        let what = if e.is_timeout() { "timeout" } else { "transport failure" };
        Upstream::unavailable(service, what)
    })?;
    let status = response.status();
    let retry_after = parse_retry_after(response.headers().get(http::header::RETRY_AFTER));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| Upstream::unavailable(service, "body could not be read"))?
    {
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(Upstream::Unavailable {
            service,
            throttled: status == http::StatusCode::TOO_MANY_REQUESTS || status == http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    let json = serde_json::from_slice(&bytes).map_err(|_| Upstream::Unavailable {
        service,
        throttled: false,
        retry_after,
        detail: format!("non-JSON answer with HTTP {}", status.as_u16()),
    })?;
    Ok(Some((status, retry_after, json)))
}

/// [`read_json_answer`] for answers whose size has no meaning but a fault: over `limit`
/// is an unavailable service.
pub(crate) async fn read_small_json_answer(
    service: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<JsonAnswer, crate::upstream::Upstream> {
    read_json_answer(service, response, MAX_SMALL_ANSWER_BYTES)
        .await?
        .ok_or_else(|| crate::upstream::Upstream::unavailable(service, "answer over 64 KiB"))
}
