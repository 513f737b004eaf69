//! Envelope encryption of refresh tokens (DESIGN §5) and of cached access tokens (§11).
//!
//! Each kind of token has its own [`Purpose`]: the first field of the additional
//! authenticated data and the `purpose` of the KMS encryption context, so a sealed access
//! token can never be opened as a refresh token, nor the other way round, and IAM can
//! grant each function only the purposes it uses. A [`TokenCipher`] seals one kind.
//!
//! Each token is sealed with AES-256-GCM under a data key from KMS `GenerateDataKey`.
//! The additional authenticated data binds the ciphertext to its grant — format
//! version, the store's stable name (`TOKEN_BINDING`, which outlives a restore of the
//! table under a new name), `sub`, client id — so a ciphertext copied to another user's
//! row does not decrypt. Plaintext data keys are cached with bounds on age and uses, so KMS is
//! called per data key rather than per token; keys unwrapped for decryption are cached
//! by the SHA-256 of the wrapped key. Nonces are random 96-bit values; the use bound
//! keeps the chance of a repeat under one key negligible (NIST SP 800-38D §8.3).
//!
//! This is the only module that sees key material or ciphertext.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Data keys age by tokio's clock: the system's in production, and a test's paused,
/// moved-by-hand time in the age bound's tests.
use tokio::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use secrecy::{ExposeSecret, SecretBox};

use crate::domain::{AccessToken, RefreshToken};
use crate::upstream::Upstream;

mod kms;
mod sealed;

pub use kms::{DataKey, KeyError, KeyProvider, KmsKeyProvider, encryption_context};
pub use sealed::{Binding, SealedToken};

/// The sealed-token format this code writes for a token stored alone.
pub const FORMAT_VERSION: u8 = 1;

/// The format of a token sealed with what the store keeps beside it (a cached access
/// token's expiry, issue time, scopes and generation): the additional authenticated data
/// also covers those details, so a changed one makes the token not open.
pub const DESCRIBED_FORMAT_VERSION: u8 = 2;

/// What a sealed token is for: the first field of its additional authenticated data and
/// the `purpose` of its KMS encryption context (which IAM conditions on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    RefreshToken,
    AccessToken,
}

impl Purpose {
    pub const ALL: [Self; 2] = [Self::RefreshToken, Self::AccessToken];

    /// The spelling in the AAD and the encryption context.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "offline-access/refresh-token",
            Self::AccessToken => "offline-access/access-token",
        }
    }
}

/// A secret this module seals: its purpose is fixed by its type.
pub trait Sealable: Sized {
    const PURPOSE: Purpose;
    fn expose_secret(&self) -> &str;
    fn from_opened(text: String) -> Self;
}

impl Sealable for RefreshToken {
    const PURPOSE: Purpose = Purpose::RefreshToken;
    fn expose_secret(&self) -> &str {
        RefreshToken::expose_secret(self)
    }
    fn from_opened(text: String) -> Self {
        Self::new(text)
    }
}

impl Sealable for AccessToken {
    const PURPOSE: Purpose = Purpose::AccessToken;
    fn expose_secret(&self) -> &str {
        AccessToken::expose_secret(self)
    }
    fn from_opened(text: String) -> Self {
        Self::new(text)
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// KMS would not unwrap the data key: it was wrapped under another key or another
    /// encryption context (`TOKEN_KEY_ID`, `TOKEN_BINDING`), or its bytes were altered.
    #[error("KMS refused the wrapped data key (another key or binding, or altered)")]
    KeyRejected,
    #[error("the KMS key the token was sealed under is disabled or deleted")]
    KeyGone,
    #[error("the stored sealed token is not in the sealed-token format")]
    Malformed,
    #[error("the sealed token does not authenticate for this grant (tampered, or copied from another row)")]
    Tampered,
    #[error("sealed token format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("the decrypted token is not UTF-8")]
    NotText,
    #[error("random nonce could not be drawn")]
    Random,
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

impl CryptoError {
    /// The token will never open, whatever is retried: its bytes do not authenticate or
    /// are not a sealed token while KMS answers, or KMS refuses its key for good. (A KMS
    /// that cannot be reached, or refuses this caller, may pass.)
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::KeyRejected
            | Self::KeyGone
            | Self::Malformed
            | Self::Tampered
            | Self::UnsupportedVersion(_)
            | Self::NotText => true,
            Self::Random | Self::Upstream(_) => false,
        }
    }
}

impl From<KeyError> for CryptoError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Rejected => Self::KeyRejected,
            KeyError::Gone => Self::KeyGone,
            KeyError::Upstream(u) => Self::Upstream(u),
        }
    }
}

/// Bounds of the data-key caches.
#[derive(Debug, Clone, Copy)]
pub struct KeyCacheLimits {
    pub max_age: Duration,
    pub max_uses: u64,
    pub max_unwrapped: usize,
}

impl Default for KeyCacheLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(900),
            max_uses: 100_000,
            max_unwrapped: 1_024,
        }
    }
}

struct CurrentKey {
    key: Arc<LessSafeKey>,
    wrapped: Vec<u8>,
    born: Instant,
    uses: u64,
}

struct UnwrappedKey {
    key: Arc<LessSafeKey>,
    born: Instant,
}

/// Seals and opens one kind of token, `T` (refresh tokens unless said otherwise), under
/// data keys of `T`'s purpose.
pub struct TokenCipher<K, T = RefreshToken> {
    kind: std::marker::PhantomData<fn() -> T>,
    keys: K,
    limits: KeyCacheLimits,
    current: Arc<tokio::sync::Mutex<Option<CurrentKey>>>,
    unwrapped: Arc<std::sync::Mutex<HashMap<[u8; 32], UnwrappedKey>>>,
    /// Makes unwrapping single-flight: many grants sealed under one data key, opened
    /// concurrently, cost one KMS `Decrypt`.
    unwrapping: Arc<tokio::sync::Mutex<()>>,
}

/// A clone shares the data-key caches: one per purpose per process, whatever seals or
/// opens.
impl<K: Clone, T> Clone for TokenCipher<K, T> {
    fn clone(&self) -> Self {
        Self {
            kind: std::marker::PhantomData,
            keys: self.keys.clone(),
            limits: self.limits,
            current: Arc::clone(&self.current),
            unwrapped: Arc::clone(&self.unwrapped),
            unwrapping: Arc::clone(&self.unwrapping),
        }
    }
}

impl<K, T: Sealable> std::fmt::Debug for TokenCipher<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher")
            .field("purpose", &T::PURPOSE)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn aead_key(bytes: &SecretBox<[u8; 32]>) -> Result<Arc<LessSafeKey>, CryptoError> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes.expose_secret())
        .map_err(|_| Upstream::misconfigured("kms", "data key rejected by AES-256-GCM"))?;
    Ok(Arc::new(LessSafeKey::new(unbound)))
}

fn wrapped_digest(wrapped: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, wrapped).as_ref());
    out
}

/// A refresh token ready to store: sealed, with the digests Google's `token-revoked`
/// events name it by. Every write of a new refresh token takes this, so none can store a
/// token without them.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub sealed: SealedToken,
    pub digests: crate::domain::TokenDigests,
}

impl<K: KeyProvider> TokenCipher<K, RefreshToken> {
    /// Seals a new refresh token and takes its digests.
    pub async fn seal_new(&self, token: &RefreshToken, binding: Binding<'_>) -> Result<NewRefreshToken, CryptoError> {
        Ok(NewRefreshToken {
            sealed: self.seal(token, binding).await?,
            digests: crate::domain::TokenDigests::of(token),
        })
    }

    /// Seals a refresh token under the data key of `beside` (the grant's current token,
    /// just opened, so its key is in the unwrap cache): no KMS call while the key is
    /// cached. A rotated token replaces one Google has retired; sealing it must not
    /// depend on KMS answering.
    pub async fn seal_beside(
        &self,
        token: &RefreshToken,
        beside: &SealedToken,
        binding: Binding<'_>,
    ) -> Result<NewRefreshToken, CryptoError> {
        let key = self.decryption_key(&beside.wrapped_key).await?;
        Ok(NewRefreshToken {
            sealed: seal_with(&key, beside.wrapped_key.clone(), token, binding, None)?,
            digests: crate::domain::TokenDigests::of(token),
        })
    }
}

/// The format a token is sealed in: described when details are kept beside it.
const fn format_of(details: Option<&[u8]>) -> u8 {
    match details {
        None => FORMAT_VERSION,
        Some(_) => DESCRIBED_FORMAT_VERSION,
    }
}

/// Seals `token` under `key` (whose KMS-wrapped form is `wrapped`) with a fresh random
/// nonce; `details`, when given, are authenticated with it.
fn seal_with<T: Sealable>(
    key: &LessSafeKey,
    wrapped: Vec<u8>,
    token: &T,
    binding: Binding<'_>,
    details: Option<&[u8]>,
) -> Result<SealedToken, CryptoError> {
    let version = format_of(details);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let mut in_out = token.expose_secret().as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(binding.aad(T::PURPOSE, version, details)),
        &mut in_out,
    )
    .map_err(|_| CryptoError::Random)?;
    Ok(SealedToken {
        version,
        wrapped_key: wrapped,
        nonce,
        ciphertext: in_out,
    })
}

impl<K: KeyProvider, T: Sealable> TokenCipher<K, T> {
    pub fn new(keys: K, limits: KeyCacheLimits) -> Self {
        Self {
            kind: std::marker::PhantomData,
            keys,
            limits,
            current: Arc::default(),
            unwrapped: Arc::default(),
            unwrapping: Arc::default(),
        }
    }

    /// The key provider, for callers that count or inspect its calls.
    pub fn key_provider(&self) -> &K {
        &self.keys
    }

    /// Seals a token for one grant.
    pub async fn seal(&self, token: &T, binding: Binding<'_>) -> Result<SealedToken, CryptoError> {
        let (key, wrapped) = self.encryption_key().await?;
        seal_with(&key, wrapped, token, binding, None)
    }

    /// Seals a token the store keeps beside `details` (their canonical bytes): opening it
    /// with other details fails as tampering does.
    pub async fn seal_described(
        &self,
        token: &T,
        binding: Binding<'_>,
        details: &[u8],
    ) -> Result<SealedToken, CryptoError> {
        let (key, wrapped) = self.encryption_key().await?;
        seal_with(&key, wrapped, token, binding, Some(details))
    }

    /// Opens a sealed token; fails with [`CryptoError::Tampered`] if any byte or the
    /// binding differs from what was sealed.
    pub async fn open(&self, sealed: &SealedToken, binding: Binding<'_>) -> Result<T, CryptoError> {
        self.open_with(sealed, binding, None).await
    }

    /// Opens a token sealed with [`Self::seal_described`]; fails with
    /// [`CryptoError::Tampered`] if `details` differ from those it was sealed with.
    pub async fn open_described(
        &self,
        sealed: &SealedToken,
        binding: Binding<'_>,
        details: &[u8],
    ) -> Result<T, CryptoError> {
        self.open_with(sealed, binding, Some(details)).await
    }

    async fn open_with(
        &self,
        sealed: &SealedToken,
        binding: Binding<'_>,
        details: Option<&[u8]>,
    ) -> Result<T, CryptoError> {
        if sealed.version != format_of(details) {
            return Err(CryptoError::UnsupportedVersion(sealed.version));
        }
        let key = self.decryption_key(&sealed.wrapped_key).await?;
        let mut in_out = sealed.ciphertext.clone();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(binding.aad(T::PURPOSE, sealed.version, details)),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Tampered)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::NotText)?;
        Ok(T::from_opened(text))
    }

    /// The current data key, generating a new one when the cached one is too old or
    /// too used. Holding the async lock across the KMS call makes it single-flight.
    async fn encryption_key(&self) -> Result<(Arc<LessSafeKey>, Vec<u8>), CryptoError> {
        let mut current = self.current.lock().await;
        let usable = current
            .as_ref()
            .is_some_and(|c| c.born.elapsed() < self.limits.max_age && c.uses < self.limits.max_uses);
        if !usable {
            let fresh = self.keys.generate_data_key(T::PURPOSE).await?;
            let key = aead_key(&fresh.plaintext)?;
            self.remember_unwrapped(&fresh.wrapped, Arc::clone(&key));
            *current = Some(CurrentKey {
                key,
                wrapped: fresh.wrapped,
                born: Instant::now(),
                uses: 0,
            });
        }
        let Some(entry) = current.as_mut() else {
            return Err(Upstream::misconfigured("kms", "no data key").into());
        };
        entry.uses += 1;
        Ok((Arc::clone(&entry.key), entry.wrapped.clone()))
    }

    fn cached_unwrapped(&self, id: &[u8; 32]) -> Option<Arc<LessSafeKey>> {
        let cache = self.unwrapped.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(id)
            .filter(|e| e.born.elapsed() < self.limits.max_age)
            .map(|e| Arc::clone(&e.key))
    }

    async fn decryption_key(&self, wrapped: &[u8]) -> Result<Arc<LessSafeKey>, CryptoError> {
        let id = wrapped_digest(wrapped);
        if let Some(key) = self.cached_unwrapped(&id) {
            return Ok(key);
        }
        let _single_flight = self.unwrapping.lock().await;
        if let Some(key) = self.cached_unwrapped(&id) {
            return Ok(key);
        }
        let plaintext = self.keys.decrypt_data_key(wrapped, T::PURPOSE).await?;
        let key = aead_key(&plaintext)?;
        self.remember_unwrapped(wrapped, Arc::clone(&key));
        Ok(key)
    }

    fn remember_unwrapped(&self, wrapped: &[u8], key: Arc<LessSafeKey>) {
        let mut cache = self.unwrapped.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.limits.max_unwrapped {
            cache.retain(|_, e| e.born.elapsed() < self.limits.max_age);
        }
        if cache.len() >= self.limits.max_unwrapped
            && let Some(oldest) = cache.iter().min_by_key(|(_, e)| e.born).map(|(k, _)| *k)
        {
            cache.remove(&oldest);
        }
        cache.insert(
            wrapped_digest(wrapped),
            UnwrappedKey {
                key,
                born: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory stand-in for KMS: "wraps" by XOR with a fixed master key.
    #[derive(Default)]
    struct FakeKms {
        generated: AtomicUsize,
        decrypted: AtomicUsize,
    }

    const MASTER: [u8; 32] = [7u8; 32];

    impl KeyProvider for FakeKms {
        async fn generate_data_key(&self, _: Purpose) -> Result<DataKey, KeyError> {
            let n = self.generated.fetch_add(1, Ordering::SeqCst);
            let mut key = [0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| KeyError::Rejected)?;
            let mut wrapped: Vec<u8> = key.iter().zip(MASTER).map(|(a, b)| a ^ b).collect();
            wrapped.extend_from_slice(&(n as u64).to_be_bytes());
            Ok(DataKey {
                plaintext: SecretBox::new(Box::new(key)),
                wrapped,
            })
        }

        async fn decrypt_data_key(&self, wrapped: &[u8], _: Purpose) -> Result<SecretBox<[u8; 32]>, KeyError> {
            self.decrypted.fetch_add(1, Ordering::SeqCst);
            let key: [u8; 32] = wrapped
                .get(..32)
                .ok_or(KeyError::Rejected)?
                .iter()
                .zip(MASTER)
                .map(|(a, b)| a ^ b)
                .collect::<Vec<_>>()
                .try_into()
                .map_err(|_| KeyError::Rejected)?;
            Ok(SecretBox::new(Box::new(key)))
        }
    }

    const ADA: Binding<'static> = Binding {
        store: "grants",
        sub: "1001",
        client_id: "web.apps",
    };
    const BOB: Binding<'static> = Binding {
        store: "grants",
        sub: "1002",
        client_id: "web.apps",
    };

    fn token(s: &str) -> RefreshToken {
        RefreshToken::new(s.to_owned())
    }

    /// A data key is used for `max_age` of the clock and no longer: a seal a second
    /// before reuses it; a seal a second after asks KMS for a new one, and an open of a
    /// token sealed under the old key asks KMS to unwrap it again.
    #[tokio::test(start_paused = true)]
    async fn a_data_key_is_used_until_its_age_bound_and_not_after() {
        let limits = KeyCacheLimits {
            max_age: Duration::from_secs(300),
            ..KeyCacheLimits::default()
        };
        let cipher = TokenCipher::new(FakeKms::default(), limits);
        let first = cipher.seal(&token("1//a"), ADA).await.expect("seal");
        tokio::time::advance(Duration::from_secs(299)).await;
        let within = cipher.seal(&token("1//b"), ADA).await.expect("seal");
        cipher.open(&first, ADA).await.expect("opens");
        assert_eq!(within.wrapped_key(), first.wrapped_key(), "the same key within its age");
        assert_eq!(
            (
                cipher.keys.generated.load(Ordering::SeqCst),
                cipher.keys.decrypted.load(Ordering::SeqCst)
            ),
            (1, 0),
            "one data key, never unwrapped: it is cached"
        );

        tokio::time::advance(Duration::from_secs(2)).await;
        let after = cipher.seal(&token("1//c"), ADA).await.expect("seal");
        assert_ne!(after.wrapped_key(), first.wrapped_key(), "a new key past its age");
        assert_eq!(cipher.keys.generated.load(Ordering::SeqCst), 2);
        cipher.open(&first, ADA).await.expect("opens");
        assert_eq!(
            cipher.keys.decrypted.load(Ordering::SeqCst),
            1,
            "the old key's cached unwrap aged out with it"
        );
    }

    #[tokio::test]
    async fn a_sealed_token_opens_for_its_own_grant() {
        let cipher = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = cipher.seal(&token("1//refresh"), ADA).await;
        let opened = match &sealed {
            Ok(s) => cipher.open(s, ADA).await.map(|t| t.expose_secret().to_owned()),
            Err(e) => Err(e.clone()),
        };
        assert_eq!(opened, Ok("1//refresh".to_owned()));
        assert!(sealed.is_ok_and(|s| !s.ciphertext.windows(9).any(|w| w == b"1//refres")));
    }

    #[tokio::test]
    async fn a_ciphertext_copied_to_another_users_row_does_not_open() {
        let cipher = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = cipher.seal(&token("1//ada"), ADA).await.expect("seal");
        assert_eq!(cipher.open(&sealed, BOB).await.err(), Some(CryptoError::Tampered));
        let other_client = Binding {
            client_id: "other.apps",
            ..ADA
        };
        assert_eq!(
            cipher.open(&sealed, other_client).await.err(),
            Some(CryptoError::Tampered)
        );
    }

    #[tokio::test]
    async fn any_flipped_bit_fails_to_open() {
        let cipher = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = cipher.seal(&token("1//ada"), ADA).await.expect("seal");
        for byte in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[byte] ^= 0x01;
            assert_eq!(
                cipher.open(&bad, ADA).await.err(),
                Some(CryptoError::Tampered),
                "byte {byte}"
            );
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 0x80;
        assert_eq!(cipher.open(&bad, ADA).await.err(), Some(CryptoError::Tampered));
        let mut bad = sealed;
        bad.version = 9;
        assert_eq!(
            cipher.open(&bad, ADA).await.err(),
            Some(CryptoError::UnsupportedVersion(9))
        );
    }

    #[tokio::test]
    async fn one_data_key_serves_many_tokens_until_its_use_bound() {
        let limits = KeyCacheLimits {
            max_uses: 3,
            ..KeyCacheLimits::default()
        };
        let cipher = TokenCipher::new(FakeKms::default(), limits);
        let mut nonces = std::collections::HashSet::new();
        for i in 0..7 {
            if let Ok(s) = cipher.seal(&token(&format!("t{i}")), ADA).await {
                nonces.insert(s.nonce);
            }
        }
        assert_eq!(nonces.len(), 7);
        assert_eq!(cipher.key_provider().generated.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn opening_reuses_an_unwrapped_key_instead_of_calling_kms() {
        let sealer = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let mut sealed = Vec::new();
        for i in 0..10 {
            if let Ok(s) = sealer.seal(&token(&format!("t{i}")), ADA).await {
                sealed.push(s);
            }
        }
        let opener = TokenCipher::<_, RefreshToken>::new(FakeKms::default(), KeyCacheLimits::default());
        for s in &sealed {
            assert!(opener.open(s, ADA).await.is_ok());
        }
        assert_eq!(opener.key_provider().decrypted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_under_one_data_key_unwrap_it_once() {
        let sealer = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = sealer.seal(&token("t"), ADA).await.expect("seal");
        let opener = Arc::new(TokenCipher::<_, RefreshToken>::new(
            FakeKms::default(),
            KeyCacheLimits::default(),
        ));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (opener, sealed) = (Arc::clone(&opener), sealed.clone());
                tokio::spawn(async move { opener.open(&sealed, ADA).await.is_ok() })
            })
            .collect();
        for task in tasks {
            assert!(task.await.expect("task"));
        }
        assert_eq!(opener.key_provider().decrypted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_stored_form_round_trips_and_refuses_other_shapes() {
        let cipher = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = cipher.seal(&token("1//ada"), ADA).await.expect("seal");
        let bytes = sealed.to_bytes();
        assert_eq!(SealedToken::from_bytes(&bytes).as_ref(), Ok(&sealed));
        for cut in [0, 1, 3, 3 + sealed.wrapped_key.len() + NONCE_LEN] {
            assert_eq!(
                SealedToken::from_bytes(&bytes[..cut]),
                Err(CryptoError::Malformed),
                "{cut}"
            );
        }
        assert!(!bytes.windows(6).any(|w| w == b"1//ada"));
    }

    #[tokio::test]
    async fn a_sealed_access_token_does_not_open_as_a_refresh_token_nor_back() {
        // One key provider for both: only the purpose in the AAD tells them apart here
        // (KMS's encryption context adds a second wall in production).
        let refresh: TokenCipher<_, RefreshToken> = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let access: TokenCipher<_, AccessToken> = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let sealed = access
            .seal(&AccessToken::new("ya29.a".into()), ADA)
            .await
            .expect("seal");
        assert!(access.open(&sealed, ADA).await.is_ok());
        assert_eq!(refresh.open(&sealed, ADA).await.err(), Some(CryptoError::Tampered));
        let sealed = refresh.seal(&token("1//ada"), ADA).await.expect("seal");
        assert_eq!(access.open(&sealed, ADA).await.err(), Some(CryptoError::Tampered));
    }

    #[tokio::test]
    async fn a_described_token_opens_only_with_the_details_it_was_sealed_with() {
        let access: TokenCipher<_, AccessToken> = TokenCipher::new(FakeKms::default(), KeyCacheLimits::default());
        let token = AccessToken::new("ya29.a".into());
        let sealed = access.seal_described(&token, ADA, b"expires 100").await.expect("seal");
        assert_eq!(sealed.version(), DESCRIBED_FORMAT_VERSION);
        let opened = access.open_described(&sealed, ADA, b"expires 100").await;
        assert_eq!(opened.map(|t| t.expose_secret().to_owned()), Ok("ya29.a".to_owned()));
        // A detail changed beside it, another grant, or no details at all: never opens.
        assert_eq!(
            access.open_described(&sealed, ADA, b"expires 999").await.err(),
            Some(CryptoError::Tampered)
        );
        assert_eq!(
            access.open_described(&sealed, BOB, b"expires 100").await.err(),
            Some(CryptoError::Tampered)
        );
        assert_eq!(
            access.open(&sealed, ADA).await.err(),
            Some(CryptoError::UnsupportedVersion(DESCRIBED_FORMAT_VERSION))
        );
        // A token sealed alone (the old cache format) is not taken for a described one.
        let plain = access.seal(&token, ADA).await.expect("seal");
        assert_eq!(
            access.open_described(&plain, ADA, b"").await.err(),
            Some(CryptoError::UnsupportedVersion(FORMAT_VERSION))
        );
    }

    #[test]
    fn a_token_sealed_alone_keeps_the_additional_data_it_always_had() {
        // Refresh tokens at rest were sealed under this encoding: it must not move.
        let mut expected = b"offline-access/refresh-token".to_vec();
        expected.push(1);
        for field in ["grants", "1001", "web.apps"] {
            expected.extend_from_slice(&(field.len() as u32).to_be_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        assert_eq!(ADA.aad(Purpose::RefreshToken, FORMAT_VERSION, None), expected);
        let described = ADA.aad(Purpose::RefreshToken, DESCRIBED_FORMAT_VERSION, Some(b"d"));
        assert!(described.ends_with(&[0, 0, 0, 1, b'd']));
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = DataKey {
            plaintext: SecretBox::new(Box::new([0x41; 32])),
            wrapped: vec![1, 2],
        };
        assert_eq!(format!("{key:?}"), "DataKey([redacted])");
    }
}
