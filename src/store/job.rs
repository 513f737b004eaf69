//! The offline job's side of the grants table (DESIGN §8), as a port.
//!
//! A grant is worked under a lease: a conditional write that succeeds only for an active
//! grant that nobody else holds, that is due, and that this cycle has not done yet.
//!
//! Two writes a grant a cycle, each one write unit. The lease records up front what a
//! routine cycle ends with (this cycle took the grant; it was refreshed, and synced if
//! Drive work is planned, now). A routine outcome — refreshed, Drive as planned, nothing
//! about the grant changed — is then recorded by the cached access token's own small item
//! alone, which also names the lease it ends ([`GrantOutcome::is_routine`]). Any other
//! outcome is recorded on the grant, on condition of still holding the lease, and — when
//! it replaces or deletes the refresh token — of the version read at lease time, so a
//! sign-in that stored a newer token meanwhile is never overwritten; it puts back what
//! the lease assumed and did not happen.

use std::time::Duration;

use super::{CachedToken, Grant, StoreError};
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

/// A lease request.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub cycle: &'a str,
    pub now: u64,
    pub until: u64,
    /// The grant gets Drive work this cycle (it has `drive.appdata` and `DRIVE_SYNC` is
    /// not `off`): the lease records it as synced now, as a routine cycle ends.
    pub drive_planned: bool,
    /// The lease the grant's cached-token item says a routine record ended: nobody's.
    pub released: Option<&'a str>,
}

/// How a leased grant ends this cycle.
#[derive(Debug, Clone)]
pub enum GrantOutcome {
    /// Refreshed. `new_token` is a rotated refresh token to store in place of the old one.
    Refreshed {
        new_token: Option<NewRefreshToken>,
        /// Google's answer carried a time limit (`refresh_token_expires_in`): when the
        /// refresh token stops working. `None` leaves what is stored.
        refresh_expires_at: Option<u64>,
        drive: DriveOutcome,
    },
    /// A transient failure outlived its retries: try again at `next_attempt_at`.
    Deferred {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
    },
    /// Google said `invalid_grant`: the token is deleted and the grant marked revoked,
    /// with what most likely caused it.
    Revoked { reason: String, likely_cause: String },
    /// No usable refresh token (none stored, or time-based access ran out): the user
    /// must consent again; a stored token is deleted.
    ReconsentRequired { reason: String },
    /// The stored token does not open: the lease is given back and nothing about the
    /// grant changes; the run carries on past it (logged and counted, not retried in this
    /// run), and the next cycle tries it again.
    Unopened { reason: String },
    /// The user asked for deletion and Google confirmed the revocation: the grant becomes
    /// a tombstone kept for `tombstone_ttl`.
    Deleted { tombstone_ttl: std::time::Duration },
    /// Let go without recording anything (the run stopped): the grant is retried.
    Released,
}

/// How the Drive part of a refresh went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveOutcome {
    /// Listed; `truncated` when the listing stopped before its end (page cap or a page
    /// loop): recorded as such, not as a full sync.
    Synced { files: u64, truncated: bool },
    /// `files.get` of the `appDataFolder` answered (`DRIVE_SYNC=get`).
    Reached,
    /// No Drive work: the grant lacks `drive.appdata` (or lost it), or `DRIVE_SYNC=off`:
    /// refreshed only, as a keep-alive.
    NotGranted,
    /// Drive failed after retries: the grant is retried at `next_attempt_at`.
    Failed {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
    },
}

impl GrantOutcome {
    /// Whether recording it writes what a newer sign-in would own (the token, the status):
    /// then only on the version leased.
    pub fn touches_token(&self) -> bool {
        match self {
            GrantOutcome::Refreshed { new_token, .. } => new_token.is_some(),
            GrantOutcome::Revoked { .. } | GrantOutcome::ReconsentRequired { .. } | GrantOutcome::Deleted { .. } => {
                true
            }
            GrantOutcome::Deferred { .. } | GrantOutcome::Unopened { .. } | GrantOutcome::Released => false,
        }
    }

    /// Whether the outcome is what the lease already recorded: refreshed with no new token
    /// or time limit, Drive done as planned with the same findings, on a grant with no
    /// failure to clear. Its record is then the cached access token's item alone.
    pub fn is_routine(&self, leased: &Grant, lease: &Lease<'_>) -> bool {
        let GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at,
            drive,
        } = self
        else {
            return false;
        };
        let healthy = leased.failure_count == 0 && leased.next_attempt_at.is_none();
        let same_limit = super::same_time_limit(*refresh_expires_at, leased.refresh_expires_at);
        let as_planned = match drive {
            DriveOutcome::Reached => lease.drive_planned,
            DriveOutcome::Synced { files, truncated } => {
                lease.drive_planned && !truncated && !leased.drive_truncated && leased.drive_files == Some(*files)
            }
            DriveOutcome::NotGranted => !lease.drive_planned,
            DriveOutcome::Failed { .. } => false,
        };
        healthy && same_limit && as_planned
    }
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Written,
    /// A sign-in stored a newer grant meanwhile: the outcome was recorded without
    /// touching its token or status.
    Superseded,
    /// The lease had expired and someone else holds the grant: nothing was written.
    LeaseLost,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedToken;
    use crate::domain::{Profile, Scopes};

    fn grant() -> Grant {
        // Version 1, a one-byte wrapped key, a nonce and a tag's worth of ciphertext.
        let bytes: Vec<u8> = [1, 0, 1, 7].into_iter().chain([0; 12 + 16]).collect();
        let sealed = SealedToken::from_bytes(&bytes).expect("sealed");
        let token = NewRefreshToken {
            sealed,
            digests: crate::domain::TokenDigests {
                prefix: vec![0; 16],
                double_sha512: vec![0; 64],
            },
        };
        let sub = GoogleSubject::parse("1234").expect("sub");
        let mut grant = Grant::new_active(
            sub,
            "web".into(),
            Scopes::from_space_delimited("openid"),
            token,
            Profile::default(),
            true,
            1,
        );
        grant.drive_files = Some(3);
        grant
    }

    fn lease(drive_planned: bool) -> Lease<'static> {
        Lease {
            owner: "run",
            cycle: "c",
            now: 100,
            until: 200,
            drive_planned,
            released: None,
        }
    }

    fn refreshed(drive: DriveOutcome) -> GrantOutcome {
        GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: None,
            drive,
        }
    }

    #[test]
    fn only_what_the_lease_already_recorded_is_routine() {
        let g = grant();
        let synced = |files, truncated| refreshed(DriveOutcome::Synced { files, truncated });
        let failed = refreshed(DriveOutcome::Failed {
            failure_count: 1,
            next_attempt_at: 1,
            reason: "x".into(),
        });
        for (outcome, planned, routine) in [
            (refreshed(DriveOutcome::Reached), true, true),
            (refreshed(DriveOutcome::NotGranted), false, true),
            (synced(3, false), true, true),
            // The lease assumed the other way round.
            (refreshed(DriveOutcome::Reached), false, false),
            (refreshed(DriveOutcome::NotGranted), true, false),
            // A listing that found something else, or stopped short.
            (synced(4, false), true, false),
            (synced(3, true), true, false),
            (failed, true, false),
            (GrantOutcome::Released, true, false),
            (
                GrantOutcome::Deferred {
                    failure_count: 1,
                    next_attempt_at: 1,
                    reason: "x".into(),
                },
                true,
                false,
            ),
        ] {
            assert_eq!(
                outcome.is_routine(&g, &lease(planned)),
                routine,
                "{outcome:?} planned={planned}"
            );
        }

        // A failure to clear, a time limit Google now states, or one that moved.
        let mut failing = grant();
        failing.failure_count = 2;
        assert!(!refreshed(DriveOutcome::Reached).is_routine(&failing, &lease(true)));
        let limited = GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: Some(5_000),
            drive: DriveOutcome::Reached,
        };
        assert!(!limited.is_routine(&g, &lease(true)));
        let mut timed = grant();
        timed.refresh_expires_at = Some(5_030);
        assert!(
            limited.is_routine(&timed, &lease(true)),
            "the same limit, a few seconds apart"
        );
        timed.refresh_expires_at = Some(9_000);
        assert!(!limited.is_routine(&timed, &lease(true)));
    }
}
