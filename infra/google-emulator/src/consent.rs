//! Google's authorization endpoint (`/o/oauth2/v2/auth`) for a browser: a consent page on
//! which a tester picks the account and unticks scopes (granular consent), then a redirect
//! back with `code` and `state`, as Google sends it. The code is bound to the
//! `redirect_uri` and the S256 `code_challenge` of the request, so the exchange must
//! present both, as Google's does.
//!
//! As strict as Google where a lenient answer would hide a bug: an unknown client or a
//! `redirect_uri` not registered (`Emulator::register_redirect_uri`) is an error page and
//! never a redirect; a request Google would refuse after that redirects with `error`.

use std::collections::HashMap;

use axum::extract::{Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::{CodeSpec, Consent, IDENTITY_SCOPES, Shared};

/// Escapes text for HTML content and attribute values.
fn escape(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

fn error_page(status: StatusCode, error: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Error</title><h1>Access blocked: authorization error</h1><p id=\"error\">Error {}: {}</p>",
        status.as_u16(),
        escape(error)
    );
    (status, Html(body)).into_response()
}

/// `redirect_uri` with `params` added to its query.
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "invalid_request"),
    };
    url.query_pairs_mut().extend_pairs(params);
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response()
}

/// The checks before anything may be redirected: the client and its registered URI.
/// `Err`: the error page's status and error.
fn check_client(
    shared: &Shared,
    client_id: Option<&String>,
    redirect_uri: Option<&String>,
) -> Result<String, (StatusCode, &'static str)> {
    shared.with(|s| {
        if client_id != Some(&s.settings.client_id) {
            return Err((StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        match redirect_uri {
            Some(uri) if s.registered_redirect_uris.contains(uri) => Ok(uri.clone()),
            _ => Err((StatusCode::BAD_REQUEST, "redirect_uri_mismatch")),
        }
    })
}

/// `GET /o/oauth2/v2/auth`: the consent page.
pub(crate) async fn authorize(
    AxumState(shared): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let redirect_uri = match check_client(&shared, query.get("client_id"), query.get("redirect_uri")) {
        Ok(uri) => uri,
        Err((status, error)) => return error_page(status, error),
    };
    let state = query.get("state").map(String::as_str).unwrap_or_default();
    let refuse = |error: &str| redirect(&redirect_uri, &[("error", error), ("state", state)]);
    if query.get("response_type").map(String::as_str) != Some("code") {
        return refuse("unsupported_response_type");
    }
    let scopes: Vec<&str> = query
        .get("scope")
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return refuse("invalid_request");
    }
    let challenge = query.get("code_challenge").map(String::as_str).unwrap_or_default();
    let method = query.get("code_challenge_method").map(String::as_str);
    // S256 only: a plain challenge would make the verifier travel twice.
    if (!challenge.is_empty() && method != Some("S256")) || (challenge.is_empty() && method.is_some()) {
        return refuse("invalid_request");
    }
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        )
    };
    let mut form = String::new();
    for (name, value) in [
        (
            "client_id",
            query.get("client_id").map(String::as_str).unwrap_or_default(),
        ),
        ("redirect_uri", redirect_uri.as_str()),
        ("state", state),
        ("code_challenge", challenge),
        ("prompt", query.get("prompt").map(String::as_str).unwrap_or_default()),
    ] {
        form.push_str(&hidden(name, value));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if IDENTITY_SCOPES.contains(scope) {
            // Name, email and profile come with the sign-in: no checkbox, as on Google's.
            form.push_str(&hidden("granted", scope));
        } else {
            form.push_str(&format!(
                "<p><label><input type=\"checkbox\" id=\"scope-{i}\" name=\"granted\" value=\"{0}\" checked> {0}</label></p>",
                escape(scope)
            ));
        }
    }
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in – Google Accounts (emulator)</title></head><body>\
         <h1>Choose what the app can access</h1>\
         <form method=\"post\" action=\"/o/oauth2/v2/auth/approve\">{form}\
         <p><label>Account <input id=\"email\" name=\"email\" value=\"ada@example.com\"></label></p>\
         <button id=\"deny\" name=\"decision\" value=\"deny\">Cancel</button> \
         <button id=\"allow\" name=\"decision\" value=\"allow\">Continue</button>\
         </form></body></html>"
    );
    Html(page).into_response()
}

/// `POST /o/oauth2/v2/auth/approve`: the tester's choice; a code bound to the request,
/// or `access_denied`, sent back to `redirect_uri`.
pub(crate) async fn approve(AxumState(shared): AxumState<Shared>, body: String) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let one = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let redirect_uri = match check_client(&shared, one("client_id").as_ref(), one("redirect_uri").as_ref()) {
        Ok(uri) => uri,
        Err((status, error)) => return error_page(status, error),
    };
    let state = one("state").unwrap_or_default();
    if one("decision").as_deref() != Some("allow") {
        return redirect(&redirect_uri, &[("error", "access_denied"), ("state", &state)]);
    }
    let granted: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "granted")
        .map(|(_, v)| v.clone())
        .collect();
    let scopes = granted.join(" ");
    let email = one("email")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "ada@example.com".into());
    let forced = one("prompt").is_some_and(|p| p.split(' ').any(|p| p == "consent"));
    let minted = shared.with(|s| {
        let sub = s.users.values().find(|u| u.email == email).map(|u| u.sub.clone());
        s.mint_code(CodeSpec {
            sub,
            email: Some(email),
            scopes: Some(scopes.clone()),
            redirect_uri: Some(redirect_uri.clone()),
            code_challenge: one("code_challenge").filter(|c| !c.is_empty()),
            consent: if forced { Consent::Forced } else { Consent::Auto },
            ..CodeSpec::default()
        })
    });
    redirect(
        &redirect_uri,
        &[("code", &minted.code), ("scope", &scopes), ("state", &state)],
    )
}
