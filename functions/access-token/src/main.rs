//! `access-token`: a fresh Google access token for one user, for the customer's backend,
//! which invokes this function directly with Lambda `Invoke` (IAM is the authentication).
//!
//! Only wiring: telemetry, typed config, the App built once per cold start, then the
//! runtime loop. The use case and the request/answer contract live in the library.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use offline_access::app::{self, App};
use offline_access::config::{AccessTokenConfig, ProcessEnv};
use offline_access::{lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = AccessTokenConfig::from_env(&ProcessEnv)?;
    let service = App::production(&config.common, &app::aws_config().await)?.access_tokens(&config);
    service.warm_up().await;
    let service = &service;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        // Invoke guarantees JSON; the library reads it field by field with its own errors.
        let payload = serde_json::to_vec(&event.payload)?;
        Ok::<_, Error>(lambda::invoke::handle(service, &payload).await)
    }))
    .await
}
