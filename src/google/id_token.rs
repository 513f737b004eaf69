//! Verification of Google ID tokens, as Google documents it
//! (<https://developers.google.com/identity/sign-in/android/backend-auth>):
//! RS256 only, the key chosen by `kid` from Google's JWKS, `iss` either spelling, `aud`
//! our web client id, `azp` on an allow-list when one is set, `exp`/`iat` against an
//! injectable clock with a small leeway.
//! The keys come from [`super::keys`]' cache.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use super::keys::{HttpJwksFetcher, Jwks, JwksFetcher, parse_jwks, parse_max_age};
use super::keys::{KeyCache, KeyMiss, parse_header, signature_only};
use crate::clock::Clock;
use crate::domain::{Email, GoogleSubject, Profile};
use crate::upstream::Upstream;

/// The two spellings Google uses for its issuer.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// A verified identity: the user's stable id and the profile claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdToken {
    pub sub: GoogleSubject,
    pub email_verified: bool,
    pub profile: Profile,
}

/// Why an ID token was refused. The variants are for logs; the client sees only
/// `invalid_id_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("ID token is not a well-formed JWT")]
    Malformed,
    #[error("ID token algorithm is not RS256")]
    UnsupportedAlgorithm,
    #[error("ID token has no kid or one that is not among Google's current keys")]
    UnknownKey,
    #[error("ID token signature does not verify")]
    BadSignature,
    #[error("ID token issuer is not Google")]
    WrongIssuer,
    #[error("ID token audience is not our client id")]
    WrongAudience,
    #[error("ID token azp is not an allowed client id")]
    AzpNotAllowed,
    #[error("ID token has expired")]
    Expired,
    #[error("ID token was issued in the future")]
    IssuedInFuture,
    #[error("ID token sub is not a valid Google user id")]
    BadSubject,
    #[error("the token endpoint returned no ID token (was the openid scope requested?)")]
    Missing,
    #[error(transparent)]
    KeysUnavailable(#[from] Upstream),
}

/// Verifies a Google ID token for a client id.
pub trait VerifyIdToken: Send + Sync {
    fn verify(
        &self,
        token: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<VerifiedIdToken, IdTokenError>> + Send;

    /// Verifies as of `at` (Unix seconds) rather than now: a parked sign-in's ID token
    /// was valid when Google sent it, and is checked as of then.
    fn verify_as_of(
        &self,
        token: &str,
        client_id: &str,
        at: u64,
    ) -> impl Future<Output = Result<VerifiedIdToken, IdTokenError>> + Send;

    /// Loads the signing keys ahead of the first request (during Lambda init).
    fn prefetch(&self) -> impl Future<Output = Result<(), IdTokenError>> + Send;
}

/// Google's ID-token verifier with its JWKS cache.
pub struct GoogleIdTokenVerifier<F, C> {
    keys: Arc<KeyCache<F, C>>,
    allowed_azp: Vec<String>,
    leeway: u64,
}

/// A clone shares the key cache: one per process, whatever verifies ID tokens.
impl<F, C> Clone for GoogleIdTokenVerifier<F, C> {
    fn clone(&self) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            allowed_azp: self.allowed_azp.clone(),
            leeway: self.leeway,
        }
    }
}

impl<F, C> std::fmt::Debug for GoogleIdTokenVerifier<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleIdTokenVerifier")
            .field("allowed_azp", &self.allowed_azp)
            .finish_non_exhaustive()
    }
}

impl<F: JwksFetcher, C: Clock> GoogleIdTokenVerifier<F, C> {
    pub fn new(fetcher: F, clock: C, allowed_azp: Vec<String>, leeway: Duration, min_refetch: Duration) -> Self {
        Self {
            keys: Arc::new(KeyCache::new(fetcher, clock, min_refetch)),
            allowed_azp,
            leeway: leeway.as_secs(),
        }
    }

    fn check_claims(&self, claims: Claims, client_id: &str, now: u64) -> Result<VerifiedIdToken, IdTokenError> {
        if !GOOGLE_ISSUERS.contains(&claims.iss.as_str()) {
            return Err(IdTokenError::WrongIssuer);
        }
        let audience_ok = match &claims.aud {
            Audience::One(aud) => aud == client_id,
            Audience::Many(auds) => auds.iter().any(|a| a == client_id),
        };
        if !audience_ok {
            return Err(IdTokenError::WrongAudience);
        }
        if !self.allowed_azp.is_empty() {
            // Google sets azp to the client that asked for the code (the Android or iOS
            // client); a token without one was issued to the web client itself.
            let azp = claims.azp.as_deref().unwrap_or(client_id);
            if azp != client_id && !self.allowed_azp.iter().any(|a| a == azp) {
                return Err(IdTokenError::AzpNotAllowed);
            }
        }
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(IdTokenError::Expired);
        }
        if claims.iat > now.saturating_add(self.leeway) {
            return Err(IdTokenError::IssuedInFuture);
        }
        let sub = GoogleSubject::parse(&claims.sub).map_err(|_| IdTokenError::BadSubject)?;
        let email_verified = claims.email_verified.is_some_and(|v| v.0);
        Ok(VerifiedIdToken {
            sub,
            email_verified,
            profile: Profile {
                // An unverified address proves nothing about who signed in.
                email: claims.email.filter(|_| email_verified).map(Email::new),
                name: claims.name,
                given_name: claims.given_name,
                family_name: claims.family_name,
                picture: claims.picture,
                locale: claims.locale,
            },
        })
    }
}

impl<F: JwksFetcher, C: Clock> VerifyIdToken for GoogleIdTokenVerifier<F, C> {
    async fn verify(&self, token: &str, client_id: &str) -> Result<VerifiedIdToken, IdTokenError> {
        self.verify_as_of(token, client_id, self.keys.clock().now_unix()).await
    }

    async fn verify_as_of(&self, token: &str, client_id: &str, at: u64) -> Result<VerifiedIdToken, IdTokenError> {
        let header = parse_header(token).ok_or(IdTokenError::Malformed)?;
        if header.alg != "RS256" {
            return Err(IdTokenError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(IdTokenError::UnknownKey)?;
        let key = self.keys.key_for(&kid).await.map_err(|miss| match miss {
            KeyMiss::Unknown => IdTokenError::UnknownKey,
            KeyMiss::Unavailable(e) => IdTokenError::KeysUnavailable(e),
        })?;

        // jsonwebtoken checks the signature; we check every claim ourselves against our
        // clock, so the library's wall-clock checks are off.
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &signature_only()).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => IdTokenError::UnsupportedAlgorithm,
            _ => IdTokenError::Malformed,
        })?;
        self.check_claims(claims.claims, client_id, at)
    }

    async fn prefetch(&self) -> Result<(), IdTokenError> {
        self.keys.prefetch().await.map_err(IdTokenError::KeysUnavailable)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// `email_verified` is a boolean, but older Google tokens sent the string `"true"`.
struct Verified(bool);

impl<'de> Deserialize<'de> for Verified {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        Ok(Self(match Raw::deserialize(d)? {
            Raw::Bool(b) => b,
            Raw::Text(s) => s.eq_ignore_ascii_case("true"),
        }))
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    azp: Option<String>,
    sub: String,
    exp: u64,
    iat: u64,
    email: Option<String>,
    email_verified: Option<Verified>,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    picture: Option<String>,
    locale: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use google_emulator::{Forgery, SigningKey};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const CLIENT: &str = "web.apps.googleusercontent.com";
    const NOW: u64 = 1_800_000_000;

    /// A JWKS that counts its fetches and lets the test change its keys.
    #[derive(Clone)]
    struct FakeJwks(Arc<(Mutex<Vec<serde_json::Value>>, AtomicUsize)>);

    impl FakeJwks {
        fn with(keys: &[&SigningKey]) -> Self {
            Self(Arc::new((
                Mutex::new(keys.iter().map(|k| k.jwk()).collect()),
                AtomicUsize::new(0),
            )))
        }
        fn set(&self, keys: &[&SigningKey]) {
            self.set_raw(keys.iter().map(|k| k.jwk()).collect());
        }
        fn set_raw(&self, keys: Vec<serde_json::Value>) {
            *self.0.0.lock().expect("keys") = keys;
        }
        fn fetches(&self) -> usize {
            self.0.1.load(Ordering::SeqCst)
        }
    }

    impl JwksFetcher for FakeJwks {
        async fn fetch(&self) -> Result<Jwks, Upstream> {
            self.0.1.fetch_add(1, Ordering::SeqCst);
            // Let concurrent callers pile up behind the single flight.
            tokio::task::yield_now().await;
            let keys = json!({"keys": *self.0.0.lock().expect("keys")});
            Ok(Jwks {
                keys: parse_jwks(&keys),
                max_age: Some(Duration::from_secs(600)),
            })
        }
    }

    fn verifier(jwks: &FakeJwks, clock: &ManualClock, azp: &[&str]) -> GoogleIdTokenVerifier<FakeJwks, ManualClock> {
        GoogleIdTokenVerifier::new(
            jwks.clone(),
            clock.clone(),
            azp.iter().map(|s| (*s).to_owned()).collect(),
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "iss": "https://accounts.google.com", "aud": CLIENT, "azp": "android.apps.googleusercontent.com",
            "sub": "110169484474386276334", "email": "ada@example.com", "email_verified": true,
            "name": "Ada Lovelace", "picture": "https://lh3.googleusercontent.com/a/x", "locale": "en",
            "iat": NOW, "exp": NOW + 3_600,
        });
        if let (Some(c), Some(o)) = (c.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(kid.to_owned()).expect("test key")
    }

    #[test]
    fn one_unusable_key_does_not_hide_the_others() {
        let good = key("good").jwk();
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "bad-n", "n": 5, "e": "AQAB"},
            good,
            "not a key",
            {"kty": "RSA", "kid": "bad-base64", "n": "%%%", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
        ]});
        let keys = parse_jwks(&document);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
    }

    #[tokio::test]
    async fn a_refetch_that_fails_or_brings_no_usable_key_keeps_the_last_good_set() {
        let k = key("k1");
        let (jwks, clock) = (FakeJwks::with(&[&k]), ManualClock::at(NOW));
        let verifier = verifier(&jwks, &clock, &[]);
        let token = |at: u64| {
            k.sign(&claims(json!({"iat": at, "exp": at + 3_600})), Forgery::None)
                .expect("sign")
        };
        assert!(verifier.verify(&token(NOW), CLIENT).await.is_ok());

        // The cache time is up, and Google's answer holds no key this code can use.
        clock.advance(Duration::from_secs(601));
        jwks.set_raw(vec![json!({"kty": "RSA", "kid": "k1", "n": 5})]);
        let later = NOW + 601;
        assert!(
            verifier.verify(&token(later), CLIENT).await.is_ok(),
            "the last good key still verifies"
        );
        assert!(verifier.verify(&token(later), CLIENT).await.is_ok());
        assert_eq!(jwks.fetches(), 2, "a broken key set is not refetched on every request");

        // A kid the last good set never had cannot be checked: keys unavailable, not a bad token.
        let other = key("k2");
        let unknown = other
            .sign(&claims(json!({"iat": later, "exp": later + 3_600})), Forgery::None)
            .expect("sign");
        assert!(matches!(
            verifier.verify(&unknown, CLIENT).await,
            Err(IdTokenError::KeysUnavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_good_token_verifies_and_yields_the_profile() {
        let k = key("k1");
        let (jwks, clock) = (FakeJwks::with(&[&k]), ManualClock::at(NOW));
        let token = k.sign(&claims(json!({})), Forgery::None).expect("sign");
        let verified = verifier(&jwks, &clock, &[])
            .verify(&token, CLIENT)
            .await
            .expect("verifies");
        assert_eq!(verified.sub.as_str(), "110169484474386276334");
        assert_eq!(
            verified.profile.email.as_ref().map(Email::as_str),
            Some("ada@example.com")
        );
        assert_eq!(verified.profile.name.as_deref(), Some("Ada Lovelace"));
    }

    #[tokio::test]
    async fn expiry_and_issue_time_are_checked_against_the_injected_clock_with_leeway() {
        let k = key("k1");
        let jwks = FakeJwks::with(&[&k]);
        let token = k.sign(&claims(json!({})), Forgery::None).expect("sign");
        let at = |t: u64| ManualClock::at(t);
        let v = |clock: ManualClock| verifier(&jwks, &clock, &[]);
        assert!(
            v(at(NOW + 3_600 + 59)).verify(&token, CLIENT).await.is_ok(),
            "within leeway"
        );
        assert_eq!(
            v(at(NOW + 3_600 + 60)).verify(&token, CLIENT).await.err(),
            Some(IdTokenError::Expired)
        );
        assert!(v(at(NOW - 60)).verify(&token, CLIENT).await.is_ok(), "a little skew");
        assert_eq!(
            v(at(NOW - 61)).verify(&token, CLIENT).await.err(),
            Some(IdTokenError::IssuedInFuture)
        );
    }

    #[tokio::test]
    async fn a_token_verified_as_of_its_receipt_passes_after_it_expired_and_nothing_else_changes() {
        let k = key("k1");
        let jwks = FakeJwks::with(&[&k]);
        let token = k.sign(&claims(json!({})), Forgery::None).expect("sign");
        let days_later = ManualClock::at(NOW + 3 * 86_400);
        let v = verifier(&jwks, &days_later, &[]);
        assert_eq!(v.verify(&token, CLIENT).await.err(), Some(IdTokenError::Expired));
        assert!(
            v.verify_as_of(&token, CLIENT, NOW + 10).await.is_ok(),
            "as of its receipt"
        );
        assert_eq!(
            v.verify_as_of(&token, "another-client", NOW + 10).await.err(),
            Some(IdTokenError::WrongAudience)
        );
        let forged = k.sign(&claims(json!({})), Forgery::FlippedSignatureBit).expect("sign");
        assert_eq!(
            v.verify_as_of(&forged, CLIENT, NOW + 10).await.err(),
            Some(IdTokenError::BadSignature)
        );
    }

    #[tokio::test]
    async fn each_claim_and_forgery_has_its_own_refusal() {
        let k = key("k1");
        let (jwks, clock) = (FakeJwks::with(&[&k]), ManualClock::at(NOW));
        let v = verifier(&jwks, &clock, &["android.apps.googleusercontent.com"]);
        let cases = [
            (
                json!({"iss": "https://evil.example"}),
                Forgery::None,
                IdTokenError::WrongIssuer,
            ),
            (json!({"aud": "other"}), Forgery::None, IdTokenError::WrongAudience),
            (
                json!({"aud": ["other", "x"]}),
                Forgery::None,
                IdTokenError::WrongAudience,
            ),
            (
                json!({"azp": "stranger.apps"}),
                Forgery::None,
                IdTokenError::AzpNotAllowed,
            ),
            (json!({"sub": "has space"}), Forgery::None, IdTokenError::BadSubject),
            (json!({}), Forgery::AlgNone, IdTokenError::UnsupportedAlgorithm),
            (
                json!({}),
                Forgery::Hs256WithPublicKey,
                IdTokenError::UnsupportedAlgorithm,
            ),
            (json!({}), Forgery::FlippedSignatureBit, IdTokenError::BadSignature),
            (json!({}), Forgery::UnknownKid, IdTokenError::UnknownKey),
        ];
        for (overrides, forgery, want) in cases {
            let token = k.sign(&claims(overrides.clone()), forgery).expect("sign");
            assert_eq!(
                v.verify(&token, CLIENT).await.err(),
                Some(want.clone()),
                "{overrides} {forgery:?}"
            );
        }
        assert_eq!(v.verify("not-a-jwt", CLIENT).await.err(), Some(IdTokenError::Malformed));
        let unverified = k
            .sign(&claims(json!({"email_verified": "false"})), Forgery::None)
            .expect("sign");
        let verified = v.verify(&unverified, CLIENT).await.expect("still a valid sign-in");
        assert!(verified.profile.email.is_none() && !verified.email_verified);
    }

    #[tokio::test]
    async fn concurrent_tokens_with_a_new_kid_cause_one_single_flight_refetch() {
        let (old, new) = (key("old"), key("new"));
        let (jwks, clock) = (FakeJwks::with(&[&old]), ManualClock::at(NOW));
        let v = verifier(&jwks, &clock, &[]);
        v.prefetch().await.expect("prefetch");
        jwks.set(&[&old, &new]);
        let token = new.sign(&claims(json!({})), Forgery::None).expect("sign");
        let results = futures_join(&v, &token).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(jwks.fetches(), 2, "the prefetch and one refetch");
    }

    async fn futures_join(
        v: &GoogleIdTokenVerifier<FakeJwks, ManualClock>,
        token: &str,
    ) -> Vec<Result<VerifiedIdToken, IdTokenError>> {
        let (a, b, c, d) = tokio::join!(
            v.verify(token, CLIENT),
            v.verify(token, CLIENT),
            v.verify(token, CLIENT),
            v.verify(token, CLIENT)
        );
        vec![a, b, c, d]
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval_and_the_cache_expires_with_max_age() {
        let k = key("k1");
        let (jwks, clock) = (FakeJwks::with(&[&k]), ManualClock::at(NOW));
        let v = verifier(&jwks, &clock, &[]);
        let forged = k.sign(&claims(json!({})), Forgery::UnknownKid).expect("sign");
        for _ in 0..5 {
            assert_eq!(v.verify(&forged, CLIENT).await.err(), Some(IdTokenError::UnknownKey));
        }
        assert_eq!(jwks.fetches(), 2, "first load, then one refetch for the unknown kid");
        clock.advance(Duration::from_secs(30));
        assert_eq!(v.verify(&forged, CLIENT).await.err(), Some(IdTokenError::UnknownKey));
        assert_eq!(jwks.fetches(), 3, "the interval passed");

        let good = k
            .sign(&claims(json!({"iat": NOW + 500, "exp": NOW + 4_000})), Forgery::None)
            .expect("sign");
        clock.set(NOW + 500);
        assert!(v.verify(&good, CLIENT).await.is_ok());
        assert_eq!(jwks.fetches(), 3, "cached for max-age");
        clock.set(NOW + 30 + 600);
        assert!(v.verify(&good, CLIENT).await.is_ok());
        assert_eq!(jwks.fetches(), 4, "refetched once max-age passed");
    }

    #[test]
    fn max_age_is_read_from_googles_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=19845, must-revalidate, no-transform"),
            Some(Duration::from_secs(19_845))
        );
        assert_eq!(parse_max_age("no-cache"), None);
    }

    #[test]
    fn a_header_with_alg_none_is_parsed_so_it_can_be_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let parsed = parse_header(&format!("{header}.e30.")).map(|h| h.alg);
        assert_eq!(parsed.as_deref(), Some("none"));
        assert!(parse_header("only.two").is_none());
    }
}
