//! The grant core: what every path that works a grant under its lease shares — the
//! offline job ([`crate::job`]) and the access-token function ([`crate::access_token`]).
//! Neither imports the other; both come here.
//!
//! - [`decide`]: what is done with a failure (one pure function, one table test).
//! - [`health`]: the grant's three levels of health, read from what it holds.
//! - How a lease ends, whoever held it: one outcome type, [`crate::store::GrantOutcome`],
//!   recorded by one write (the store's lease rule), and routine when the cached token's
//!   item alone can record it ([`crate::store::GrantOutcome::is_routine`]).
//! - [`seal_rotated`]: how a rotated refresh token is kept.
//! - [`sealed_for_cache`]: an access token just obtained, sealed for the cache.

use tokio::time::Instant;

use crate::crypto::{Binding, CryptoError, KeyProvider, NewRefreshToken, SealedToken, TokenCipher};
use crate::domain::{AccessToken, RefreshToken, Scopes};
use crate::google::Tokens;
use crate::store::{CachedToken, Grant, cache_details};
use crate::upstream::{RetryPolicy, retry_until};

pub mod decide;
pub mod health;

/// How often, and how far apart, a rotated token's seal is tried.
const SEAL_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base: std::time::Duration::from_millis(50),
    cap: std::time::Duration::from_secs(1),
};

/// Seals a refresh token Google rotated in a refresh answer, so it can replace `current`
/// (the sealed token that was just opened to make that refresh).
///
/// Google retired `current` when it answered with a new token, so losing the new one
/// loses the grant. It is sealed under `current`'s own data key — unwrapped moments ago
/// and still in the cipher's cache — so sealing needs no KMS call (no `GenerateDataKey`
/// that KMS could refuse or throttle). Should even that fail, it is tried again with
/// capped, jittered backoff until `deadline` (the request's or the run's); the last error
/// is returned then, and the caller leaves the stored token as it is and says so
/// ([`decide::Failure::Seal`]) — never a success.
///
/// Google does not rotate refresh tokens on `grant_type=refresh_token` today: this path
/// is defensive, and adds nothing to a refresh without a new token.
pub async fn seal_rotated<K: KeyProvider>(
    cipher: &TokenCipher<K, RefreshToken>,
    current: &SealedToken,
    rotated: &RefreshToken,
    binding: Binding<'_>,
    deadline: Instant,
) -> Result<NewRefreshToken, CryptoError> {
    // Sealing beside `current` makes no call that could hang: no step timeout.
    retry_until(
        &SEAL_RETRY,
        deadline,
        std::time::Duration::ZERO,
        || cipher.seal_beside(rotated, current, binding),
        |_| true,
    )
    .await
}

/// When a refresh answer received at `now` says its refresh token stops working
/// (`refresh_token_expires_in`): `None` when it states no limit.
pub fn answered_time_limit(tokens: &Tokens, now: u64) -> Option<u64> {
    tokens
        .refresh_token_lifetime
        .map(|limit| now.saturating_add(limit.as_secs()))
}

/// When the grant's time-based access ends after a refresh answer: the limit the answer
/// states, else the grant's. `None`: lasting access.
pub fn refresh_expires_at(tokens: &Tokens, grant: &Grant, now: u64) -> Option<u64> {
    answered_time_limit(tokens, now).or(grant.refresh_expires_at)
}

/// What a refresh answer's access token may be used for: Google's `scope`, else the
/// grant's.
pub fn token_scopes(tokens: &Tokens, grant: &Grant) -> Scopes {
    if tokens.scopes.is_empty() {
        grant.scopes.clone()
    } else {
        tokens.scopes.clone()
    }
}

/// The scopes a refresh answer names when they differ from the grant's: its `scope` is
/// authoritative (a user may have taken one back, or granted one since), and replaces the
/// stored set; an answer without `scope` changes nothing.
pub fn changed_scopes(tokens: &Tokens, grant: &Grant) -> Option<Scopes> {
    (!tokens.scopes.is_empty() && tokens.scopes != grant.scopes).then(|| tokens.scopes.clone())
}

/// The cache entry for an access token just obtained for `grant`, sealed under its own
/// purpose with what the cache item keeps beside it.
/// The offline job and the access-token function both cache what they obtain this way.
pub async fn sealed_for_cache<K: KeyProvider>(
    cipher: &TokenCipher<K, AccessToken>,
    binding: Binding<'_>,
    grant: &Grant,
    tokens: &Tokens,
    now: u64,
) -> Result<CachedToken, CryptoError> {
    // Time-based access: no access token is taken for longer than the grant lasts, so a
    // cache hit read without the grant never serves one past its end.
    let lives_until = now.saturating_add(tokens.expires_in.as_secs());
    let (expires_at, scopes) = (
        grant.refresh_expires_at.map_or(lives_until, |end| lives_until.min(end)),
        token_scopes(tokens, grant),
    );
    let details = cache_details(expires_at, now, grant.token_gen, &scopes);
    Ok(CachedToken {
        token: cipher.seal_described(&tokens.access_token, binding, &details).await?,
        expires_at,
        scopes,
        obtained_at: now,
        token_gen: grant.token_gen,
        grant_ends_at: refresh_expires_at(tokens, grant, now),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use secrecy::SecretBox;

    use super::*;
    use crate::crypto::{DataKey, KeyCacheLimits, KeyError, Purpose};
    use crate::upstream::Upstream;

    /// Wraps by prefixing a byte; refuses every call once `down` is set.
    #[derive(Clone, Default)]
    struct Kms {
        down: Arc<AtomicBool>,
        calls: Arc<AtomicU64>,
    }

    impl KeyProvider for Kms {
        async fn generate_data_key(&self, _: Purpose) -> Result<DataKey, KeyError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KeyError::Upstream(Upstream::unavailable("kms", "down")));
            }
            Ok(DataKey {
                plaintext: SecretBox::new(Box::new([7; 32])),
                wrapped: vec![1, 7],
            })
        }
        async fn decrypt_data_key(&self, wrapped: &[u8], _: Purpose) -> Result<SecretBox<[u8; 32]>, KeyError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KeyError::Upstream(Upstream::unavailable("kms", "down")));
            }
            Ok(SecretBox::new(Box::new([wrapped[1]; 32])))
        }
    }

    fn binding() -> Binding<'static> {
        Binding {
            store: "t",
            sub: "1",
            client_id: "c",
        }
    }

    /// A grant's stored token, sealed by another process (not in this cipher's caches),
    /// then opened by this one.
    async fn opened(kms: &Kms, limits: KeyCacheLimits) -> (TokenCipher<Kms, RefreshToken>, SealedToken) {
        let other = TokenCipher::new(kms.clone(), KeyCacheLimits::default());
        let current = other
            .seal(&RefreshToken::new("1//old".into()), binding())
            .await
            .expect("seal");
        let cipher = TokenCipher::new(kms.clone(), limits);
        cipher.open(&current, binding()).await.expect("opens");
        (cipher, current)
    }

    #[tokio::test]
    async fn a_rotated_token_is_sealed_under_the_opened_key_without_kms() {
        let kms = Kms::default();
        let (cipher, current) = opened(&kms, KeyCacheLimits::default()).await;
        kms.down.store(true, Ordering::SeqCst);
        let calls = kms.calls.load(Ordering::SeqCst);

        let rotated = RefreshToken::new("1//new".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        let sealed = seal_rotated(&cipher, &current, &rotated, binding(), deadline)
            .await
            .expect("sealed with KMS down");

        assert_eq!(kms.calls.load(Ordering::SeqCst), calls, "no KMS call");
        assert_eq!(sealed.sealed.wrapped_key(), current.wrapped_key());
        let back = cipher.open(&sealed.sealed, binding()).await.expect("opens");
        assert_eq!(back.expose_secret(), "1//new");
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_key_gone_from_the_cache_and_kms_down_it_fails_at_the_deadline() {
        let kms = Kms::default();
        // No cache at all: every seal and open must ask KMS.
        let no_cache = KeyCacheLimits {
            max_age: Duration::ZERO,
            ..KeyCacheLimits::default()
        };
        let (cipher, current) = opened(&kms, no_cache).await;
        kms.down.store(true, Ordering::SeqCst);
        let calls = kms.calls.load(Ordering::SeqCst);

        let started = Instant::now();
        let deadline = started + Duration::from_secs(3);
        let result = seal_rotated(
            &cipher,
            &current,
            &RefreshToken::new("1//new".into()),
            binding(),
            deadline,
        )
        .await;

        assert!(matches!(result, Err(CryptoError::Upstream(_))), "{result:?}");
        assert!(Instant::now() <= deadline, "no wait outlives the deadline");
        assert!(kms.calls.load(Ordering::SeqCst) - calls > 1, "tried again meanwhile");
    }
}
