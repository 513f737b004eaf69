//! Verification of Google's Security Event Tokens (Cross-Account Protection, DESIGN §12;
//! <https://developers.google.com/identity/protocols/risc>):
//!
//! - the issuer and the keys' address come from Google's RISC discovery document
//!   (`GOOGLE_RISC_CONFIG_URI`), cached for its `max-age` (an hour when it gives none);
//! - the keys are a JWKS cached as [`super::keys`] caches it: `max-age`, one single-flight
//!   refetch for an unknown `kid`;
//! - RS256 only; `iss` equals the discovery `issuer`, a trailing slash aside; `aud` one of
//!   our client ids; no `exp` (a SET reports a past event); `iat` not in the future
//!   beyond the leeway; `jti` and `events` present.
//!
//! Each refusal carries its RFC 8935 error code; keys or discovery that cannot be had are
//! [`SetError::Unavailable`], which the receiver answers with 503 so Google delivers again.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::{self, Jwks, JwksFetcher, KeyCache, KeyMiss, parse_header, signature_only};
use crate::clock::Clock;
use crate::upstream::Upstream;

/// Google's RISC discovery document.
pub const DEFAULT_RISC_CONFIG_URI: &str = "https://accounts.google.com/.well-known/risc-configuration";

/// How long the discovery document is kept when its answer gives no `max-age`.
const DEFAULT_DISCOVERY_MAX_AGE: u64 = 3_600;
/// A failed discovery fetch is tried again this many seconds later at the soonest.
const DISCOVERY_RETRY_AFTER: u64 = 1;
/// The longest `jti` accepted.
const MAX_JTI_CHARS: usize = 256;

/// An RFC 8935 §2.4 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetErrorCode {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
    AuthenticationFailed,
}

impl SetErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::AuthenticationFailed => "authentication_failed",
        }
    }
}

/// Why a SET was refused, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Refused: answered 400 with `code` and this description (never the token).
    #[error("{description}")]
    Invalid {
        code: SetErrorCode,
        description: &'static str,
    },
    /// Google's discovery document or keys could not be fetched: 503, deliver again.
    #[error(transparent)]
    Unavailable(#[from] Upstream),
}

fn invalid(code: SetErrorCode, description: &'static str) -> SetError {
    SetError::Invalid { code, description }
}

/// A verified Security Event Token: who sent which events, when.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEventToken {
    pub jti: String,
    pub iat: u64,
    /// Event type URI → the event's payload, as Google sent them.
    pub events: Map<String, Value>,
}

/// What the discovery document tells us.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RiscDiscovery {
    pub issuer: String,
    pub jwks_uri: String,
}

#[derive(Default)]
struct CachedDiscovery {
    document: Option<Arc<RiscDiscovery>>,
    expires_at: u64,
}

/// The discovery document, cached for its `max-age`; the last good one is kept while a
/// refetch fails (Google's issuer and key address do not change from one hour to the next).
pub struct DiscoveryCache<C> {
    http: reqwest::Client,
    uri: String,
    clock: C,
    current: RwLock<CachedDiscovery>,
    refetch: tokio::sync::Mutex<()>,
}

impl<C> std::fmt::Debug for DiscoveryCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryCache")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> DiscoveryCache<C> {
    pub fn new(http: reqwest::Client, uri: String, clock: C) -> Self {
        Self {
            http,
            uri,
            clock,
            current: RwLock::new(CachedDiscovery::default()),
            refetch: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<RiscDiscovery>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now_unix();
        current.document.clone().filter(|_| now < current.expires_at)
    }

    /// The document, fetched at most once at a time.
    pub async fn get(&self) -> Result<Arc<RiscDiscovery>, Upstream> {
        if let Some(document) = self.fresh() {
            return Ok(document);
        }
        let _single_flight = self.refetch.lock().await;
        if let Some(document) = self.fresh() {
            return Ok(document);
        }
        let now = self.clock.now_unix();
        let fetched = self.fetch().await;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        match fetched {
            Ok((document, max_age)) => {
                let document = Arc::new(document);
                *current = CachedDiscovery {
                    document: Some(Arc::clone(&document)),
                    expires_at: now.saturating_add(max_age.map_or(DEFAULT_DISCOVERY_MAX_AGE, |d| d.as_secs())),
                };
                Ok(document)
            }
            Err(e) => {
                tracing::warn!(error = %e, "RISC discovery document could not be fetched");
                current.expires_at = now.saturating_add(DISCOVERY_RETRY_AFTER);
                current.document.clone().ok_or(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(RiscDiscovery, Option<Duration>), Upstream> {
        let response = self.http.get(&self.uri).send().await;
        let max_age = keys::max_age_of(&response);
        let (status, _, json) = super::read_small_json_answer("google-risc-config", response).await?;
        if !status.is_success() {
            return Err(Upstream::unavailable(
                "google-risc-config",
                format!("HTTP {}", status.as_u16()),
            ));
        }
        let document = serde_json::from_value(json)
            .map_err(|_| Upstream::unavailable("google-risc-config", "no issuer or jwks_uri in the answer"))?;
        Ok((document, max_age))
    }
}

/// The JWKS the discovery document names.
pub struct DiscoveredJwks<C> {
    http: reqwest::Client,
    discovery: Arc<DiscoveryCache<C>>,
}

impl<C> std::fmt::Debug for DiscoveredJwks<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveredJwks").finish_non_exhaustive()
    }
}

impl<C: Clock> JwksFetcher for DiscoveredJwks<C> {
    async fn fetch(&self) -> Result<Jwks, Upstream> {
        let discovery = self.discovery.get().await?;
        keys::fetch_jwks(&self.http, &discovery.jwks_uri).await
    }
}

/// Verifies Security Event Tokens from Google.
pub struct SetVerifier<C> {
    discovery: Arc<DiscoveryCache<C>>,
    keys: KeyCache<DiscoveredJwks<C>, C>,
    leeway: u64,
}

impl<C> std::fmt::Debug for SetVerifier<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetVerifier")
            .field("discovery", &self.discovery)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(crate) struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    iat: Option<u64>,
    jti: Option<String>,
    events: Option<Map<String, Value>>,
}

impl<C: Clock + Clone> SetVerifier<C> {
    /// A verifier reading Google's discovery document at `config_uri`.
    pub fn new(http: reqwest::Client, config_uri: String, clock: C, leeway: Duration, min_refetch: Duration) -> Self {
        let discovery = Arc::new(DiscoveryCache::new(http.clone(), config_uri, clock.clone()));
        let jwks = DiscoveredJwks {
            http,
            discovery: Arc::clone(&discovery),
        };
        Self {
            discovery,
            keys: KeyCache::new(jwks, clock, min_refetch),
            leeway: leeway.as_secs(),
        }
    }

    /// Verifies `set` for any of `audiences` (our client ids).
    pub async fn verify(&self, set: &str, audiences: &[&str]) -> Result<SecurityEventToken, SetError> {
        use SetErrorCode::*;
        let header = parse_header(set).ok_or(invalid(InvalidRequest, "the body is not a signed JWT"))?;
        if header.alg != "RS256" {
            return Err(invalid(InvalidKey, "the SET is not signed with RS256"));
        }
        let kid = header.kid.ok_or(invalid(InvalidKey, "the SET names no key (kid)"))?;
        let discovery = self.discovery.get().await?;
        let key = self.keys.key_for(&kid).await.map_err(|miss| match miss {
            KeyMiss::Unknown => invalid(InvalidKey, "the SET's key (kid) is not among Google's RISC keys"),
            KeyMiss::Unavailable(e) => SetError::Unavailable(e),
        })?;
        // jsonwebtoken checks the signature; every claim is checked below.
        let claims = jsonwebtoken::decode::<Claims>(set, &key, &signature_only())
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid(AuthenticationFailed, "the SET's signature does not verify")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    invalid(InvalidKey, "the SET is not signed with RS256")
                }
                _ => invalid(InvalidRequest, "the SET's claims are not readable"),
            })?
            .claims;

        check_claims(
            claims,
            &discovery.issuer,
            audiences,
            self.keys.clock().now_unix(),
            self.leeway,
        )
    }
}

/// Checks a SET's claims once its signature verified: Google's `issuer`, one of our
/// `audiences`, an `iat` not in the future (with `leeway`), a bounded `jti`, some events.
pub(crate) fn check_claims(
    claims: Claims,
    issuer: &str,
    audiences: &[&str],
    now: u64,
    leeway: u64,
) -> Result<SecurityEventToken, SetError> {
    use SetErrorCode::*;
    let iss = claims.iss.ok_or(invalid(InvalidIssuer, "the SET has no iss"))?;
    if iss.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(invalid(InvalidIssuer, "the SET's iss is not Google's RISC issuer"));
    }
    let ours = |aud: &String| audiences.contains(&aud.as_str());
    let audience_ok = match &claims.aud {
        Some(Audience::One(aud)) => ours(aud),
        Some(Audience::Many(auds)) => auds.iter().any(ours),
        None => false,
    };
    if !audience_ok {
        return Err(invalid(InvalidAudience, "the SET's aud is none of our client ids"));
    }
    let iat = claims.iat.ok_or(invalid(InvalidRequest, "the SET has no iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(invalid(InvalidRequest, "the SET's iat is in the future"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS)
        .ok_or(invalid(
            InvalidRequest,
            "the SET has no jti, or one over 256 characters",
        ))?;
    let events = claims
        .events
        .filter(|e| !e.is_empty())
        .ok_or(invalid(InvalidRequest, "the SET carries no events"))?;
    Ok(SecurityEventToken { jti, iat, events })
}
