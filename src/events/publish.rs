//! A stream batch published in order, what cannot be published in time kept.

use super::{EventKeeper, EventPublisher, Kept, Rendered, events_for, next_call};
use crate::store::{Change, Unreadable};

/// How a batch is published.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// `REQUIRED_SCOPES`: what a grant's `scopes` health is measured against.
    pub required_scopes: crate::domain::Scopes,
    /// `EVENTS_GIVE_UP_SECS`: a record this old whose events are not taken has them kept.
    pub give_up_after: std::time::Duration,
}

/// What publishing a batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub events: usize,
    /// Events given up on (their record was too old to wait for) and kept in the queue.
    pub kept_events: usize,
    /// Records skipped as unreadable, each noted in the queue.
    pub unreadable: usize,
    /// The first record not fully published: the stream delivers it (and the records
    /// after it) again. `None`: the whole batch is done.
    pub retry_from: Option<String>,
}

/// Publishes a batch's events in record order.
///
/// - A record whose images cannot be read is skipped — logged with its sequence number,
///   counted, and noted in the failure queue — and never blocks the records behind it.
/// - A `PutEvents` call holds at most one event of each user ([`next_call`]), so no
///   user's event is taken after an earlier one of theirs was refused.
/// - At the first event not taken, publishing stops: that record is delivered again, and
///   the records after it are not published now (they come again with it). Unless the
///   record is older than `give_up_after`: its events, and that user's later events in
///   the batch, are kept in the failure queue, as events, and the batch goes on.
/// - If the queue cannot take what is to be kept, the earliest such record is delivered
///   again instead: nothing is dropped.
pub async fn publish_batch<P: EventPublisher, K: EventKeeper>(
    changes: Vec<Result<Change, Unreadable>>,
    publisher: &P,
    keeper: &K,
    settings: &BatchSettings,
    now: u64,
) -> Published {
    let mut published = Published::default();
    // Each record's position and commit time, by index.
    let mut records: Vec<(String, Option<u64>)> = Vec::with_capacity(changes.len());
    // Events waiting to go, each with the index of its record.
    let mut pending: Vec<(usize, Rendered)> = Vec::new();
    let mut to_keep: Vec<(usize, Kept)> = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        match change {
            Ok(change) => {
                let events = events_for(change.old.as_ref(), change.new.as_ref(), &settings.required_scopes);
                pending.extend(events.iter().map(|e| (i, Rendered::from(e))));
                records.push((change.sequence_number, change.created_at));
            }
            Err(unreadable) => {
                tracing::error!(
                    sequence_number = unreadable.sequence_number,
                    unreadable_records = 1,
                    "a stream record is not a grant this code can read; noted in the failure queue and skipped"
                );
                records.push((unreadable.sequence_number.clone(), unreadable.created_at));
                to_keep.push((
                    i,
                    Kept::UnreadableRecord {
                        sequence_number: unreadable.sequence_number,
                        sub: unreadable.sub,
                    },
                ));
            }
        }
    }
    let too_old = |record: usize| {
        records
            .get(record)
            .and_then(|(_, at)| *at)
            .is_some_and(|at| now.saturating_sub(at) >= settings.give_up_after.as_secs())
    };
    let mut given_up: std::collections::BTreeMap<usize, Vec<Rendered>> = std::collections::BTreeMap::new();
    let mut pending: std::collections::VecDeque<(usize, Rendered)> = pending.into();
    let mut stopped_at = None;
    'calls: while !pending.is_empty() {
        let n = next_call(pending.make_contiguous(), |(_, e)| e.sub());
        let call: Vec<(usize, Rendered)> = pending.drain(..n).collect();
        let events: Vec<Rendered> = call.iter().map(|(_, e)| e.clone()).collect();
        let taken = match publisher.publish(&events).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "PutEvents failed");
                vec![false; events.len()]
            }
        };
        for ((record, event), taken) in call.into_iter().zip(taken) {
            if taken {
                published.events += 1;
                tracing::info!(
                    detail_type = event.detail_type,
                    sub = event.sub(),
                    version = event.version(),
                    "event published"
                );
            } else if too_old(record) {
                // Given up on: this user's later events in the batch are kept behind it,
                // in order, rather than published before it.
                let sub = event.sub().to_owned();
                given_up.entry(record).or_default().push(event);
                pending.retain(|(later, e)| {
                    let behind = e.sub() == sub;
                    if behind {
                        given_up.entry(*later).or_default().push(e.clone());
                    }
                    !behind
                });
            } else {
                // The call's other entries are other users' events: taken or not, none of
                // them is this user's. They come again with their records (consumers
                // de-duplicate on sub and version).
                tracing::warn!(
                    sequence_number = records.get(record).map(|(s, _)| s.as_str()),
                    "an event was not taken; its record comes again"
                );
                stopped_at = Some(record);
                break 'calls;
            }
        }
    }
    // What comes again is not kept now: it is decided again when it comes.
    let before_stop = |record: &usize| stopped_at.is_none_or(|stop| *record < stop);
    to_keep.retain(|(record, _)| before_stop(record));
    to_keep.extend(
        given_up
            .into_iter()
            .filter(|(record, _)| before_stop(record))
            .map(|(record, events)| {
                let sequence_number = records.get(record).map(|(s, _)| s.clone()).unwrap_or_default();
                (
                    record,
                    Kept::Events {
                        sequence_number,
                        events,
                    },
                )
            }),
    );
    to_keep.sort_by_key(|(record, _)| *record);
    if let Some(&(first, _)) = to_keep.first() {
        let kept: Vec<Kept> = to_keep.into_iter().map(|(_, kept)| kept).collect();
        match keeper.keep(&kept).await {
            Ok(()) => {
                for item in &kept {
                    match item {
                        Kept::Events {
                            sequence_number,
                            events,
                        } => {
                            tracing::error!(
                                sequence_number,
                                events = events.len(),
                                "events given up on; kept in the failure queue for `events replay`"
                            );
                            published.kept_events += events.len();
                        }
                        Kept::UnreadableRecord { .. } => published.unreadable += 1,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the failure queue did not take what was given up; its record comes again");
                published.retry_from = records.get(first).map(|(s, _)| s.clone());
                return published;
            }
        }
    }
    published.retry_from = stopped_at.and_then(|record| records.get(record).map(|(s, _)| s.clone()));
    published
}
