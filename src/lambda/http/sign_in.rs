//! `POST /authcode`: HTTP request → [`SignInRequest`], and outcome → HTTP response.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, json_response, media_type, require_requested_with};
use crate::domain::{AppIdToken, AuthCode, CodeVerifier, Platform, RedirectUri};
use crate::ports::Ports;
use crate::sign_in::{SignIn, SignInError, SignInRequest, SignedIn};
use crate::upstream::Upstream;

/// The route.
pub const AUTHCODE_PATH: &str = "/authcode";
/// The largest body accepted. A form with a Google code is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

enum Body {
    Form,
    Json,
}

/// Turns an HTTP request into a sign-in request, or the error to answer.
pub fn parse_request(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<SignInRequest, ApiError> {
    if path.trim_end_matches('/') != AUTHCODE_PATH {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; POST /authcode",
        ));
    }
    if method != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        ));
    }
    require_requested_with(headers)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is over 8 KiB",
        ));
    }
    let kind = match media_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => Body::Form,
        Some("application/json") => Body::Json,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/x-www-form-urlencoded or application/json",
            ));
        }
    };
    let text = std::str::from_utf8(body).map_err(|_| ApiError::invalid("the body is not UTF-8"))?;
    let fields = match kind {
        Body::Form => parse_form(text)?,
        Body::Json => parse_json(text)?,
    };
    let invalid = |e: crate::domain::ParseError| ApiError::invalid(e.0);
    let code = AuthCode::parse(
        &fields
            .auth_code
            .ok_or_else(|| ApiError::invalid("authCode is missing"))?,
    )
    .map_err(invalid)?;
    let platform = match fields.platform {
        Some(p) => Platform::parse(&p).map_err(invalid)?,
        None => Platform::default(),
    };
    // An optional field: absent, or valid as its type says.
    fn optional<T>(
        raw: Option<String>,
        parse: fn(&str) -> Result<T, crate::domain::ParseError>,
    ) -> Result<Option<T>, ApiError> {
        raw.as_deref()
            .map(parse)
            .transpose()
            .map_err(|e| ApiError::invalid(e.0))
    }
    let redirect_uri = optional(fields.redirect_uri, RedirectUri::parse)?;
    let code_verifier = optional(fields.code_verifier, CodeVerifier::parse)?;
    let id_token = optional(fields.id_token, AppIdToken::parse)?;
    Ok(SignInRequest {
        code,
        platform,
        redirect_uri,
        code_verifier,
        id_token,
    })
}

/// The body's fields, as sent: the same names in a form and in JSON.
#[derive(Default, Deserialize)]
struct Fields {
    #[serde(rename = "authCode")]
    auth_code: Option<String>,
    platform: Option<String>,
    #[serde(rename = "redirectUri")]
    redirect_uri: Option<String>,
    #[serde(rename = "codeVerifier")]
    code_verifier: Option<String>,
    #[serde(rename = "idToken")]
    id_token: Option<String>,
}

fn parse_form(text: &str) -> Result<Fields, ApiError> {
    let mut fields = Fields::default();
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        let slot = match name.as_ref() {
            "authCode" => &mut fields.auth_code,
            "platform" => &mut fields.platform,
            "redirectUri" => &mut fields.redirect_uri,
            "codeVerifier" => &mut fields.code_verifier,
            "idToken" => &mut fields.id_token,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(ApiError::invalid("a field is repeated"));
        }
    }
    Ok(fields)
}

fn parse_json(text: &str) -> Result<Fields, ApiError> {
    serde_json::from_str(text).map_err(|_| {
        ApiError::invalid(
            "the body is not a JSON object of strings (authCode, platform, redirectUri, codeVerifier, idToken)",
        )
    })
}

/// When a retry of a parked code is worth making: the queue is read at once, and an
/// outage long enough to park usually ends within a minute or so.
const PARKED_RETRY_AFTER_SECS: u64 = 30;

/// The one mapping from a sign-in failure to an HTTP answer.
pub fn error_for(error: &SignInError) -> ApiError {
    match error {
        SignInError::InvalidGrant(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Google refused the code: it is invalid, expired or already used; sign in again",
        ),
        SignInError::RedirectUriMismatch => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Google refused the code for this redirect_uri; check the platform and redirectUri fields",
        ),
        SignInError::RedirectUriNotAllowed => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirectUri is not postmessage nor one of the deployment's ALLOWED_REDIRECT_URIS",
        ),
        SignInError::InvalidIdToken(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_id_token",
            "the ID token from Google failed verification",
        ),
        SignInError::AppIdTokenRefused(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_id_token",
            "idToken failed verification (it must be a current Google ID token whose audience is the web client \
             id); the code was not used",
        ),
        SignInError::IdentityUnconfirmed => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "identity_unconfirmed",
            "Google named no user for this code: request an identity scope with it (on Android, add openid to \
             AuthorizationRequest's scopes)",
        ),
        SignInError::IdentityMismatch => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "identity_mismatch",
            "idToken names another user than Google does for this code; nothing was stored",
        ),
        SignInError::ReconsentRequired => ApiError::new(
            StatusCode::CONFLICT,
            "reconsent_required",
            "no refresh token is held for this user; request the code again with forced consent",
        ),
        SignInError::DuplicateInFlight => ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "this code is being processed; retry shortly",
            )
        },
        // Google's answer is safe in the queue; a retry of the same code gets the 200
        // once the grant is written.
        SignInError::Parked => ApiError {
            retry_after_secs: Some(PARKED_RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "the sign-in is kept and will complete; retry the same code later",
            )
        },
        SignInError::Upstream(Upstream::Unavailable {
            throttled, retry_after, ..
        }) => ApiError::unavailable(*throttled, *retry_after),
        SignInError::Upstream(Upstream::Misconfigured { .. }) | SignInError::Store(_) | SignInError::Crypto(_) => {
            ApiError::misconfigured()
        }
    }
}

/// `200` with `{"sub", "email", "scopes", "offline_access"}`; when `REQUIRED_SCOPES` were
/// not all granted, also `missing_scopes` and `ask_again` (how `platform`'s app asks for
/// them).
pub fn success(done: &SignedIn, platform: Platform) -> Response<String> {
    let mut body = json!({
        "sub": done.sub,
        "email": done.email,
        "scopes": done.scopes,
        "offline_access": done.offline_access,
    });
    if !done.missing_scopes.is_empty() {
        body["missing_scopes"] = json!(done.missing_scopes);
        body["ask_again"] = json!({
            "platform": platform.as_str(),
            "scopes": done.missing_scopes,
            "how": ask_again_how(platform),
        });
    }
    json_response(StatusCode::OK, body.to_string(), None)
}

/// The client API with which an app of `platform` asks the user for more scopes.
fn ask_again_how(platform: Platform) -> &'static str {
    match platform {
        Platform::Android => "AuthorizationRequest.setRequestedScopes",
        Platform::Ios => "GIDGoogleUser.addScopes",
        Platform::Web => "initCodeClient with include_granted_scopes",
    }
}

/// Handles one HTTP request end to end.
pub async fn handle<P: Ports, B: AsRef<[u8]>>(sign_in: &SignIn<P>, request: &http::Request<B>) -> Response<String> {
    let parsed = parse_request(
        request.method(),
        request.uri().path(),
        request.headers(),
        request.body().as_ref(),
    );
    let outcome = match parsed {
        Ok(asked) => {
            let platform = asked.platform;
            sign_in
                .sign_in(asked)
                .await
                .map(|done| (done, platform))
                .map_err(|e| (error_for(&e), Some(e)))
        }
        Err(api) => Err((api, None)),
    };
    match outcome {
        Ok((done, platform)) => {
            tracing::info!(
                status = 200,
                sub = %done.sub,
                replayed = done.replayed,
                missing_scopes = done.missing_scopes.len(),
                "sign-in succeeded"
            );
            success(&done, platform)
        }
        Err((api, cause)) => api.logged("sign-in", cause.as_ref().map(|e| e as &dyn std::error::Error)),
    }
}

/// The parser's invariants over arbitrary input, for the fuzz target (`fuzz/`) and the
/// generated-input unit test: it never panics, an accepted code is printable ASCII within
/// the length bound, and every refusal is one of the stable codes with a 4xx status.
/// Says whether the input was accepted.
#[doc(hidden)]
pub fn check_parse_invariants(data: &[u8]) -> bool {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let method = if selector & 1 == 0 { Method::POST } else { Method::GET };
    let path = if selector & 2 == 0 {
        AUTHCODE_PATH
    } else {
        "/authcode/x"
    };
    let mut headers = HeaderMap::new();
    if selector & 4 == 0 {
        headers.insert("x-requested-with", HeaderValue::from_static("fuzz"));
    }
    let content_type = match (selector >> 3) & 3 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/json",
        2 => "application/JSON; charset=utf-8",
        _ => "text/plain",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    match parse_request(&method, path, &headers, rest) {
        Ok(request) => {
            let code = request.code.expose_secret();
            assert!(!code.is_empty() && code.len() <= crate::domain::MAX_AUTH_CODE_LEN);
            assert!(code.bytes().all(|b| b.is_ascii_graphic()));
            if let Some(verifier) = &request.code_verifier {
                let verifier = verifier.expose_secret();
                assert!((43..=128).contains(&verifier.len()));
                assert!(
                    verifier
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                );
            }
            if let Some(token) = &request.id_token {
                let token = token.expose_secret();
                assert!(token.len() <= crate::domain::MAX_APP_ID_TOKEN_LEN && token.split('.').count() == 3);
                assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
            if let Some(uri) = &request.redirect_uri {
                let uri = uri.as_str();
                assert!(uri == "postmessage" || uri.len() <= crate::domain::MAX_REDIRECT_URI_LEN);
                assert!(uri == "postmessage" || uri.starts_with("https://") || uri.starts_with("http://"));
            }
            true
        }
        Err(e) => {
            assert!(e.status.is_client_error());
            assert!(matches!(
                e.code,
                "invalid_request"
                    | "not_found"
                    | "method_not_allowed"
                    | "forbidden"
                    | "payload_too_large"
                    | "unsupported_media_type"
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable-toolchain stand-in for the fuzzer.
    #[test]
    fn the_parser_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("parse_request", check_parse_invariants);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    const FORM: &[(&str, &str)] = &[
        ("x-requested-with", "com.example.app"),
        ("content-type", "application/x-www-form-urlencoded; charset=UTF-8"),
    ];

    fn code_of(r: Result<SignInRequest, ApiError>) -> Result<(String, Platform), &'static str> {
        r.map(|r| (r.code.expose_secret().to_owned(), r.platform))
            .map_err(|e| e.code)
    }

    #[test]
    fn the_android_form_is_parsed() {
        let r = parse_request(&Method::POST, "/authcode", &headers(FORM), b"authCode=4%2F0Ab-x");
        assert_eq!(code_of(r), Ok(("4/0Ab-x".into(), Platform::Android)));
    }

    #[test]
    fn json_with_a_platform_is_parsed() {
        let h = headers(&[
            ("x-requested-with", "XMLHttpRequest"),
            ("content-type", "application/json"),
        ]);
        let r = parse_request(
            &Method::POST,
            "/authcode",
            &h,
            br#"{"authCode":"4/0x","platform":"web"}"#,
        );
        assert_eq!(code_of(r), Ok(("4/0x".into(), Platform::Web)));
    }

    #[test]
    fn a_redirect_and_a_verifier_are_read_from_a_form_and_from_json_alike() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let json = headers(&[("x-requested-with", "x"), ("content-type", "application/json")]);
        let form = format!(
            "authCode=4%2F0x&platform=web&redirectUri=https%3A%2F%2Fapp.example.com%2Fcb&codeVerifier={verifier}"
        );
        let body = format!(
            r#"{{"authCode":"4/0x","platform":"web","redirectUri":"https://app.example.com/cb","codeVerifier":"{verifier}"}}"#
        );
        for (h, body) in [(headers(FORM), form), (json, body)] {
            let r = parse_request(&Method::POST, "/authcode", &h, body.as_bytes()).map_err(|e| e.message);
            let r = r.as_ref().expect("parsed");
            assert_eq!(r.redirect_uri(), "https://app.example.com/cb");
            assert_eq!(
                r.code_verifier.as_ref().map(CodeVerifier::expose_secret),
                Some(verifier)
            );
        }
        // Without them, the platform's redirect_uri and no verifier, as before.
        let r = parse_request(&Method::POST, "/authcode", &headers(FORM), b"authCode=x&platform=web");
        let r = r.as_ref().map_err(|e| e.message.clone()).expect("parsed");
        assert_eq!((r.redirect_uri(), r.code_verifier.is_none()), ("postmessage", true));
    }

    #[test]
    fn an_id_token_is_read_from_a_form_and_from_json_alike() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
        let json = headers(&[("x-requested-with", "x"), ("content-type", "application/json")]);
        let form = format!("authCode=4%2F0x&idToken={token}");
        let body = format!(r#"{{"authCode":"4/0x","idToken":"{token}"}}"#);
        for (h, body) in [(headers(FORM), form), (json, body)] {
            let r = parse_request(&Method::POST, "/authcode", &h, body.as_bytes()).map_err(|e| e.message);
            let r = r.as_ref().expect("parsed");
            assert_eq!(r.id_token.as_ref().map(AppIdToken::expose_secret), Some(token));
        }
    }

    #[test]
    fn a_bad_redirect_or_verifier_is_named_never_echoed() {
        for (body, field) in [
            (
                "authCode=x&redirectUri=http%3A%2F%2Fevil.example.com%2Fcb",
                "redirectUri",
            ),
            ("authCode=x&redirectUri=javascript%3Aalert(1)", "redirectUri"),
            ("authCode=x&codeVerifier=short-s3cret", "codeVerifier"),
            (
                "authCode=x&codeVerifier=s3cret%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B%2B",
                "codeVerifier",
            ),
            ("codeVerifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "authCode"),
            ("authCode=x&idToken=s3cret", "idToken"),
            ("authCode=x&idToken=s3cret.s3cret.s3cret%3D", "idToken"),
            ("idToken=a.b.c", "authCode"),
        ] {
            let e = parse_request(&Method::POST, "/authcode", &headers(FORM), body.as_bytes()).expect_err("refused");
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{body}"
            );
            assert!(e.message.contains(field), "{body}: {}", e.message);
            assert!(
                !e.message.contains("s3cret") && !e.message.contains("evil"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn each_bad_request_gets_its_status_and_code() {
        let json = headers(&[("x-requested-with", "x"), ("content-type", "application/json")]);
        let cases: Vec<(Method, &str, HeaderMap, Vec<u8>, &str)> = vec![
            (
                Method::POST,
                "/other",
                headers(FORM),
                b"authCode=x".to_vec(),
                "not_found",
            ),
            (Method::GET, "/authcode", headers(FORM), vec![], "method_not_allowed"),
            (
                Method::POST,
                "/authcode",
                headers(&[("content-type", "application/json")]),
                b"{}".to_vec(),
                "forbidden",
            ),
            (
                Method::POST,
                "/authcode",
                headers(&[("x-requested-with", "x"), ("content-type", "text/plain")]),
                b"x".to_vec(),
                "unsupported_media_type",
            ),
            (
                Method::POST,
                "/authcode",
                headers(&[("x-requested-with", "x")]),
                b"authCode=x".to_vec(),
                "unsupported_media_type",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                vec![b'a'; MAX_BODY_BYTES + 1],
                "payload_too_large",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                b"authCode=".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                b"other=1".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                b"authCode=a&authCode=b".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                b"authCode=a%0Ab".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                vec![b'a', 0xff, 0xfe],
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                headers(FORM),
                b"authCode=a&platform=tv".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                json.clone(),
                b"{not json".to_vec(),
                "invalid_request",
            ),
            (
                Method::POST,
                "/authcode",
                json.clone(),
                br#"{"authCode":7}"#.to_vec(),
                "invalid_request",
            ),
            (Method::POST, "/authcode", json, br#"[]"#.to_vec(), "invalid_request"),
        ];
        for (method, path, h, body, want) in cases {
            let got = parse_request(&method, path, &h, &body).err().map(|e| e.code);
            assert_eq!(got, Some(want), "{method} {path} {:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn upstream_errors_carry_retry_after() {
        let throttled = SignInError::Upstream(Upstream::Unavailable {
            service: "google-token",
            throttled: true,
            retry_after: Some(std::time::Duration::from_secs(7)),
            detail: "HTTP 429".into(),
        });
        let e = error_for(&throttled);
        assert_eq!(
            (e.status, e.code, e.retry_after_secs),
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable", Some(7))
        );
        let down = SignInError::Upstream(Upstream::unavailable("google-token", "timeout"));
        let e = error_for(&down);
        assert_eq!((e.status, e.retry_after_secs), (StatusCode::BAD_GATEWAY, Some(1)));
    }
}
