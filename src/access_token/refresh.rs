//! One refresh under the grant's lease, and how the lease ends: the cached token's write
//! ends a routine refresh's lease; anything else is recorded on the grant as it lets go.

use tokio::time::Instant;

use super::{AccessError, AccessRequest, AccessTokens, IssuedToken, MAX_TOKENS_TRIED, unavailable};
use crate::clock::Clock;
use crate::google::{ClientSecrets, Tokens, refresh_as_client};
use crate::grant::decide::{Disposition, Failure, disposition, ended_by_google};
use crate::grant::{answered_time_limit, changed_scopes, seal_rotated, sealed_for_cache, token_scopes};
use crate::ports::Ports;
use crate::store::{
    AccessStore, AccessTokenCache, AccessView, DriveOutcome, Grant, GrantOutcome, GrantStatus, Holder, Recorded,
    reasons,
};
use crate::upstream::Upstream;

impl<P: Ports> AccessTokens<P> {
    /// Refreshes while holding the lease, and always lets go of it.
    pub(super) async fn refresh_under_lease(
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
            Some(token) => (Ok(token), Some(GrantOutcome::Released), leased),
            None => self.refresh(leased, request, owner, deadline).await,
        };
        // A routine refresh's cached token already ended the lease.
        if let Some(end) = end {
            match self.store.end_lease(&holder, owner, self.clock.now_unix(), &end).await {
                Ok(Recorded::Written | Recorded::Superseded) => {}
                Ok(Recorded::LeaseLost) => tracing::warn!("the lease ran out before the refresh was recorded"),
                // The lease runs out by itself; a rotated token would be lost, so say so.
                Err(e) => {
                    tracing::error!(error = %e, rotated = matches!(end, GrantOutcome::Refreshed { new_token: Some(_), .. }), "letting go of the lease failed")
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
    pub(super) async fn refresh(
        &self,
        mut grant: Grant,
        request: &AccessRequest,
        owner: &str,
        deadline: Instant,
    ) -> (Result<IssuedToken, AccessError>, Option<GrantOutcome>, Grant) {
        // Read before the token is opened: a secret that cannot be read is the operator's
        // to fix, never a failed refresh of this grant. (Cached: `as_client` reads it again.)
        if let Err(e) = self.secrets.current().await {
            return (Err(self.upstream(e)), Some(GrantOutcome::Released), grant);
        }
        let mut tried = 0;
        loop {
            tried += 1;
            let Some(sealed) = &grant.refresh_token else {
                return (
                    Err(AccessError::ReauthorizationRequired {
                        reason: reasons::NO_REFRESH_TOKEN.into(),
                        likely_cause: None,
                    }),
                    Some(GrantOutcome::Released),
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
                    return (Err(answer), Some(GrantOutcome::Released), grant);
                }
            };
            let override_uri = self.settings.token_uri_override.as_deref();
            let refreshed = refresh_as_client(&self.secrets, &self.token_endpoint, override_uri, &refresh_token).await;
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
                                    return (Err(answer), Some(GrantOutcome::Released), grant);
                                }
                            }
                        }
                        None => None,
                    };
                    let now = self.clock.now_unix();
                    let refresh_expires_at = answered_time_limit(&tokens, now);
                    let end = GrantOutcome::Refreshed {
                        new_token,
                        refresh_expires_at,
                        drive: DriveOutcome::Skipped,
                        scopes: changed_scopes(&tokens, &grant),
                    };
                    let end = self.cache(&grant, &tokens, now, owner, end).await;
                    let issued = IssuedToken {
                        expires_at: now.saturating_add(tokens.expires_in.as_secs()),
                        scopes: token_scopes(&tokens, &grant),
                        refresh_expires_at: refresh_expires_at.or(grant.refresh_expires_at),
                        access_token: tokens.access_token,
                    };
                    return (Ok(issued), end, grant);
                }
                Err(e) => e,
            };
            let decided = disposition(Failure::Refresh(&error));
            match decided.clone() {
                Disposition::Revoke { reason, .. } | Disposition::Reauthenticate { reason } => {
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
                        Err(e) => return (Err(e.into()), Some(GrantOutcome::Released), grant),
                    }
                    let now = self.clock.now_unix();
                    let testing = self.settings.consent_testing;
                    let Some((end, cause)) = ended_by_google(&decided, &grant, testing, now) else {
                        return (
                            Err(AccessError::Misconfigured(reason)),
                            Some(GrantOutcome::Released),
                            grant,
                        );
                    };
                    tracing::info!(
                        reason,
                        likely_cause = cause.as_str(),
                        "Google refused the grant's refresh token"
                    );
                    return (
                        Err(AccessError::ReauthorizationRequired {
                            reason,
                            likely_cause: Some(cause.as_str().to_owned()),
                        }),
                        Some(end),
                        grant,
                    );
                }
                Disposition::Transient { retry_after, reason } => {
                    let floor = self.settings.force_refresh_floor;
                    let now = self.clock.now_unix();
                    // Google's `Retry-After` holds for every caller, not only this one.
                    let retry_at = retry_after.map(|wait| now.saturating_add(wait.as_secs()));
                    if let Some(until) = retry_at {
                        self.held_off.note(&request.sub, until, now);
                    }
                    let keep = retry_after.unwrap_or_default().max(floor).as_secs();
                    if let Err(e) = self.store.note_failure(&request.sub, now, retry_at, keep).await {
                        tracing::warn!(error = %e, "the failed refresh could not be noted");
                    }
                    tracing::warn!(error = %reason, "refresh failed; the caller is told to retry");
                    let retry_after = retry_after.unwrap_or_default().max(floor);
                    return (
                        Err(unavailable(retry_after, reason)),
                        Some(GrantOutcome::Released),
                        grant,
                    );
                }
                other => {
                    tracing::error!(error = %error, disposition = ?other, "MISCONFIGURATION: the refresh was refused");
                    return (
                        Err(AccessError::Misconfigured(error.to_string())),
                        Some(GrantOutcome::Released),
                        grant,
                    );
                }
            }
        }
    }

    /// Caches a fresh token, sealed; a failure costs only a later refresh. A routine
    /// refresh ([`GrantOutcome::is_routine`]) is recorded by that write alone, which ends the
    /// lease (`None`); anything else is left for the grant's write.
    pub(super) async fn cache(
        &self,
        grant: &Grant,
        tokens: &Tokens,
        now: u64,
        owner: &str,
        end: GrantOutcome,
    ) -> Option<GrantOutcome> {
        let cached = match sealed_for_cache(&self.access_cipher, self.binding(grant), grant, tokens, now).await {
            Ok(cached) => cached,
            Err(e) => {
                tracing::warn!(error = %e, "the access token could not be sealed for the cache");
                return Some(end);
            }
        };
        if end.is_routine(grant, &Holder::Caller { owner, now }) {
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

    pub(super) fn upstream(&self, e: Upstream) -> AccessError {
        match e {
            Upstream::Misconfigured { .. } => {
                tracing::error!(error = %e, "MISCONFIGURATION");
                AccessError::Misconfigured(e.to_string())
            }
            Upstream::Unavailable { retry_after, .. } => unavailable(retry_after.unwrap_or_default(), e.to_string()),
        }
    }
}
