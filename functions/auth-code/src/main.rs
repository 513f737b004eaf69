//! `auth-code`: the HTTP API's Lambda behind API Gateway: `POST /authcode` (sign-in),
//! `DELETE /grants/me` (the user deletes their data) and `POST /risc` (Google's security
//! events).
//!
//! Only wiring: telemetry, typed config, clients built once per cold start, then the
//! runtime loop borrowing them. The logic lives in the `offline-access` library.

use lambda_http::{Body, Error, Request, run, service_fn};
use offline_access::config::{ProcessEnv, SignInConfig};
use offline_access::{http_api, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = SignInConfig::from_env(&ProcessEnv)?;
    let aws = wiring::aws_config().await;
    let sign_in = wiring::sign_in(&config, &aws)?;
    let deletion = wiring::delete_grant(&config, &aws)?;
    let risc = wiring::risc_receiver(&config, &aws)?;
    sign_in.warm_up().await;
    let (sign_in, deletion, risc) = (&sign_in, &deletion, &risc);
    run(service_fn(move |request: Request| async move {
        let response = http_api::serve(sign_in, deletion, risc, &request).await;
        Ok::<_, Error>(response.map(Body::from))
    }))
    .await
}
