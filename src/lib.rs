//! # offline-access
//!
//! Gives a mobile or web app's server offline access to its users' Google data.
//!
//! The app signs the user in with Google and POSTs the one-time *server auth code* to
//! `POST /authcode` ([`lambda::http`]). The [`sign_in`] use case exchanges the code at
//! Google's token endpoint with the client secret from Secrets Manager
//! ([`google::client_secret`]), verifies the returned ID token ([`google::id_token`]),
//! seals the refresh token with envelope encryption ([`crypto`]) and writes the grant to
//! DynamoDB ([`store`]): two round trips, the claim of the code and one write of the
//! grant with its answer. The offline [`job`] refreshes every grant on a schedule, and
//! [`access_token`] gives the customer's backend a fresh access token for any user
//! (through the `access-token` function's [`lambda::invoke`], or called directly by a Rust
//! service that embeds this crate), cached sealed and refreshed once per grant at a time.
//!
//! Outside capabilities are small ports (traits) returning our own types; the
//! production adapters are built once per cold start by [`app`].

pub mod access_token;
pub mod app;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod deletion;
pub mod doctor;
pub mod domain;
pub mod events;
#[cfg(test)]
mod generated;
pub mod google;
pub mod grant;
pub mod http_client;
pub mod job;
pub mod lambda;
pub mod operator;
pub mod permissions;
pub mod ports;
pub mod risc;
pub mod sign_in;
pub mod store;
pub mod telemetry;
pub mod upstream;

/// The README's Rust examples, compiled with the doc-tests so that what it shows a
/// newcomer cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The backend page's Rust examples (the access-token `Invoke`, the embedded library
/// call), compiled with the doc-tests for the same reason.
#[doc = include_str!("../docs/backend.md")]
#[cfg(doctest)]
pub struct BackendDoctests;
