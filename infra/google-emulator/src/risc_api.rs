//! Google's RISC management API (`https://risc.googleapis.com/v1beta`), as the operator
//! CLI calls it: a stream configuration (receiver URL and events), its status, and a
//! verification event sent through it. Calls carry a service account's own JWT (audience
//! the RiscManagementService, at most an hour long, `kid` its key id); the control API
//! mints service-account key files whose keys it then accepts.

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{SecurityEventSpec, Shared, SigningKey, now};

/// The audience of a RISC management API token.
pub const RISC_API_AUDIENCE: &str = "https://risc.googleapis.com/google.identity.risc.v1beta.RiscManagementService";
const PUSH: &str = "https://schemas.openid.net/secevent/risc/delivery-method/push";

/// A service account the emulator accepts tokens from: its email and public key.
#[derive(Debug)]
pub(crate) struct ServiceAccount {
    pub email: String,
    pub kid: String,
    pub jwk: Value,
}

/// The stream configuration, as `stream:update` set it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    pub url: Option<String>,
    pub events_requested: Vec<String>,
    pub enabled: bool,
    /// What the receiver answered to the last event the stream sent.
    pub last_delivery_status: Option<u16>,
}

fn google_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": status.canonical_reason()}});
    (status, axum::Json(body)).into_response()
}

/// Google's answer to a call without a token it takes.
fn unauthorized() -> Response {
    google_error(StatusCode::UNAUTHORIZED, "Unauthorized.")
}

/// The caller's service account, if its bearer token is one of ours and well-formed.
fn authorized(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)?;
    let (email, jwk) = shared.with(|s| {
        s.service_accounts
            .iter()
            .find(|a| a.kid == kid)
            .map(|a| (a.email.clone(), a.jwk.clone()))
    })?;
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap_or_default(),
        jwk["e"].as_str().unwrap_or_default(),
    )
    .ok()?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[RISC_API_AUDIENCE]);
    validation.set_issuer(&[&email]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
        iat: u64,
        exp: u64,
    }
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation).ok()?.claims;
    // Google's: the token lives at most an hour, and its subject is the account itself.
    let well_formed = claims.sub == email && claims.exp.saturating_sub(claims.iat) <= 3_600 && claims.iat <= now() + 60;
    well_formed.then_some(email)
}

pub(crate) async fn service_account(AxumState(shared): AxumState<Shared>) -> Response {
    match shared.mint_service_account() {
        Ok(file) => (StatusCode::OK, file).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

impl Shared {
    /// A new service account with the RISC Configuration Admin role: its JSON key file.
    pub(crate) fn mint_service_account(&self) -> anyhow::Result<String> {
        let serial = self.with(|s| {
            s.serial += 1;
            s.serial
        });
        let kid = format!("sa-key-{serial}");
        let key = SigningKey::generate(kid.clone())?;
        let email = format!("risc-admin-{serial}@offline-access-local.iam.gserviceaccount.com");
        let file = json!({
            "type": "service_account",
            "project_id": "offline-access-local",
            "private_key_id": kid,
            "private_key": key.private_pem()?,
            "client_email": email,
            "client_id": format!("1{serial:020}"),
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        self.with(|s| {
            s.service_accounts.push(ServiceAccount {
                email,
                kid,
                jwk: key.jwk(),
            });
        });
        Ok(file.to_string())
    }
}

pub(crate) async fn stream_update(AxumState(shared): AxumState<Shared>, headers: HeaderMap, body: String) -> Response {
    if authorized(&shared, &headers).is_none() {
        return unauthorized();
    }
    let Ok(config) = serde_json::from_str::<Value>(&body) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Stream configuration must contain delivery field.",
        );
    };
    let (Some(method), Some(url)) = (
        config["delivery"]["delivery_method"].as_str(),
        config["delivery"]["url"].as_str(),
    ) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Stream configuration must contain delivery field.",
        );
    };
    if method != PUSH {
        return google_error(StatusCode::BAD_REQUEST, "Unsupported delivery method.");
    }
    let loopback = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
    if !url.starts_with("https://") && !loopback {
        return google_error(StatusCode::FORBIDDEN, "The delivery endpoint must be an HTTPS URL.");
    }
    let events: Vec<String> = config["events_requested"]
        .as_array()
        .map(|list| list.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    shared.with(|s| {
        s.risc_stream = Stream {
            url: Some(url.to_owned()),
            events_requested: events,
            enabled: true,
            last_delivery_status: None,
        };
    });
    stream_get(AxumState(shared), headers).await
}

pub(crate) async fn stream_get(AxumState(shared): AxumState<Shared>, headers: HeaderMap) -> Response {
    if authorized(&shared, &headers).is_none() {
        return unauthorized();
    }
    let stream = shared.with(|s| s.risc_stream.clone());
    let Some(url) = stream.url else {
        return google_error(StatusCode::NOT_FOUND, "Project has no RISC configuration.");
    };
    axum::Json(json!({
        "delivery": {"delivery_method": PUSH, "url": url},
        "events_requested": stream.events_requested,
        "events_delivered": stream.events_requested,
    }))
    .into_response()
}

pub(crate) async fn status_get(AxumState(shared): AxumState<Shared>, headers: HeaderMap) -> Response {
    if authorized(&shared, &headers).is_none() {
        return unauthorized();
    }
    let stream = shared.with(|s| s.risc_stream.clone());
    if stream.url.is_none() {
        return google_error(StatusCode::NOT_FOUND, "Project has no RISC configuration.");
    }
    axum::Json(json!({"status": if stream.enabled { "enabled" } else { "disabled" }})).into_response()
}

pub(crate) async fn status_update(AxumState(shared): AxumState<Shared>, headers: HeaderMap, body: String) -> Response {
    if authorized(&shared, &headers).is_none() {
        return unauthorized();
    }
    let wanted = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned));
    let enabled = match wanted.as_deref() {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => return google_error(StatusCode::FORBIDDEN, "Unsupported status.  Invalid status."),
    };
    let configured = shared.with(|s| {
        s.risc_stream.enabled = enabled;
        s.risc_stream.url.is_some()
    });
    if !configured {
        return google_error(
            StatusCode::NOT_FOUND,
            "Project has no existing RISC configuration, cannot update status.",
        );
    }
    status_get(AxumState(shared), headers).await
}

/// Sends a verification event through the stream, as Google does: to the configured
/// receiver, when the stream is enabled and asked for verification events.
pub(crate) async fn verify(AxumState(shared): AxumState<Shared>, headers: HeaderMap, body: String) -> Response {
    if authorized(&shared, &headers).is_none() {
        return unauthorized();
    }
    let state = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let stream = shared.with(|s| s.risc_stream.clone());
    let Some(url) = stream.url else {
        return google_error(StatusCode::NOT_FOUND, "Project has no RISC configuration.");
    };
    let verification = format!("{}verification", "https://schemas.openid.net/secevent/risc/event-type/");
    if stream.enabled && stream.events_requested.contains(&verification) {
        let spec = SecurityEventSpec {
            event: "verification".into(),
            state: Some(state),
            ..SecurityEventSpec::default()
        };
        let sent = match shared.with(|s| s.security_event(&spec)) {
            Ok((set, _)) => crate::server::push(&url, set).await.ok().map(|(status, _)| status),
            Err(_) => None,
        };
        shared.with(|s| s.risc_stream.last_delivery_status = sent);
    }
    axum::Json(json!({})).into_response()
}
