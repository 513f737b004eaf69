//! Google's tokeninfo endpoint: whom an access token was issued to, and for which user
//! (<https://developers.google.com/identity/protocols/oauth2/web-server#callinganapi>).
//!
//! A sign-in asks it when the code's exchange carried no ID token (a code granted without
//! an identity scope, as Android's `AuthorizationClient` gives for Drive alone): the user
//! is the `sub` it names, if it names one. Google documents `sub` only for a token with an
//! identity scope, so its absence is an answer, not a fault.

use serde::Deserialize;

use crate::domain::{AccessToken, Scopes};
use crate::upstream::Upstream;

/// Google's tokeninfo endpoint (`GOOGLE_TOKENINFO_URI`'s default).
pub const DEFAULT_TOKENINFO_URI: &str = "https://oauth2.googleapis.com/tokeninfo";

/// What tokeninfo says of a live access token. Google's free text is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    pub aud: Option<String>,
    pub azp: Option<String>,
    /// The user, when Google names one.
    pub sub: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub scopes: Scopes,
}

impl TokenInfo {
    /// Whether the token was issued to `client_id` (its `aud` or `azp`).
    pub fn issued_to(&self, client_id: &str) -> bool {
        self.aud.as_deref() == Some(client_id) || self.azp.as_deref() == Some(client_id)
    }
}

/// Asks tokeninfo about `access_token`, in the body of a POST (a token in a URL ends up in
/// proxies' logs). `Ok(None)`: Google says the token is not valid (`invalid_token`).
pub(crate) async fn token_info(
    http: &reqwest::Client,
    uri: &str,
    access_token: &AccessToken,
) -> Result<Option<TokenInfo>, Upstream> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("access_token", access_token.expose_secret())
        .finish();
    let response = http
        .post(uri)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json")
        .body(form)
        .send()
        .await;
    let (status, _, json) = super::read_small_json_answer("google-tokeninfo", response).await?;
    read(status, json)
}

fn read(status: http::StatusCode, json: serde_json::Value) -> Result<Option<TokenInfo>, Upstream> {
    if !status.is_success() {
        return match json.get("error").and_then(|e| e.as_str()) {
            Some("invalid_token" | "invalid_request") => Ok(None),
            _ => Err(Upstream::unavailable(
                "google-tokeninfo",
                format!("HTTP {} without invalid_token", status.as_u16()),
            )),
        };
    }
    /// Google sends every value as a string (`"email_verified": "true"`); a boolean is
    /// read too.
    #[derive(Deserialize)]
    struct Answer {
        aud: Option<String>,
        azp: Option<String>,
        sub: Option<String>,
        email: Option<String>,
        #[serde(default)]
        email_verified: serde_json::Value,
        scope: Option<String>,
    }
    let answer: Answer = serde_json::from_value(json)
        .map_err(|_| Upstream::unavailable("google-tokeninfo", "answer not in tokeninfo's shape"))?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Ok(Some(TokenInfo {
        aud: non_empty(answer.aud),
        azp: non_empty(answer.azp),
        sub: non_empty(answer.sub),
        email: non_empty(answer.email),
        email_verified: answer.email_verified == serde_json::json!(true) || answer.email_verified == "true",
        scopes: Scopes::from_space_delimited(answer.scope.as_deref().unwrap_or_default()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn google_s_answer_is_read_with_its_string_values() {
        let info = read(
            http::StatusCode::OK,
            json!({"azp": "web", "aud": "web", "sub": "1234", "scope": "openid https://x/drive.appdata",
                   "exp": "1700003600", "expires_in": "3599", "email": "a@b.c", "email_verified": "true",
                   "access_type": "offline"}),
        );
        let info = info.ok().flatten().unwrap_or_default();
        assert_eq!(info.sub.as_deref(), Some("1234"));
        assert!(info.email_verified && info.issued_to("web") && !info.issued_to("other"));
        assert!(info.scopes.contains("https://x/drive.appdata"));
    }

    #[test]
    fn a_token_without_an_identity_scope_names_no_user() {
        let info = read(http::StatusCode::OK, json!({"aud": "web", "sub": "", "scope": "x"}));
        assert_eq!(info.ok().flatten().map(|i| i.sub), Some(None));
    }

    #[test]
    fn an_invalid_token_is_an_answer_and_a_server_fault_is_not() {
        let invalid = json!({"error": "invalid_token", "error_description": "Invalid Value"});
        assert_eq!(read(http::StatusCode::BAD_REQUEST, invalid), Ok(None));
        let odd = read(http::StatusCode::UNAUTHORIZED, json!({"error": {"code": 401}}));
        assert!(matches!(odd, Err(Upstream::Unavailable { .. })));
        let shapeless = read(http::StatusCode::OK, json!({"aud": 7}));
        assert!(matches!(shapeless, Err(Upstream::Unavailable { .. })));
    }
}
