//! The one hardened HTTP client, shared by the token, JWKS, revoke and Drive calls.

use std::time::Duration;

/// Builds the client: bounded timeouts, no redirects (a redirect from a token endpoint
/// is never legitimate and following one is an SSRF risk), our user agent, and a
/// connection pool reused across invocations of a warm Lambda.
pub fn build(total_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("offline-access/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(2).min(total_timeout))
        .timeout(total_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}
