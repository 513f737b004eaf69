//! The offline job (DESIGN §8): for every active grant, take a lease, open the refresh
//! token, get a fresh access token, list the user's Drive `appDataFolder`, and record
//! the outcome. It knows nothing of Lambda.
//!
//! - A *cycle* is named by the schedule's time. A grant is done at most once a cycle
//!   (`last_cycle`, checked by the lease's conditional write), so a duplicate delivery or
//!   an overlapping invocation refreshes nothing twice.
//! - The table is read by a parallel scan (`segments`), with at most `concurrency` grants
//!   in flight and a global rate limit on Google calls, because Google's quota — not
//!   Lambda — bounds the run.
//! - Failures are classified once: `invalid_grant` revokes the grant and deletes its
//!   token; `invalid_client`/`unauthorized_client` stop the run; transient failures are
//!   retried with capped exponential backoff and full jitter (honouring `Retry-After`),
//!   then the grant is deferred.
//! - The run stops taking work before `stop_at`, checkpoints each segment, and the next
//!   invocation for the cycle resumes there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::crypto::{Binding, CryptoError, KeyProvider, TokenCipher};
use crate::domain::{DRIVE_APPDATA_SCOPE, ParseError};
use crate::google::{
    ClientCredentials, ClientSecrets, DriveApi, DriveError, GoogleTokenError, TokenEndpoint, TokenRefresh,
};
use crate::store::{Checkpoint, DriveOutcome, Finish, FinishResult, Grant, JobStore, Lease, ScanRequest, StoreError};
use crate::upstream::Upstream;

/// The cycle an invocation belongs to: the start of the period (`CYCLE_MINUTES`) that
/// holds its scheduled time. The schedule fires more often than cycles turn over, so an
/// unfinished cycle is resumed by the next invocation in its period, and a finished one
/// makes the rest of the period's invocations one-read no-ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleId(String);

impl CycleId {
    /// From an EventBridge scheduled event (`time`) or an EventBridge Scheduler input
    /// carrying `<aws.scheduler.scheduled-time>` as `scheduled_time`.
    pub fn from_event(event: &serde_json::Value, period: Duration) -> Result<Self, ParseError> {
        let raw = ["scheduled_time", "scheduledTime", "time"]
            .iter()
            .find_map(|k| event.get(*k).and_then(|v| v.as_str()))
            .ok_or(ParseError(
                "the event carries no scheduled time (time or scheduled_time)",
            ))?;
        let at = parse_utc(raw).ok_or(ParseError("the scheduled time is not an RFC 3339 UTC timestamp"))?;
        let period = period.as_secs().max(60);
        Ok(Self(format_utc(at - at % period)))
    }

    /// A cycle by name (tests, and manual runs that want a cycle of their own).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParseError("a cycle name is 1 to 64 printable ASCII characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the form both
/// EventBridge and EventBridge Scheduler use.
fn parse_utc(raw: &str) -> Option<u64> {
    let raw = raw.strip_suffix('Z')?;
    let (date, time) = raw.split_once('T')?;
    let time = time.split('.').next()?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the Unix epoch.
fn format_utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// Retries of one Google call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Full jitter (a random wait in `0..=min(cap, base·2^attempt)`), but never sooner
    /// than the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        let jitter = ceiling.mul_f64(random_unit());
        retry_after.map_or(jitter, |floor| jitter.max(floor))
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Tunables of the job.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub grants_table: String,
    pub token_uri_override: Option<String>,
    pub segments: u32,
    pub concurrency: usize,
    /// Google calls per second across the whole run; 0 = unlimited.
    pub google_rate_per_sec: u32,
    pub lease: Duration,
    pub page_size: i32,
    pub retry: RetryPolicy,
    /// A deferred grant waits `defer_base·2^(failures-1)`, at most `defer_max`.
    pub defer_base: Duration,
    pub defer_max: Duration,
    /// How long checkpoints and the cycle's done marker are kept.
    pub state_ttl: Duration,
}

/// A global rate limit: calls are given evenly spaced slots.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> Self {
        let interval = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / rate
        };
        Self {
            interval,
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What a run did. Returned by the invocation, logged, and emitted as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub cycle: String,
    /// The cycle had been finished by an earlier invocation: nothing was done.
    pub already_done: bool,
    /// Every segment of the cycle is now finished.
    pub complete: bool,
    /// The run stopped taking work because the deadline was near.
    pub stopped_at_deadline: bool,
    pub scanned: u64,
    pub refreshed: u64,
    pub drive_synced: u64,
    pub drive_calls: u64,
    pub refresh_only: u64,
    /// Refreshed, but Drive failed after retries: the grant is retried later.
    pub drive_deferred: u64,
    pub revoked: u64,
    pub deferred: u64,
    pub reconsent_required: u64,
    pub rotated_tokens: u64,
    pub superseded: u64,
    /// Leased by another invocation at the same moment.
    pub skipped: u64,
    pub google_calls: u64,
    pub retries: u64,
    pub errors: u64,
    pub duration_ms: u64,
}

#[derive(Default)]
struct Counters {
    scanned: AtomicU64,
    refreshed: AtomicU64,
    drive_synced: AtomicU64,
    drive_calls: AtomicU64,
    refresh_only: AtomicU64,
    drive_deferred: AtomicU64,
    revoked: AtomicU64,
    deferred: AtomicU64,
    reconsent_required: AtomicU64,
    rotated_tokens: AtomicU64,
    superseded: AtomicU64,
    skipped: AtomicU64,
    google_calls: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
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

/// The job over its ports.
pub struct Refresher<T, D, S, K, P, C> {
    pub token_endpoint: T,
    pub drive: D,
    pub store: S,
    pub cipher: TokenCipher<K>,
    pub secrets: P,
    pub clock: C,
    pub settings: JobSettings,
    pub limiter: RateLimiter,
}

impl<T, D, S, K, P, C> std::fmt::Debug for Refresher<T, D, S, K, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
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
}

impl Run<'_> {
    fn stopping(&self) -> bool {
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

/// How one grant went, for the segment's bookkeeping.
#[derive(Debug, PartialEq, Eq)]
enum Done {
    Processed,
    Skipped,
    /// Not started: the deadline was near or the run is stopping.
    NotStarted,
}

/// A transient failure worth retrying, and how soon.
fn transient(error: &Upstream) -> Option<Option<Duration>> {
    match error {
        Upstream::Unavailable { retry_after, .. } => Some(*retry_after),
        Upstream::Misconfigured { .. } => None,
    }
}

impl<T, D, S, K, P, C> Refresher<T, D, S, K, P, C>
where
    T: TokenEndpoint,
    D: DriveApi,
    S: JobStore,
    K: KeyProvider,
    P: ClientSecrets,
    C: Clock,
{
    /// Runs (or resumes) `cycle` until it is done or `stop_at` comes.
    #[tracing::instrument(name = "refresh_run", skip_all, fields(cycle = cycle.as_str()))]
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
        };
        let checkpoints = self.store.checkpoints(cycle.as_str(), self.settings.segments).await?;
        let segments = join_all(checkpoints.into_iter().map(|c| self.segment(&run, c))).await;
        let mut complete = true;
        for segment in segments {
            complete &= segment?;
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
        let c = &run.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        report.complete = complete;
        report.stopped_at_deadline = !complete && Instant::now() >= stop_at;
        report.scanned = get(&c.scanned);
        report.refreshed = get(&c.refreshed);
        report.drive_synced = get(&c.drive_synced);
        report.drive_calls = get(&c.drive_calls);
        report.refresh_only = get(&c.refresh_only);
        report.drive_deferred = get(&c.drive_deferred);
        report.revoked = get(&c.revoked);
        report.deferred = get(&c.deferred);
        report.reconsent_required = get(&c.reconsent_required);
        report.rotated_tokens = get(&c.rotated_tokens);
        report.superseded = get(&c.superseded);
        report.skipped = get(&c.skipped);
        report.google_calls = get(&c.google_calls);
        report.retries = get(&c.retries);
        report.errors = get(&c.errors);
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
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
            run.counters
                .scanned
                .fetch_add(page.grants.len() as u64, Ordering::Relaxed);
            let outcomes = join_all(page.grants.into_iter().map(|grant| self.grant(run, grant))).await;
            let mut unfinished = false;
            for outcome in outcomes {
                unfinished |= outcome? == Done::NotStarted;
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

    async fn grant(&self, run: &Run<'_>, grant: Grant) -> Result<Done, RunError> {
        let Ok(_permit) = run.in_flight.acquire().await else {
            return Ok(Done::NotStarted);
        };
        if run.stopping() {
            return Ok(Done::NotStarted);
        }
        let now = self.clock.now_unix();
        let lease = Lease {
            owner: run.owner,
            cycle: run.cycle.as_str(),
            now,
            until: now + self.settings.lease.as_secs(),
        };
        let Some(leased) = self.store.lease(&grant.sub, lease).await? else {
            bump(&run.counters.skipped);
            return Ok(Done::Skipped);
        };
        let finish = self.refresh_leased(run, &leased).await;
        let now = self.clock.now_unix();
        let result = self.store.finish(&leased, Lease { now, ..lease }, &finish).await?;
        let c = &run.counters;
        match result {
            FinishResult::Recorded => {}
            FinishResult::Superseded => bump(&c.superseded),
            FinishResult::LeaseLost => {
                tracing::warn!(sub = %leased.sub, "lease expired before the outcome was recorded");
                bump(&c.errors);
            }
        }
        match &finish {
            Finish::Refreshed { new_token, drive } => {
                bump(&c.refreshed);
                if new_token.is_some() {
                    bump(&c.rotated_tokens);
                }
                match drive {
                    DriveOutcome::Synced { .. } => bump(&c.drive_synced),
                    DriveOutcome::NotGranted => bump(&c.refresh_only),
                    DriveOutcome::Failed { .. } => bump(&c.drive_deferred),
                }
            }
            Finish::Deferred { .. } => bump(&c.deferred),
            Finish::Revoked { .. } => bump(&c.revoked),
            Finish::ReconsentRequired { .. } => bump(&c.reconsent_required),
            Finish::Release => return Ok(Done::NotStarted),
        }
        Ok(Done::Processed)
    }

    /// Decides how a leased grant ends this cycle. Never fails: every failure becomes
    /// an outcome to record.
    async fn refresh_leased(&self, run: &Run<'_>, grant: &Grant) -> Finish {
        let Some(sealed) = &grant.refresh_token else {
            return Finish::ReconsentRequired {
                reason: "no refresh token stored".into(),
            };
        };
        let binding = Binding {
            table: &self.settings.grants_table,
            sub: grant.sub.as_str(),
            client_id: &grant.client_id,
        };
        let refresh_token = match self.cipher.open(sealed, binding).await {
            Ok(token) => token,
            Err(CryptoError::Upstream(u)) => return self.upstream_failure(run, grant, u),
            Err(e) => {
                tracing::error!(sub = %grant.sub, error = %e, "stored refresh token does not open");
                bump(&run.counters.errors);
                return Finish::ReconsentRequired {
                    reason: "stored token does not decrypt".into(),
                };
            }
        };
        let refreshed = self
            .retrying(
                run,
                || async {
                    self.google_call(run).await;
                    self.token_endpoint
                        .refresh(TokenRefresh {
                            token_uri: run.token_uri,
                            credentials: run.credentials,
                            refresh_token: &refresh_token,
                        })
                        .await
                },
                |e| match e {
                    GoogleTokenError::Upstream(u) => transient(u),
                    _ => None,
                },
            )
            .await;
        let tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(GoogleTokenError::InvalidGrant { subtype }) => {
                let reason = subtype.map_or_else(|| "invalid_grant".to_owned(), |s| format!("invalid_grant:{s}"));
                tracing::info!(sub = %grant.sub, reason, "grant revoked by Google");
                return Finish::Revoked { reason };
            }
            Err(GoogleTokenError::RedirectUriMismatch) => {
                return self.upstream_failure(
                    run,
                    grant,
                    Upstream::misconfigured("google-token", "redirect_uri_mismatch"),
                );
            }
            Err(GoogleTokenError::Upstream(u)) => return self.upstream_failure(run, grant, u),
        };
        let new_token = match &tokens.refresh_token {
            Some(rotated) => match self.cipher.seal(rotated, binding).await {
                Ok(sealed) => Some(sealed),
                Err(CryptoError::Upstream(u)) => return self.upstream_failure(run, grant, u),
                Err(e) => {
                    tracing::error!(sub = %grant.sub, error = %e, "rotated refresh token could not be sealed");
                    return self.upstream_failure(run, grant, Upstream::misconfigured("crypto", "seal failed"));
                }
            },
            None => None,
        };
        if !grant.scopes.contains(DRIVE_APPDATA_SCOPE) {
            // A keep-alive: refreshing resets Google's six-month idle expiry.
            return Finish::Refreshed {
                new_token,
                drive: DriveOutcome::NotGranted,
            };
        }
        let listed = self
            .retrying(
                run,
                || {
                    self.drive.list_app_data(&tokens.access_token, || async {
                        bump(&run.counters.drive_calls);
                        self.google_call(run).await;
                    })
                },
                |e| match e {
                    DriveError::Upstream(u) => transient(u),
                    DriveError::Refused { .. } => None,
                },
            )
            .await;
        let drive = match listed {
            Ok(listing) => DriveOutcome::Synced { files: listing.files },
            // The user took the scope away since signing in: keep refreshing.
            Err(DriveError::Refused { status: 403, .. }) => DriveOutcome::NotGranted,
            Err(e) => {
                let failures = grant.failure_count.saturating_add(1);
                DriveOutcome::Failed {
                    failure_count: failures,
                    next_attempt_at: self.clock.now_unix() + self.defer_for(failures).as_secs(),
                    reason: format!("drive: {e}"),
                }
            }
        };
        Finish::Refreshed { new_token, drive }
    }

    /// A failure that is not the user's: transient ones defer the grant; our
    /// misconfiguration stops the run and lets the grant go untouched.
    fn upstream_failure(&self, run: &Run<'_>, grant: &Grant, error: Upstream) -> Finish {
        match error {
            Upstream::Misconfigured { .. } => {
                run.stop_for(error);
                Finish::Release
            }
            Upstream::Unavailable { .. } => {
                let failures = grant.failure_count.saturating_add(1);
                tracing::warn!(sub = %grant.sub, failures, error = %error, "deferred");
                Finish::Deferred {
                    failure_count: failures,
                    next_attempt_at: self.clock.now_unix() + self.defer_for(failures).as_secs(),
                    reason: error.to_string(),
                }
            }
        }
    }

    fn defer_for(&self, failures: u32) -> Duration {
        self.settings
            .defer_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.defer_max)
    }

    /// Every HTTP call to Google goes through here: counted, and given a slot by the
    /// global rate limiter.
    async fn google_call(&self, run: &Run<'_>) {
        bump(&run.counters.google_calls);
        self.limiter.acquire().await;
    }

    /// Calls `call` until it succeeds, fails for good, runs out of
    /// attempts, or the next wait would pass the deadline.
    async fn retrying<R, E, F, Fut>(
        &self,
        run: &Run<'_>,
        mut call: F,
        retry_after: impl Fn(&E) -> Option<Option<Duration>>,
    ) -> Result<R, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut attempt = 0;
        loop {
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            attempt += 1;
            let Some(after) = retry_after(&error) else {
                return Err(error);
            };
            let wait = self.settings.retry.delay(attempt - 1, after);
            if attempt >= self.settings.retry.max_attempts || Instant::now() + wait >= run.stop_at {
                return Err(error);
            }
            bump(&run.counters.retries);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cycle_is_the_period_holding_the_scheduled_time() {
        let six_hours = Duration::from_secs(6 * 3_600);
        let eventbridge =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-26T10:00:00Z"});
        let cycle = |e: &serde_json::Value| CycleId::from_event(e, six_hours).map(|c| c.0);
        assert_eq!(cycle(&eventbridge), Ok("2026-11-26T06:00:00Z".into()));
        // Every invocation within the period resumes the same cycle.
        for t in [
            "2026-11-26T06:00:00Z",
            "2026-11-26T08:15:00.123Z",
            "2026-11-26T11:59:59Z",
        ] {
            assert_eq!(
                cycle(&json!({"scheduled_time": t})),
                Ok("2026-11-26T06:00:00Z".into()),
                "{t}"
            );
        }
        assert_eq!(
            cycle(&json!({"scheduled_time": "2026-11-26T12:00:00Z"})),
            Ok("2026-11-26T12:00:00Z".into())
        );
        assert_eq!(
            cycle(&json!({"time": "2024-02-29T23:59:59Z"})),
            Ok("2024-02-29T18:00:00Z".into())
        );
        assert!(cycle(&json!({})).is_err());
        assert!(cycle(&json!({"time": "yesterday"})).is_err());
        assert!(cycle(&json!({"time": "2026-13-01T00:00:00Z"})).is_err());
    }

    #[test]
    fn utc_timestamps_round_trip() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:34:56Z",
            "2026-11-26T10:00:00Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(parse_utc(t).map(format_utc).as_deref(), Some(t));
        }
        assert_eq!(parse_utc("2026-11-26T10:00:00Z"), Some(1_795_687_200));
    }

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..10 {
            let d = policy.delay(attempt, None);
            assert!(d <= Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1)));
        }
        assert!(policy.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_calls_evenly() {
        let limiter = RateLimiter::per_second(10);
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
