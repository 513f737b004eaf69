//! The Lambda edges, one module each: what turns an event into a call on a use case made
//! from the [`crate::app::App`], and its outcome back into what Lambda answers. The
//! functions' mains only build the App and hand events here.
//!
//! - [`http`]: API Gateway's HTTP API (`auth-code`: sign-in, deletion, RISC);
//! - [`invoke`]: a direct `Invoke` payload (`access-token`);
//! - [`queue`]: the `ParkedSignIns` SQS queue (`parked-sign-in`);
//! - [`schedule`]: a scheduled event (`refresher`: the offline job);
//! - [`stream`]: the grants table's DynamoDB Stream (`events`).

pub mod http;
pub mod invoke;
pub mod queue;
pub mod schedule;
pub mod stream;
