//! The Lambda side of the offline job: one scheduled invocation becomes one run, with
//! its stop time taken from Lambda's deadline, and ends in a log line and EMF metrics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::ParseError;
use crate::job::{CycleId, OfflineJob, Report, RunError, metrics};
use crate::ports::Ports;

const MINUTE: Duration = Duration::from_secs(60);

/// One invocation as Lambda hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub event: &'a serde_json::Value,
    pub request_id: &'a str,
    /// `Lambda-Runtime-Deadline-Ms`.
    pub deadline_ms: u64,
}

/// Why an invocation failed (Lambda records it, retries it, then sends it to the
/// on-failure destination).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("the event is not a scheduled event: {0}")]
    Event(#[from] ParseError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Time left before Lambda's deadline (`Lambda-Runtime-Deadline-Ms`, epoch milliseconds)
/// at `now`. `cargo lambda watch` sends the invocation timeout itself (e.g. `600000`)
/// instead of an epoch time; a value that small cannot be a real deadline, so it is read
/// as time left.
pub fn time_left(deadline_ms: u64, now: SystemTime) -> Duration {
    const EARLIEST_REAL_DEADLINE_MS: u64 = 1_000_000_000_000; // 2001-09-09
    if deadline_ms < EARLIEST_REAL_DEADLINE_MS {
        return Duration::from_millis(deadline_ms);
    }
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    deadline.duration_since(now).unwrap_or_default()
}

impl<P: Ports> OfflineJob<P> {
    /// Runs the cycle the event names, stopping `margin` before the deadline; logs the
    /// report and emits it as metrics.
    pub async fn invoke(
        &self,
        invocation: Invocation<'_>,
        period: Duration,
        margin: Duration,
    ) -> Result<Report, InvocationError> {
        let cycle = CycleId::from_event(invocation.event, period)?;
        let left = time_left(invocation.deadline_ms, SystemTime::now());
        let stop_at = tokio::time::Instant::now() + left.saturating_sub(margin);
        tracing::info!(
            cycle = cycle.as_str(),
            time_left_ms = left.as_millis(),
            "job run starting"
        );
        // Boxed: the run is a deep future; the runtime loop holds only a pointer to it.
        let mut run = Box::pin(self.run(&cycle, invocation.request_id, stop_at));
        // The units spent, each minute: what the dashboard sets against the budget.
        let mut minute = tokio::time::interval_at(tokio::time::Instant::now() + MINUTE, MINUTE);
        let report = loop {
            tokio::select! {
                report = &mut run => break report?,
                _ = minute.tick() => metrics::emit(&metrics::quota_units_emf(self.pacer.take_spent(), metrics::now_ms())),
            }
        };
        let line = serde_json::to_string(&report).unwrap_or_default();
        match &report.stopped_for {
            Some(cause) => tracing::error!(
                report = %line,
                error = %cause,
                "MISCONFIGURATION: the job run stopped; no grant was changed for it"
            ),
            None => tracing::info!(report = %line, "job run finished"),
        }
        metrics::emit(&metrics::quota_units_emf(self.pacer.take_spent(), metrics::now_ms()));
        metrics::emit(&metrics::job_report_emf(&report, metrics::now_ms()));
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_deadline_leaves_the_time_until_it() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(time_left(1_800_000_900_000, now), Duration::from_secs(900));
        assert_eq!(time_left(1_799_999_999_000, now), Duration::ZERO, "already past");
    }

    #[test]
    fn cargo_lambda_watchs_timeout_is_read_as_time_left() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(time_left(600_000, now), Duration::from_secs(600));
    }
}
