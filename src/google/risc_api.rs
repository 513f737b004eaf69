//! Google's RISC management API (<https://developers.google.com/identity/protocols/risc>):
//! register the receiver (`stream:update`), read it back, send a verification event
//! through it, and read or change its status. Each call carries a JWT the project's
//! service account signs itself: audience the RiscManagementService, one hour long, `kid`
//! its key id — Google's documented form.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::upstream::Upstream;

/// Google's RISC management API.
pub const DEFAULT_RISC_API: &str = "https://risc.googleapis.com/v1beta";
/// A management token's audience.
pub const RISC_API_AUDIENCE: &str = "https://risc.googleapis.com/google.identity.risc.v1beta.RiscManagementService";
/// How long a management token lives: Google takes at most an hour.
const TOKEN_LIFETIME: u64 = 3_600;
const PUSH: &str = "https://schemas.openid.net/secevent/risc/delivery-method/push";

/// Every event type the receiver acts on, asked for at registration.
pub const EVENTS_REQUESTED: [&str; 7] = [
    "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked",
    "https://schemas.openid.net/secevent/oauth/event-type/token-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled",
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required",
    "https://schemas.openid.net/secevent/risc/event-type/verification",
];

/// A service account's JSON key file (the fields used; the key stays secret).
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    private_key: SecretString,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum RiscApiError {
    #[error("the service-account key file is not usable: {0}")]
    KeyFile(&'static str),
    /// Google refused the call: its status and message (e.g. 403 "The delivery endpoint
    /// does not belong to any of your project's domains.").
    #[error("Google answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

impl ServiceAccount {
    /// Reads a key file's JSON.
    pub fn from_json(json: &str) -> Result<Self, RiscApiError> {
        #[derive(Deserialize)]
        struct KeyFile {
            client_email: String,
            private_key_id: String,
            private_key: String,
        }
        let file: KeyFile =
            serde_json::from_str(json).map_err(|_| RiscApiError::KeyFile("not a service account's JSON key"))?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            private_key: SecretString::from(file.private_key),
        })
    }

    /// A management token valid from `now` for an hour.
    pub fn bearer_token(&self, now: u64) -> Result<String, RiscApiError> {
        let key = EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
            .map_err(|_| RiscApiError::KeyFile("private_key is not an RSA key in PEM"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        let claims = json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "aud": RISC_API_AUDIENCE,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
        });
        jsonwebtoken::encode(&header, &claims, &key).map_err(|_| RiscApiError::KeyFile("the key does not sign"))
    }
}

/// The RISC management API, for one service account.
#[derive(Debug)]
pub struct RiscManagement {
    http: reqwest::Client,
    base: String,
    account: ServiceAccount,
}

impl RiscManagement {
    pub fn new(http: reqwest::Client, base: String, account: ServiceAccount) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            account,
        }
    }

    async fn call(&self, method: http::Method, path: &str, body: Option<Value>) -> Result<Value, RiscApiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.account.bearer_token(now)?);
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let (status, _, json) = super::read_small_json_answer("google-risc-api", request.send().await).await?;
        if status.is_success() {
            return Ok(json);
        }
        Err(RiscApiError::Refused {
            status: status.as_u16(),
            message: json["error"]["message"].as_str().unwrap_or("no message").to_owned(),
        })
    }

    /// Registers `url` as the receiver of every event type the receiver acts on; answers
    /// the stream configuration as Google keeps it.
    pub async fn register(&self, url: &str) -> Result<Value, RiscApiError> {
        let config = json!({
            "delivery": {"delivery_method": PUSH, "url": url},
            "events_requested": EVENTS_REQUESTED,
        });
        self.call(http::Method::POST, "/stream:update", Some(config)).await
    }

    /// The stream configuration.
    pub async fn stream(&self) -> Result<Value, RiscApiError> {
        self.call(http::Method::GET, "/stream", None).await
    }

    /// Asks Google to send a verification event carrying `state` through the stream.
    pub async fn verify(&self, state: &str) -> Result<(), RiscApiError> {
        self.call(http::Method::POST, "/stream:verify", Some(json!({"state": state})))
            .await
            .map(|_| ())
    }

    /// `enabled` or `disabled`.
    pub async fn status(&self) -> Result<String, RiscApiError> {
        let answer = self.call(http::Method::GET, "/stream/status", None).await?;
        Ok(answer["status"].as_str().unwrap_or("unknown").to_owned())
    }

    /// Enables or disables the stream; answers the status now.
    pub async fn set_status(&self, enabled: bool) -> Result<String, RiscApiError> {
        let wanted = if enabled { "enabled" } else { "disabled" };
        let answer = self
            .call(
                http::Method::POST,
                "/stream/status:update",
                Some(json!({"status": wanted})),
            )
            .await?;
        Ok(answer["status"].as_str().unwrap_or("unknown").to_owned())
    }
}
