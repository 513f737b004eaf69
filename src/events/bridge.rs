//! The stack's EventBridge bus: where events go.

use super::{Rendered, SOURCE};
use crate::upstream::Upstream;

/// Publishes events; the production one is [`EventBridgePublisher`].
pub trait EventPublisher: Send + Sync {
    /// Publishes at most [`MAX_ENTRIES_PER_PUT`](super::MAX_ENTRIES_PER_PUT) events in one call, and says for each
    /// whether it was taken.
    fn publish(&self, events: &[Rendered]) -> impl Future<Output = Result<Vec<bool>, Upstream>> + Send;
}

/// The stack's EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(&e.detail_type)
                    .detail(e.detail.to_string())
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| crate::upstream::classify_aws("eventbridge", &e))?;
        // One result per entry, in order; an entry with an error code was not taken.
        let taken: Vec<bool> = out.entries().iter().map(|r| r.error_code().is_none()).collect();
        if taken.len() != events.len() {
            return Err(Upstream::unavailable(
                "eventbridge",
                "PutEvents answered another number of entries",
            ));
        }
        Ok(taken)
    }
}
