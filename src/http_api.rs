//! `POST /authcode`: HTTP request → [`SignInRequest`], and outcome → HTTP response
//! (DESIGN §7). Errors are JSON `{"error": "<stable code>", "message": "<text>"}`;
//! no body ever carries a token, a code, a secret or an internal detail.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::deletion::{Deleted, DeletionError};
use crate::domain::{AuthCode, Platform};
use crate::google::risc::{SetError, SetErrorCode};
use crate::risc::{Receipt, RiscError};
use crate::sign_in::{SignInError, SignInRequest, SignedIn};
use crate::upstream::Upstream;

/// The route.
pub const AUTHCODE_PATH: &str = "/authcode";
/// The largest body accepted. A form with a Google code is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// An error answer: status, stable code, safe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// A dependency failed transiently: 503 when it throttled, else 502; `Retry-After`
    /// always (at least 1 s).
    fn unavailable(throttled: bool, retry_after: Option<std::time::Duration>) -> Self {
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

    fn misconfigured() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_misconfigured",
            "the server is misconfigured; the operator has been alerted",
        )
    }

    /// Logs a refusal by its code and cause chain (loudly when it is ours), then answers.
    fn logged(self, what: &str, cause: Option<&dyn std::error::Error>) -> Response<String> {
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
    let (code, platform) = match kind {
        Body::Form => parse_form(text)?,
        Body::Json => parse_json(text)?,
    };
    let code = AuthCode::parse(&code.ok_or_else(|| ApiError::invalid("authCode is missing"))?)
        .map_err(|e| ApiError::invalid(e.0))?;
    let platform = match platform {
        Some(p) => Platform::parse(&p).map_err(|e| ApiError::invalid(e.0))?,
        None => Platform::default(),
    };
    Ok(SignInRequest { code, platform })
}

/// Google's server-side sign-in guide: require X-Requested-With so a cross-site form
/// cannot forge the request (a browser cannot add it without a CORS preflight). An empty
/// value is no header: a proxy or a careless client must not make it count.
fn require_requested_with(headers: &HeaderMap) -> Result<(), ApiError> {
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

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

fn parse_form(text: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut code = None;
    let mut platform = None;
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        let slot = match name.as_ref() {
            "authCode" => &mut code,
            "platform" => &mut platform,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(ApiError::invalid("a field is repeated"));
        }
    }
    Ok((code, platform))
}

fn parse_json(text: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    #[derive(Deserialize)]
    struct Payload {
        #[serde(rename = "authCode")]
        auth_code: Option<String>,
        platform: Option<String>,
    }
    let payload: Payload = serde_json::from_str(text)
        .map_err(|_| ApiError::invalid("the body is not a JSON object with a string authCode"))?;
    Ok((payload.auth_code, payload.platform))
}

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
            "Google refused the code for this platform's redirect_uri; check the platform field",
        ),
        SignInError::InvalidIdToken(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_id_token",
            "the ID token from Google failed verification",
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
        SignInError::Upstream(Upstream::Unavailable {
            throttled, retry_after, ..
        }) => ApiError::unavailable(*throttled, *retry_after),
        SignInError::Upstream(Upstream::Misconfigured { .. }) | SignInError::Store(_) | SignInError::Crypto(_) => {
            ApiError::misconfigured()
        }
    }
}

fn json_response(status: StatusCode, body: String, retry_after: Option<u64>) -> Response<String> {
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

impl ApiError {
    pub fn into_response(self) -> Response<String> {
        let body = json!({"error": self.code, "message": self.message}).to_string();
        json_response(self.status, body, self.retry_after_secs)
    }
}

/// `200` with `{"sub", "email", "scopes", "offline_access"}`.
pub fn success(done: &SignedIn) -> Response<String> {
    let body = json!({
        "sub": done.sub,
        "email": done.email,
        "scopes": done.scopes,
        "offline_access": done.offline_access,
    });
    json_response(StatusCode::OK, body.to_string(), None)
}

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

/// Anything that deletes a user's grant; the production [`crate::deletion::DeleteGrant`]
/// does.
pub trait DeletionHandler: Send + Sync {
    fn delete(&self, id_token: &str) -> impl Future<Output = Result<Deleted, DeletionError>> + Send;
}

impl<T, V, S, K, P, C> DeletionHandler for crate::deletion::DeleteGrant<T, V, S, K, P, C>
where
    T: crate::google::TokenEndpoint,
    V: crate::google::VerifyIdToken,
    S: crate::store::DeletionStore,
    K: crate::crypto::KeyProvider,
    P: crate::google::ClientSecrets,
    C: crate::clock::Clock,
{
    fn delete(&self, id_token: &str) -> impl Future<Output = Result<Deleted, DeletionError>> + Send {
        crate::deletion::DeleteGrant::delete(self, id_token)
    }
}

/// The RISC receiver's route (Google's Security Event Tokens).
pub const RISC_PATH: &str = "/risc";
/// The largest SET accepted; Google's are under 2 KiB.
const MAX_SET_BYTES: usize = 16 * 1024;

/// Anything that receives Security Event Tokens; the production
/// [`crate::risc::RiscReceiver`] does.
pub trait RiscHandler: Send + Sync {
    fn receive(&self, set: &str) -> impl Future<Output = Result<Receipt, RiscError>> + Send;
}

impl<S, P, C> RiscHandler for crate::risc::RiscReceiver<S, P, C>
where
    S: crate::store::RiscStore,
    P: crate::google::ClientSecrets,
    C: crate::clock::Clock + Clone,
{
    fn receive(&self, set: &str) -> impl Future<Output = Result<Receipt, RiscError>> + Send {
        crate::risc::RiscReceiver::receive(self, set)
    }
}

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
pub async fn receive_security_event<R: RiscHandler, B: AsRef<[u8]>>(
    risc: &R,
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

/// Serves every route of the HTTP API: `POST /authcode`, `DELETE /grants/me` and
/// `POST /risc`.
pub async fn serve<H: SignInHandler, D: DeletionHandler, R: RiscHandler, B: AsRef<[u8]>>(
    sign_in: &H,
    deletion: &D,
    risc: &R,
    request: &http::Request<B>,
) -> Response<String> {
    match request.uri().path().trim_end_matches('/') {
        GRANTS_ME_PATH => delete_own_grant(deletion, request).await,
        RISC_PATH => receive_security_event(risc, request).await,
        _ => handle(sign_in, request).await,
    }
}

/// `DELETE /grants/me`: 200 `{"sub", "google"}`, or the error table's answer.
pub async fn delete_own_grant<D: DeletionHandler, B>(deletion: &D, request: &http::Request<B>) -> Response<String> {
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
            let body = json!({"sub": done.sub, "google": done.google.as_str()});
            json_response(StatusCode::OK, body.to_string(), None)
        }
        Err((api, cause)) => api.logged("deletion", cause.as_ref().map(|e| e as &dyn std::error::Error)),
    }
}

/// Anything that performs sign-ins; the production [`crate::sign_in::SignIn`] does.
pub trait SignInHandler: Send + Sync {
    fn sign_in(&self, request: SignInRequest) -> impl Future<Output = Result<SignedIn, SignInError>> + Send;
}

impl<T, V, S, K, P, C> SignInHandler for crate::sign_in::SignIn<T, V, S, K, P, C>
where
    T: crate::google::TokenEndpoint,
    V: crate::google::VerifyIdToken,
    S: crate::store::SignInStore,
    K: crate::crypto::KeyProvider,
    P: crate::google::ClientSecrets,
    C: crate::clock::Clock,
{
    fn sign_in(&self, request: SignInRequest) -> impl Future<Output = Result<SignedIn, SignInError>> + Send {
        crate::sign_in::SignIn::sign_in(self, request)
    }
}

/// Handles one HTTP request end to end.
pub async fn handle<H: SignInHandler, B: AsRef<[u8]>>(handler: &H, request: &http::Request<B>) -> Response<String> {
    let parsed = parse_request(
        request.method(),
        request.uri().path(),
        request.headers(),
        request.body().as_ref(),
    );
    let outcome = match parsed {
        Ok(sign_in) => handler.sign_in(sign_in).await.map_err(|e| (error_for(&e), Some(e))),
        Err(api) => Err((api, None)),
    };
    match outcome {
        Ok(done) => {
            tracing::info!(status = 200, sub = %done.sub, replayed = done.replayed, "sign-in succeeded");
            success(&done)
        }
        Err((api, cause)) => api.logged("sign-in", cause.as_ref().map(|e| e as &dyn std::error::Error)),
    }
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

/// The parser's invariants over arbitrary input, for the fuzz target (`fuzz/`) and the
/// generated-input unit test: it never panics, an accepted code is printable ASCII within
/// the length bound, and every refusal is one of the stable codes with a 4xx status.
#[doc(hidden)]
pub fn check_parse_invariants(data: &[u8]) {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable-toolchain stand-in for the fuzzer: many generated inputs, seeded so a
    /// failure reproduces.
    #[test]
    fn the_parser_holds_its_invariants_on_generated_input() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: [&[u8]; 6] = [
            b"authCode=",
            b"{\"authCode\":\"",
            b"platform=web&",
            b"%",
            b"\"}",
            b"&authCode=",
        ];
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut data = vec![(next() & 0xff) as u8];
            while data.len() < len {
                if next() % 4 == 0 {
                    data.extend_from_slice(seeds[(next() % seeds.len() as u64) as usize]);
                } else {
                    data.push((next() & 0xff) as u8);
                }
            }
            check_parse_invariants(&data);
        }
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
