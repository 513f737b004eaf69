//! The offline job (DESIGN §8): for every active grant, take a lease, open the refresh
//! token, get a fresh access token, reach the user's Drive `appDataFolder` as
//! `DRIVE_SYNC` says, and record the outcome. It knows nothing of Lambda
//! ([`crate::lambda::schedule`] is the Lambda side).
//!
//! - A *cycle* ([`CycleId`]) is named by the schedule's time. A grant is done at most
//!   once a cycle (the lease's conditional write checks it), so a duplicate delivery or
//!   an overlapping invocation refreshes nothing twice.
//! - The table is read by a parallel scan (`segments`), with at most `concurrency` grants
//!   in flight and one [`Pacer`] that every Google call spends its quota units from,
//!   because Google's quota — not Lambda — bounds the run (DESIGN §15).
//! - Each grant reserves what its calls will cost from the day's budget ([`DailyBudget`])
//!   before it is leased. When the day's budget is spent the run stops taking work as at
//!   its deadline: no grant is deferred for it, and the cycle resumes the next day.
//! - Failures are decided once ([`crate::grant::decide::disposition`]): `invalid_grant` revokes the
//!   grant and deletes its token; our misconfiguration stops the run; transient failures
//!   are retried ([`RetryPolicy`]), then the grant is deferred.
//! - The run stops taking work before `stop_at`, checkpoints each segment, and the next
//!   invocation for the cycle resumes there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod cycle;
pub mod metrics;
mod pacing;
mod quota;
mod report;

pub use cycle::CycleId;
pub use pacing::Pacer;
pub use quota::{DailyBudget, DriveSync, GoogleCall, QuotaCosts, quota_day};
pub use report::{Count, Report};

use crate::clock::Clock;
use crate::crypto::{Binding, KeyProvider, TokenCipher};
use crate::domain::{AccessToken, DRIVE_APPDATA_SCOPE};
use crate::google::{
    ClientCredentials, ClientSecrets, DriveApi, DriveError, GoogleTokenError, TokenEndpoint, TokenRefresh,
    TokenRevocation, Tokens,
};
use crate::grant::decide::{Disposition, Failure, disposition, likely_cause};
use crate::grant::{seal_rotated, sealed_for_cache};
use crate::store::{
    CachedToken, Checkpoint, DriveOutcome, Grant, GrantOutcome, GrantStatus, JobStore, Lease, Recorded, ScanRequest,
    StoreError, reasons,
};
use crate::upstream::{RetryPolicy, Upstream};
use report::Counters;

/// Tunables of the job.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `TOKEN_BINDING`: what sealed tokens are bound to.
    pub token_binding: String,
    pub token_uri_override: Option<String>,
    pub segments: u32,
    pub concurrency: usize,
    pub lease: Duration,
    pub page_size: i32,
    pub retry: RetryPolicy,
    /// A deferred grant waits `defer_base·2^(failures-1)`, at most `defer_max`.
    pub defer_base: Duration,
    pub defer_max: Duration,
    /// How long checkpoints and the cycle's done marker are kept.
    pub state_ttl: Duration,
    /// Stored tokens that may fail to open in one run, more than opened, before the run
    /// stops as misconfigured.
    pub open_failure_limit: u64,
    /// `GOOGLE_REVOKE_URI`, for grants the user asked to delete.
    pub revoke_uri: String,
    /// How long a deleted grant's tombstone is kept.
    pub tombstone_ttl: Duration,
    /// `DRIVE_SYNC`: the Drive work of a grant with `drive.appdata`.
    pub drive_sync: DriveSync,
    /// What each Google call costs in quota units.
    pub quota_costs: QuotaCosts,
    /// `GOOGLE_DAILY_UNIT_BUDGET` (0: none) and the time zone of Google's quota day.
    pub daily_unit_budget: u64,
    pub quota_day_zone: jiff::tz::TimeZone,
    /// Units one claim on the day's budget takes at a time (a write to the state table
    /// per block, not per call).
    pub budget_block: u64,
}

/// Why a run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `invalid_client`, `unauthorized_client`, a missing secret, KMS denied: an operator
    /// must act; users are not at fault and no grant was changed for it.
    #[error("the run stopped: misconfiguration: {0}")]
    Misconfigured(Upstream),
    #[error("the run could not read or write its state: {0}")]
    Store(#[from] StoreError),
}

/// The offline job over its ports.
pub struct OfflineJob<T, D, S, K, P, C> {
    pub token_endpoint: T,
    pub drive: D,
    pub store: S,
    pub cipher: TokenCipher<K>,
    /// Seals the access tokens the job caches for the access-token function.
    pub access_cipher: TokenCipher<K, AccessToken>,
    pub secrets: P,
    pub clock: C,
    pub settings: JobSettings,
    pub pacer: Pacer,
}

impl<T, D, S, K, P, C> std::fmt::Debug for OfflineJob<T, D, S, K, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineJob")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The state one run shares across its segments.
struct Run<'a> {
    cycle: &'a CycleId,
    owner: &'a str,
    stop_at: Instant,
    credentials: &'a ClientCredentials,
    token_uri: &'a str,
    in_flight: Semaphore,
    stop: AtomicBool,
    misconfiguration: std::sync::Mutex<Option<Upstream>>,
    counters: Counters,
    /// Stored tokens opened, and not opened, in this run: the circuit breaker's inputs.
    opened: AtomicU64,
    opens_failed: AtomicU64,
    budget: DailyBudget,
    /// The day's budget is spent: take no more work.
    budget_spent: AtomicBool,
}

impl Run<'_> {
    /// Take no more work: the deadline is near, the run must stop, or the day's budget
    /// is spent.
    fn stopping(&self) -> bool {
        self.interrupted() || self.budget_spent.load(Ordering::SeqCst)
    }

    /// Work in progress ends too: the deadline is near, or the run must stop. (A spent
    /// budget lets a grant make the calls it reserved.)
    fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.stop_at
    }

    fn stop_for(&self, cause: Upstream) {
        tracing::error!(error = %cause, "MISCONFIGURATION: stopping the run");
        self.stop.store(true, Ordering::SeqCst);
        let mut slot = self
            .misconfiguration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(cause);
    }
}

/// Units a grant reserved from the day's budget for the calls it will make first; what
/// it does not spend goes back to the run's share when it is done.
#[derive(Debug, Default)]
struct Prepaid(AtomicU64);

impl Prepaid {
    fn spend(&self, units: u64) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(units))
            .is_ok()
    }
}

/// A Google call that failed, or that the day's budget could not pay for.
#[derive(Debug)]
enum Attempt<E> {
    Failed(E),
    OverBudget,
}

/// How one grant went, for the segment's bookkeeping.
#[derive(Debug, PartialEq, Eq)]
enum Worked {
    Done,
    Skipped,
    /// Not started, or let go: the deadline was near or the run is stopping.
    NotStarted,
}

impl<T, D, S, K, P, C> OfflineJob<T, D, S, K, P, C>
where
    T: TokenEndpoint,
    D: DriveApi,
    S: JobStore,
    K: KeyProvider,
    P: ClientSecrets,
    C: Clock,
{
    /// Runs (or resumes) `cycle` until it is done or `stop_at` comes.
    #[tracing::instrument(name = "job_run", skip_all, fields(cycle = cycle.as_str()))]
    pub async fn run(&self, cycle: &CycleId, owner: &str, stop_at: Instant) -> Result<Report, RunError> {
        let started = Instant::now();
        let mut report = Report {
            cycle: cycle.as_str().to_owned(),
            ..Report::default()
        };
        if self.store.cycle_done(cycle.as_str()).await? {
            report.already_done = true;
            report.complete = true;
            return Ok(report);
        }
        let credentials = self.secrets.current().await.map_err(|e| match e {
            Upstream::Misconfigured { .. } => RunError::Misconfigured(e),
            transient => RunError::Store(StoreError::Upstream(transient)),
        })?;
        let token_uri = credentials.token_uri(self.settings.token_uri_override.as_deref());
        let run = Run {
            cycle,
            owner,
            stop_at,
            credentials: &credentials,
            token_uri,
            in_flight: Semaphore::new(self.settings.concurrency.max(1)),
            stop: AtomicBool::new(false),
            misconfiguration: std::sync::Mutex::new(None),
            counters: Counters::default(),
            opened: AtomicU64::new(0),
            opens_failed: AtomicU64::new(0),
            budget: DailyBudget::new(
                self.settings.daily_unit_budget,
                self.settings.budget_block,
                self.settings.quota_day_zone.clone(),
            ),
            budget_spent: AtomicBool::new(false),
        };
        let mut complete = false;
        // A run on a day whose budget is spent does nothing, not even a scan.
        if run.budget.take(&self.store, 0, self.clock.now_unix()).await? {
            let worked = self.segments(&run).await;
            // Units claimed and not spent go back, whatever stopped the run.
            run.budget.settle(&self.store).await?;
            complete = worked?;
        } else {
            run.budget_spent.store(true, Ordering::SeqCst);
        }
        if let Some(cause) = run
            .misconfiguration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(RunError::Misconfigured(cause));
        }
        if complete {
            self.store
                .mark_cycle_done(cycle.as_str(), self.clock.now_unix(), self.settings.state_ttl)
                .await?;
        }
        run.counters.fill(&mut report);
        report.complete = complete;
        report.budget_exhausted = !complete && run.budget_spent.load(Ordering::SeqCst);
        report.stopped_at_deadline = !complete && !report.budget_exhausted && Instant::now() >= stop_at;
        if report.budget_exhausted {
            tracing::warn!(
                budget = self.settings.daily_unit_budget,
                "the day's Google quota budget is spent: the cycle resumes when the quota day turns over"
            );
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Works through every scan segment from its checkpoint; `Ok(true)` when all are done.
    async fn segments(&self, run: &Run<'_>) -> Result<bool, RunError> {
        let checkpoints = self
            .store
            .checkpoints(run.cycle.as_str(), self.settings.segments)
            .await?;
        let segments = join_all(checkpoints.into_iter().map(|c| self.segment(run, c))).await;
        let mut complete = true;
        for segment in segments {
            complete &= segment?;
        }
        Ok(complete)
    }

    /// Works through one scan segment from its checkpoint; `Ok(true)` when it is done.
    async fn segment(&self, run: &Run<'_>, mut checkpoint: Checkpoint) -> Result<bool, RunError> {
        let cycle = run.cycle.as_str();
        while !checkpoint.done {
            if run.stopping() {
                return Ok(false);
            }
            let page = self
                .store
                .scan_active(ScanRequest {
                    segment: checkpoint.segment,
                    segments: self.settings.segments,
                    start: checkpoint.start.as_deref(),
                    limit: self.settings.page_size,
                    cycle,
                    now: self.clock.now_unix(),
                })
                .await?;
            run.counters.add(Count::scanned, page.grants.len() as u64);
            run.counters.add(Count::malformed, page.malformed);
            let outcomes = join_all(page.grants.into_iter().map(|grant| self.grant(run, grant))).await;
            let mut unfinished = false;
            for outcome in outcomes {
                unfinished |= outcome? == Worked::NotStarted;
            }
            if unfinished {
                // Resume re-reads this page; what was done this cycle is skipped then.
                return Ok(false);
            }
            checkpoint = Checkpoint {
                segment: checkpoint.segment,
                done: page.next.is_none(),
                start: page.next,
            };
            self.store
                .save_checkpoint(cycle, &checkpoint, self.clock.now_unix(), self.settings.state_ttl)
                .await?;
        }
        Ok(true)
    }

    async fn grant(&self, run: &Run<'_>, grant: Grant) -> Result<Worked, RunError> {
        let Ok(_permit) = run.in_flight.acquire().await else {
            return Ok(Worked::NotStarted);
        };
        if run.stopping() {
            return Ok(Worked::NotStarted);
        }
        let now = self.clock.now_unix();
        let planned = if grant.status == GrantStatus::Revoking {
            u64::from(self.settings.quota_costs.revoke)
        } else {
            self.settings
                .quota_costs
                .per_grant(self.settings.drive_sync, grant.scopes.contains(DRIVE_APPDATA_SCOPE))
        };
        if !run.budget.take(&self.store, planned, now).await? {
            run.budget_spent.store(true, Ordering::SeqCst);
            return Ok(Worked::NotStarted);
        }
        let prepaid = Prepaid(AtomicU64::new(planned));
        let worked = self.leased(run, grant, now, &prepaid).await;
        run.budget.give_back(prepaid.0.load(Ordering::SeqCst)).await;
        worked
    }

    /// Leases `grant`, works it, and records the outcome.
    async fn leased(&self, run: &Run<'_>, grant: Grant, now: u64, prepaid: &Prepaid) -> Result<Worked, RunError> {
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
            drive_planned: grant.status == GrantStatus::Active && self.drive_planned(&grant),
            released: released.as_deref().filter(|r| grant.lease_owner.as_deref() == Some(*r)),
        };
        let Some(leased) = self.store.lease(&grant.sub, lease).await? else {
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
                    DriveOutcome::NotGranted => Count::refresh_only,
                    DriveOutcome::Failed { .. } => Count::drive_deferred,
                });
            }
            GrantOutcome::Deferred { .. } => c.bump(Count::deferred),
            GrantOutcome::Revoked { .. } => c.bump(Count::revoked),
            GrantOutcome::Deleted { .. } => c.bump(Count::deleted),
            GrantOutcome::ReconsentRequired { .. } => c.bump(Count::reconsent_required),
            GrantOutcome::Unopened { .. } => c.bump(Count::undecryptable),
            GrantOutcome::Released => return Ok(Worked::NotStarted),
        }
        Ok(Worked::Done)
    }

    /// Whether `grant` gets Drive work this cycle.
    fn drive_planned(&self, grant: &Grant) -> bool {
        grant.scopes.contains(DRIVE_APPDATA_SCOPE) && self.settings.drive_sync != DriveSync::Off
    }

    /// Works one leased grant and decides how it ends this cycle. Never fails: every
    /// failure becomes an outcome to record. The access token it obtains, sealed for the
    /// cache, is left in `cached`: the outcome's record stores it.
    async fn work(
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
            Err(e) => return self.settle(run, grant, disposition(Failure::Open(&e))),
        };

        let refreshed = self
            .retrying(
                run,
                Some((GoogleCall::Refresh, prepaid)),
                || async {
                    self.token_endpoint
                        .refresh(TokenRefresh {
                            token_uri: run.token_uri,
                            credentials: run.credentials,
                            refresh_token: &refresh_token,
                        })
                        .await
                },
                |e| disposition(Failure::Refresh(e)),
            )
            .await;
        let tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(Attempt::Failed(e)) => return self.settle(run, grant, disposition(Failure::Refresh(&e))),
            Err(Attempt::OverBudget) => return GrantOutcome::Released,
        };
        let refresh_expires_at = tokens
            .refresh_token_lifetime
            .map(|limit| self.clock.now_unix() + limit.as_secs());
        let mut new_token = match &tokens.refresh_token {
            Some(rotated) => match seal_rotated(&self.cipher, sealed, rotated, binding, run.stop_at).await {
                Ok(sealed) => Some(sealed),
                Err(e) => {
                    tracing::error!(sub = %grant.sub, error = %e, "MISCONFIGURATION: a rotated refresh token could not be sealed; the grant is deferred, its stored token as it was");
                    run.counters.bump(Count::rotated_unsealed);
                    return self.settle(run, grant, disposition(Failure::Seal(&e)));
                }
            },
            None => None,
        };
        *cached = self.sealed_for_cache(grant, binding, &tokens).await;
        let drive_next = self.drive_planned(grant);
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
                        drive: DriveOutcome::Failed {
                            failure_count: failures,
                            next_attempt_at: self.next_attempt(failures),
                            reason: format!("storing the rotated token: {e}"),
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
                drive: DriveOutcome::NotGranted,
            };
        }
        let drive = match self.settings.drive_sync {
            DriveSync::List => self.list_drive(run, grant, &tokens.access_token, prepaid).await,
            DriveSync::Get | DriveSync::Off => self.reach_drive(run, &tokens.access_token, prepaid).await,
        };
        let drive = match drive {
            Ok(drive) => drive,
            // Paid for with the refresh: cannot happen, but let go rather than guess.
            Err(Attempt::OverBudget) => DriveOutcome::NotGranted,
            Err(Attempt::Failed(e)) => match disposition(Failure::Drive(&e)) {
                Disposition::RefreshOnly => DriveOutcome::NotGranted,
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
                    }
                }
            },
        };
        GrantOutcome::Refreshed {
            new_token,
            refresh_expires_at,
            drive,
        }
    }

    /// `DRIVE_SYNC=get`: one `files.get` of the `appDataFolder`.
    async fn reach_drive(
        &self,
        run: &Run<'_>,
        token: &AccessToken,
        prepaid: &Prepaid,
    ) -> Result<DriveOutcome, Attempt<DriveError>> {
        self.retrying(
            run,
            Some((GoogleCall::FilesGet, prepaid)),
            || {
                run.counters.bump(Count::drive_calls);
                self.drive.app_data_folder(token)
            },
            |e| disposition(Failure::Drive(e)),
        )
        .await?;
        Ok(DriveOutcome::Reached)
    }

    /// `DRIVE_SYNC=list`: `files.list` of the `appDataFolder`, every page, each paid for
    /// as it is asked.
    async fn list_drive(
        &self,
        run: &Run<'_>,
        grant: &Grant,
        token: &AccessToken,
        prepaid: &Prepaid,
    ) -> Result<DriveOutcome, Attempt<DriveError>> {
        let listing = self
            .retrying(
                run,
                None,
                || {
                    self.drive.list_app_data(token, || async {
                        // Each grant's work ends with the run: no page past the deadline,
                        // nor one the day's budget cannot pay for.
                        if run.interrupted() {
                            return false;
                        }
                        run.counters.bump(Count::drive_calls);
                        self.google_call(run, GoogleCall::FilesList, prepaid).await
                    })
                },
                |e| disposition(Failure::Drive(e)),
            )
            .await?;
        if listing.truncated {
            tracing::warn!(sub = %grant.sub, pages = listing.pages, "Drive listing truncated");
        }
        Ok(DriveOutcome::Synced {
            files: listing.files,
            truncated: listing.truncated,
        })
    }

    /// A grant the user asked to delete while Google was unreachable: revoke its token
    /// (never refresh it), then it becomes a tombstone. A transient failure defers it.
    async fn finish_deletion(&self, run: &Run<'_>, grant: &Grant, prepaid: &Prepaid) -> GrantOutcome {
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
            Err(e) => return self.settle(run, grant, disposition(Failure::Open(&e))),
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
            Err(Attempt::Failed(e)) => self.settle(run, grant, disposition(Failure::Refresh(&e))),
            Err(Attempt::OverBudget) => GrantOutcome::Released,
        }
    }

    /// The access token just obtained, sealed for the cache, so the access-token function
    /// serves it without Google. A failure costs only a later refresh: logged, never fatal.
    async fn sealed_for_cache(&self, grant: &Grant, binding: Binding<'_>, tokens: &Tokens) -> Option<CachedToken> {
        let now = self.clock.now_unix();
        match sealed_for_cache(&self.access_cipher, binding, grant, tokens, now).await {
            Ok(cached) => Some(cached),
            Err(e) => {
                tracing::warn!(sub = %grant.sub, error = %e, "access token not cached: sealing failed");
                None
            }
        }
    }

    /// The outcome of a grant whose work ended in a failure of this disposition.
    fn settle(&self, run: &Run<'_>, grant: &Grant, disposition: Disposition) -> GrantOutcome {
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
    fn next_attempt(&self, failures: u32) -> u64 {
        let wait = self
            .settings
            .defer_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.defer_max);
        self.clock.now_unix() + wait.as_secs()
    }

    /// Every HTTP call to Google goes through here: paid for from the grant's
    /// reservation or the day's budget (`false`: the budget is spent, make no call),
    /// counted, and given its units' slot by the run's pacer.
    async fn google_call(&self, run: &Run<'_>, call: GoogleCall, prepaid: &Prepaid) -> bool {
        let units = self.settings.quota_costs.units(call);
        if !prepaid.spend(u64::from(units)) {
            match run
                .budget
                .take(&self.store, u64::from(units), self.clock.now_unix())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    run.budget_spent.store(true, Ordering::SeqCst);
                    return false;
                }
                Err(e) => {
                    // The count cannot be read: spend nothing more than was reserved.
                    tracing::warn!(error = %e, "the day's quota count could not be claimed");
                    return false;
                }
            }
        }
        run.counters.bump(Count::google_calls);
        run.counters.add(Count::quota_units, u64::from(units));
        self.pacer.acquire(units).await;
        true
    }

    /// Calls `call` until it succeeds, fails for good, runs out of attempts, or the next
    /// wait would pass the deadline. With `paid`, each attempt is first paid for as that
    /// Google call; an attempt the day's budget cannot pay for is not made (the failure
    /// before it stands, or `OverBudget` if there was none).
    async fn retrying<R, E, F, Fut>(
        &self,
        run: &Run<'_>,
        paid: Option<(GoogleCall, &Prepaid)>,
        mut call: F,
        decide: impl Fn(&E) -> Disposition,
    ) -> Result<R, Attempt<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut attempt = 0;
        let mut last = None;
        loop {
            if let Some((google_call, prepaid)) = paid
                && !self.google_call(run, google_call, prepaid).await
            {
                return Err(last.map_or(Attempt::OverBudget, Attempt::Failed));
            }
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            attempt += 1;
            let Disposition::Transient { retry_after, .. } = decide(&error) else {
                return Err(Attempt::Failed(error));
            };
            let wait = self.settings.retry.delay(attempt - 1, retry_after);
            if attempt >= self.settings.retry.max_attempts || Instant::now() + wait >= run.stop_at {
                return Err(Attempt::Failed(error));
            }
            run.counters.bump(Count::retries);
            tokio::time::sleep(wait).await;
            last = Some(error);
        }
    }
}
