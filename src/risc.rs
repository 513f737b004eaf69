//! Google's Cross-Account Protection (RISC, DESIGN §12): `POST /risc` receives Security
//! Event Tokens. It knows nothing of HTTP ([`crate::lambda::http`] is the HTTP side).
//!
//! 1. Verify the SET ([`crate::google::risc`]): Google's RISC keys, issuer, and one of our
//!    client ids (the web client's, from the secret, and `ALLOWED_AZP`) as audience.
//! 2. Read its events; an event type we do not know is accepted and ignored.
//! 3. A `jti` applied before is answered as done, and nothing is done again.
//! 4. Apply each event to its grant (the table below), then record the `jti`.
//!
//! | event | what the grant gets |
//! |---|---|
//! | `tokens-revoked` | tokens deleted; `revoked`, reason `risc:tokens-revoked` |
//! | `token-revoked` | the grant whose refresh token the identifier names: the same, reason `risc:token-revoked` |
//! | `account-disabled`, reason `hijacking`, none or another | `suspended`: neither refreshed nor served, the token kept sealed |
//! | `account-disabled`, reason `bulk-account` | flagged `risc:account-disabled:bulk-account` for review |
//! | `account-enabled` | a `suspended` grant is `active` again |
//! | `sessions-revoked`, `account-credential-change-required` | flagged for review (we hold no session) |
//! | `verification` | its `state` kept for the operator |
//!
//! Applying comes before recording, so an event whose application failed part-way is
//! applied again when Google delivers it again; every change is one conditional write
//! that a second application leaves as it is. Account-state events carry their `iat`
//! onto the grant, so one delivered late cannot undo a newer one.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::domain::{GoogleSubject, TokenLookup};
use crate::google::ClientSecrets;
use crate::google::id_token::GOOGLE_ISSUERS;
use crate::google::risc::{SetError, SetErrorCode, SetVerifier};
use crate::ports::Ports;
use crate::store::{AccountState, Applied, RiscStore, StoreError, event_key, reasons};
use crate::upstream::Upstream;

/// Where RISC event types live.
const RISC_EVENTS: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// Where OAuth event types live.
const OAUTH_EVENTS: &str = "https://schemas.openid.net/secevent/oauth/event-type/";

/// An event as we act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityEvent {
    TokensRevoked {
        sub: GoogleSubject,
    },
    TokenRevoked {
        token: TokenLookup,
    },
    AccountDisabled {
        sub: GoogleSubject,
        reason: Option<String>,
    },
    AccountEnabled {
        sub: GoogleSubject,
    },
    SessionsRevoked {
        sub: GoogleSubject,
    },
    CredentialChangeRequired {
        sub: GoogleSubject,
    },
    Verification {
        state: String,
    },
    /// A type this code does not know, or a token that is not a refresh token: accepted,
    /// logged, nothing done.
    Ignored {
        event_type: String,
    },
}

impl SecurityEvent {
    /// The event type's last segment, for logs.
    pub fn kind(&self) -> &str {
        match self {
            Self::TokensRevoked { .. } => "tokens-revoked",
            Self::TokenRevoked { .. } => "token-revoked",
            Self::AccountDisabled { .. } => "account-disabled",
            Self::AccountEnabled { .. } => "account-enabled",
            Self::SessionsRevoked { .. } => "sessions-revoked",
            Self::CredentialChangeRequired { .. } => "account-credential-change-required",
            Self::Verification { .. } => "verification",
            Self::Ignored { event_type } => event_type,
        }
    }
}

fn malformed(description: &'static str) -> SetError {
    SetError::Invalid {
        code: SetErrorCode::InvalidRequest,
        description,
    }
}

/// The user an event is about: its `subject`'s `sub` (`iss-sub` or `id_token_claims`),
/// whose `iss` must be Google's accounts issuer — a `sub` is only unique within its
/// issuer, so a subject of another issuer names none of our users.
fn subject_sub(payload: &Value) -> Result<GoogleSubject, SetError> {
    let subject = payload.get("subject");
    let issuer = subject.and_then(|s| s.get("iss")).and_then(Value::as_str);
    if !issuer.is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss.trim_end_matches('/'))) {
        return Err(malformed("an event's subject is not of Google's accounts issuer (iss)"));
    }
    subject
        .and_then(|s| s.get("sub"))
        .and_then(Value::as_str)
        .and_then(|sub| GoogleSubject::parse(sub).ok())
        .ok_or(malformed("an event's subject has no valid sub"))
}

/// A `token-revoked` event's identifier; `Ok(None)` for a token other than a refresh token.
fn token_identifier(payload: &Value) -> Result<Option<TokenLookup>, SetError> {
    // Google puts the identifier in `subject`; read the payload itself as a fallback.
    let subject = payload.get("subject").filter(|s| s.is_object()).unwrap_or(payload);
    let field = |name: &str| subject.get(name).and_then(Value::as_str);
    if field("token_type").is_some_and(|t| t != "refresh_token") {
        return Ok(None);
    }
    let (Some(alg), Some(token)) = (field("token_identifier_alg"), field("token")) else {
        return Err(malformed("a token-revoked event has no token_identifier_alg or token"));
    };
    TokenLookup::from_identifier(alg, token).map(Some).ok_or(malformed(
        "a token-revoked event's identifier is of an unknown kind or malformed",
    ))
}

/// Reads a SET's events; a known event without what it needs is refused.
pub fn parse_events(events: &Map<String, Value>) -> Result<Vec<SecurityEvent>, SetError> {
    events
        .iter()
        .map(|(event_type, payload)| {
            let kind = event_type
                .strip_prefix(RISC_EVENTS)
                .or_else(|| event_type.strip_prefix(OAUTH_EVENTS));
            let ignored = || SecurityEvent::Ignored {
                event_type: event_type.clone(),
            };
            Ok(match kind {
                Some("tokens-revoked") => SecurityEvent::TokensRevoked {
                    sub: subject_sub(payload)?,
                },
                Some("token-revoked") => match token_identifier(payload)? {
                    Some(token) => SecurityEvent::TokenRevoked { token },
                    None => ignored(),
                },
                Some("account-disabled") => SecurityEvent::AccountDisabled {
                    sub: subject_sub(payload)?,
                    reason: payload.get("reason").and_then(Value::as_str).map(str::to_owned),
                },
                Some("account-enabled") => SecurityEvent::AccountEnabled {
                    sub: subject_sub(payload)?,
                },
                Some("sessions-revoked") => SecurityEvent::SessionsRevoked {
                    sub: subject_sub(payload)?,
                },
                Some("account-credential-change-required") => SecurityEvent::CredentialChangeRequired {
                    sub: subject_sub(payload)?,
                },
                Some("verification") => SecurityEvent::Verification {
                    state: payload
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                },
                _ => ignored(),
            })
        })
        .collect()
}

/// Why an event was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RiscError {
    /// The SET is refused (400 with its RFC 8935 code).
    #[error(transparent)]
    Refused(SetError),
    /// Google's keys, the secret or DynamoDB failed: 503 when transient, so Google
    /// delivers again; 500 when it is our configuration.
    #[error(transparent)]
    Upstream(#[from] Upstream),
    #[error("stored data is inconsistent")]
    Store(#[source] StoreError),
}

impl From<SetError> for RiscError {
    fn from(e: SetError) -> Self {
        match e {
            SetError::Unavailable(u) => Self::Upstream(u),
            refused => Self::Refused(refused),
        }
    }
}

impl From<StoreError> for RiscError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Upstream(u) => Self::Upstream(u),
            other => Self::Store(other),
        }
    }
}

/// What was done with a SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Applied now: each event with what it changed.
    Applied(Vec<(String, Applied)>),
    /// Its `jti` was applied before: nothing done.
    Duplicate,
}

/// Tunables of the receiver.
#[derive(Debug, Clone)]
pub struct RiscSettings {
    /// Client ids besides the web client's that a SET may be for (`ALLOWED_AZP`).
    pub other_client_ids: Vec<String>,
    /// How long an applied `jti` is remembered (at least 30 days).
    pub event_retention: Duration,
}

/// The receiver over its ports.
#[derive(Debug)]
pub struct RiscReceiver<P: Ports = crate::ports::Aws> {
    pub verifier: SetVerifier<P::Clock>,
    pub store: P::Store,
    pub secrets: P::Secrets,
    pub clock: P::Clock,
    pub settings: RiscSettings,
}

impl<P: Ports> RiscReceiver<P> {
    /// Receives one Security Event Token.
    #[tracing::instrument(name = "risc", skip_all)]
    pub async fn receive(&self, set: &str) -> Result<Receipt, RiscError> {
        let credentials = self.secrets.current().await?;
        let audiences: Vec<&str> = std::iter::once(credentials.client_id.as_str())
            .chain(self.settings.other_client_ids.iter().map(String::as_str))
            .collect();
        let token = self.verifier.verify(set, &audiences).await?;
        let events = parse_events(&token.events)?;
        let key = event_key(&token.jti);
        if self.store.event_seen(&key).await? {
            tracing::info!(event = %key, "security event delivered again; already applied");
            return Ok(Receipt::Duplicate);
        }
        let mut applied = Vec::with_capacity(events.len());
        for event in &events {
            let outcome = self.apply(event, token.iat).await?;
            tracing::info!(event = %key, kind = event.kind(), outcome = ?outcome, "security event applied");
            applied.push((event.kind().to_owned(), outcome));
        }
        self.store
            .record_event(&key, self.clock.now_unix(), self.settings.event_retention)
            .await?;
        Ok(Receipt::Applied(applied))
    }

    async fn apply(&self, event: &SecurityEvent, said_at: u64) -> Result<Applied, StoreError> {
        let now = self.clock.now_unix();
        let store = &self.store;
        match event {
            SecurityEvent::TokensRevoked { sub } => {
                store.revoke_tokens(sub, reasons::RISC_TOKENS_REVOKED, None, now).await
            }
            SecurityEvent::TokenRevoked { token } => {
                let mut outcome = Applied::NoGrant;
                for sub in store.grants_by_token(token).await? {
                    let revoked = store
                        .revoke_tokens(&sub, reasons::RISC_TOKEN_REVOKED, Some(token), now)
                        .await?;
                    tracing::info!(sub = %sub, outcome = ?revoked, "refresh token named by token-revoked");
                    if revoked == Applied::Changed || outcome == Applied::NoGrant {
                        outcome = revoked;
                    }
                }
                Ok(outcome)
            }
            SecurityEvent::AccountDisabled { sub, reason } if reason.as_deref() == Some("bulk-account") => {
                store
                    .flag_for_review(sub, "risc:account-disabled:bulk-account", now)
                    .await
            }
            SecurityEvent::AccountDisabled { sub, .. } => {
                store.set_account_state(sub, AccountState::Disabled, said_at, now).await
            }
            SecurityEvent::AccountEnabled { sub } => {
                store.set_account_state(sub, AccountState::Enabled, said_at, now).await
            }
            SecurityEvent::SessionsRevoked { sub } => store.flag_for_review(sub, "risc:sessions-revoked", now).await,
            SecurityEvent::CredentialChangeRequired { sub } => {
                store
                    .flag_for_review(sub, "risc:account-credential-change-required", now)
                    .await
            }
            SecurityEvent::Verification { state } => {
                store.record_verification(state, now).await?;
                Ok(Applied::Changed)
            }
            SecurityEvent::Ignored { .. } => Ok(Applied::Unchanged),
        }
    }
}

/// A Security Event Token's claims and events, read over arbitrary bytes (the JWT's
/// payload once its signature verified), for the fuzz target (`fuzz/`) and the
/// generated-input test: reading never panics, what is accepted is within its bounds and
/// names only valid users, and every refusal is a SET error (a 400 with its RFC 8935 code).
/// Says whether the claims and events were accepted.
#[doc(hidden)]
pub fn check_set_invariants(data: &[u8]) -> bool {
    const NOW: u64 = 1_800_000_000;
    let Ok(claims) = serde_json::from_slice(data) else {
        return false; // jsonwebtoken refuses it as unreadable claims.
    };
    let set = match crate::google::risc::check_claims(claims, "https://accounts.google.com/", &["web.apps"], NOW, 60) {
        Ok(set) => set,
        Err(e) => {
            assert!(matches!(e, SetError::Invalid { .. }));
            return false;
        }
    };
    assert!(set.iat <= NOW + 60 && !set.jti.is_empty() && set.jti.chars().count() <= 256);
    match parse_events(&set.events) {
        Ok(events) => {
            assert_eq!(events.len(), set.events.len());
            for event in events {
                use SecurityEvent::*;
                match event {
                    TokensRevoked { sub }
                    | AccountDisabled { sub, .. }
                    | AccountEnabled { sub }
                    | SessionsRevoked { sub }
                    | CredentialChangeRequired { sub } => assert!(GoogleSubject::parse(sub.as_str()).is_ok()),
                    TokenRevoked { .. } | Verification { .. } | Ignored { .. } => {}
                }
            }
            true
        }
        Err(e) => {
            assert!(matches!(e, SetError::Invalid { .. }));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_set_reader_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("set_claims", check_set_invariants);
    }

    fn events(v: Value) -> Result<Vec<SecurityEvent>, SetError> {
        parse_events(v.as_object().expect("object"))
    }

    fn sub(s: &str) -> GoogleSubject {
        GoogleSubject::parse(s).expect("sub")
    }

    #[test]
    fn every_event_of_the_table_is_read() {
        let subject = json!({"subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": "123"});
        let read = events(json!({
            "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {"subject": subject},
            "https://schemas.openid.net/secevent/risc/event-type/account-disabled": {"subject": subject, "reason": "hijacking"},
            "https://schemas.openid.net/secevent/risc/event-type/account-enabled": {"subject": subject},
            "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked": {"subject": subject},
            "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required": {"subject": subject},
            "https://schemas.openid.net/secevent/risc/event-type/verification": {"state": "hello"},
            "https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {
                "subject_type": "oauth_token", "token_type": "refresh_token",
                "token_identifier_alg": "prefix", "token": "1//0abcdefghijkl"}},
            "https://schemas.openid.net/secevent/risc/event-type/something-new": {},
        }))
        .expect("events");
        let expected_prefix = TokenLookup::from_identifier("prefix", "1//0abcdefghijkl").expect("prefix");
        for wanted in [
            SecurityEvent::TokensRevoked { sub: sub("123") },
            SecurityEvent::AccountDisabled {
                sub: sub("123"),
                reason: Some("hijacking".into()),
            },
            SecurityEvent::AccountEnabled { sub: sub("123") },
            SecurityEvent::SessionsRevoked { sub: sub("123") },
            SecurityEvent::CredentialChangeRequired { sub: sub("123") },
            SecurityEvent::Verification { state: "hello".into() },
            SecurityEvent::TokenRevoked { token: expected_prefix },
            SecurityEvent::Ignored {
                event_type: "https://schemas.openid.net/secevent/risc/event-type/something-new".into(),
            },
        ] {
            assert!(read.contains(&wanted), "{wanted:?} not read from {read:?}");
        }
    }

    #[test]
    fn a_known_event_without_what_it_needs_is_refused() {
        for bad in [
            json!({"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {"subject": {"sub": ""}}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {"subject": {"subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": ""}}}),
            // Another issuer's user, or one whose issuer is not said.
            json!({"https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {"subject": {"subject_type": "iss-sub", "iss": "https://evil.example/", "sub": "123"}}}),
            json!({"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {"subject": {"subject_type": "iss-sub", "iss": "https://accounts.google.com.evil.example", "sub": "123"}}}),
            json!({"https://schemas.openid.net/secevent/risc/event-type/account-enabled": {"subject": {"subject_type": "iss-sub", "sub": "123"}}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {"token_identifier_alg": "prefix"}}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {"token_identifier_alg": "plain", "token": "x"}}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {"token_identifier_alg": "prefix", "token": "short"}}}),
            json!({"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {"token_identifier_alg": "hash_base64_sha512_sha512", "token": "bm90IDY0IGJ5dGVz"}}}),
        ] {
            let refused = events(bad.clone());
            assert!(
                matches!(
                    refused,
                    Err(SetError::Invalid {
                        code: SetErrorCode::InvalidRequest,
                        ..
                    })
                ),
                "{bad} gave {refused:?}"
            );
        }
    }

    #[test]
    fn an_access_token_event_is_ignored_and_any_base64_spelling_of_a_hash_matches() {
        let read = events(json!({"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {"subject": {
            "subject_type": "oauth_token", "token_type": "access_token", "token_identifier_alg": "prefix", "token": "x"}}}))
        .expect("events");
        assert!(matches!(read.as_slice(), [SecurityEvent::Ignored { .. }]));

        let token = crate::domain::RefreshToken::new("1//0the-refresh-token-itself".into());
        let digests = crate::domain::TokenDigests::of(&token);
        use base64::Engine as _;
        let standard = base64::engine::general_purpose::STANDARD.encode(&digests.double_sha512);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digests.double_sha512);
        for spelling in [standard, url_safe] {
            assert_eq!(
                TokenLookup::from_identifier("hash_base64_sha512_sha512", &spelling),
                Some(TokenLookup::DoubleSha512(digests.double_sha512.clone()))
            );
        }
        assert_eq!(
            TokenLookup::from_identifier("prefix", "1//0the-refresh-"),
            Some(TokenLookup::Prefix(digests.prefix))
        );
    }
}
