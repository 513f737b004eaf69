//! `events`: the grants table's DynamoDB Stream in, EventBridge events out (DESIGN §13).
//!
//! Only wiring: telemetry, typed config, the EventBridge client built once per cold
//! start, then the runtime loop. What each change means lives in the library.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::config::{EventsConfig, ProcessEnv};
use offline_access::{app, lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = EventsConfig::from_env(&ProcessEnv)?;
    let publisher = app::event_publisher(&config, &app::aws_config().await);
    let (publisher, failing_after) = (&publisher, config.refresh_failing_after);
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(lambda::stream::handle(&event.payload, publisher, failing_after).await)
    }))
    .await
}
