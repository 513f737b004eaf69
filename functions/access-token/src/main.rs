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
    // The payload as it came, unparsed: the library reads it field by field with its own
    // errors, so a payload the runtime could not turn into a value (one nested past
    // serde's depth limit) is answered 400 like any malformed request, never a function
    // error. `RawValue` only checks that it is JSON, without recursing.
    run(service_fn(
        move |event: LambdaEvent<Box<serde_json::value::RawValue>>| async move {
            Ok::<_, Error>(lambda::invoke::handle(service, event.payload.get().as_bytes()).await)
        },
    ))
    .await
}
