//! What the job does with a decided failure ([`crate::grant::decide::Disposition`]): the
//! outcome to record on the grant, or stopping the run.

use std::sync::atomic::Ordering;

use super::OfflineJob;
use super::run::Run;
use crate::clock::Clock;
use crate::crypto::KeyProvider;
use crate::google::{ClientSecrets, DriveApi, TokenEndpoint};
use crate::grant::decide::{Disposition, likely_cause};
use crate::store::{DriveOutcome, Grant, GrantOutcome, JobStore};
use crate::upstream::Upstream;

impl<T, D, S, K, P, C> OfflineJob<T, D, S, K, P, C>
where
    T: TokenEndpoint,
    D: DriveApi,
    S: JobStore,
    K: KeyProvider,
    P: ClientSecrets,
    C: Clock,
{
    /// The outcome of a grant whose work ended in a failure of this disposition.
    pub(super) fn settle(&self, run: &Run<'_>, grant: &Grant, disposition: Disposition) -> GrantOutcome {
        match disposition {
            Disposition::Revoke { reason, subtype } => {
                let cause = likely_cause(
                    subtype.as_deref(),
                    grant.token_issued_at.unwrap_or(grant.created_at),
                    grant.last_refresh_at,
                    self.clock.now_unix(),
                );
                tracing::info!(sub = %grant.sub, reason, likely_cause = cause.as_str(), "grant revoked by Google");
                GrantOutcome::Revoked {
                    reason,
                    likely_cause: cause.as_str().to_owned(),
                }
            }
            Disposition::Unopenable { reason } => {
                tracing::error!(sub = %grant.sub, error = %reason, "stored refresh token does not open; grant left as it is");
                let failed = run.opens_failed.fetch_add(1, Ordering::SeqCst) + 1;
                let opened = run.opened.load(Ordering::SeqCst);
                if failed >= self.settings.open_failure_limit && failed > opened {
                    // Not one user's bad row: the keys or the binding are not the ones
                    // that sealed these tokens. Change nothing more; tell the operator.
                    run.stop_for(Upstream::misconfigured(
                        "crypto",
                        format!(
                            "{failed} stored tokens did not open ({opened} did): TOKEN_KEY_ID or TOKEN_BINDING is not what sealed them"
                        ),
                    ));
                }
                GrantOutcome::Unopened { reason }
            }
            Disposition::StopRun(cause) => {
                run.stop_for(cause);
                GrantOutcome::Released
            }
            Disposition::Transient { reason, .. } | Disposition::Defer { reason } => {
                let failures = grant.failure_count.saturating_add(1);
                tracing::warn!(sub = %grant.sub, failures, error = %reason, "deferred");
                GrantOutcome::Deferred {
                    failure_count: failures,
                    next_attempt_at: self.next_attempt(failures),
                    reason,
                }
            }
            Disposition::RefreshOnly => GrantOutcome::Refreshed {
                new_token: None,
                refresh_expires_at: None,
                drive: DriveOutcome::NotGranted,
            },
        }
    }

    /// When a grant that failed `failures` times in a row is tried again.
    pub(super) fn next_attempt(&self, failures: u32) -> u64 {
        let wait = self
            .settings
            .defer_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.defer_max);
        self.clock.now_unix() + wait.as_secs()
    }
}
