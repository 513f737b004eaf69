//! `auth-code`: the HTTP API's Lambda behind API Gateway: `POST /authcode` (sign-in),
//! `DELETE /grants/me` (the user deletes their data) and `POST /risc` (Google's security
//! events).
//!
//! Only wiring: telemetry, typed config, the App built once per cold start and warmed,
//! then the runtime loop borrowing it. The logic lives in the `offline-access` library.

use lambda_http::{Body, Error, Request, run, service_fn};
use offline_access::app::{self, App};
use offline_access::config::{ProcessEnv, SignInConfig};
use offline_access::{lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = SignInConfig::from_env(&ProcessEnv)?;
    let api = App::production(&config.common, &app::aws_config().await)?.http_api(&config);
    api.warm_up().await;
    let api = &api;
    run(service_fn(move |request: Request| async move {
        let response = lambda::http::serve(api, &request).await;
        Ok::<_, Error>(response.map(Body::from))
    }))
    .await
}
