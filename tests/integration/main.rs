//! The integration tests: one binary, so the AWS SDK links once. Each module drives the
//! real handlers with real events against moto and the Google emulator over real HTTP,
//! through the harness in `tests/support` (`spawn_stack()`).

mod access_token;
mod app;
mod client_secret;
mod docs;
mod ending_access;
mod errors;
mod events;
mod health;
mod iam;
mod identity;
mod job;
mod lambda_binary;
mod logs;
mod operator;
mod quota;
mod risc;
mod rotation;
mod sign_in;
mod template;
mod tooling;
