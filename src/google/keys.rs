//! Google's signing keys (a JWKS), cached as Google asks, for every token we verify
//! from Google: ID tokens (§6) and Security Event Tokens (§12).
//!
//! The set is cached for as long as its `Cache-Control: max-age` says. An unknown `kid`
//! (Google rotates keys) triggers one refetch, single-flight and rate-limited so a
//! stream of forged `kid`s cannot make us hammer Google. A refetch that fails keeps the
//! last good set.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::clock::Clock;
use crate::upstream::Upstream;

/// After a refetch failed, the next may go this many seconds later.
const REFETCH_AFTER_FAILURE: u64 = 1;

/// When the JWKS answer carries no `max-age`, cache it this long.
const DEFAULT_JWKS_MAX_AGE: u64 = 300;

/// A fetched key set and how long it may be cached.
#[derive(Debug, Default)]
pub struct Jwks {
    pub keys: HashMap<String, DecodingKey>,
    pub max_age: Option<Duration>,
}

/// Fetches a JWKS.
pub trait JwksFetcher: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<Jwks, Upstream>> + Send;
}

/// The JWKS at a fixed address, over HTTPS with the one hardened client.
#[derive(Debug, Clone)]
pub struct HttpJwksFetcher {
    http: reqwest::Client,
    uri: String,
}

impl HttpJwksFetcher {
    pub fn new(http: reqwest::Client, uri: String) -> Self {
        Self { http, uri }
    }
}

impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self) -> Result<Jwks, Upstream> {
        fetch_jwks(&self.http, &self.uri).await
    }
}

/// GETs the JWKS at `uri`, with how long it may be cached.
pub(crate) async fn fetch_jwks(http: &reqwest::Client, uri: &str) -> Result<Jwks, Upstream> {
    let response = http.get(uri).send().await;
    let max_age = max_age_of(&response);
    let (status, _, json) = super::read_small_json_answer("google-certs", response).await?;
    if !status.is_success() {
        return Err(Upstream::unavailable(
            "google-certs",
            format!("HTTP {}", status.as_u16()),
        ));
    }
    Ok(Jwks {
        keys: parse_jwks(&json),
        max_age,
    })
}

/// The `max-age` of an answer's `Cache-Control`.
pub(crate) fn max_age_of(response: &Result<reqwest::Response, reqwest::Error>) -> Option<Duration> {
    response
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get(http::header::CACHE_CONTROL))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_max_age)
}

/// `max-age` from a `Cache-Control` header value.
pub fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, secs) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| secs.trim().trim_matches('"').parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

/// The RSA signing keys of a JWKS document, by `kid`. Each key is read on its own: one
/// that is malformed, of another type or algorithm, or unusable is skipped, never the set.
pub fn parse_jwks(json: &serde_json::Value) -> HashMap<String, DecodingKey> {
    #[derive(Deserialize)]
    struct Key {
        kid: Option<String>,
        kty: String,
        alg: Option<String>,
        n: Option<String>,
        e: Option<String>,
    }
    let listed = json.get("keys").and_then(serde_json::Value::as_array);
    listed
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value::<Key>(k.clone()).ok())
        .filter(|k| k.kty == "RSA" && k.alg.as_deref().is_none_or(|a| a == "RS256"))
        .filter_map(|k| {
            let key = DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?).ok()?;
            Some((k.kid?, key))
        })
        .collect()
}

/// Why no key was found for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMiss {
    /// Google's current set, fetched again if it was allowed to, has no such key.
    Unknown,
    /// The set could not be fetched (and the last good one, if any, lacks the key).
    Unavailable(Upstream),
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    expires_at: u64,
    generation: u64,
    last_unknown_kid_refetch: Option<u64>,
    /// Why the last refetch failed, while this is the last good set kept in its place.
    refetch_failed: Option<Upstream>,
}

enum Miss {
    Stale,
    UnknownKid,
}

/// A JWKS cache over a fetcher.
pub struct KeyCache<F, C> {
    fetcher: F,
    clock: C,
    min_refetch: u64,
    keys: RwLock<Arc<KeySet>>,
    refetch: tokio::sync::Mutex<()>,
}

impl<F, C> std::fmt::Debug for KeyCache<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("min_refetch", &self.min_refetch)
            .finish_non_exhaustive()
    }
}

impl<F: JwksFetcher, C: Clock> KeyCache<F, C> {
    /// A cache that refetches for an unknown `kid` at most once per `min_refetch`.
    pub fn new(fetcher: F, clock: C, min_refetch: Duration) -> Self {
        Self {
            fetcher,
            clock,
            min_refetch: min_refetch.as_secs(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            refetch: tokio::sync::Mutex::new(()),
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Loads the set ahead of the first request (during Lambda init).
    pub async fn prefetch(&self) -> Result<(), Upstream> {
        match self.key_for("").await {
            Ok(_) | Err(KeyMiss::Unknown) => Ok(()),
            Err(KeyMiss::Unavailable(e)) => Err(e),
        }
    }

    /// The key `kid` names, from the cache or, when the cache is stale or lacks it, from
    /// one single-flight refetch.
    pub async fn key_for(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyMiss> {
        let seen = self.snapshot();
        let now = self.clock.now_unix();
        let miss = if now < seen.expires_at {
            match seen.keys.get(kid) {
                Some(key) => return Ok(Arc::clone(key)),
                None => Miss::UnknownKid,
            }
        } else {
            Miss::Stale
        };

        let _single_flight = self.refetch.lock().await;
        let current = self.snapshot();
        let now = self.clock.now_unix();
        let fresh = now < current.expires_at;
        if current.generation != seen.generation && fresh {
            // Someone refetched while we waited: their answer is as good as ours.
            return current.keys.get(kid).cloned().ok_or(KeyMiss::Unknown);
        }
        if matches!(miss, Miss::UnknownKid)
            && fresh
            && current
                .last_unknown_kid_refetch
                .is_some_and(|at| now < at.saturating_add(self.min_refetch))
        {
            // Refused only when the keys are known good; while Google's set cannot be had,
            // an unknown kid is the key service's failure, and the token is not refused.
            return Err(current
                .refetch_failed
                .clone()
                .map_or(KeyMiss::Unknown, KeyMiss::Unavailable));
        }
        let fetched = self.fetcher.fetch().await.and_then(|jwks| {
            if jwks.keys.is_empty() {
                Err(Upstream::unavailable(
                    "google-certs",
                    "no usable signing key in the answer",
                ))
            } else {
                Ok(jwks)
            }
        });
        let jwks = match fetched {
            Ok(jwks) => jwks,
            // Keep the last good set: a key Google published is still Google's when its
            // cache time is up and the refetch fails. A kid the set never had cannot be
            // checked, which is the key service's failure, not the token's.
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch failed; keeping the last good key set");
                if !current.keys.is_empty() {
                    // Try again a second later: not on every request meanwhile, but soon
                    // enough for a sign-in whose code is spent to try again and finish.
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(KeySet {
                        keys: current.keys.clone(),
                        expires_at: now.saturating_add(REFETCH_AFTER_FAILURE),
                        generation: current.generation + 1,
                        last_unknown_kid_refetch: Some(
                            now.saturating_add(REFETCH_AFTER_FAILURE)
                                .saturating_sub(self.min_refetch),
                        ),
                        refetch_failed: Some(e.clone()),
                    });
                }
                return current.keys.get(kid).cloned().ok_or(KeyMiss::Unavailable(e));
            }
        };
        let max_age = jwks.max_age.map_or(DEFAULT_JWKS_MAX_AGE, |d| d.as_secs());
        let next = KeySet {
            keys: jwks.keys.into_iter().map(|(kid, key)| (kid, Arc::new(key))).collect(),
            expires_at: now.saturating_add(max_age),
            generation: current.generation + 1,
            last_unknown_kid_refetch: match miss {
                Miss::UnknownKid => Some(now),
                Miss::Stale => current.last_unknown_kid_refetch,
            },
            refetch_failed: None,
        };
        let key = next.keys.get(kid).cloned();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        key.ok_or(KeyMiss::Unknown)
    }
}

/// jsonwebtoken checking an RS256 signature and nothing else: every claim is checked by
/// the caller against its own clock and rules.
pub(crate) fn signature_only() -> jsonwebtoken::Validation {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// A JWT's header, read before its signature is checked: which key and algorithm.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    pub kid: Option<String>,
}

/// The header of a compact JWS with three parts; `None` when it is not one.
pub(crate) fn parse_header(token: &str) -> Option<Header> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&bytes).ok()
}
