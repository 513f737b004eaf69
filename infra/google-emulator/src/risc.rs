//! Cross-Account Protection (RISC) as Google runs it: a discovery document, Security Event
//! Tokens signed with the same keys as ID tokens (`typ: secevent+jwt`), and — the control
//! API's part — a call that signs one and pushes it to a receiver, as Google's stream does.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Forgery, State, now, random_token};

/// Where RISC event types live.
const RISC_EVENTS: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// Where OAuth event types live.
const OAUTH_EVENTS: &str = "https://schemas.openid.net/secevent/oauth/event-type/";

/// One security event to sign. Every field but `event` has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SecurityEventSpec {
    /// The event type's last segment: `tokens-revoked`, `token-revoked`,
    /// `account-disabled`, `account-enabled`, `sessions-revoked`,
    /// `account-credential-change-required` or `verification` (or any other, sent as a
    /// RISC type).
    pub event: String,
    /// The user (`iss-sub` subject).
    pub sub: Option<String>,
    /// `account-disabled`'s reason: `hijacking`, `bulk-account`, or none.
    pub reason: Option<String>,
    /// `token-revoked`: `prefix` (default) or `hash_base64_sha512_sha512`.
    pub token_identifier_alg: Option<String>,
    /// `token-revoked`: the refresh token meant; defaults to `sub`'s live one.
    pub refresh_token: Option<String>,
    /// `verification`'s state.
    pub state: Option<String>,
    /// Defaults to the web client id.
    pub aud: Option<String>,
    pub jti: Option<String>,
    pub iat: Option<u64>,
    /// Claims merged over the SET's (e.g. `{"iss": "https://evil.example"}`).
    pub claims: Option<Value>,
    pub forgery: Forgery,
}

/// The full URI of an event type.
pub fn event_type_uri(event: &str) -> String {
    match event {
        "tokens-revoked" | "token-revoked" => format!("{OAUTH_EVENTS}{event}"),
        _ => format!("{RISC_EVENTS}{event}"),
    }
}

/// How Google names a refresh token in `token-revoked`: its first 16 characters
/// (`prefix`), or the base64 of its SHA-512 taken twice (`hash_base64_sha512_sha512`).
pub fn token_identifier(token: &str, alg: &str) -> Option<String> {
    use aws_lc_rs::digest::{SHA512, digest};
    match alg {
        "prefix" => Some(token.chars().take(16).collect()),
        "hash_base64_sha512_sha512" => {
            let inner = digest(&SHA512, token.as_bytes());
            let outer = digest(&SHA512, inner.as_ref());
            Some(base64::engine::general_purpose::STANDARD.encode(outer.as_ref()))
        }
        _ => None,
    }
}

impl State {
    /// The RISC discovery document.
    pub(crate) fn risc_configuration(&self) -> Value {
        json!({
            "issuer": self.settings.risc_issuer,
            "jwks_uri": format!("{}/oauth2/v3/certs", self.base_url),
            "delivery_methods_supported": ["https://schemas.openid.net/secevent/risc/delivery-method/push"],
            "configuration_endpoint": format!("{}/_emulator/risc/stream", self.base_url),
            "verification_endpoint": format!("{}/_emulator/risc/verify", self.base_url),
        })
    }

    /// Signs a Security Event Token as `spec` says, and first does at Google what the
    /// event reports: `tokens-revoked` revokes the user's refresh tokens, `token-revoked`
    /// the one named. Answers the SET and its `jti`.
    pub(crate) fn security_event(&mut self, spec: &SecurityEventSpec) -> anyhow::Result<(String, String)> {
        anyhow::ensure!(!spec.event.is_empty(), "event is required");
        self.serial += 1;
        let jti = spec
            .jti
            .clone()
            .unwrap_or_else(|| random_token(&format!("set{}-", self.serial)));
        let issuer = self.settings.risc_issuer.clone();
        let user = || {
            let sub = spec
                .sub
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{} needs a sub", spec.event))?;
            anyhow::Ok(json!({"subject_type": "iss-sub", "iss": issuer, "sub": sub}))
        };
        let body = match spec.event.as_str() {
            "verification" => json!({"state": spec.state.clone().unwrap_or_default()}),
            "token-revoked" => {
                let token = match &spec.refresh_token {
                    Some(token) => token.clone(),
                    None => {
                        let sub = spec
                            .sub
                            .as_deref()
                            .ok_or_else(|| anyhow::anyhow!("token-revoked needs a sub or a refresh_token"))?;
                        self.live_refresh_token(sub)
                            .ok_or_else(|| anyhow::anyhow!("no live refresh token for that sub"))?
                    }
                };
                let alg = spec.token_identifier_alg.as_deref().unwrap_or("prefix");
                let identifier =
                    token_identifier(&token, alg).ok_or_else(|| anyhow::anyhow!("unknown token_identifier_alg"))?;
                if let Some(grant) = self.refresh_tokens.get_mut(&token) {
                    grant.revoked = true;
                }
                json!({"subject": {
                    "subject_type": "oauth_token",
                    "token_type": "refresh_token",
                    "token_identifier_alg": alg,
                    "token": identifier,
                }})
            }
            "tokens-revoked" => {
                let subject = user()?;
                let sub = spec.sub.clone().unwrap_or_default();
                for grant in self.refresh_tokens.values_mut().filter(|g| g.sub == sub) {
                    grant.revoked = true;
                }
                self.access_tokens.retain(|_, a| a.sub != sub);
                json!({"subject": subject})
            }
            _ => {
                let mut body = json!({"subject": user()?});
                if let Some(reason) = &spec.reason {
                    body["reason"] = json!(reason);
                }
                body
            }
        };
        let mut claims = json!({
            "iss": issuer,
            "aud": spec.aud.clone().unwrap_or_else(|| self.settings.client_id.clone()),
            "iat": spec.iat.unwrap_or_else(now),
            "jti": jti,
            "events": {event_type_uri(&spec.event): body},
        });
        if let (Some(Value::Object(over)), Value::Object(base)) = (&spec.claims, &mut claims) {
            for (k, v) in over {
                base.insert(k.clone(), v.clone());
            }
        }
        let key = self.keys.front().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        Ok((key.sign_typed(&claims, spec.forgery, "secevent+jwt")?, jti))
    }

    fn live_refresh_token(&self, sub: &str) -> Option<String> {
        self.refresh_tokens
            .iter()
            .find(|(_, g)| g.sub == sub && !g.revoked)
            .map(|(t, _)| t.clone())
    }
}
