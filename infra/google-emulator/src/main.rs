//! `google-emulator`: runs the emulator on 127.0.0.1 for `make dev`.
//!
//! Environment: `EMULATOR_ADDR` (default `127.0.0.1:8090`), `EMULATOR_CLIENT_ID`,
//! `EMULATOR_CLIENT_SECRET`, `EMULATOR_JWKS_MAX_AGE` (seconds).

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let addr: SocketAddr = std::env::var("EMULATOR_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8090".into())
        .parse()?;
    let mut settings = google_emulator::Settings::default();
    if let Ok(id) = std::env::var("EMULATOR_CLIENT_ID") {
        settings.client_id = id;
    }
    if let Ok(secret) = std::env::var("EMULATOR_CLIENT_SECRET") {
        settings.client_secret = secret;
    }
    if let Ok(age) = std::env::var("EMULATOR_JWKS_MAX_AGE") {
        settings.jwks_max_age = age.parse()?;
    }
    let emulator = google_emulator::Emulator::start(addr, settings).await?;
    tracing::info!(url = %emulator.base_url(), "google emulator listening");
    eprintln!("google-emulator listening on {}", emulator.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
