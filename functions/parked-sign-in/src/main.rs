//! `parked-sign-in`: the `ParkedSignIns` queue in (Lambda's SQS event source mapping),
//! each parked sign-in stored as the sign-in would have stored it (DESIGN §1).
//!
//! Only wiring: telemetry, typed config (the sign-in's own), the App built once per cold
//! start and warmed, then the runtime loop. The logic lives in the library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::app::{self, App};
use offline_access::config::{ProcessEnv, SignInConfig};
use offline_access::{lambda, telemetry};

/// Kept back from Lambda's deadline for the answer itself.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = SignInConfig::from_env(&ProcessEnv)?;
    let sign_in = App::production(&config.common, &app::aws_config().await)?.sign_in(&config);
    sign_in.warm_up_keys().await;
    let sign_in = &sign_in;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let deadline = tokio::time::Instant::now() + left.saturating_sub(ANSWER_MARGIN);
        Ok::<_, Error>(lambda::queue::handle(&event.payload, sign_in, deadline).await)
    }))
    .await
}
