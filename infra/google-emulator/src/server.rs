//! The emulator's HTTP routes.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::{
    AccessGrant, ClientState, CodeSpec, DEFAULT_SCOPES, DriveReason, Endpoint, Fault, IDENTITY_SCOPES, Shared, State,
    random_token,
};

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/token",
            post(|state, headers, body| to_completion(token(state, headers, body))),
        )
        .route("/oauth2/v3/certs", get(certs))
        .route("/tokeninfo", get(tokeninfo).post(tokeninfo))
        .route("/o/oauth2/v2/auth", get(crate::consent::authorize))
        .route("/o/oauth2/v2/auth/approve", post(crate::consent::approve))
        .route("/_emulator/redirect-uris", post(register_redirect_uri))
        .route(
            "/revoke",
            post(|state, query, body| to_completion(revoke(state, query, body))),
        )
        .route("/drive/v3/files", get(drive_list))
        .route("/drive/v3/files/{id}", get(drive_get))
        .route("/_emulator/health", get(|| async { "ok" }))
        .route("/_emulator/codes", post(mint_code))
        .route("/_emulator/faults", post(add_fault).delete(clear_faults))
        .route("/_emulator/keys/rotate", post(rotate_keys))
        .route("/_emulator/stats", get(stats))
        .route("/.well-known/risc-configuration", get(risc_configuration))
        .route("/_emulator/risc/push", post(risc_push))
        .route("/_emulator/service-accounts", post(crate::risc_api::service_account))
        .route("/v1beta/stream:update", post(crate::risc_api::stream_update))
        .route("/v1beta/stream", get(crate::risc_api::stream_get))
        .route("/v1beta/stream:verify", post(crate::risc_api::verify))
        .route("/v1beta/stream/status", get(crate::risc_api::status_get))
        .route("/v1beta/stream/status:update", post(crate::risc_api::status_update))
        .with_state(shared)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Runs a handler to its end even when the caller hangs up first, as Google's servers do:
/// a code whose exchange outlived the caller's timeout is redeemed all the same.
async fn to_completion(handler: impl Future<Output = Response> + Send + 'static) -> Response {
    tokio::spawn(handler)
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Applies an injected fault: waits, then answers in place of the endpoint if it says so.
async fn fault_answer(shared: &Shared, endpoint: Endpoint) -> Option<Response> {
    let (fault, mut release) = shared.with(|s| (s.take_fault(endpoint), s.releases.subscribe()));
    let fault: Fault = fault?;
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if fault.held {
        /// Counts the call as held while it waits, until it goes on or is dropped.
        struct Holding<'a>(&'a Shared);
        impl Drop for Holding<'_> {
            fn drop(&mut self) {
                self.0.with(|s| s.held_now -= 1);
            }
        }
        shared.with(|s| s.held_now += 1);
        let _holding = Holding(shared);
        let _ = release.changed().await;
    }
    let status = StatusCode::from_u16(fault.status?).ok()?;
    let body = fault.body.unwrap_or_else(|| {
        json!({"error": {"code": status.as_u16(), "message": "injected fault", "status": "UNAVAILABLE"}}).to_string()
    });
    let content_type = if body.trim_start().starts_with('<') {
        "text/html; charset=UTF-8"
    } else {
        "application/json; charset=utf-8"
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(response)
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

/// The client's credentials: HTTP Basic (client_secret_basic) or the body (client_secret_post).
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> (Option<String>, Option<String>) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form.get("client_id").cloned(), form.get("client_secret").cloned()),
    }
}

async fn token(AxumState(shared): AxumState<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::Token).await {
        return faulted;
    }
    let form = form(&body);
    let (client_id, client_secret) = client_credentials(&headers, &form);
    // The client is authenticated before anything in the request (the code, the refresh
    // token) is looked at: a refused client spends nothing.
    shared.with(|s| {
        if client_id.as_deref() != Some(s.settings.client_id.as_str()) {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            );
        }
        if s.client_state == ClientState::Deleted {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "deleted_client",
                "The OAuth client was deleted.",
            );
        }
        if client_secret.as_deref() != Some(s.client_secret.as_str()) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
        }
        if s.client_state == ClientState::Unauthorized {
            return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized_client", "Unauthorized");
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => s.exchange_code(&form),
            Some("refresh_token") if !s.spend_units(|q| q.refresh) => oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Rate limit exceeded",
            ),
            Some("refresh_token") => s.refresh(&form, &s.settings.client_id.clone()),
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type"),
        }
    })
}

impl State {
    fn exchange_code(&mut self, form: &HashMap<String, String>) -> Response {
        self.stats.code_exchanges += 1;
        let Some(code) = form.get("code") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: code",
            );
        };
        let now = self.now();
        let Some(issued) = self.codes.get_mut(code) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
        };
        if issued.redeemed {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Code was already redeemed.");
        }
        // Codes live ten minutes.
        if now > issued.issued_at + 600 {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        }
        if issued.client_id != *form.get("client_id").unwrap_or(&issued.client_id) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        }
        if form.get("redirect_uri").map(String::as_str).unwrap_or_default() != issued.redirect_uri {
            return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
        }
        // PKCE: a code issued with a challenge is redeemed only with its verifier.
        if let Some(challenge) = &issued.spec.code_challenge {
            match form.get("code_verifier") {
                None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Missing code verifier."),
                Some(v) if crate::s256_challenge(v) != *challenge => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code verifier.");
                }
                Some(_) => {}
            }
        }
        issued.redeemed = true;
        let user = issued.user.clone();
        let spec = issued.spec.clone();
        let client_id = issued.client_id.clone();
        let scopes = spec.scopes.clone().unwrap_or_else(|| DEFAULT_SCOPES.to_owned());

        let holds_grant = self
            .refresh_tokens
            .values()
            .any(|g| g.sub == user.sub && g.client_id == client_id && !g.revoked);
        let issue_refresh = match spec.consent {
            crate::Consent::Auto => !holds_grant,
            crate::Consent::Repeat => false,
            crate::Consent::Forced => true,
        };
        let mut answer = self.access_answer(&user.sub, &scopes);
        if issue_refresh {
            let expires_at = spec.refresh_token_expires_in.map(|secs| now + secs);
            let refresh = self.issue_refresh_token("1//0emu-", &user.sub, &client_id, &scopes, expires_at);
            answer["refresh_token"] = json!(refresh);
            if let Some(secs) = spec.refresh_token_expires_in {
                answer["refresh_token_expires_in"] = json!(secs);
            }
        }
        // Google answers an ID token only when an identity scope was granted: a code for
        // Drive alone carries none.
        if scopes.split(' ').any(|s| IDENTITY_SCOPES.contains(&s)) {
            match self.id_token(&user, &spec) {
                Ok(token) => answer["id_token"] = json!(token),
                Err(_) => {
                    return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_failure", "signing failed");
                }
            }
        }
        axum::Json(answer).into_response()
    }

    fn refresh(&mut self, form: &HashMap<String, String>, client_id: &str) -> Response {
        self.stats.refreshes += 1;
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let Some(grant) = self.refresh_tokens.get(&presented) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        };
        if grant.client_id != client_id {
            return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized_client", "Unauthorized");
        }
        if let Some(_why) = self.refresh_token_ended(grant) {
            // Revoked, time-based access over, a Testing-mode token past seven days, or
            // unused for six months: Google answers them alike.
            let mut body = json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."});
            if let Some(subtype) = grant.revoked.then_some(()).and(grant.revoked_subtype.as_ref()) {
                body["error_subtype"] = json!(subtype);
            }
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        let (sub, scopes) = (grant.sub.clone(), grant.scopes.clone());
        let expires_at = grant.expires_at;
        let now = self.now();
        if let Some(used) = self.refresh_tokens.get_mut(&presented) {
            used.last_used_at = now;
        }
        let mut answer = self.access_answer(&sub, &scopes);
        if let Some(at) = expires_at {
            answer["refresh_token_expires_in"] = json!(at.saturating_sub(now));
        }
        if self.refresh_omits_scope {
            answer.as_object_mut().map(|a| a.remove("scope"));
        }
        if let Some(access) = answer["access_token"].as_str() {
            self.refreshed_access_tokens
                .entry(sub.clone())
                .or_default()
                .push(access.to_owned());
        }
        if self.rotate_refresh_tokens {
            if let Some(old) = self.refresh_tokens.get_mut(&presented) {
                old.revoked = true;
            }
            let rotated = self.issue_refresh_token("1//0rot-", &sub, client_id, &scopes, expires_at);
            answer["refresh_token"] = json!(rotated);
        }
        axum::Json(answer).into_response()
    }

    fn access_answer(&mut self, sub: &str, scopes: &str) -> Value {
        let access = random_token("ya29.emu-");
        self.access_tokens.insert(
            access.clone(),
            AccessGrant {
                sub: sub.to_owned(),
                scopes: scopes.to_owned(),
                expires_at: self.now() + self.access_token_lifetime,
            },
        );
        json!({"access_token": access, "expires_in": self.access_token_lifetime, "scope": scopes, "token_type": "Bearer"})
    }

    fn id_token(&self, user: &crate::User, spec: &CodeSpec) -> anyhow::Result<String> {
        let issued_at = self.now();
        let (given, family) = user.name.split_once(' ').unwrap_or((&user.name, ""));
        let mut claims = json!({
            "iss": self.settings.issuer,
            "azp": spec.azp.clone().unwrap_or_else(|| self.settings.android_client_id.clone()),
            "aud": self.settings.client_id,
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "given_name": given,
            "family_name": family,
            "picture": format!("https://lh3.googleusercontent.com/a/{}", user.sub),
            "locale": "en",
            "iat": issued_at,
            "exp": issued_at + 3_600,
        });
        if let (Some(target), Some(Value::Object(overrides))) = (claims.as_object_mut(), &spec.id_token_claims) {
            for (k, v) in overrides {
                if v.is_null() {
                    target.remove(k);
                } else {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        let key = self.keys.front().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        key.sign(&claims, spec.forgery)
    }
}

async fn certs(AxumState(shared): AxumState<Shared>) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::Certs).await {
        return faulted;
    }
    shared.with(|s| {
        s.stats.certs += 1;
        let keys: Vec<Value> = s.keys.iter().map(crate::SigningKey::jwk).collect();
        let mut response = axum::Json(json!({"keys": keys})).into_response();
        let cache = format!(
            "public, max-age={}, must-revalidate, no-transform",
            s.settings.jwks_max_age
        );
        if let Ok(value) = HeaderValue::from_str(&cache) {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
        response
    })
}

/// `/tokeninfo` for an access token (`access_token` in the query or a form body, or a
/// Bearer header), as Google answers it: every value a string; `email` only with an email
/// scope; `sub` unless the emulator is told to leave it out.
async fn tokeninfo(
    AxumState(shared): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::TokenInfo).await {
        return faulted;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = form(&body)
        .remove("access_token")
        .or_else(|| query.get("access_token").cloned())
        .or(bearer);
    shared.with(|s| {
        s.stats.tokeninfo += 1;
        let now = s.now();
        let Some(grant) = token
            .and_then(|t| s.access_tokens.get(&t))
            .filter(|g| g.expires_at > now)
            .cloned()
        else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Invalid Value");
        };
        let client_id = s.settings.client_id.clone();
        let mut answer = json!({
            "azp": client_id,
            "aud": client_id,
            "scope": grant.scopes,
            "exp": grant.expires_at.to_string(),
            "expires_in": (grant.expires_at - now).to_string(),
            "access_type": "offline",
        });
        if s.tokeninfo_names_user {
            answer["sub"] = json!(grant.sub);
        }
        let email_scope = ["email", "https://www.googleapis.com/auth/userinfo.email"];
        if grant.scopes.split(' ').any(|sc| email_scope.contains(&sc))
            && let Some(user) = s.users.get(&grant.sub)
        {
            answer["email"] = json!(user.email);
            answer["email_verified"] = json!(user.email_verified.to_string());
        }
        axum::Json(answer).into_response()
    })
}

/// `POST /_emulator/redirect-uris` with the URI as the body: registers it (`make dev`
/// registers its example page).
async fn register_redirect_uri(AxumState(shared): AxumState<Shared>, body: String) -> Response {
    let uri = body.trim().to_owned();
    if url::Url::parse(&uri).is_err() {
        return (StatusCode::BAD_REQUEST, "not a URL").into_response();
    }
    shared.with(|s| s.registered_redirect_uris.push(uri));
    StatusCode::NO_CONTENT.into_response()
}

async fn revoke(
    AxumState(shared): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::Revoke).await {
        return faulted;
    }
    let token = form(&body)
        .get("token")
        .cloned()
        .or_else(|| query.get("token").cloned());
    shared.with(|s| {
        s.stats.revokes += 1;
        let Some(token) = token else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: token",
            );
        };
        if let Some(grant) = s.refresh_tokens.get(&token) {
            if grant.revoked {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Token expired or revoked");
            }
            // Revoking a refresh token ends the user's whole grant to this client.
            let (sub, client_id) = (grant.sub.clone(), grant.client_id.clone());
            for other in s.refresh_tokens.values_mut() {
                if other.sub == sub && other.client_id == client_id {
                    other.revoked = true;
                }
            }
            s.access_tokens.retain(|_, a| a.sub != sub);
            return axum::Json(json!({})).into_response();
        }
        // Revoking an access token revokes its grant: the refresh tokens behind it too.
        if let Some(access) = s.access_tokens.remove(&token) {
            for grant in s.refresh_tokens.values_mut() {
                if grant.sub == access.sub {
                    grant.revoked = true;
                }
            }
            s.access_tokens.retain(|_, a| a.sub != access.sub);
            return axum::Json(json!({})).into_response();
        }
        oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Bad Request")
    })
}

fn drive_error(reason: DriveReason) -> Response {
    let (status, body) = reason.answer();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
        axum::Json(body),
    )
        .into_response()
}

/// The user and file count behind a Bearer token, or the refusal Drive answers: an
/// unknown, expired or revoked token (401), then the project's standing refusals (the
/// API off, the daily quota spent), the user's (domain policy), and a missing scope.
fn drive_caller(s: &mut State, headers: &HeaderMap) -> Result<(String, usize), DriveReason> {
    s.stats.drive += 1;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let now = s.now();
    let grant = token
        .as_ref()
        .and_then(|t| s.access_tokens.get(t))
        .filter(|a| a.expires_at > now);
    let Some(grant) = grant else {
        return Err(DriveReason::AuthError);
    };
    if let Some(reason) = s
        .drive_refusals
        .get(&None)
        .or_else(|| s.drive_refusals.get(&Some(grant.sub.clone())))
    {
        return Err(*reason);
    }
    if !grant
        .scopes
        .split(' ')
        .any(|sc| sc == "https://www.googleapis.com/auth/drive.appdata")
    {
        return Err(DriveReason::InsufficientPermissions);
    }
    let sub = grant.sub.clone();
    if let Some(t) = token {
        s.used_access_tokens.insert(t);
    }
    let files = s.users.get(&sub).map_or(0, |u| u.files);
    Ok((sub, files))
}

async fn drive_list(
    AxumState(shared): AxumState<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::Drive).await {
        return faulted;
    }
    shared.with(|s| {
        if !s.spend_units(|q| q.files_list) {
            return drive_error(DriveReason::RateLimitExceeded);
        }
        let (sub, files) = match drive_caller(s, &headers) {
            Ok(caller) => caller,
            Err(reason) => return drive_error(reason),
        };
        s.stats.drive_lists += 1;
        if query.get("spaces").map(String::as_str) != Some("appDataFolder") {
            return drive_error(DriveReason::InsufficientScopes);
        }
        let page_size = query.get("pageSize").and_then(|p| p.parse::<usize>().ok()).unwrap_or(100).clamp(1, 1_000);
        let start = query.get("pageToken").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
        let end = (start + page_size).min(files);
        let listed: Vec<Value> = (start..end)
            .map(|i| json!({"kind": "drive#file", "id": format!("{sub}-file-{i}"), "name": format!("state-{i}.json"), "mimeType": "application/json"}))
            .collect();
        let mut answer = json!({"kind": "drive#fileList", "incompleteSearch": false, "files": listed});
        if s.drive_page_loop {
            answer["nextPageToken"] = json!("loop");
        } else if end < files {
            answer["nextPageToken"] = json!(end.to_string());
        }
        axum::Json(answer).into_response()
    })
}

async fn drive_get(AxumState(shared): AxumState<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::Drive).await {
        return faulted;
    }
    shared.with(|s| {
        if !s.spend_units(|q| q.files_get) {
            return drive_error(DriveReason::RateLimitExceeded);
        }
        let (sub, _) = match drive_caller(s, &headers) {
            Ok(caller) => caller,
            Err(reason) => return drive_error(reason),
        };
        s.stats.drive_gets += 1;
        if id == "appDataFolder" || id == "appdata" {
            return axum::Json(json!({"kind": "drive#file", "id": format!("{sub}-appdata"), "name": "Application Data", "mimeType": "application/vnd.google-apps.folder"})).into_response();
        }
        drive_error(DriveReason::NotFound)
    })
}

async fn mint_code(
    AxumState(shared): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let spec: CodeSpec = if body.trim().is_empty() {
        CodeSpec::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(spec) => spec,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("bad code spec: {e}")).into_response();
            }
        }
    };
    let minted = shared.with(|s| s.mint_code(spec));
    if query.get("format").map(String::as_str) == Some("text") {
        return minted.code.into_response();
    }
    axum::Json(minted).into_response()
}

#[derive(serde::Deserialize)]
struct FaultRequest {
    endpoint: Endpoint,
    #[serde(flatten)]
    fault: Fault,
}

async fn add_fault(AxumState(shared): AxumState<Shared>, axum::Json(request): axum::Json<FaultRequest>) -> StatusCode {
    shared.with(|s| s.inject_fault(request.endpoint, request.fault));
    StatusCode::NO_CONTENT
}

async fn clear_faults(AxumState(shared): AxumState<Shared>) -> StatusCode {
    shared.with(|s| s.faults.clear());
    StatusCode::NO_CONTENT
}

async fn rotate_keys(AxumState(shared): AxumState<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let serial = shared.with(|s| {
        s.serial += 1;
        s.serial
    });
    match crate::SigningKey::generate(format!("emu-key-{serial}")) {
        Ok(key) => {
            let kid = key.kid.clone();
            shared.with(|s| {
                if query.get("drop_old").is_some_and(|v| v == "true") {
                    s.keys.clear();
                }
                s.keys.push_front(key);
            });
            axum::Json(json!({"kid": kid})).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn stats(AxumState(shared): AxumState<Shared>) -> Response {
    axum::Json(shared.with(|s| s.stats.clone())).into_response()
}

async fn risc_configuration(AxumState(shared): AxumState<Shared>) -> Response {
    if let Some(faulted) = fault_answer(&shared, Endpoint::RiscConfig).await {
        return faulted;
    }
    let document = shared.with(|s| {
        s.stats.risc_config += 1;
        s.risc_configuration()
    });
    let mut response = axum::Json(document).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

#[derive(serde::Deserialize)]
struct PushRequest {
    /// The receiver, e.g. `http://127.0.0.1:9000/lambda-url/auth-code/risc`.
    url: String,
    #[serde(flatten)]
    event: crate::SecurityEventSpec,
}

/// Signs a Security Event Token and POSTs it to `url` as Google's push delivery does
/// (`Content-Type: application/secevent+jwt`); answers the receiver's status and body.
async fn risc_push(AxumState(shared): AxumState<Shared>, body: String) -> Response {
    let request: PushRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad push request: {e}")).into_response(),
    };
    let url = match url::Url::parse(&request.url) {
        Ok(url)
            if url
                .host_str()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]") =>
        {
            url
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "url must be an http(s) address on this machine",
            )
                .into_response();
        }
    };
    let (set, jti) = match shared.with(|s| s.security_event(&request.event)) {
        Ok(signed) => signed,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad security event: {e}")).into_response(),
    };
    match push(url.as_str(), set).await {
        Ok((status, body)) => axum::Json(json!({"status": status, "jti": jti, "body": body})).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the receiver could not be reached: {e}"),
        )
            .into_response(),
    }
}

/// POSTs a SET to a receiver as Google's push delivery does; its status and body.
pub(crate) async fn push(url: &str, set: String) -> Result<(u16, String), reqwest::Error> {
    let answer = reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, "application/secevent+jwt")
        .header(header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(30))
        .body(set)
        .send()
        .await?;
    let status = answer.status().as_u16();
    Ok((status, answer.text().await.unwrap_or_default()))
}
