//! `events`: the grants table's DynamoDB Stream in, EventBridge events out (DESIGN §13).
//!
//! Only wiring: telemetry, typed config, the EventBridge and SQS clients built once per
//! cold start, then the runtime loop. What each change means lives in the library.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::clock::{Clock, SystemClock};
use offline_access::config::{EventsConfig, ProcessEnv};
use offline_access::{app, lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = EventsConfig::from_env(&ProcessEnv)?;
    let aws = app::aws_config().await;
    let (publisher, keeper) = (app::event_publisher(&config, &aws), app::event_keeper(&config, &aws));
    let (publisher, keeper, settings) = (&publisher, &keeper, &app::batch_settings(&config));
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        let now = SystemClock.now_unix();
        Ok::<_, Error>(lambda::stream::handle(&event.payload, publisher, keeper, settings, now).await)
    }))
    .await
}
