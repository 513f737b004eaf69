//! Structured JSON logs for CloudWatch. Fields are ids and outcomes only; secrets,
//! codes, tokens and emails are never logged (their types redact `Debug`).

/// Installs the global subscriber: JSON lines, level from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_current_span(false)
        .with_target(false)
        .try_init();
}
