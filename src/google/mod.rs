//! Google: the client secret, the OAuth token endpoint, and ID-token verification.

pub mod client_secret;
pub mod drive;
pub mod id_token;
pub mod token;

pub use client_secret::{CachedClientSecret, ClientCredentials, ClientSecrets, SecretSource, SecretsManagerSource};
pub use drive::{DriveApi, DriveError, DriveListing, HttpDrive};
pub use id_token::{GoogleIdTokenVerifier, HttpJwksFetcher, IdTokenError, JwksFetcher, VerifiedIdToken, VerifyIdToken};
pub use token::{CodeExchange, GoogleTokenError, HttpTokenEndpoint, TokenEndpoint, TokenRefresh, Tokens};

/// Reads a JSON answer from Google, or classifies why it is not one.
pub(crate) async fn read_json_answer(
    service: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<(http::StatusCode, Option<std::time::Duration>, serde_json::Value), crate::upstream::Upstream> {
    use crate::upstream::{Upstream, parse_retry_after};
    let response = response.map_err(|e| {
        let what = if e.is_timeout() { "timeout" } else { "transport failure" };
        Upstream::unavailable(service, what)
    })?;
    let status = response.status();
    let retry_after = parse_retry_after(response.headers().get(http::header::RETRY_AFTER));
    let bytes = response
        .bytes()
        .await
        .map_err(|_| Upstream::unavailable(service, "body could not be read"))?;
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
    Ok((status, retry_after, json))
}
