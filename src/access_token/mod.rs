//! Access tokens for the customer's backend (DESIGN §11): the stored grants made usable
//! for any Google API the user granted. It knows nothing of Lambda; the `access-token`
//! function is a thin wrapper ([`crate::lambda::invoke`]), and a Rust service that embeds
//! this crate calls [`AccessTokens::access_token`] itself.
//!
//! 1. Read the grant and its cached access token together (one round trip's wait).
//!    Unknown, unusable, or lacking a requested scope: answer at once, no Google call.
//! 2. A cached token with at least `min_ttl` left is served as it is.
//! 3. Otherwise one caller refreshes: it takes the grant's lease (the offline job's, so
//!    the two never refresh one grant at the same time), refreshes, and caches the token
//!    sealed under its own purpose — a write that also ends the lease when the refresh
//!    changed nothing on the grant (three DynamoDB requests in all); otherwise it records
//!    the change on the grant as it lets go. Everyone else waits a bounded time and reads
//!    its token.
//! 4. `invalid_grant` revokes the grant only when a re-read shows the token we used is
//!    still the stored one; if a sign-in replaced it, the new one is tried.
//! 5. A per-grant floor keeps a user-facing caller from spending Google's quota: a forced
//!    refresh no sooner than `force_refresh_floor` after the last one, and after a failed
//!    refresh, no new attempt within the floor.

use std::time::Duration;

use tokio::time::Instant;

use crate::clock::Clock;
use crate::crypto::{Binding, TokenCipher};
use crate::domain::{AccessToken, GoogleSubject, RefreshToken, Scopes};
use crate::google::ClientSecrets;
use crate::ports::Ports;
use crate::store::{AccessStore, CacheEntry, CachedToken, Grant, RefreshLease, StoreError, random_owner};
use crate::upstream::Upstream;

mod held_off;
mod policy;

pub use held_off::HeldOff;
mod refresh;

use policy::{floor, usable};

/// The most `min_ttl` a caller may ask for: a fresh Google token lives 3599 s, so any
/// request can be met by one refresh.
pub const MAX_MIN_TTL: Duration = Duration::from_secs(3_000);
/// The `min_ttl` of a request that names none.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(300);

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub sub: GoogleSubject,
    /// The token must have at least this long left (at most [`MAX_MIN_TTL`]).
    pub min_ttl: Duration,
    /// The scopes the caller needs; each must have been granted.
    pub scopes: Scopes,
    /// Refresh even if the cached token would do (no sooner than the per-grant floor).
    pub force_refresh: bool,
}

/// A token for the caller.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: AccessToken,
    /// Unix seconds.
    pub expires_at: u64,
    pub scopes: Scopes,
    /// When the grant's time-based access ends (Unix seconds); `None`: lasting access.
    pub refresh_expires_at: Option<u64>,
}

/// Why no token was issued. Every case is an answer the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no grant is stored for this user")]
    GrantNotFound,
    /// Revoked, expired, or holding no refresh token: the user must sign in again.
    #[error("the grant cannot be used ({reason}): the user must authorize again")]
    ReauthorizationRequired {
        reason: String,
        /// For a grant Google revoked: what most likely caused it.
        likely_cause: Option<String>,
    },
    /// Google disabled the account (Cross-Account Protection): no token until it is
    /// enabled again.
    #[error("Google disabled this account")]
    Suspended,
    #[error("the user did not grant every requested scope")]
    ScopeNotGranted { missing: Vec<String> },
    #[error("a forced refresh came too soon after the last refresh")]
    RefreshBackoff { retry_after: Duration },
    #[error("Google or AWS is unavailable: {cause}")]
    Unavailable { retry_after: Duration, cause: String },
    #[error("the service is misconfigured: {0}")]
    Misconfigured(String),
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Upstream(Upstream::Misconfigured { .. }) => Self::Misconfigured(e.to_string()),
            StoreError::Upstream(Upstream::Unavailable { retry_after, .. }) => Self::Unavailable {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
                cause: e.to_string(),
            },
            StoreError::Conflict => Self::Unavailable {
                retry_after: Duration::from_secs(1),
                cause: e.to_string(),
            },
            StoreError::Corrupt(_) => Self::Misconfigured(e.to_string()),
        }
    }
}

/// Tunables of the use case.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// `TOKEN_BINDING`: what sealed tokens are bound to.
    pub token_binding: String,
    pub token_uri_override: Option<String>,
    /// `FORCE_REFRESH_MIN_SECS`: the per-grant floor between user-facing refreshes.
    pub force_refresh_floor: Duration,
    /// How long a refreshing caller holds the grant's lease: the longest a caller that
    /// dies mid-refresh blocks the others.
    pub lease: Duration,
    /// The longest one call may take in all, waiting included.
    pub budget: Duration,
    /// `GOOGLE_CONSENT_TESTING`: for the likely cause of a grant Google ended.
    pub consent_testing: bool,
}

/// The access-token use case over its ports.
#[derive(Debug)]
pub struct AccessTokens<P: Ports = crate::ports::Aws> {
    pub token_endpoint: P::Tokens,
    pub store: P::Store,
    pub refresh_cipher: TokenCipher<P::Keys, RefreshToken>,
    pub access_cipher: TokenCipher<P::Keys, AccessToken>,
    pub secrets: P::Secrets,
    pub clock: P::Clock,
    pub settings: AccessSettings,
    /// Google's `Retry-After` per grant, as this process remembers it.
    pub held_off: HeldOff,
}

/// How long a waiting caller sleeps between reads, doubling up to the last.
const POLL_FIRST: Duration = Duration::from_millis(25);
const POLL_MAX: Duration = Duration::from_millis(200);
/// A sign-in replacing the token mid-refresh is rare; twice in one call is the most tried.
const MAX_TOKENS_TRIED: u32 = 3;

fn unavailable(retry_after: Duration, cause: impl Into<String>) -> AccessError {
    AccessError::Unavailable {
        retry_after: retry_after.max(Duration::from_secs(1)),
        cause: cause.into(),
    }
}

impl<P: Ports> AccessTokens<P> {
    /// Loads the client secret during init, so the first refresh does not wait for it.
    pub async fn warm_up(&self) {
        if let Err(e) = self.secrets.current().await {
            tracing::warn!(error = %e, "client secret not loaded during init");
        }
    }

    /// An access token for `request.sub`, from the cache or from Google.
    #[tracing::instrument(name = "access_token", skip_all, fields(sub = %request.sub, force = request.force_refresh))]
    pub async fn access_token(&self, request: &AccessRequest) -> Result<IssuedToken, AccessError> {
        let deadline = Instant::now() + self.settings.budget;
        let started = self.clock.now_unix();
        // The usual call: the cached token, from its item alone (one read). Anything else —
        // no token that fits, a forced refresh, an ended or suspended grant — reads the
        // grant with it and goes on below.
        if !request.force_refresh
            && let Some(token) = self.served_alone(request, started).await?
        {
            tracing::info!(cached = true, "access token issued");
            return Ok(token);
        }
        let owner = random_owner();
        let mut view = self.store.read(&request.sub).await?;
        let mut poll = POLL_FIRST;
        // A forced refresh is served from the cache only with a token obtained by another
        // caller's refresh that this one waited for.
        let mut waited = false;
        loop {
            let now = self.clock.now_unix();
            let grant = usable(view.grant.as_ref(), now)?;
            let missing = request.scopes.missing_from(&grant.scopes);
            if !missing.is_empty() {
                return Err(AccessError::ScopeNotGranted { missing });
            }
            let accepted = (!request.force_refresh || waited).then_some(started);
            if let Some(token) = self.served_from_cache(&view.cache, grant, request, accepted, now).await {
                tracing::info!(cached = true, "access token issued");
                return Ok(token);
            }
            view.cache.retry_at = view.cache.retry_at.max(self.held_off.until(&request.sub, now));
            floor(&view, request.force_refresh, self.settings.force_refresh_floor, now)?;
            if view.leased_until.is_none_or(|until| until < now) {
                match self
                    .store
                    .take_lease(
                        &request.sub,
                        &owner,
                        now,
                        now + self.settings.lease.as_secs(),
                        view.cache.released_lease.as_deref(),
                    )
                    .await?
                {
                    RefreshLease::Taken(leased) => {
                        // Someone refreshed since this call began (or while it waited):
                        // its token may be cached by now.
                        let reread = waited || leased.last_refresh_at.is_some_and(|at| at >= started);
                        return self
                            .refresh_under_lease(leased, request, &owner, accepted, reread, deadline)
                            .await;
                    }
                    RefreshLease::Unusable(grant) => {
                        view.grant = grant;
                        continue;
                    }
                    RefreshLease::Held { .. } => {}
                }
            }
            // Someone else refreshes this grant: wait for its token, within the budget.
            if Instant::now() + poll >= deadline {
                return Err(unavailable(
                    Duration::from_secs(1),
                    "another refresh of this grant did not finish in time",
                ));
            }
            tokio::time::sleep(poll).await;
            waited = true;
            poll = (poll * 2).min(POLL_MAX);
            view = self.store.read(&request.sub).await?;
        }
    }

    /// The cached token read from its item alone, when it meets the request. Its binding's
    /// client is this deployment's (a grant's client id is the one it signed in with);
    /// a token of another client does not open, and the call reads the grant.
    async fn served_alone(&self, request: &AccessRequest, now: u64) -> Result<Option<IssuedToken>, AccessError> {
        let cache = self.store.read_cache(&request.sub).await?;
        let Some(cached) = cache.token.as_ref().filter(|t| self.fits(t, request, None, now)) else {
            return Ok(None);
        };
        let Ok(credentials) = self.secrets.current().await else {
            return Ok(None);
        };
        let binding = Binding {
            store: &self.settings.token_binding,
            sub: request.sub.as_str(),
            client_id: &credentials.client_id,
        };
        Ok(self.opened(cached, binding).await)
    }

    /// Whether a cached token meets the request: enough time left (or issued within the
    /// floor: the most Google gives) and every scope asked for. With `force_refresh`, only
    /// one obtained at or after `accepted` (another caller's refresh, which this one
    /// waited for); `None` accepts none.
    fn fits(&self, cached: &CachedToken, request: &AccessRequest, accepted: Option<u64>, now: u64) -> bool {
        let fresh_enough = match (request.force_refresh, accepted) {
            (false, _) => true,
            (true, Some(since)) => cached.obtained_at >= since,
            (true, None) => false,
        };
        // A token Google issued within the floor is as long-lived as Google makes them:
        // refreshing again would not give more, only spend quota.
        let just_issued = now < cached.obtained_at + self.settings.force_refresh_floor.as_secs();
        fresh_enough
            && (cached.expires_at >= now + request.min_ttl.as_secs() || just_issued)
            && cached.expires_at > now
            && request.scopes.missing_from(&cached.scopes).is_empty()
    }

    /// The cached token of the grant read with it, if it meets the request ([`Self::fits`]).
    async fn served_from_cache(
        &self,
        cache: &CacheEntry,
        grant: &Grant,
        request: &AccessRequest,
        accepted: Option<u64>,
        now: u64,
    ) -> Option<IssuedToken> {
        // A token of another generation came from a refresh token the grant no longer
        // holds (revoked, replaced by a sign-in): never served.
        let cached = cache.token.as_ref().filter(|t| t.token_gen == grant.token_gen)?;
        if !self.fits(cached, request, accepted, now) {
            return None;
        }
        self.opened(cached, self.binding(grant)).await
    }

    /// The cached token opened under `binding`; `None` when it does not open.
    async fn opened(&self, cached: &CachedToken, binding: Binding<'_>) -> Option<IssuedToken> {
        match self
            .access_cipher
            .open_described(&cached.token, binding, &cached.details())
            .await
        {
            Ok(access_token) => Some(IssuedToken {
                access_token,
                expires_at: cached.expires_at,
                scopes: cached.scopes.clone(),
                refresh_expires_at: cached.grant_ends_at,
            }),
            Err(e) => {
                // Refreshing replaces it; nothing is lost.
                tracing::warn!(error = %e, "cached access token does not open; refreshing");
                None
            }
        }
    }

    fn binding<'a>(&'a self, grant: &'a Grant) -> Binding<'a> {
        Binding {
            store: &self.settings.token_binding,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        }
    }
}
