//! The offline job's side of the grants table (DESIGN §8), as a port.
//!
//! A grant is worked under a lease ([`super::lease`]): a conditional write that succeeds
//! only for an active grant that nobody else holds, that is due, and that this cycle has
//! not done yet.
//!
//! Two writes a grant a cycle, each one write unit: the lease, then a routine outcome
//! recorded by the cached access token's own small item alone
//! ([`GrantOutcome::is_routine`]). Any other outcome is recorded on the grant, on
//! condition of still holding the lease, and — when it replaces or deletes the refresh
//! token — of the version read at lease time, so a sign-in that stored a newer token
//! meanwhile is never overwritten.

use std::time::Duration;

use super::{CachedToken, Grant, GrantOutcome, Lease, Recorded, StoreError};
use crate::crypto::NewRefreshToken;
use crate::domain::GoogleSubject;

/// One page of a scan segment.
#[derive(Debug, Default)]
pub struct ScanPage {
    pub grants: Vec<Grant>,
    /// Items on the page that are not grants this code can read; they are skipped (and
    /// logged by key and the attribute at fault, never by value).
    pub malformed: u64,
    /// Where the next page starts; `None` when the segment is exhausted.
    pub next: Option<String>,
}

/// One scan request.
#[derive(Debug, Clone, Copy)]
pub struct ScanRequest<'a> {
    pub segment: u32,
    pub segments: u32,
    pub start: Option<&'a str>,
    pub limit: i32,
    pub cycle: &'a str,
    pub now: u64,
}

/// Where one scan segment of a cycle stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub segment: u32,
    pub start: Option<String>,
    pub done: bool,
}

/// The job's store operations as a port.
pub trait JobStore: Send + Sync {
    fn cycle_done(&self, cycle: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn mark_cycle_done(
        &self,
        cycle: &str,
        now: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn checkpoints(
        &self,
        cycle: &str,
        segments: u32,
    ) -> impl Future<Output = Result<Vec<Checkpoint>, StoreError>> + Send;
    fn save_checkpoint(
        &self,
        cycle: &str,
        checkpoint: &Checkpoint,
        now: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One page of active grants that are due and not yet done in `cycle`.
    fn scan_active(&self, scan: ScanRequest<'_>) -> impl Future<Output = Result<ScanPage, StoreError>> + Send;
    /// The leased grant as stored, or `None` when it is not ours to take.
    fn lease(
        &self,
        sub: &GoogleSubject,
        lease: Lease<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    /// Stores a rotated refresh token at once, still holding the lease, on condition of the
    /// lease and of the version leased (a sign-in's newer token wins): `Superseded` when
    /// the condition failed and nothing was written.
    fn save_token(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        token: &NewRefreshToken,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
    /// The job lease that `sub`'s cached-token item says a routine record ended.
    fn released_lease(&self, sub: &GoogleSubject) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Claims up to `want` units of the quota day `day`, whose budget is `limit`: the
    /// units granted (fewer than `want` when the day's budget has fewer left, 0 when it is
    /// spent). The day's count is kept until `keep_until` (Unix seconds).
    fn claim_units(
        &self,
        day: &str,
        want: u64,
        limit: u64,
        keep_until: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Gives back claimed units that were not spent.
    fn return_units(&self, day: &str, units: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records how a leased grant ended this cycle, caches the access token the job
    /// obtained (`cached`), and lets go of the lease. `leased` is the grant as it was
    /// before the lease. A routine outcome is one write: the cached token's item, naming
    /// the lease it ends. Returns what was recorded, and whether the token was cached.
    fn record(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        outcome: &GrantOutcome,
        cached: Option<&CachedToken>,
    ) -> impl Future<Output = Result<(Recorded, bool), StoreError>> + Send;
}
