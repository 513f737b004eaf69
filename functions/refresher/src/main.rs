//! `refresher`: the offline job, invoked by an EventBridge schedule.
//!
//! Only wiring: telemetry, typed config, the App built once per cold start, then the
//! runtime loop. The job, and what one invocation does, live in the library.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::app::{self, App};
use offline_access::config::{JobConfig, ProcessEnv};
use offline_access::lambda::schedule::Invocation;
use offline_access::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = JobConfig::from_env(&ProcessEnv)?;
    let job = App::production(&config.common, &app::aws_config().await)?.offline_job(&config);
    let (job, period, margin) = (&job, config.cycle, config.deadline_margin);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let invocation = Invocation {
            event: &event.payload,
            request_id: &event.context.request_id,
            deadline_ms: event.context.deadline,
        };
        job.invoke(invocation, period, margin).await.map_err(Error::from)
    }))
    .await
}
