//! The grants table's DynamoDB Stream in (Lambda's event source mapping), EventBridge
//! events out (DESIGN §13): a batch is read as changes, published in order, and the first
//! record not fully published is named for Lambda to deliver again. What is given up (an
//! unreadable record, the events of a record too old to wait for) is kept in the failure
//! queue first.

use crate::events::{BatchSettings, EventKeeper, EventPublisher};

/// One invocation of the `events` function: a batch of the grants table's stream in, the
/// record to deliver again (if any) out, as Lambda's `ReportBatchItemFailures` reads it.
pub async fn handle<P: EventPublisher, K: EventKeeper>(
    event: &aws_lambda_events::event::dynamodb::Event,
    publisher: &P,
    keeper: &K,
    settings: &BatchSettings,
    now: u64,
) -> aws_lambda_events::event::streams::DynamoDbEventResponse {
    use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
    let changes = event.records.iter().map(crate::store::change_from_record).collect();
    let published = crate::events::publish_batch(changes, publisher, keeper, settings, now).await;
    tracing::info!(
        records = event.records.len(),
        events = published.events,
        kept_events = published.kept_events,
        unreadable_records = published.unreadable,
        retry_from = published.retry_from.as_deref(),
        "stream batch done"
    );
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence_number) = published.retry_from {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence_number);
        response.batch_item_failures.push(failure);
    }
    response
}
