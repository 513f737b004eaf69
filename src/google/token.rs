//! Google's OAuth 2.0 token endpoint: the authorization-code exchange and the refresh
//! grant (<https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code>).

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::client_secret::ClientCredentials;
use crate::domain::{AccessToken, AuthCode, CodeVerifier, RefreshToken, Scopes};
use crate::upstream::Upstream;

/// What the token endpoint answered. The refresh token is absent when the user had
/// already consented and the app did not force consent again.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: AccessToken,
    /// How long the access token lives; [`UNREADABLE_EXPIRES_IN`] when Google's answer
    /// carried none this code can read.
    pub expires_in: Duration,
    pub refresh_token: Option<RefreshToken>,
    /// `refresh_token_expires_in`: the user granted access for a limited time, and the
    /// refresh token stops working after this long. `None` for lasting access.
    pub refresh_token_lifetime: Option<Duration>,
    pub scopes: Scopes,
    pub id_token: Option<secrecy::SecretString>,
}

/// The lifetime assumed for an access token whose `expires_in` is missing, unreadable or
/// past [`MAX_EXPIRES_IN`]: short, so a token is never taken for fresher than it is
/// (Google's live an hour).
pub const UNREADABLE_EXPIRES_IN: Duration = Duration::from_secs(300);

/// The longest access-token lifetime believed (Google's live an hour): a longer claim is
/// read as unreadable, so a hostile or broken answer can neither keep a token cached for
/// ever nor overflow the arithmetic of its expiry.
pub const MAX_EXPIRES_IN: u64 = 24 * 3_600;

/// The longest time limit believed for time-based access (`refresh_token_expires_in`;
/// Google offers far shorter ones): a longer claim is read as unreadable (one hour).
pub const MAX_TIME_LIMIT: u64 = 400 * 86_400;

/// Why Google refused, classified so callers can branch on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleTokenError {
    /// The code or refresh token is invalid, expired, revoked or already used.
    /// `subtype` is Google's `error_subtype` (e.g. `invalid_rapt`) when it sends one.
    #[error("Google answered invalid_grant{}", subtype.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
    InvalidGrant { subtype: Option<String> },
    /// The code was issued for another `redirect_uri`: the app sent the wrong `platform`.
    #[error("Google answered redirect_uri_mismatch")]
    RedirectUriMismatch,
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

/// Google's code for a client it does not authenticate: a wrong or retired secret.
pub const INVALID_CLIENT: &str = "invalid_client";

impl GoogleTokenError {
    /// Google did not authenticate our client (`invalid_client`): the secret may have been
    /// rotated ([`super::as_client`]).
    pub fn is_invalid_client(&self) -> bool {
        matches!(self, Self::Upstream(Upstream::Misconfigured { service: "google-token", detail }) if detail == INVALID_CLIENT)
    }
}

/// One code exchange request.
#[derive(Debug)]
pub struct CodeExchange<'a> {
    pub token_uri: &'a str,
    pub credentials: &'a ClientCredentials,
    pub code: &'a AuthCode,
    pub redirect_uri: &'a str,
    /// PKCE (RFC 7636): sent when the code was issued with a `code_challenge`.
    pub code_verifier: Option<&'a CodeVerifier>,
}

/// The token endpoint as a port.
pub trait TokenEndpoint: Send + Sync {
    fn exchange_code(&self, request: CodeExchange<'_>)
    -> impl Future<Output = Result<Tokens, GoogleTokenError>> + Send;
    fn refresh(&self, request: TokenRefresh<'_>) -> impl Future<Output = Result<Tokens, GoogleTokenError>> + Send;
    /// Revokes a refresh token, and with it the user's grant at Google.
    fn revoke(
        &self,
        request: super::TokenRevocation<'_>,
    ) -> impl Future<Output = Result<super::Revocation, Upstream>> + Send;
    /// Asks Google's tokeninfo (`uri`) whom a live access token belongs to; `None` when
    /// Google says it is not valid.
    fn token_info(
        &self,
        uri: &str,
        access_token: &AccessToken,
    ) -> impl Future<Output = Result<Option<super::TokenInfo>, Upstream>> + Send;
}

/// One refresh request (`grant_type=refresh_token`).
#[derive(Debug)]
pub struct TokenRefresh<'a> {
    pub token_uri: &'a str,
    pub credentials: &'a ClientCredentials,
    pub refresh_token: &'a RefreshToken,
}

/// The real endpoint over HTTPS, sharing the one hardened client.
#[derive(Debug, Clone)]
pub struct HttpTokenEndpoint {
    http: reqwest::Client,
}

impl HttpTokenEndpoint {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    async fn post_form(&self, token_uri: &str, form: String) -> Result<Tokens, GoogleTokenError> {
        let response = self
            .http
            .post(token_uri)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await;
        let (status, _, json) = super::read_small_json_answer("google-token", response).await?;
        if status.is_success() {
            return parse_tokens(json);
        }
        Err(classify_oauth_error(status, &json))
    }
}

impl TokenEndpoint for HttpTokenEndpoint {
    async fn exchange_code(&self, request: CodeExchange<'_>) -> Result<Tokens, GoogleTokenError> {
        // Client authentication in the body (client_secret_post), as Google's own
        // libraries do; the secret is exposed only here, at the call site.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", request.code.expose_secret())
                .append_pair("client_id", &request.credentials.client_id)
                .append_pair("client_secret", request.credentials.client_secret().expose_secret())
                .append_pair("redirect_uri", request.redirect_uri);
            if let Some(verifier) = request.code_verifier {
                form.append_pair("code_verifier", verifier.expose_secret());
            }
            form.finish()
        };
        self.post_form(request.token_uri, form).await
    }

    async fn refresh(&self, request: TokenRefresh<'_>) -> Result<Tokens, GoogleTokenError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", request.refresh_token.expose_secret())
            .append_pair("client_id", &request.credentials.client_id)
            .append_pair("client_secret", request.credentials.client_secret().expose_secret())
            .finish();
        self.post_form(request.token_uri, form).await
    }

    async fn revoke(&self, request: super::TokenRevocation<'_>) -> Result<super::Revocation, Upstream> {
        super::revoke::revoke(&self.http, request).await
    }

    async fn token_info(&self, uri: &str, access_token: &AccessToken) -> Result<Option<super::TokenInfo>, Upstream> {
        super::tokeninfo::token_info(&self.http, uri, access_token).await
    }
}

fn parse_tokens(json: serde_json::Value) -> Result<Tokens, GoogleTokenError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        #[serde(default)]
        expires_in: serde_json::Value,
        refresh_token: Option<String>,
        #[serde(default)]
        refresh_token_expires_in: serde_json::Value,
        scope: Option<String>,
        id_token: Option<String>,
    }
    let answer: Answer = serde_json::from_value(json)
        .map_err(|_| Upstream::unavailable("google-token", "success answer without access_token"))?;
    if answer.access_token.trim().is_empty() {
        return Err(Upstream::unavailable("google-token", "success answer with an empty access_token").into());
    }
    Ok(Tokens {
        access_token: AccessToken::new(answer.access_token),
        expires_in: lifetime(&answer.expires_in),
        refresh_token: answer.refresh_token.filter(|t| !t.is_empty()).map(RefreshToken::new),
        refresh_token_lifetime: time_limit(&answer.refresh_token_expires_in),
        scopes: Scopes::from_space_delimited(answer.scope.as_deref().unwrap_or_default()),
        id_token: answer.id_token.map(secrecy::SecretString::from),
    })
}

/// Seconds as a number or a numeric string, within `max`; `None` otherwise.
fn seconds(raw: &serde_json::Value, max: u64) -> Option<u64> {
    raw.as_u64()
        .or_else(|| raw.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|secs| *secs <= max)
}

/// `expires_in` as RFC 6749 §5.1 has it (seconds, a number), or as a numeric string; a
/// usable access token is never thrown away for an unreadable lifetime.
fn lifetime(raw: &serde_json::Value) -> Duration {
    match seconds(raw, MAX_EXPIRES_IN) {
        Some(secs) => Duration::from_secs(secs),
        None => {
            tracing::warn!(kind = %json_kind(raw), "token answer without a readable expires_in; assuming a short lifetime");
            UNREADABLE_EXPIRES_IN
        }
    }
}

/// `refresh_token_expires_in` (time-based access): seconds, as a number or a numeric
/// string; absent for lasting access. An unreadable one is taken as one hour, so a grant
/// whose limit cannot be read is never treated as lasting (the job then refreshes it
/// within the hour and reads the limit again).
fn time_limit(raw: &serde_json::Value) -> Option<Duration> {
    if raw.is_null() {
        return None;
    }
    Some(seconds(raw, MAX_TIME_LIMIT).map_or_else(
        || {
            tracing::warn!(kind = %json_kind(raw), "unreadable refresh_token_expires_in; assuming one hour");
            Duration::from_secs(3_600)
        },
        Duration::from_secs,
    ))
}

/// The JSON type of a value, for a log line that must not carry the value.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "absent",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Maps an OAuth error answer (RFC 6749 §5.2) to its class. Only Google's `error` and
/// `error_subtype` codes are kept; `error_description` is free text and is not logged.
pub fn classify_oauth_error(status: http::StatusCode, json: &serde_json::Value) -> GoogleTokenError {
    let error = json.get("error").and_then(|e| e.as_str()).unwrap_or_default();
    // Logged and kept on a grant's reason: only what has the shape of Google's subtypes.
    let subtype = json
        .get("error_subtype")
        .and_then(|e| e.as_str())
        .filter(|s| is_error_code(s))
        .map(str::to_owned);
    match error {
        "invalid_grant" => GoogleTokenError::InvalidGrant { subtype },
        "redirect_uri_mismatch" => GoogleTokenError::RedirectUriMismatch,
        // Google deletes an OAuth client unused for six months; it can be restored for
        // 30 days. Every grant is fine: it is the client that is gone.
        "deleted_client" => Upstream::misconfigured(
            "google-token",
            "deleted_client: Google deleted the OAuth client (unused for six months); restore it within 30 days \
             in the Google Cloud console, APIs & Services > Credentials > Deleted credentials",
        )
        .into(),
        "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_request"
        | "invalid_scope"
        | "access_denied" => Upstream::misconfigured("google-token", error.to_owned()).into(),
        "" => Upstream::unavailable(
            "google-token",
            format!("HTTP {} without an OAuth error", status.as_u16()),
        )
        .into(),
        _ => Upstream::misconfigured("google-token", "unrecognised OAuth error").into(),
    }
}

/// An OAuth error code's shape (RFC 6749 §5.2 allows more; Google's are short words).
fn is_error_code(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The token answer's invariants over arbitrary bytes, for the fuzz target (`fuzz/`) and
/// the generated-input test: the first byte picks the HTTP status, the rest is the body.
/// Reading never panics; an accepted answer has a token and bounded lifetimes; a refusal
/// carries nothing of the body but a short error code. Says whether it was read (a
/// refusal read as Google's error is read too).
#[doc(hidden)]
pub fn check_answer_invariants(data: &[u8]) -> bool {
    let (selector, body) = data.split_first().unwrap_or((&0, &[]));
    let status = match selector % 4 {
        0 | 1 => http::StatusCode::OK,
        2 => http::StatusCode::BAD_REQUEST,
        _ => http::StatusCode::UNAUTHORIZED,
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false; // Read as an unavailable service before it gets here.
    };
    let answer = if status.is_success() {
        parse_tokens(json)
    } else {
        Err(classify_oauth_error(status, &json))
    };
    match answer {
        Ok(tokens) => {
            assert!(!tokens.access_token.expose_secret().trim().is_empty());
            assert!(tokens.expires_in.as_secs() <= MAX_EXPIRES_IN);
            assert!(
                tokens
                    .refresh_token_lifetime
                    .is_none_or(|d| d.as_secs() <= MAX_TIME_LIMIT)
            );
            assert!(tokens.refresh_token.is_none_or(|t| !t.expose_secret().is_empty()));
            true
        }
        Err(GoogleTokenError::InvalidGrant { subtype }) => subtype.is_none_or(|s| is_error_code(&s)),
        Err(GoogleTokenError::RedirectUriMismatch) => true,
        Err(GoogleTokenError::Upstream(e)) => {
            let detail = match e {
                Upstream::Unavailable { detail, .. } | Upstream::Misconfigured { detail, .. } => detail,
            };
            assert!(detail.len() <= 64 && detail.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_answer_reader_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("token_answer", check_answer_invariants);
    }

    #[test]
    fn a_subtype_not_shaped_like_an_error_code_is_dropped() {
        for raw in ["", "has space", "\u{1b}[31m", &"x".repeat(65)] {
            let err = classify_oauth_error(
                http::StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_grant", "error_subtype": raw}),
            );
            assert_eq!(err, GoogleTokenError::InvalidGrant { subtype: None }, "{raw:?}");
        }
    }

    #[test]
    fn invalid_grant_keeps_its_subtype() {
        let err = classify_oauth_error(
            http::StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant", "error_subtype": "invalid_rapt"}),
        );
        assert_eq!(
            err,
            GoogleTokenError::InvalidGrant {
                subtype: Some("invalid_rapt".into())
            }
        );
    }

    #[test]
    fn invalid_unauthorized_and_deleted_client_are_our_misconfiguration() {
        for error in ["invalid_client", "unauthorized_client", "deleted_client"] {
            let err = classify_oauth_error(http::StatusCode::UNAUTHORIZED, &json!({"error": error}));
            assert!(
                matches!(&err, GoogleTokenError::Upstream(Upstream::Misconfigured { detail, .. }) if detail.starts_with(error)),
                "{error}: {err:?}"
            );
        }
        let deleted = classify_oauth_error(http::StatusCode::UNAUTHORIZED, &json!({"error": "deleted_client"}));
        assert!(deleted.to_string().contains("restore it within 30 days"), "{deleted}");
    }

    #[test]
    fn an_unreadable_expires_in_keeps_the_token_with_a_short_lifetime() {
        let lifetime_of = |expires_in: serde_json::Value| {
            parse_tokens(json!({"access_token": "ya29.a", "expires_in": expires_in})).map(|t| t.expires_in)
        };
        assert_eq!(lifetime_of(json!(3599)), Ok(Duration::from_secs(3599)));
        assert_eq!(lifetime_of(json!("3599")), Ok(Duration::from_secs(3599)));
        // Past any lifetime Google gives, including what would overflow an expiry.
        let absurd = [
            json!(86_401),
            json!(1_000_000_000_000_000_u64),
            json!(u64::MAX),
            json!("1e15"),
        ];
        for unreadable in [json!("soon"), json!(-1), json!(3.5), json!(null), json!({"s": 1})]
            .into_iter()
            .chain(absurd)
        {
            assert_eq!(
                lifetime_of(unreadable.clone()),
                Ok(UNREADABLE_EXPIRES_IN),
                "{unreadable}"
            );
        }
        let absent = parse_tokens(json!({"access_token": "ya29.a"})).map(|t| t.expires_in);
        assert_eq!(absent, Ok(UNREADABLE_EXPIRES_IN));
    }

    #[test]
    fn time_based_access_is_read_and_an_unreadable_limit_is_never_taken_as_lasting() {
        let limit_of = |raw: serde_json::Value| {
            parse_tokens(json!({"access_token": "a", "refresh_token_expires_in": raw}))
                .map(|t| t.refresh_token_lifetime)
        };
        assert_eq!(limit_of(json!(86_400)), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(limit_of(json!("600")), Ok(Some(Duration::from_secs(600))));
        assert_eq!(limit_of(json!("soon")), Ok(Some(Duration::from_secs(3_600))));
        assert_eq!(limit_of(json!(u64::MAX)), Ok(Some(Duration::from_secs(3_600))));
        assert_eq!(
            limit_of(json!(MAX_TIME_LIMIT + 1)),
            Ok(Some(Duration::from_secs(3_600)))
        );
        assert_eq!(limit_of(json!(null)), Ok(None));
        let lasting = parse_tokens(json!({"access_token": "a"})).map(|t| t.refresh_token_lifetime);
        assert_eq!(lasting, Ok(None));
    }

    #[test]
    fn an_empty_access_token_is_refused_as_a_broken_answer() {
        for empty in ["", "  "] {
            let answer = parse_tokens(json!({"access_token": empty, "expires_in": 3599}));
            assert!(
                matches!(answer, Err(GoogleTokenError::Upstream(Upstream::Unavailable { .. }))),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_refresh_token_that_is_empty_counts_as_absent() {
        let tokens = parse_tokens(json!({"access_token": "a", "refresh_token": "", "scope": "openid"}));
        assert!(tokens.is_ok_and(|t| t.refresh_token.is_none() && t.scopes.contains("openid")));
    }
}
