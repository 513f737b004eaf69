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
    let (job, margin) = (&job, config.deadline_margin);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let cycle = CycleId::from_event(&event.payload)?;
        // Lambda's deadline, as a monotonic instant, less the margin for checkpointing.
        let left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let stop_at = tokio::time::Instant::now() + left.saturating_sub(margin);
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
