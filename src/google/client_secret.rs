//! The OAuth client secret, stored in Secrets Manager exactly as Google's console
//! downloads it (`client_secret_*.json`), and cached with a TTL so a rotation is picked
//! up without a restart.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::clock::Clock;
use crate::upstream::{Upstream, classify_aws};

/// The web client's id and secret, and the token endpoint the file names.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    client_secret: SecretString,
    pub token_uri: Option<String>,
}

impl ClientCredentials {
    pub fn new(client_id: String, client_secret: SecretString, token_uri: Option<String>) -> Self {
        Self {
            client_id,
            client_secret,
            token_uri,
        }
    }

    /// The token endpoint to use: the configured override (`GOOGLE_TOKEN_URI`), else the
    /// file's `token_uri`, else Google's.
    pub fn token_uri<'a>(&'a self, configured: Option<&'a str>) -> &'a str {
        configured
            .or(self.token_uri.as_deref())
            .unwrap_or(super::DEFAULT_TOKEN_URI)
    }

    pub fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// Parses Google's downloaded JSON: `{"web": {"client_id", "client_secret",
    /// "token_uri", ...}}` (an `"installed"` client file has the same shape).
    pub fn from_google_json(raw: &str) -> Result<Self, Upstream> {
        #[derive(Deserialize)]
        struct File {
            web: Option<Inner>,
            installed: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            client_id: String,
            client_secret: String,
            token_uri: Option<String>,
        }
        let malformed = || {
            Upstream::misconfigured(
                "secretsmanager",
                "client secret is not Google's client_secret JSON (want {\"web\": {\"client_id\", \"client_secret\"}})",
            )
        };
        let file: File = serde_json::from_str(raw).map_err(|_| malformed())?;
        let inner = file.web.or(file.installed).ok_or_else(malformed)?;
        if inner.client_id.trim().is_empty() || inner.client_secret.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            client_id: inner.client_id,
            client_secret: SecretString::from(inner.client_secret),
            token_uri: inner.token_uri.filter(|u| !u.is_empty()),
        })
    }
}

/// Where the raw secret string comes from.
pub trait SecretSource: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<SecretString, Upstream>> + Send;
}

/// The client credentials, however they are kept.
pub trait ClientSecrets: Send + Sync {
    fn current(&self) -> impl Future<Output = Result<Arc<ClientCredentials>, Upstream>> + Send;
}

/// AWS Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        Self { client, secret_id }
    }
}

impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<SecretString, Upstream> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| classify_aws("secretsmanager", &e))?;
        out.secret_string()
            .map(SecretString::from)
            .ok_or_else(|| Upstream::misconfigured("secretsmanager", "secret has no SecretString"))
    }
}

/// The credentials and when they were fetched (Unix seconds).
type Fetched = Option<(Arc<ClientCredentials>, u64)>;

/// Caches the parsed credentials for `ttl`. One caller refreshes at a time; the others
/// keep using the previous value until it expires, then wait for the refresh. A clone
/// shares the cache: one per process, whatever uses it.
#[derive(Debug, Clone)]
pub struct CachedClientSecret<S, C> {
    source: S,
    clock: C,
    ttl: Duration,
    cached: Arc<RwLock<Fetched>>,
    refresh: Arc<tokio::sync::Mutex<()>>,
}

impl<S: SecretSource, C: Clock> CachedClientSecret<S, C> {
    pub fn new(source: S, clock: C, ttl: Duration) -> Self {
        Self {
            source,
            clock,
            ttl,
            cached: Arc::default(),
            refresh: Arc::default(),
        }
    }

    fn fresh(&self) -> Option<Arc<ClientCredentials>> {
        let now = self.clock.now_unix();
        let guard = self.cached.read().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .filter(|(_, fetched)| now < fetched.saturating_add(self.ttl.as_secs()))
            .map(|(creds, _)| Arc::clone(creds))
    }
}

impl<S: SecretSource, C: Clock> ClientSecrets for CachedClientSecret<S, C> {
    async fn current(&self) -> Result<Arc<ClientCredentials>, Upstream> {
        if let Some(creds) = self.fresh() {
            return Ok(creds);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(creds) = self.fresh() {
            return Ok(creds);
        }
        let raw = self.source.fetch().await?;
        let creds = Arc::new(ClientCredentials::from_google_json(raw.expose_secret())?);
        let now = self.clock.now_unix();
        *self.cached.write().unwrap_or_else(PoisonError::into_inner) = Some((Arc::clone(&creds), now));
        Ok(creds)
    }
}

/// The client-secret reader's invariants over arbitrary bytes, for the fuzz target
/// (`fuzz/`) and the generated-input test: it never panics, accepted credentials have a
/// client id and a secret, and a refusal is a misconfiguration whose message quotes
/// nothing of the secret string. Says whether the input was accepted.
#[doc(hidden)]
pub fn check_secret_invariants(data: &[u8]) -> bool {
    let Ok(raw) = std::str::from_utf8(data) else {
        return false; // Secrets Manager's SecretString is text.
    };
    match ClientCredentials::from_google_json(raw) {
        Ok(credentials) => {
            assert!(!credentials.client_id.trim().is_empty());
            assert!(!credentials.client_secret().expose_secret().is_empty());
            assert!(credentials.token_uri.as_deref().is_none_or(|u| !u.is_empty()));
            true
        }
        Err(e) => {
            // Our configuration, never a transient fault; one fixed message, whatever the
            // input: nothing of it is quoted.
            assert!(matches!(e, Upstream::Misconfigured { .. }), "{e}");
            let fixed = ClientCredentials::from_google_json("").err().map(|f| f.to_string());
            assert_eq!(Some(e.to_string()), fixed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_secret_reader_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("client_secret", check_secret_invariants);
    }

    struct Rotating(AtomicUsize);

    impl SecretSource for Rotating {
        async fn fetch(&self) -> Result<SecretString, Upstream> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(SecretString::from(format!(
                r#"{{"web":{{"client_id":"id.apps","client_secret":"s{n}","token_uri":"http://t"}}}}"#
            )))
        }
    }

    #[test]
    fn parses_googles_downloaded_json() {
        let creds = ClientCredentials::from_google_json(
            r#"{"web":{"client_id":"1.apps.googleusercontent.com","project_id":"p","auth_uri":"https://accounts.google.com/o/oauth2/auth","token_uri":"https://oauth2.googleapis.com/token","client_secret":"GOCSPX-x"}}"#,
        );
        let creds = creds.map(|c| (c.client_id, c.token_uri));
        assert_eq!(
            creds,
            Ok((
                "1.apps.googleusercontent.com".into(),
                Some("https://oauth2.googleapis.com/token".into())
            ))
        );
    }

    #[test]
    fn rejects_other_json_without_echoing_it() {
        let err = ClientCredentials::from_google_json(r#"{"client_secret":"GOCSPX-leak"}"#).err();
        assert!(err.is_some_and(|e| !e.to_string().contains("GOCSPX-leak")));
    }

    #[tokio::test]
    async fn a_rotated_secret_is_used_after_the_ttl() {
        let clock = ManualClock::at(1_000);
        let cache = CachedClientSecret::new(Rotating(AtomicUsize::new(0)), clock.clone(), Duration::from_secs(300));
        let first = cache
            .current()
            .await
            .map(|c| c.client_secret().expose_secret().to_owned());
        clock.advance(Duration::from_secs(299));
        let cached = cache
            .current()
            .await
            .map(|c| c.client_secret().expose_secret().to_owned());
        clock.advance(Duration::from_secs(1));
        let rotated = cache
            .current()
            .await
            .map(|c| c.client_secret().expose_secret().to_owned());
        assert_eq!(
            (first, cached, rotated),
            (Ok("s0".into()), Ok("s0".into()), Ok("s1".into()))
        );
    }
}
