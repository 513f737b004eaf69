//! One grant's work under its lease: lease, open, refresh, keep a rotated token, reach
//! Drive or finish a deletion, and record the outcome.

use std::sync::atomic::Ordering;

use super::run::{Attempt, Prepaid, Run, Worked};
use super::{Count, DriveSync, GoogleCall, OfflineJob, RunError};
use crate::clock::Clock;
use crate::crypto::Binding;
use crate::domain::{DRIVE_APPDATA_SCOPE, Scopes};
use crate::google::{GoogleTokenError, TokenEndpoint, TokenRevocation, Tokens, refresh_as_client};
use crate::grant::decide::{Disposition, Failure, disposition, error_class};
use crate::grant::health::end_to_announce;
use crate::grant::{answered_time_limit, changed_scopes, seal_rotated, sealed_for_cache, token_scopes};
use crate::ports::Ports;
use crate::store::{
    CachedToken, DriveOutcome, Grant, GrantOutcome, GrantStatus, JobStore, Lease, Recorded, StoreError, reasons,
};
use crate::upstream::retry_until;

impl<P: Ports> OfflineJob<P> {
    /// Leases `grant`, works it, and records the outcome.
    pub(super) async fn leased(
        &self,
        run: &Run<'_>,
        grant: Grant,
        now: u64,
        prepaid: &Prepaid,
    ) -> Result<Worked, RunError> {
        // Held, as scanned: a routine record may have ended the lease in the cached
        // token's item (the grant itself is not written then).
        let released = if grant.lease_until.is_some_and(|until| until >= now) {
            self.store.released_lease(&grant.sub).await?
        } else {
            None
        };
        let lease = Lease {
            owner: run.owner,
            cycle: run.cycle.as_str(),
            now,
            until: now + self.settings.lease.as_secs(),
            drive_planned: grant.status == GrantStatus::Active && self.drive_planned(&grant, now),
            notice: (grant.status == GrantStatus::Active)
                .then(|| {
                    end_to_announce(
                        &grant,
                        self.settings.consent_testing,
                        self.settings.expiry_notice.as_secs(),
                        now,
                    )
                })
                .flatten(),
            released: released.as_deref().filter(|r| grant.lease_owner.as_deref() == Some(*r)),
        };
        // The lease is the grant's first write: one that met a transaction or was
        // throttled is tried again with the run's backoff, within the run's time.
        let leasing = retry_until(
            &self.settings.retry,
            run.stop_at,
            self.settings.aws_call_timeout,
            || self.store.lease(&grant.sub, lease),
            StoreError::may_pass,
        );
        let Some(leased) = leasing.await? else {
            run.counters.bump(Count::skipped);
            return Ok(Worked::Skipped);
        };
        let mut cached = None;
        let outcome = self.work(run, &leased, lease, prepaid, &mut cached).await;
        let now = self.clock.now_unix();
        let (recorded, was_cached) = self
            .store
            .record(&leased, Lease { now, ..lease }, &outcome, cached.as_ref())
            .await?;
        let c = &run.counters;
        if was_cached {
            c.bump(Count::access_tokens_cached);
        }
        match recorded {
            Recorded::Written => {}
            Recorded::Superseded => c.bump(Count::superseded),
            Recorded::LeaseLost => {
                tracing::warn!(sub = %leased.sub, "lease expired before the outcome was recorded");
                c.bump(Count::errors);
            }
        }
        match &outcome {
            GrantOutcome::Refreshed { new_token, drive, .. } => {
                c.bump(Count::refreshed);
                if new_token.is_some() {
                    c.bump(Count::rotated_tokens);
                }
                c.bump(match drive {
                    DriveOutcome::Synced { truncated: true, .. } => Count::drive_truncated,
                    DriveOutcome::Synced { .. } | DriveOutcome::Reached => Count::drive_synced,
                    DriveOutcome::Skipped => Count::refresh_only,
                    DriveOutcome::Failed { .. } => Count::drive_deferred,
                    DriveOutcome::Refused { .. } => Count::drive_refused,
                });
            }
            GrantOutcome::Deferred { .. } => c.bump(Count::deferred),
            GrantOutcome::Revoked { .. } => c.bump(Count::revoked),
            GrantOutcome::Deleted { .. } => c.bump(Count::deleted),
            GrantOutcome::ReconsentRequired { .. } | GrantOutcome::Reauthenticate { .. } => {
                c.bump(Count::reconsent_required);
            }
            GrantOutcome::Unopened { .. } => c.bump(Count::undecryptable),
            GrantOutcome::Released => return Ok(Worked::NotStarted),
        }
        Ok(Worked::Done)
    }

    /// Whether `grant` gets Drive work this cycle, at `now`: it holds Drive's scope, Drive
    /// work is on, and its last Drive call is older than `DRIVE_PROBE_EVERY` asks (the
    /// refresh, whose answer proves the grant and its scopes, runs every cycle).
    pub(super) fn drive_planned(&self, grant: &Grant, now: u64) -> bool {
        let after = self.settings.drive_probe_after.as_secs();
        let due = after == 0 || grant.last_sync_at.is_none_or(|at| now.saturating_sub(at) >= after);
        grant.scopes.contains(DRIVE_APPDATA_SCOPE) && self.settings.drive_sync != DriveSync::Off && due
    }

    /// Works one leased grant and decides how it ends this cycle. Never fails: every
    /// failure becomes an outcome to record. The access token it obtains, sealed for the
    /// cache, is left in `cached`: the outcome's record stores it.
    pub(super) async fn work(
        &self,
        run: &Run<'_>,
        grant: &Grant,
        lease: Lease<'_>,
        prepaid: &Prepaid,
        cached: &mut Option<CachedToken>,
    ) -> GrantOutcome {
        if grant.status == GrantStatus::Revoking {
            return self.finish_deletion(run, grant, prepaid).await;
        }
        if grant.refresh_expires_at.is_some_and(|at| at <= lease.now) {
            // Time-based access ran out: Google would refuse the token; call nothing.
            return GrantOutcome::ReconsentRequired {
                reason: reasons::TIME_BASED_ACCESS_EXPIRED.into(),
            };
        }
        let Some(sealed) = &grant.refresh_token else {
            return GrantOutcome::ReconsentRequired {
                reason: "no refresh token stored".into(),
            };
        };
        let binding = Binding {
            store: &self.settings.token_binding,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        };
        let refresh_token = match self.cipher.open(sealed, binding).await {
            Ok(token) => {
                run.opened.fetch_add(1, Ordering::SeqCst);
                token
            }
            Err(e) => return self.settle(run, grant, Failure::Open(&e)),
        };

        let refreshed = self
            .retrying(
                run,
                Some((GoogleCall::Refresh, prepaid)),
                || {
                    let override_uri = self.settings.token_uri_override.as_deref();
                    refresh_as_client(&self.secrets, &self.token_endpoint, override_uri, &refresh_token)
                },
                |e| disposition(Failure::Refresh(e)),
            )
            .await;
        let tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(Attempt::Failed(e)) => return self.settle(run, grant, Failure::Refresh(&e)),
            Err(Attempt::OverBudget) => return GrantOutcome::Released,
        };
        let refresh_expires_at = answered_time_limit(&tokens, self.clock.now_unix());
        let mut new_token = match &tokens.refresh_token {
            Some(rotated) => match seal_rotated(&self.cipher, sealed, rotated, binding, run.stop_at).await {
                Ok(sealed) => Some(sealed),
                Err(e) => {
                    tracing::error!(sub = %grant.sub, error = %e, "MISCONFIGURATION: a rotated refresh token could not be sealed; the grant is deferred, its stored token as it was");
                    run.counters.bump(Count::rotated_unsealed);
                    return self.settle(run, grant, Failure::Seal(&e));
                }
            },
            None => None,
        };
        *cached = self.sealed_for_cache(grant, binding, &tokens).await;
        let scopes = changed_scopes(&tokens, grant);
        // The answer's scopes are the grant's now: no Drive call without Drive's.
        let drive_next =
            self.drive_planned(grant, lease.now) && token_scopes(&tokens, grant).contains(DRIVE_APPDATA_SCOPE);
        if let (Some(token), true) = (&new_token, drive_next) {
            // Google retired the old token: keep the new one before Drive, whose listing
            // may take long or meet the deadline.
            let lease = Lease {
                now: self.clock.now_unix(),
                ..lease
            };
            match self.store.save_token(grant, lease, token).await {
                Ok(recorded) => {
                    run.counters.bump(match recorded {
                        Recorded::Written => Count::rotated_tokens,
                        // A sign-in stored a newer token meanwhile: it wins.
                        Recorded::Superseded | Recorded::LeaseLost => Count::superseded,
                    });
                    new_token = None;
                }
                Err(e) => {
                    // Leave the token to the outcome's write, and Drive to the next cycle.
                    let failures = grant.failure_count.saturating_add(1);
                    return GrantOutcome::Refreshed {
                        new_token,
                        refresh_expires_at,
                        scopes,
                        drive: DriveOutcome::Failed {
                            failure_count: failures,
                            next_attempt_at: self.next_attempt(failures),
                            reason: format!("storing the rotated token: {e}"),
                            error: "unavailable",
                        },
                    };
                }
            }
        }
        if !drive_next {
            // A keep-alive: refreshing resets Google's six-month idle expiry.
            return GrantOutcome::Refreshed {
                new_token,
                refresh_expires_at,
                drive: DriveOutcome::Skipped,
                scopes,
            };
        }
        let drive = match self.settings.drive_sync {
            DriveSync::List => self.list_drive(run, grant, &tokens.access_token, prepaid).await,
            DriveSync::Get | DriveSync::Off => self.reach_drive(run, &tokens.access_token, prepaid).await,
        };
        let drive = match drive {
            Ok(drive) => drive,
            // Paid for with the refresh: cannot happen, but let go rather than guess.
            Err(Attempt::OverBudget) => DriveOutcome::Skipped,
            Err(Attempt::Failed(e)) => {
                let error = error_class(Failure::Drive(&e));
                match disposition(Failure::Drive(&e)) {
                    Disposition::RefreshOnly => {
                        // Drive says the token lacks its scope: the grant's scopes lose it,
                        // so no later cycle calls Drive for it until the user grants it again.
                        let kept: Scopes = token_scopes(&tokens, grant)
                            .iter()
                            .filter(|s| *s != DRIVE_APPDATA_SCOPE)
                            .collect();
                        return GrantOutcome::Refreshed {
                            new_token,
                            refresh_expires_at,
                            drive: DriveOutcome::Skipped,
                            scopes: Some(kept),
                        };
                    }
                    Disposition::ApiRefused => DriveOutcome::Refused { error },
                    Disposition::StopRun(cause) => {
                        run.stop_for(cause);
                        return GrantOutcome::Released;
                    }
                    _ => {
                        let failures = grant.failure_count.saturating_add(1);
                        DriveOutcome::Failed {
                            failure_count: failures,
                            next_attempt_at: self.next_attempt(failures),
                            reason: format!("drive: {e}"),
                            error,
                        }
                    }
                }
            }
        };
        GrantOutcome::Refreshed {
            new_token,
            refresh_expires_at,
            drive,
            scopes,
        }
    }

    /// A grant the user asked to delete while Google was unreachable: revoke its token
    /// (never refresh it), then it becomes a tombstone. A transient failure defers it.
    pub(super) async fn finish_deletion(&self, run: &Run<'_>, grant: &Grant, prepaid: &Prepaid) -> GrantOutcome {
        let deleted = GrantOutcome::Deleted {
            tombstone_ttl: self.settings.tombstone_ttl,
        };
        let Some(sealed) = &grant.refresh_token else {
            return deleted;
        };
        let binding = Binding {
            store: &self.settings.token_binding,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        };
        let token = match self.cipher.open(sealed, binding).await {
            Ok(token) => token,
            // It cannot be revoked, ever: the user asked for deletion, so delete.
            Err(e) if e.is_permanent() => {
                tracing::warn!(sub = %grant.sub, error = %e, "UNREVOCABLE: the stored token never opens; deleting all we hold");
                run.counters.bump(Count::unrevocable);
                return deleted;
            }
            Err(e) => return self.settle(run, grant, Failure::Open(&e)),
        };
        let token = &token;
        let revoked = self
            .retrying(
                run,
                Some((GoogleCall::Revoke, prepaid)),
                || async {
                    self.token_endpoint
                        .revoke(TokenRevocation {
                            revoke_uri: &self.settings.revoke_uri,
                            token,
                        })
                        .await
                        .map_err(GoogleTokenError::Upstream)
                },
                |e| disposition(Failure::Refresh(e)),
            )
            .await;
        match revoked {
            Ok(at_google) => {
                tracing::info!(sub = %grant.sub, google = ?at_google, "deletion finished: revoked at Google");
                deleted
            }
            Err(Attempt::Failed(e)) => self.settle(run, grant, Failure::Refresh(&e)),
            Err(Attempt::OverBudget) => GrantOutcome::Released,
        }
    }

    /// The access token just obtained, sealed for the cache, so the access-token function
    /// serves it without Google. A failure costs only a later refresh: logged, never fatal.
    pub(super) async fn sealed_for_cache(
        &self,
        grant: &Grant,
        binding: Binding<'_>,
        tokens: &Tokens,
    ) -> Option<CachedToken> {
        let now = self.clock.now_unix();
        match sealed_for_cache(&self.access_cipher, binding, grant, tokens, now).await {
            Ok(cached) => Some(cached),
            Err(e) => {
                tracing::warn!(sub = %grant.sub, error = %e, "access token not cached: sealing failed");
                None
            }
        }
    }
}
