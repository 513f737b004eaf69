//! Google's revocation endpoint (<https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke>):
//! revoking a refresh token ends the whole grant at Google.

use crate::domain::RefreshToken;
use crate::upstream::{Upstream, parse_retry_after};

/// What Google said to a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// 200: revoked now.
    Revoked,
    /// 400 `invalid_token` (or `invalid_grant`): it was revoked or expired before.
    AlreadyRevoked,
}

impl Revocation {
    /// The spelling in the `DELETE /grants/me` answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::AlreadyRevoked => "already_revoked",
        }
    }
}

/// One revocation request.
#[derive(Debug)]
pub struct TokenRevocation<'a> {
    pub revoke_uri: &'a str,
    pub token: &'a RefreshToken,
}

/// Revokes over `http` (the token endpoint's client: one hardened client for all).
pub(crate) async fn revoke(http: &reqwest::Client, request: TokenRevocation<'_>) -> Result<Revocation, Upstream> {
    const SERVICE: &str = "google-revoke";
    // The token goes in the body, never the URL (URLs reach access logs).
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", request.token.expose_secret())
        .finish();
    let response = http
        .post(request.revoke_uri)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| Upstream::unavailable(SERVICE, if e.is_timeout() { "timeout" } else { "transport failure" }))?;
    let status = response.status();
    if status.is_success() {
        return Ok(Revocation::Revoked);
    }
    if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(Upstream::Unavailable {
            service: SERVICE,
            throttled: status == http::StatusCode::TOO_MANY_REQUESTS,
            retry_after: parse_retry_after(response.headers().get(http::header::RETRY_AFTER)),
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    let (_, _, json) = super::read_small_json_answer(SERVICE, Ok(response)).await?;
    match json.get("error").and_then(|e| e.as_str()) {
        Some("invalid_token" | "invalid_grant") => Ok(Revocation::AlreadyRevoked),
        other => Err(Upstream::misconfigured(
            SERVICE,
            format!("HTTP {} {}", status.as_u16(), other.unwrap_or("without an error code")),
        )),
    }
}
