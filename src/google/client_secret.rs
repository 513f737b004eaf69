//! The OAuth client secret, stored in Secrets Manager exactly as Google's console
//! downloads it (`client_secret_*.json`), and cached with a TTL so a rotation is picked
//! up without a restart.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::GoogleTokenError;
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

/// Which version of the secret: Secrets Manager's staging labels. During a rotation's
/// overlap `AWSCURRENT` is the new JSON as downloaded and `AWSPREVIOUS` the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Current,
    Previous,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
        }
    }
}

/// Where the raw secret string comes from.
pub trait SecretSource: Send + Sync {
    fn fetch(&self, stage: Stage) -> impl Future<Output = Result<SecretString, Upstream>> + Send;
}

/// The client credentials, however they are kept.
pub trait ClientSecrets: Send + Sync {
    /// The credentials to authenticate with now.
    fn current(&self) -> impl Future<Output = Result<Arc<ClientCredentials>, Upstream>> + Send;
    /// Google answered `invalid_client` to `refused`: the credentials to try instead, in
    /// order (none when there is nothing new to try). See [`CachedClientSecret`].
    fn after_refusal(
        &self,
        refused: &ClientCredentials,
    ) -> impl Future<Output = Result<Vec<Arc<ClientCredentials>>, Upstream>> + Send;
    /// Google accepted `creds`: use them from now on.
    fn accepted(&self, creds: &Arc<ClientCredentials>);
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
    async fn fetch(&self, stage: Stage) -> Result<SecretString, Upstream> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage.label())
            .send()
            .await
            .map_err(|e| classify_aws("secretsmanager", &e))?;
        out.secret_string()
            .map(SecretString::from)
            .ok_or_else(|| Upstream::misconfigured("secretsmanager", "secret has no SecretString"))
    }
}

/// How often a process refetches the secret because Google refused it: at most once in
/// this many seconds, however many callers are refused meanwhile.
pub const REFETCH_AFTER_REFUSAL_SECS: u64 = 30;

/// The cache's state: the credentials in use and when they were fetched (Unix seconds),
/// and when a refusal last made it refetch.
#[derive(Debug, Default)]
struct Cached {
    creds: Option<(Arc<ClientCredentials>, u64)>,
    refetched_at: Option<u64>,
    /// What that refetch offered: offered again to callers refused meanwhile.
    offered: Vec<Arc<ClientCredentials>>,
}

/// Caches the parsed credentials for `ttl`. One caller refreshes at a time; the others
/// keep using the previous value until it expires, then wait for the refresh. A clone
/// shares the cache: one per process, whatever uses it.
///
/// A rotation is picked up without waiting for the TTL: when Google answers
/// `invalid_client` ([`ClientSecrets::after_refusal`]) the secret's `AWSCURRENT` is
/// fetched again at once (one caller at a time, at most once per
/// [`REFETCH_AFTER_REFUSAL_SECS`] per process), and `AWSPREVIOUS` is offered after it: an
/// operator who stored a new secret that Google does not take yet loses nothing while the
/// old one still works.
#[derive(Debug, Clone)]
pub struct CachedClientSecret<S, C> {
    source: S,
    clock: C,
    ttl: Duration,
    cached: Arc<RwLock<Cached>>,
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
            .creds
            .as_ref()
            .filter(|(_, fetched)| now < fetched.saturating_add(self.ttl.as_secs()))
            .map(|(creds, _)| Arc::clone(creds))
    }

    fn keep(&self, creds: &Arc<ClientCredentials>) {
        let now = self.clock.now_unix();
        self.cached.write().unwrap_or_else(PoisonError::into_inner).creds = Some((Arc::clone(creds), now));
    }

    async fn fetch(&self, stage: Stage) -> Result<Arc<ClientCredentials>, Upstream> {
        let raw = self.source.fetch(stage).await?;
        Ok(Arc::new(ClientCredentials::from_google_json(raw.expose_secret())?))
    }
}

impl ClientCredentials {
    /// The same client and secret.
    fn same_as(&self, other: &ClientCredentials) -> bool {
        self.client_id == other.client_id && self.client_secret.expose_secret() == other.client_secret.expose_secret()
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
        let creds = self.fetch(Stage::Current).await?;
        self.keep(&creds);
        Ok(creds)
    }

    async fn after_refusal(&self, refused: &ClientCredentials) -> Result<Vec<Arc<ClientCredentials>>, Upstream> {
        let _single_flight = self.refresh.lock().await;
        let now = self.clock.now_unix();
        let (held, refetched_at, offered) = {
            let guard = self.cached.read().unwrap_or_else(PoisonError::into_inner);
            let held = guard.creds.as_ref().map(|(c, _)| Arc::clone(c));
            (held, guard.refetched_at, guard.offered.clone())
        };
        if refetched_at.is_some_and(|at| now < at.saturating_add(REFETCH_AFTER_REFUSAL_SECS)) {
            // Refetched moments ago: what is held now (another caller's find), then what
            // that refetch offered, less what Google refused.
            let mut next: Vec<Arc<ClientCredentials>> = Vec::new();
            for c in held.into_iter().chain(offered) {
                if !c.same_as(refused) && next.iter().all(|n| !n.same_as(&c)) {
                    next.push(c);
                }
            }
            return Ok(next);
        }
        let current = self.fetch(Stage::Current).await?;
        self.keep(&current);
        // The old secret, kept by Secrets Manager when the new one was stored: absent
        // before the first rotation, which is no fault.
        let previous = match self.fetch(Stage::Previous).await {
            Ok(previous) => Some(previous),
            Err(e) => {
                tracing::debug!(error = %e, "no AWSPREVIOUS client secret to fall back on");
                None
            }
        };
        let mut next = Vec::new();
        if !current.same_as(refused) {
            next.push(current);
        }
        if let Some(previous) = previous.filter(|p| !p.same_as(refused) && next.iter().all(|n| !n.same_as(p))) {
            next.push(previous);
        }
        {
            let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
            cached.refetched_at = Some(now);
            cached.offered.clone_from(&next);
        }
        tracing::warn!(
            alternatives = next.len(),
            "Google refused the client secret (invalid_client): the secret was fetched again"
        );
        Ok(next)
    }

    fn accepted(&self, creds: &Arc<ClientCredentials>) {
        let held = self.cached.read().unwrap_or_else(PoisonError::into_inner).creds.clone();
        if held.is_none_or(|(held, _)| !held.same_as(creds)) {
            self.keep(creds);
        }
    }
}

/// Makes `call`, which authenticates as our client, with the credentials the cache holds.
/// Should Google answer `invalid_client`, the call is made again with each credential
/// [`ClientSecrets::after_refusal`] offers (the secret fetched again, then the previous
/// one), and the first Google takes is kept for every later call. Google authenticates
/// the client before it looks at the code or token (RFC 6749 §4.1.3), so a refused call
/// spent nothing. Returns the answer and the credentials it was made with.
pub async fn as_client<S, T, F, Fut>(secrets: &S, call: F) -> Result<(T, Arc<ClientCredentials>), GoogleTokenError>
where
    S: ClientSecrets,
    F: Fn(Arc<ClientCredentials>) -> Fut,
    Fut: Future<Output = Result<T, GoogleTokenError>>,
{
    let creds = secrets.current().await?;
    let refused = match call(Arc::clone(&creds)).await {
        Ok(answer) => return Ok((answer, creds)),
        Err(e) if e.is_invalid_client() => e,
        Err(e) => return Err(e),
    };
    for next in secrets.after_refusal(&creds).await? {
        match call(Arc::clone(&next)).await {
            Err(e) if e.is_invalid_client() => continue,
            answered => {
                // Authenticated: whatever Google said of the code or token, the client
                // is ours.
                secrets.accepted(&next);
                return answered.map(|answer| (answer, next));
            }
        }
    }
    Err(refused)
}

/// Refreshes `refresh_token` as our client ([`as_client`]: a rotated secret is taken up
/// at Google's first refusal), at `token_uri_override` or the secret file's token
/// endpoint. The one refresh the job, the access-token function and a parked sign-in make.
pub async fn refresh_as_client<S: ClientSecrets, E: super::TokenEndpoint>(
    secrets: &S,
    endpoint: &E,
    token_uri_override: Option<&str>,
    refresh_token: &crate::domain::RefreshToken,
) -> Result<super::Tokens, GoogleTokenError> {
    let refreshed = as_client(secrets, |credentials| async move {
        endpoint
            .refresh(super::TokenRefresh {
                token_uri: credentials.token_uri(token_uri_override),
                credentials: &credentials,
                refresh_token,
            })
            .await
    });
    refreshed.await.map(|(tokens, _)| tokens)
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
        async fn fetch(&self, _: Stage) -> Result<SecretString, Upstream> {
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

    /// A secret whose stages a test sets, counting fetches.
    #[derive(Default)]
    struct Staged {
        current: std::sync::Mutex<String>,
        previous: std::sync::Mutex<Option<String>>,
        fetches: AtomicUsize,
    }

    fn json(secret: &str) -> String {
        format!(r#"{{"web":{{"client_id":"id.apps","client_secret":"{secret}"}}}}"#)
    }

    impl SecretSource for Arc<Staged> {
        async fn fetch(&self, stage: Stage) -> Result<SecretString, Upstream> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let raw = match stage {
                Stage::Current => Some(json(&self.current.lock().expect("lock"))),
                Stage::Previous => self.previous.lock().expect("lock").as_deref().map(json),
            };
            raw.map(SecretString::from)
                .ok_or_else(|| Upstream::misconfigured("secretsmanager", "ResourceNotFoundException"))
        }
    }

    fn secrets(list: &[Arc<ClientCredentials>]) -> Vec<String> {
        list.iter()
            .map(|c| c.client_secret().expose_secret().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_refused_secret_is_fetched_again_at_once_then_the_previous_is_offered() {
        let source = Arc::new(Staged::default());
        *source.current.lock().expect("lock") = "old".into();
        let clock = ManualClock::at(1_000);
        let cache = CachedClientSecret::new(Arc::clone(&source), clock.clone(), Duration::from_secs(300));
        let old = cache.current().await.expect("current");

        // Rotated: the new one is current, the old one previous. Long before the TTL.
        *source.current.lock().expect("lock") = "new".into();
        *source.previous.lock().expect("lock") = Some("old".into());
        clock.advance(Duration::from_secs(5));
        let next = cache.after_refusal(&old).await.expect("refetched");
        assert_eq!(secrets(&next), ["new"], "the refused one is never offered again");
        assert_eq!(secrets(&[cache.current().await.expect("current")]), ["new"]);

        // Others refused with the old one meanwhile are given what was found, no fetch.
        let fetches = source.fetches.load(Ordering::SeqCst);
        assert_eq!(secrets(&cache.after_refusal(&old).await.expect("held")), ["new"]);
        assert_eq!(source.fetches.load(Ordering::SeqCst), fetches);

        // The new one refused too, within 30 s: nothing is fetched, nothing offered.
        let new = cache.current().await.expect("current");
        clock.advance(Duration::from_secs(REFETCH_AFTER_REFUSAL_SECS - 1));
        assert!(cache.after_refusal(&new).await.expect("limited").is_empty());
        assert_eq!(source.fetches.load(Ordering::SeqCst), fetches);

        // After 30 s: fetched again; the current is still the refused one, so the previous
        // is offered, and once Google takes it, it is what everyone uses.
        clock.advance(Duration::from_secs(1));
        let next = cache.after_refusal(&new).await.expect("refetched");
        assert_eq!(secrets(&next), ["old"]);
        cache.accepted(&next[0]);
        assert_eq!(secrets(&[cache.current().await.expect("current")]), ["old"]);
    }

    #[tokio::test]
    async fn without_a_previous_version_the_refetch_offers_only_what_changed() {
        let source = Arc::new(Staged::default());
        *source.current.lock().expect("lock") = "only".into();
        let cache = CachedClientSecret::new(Arc::clone(&source), ManualClock::at(1_000), Duration::from_secs(300));
        let only = cache.current().await.expect("current");
        let next = cache.after_refusal(&only).await.expect("no previous is no fault");
        assert!(next.is_empty(), "{:?}", secrets(&next));
    }

    #[tokio::test]
    async fn concurrent_refusals_fetch_the_secret_once() {
        let source = Arc::new(Staged::default());
        *source.current.lock().expect("lock") = "old".into();
        let cache = CachedClientSecret::new(Arc::clone(&source), ManualClock::at(1_000), Duration::from_secs(300));
        let old = cache.current().await.expect("current");
        *source.current.lock().expect("lock") = "new".into();
        let before = source.fetches.load(Ordering::SeqCst);
        let all = futures_util::future::join_all((0..8).map(|_| cache.after_refusal(&old))).await;
        for next in all {
            assert_eq!(secrets(&next.expect("next")), ["new"]);
        }
        assert_eq!(
            source.fetches.load(Ordering::SeqCst) - before,
            2,
            "AWSCURRENT and AWSPREVIOUS, once"
        );
    }
}
