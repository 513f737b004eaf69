//! The grants table's DynamoDB Stream, as the `events` function receives it from Lambda:
//! each record's old and new image read as grants, with the stored form's one reader.

use aws_lambda_events::event::dynamodb::EventRecord;

use super::schema;
use crate::store::{Change, Grant, StoreError, Unreadable};

fn image(item: &serde_dynamo::Item) -> Result<Option<Grant>, StoreError> {
    if item.is_empty() {
        return Ok(None);
    }
    let item: schema::Item = item.clone().into();
    schema::grant_from_item(&item).map(Some)
}

/// A stream record as a [`Change`]; `Err` names a record whose images cannot be read (its
/// position, commit time and key: the events function keeps that note and moves on).
pub fn change_from_record(record: &EventRecord) -> Result<Change, Unreadable> {
    let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
    // A record without a creation time reads as the epoch: unknown, never "old".
    let created_at = u64::try_from(record.change.approximate_creation_date_time.timestamp())
        .ok()
        .filter(|at| *at > 0);
    let read = image(&record.change.old_image).and_then(|old| Ok((old, image(&record.change.new_image)?)));
    match read {
        Ok((old, new)) => Ok(Change {
            sequence_number,
            created_at,
            old,
            new,
        }),
        Err(e) => {
            tracing::error!(error = %e, sequence_number, "a grant image in the stream is malformed");
            let keys: schema::Item = record.change.keys.clone().into();
            Err(Unreadable {
                sequence_number,
                created_at,
                sub: schema::text(&keys, schema::grant::SUB),
            })
        }
    }
}

/// A stream image's reader over arbitrary bytes (the image as DynamoDB JSON), for the
/// fuzz target (`fuzz/`) and the generated-input test: it never panics; a readable image
/// is a grant of a valid user, and an unreadable one gives back its record's sequence
/// number. Says whether the image was read.
#[doc(hidden)]
pub fn check_image_invariants(data: &[u8]) -> bool {
    let Ok(image) = serde_json::from_slice::<serde_dynamo::Item>(data) else {
        return false; // Lambda's runtime refuses the batch before it reaches us.
    };
    let mut record = EventRecord::default();
    record.change.sequence_number = Some("4200".into());
    record.change.new_image = image;
    match change_from_record(&record) {
        Ok(change) => {
            assert!(change.old.is_none());
            if let Some(grant) = change.new {
                assert!(crate::domain::GoogleSubject::parse(grant.sub.as_str()).is_ok());
            }
            true
        }
        Err(unreadable) => {
            assert_eq!(unreadable.sequence_number, "4200");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_creation_time_is_of_unknown_age_not_old() {
        let mut record = EventRecord::default();
        record.change.sequence_number = Some("1".into());
        let change = change_from_record(&record).map(|c| c.created_at);
        assert!(matches!(change, Ok(None)), "{change:?}");
    }

    #[test]
    fn the_image_reader_holds_its_invariants_on_generated_input() {
        crate::generated::check_target("stream_image", check_image_invariants);
    }
}
