//! The grant lease and how it ends (DESIGN §8, §11), as the port's types: one outcome
//! type, [`GrantOutcome`], for both holders of a lease ([`Holder`]) — the offline job's
//! cycle and a user-facing refresh of the access-token function.
//!
//! A lease is taken by a conditional write that succeeds only while nobody else holds it,
//! and ended by its holder in the write that records the outcome. What differs between
//! the holders is what taking the lease assumed, not how it ends:
//!
//! - **A cycle's lease** records up front what a routine cycle ends with (this cycle took
//!   the grant; it was refreshed, and synced if Drive work is planned, now). Recording
//!   any other outcome puts back what the lease assumed and did not happen, and settles
//!   the grant's deferral (a refresh clears it, a failure sets it).
//! - **A user-facing lease** assumes nothing and leaves the deferral as it is: the job's
//!   schedule is the job's.
//!
//! Either way an outcome that is what the lease already recorded
//! ([`GrantOutcome::is_routine`]) is recorded by the cached access token's item alone,
//! which names the lease it ends: one write, not two.

use super::{Grant, same_time_limit};
use crate::crypto::NewRefreshToken;

/// A cycle's lease request.
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
    /// An end of the grant now near enough to announce (`GrantExpiring`), not announced
    /// yet: the lease records it, with a version of its own, so no other write is made.
    pub notice: Option<(u64, &'static str)>,
}

/// Who holds a grant's lease, and so what taking it assumed.
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    /// The offline job's cycle.
    Cycle(Lease<'a>),
    /// A user-facing refresh (the access-token function), at `now`.
    Caller { owner: &'a str, now: u64 },
}

impl Holder<'_> {
    pub fn owner(&self) -> &str {
        match self {
            Holder::Cycle(lease) => lease.owner,
            Holder::Caller { owner, .. } => owner,
        }
    }

    /// When the outcome is recorded (Unix seconds).
    pub fn now(&self) -> u64 {
        match self {
            Holder::Cycle(lease) => lease.now,
            Holder::Caller { now, .. } => *now,
        }
    }
}

/// How a leased grant ends, whoever held the lease. A user-facing refresh ends only
/// `Refreshed` (with [`DriveOutcome::Skipped`]), `Revoked` or `Released`.
#[derive(Debug, Clone)]
pub enum GrantOutcome {
    /// Refreshed. `new_token` is a rotated refresh token to store in place of the old one.
    Refreshed {
        new_token: Option<NewRefreshToken>,
        /// Google's answer carried a time limit (`refresh_token_expires_in`): when the
        /// refresh token stops working. `None` leaves what is stored.
        refresh_expires_at: Option<u64>,
        drive: DriveOutcome,
        /// Google's answer named other scopes than the grant holds: they replace them
        /// (its `scope` is authoritative). `None`: unchanged, or the answer named none.
        scopes: Option<crate::domain::Scopes>,
    },
    /// A transient failure outlived its retries: try again at `next_attempt_at`. The
    /// grant's refresh level fails (`error`, its class) from the first such cycle on.
    Deferred {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
        error: &'static str,
    },
    /// Google said `invalid_grant`: the token is deleted and the grant marked revoked,
    /// with what most likely caused it.
    Revoked { reason: String, likely_cause: String },
    /// No usable refresh token (none stored, or time-based access ran out): the user
    /// must consent again; a stored token is deleted.
    ReconsentRequired { reason: String },
    /// Google wants the user to sign in again (`invalid_rapt`: a Workspace session
    /// policy): the grant is `reconsent_required`, its token kept sealed, since it works
    /// again once the user has signed in (a sign-in without a new token revives it).
    Reauthenticate { reason: String },
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
    /// No Drive work: the grant lacks `drive.appdata` (or lost it), `DRIVE_SYNC=off`, the
    /// run's budget ran out, or a user-facing refresh (which never calls Drive): refreshed
    /// only.
    Skipped,
    /// Drive failed after retries: the grant is retried at `next_attempt_at`, its api
    /// level failing (`error`, its class).
    Failed {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
        error: &'static str,
    },
    /// Drive refused the user (`domainPolicy`): the api level fails (`error`); the grant
    /// is not deferred, its refresh being fine.
    Refused { error: &'static str },
}

impl GrantOutcome {
    /// Whether recording it writes what a newer sign-in would own (the token, the status):
    /// then only on the version leased.
    pub fn touches_token(&self) -> bool {
        match self {
            // The scopes belong to the token generation that was refreshed.
            GrantOutcome::Refreshed { new_token, scopes, .. } => new_token.is_some() || scopes.is_some(),
            GrantOutcome::Revoked { .. }
            | GrantOutcome::ReconsentRequired { .. }
            | GrantOutcome::Reauthenticate { .. }
            | GrantOutcome::Deleted { .. } => true,
            GrantOutcome::Deferred { .. } | GrantOutcome::Unopened { .. } | GrantOutcome::Released => false,
        }
    }

    /// Whether recording it ends the grant's use (revoked, reconsent required, deleted):
    /// then its cached access token is ended too.
    pub fn ends_grant(&self) -> bool {
        matches!(
            self,
            GrantOutcome::Revoked { .. }
                | GrantOutcome::ReconsentRequired { .. }
                | GrantOutcome::Reauthenticate { .. }
                | GrantOutcome::Deleted { .. }
        )
    }

    /// Whether the outcome is what the lease already recorded, so that the cached access
    /// token's item alone can record it. For a cycle: refreshed with no new token or time
    /// limit, Drive done as planned with the same findings, on a grant with no failure to
    /// clear. For a user-facing refresh: refreshed with no new token or time limit.
    pub fn is_routine(&self, leased: &Grant, holder: &Holder<'_>) -> bool {
        let GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at,
            drive,
            scopes: None,
        } = self
        else {
            return false;
        };
        if !same_time_limit(*refresh_expires_at, leased.refresh_expires_at) {
            return false;
        }
        let Holder::Cycle(lease) = holder else {
            // A refresh that works ends a failing refresh level: the grant records it.
            return *drive == DriveOutcome::Skipped && leased.refresh_failing.is_none();
        };
        let healthy = leased.failure_count == 0
            && leased.next_attempt_at.is_none()
            && leased.refresh_failing.is_none()
            && leased.api_failing.is_none();
        let as_planned = match drive {
            DriveOutcome::Reached => lease.drive_planned,
            DriveOutcome::Synced { files, truncated } => {
                lease.drive_planned && !truncated && !leased.drive_truncated && leased.drive_files == Some(*files)
            }
            DriveOutcome::Skipped => !lease.drive_planned,
            DriveOutcome::Failed { .. } | DriveOutcome::Refused { .. } => false,
        };
        healthy && as_planned
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedToken;
    use crate::domain::{GoogleSubject, Profile, Scopes, TokenDigests};

    fn token() -> NewRefreshToken {
        // Version 1, a one-byte wrapped key, a nonce and a tag's worth of ciphertext.
        let bytes: Vec<u8> = [1, 0, 1, 7].into_iter().chain([0; 12 + 16]).collect();
        NewRefreshToken {
            sealed: SealedToken::from_bytes(&bytes).expect("sealed"),
            digests: TokenDigests {
                prefix: vec![0; 16],
                double_sha512: vec![0; 64],
            },
        }
    }

    fn grant() -> Grant {
        let token = token();
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
            notice: None,
        }
    }

    fn refreshed(drive: DriveOutcome) -> GrantOutcome {
        GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: None,
            drive,
            scopes: None,
        }
    }

    #[test]
    fn new_scopes_from_google_are_no_routine_refresh_and_belong_to_the_token_leased() {
        let g = grant();
        let rescoped = GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: None,
            drive: DriveOutcome::Skipped,
            scopes: Some(crate::domain::Scopes::from_space_delimited("openid")),
        };
        let caller = Holder::Caller { owner: "o", now: 1 };
        assert!(!rescoped.is_routine(&g, &caller) && rescoped.touches_token());
        assert!(refreshed(DriveOutcome::Skipped).is_routine(&g, &caller));
    }

    #[test]
    fn only_what_the_lease_already_recorded_is_routine() {
        let g = grant();
        let synced = |files, truncated| refreshed(DriveOutcome::Synced { files, truncated });
        let failed = refreshed(DriveOutcome::Failed {
            failure_count: 1,
            next_attempt_at: 1,
            reason: "x".into(),
            error: "unavailable",
        });
        for (outcome, planned, routine) in [
            (refreshed(DriveOutcome::Reached), true, true),
            (refreshed(DriveOutcome::Skipped), false, true),
            (synced(3, false), true, true),
            // The lease assumed the other way round.
            (refreshed(DriveOutcome::Reached), false, false),
            (refreshed(DriveOutcome::Skipped), true, false),
            // A listing that found something else, or stopped short.
            (synced(4, false), true, false),
            (synced(3, true), true, false),
            (failed, true, false),
            (refreshed(DriveOutcome::Refused { error: "domain_policy" }), true, false),
            (GrantOutcome::Released, true, false),
            (
                GrantOutcome::Deferred {
                    failure_count: 1,
                    next_attempt_at: 1,
                    reason: "x".into(),
                    error: "unavailable",
                },
                true,
                false,
            ),
        ] {
            assert_eq!(
                outcome.is_routine(&g, &Holder::Cycle(lease(planned))),
                routine,
                "{outcome:?} planned={planned}"
            );
        }

        // A failure to clear, a failing level of health to end, a time limit Google now
        // states, or one that moved.
        let mut failing = grant();
        failing.failure_count = 2;
        assert!(!refreshed(DriveOutcome::Reached).is_routine(&failing, &Holder::Cycle(lease(true))));
        for (refresh, api) in [(true, false), (false, true)] {
            let mut unhealthy = grant();
            let level = Some(crate::store::Failing {
                since: 1,
                error: "unavailable".into(),
            });
            unhealthy.refresh_failing = level.clone().filter(|_| refresh);
            unhealthy.api_failing = level.filter(|_| api);
            assert!(!refreshed(DriveOutcome::Reached).is_routine(&unhealthy, &Holder::Cycle(lease(true))));
            let caller = Holder::Caller { owner: "o", now: 1 };
            assert_eq!(
                refreshed(DriveOutcome::Skipped).is_routine(&unhealthy, &caller),
                api,
                "refresh ends failing"
            );
        }
        let limited = GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: Some(5_000),
            drive: DriveOutcome::Reached,
            scopes: None,
        };
        assert!(!limited.is_routine(&g, &Holder::Cycle(lease(true))));
        let mut timed = grant();
        timed.refresh_expires_at = Some(5_030);
        assert!(
            limited.is_routine(&timed, &Holder::Cycle(lease(true))),
            "the same limit, a few seconds apart"
        );
        timed.refresh_expires_at = Some(9_000);
        assert!(!limited.is_routine(&timed, &Holder::Cycle(lease(true))));
    }

    #[test]
    fn a_user_facing_refresh_is_routine_when_it_changes_nothing_on_the_grant() {
        let caller = Holder::Caller {
            owner: "call",
            now: 100,
        };
        let mut failing = grant();
        failing.failure_count = 2;
        failing.next_attempt_at = Some(500);
        let limited = |at| GrantOutcome::Refreshed {
            new_token: None,
            refresh_expires_at: Some(at),
            drive: DriveOutcome::Skipped,
            scopes: None,
        };
        // Its record leaves the job's deferral alone, so a failing grant is no obstacle.
        assert!(refreshed(DriveOutcome::Skipped).is_routine(&failing, &caller));
        assert!(
            !limited(5_000).is_routine(&failing, &caller),
            "a time limit Google now states"
        );
        let rotated = GrantOutcome::Refreshed {
            new_token: Some(token()),
            refresh_expires_at: None,
            drive: DriveOutcome::Skipped,
            scopes: None,
        };
        assert!(!rotated.is_routine(&failing, &caller), "a rotated token");
        for outcome in [
            GrantOutcome::Released,
            GrantOutcome::Revoked {
                reason: "invalid_grant".into(),
                likely_cause: "user_revoked".into(),
            },
        ] {
            assert!(!outcome.is_routine(&failing, &caller), "{outcome:?}");
        }
    }
}
