//! `refresher`: the offline job, invoked by an EventBridge schedule.
//!
//! Only wiring: telemetry, typed config, clients built once per cold start, then the
//! runtime loop. The job lives in the `offline-access` library.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::config::{ProcessEnv, RefresherConfig};
use offline_access::refresh::{CycleId, Report};
use offline_access::{metrics, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = RefresherConfig::from_env(&ProcessEnv)?;
    let aws = wiring::aws_config().await;
    let job = wiring::refresher(&config, &aws)?;
    let (job, margin, period) = (&job, config.deadline_margin, config.cycle);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let cycle = CycleId::from_event(&event.payload, period)?;
        let left = time_left(event.context.deadline);
        let stop_at = tokio::time::Instant::now() + left.saturating_sub(margin);
        tracing::info!(
            cycle = cycle.as_str(),
            time_left_ms = left.as_millis(),
            "refresh run starting"
        );
        let report: Report = job.run(&cycle, &event.context.request_id, stop_at).await?;
        tracing::info!(report = %serde_json::to_string(&report)?, "refresh run finished");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        metrics::emit(&metrics::refresh_report_emf(&report, now_ms));
        Ok::<Report, Error>(report)
    }))
    .await
}

/// Time left before Lambda's deadline (`Lambda-Runtime-Deadline-Ms`, epoch milliseconds).
/// `cargo lambda watch` sends the invocation timeout itself (e.g. `600000`) instead of an
/// epoch time; a value that small cannot be a real deadline, so it is read as time left.
fn time_left(deadline_ms: u64) -> std::time::Duration {
    const EARLIEST_REAL_DEADLINE_MS: u64 = 1_000_000_000_000; // 2001-09-09
    if deadline_ms < EARLIEST_REAL_DEADLINE_MS {
        return std::time::Duration::from_millis(deadline_ms);
    }
    let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms);
    deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}
