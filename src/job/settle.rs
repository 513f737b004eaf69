//! What the job does with a decided failure ([`crate::grant::decide::Disposition`]): the
//! outcome to record on the grant, and whether the run must stop — [`settled`], a pure
//! function with its table test; [`OfflineJob::settle`] feeds it the run's counts and acts
//! on its answer.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::OfflineJob;
use super::run::Run;
use crate::clock::Clock;
use crate::grant::decide::{Disposition, Failure, disposition, ended_by_google, error_class};
use crate::ports::Ports;
use crate::store::{DriveOutcome, Grant, GrantOutcome};
use crate::upstream::Upstream;

/// How long a grant that failed waits before it is tried again: `base·2^(failures-1)`,
/// at most `max`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deferral {
    pub base: Duration,
    pub max: Duration,
}

impl Deferral {
    /// When a grant that failed `failures` times in a row is tried again, from `now`.
    pub(super) fn next_attempt(self, now: u64, failures: u32) -> u64 {
        let wait = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.max);
        now + wait.as_secs()
    }
}

/// Stored tokens opened and not opened so far in the run (this grant's included), and the
/// `OPEN_FAILURE_LIMIT`: the circuit breaker's inputs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Opens {
    pub failed: u64,
    pub opened: u64,
    pub limit: u64,
}

/// The outcome to record for a grant whose work ended in `disposition` at `now`, and the
/// cause to stop the run for, if it must stop.
pub(super) fn settled(
    disposition: Disposition,
    error: &'static str,
    grant: &Grant,
    consent_testing: bool,
    now: u64,
    deferral: Deferral,
    opens: Opens,
) -> (GrantOutcome, Option<Upstream>) {
    if let Some((outcome, _)) = ended_by_google(&disposition, grant, consent_testing, now) {
        return (outcome, None);
    }
    match disposition {
        Disposition::Revoke { .. } | Disposition::Reauthenticate { .. } => (GrantOutcome::Released, None),
        Disposition::Unopenable { reason } => {
            // Many in one run, more than open: not one user's bad row but keys or a
            // binding that did not seal these tokens. Change nothing more; tell the
            // operator.
            let stop = (opens.failed >= opens.limit && opens.failed > opens.opened).then(|| {
                Upstream::misconfigured(
                    "crypto",
                    format!(
                        "{} stored tokens did not open ({} did): TOKEN_KEY_ID or TOKEN_BINDING is not what sealed them",
                        opens.failed, opens.opened
                    ),
                )
            });
            (GrantOutcome::Unopened { reason }, stop)
        }
        Disposition::StopRun(cause) => (GrantOutcome::Released, Some(cause)),
        Disposition::Transient { reason, .. } | Disposition::Defer { reason } => {
            let failures = grant.failure_count.saturating_add(1);
            let outcome = GrantOutcome::Deferred {
                failure_count: failures,
                next_attempt_at: deferral.next_attempt(now, failures),
                reason,
                error,
            };
            (outcome, None)
        }
        // Drive's, decided where Drive is called: a refresh that reached it.
        Disposition::RefreshOnly | Disposition::ApiRefused => {
            let outcome = GrantOutcome::Refreshed {
                new_token: None,
                refresh_expires_at: None,
                drive: DriveOutcome::Skipped,
                scopes: None,
            };
            (outcome, None)
        }
    }
}

impl<P: Ports> OfflineJob<P> {
    /// The outcome of a grant whose work ended in `failure`, by its disposition; stops
    /// the run when [`settled`] says so.
    pub(super) fn settle(&self, run: &Run<'_>, grant: &Grant, failure: Failure<'_>) -> GrantOutcome {
        let disposition = disposition(failure);
        let failed = if matches!(disposition, Disposition::Unopenable { .. }) {
            run.opens_failed.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            run.opens_failed.load(Ordering::SeqCst)
        };
        let opens = Opens {
            failed,
            opened: run.opened.load(Ordering::SeqCst),
            limit: self.settings.open_failure_limit,
        };
        let error = error_class(failure);
        let now = self.clock.now_unix();
        let testing = self.settings.consent_testing;
        let (outcome, stop) = settled(disposition, error, grant, testing, now, self.deferral(), opens);
        match &outcome {
            GrantOutcome::Revoked { reason, likely_cause } => {
                tracing::info!(sub = %grant.sub, reason, likely_cause, "grant revoked by Google");
            }
            GrantOutcome::Reauthenticate { reason } => {
                tracing::info!(sub = %grant.sub, reason, "Google wants the user to sign in again; the token is kept");
            }
            GrantOutcome::Unopened { reason } => {
                tracing::error!(sub = %grant.sub, error = %reason, "stored refresh token does not open; grant left as it is");
            }
            GrantOutcome::Deferred {
                failure_count, reason, ..
            } => {
                tracing::warn!(sub = %grant.sub, failures = failure_count, error = %reason, "deferred");
            }
            _ => {}
        }
        if let Some(cause) = stop {
            run.stop_for(cause);
        }
        outcome
    }

    fn deferral(&self) -> Deferral {
        Deferral {
            base: self.settings.defer_base,
            max: self.settings.defer_max,
        }
    }

    /// When a grant that failed `failures` times in a row is tried again.
    pub(super) fn next_attempt(&self, failures: u32) -> u64 {
        self.deferral().next_attempt(self.clock.now_unix(), failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_800_000_000;

    fn grant(failure_count: u32) -> Grant {
        let mut grant = crate::store::sample_grant("openid", NOW - 7 * DAY);
        grant.failure_count = failure_count;
        grant.last_refresh_at = Some(NOW - 3_600);
        grant
    }

    fn said(outcome: &GrantOutcome, stop: Option<&Upstream>) -> String {
        let outcome = match outcome {
            GrantOutcome::Revoked { reason, likely_cause } => format!("revoked {reason} ({likely_cause})"),
            GrantOutcome::Unopened { .. } => "unopened".into(),
            GrantOutcome::Released => "released".into(),
            GrantOutcome::Deferred {
                failure_count,
                next_attempt_at,
                ..
            } => format!("deferred {failure_count} +{}s", next_attempt_at - NOW),
            GrantOutcome::Refreshed {
                drive: DriveOutcome::Skipped,
                new_token: None,
                ..
            } => "refresh only".into(),
            other => format!("{other:?}"),
        };
        match stop {
            Some(_) => format!("{outcome}; stop"),
            None => outcome,
        }
    }

    #[test]
    fn each_disposition_settles_as_the_job_records_it() {
        let deferral = Deferral {
            base: Duration::from_secs(300),
            max: Duration::from_secs(3_600),
        };
        let few = Opens {
            failed: 1,
            opened: 40,
            limit: 10,
        };
        let many = Opens {
            failed: 10,
            opened: 3,
            limit: 10,
        };
        let many_but_most_open = Opens {
            failed: 10,
            opened: 30,
            limit: 10,
        };
        let transient = || Disposition::Transient {
            retry_after: None,
            reason: "google-token is unavailable".into(),
        };
        let rows = [
            (
                Disposition::Revoke {
                    reason: "invalid_grant".into(),
                    subtype: None,
                },
                0,
                few,
                "revoked invalid_grant (consent_screen_in_testing)",
            ),
            (
                Disposition::Revoke {
                    reason: "invalid_grant:invalid_rapt".into(),
                    subtype: Some("invalid_rapt".into()),
                },
                0,
                few,
                "revoked invalid_grant:invalid_rapt (reauthentication_required)",
            ),
            (
                Disposition::Unopenable {
                    reason: "tampered".into(),
                },
                0,
                few,
                "unopened",
            ),
            (
                Disposition::Unopenable {
                    reason: "tampered".into(),
                },
                0,
                many,
                "unopened; stop",
            ),
            (
                Disposition::Unopenable {
                    reason: "tampered".into(),
                },
                0,
                many_but_most_open,
                "unopened",
            ),
            (
                Disposition::StopRun(Upstream::misconfigured("google-token", "invalid_client")),
                0,
                few,
                "released; stop",
            ),
            (transient(), 0, few, "deferred 1 +300s"),
            (transient(), 2, few, "deferred 3 +1200s"),
            (transient(), 9, few, "deferred 10 +3600s"),
            (
                Disposition::Defer {
                    reason: "drive: 401".into(),
                },
                0,
                few,
                "deferred 1 +300s",
            ),
            (Disposition::RefreshOnly, 0, few, "refresh only"),
        ];
        for (disposition, failures, opens, expected) in rows {
            let case = format!("{disposition:?} after {failures} failures");
            let (outcome, stop) = settled(
                disposition,
                "unavailable",
                &grant(failures),
                false,
                NOW,
                deferral,
                opens,
            );
            assert_eq!(said(&outcome, stop.as_ref()), expected, "{case}");
        }
    }
}
