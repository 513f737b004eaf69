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

mod calls;
mod cycle;
mod drive;
pub mod metrics;
mod pacing;
mod quota;
mod report;
mod run;
mod settle;
mod work;

pub use cycle::CycleId;
pub use pacing::Pacer;
pub use quota::{DailyBudget, DriveSync, GoogleCall, QuotaCosts, quota_day};
pub use report::{Count, Report};

use crate::clock::Clock;
use crate::crypto::TokenCipher;
use crate::domain::{AccessToken, DRIVE_APPDATA_SCOPE};
use crate::google::ClientSecrets;
use crate::ports::Ports;
use crate::store::{Checkpoint, Grant, GrantStatus, JobStore, ScanRequest, StoreError};
use crate::upstream::{RetryPolicy, Upstream};
use report::Counters;
use run::{Prepaid, Run, Worked};

/// Tunables of the job.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `TOKEN_BINDING`: what sealed tokens are bound to.
    pub token_binding: String,
    pub token_uri_override: Option<String>,
    pub segments: u32,
    pub concurrency: usize,
    pub lease: Duration,
    /// How long one AWS call may take, its SDK retries included (`AWS_CALL_TIMEOUT_MS`): a
    /// store write is tried again only while one more fits before the run stops.
    pub aws_call_timeout: Duration,
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
    /// `DRIVE_PROBE_EVERY`, as a time: Drive is called for a grant whose last Drive call
    /// is older than this ((N - 1/2) cycles; zero for every cycle).
    pub drive_probe_after: Duration,
    /// `EXPIRY_NOTICE_SECS`: how near a predicted end is announced (`GrantExpiring`).
    pub expiry_notice: Duration,
    /// `GOOGLE_CONSENT_TESTING`: the consent screen is in Testing (grants end seven days
    /// after consent).
    pub consent_testing: bool,
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
    /// The client secret is missing or unreadable, so no run could start: an operator
    /// must act. (A refusal met during a run stops it cleanly instead, with a report
    /// that says why: [`Report::stopped_for`].)
    #[error("the run stopped: misconfiguration: {0}")]
    Misconfigured(Upstream),
    #[error("the run could not read or write its state: {0}")]
    Store(#[from] StoreError),
}

/// The offline job over its ports.
#[derive(Debug)]
pub struct OfflineJob<P: Ports = crate::ports::Aws> {
    pub token_endpoint: P::Tokens,
    pub drive: P::Drive,
    pub store: P::JobStore,
    pub cipher: TokenCipher<P::Keys>,
    /// Seals the access tokens the job caches for the access-token function.
    pub access_cipher: TokenCipher<P::Keys, AccessToken>,
    pub secrets: P::Secrets,
    pub clock: P::Clock,
    pub settings: JobSettings,
    pub pacer: Pacer,
}

impl<P: Ports> OfflineJob<P> {
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
        // Read up front so a missing secret fails the run before any grant is leased;
        // each refresh reads it again from the cache (`google::as_client`), so a secret
        // rotated during the run is picked up at once.
        self.secrets.current().await.map_err(|e| match e {
            Upstream::Misconfigured { .. } => RunError::Misconfigured(e),
            transient => RunError::Store(StoreError::Upstream(transient)),
        })?;
        let run = Run {
            cycle,
            owner,
            stop_at,
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
            paced_out: AtomicBool::new(false),
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
        let stopped_for = run
            .misconfiguration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(cause) = &stopped_for {
            // A clean stop: the grants in flight were let go as they were; the report
            // says why, and the next cycle tries again once the operator has acted.
            complete = false;
            report.stopped_for = Some(cause.to_string());
        }
        if complete {
            self.store
                .mark_cycle_done(cycle.as_str(), self.clock.now_unix(), self.settings.state_ttl)
                .await?;
        }
        run.counters.fill(&mut report);
        report.complete = complete;
        report.budget_exhausted = !complete && report.stopped_for.is_none() && run.budget_spent.load(Ordering::SeqCst);
        report.stopped_at_deadline =
            !complete && !report.budget_exhausted && report.stopped_for.is_none() && run.at_deadline();
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
}
