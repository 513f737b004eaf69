//! The grants table's DynamoDB Stream, as the `events` function receives it from Lambda:
//! each record's old and new image read as grants, with the stored form's one reader.

use aws_lambda_events::event::dynamodb::EventRecord;

use super::schema;
use crate::store::{Change, Grant, StoreError};

fn image(item: &serde_dynamo::Item) -> Result<Option<Grant>, StoreError> {
    if item.is_empty() {
        return Ok(None);
    }
    let item: schema::Item = item.clone().into();
    schema::grant_from_item(&item).map(Some)
}

/// A stream record as a [`Change`]; `Err` carries its sequence number, so the stream
/// delivers it again (and, after bounded retries, to the on-failure queue).
pub fn change_from_record(record: &EventRecord) -> Result<Change, String> {
    let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
    let read = image(&record.change.old_image).and_then(|old| Ok((old, image(&record.change.new_image)?)));
    match read {
        Ok((old, new)) => Ok(Change {
            sequence_number,
            old,
            new,
        }),
        Err(e) => {
            tracing::error!(error = %e, sequence_number, "a grant image in the stream is malformed");
            Err(sequence_number)
        }
    }
}
