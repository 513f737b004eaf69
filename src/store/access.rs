//! The access-token side of the tables (DESIGN §11), as a port.
//!
//! A grant's access token is cached sealed in an item of its own in the state table, not
//! in the grant: every write of the offline job is billed on the whole grant item, and a
//! cached token would take it past 1 KB. The item expires by DynamoDB TTL when its token
//! does.
//!
//! One refresh per grant at a time: whoever refreshes (an access-token call or the
//! offline job) holds the grant's lease, taken by a conditional write, and reads the
//! grant as the write left it.

use super::{Grant, GrantOutcome, Recorded, StoreError};
use crate::crypto::SealedToken;
use crate::domain::{GoogleSubject, Scopes};

/// A cached access token: sealed, with when it expires and what it may be used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub token: SealedToken,
    /// Unix seconds.
    pub expires_at: u64,
    pub scopes: Scopes,
    /// When Google issued it (Unix seconds): the per-grant floor of `force_refresh`.
    pub obtained_at: u64,
    /// The grant's token generation it came from ([`Grant::token_gen`]): served only while
    /// the grant still holds that generation, and never written after it ended.
    pub token_gen: u64,
    /// The grant's time-based access ends then (Unix seconds): told to the caller, so a
    /// cache hit says it without reading the grant.
    pub grant_ends_at: Option<u64>,
}

impl CachedToken {
    /// What the store keeps beside the sealed token, in canonical bytes: sealed with it
    /// (its additional authenticated data), so an expiry, issue time, scope set or
    /// generation changed in the table makes the token not open.
    pub fn details(&self) -> Vec<u8> {
        cache_details(self.expires_at, self.obtained_at, self.token_gen, &self.scopes)
    }
}

/// [`CachedToken::details`] before the token is sealed.
pub fn cache_details(expires_at: u64, obtained_at: u64, token_gen: u64, scopes: &Scopes) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 64);
    for number in [expires_at, obtained_at, token_gen] {
        out.extend_from_slice(&number.to_be_bytes());
    }
    // Sorted and space-delimited: one encoding per set (a scope holds no space).
    out.extend_from_slice(scopes.iter().collect::<Vec<_>>().join(" ").as_bytes());
    out
}

/// What a grant's cache item holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    pub token: Option<CachedToken>,
    /// When a user-facing refresh last failed for a reason that may pass (Unix seconds).
    pub failed_at: Option<u64>,
    /// Until when (Unix seconds) Google asked, with `Retry-After`, not to be called.
    pub retry_at: Option<u64>,
    /// The offline job's lease this item ended: the job records a routine refresh here
    /// alone, so a grant whose `lease_owner` is this one is not held.
    pub released_lease: Option<String>,
}

/// A grant, its lease and its cached access token, read together.
#[derive(Debug, Clone, Default)]
pub struct AccessView {
    pub grant: Option<Grant>,
    /// Until when (Unix seconds) someone holds the grant's lease, if anyone does.
    pub leased_until: Option<u64>,
    pub cache: CacheEntry,
}

/// What trying to take a grant's lease found.
#[derive(Debug, Clone)]
pub enum RefreshLease {
    /// Ours: the grant as the lease's write left it.
    Taken(Grant),
    /// Someone else refreshes it until then (Unix seconds).
    Held { until: u64 },
    /// The grant is gone, or no longer active with a refresh token.
    Unusable(Option<Grant>),
}

/// Caching access tokens: the access-token use case stores the tokens it obtains (the
/// offline job's are stored with its outcome: [`crate::store::JobStore::record`]).
pub trait AccessTokenCache: Send + Sync {
    /// Stores `token` for `sub`, unless one Google issued later is already cached.
    fn cache_token(
        &self,
        sub: &GoogleSubject,
        token: &CachedToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The access-token use case's store operations.
pub trait AccessStore: AccessTokenCache {
    /// The grant's cache item alone, read consistently: all a cache hit needs. Whatever
    /// stops a grant from giving tokens takes the token out of this item first — every end
    /// and a suspension (the item becomes the marker of the generation that ended), and a
    /// sign-in's new refresh token (the marker of the one it replaced) — and a time limit
    /// caps the token's expiry, so a token found here is the grant's to serve.
    fn read_cache(&self, sub: &GoogleSubject) -> impl Future<Output = Result<CacheEntry, StoreError>> + Send;
    /// The grant (with its lease) and its cache item, read consistently.
    fn read(&self, sub: &GoogleSubject) -> impl Future<Output = Result<AccessView, StoreError>> + Send;
    /// Takes the grant's lease for `owner` until `until`, if it is active, holds a refresh
    /// token and nobody holds its lease at `now` (a lease the cache item names as ended,
    /// `released`, is nobody's).
    fn take_lease(
        &self,
        sub: &GoogleSubject,
        owner: &str,
        now: u64,
        until: u64,
        released: Option<&str>,
    ) -> impl Future<Output = Result<RefreshLease, StoreError>> + Send;
    /// Notes that a refresh failed transiently at `now`, so the next attempt waits for the
    /// floor, and for `retry_at` (Unix seconds: the end of Google's `Retry-After`) when
    /// Google gave one; the note outlives at least `keep` seconds.
    fn note_failure(
        &self,
        sub: &GoogleSubject,
        now: u64,
        retry_at: Option<u64>,
        keep: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Caches `token` and, in the same write, ends `owner`'s lease on the grant: the item
    /// names the lease it ends, and every reader of the lease takes it as let go. `false`:
    /// a token Google issued later is cached already; nothing was written, and the lease
    /// is still held ([`AccessStore::end_lease`] lets go of it).
    fn cache_and_release(
        &self,
        sub: &GoogleSubject,
        token: &CachedToken,
        owner: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records how the refresh ended and lets go of the lease. A rotated token or a
    /// revocation is written only if the grant's version is still the one leased:
    /// otherwise a sign-in stored a newer token, which wins (`Superseded`; the lease is let
    /// go all the same).
    fn end_lease(
        &self,
        leased: &Grant,
        owner: &str,
        now: u64,
        outcome: &GrantOutcome,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
}
