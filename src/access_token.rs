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
use crate::crypto::{Binding, KeyProvider, TokenCipher};
use crate::domain::{AccessToken, GoogleSubject, RefreshToken, Scopes};
use crate::google::{ClientSecrets, TokenEndpoint, TokenRefresh, Tokens};
use crate::grant::decide::{Disposition, Failure, disposition, likely_cause};
use crate::grant::{seal_rotated, sealed_for_cache, token_scopes};
use crate::store::{
    AccessStore, AccessView, CacheEntry, Grant, GrantStatus, LeaseEnd, Recorded, RefreshLease, StoreError,
    random_owner, reasons,
};
use crate::upstream::Upstream;

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
}

/// The access-token use case over its ports.
pub struct AccessTokens<T, S, K, P, C> {
    pub token_endpoint: T,
    pub store: S,
    pub refresh_cipher: TokenCipher<K, RefreshToken>,
    pub access_cipher: TokenCipher<K, AccessToken>,
    pub secrets: P,
    pub clock: C,
    pub settings: AccessSettings,
}

impl<T, S, K, P, C> std::fmt::Debug for AccessTokens<T, S, K, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
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

/// The grant, if it can give tokens at `now`; else the answer.
fn usable(grant: Option<&Grant>, now: u64) -> Result<&Grant, AccessError> {
    let grant = grant.ok_or(AccessError::GrantNotFound)?;
    let reason = || {
        grant
            .status_reason
            .clone()
            .unwrap_or_else(|| grant.status.as_str().to_owned())
    };
    match grant.status {
        // Time-based access ran out: even a cached access token is no longer the app's
        // to use. The offline job marks the grant.
        GrantStatus::Active if grant.refresh_expires_at.is_some_and(|at| at <= now) => {
            Err(AccessError::ReauthorizationRequired {
                reason: reasons::TIME_BASED_ACCESS_EXPIRED.into(),
                likely_cause: None,
            })
        }
        GrantStatus::Active if grant.refresh_token.is_some() => Ok(grant),
        GrantStatus::Active => Err(AccessError::ReauthorizationRequired {
            reason: reasons::NO_REFRESH_TOKEN.into(),
            likely_cause: None,
        }),
        GrantStatus::Suspended => Err(AccessError::Suspended),
        // Deleted, or being deleted, at the user's request: as if there were no grant.
        GrantStatus::Revoking | GrantStatus::Deleted => Err(AccessError::GrantNotFound),
        GrantStatus::ReconsentRequired | GrantStatus::Revoked => Err(AccessError::ReauthorizationRequired {
            reason: reason(),
            likely_cause: grant.likely_cause.clone(),
        }),
    }
}

impl<T, S, K, P, C> AccessTokens<T, S, K, P, C>
where
    T: TokenEndpoint,
    S: AccessStore,
    K: KeyProvider,
    P: ClientSecrets,
    C: Clock,
{
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
            self.check_floor(&view, request, now)?;
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

    /// The cached token, if it meets the request: enough time left (or issued within the
    /// floor: the most Google gives) and every scope asked for. With `force_refresh`, only one obtained at or after `accepted` (another
    /// caller's refresh, which this one waited for); `None` accepts none.
    async fn served_from_cache(
        &self,
        cache: &CacheEntry,
        grant: &Grant,
        request: &AccessRequest,
        accepted: Option<u64>,
        now: u64,
    ) -> Option<IssuedToken> {
        let cached = cache.token.as_ref()?;
        let fresh_enough = match (request.force_refresh, accepted) {
            (false, _) => true,
            (true, Some(since)) => cached.obtained_at >= since,
            (true, None) => false,
        };
        // A token Google issued within the floor is as long-lived as Google makes them:
        // refreshing again would not give more, only spend quota.
        let just_issued = now < cached.obtained_at + self.settings.force_refresh_floor.as_secs();
        let fits = fresh_enough
            && (cached.expires_at >= now + request.min_ttl.as_secs() || just_issued)
            && cached.expires_at > now
            && request.scopes.missing_from(&cached.scopes).is_empty();
        if !fits {
            return None;
        }
        match self.access_cipher.open(&cached.token, self.binding(grant)).await {
            Ok(access_token) => Some(IssuedToken {
                access_token,
                expires_at: cached.expires_at,
                scopes: cached.scopes.clone(),
            }),
            Err(e) => {
                // Refreshing replaces it; nothing is lost.
                tracing::warn!(error = %e, "cached access token does not open; refreshing");
                None
            }
        }
    }

    /// Whether a refresh may be tried now; else the answer.
    fn check_floor(&self, view: &AccessView, request: &AccessRequest, now: u64) -> Result<(), AccessError> {
        let floor = self.settings.force_refresh_floor.as_secs();
        let wait_until = |at: u64| (at + floor > now).then(|| Duration::from_secs(at + floor - now));
        if let Some(retry_after) = view.cache.failed_at.and_then(wait_until) {
            return Err(unavailable(
                retry_after,
                "the last refresh of this grant failed; waiting for the floor",
            ));
        }
        if request.force_refresh {
            let obtained = view.cache.token.as_ref().map(|t| t.obtained_at);
            let last = obtained.max(view.grant.as_ref().and_then(|g| g.last_refresh_at));
            if let Some(retry_after) = last.and_then(wait_until) {
                return Err(AccessError::RefreshBackoff { retry_after });
            }
        }
        Ok(())
    }

    fn binding<'a>(&'a self, grant: &'a Grant) -> Binding<'a> {
        Binding {
            store: &self.settings.token_binding,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        }
    }

    /// Refreshes while holding the lease, and always lets go of it.
    async fn refresh_under_lease(
        &self,
        leased: Grant,
        request: &AccessRequest,
        owner: &str,
        accepted: Option<u64>,
        reread: bool,
        deadline: Instant,
    ) -> Result<IssuedToken, AccessError> {
        // Re-read when the caller before us may have cached a token just before letting
        // go; otherwise the lease's own write returned the grant as it is.
        let view = if reread {
            self.store.read(&request.sub).await.ok()
        } else {
            None
        };
        let cached = match &view {
            Some(view) => {
                self.served_from_cache(&view.cache, &leased, request, accepted, self.clock.now_unix())
                    .await
            }
            None => None,
        };
        let (result, end, holder) = match cached {
            Some(token) => (Ok(token), Some(LeaseEnd::Released), leased),
            None => self.refresh(leased, request, owner, deadline).await,
        };
        // A routine refresh's cached token already ended the lease.
        if let Some(end) = end {
            match self.store.end_lease(&holder, owner, self.clock.now_unix(), &end).await {
                Ok(Recorded::Written | Recorded::Superseded) => {}
                Ok(Recorded::LeaseLost) => tracing::warn!("the lease ran out before the refresh was recorded"),
                // The lease runs out by itself; a rotated token would be lost, so say so.
                Err(e) => {
                    tracing::error!(error = %e, rotated = matches!(end, LeaseEnd::Refreshed { new_token: Some(_), .. }), "letting go of the lease failed")
                }
            }
        }
        if result.is_ok() {
            tracing::info!(cached = false, "access token issued");
        }
        result
    }

    /// One refresh under `owner`'s lease: the answer, what to record as the lease ends
    /// (`None`: the cached token's write ended it, a routine refresh), and the grant as
    /// last read (a sign-in may have replaced the token meanwhile).
    async fn refresh(
        &self,
        mut grant: Grant,
        request: &AccessRequest,
        owner: &str,
        deadline: Instant,
    ) -> (Result<IssuedToken, AccessError>, Option<LeaseEnd>, Grant) {
        let credentials = match self.secrets.current().await {
            Ok(c) => c,
            Err(e) => return (Err(self.upstream(e)), Some(LeaseEnd::Released), grant),
        };
        let token_uri = credentials.token_uri(self.settings.token_uri_override.as_deref());
        let mut tried = 0;
        loop {
            tried += 1;
            let Some(sealed) = &grant.refresh_token else {
                return (
                    Err(AccessError::ReauthorizationRequired {
                        reason: reasons::NO_REFRESH_TOKEN.into(),
                        likely_cause: None,
                    }),
                    Some(LeaseEnd::Released),
                    grant,
                );
            };
            let refresh_token = match self.refresh_cipher.open(sealed, self.binding(&grant)).await {
                Ok(token) => token,
                Err(e) => {
                    let answer = match disposition(Failure::Open(&e)) {
                        Disposition::Transient { retry_after, reason } => {
                            unavailable(retry_after.unwrap_or_default(), reason)
                        }
                        _ => {
                            tracing::error!(error = %e, "MISCONFIGURATION: the stored refresh token does not open");
                            AccessError::Misconfigured(e.to_string())
                        }
                    };
                    return (Err(answer), Some(LeaseEnd::Released), grant);
                }
            };
            let refreshed = self
                .token_endpoint
                .refresh(TokenRefresh {
                    token_uri,
                    credentials: &credentials,
                    refresh_token: &refresh_token,
                })
                .await;
            let error = match refreshed {
                Ok(tokens) => {
                    let new_token = match &tokens.refresh_token {
                        Some(rotated) => {
                            match seal_rotated(&self.refresh_cipher, sealed, rotated, self.binding(&grant), deadline)
                                .await
                            {
                                Ok(sealed) => Some(sealed),
                                Err(e) => {
                                    tracing::error!(error = %e, "MISCONFIGURATION: a rotated refresh token could not be sealed; the stored token is kept and the caller told to retry");
                                    let reason = match disposition(Failure::Seal(&e)) {
                                        Disposition::Defer { reason } => reason,
                                        other => format!("{other:?}"),
                                    };
                                    let answer = unavailable(self.settings.force_refresh_floor, reason);
                                    return (Err(answer), Some(LeaseEnd::Released), grant);
                                }
                            }
                        }
                        None => None,
                    };
                    let now = self.clock.now_unix();
                    let refresh_expires_at = tokens.refresh_token_lifetime.map(|limit| now + limit.as_secs());
                    let end = LeaseEnd::Refreshed {
                        new_token,
                        refresh_expires_at,
                    };
                    let end = self.cache(&grant, &tokens, now, owner, end).await;
                    let issued = IssuedToken {
                        expires_at: now + tokens.expires_in.as_secs(),
                        scopes: token_scopes(&tokens, &grant),
                        access_token: tokens.access_token,
                    };
                    return (Ok(issued), end, grant);
                }
                Err(e) => e,
            };
            match disposition(Failure::Refresh(&error)) {
                Disposition::Revoke { reason, subtype } => {
                    // Google refused the token we used. If a sign-in stored another since
                    // we leased, that one is the grant's now: try it.
                    match self.store.read(&request.sub).await {
                        Ok(AccessView {
                            grant: Some(current), ..
                        }) if current.status == GrantStatus::Active
                            && current.refresh_token.is_some()
                            && current.refresh_token != grant.refresh_token
                            && tried < MAX_TOKENS_TRIED =>
                        {
                            tracing::info!("the refresh token was replaced during the refresh; trying the new one");
                            grant = current;
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => return (Err(e.into()), Some(LeaseEnd::Released), grant),
                    }
                    let cause = likely_cause(
                        subtype.as_deref(),
                        grant.token_issued_at.unwrap_or(grant.created_at),
                        grant.last_refresh_at,
                        self.clock.now_unix(),
                    )
                    .as_str()
                    .to_owned();
                    tracing::info!(reason, likely_cause = cause, "grant revoked by Google");
                    return (
                        Err(AccessError::ReauthorizationRequired {
                            reason: reason.clone(),
                            likely_cause: Some(cause.clone()),
                        }),
                        Some(LeaseEnd::Revoked {
                            reason,
                            likely_cause: cause,
                        }),
                        grant,
                    );
                }
                Disposition::Transient { retry_after, reason } => {
                    let floor = self.settings.force_refresh_floor;
                    let now = self.clock.now_unix();
                    if let Err(e) = self.store.note_failure(&request.sub, now, floor.as_secs()).await {
                        tracing::warn!(error = %e, "the failed refresh could not be noted");
                    }
                    tracing::warn!(error = %reason, "refresh failed; the caller is told to retry");
                    let retry_after = retry_after.unwrap_or_default().max(floor);
                    return (Err(unavailable(retry_after, reason)), Some(LeaseEnd::Released), grant);
                }
                other => {
                    tracing::error!(error = %error, disposition = ?other, "MISCONFIGURATION: the refresh was refused");
                    return (
                        Err(AccessError::Misconfigured(error.to_string())),
                        Some(LeaseEnd::Released),
                        grant,
                    );
                }
            }
        }
    }

    /// Caches a fresh token, sealed; a failure costs only a later refresh. A routine
    /// refresh ([`LeaseEnd::is_routine`]) is recorded by that write alone, which ends the
    /// lease (`None`); anything else is left for the grant's write.
    async fn cache(&self, grant: &Grant, tokens: &Tokens, now: u64, owner: &str, end: LeaseEnd) -> Option<LeaseEnd> {
        let cached = match sealed_for_cache(&self.access_cipher, self.binding(grant), grant, tokens, now).await {
            Ok(cached) => cached,
            Err(e) => {
                tracing::warn!(error = %e, "the access token could not be sealed for the cache");
                return Some(end);
            }
        };
        if end.is_routine(grant) {
            match self.store.cache_and_release(&grant.sub, &cached, owner).await {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "the access token could not be cached"),
            }
        } else if let Err(e) = self.store.cache_token(&grant.sub, &cached).await {
            tracing::warn!(error = %e, "the access token could not be cached");
        }
        Some(end)
    }

    fn upstream(&self, e: Upstream) -> AccessError {
        match e {
            Upstream::Misconfigured { .. } => {
                tracing::error!(error = %e, "MISCONFIGURATION");
                AccessError::Misconfigured(e.to_string())
            }
            Upstream::Unavailable { retry_after, .. } => unavailable(retry_after.unwrap_or_default(), e.to_string()),
        }
    }
}
