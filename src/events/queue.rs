//! The failure queue (`EventsFailures`): what the events function gives up is kept here,
//! as events, and `offline-access events replay` publishes it.

use super::{EventPublisher, Rendered, next_call};
use crate::upstream::Upstream;

/// What the failure queue keeps: a record's events that could not be published in time,
/// or a note of a record that could not be read. One message each; never a token, an
/// email or a name (an event's detail holds none, a note names only the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kept", rename_all = "snake_case")]
pub enum Kept {
    /// Events `offline-access events replay` publishes.
    Events {
        sequence_number: String,
        events: Vec<Rendered>,
    },
    /// A record skipped because its images could not be read: an operator's to look at.
    UnreadableRecord {
        sequence_number: String,
        sub: Option<String>,
    },
}

/// Keeps what a batch gives up; the production one is [`FailureQueue`].
pub trait EventKeeper: Send + Sync {
    /// Keeps every item, or fails (then none counts as kept).
    fn keep(&self, kept: &[Kept]) -> impl Future<Output = Result<(), Upstream>> + Send;
}

/// The most entries one `SendMessageBatch` takes.
const MAX_MESSAGES_PER_SEND: usize = 10;

/// The stack's `EventsFailures` queue.
#[derive(Debug, Clone)]
pub struct FailureQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl FailureQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
}

impl EventKeeper for FailureQueue {
    async fn keep(&self, kept: &[Kept]) -> Result<(), Upstream> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in kept.chunks(MAX_MESSAGES_PER_SEND) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, item) in chunk.iter().enumerate() {
                let body = serde_json::to_string(item).map_err(|_| Upstream::unavailable("sqs", "unserialisable"))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|_| Upstream::unavailable("sqs", "batch entry"))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| crate::upstream::classify_aws("sqs", &e))?;
            if !out.failed().is_empty() {
                return Err(Upstream::unavailable("sqs", "a message was not taken"));
            }
        }
        Ok(())
    }
}

/// A message taken off the failure queue: hidden from other readers until deleted or
/// until its visibility timeout passes.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub receipt: String,
    pub body: String,
}

impl FailureQueue {
    /// The messages visible now, at most `max`, each hidden for `hold` while this run
    /// works on it. Each receive waits up to a second (long polling asks every SQS
    /// server, so an empty answer means an empty queue; a short poll may miss some).
    pub async fn take(&self, hold: std::time::Duration, max: usize) -> Result<Vec<QueuedMessage>, Upstream> {
        let hold = i32::try_from(hold.as_secs()).unwrap_or(i32::MAX);
        let mut taken = Vec::new();
        while taken.len() < max {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(i32::try_from((max - taken.len()).min(10)).unwrap_or(10))
                .visibility_timeout(hold)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| crate::upstream::classify_aws("sqs", &e))?;
            let messages = out.messages();
            if messages.is_empty() {
                return Ok(taken);
            }
            taken.extend(messages.iter().filter_map(|m| {
                Some(QueuedMessage {
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                })
            }));
        }
        Ok(taken)
    }

    /// Deletes messages that are done with.
    pub async fn delete(&self, receipts: &[&str]) -> Result<(), Upstream> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        for chunk in receipts.chunks(MAX_MESSAGES_PER_SEND) {
            let entries = by_receipt(chunk, |id, receipt| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .build()
            })?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| crate::upstream::classify_aws("sqs", &e))?;
            if !out.failed().is_empty() {
                return Err(Upstream::unavailable("sqs", "a message was not deleted"));
            }
        }
        Ok(())
    }

    /// Makes messages this run is not done with visible again at once, for the next reader.
    pub async fn release(&self, receipts: &[&str]) -> Result<(), Upstream> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
        for chunk in receipts.chunks(MAX_MESSAGES_PER_SEND) {
            let entries = by_receipt(chunk, |id, receipt| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
            })?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| crate::upstream::classify_aws("sqs", &e))?;
        }
        Ok(())
    }
}

/// One batch entry per receipt, each with its index in the batch as its id.
fn by_receipt<T, E>(receipts: &[&str], entry: impl Fn(String, &str) -> Result<T, E>) -> Result<Vec<T>, Upstream> {
    receipts
        .iter()
        .enumerate()
        .map(|(i, receipt)| entry(i.to_string(), receipt).map_err(|_| Upstream::unavailable("sqs", "batch entry")))
        .collect()
}

/// What `offline-access events replay` came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Events published again.
    pub events: usize,
    /// Messages whose every event was taken, deleted.
    pub messages: usize,
    /// Messages with an event not taken: left for the next replay.
    pub left: usize,
    /// Notes of records that could not be read (sequence number, `sub`).
    pub unreadable: Vec<(String, Option<String>)>,
    /// Messages that are not ours to publish (Lambda's record of stream positions it
    /// gave up): their count; for the operator to read in the queue.
    pub positions: usize,
    /// The run took its most messages ([`REPLAY_MAX_MESSAGES`]): more may wait; run it
    /// again.
    pub more: bool,
}

/// How long a replay hides the messages it works on from other readers.
const REPLAY_HOLD: std::time::Duration = std::time::Duration::from_secs(300);
/// The most messages one replay takes (about 10 MB of events held at once).
pub const REPLAY_MAX_MESSAGES: usize = 10_000;

/// Publishes again what the failure queue kept, in (`sub`, `version`) order so that each
/// user's events go out oldest first, one of each user a call ([`next_call`]); a user's
/// event not taken holds back their later ones for the next replay (within one run: a queue of more than
/// [`REPLAY_MAX_MESSAGES`] takes several), and deletes each message once all its events
/// are taken. Notes of unreadable records are reported, and deleted with `drop_notes`;
/// anything else in the queue is counted and left.
pub async fn replay<P: EventPublisher>(
    queue: &FailureQueue,
    publisher: &P,
    drop_notes: bool,
) -> Result<Replayed, Upstream> {
    let messages = queue.take(REPLAY_HOLD, REPLAY_MAX_MESSAGES).await?;
    let mut replayed = Replayed {
        more: messages.len() >= REPLAY_MAX_MESSAGES,
        ..Replayed::default()
    };
    // Each event with the index of its message.
    let mut events: Vec<(usize, Rendered)> = Vec::new();
    let mut notes = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match serde_json::from_str::<Kept>(&message.body) {
            Ok(Kept::Events { events: kept, .. }) => events.extend(kept.into_iter().map(|e| (i, e))),
            Ok(Kept::UnreadableRecord { sequence_number, sub }) => {
                replayed.unreadable.push((sequence_number, sub));
                notes.push(message.receipt.as_str());
            }
            Err(_) => replayed.positions += 1,
        }
    }
    events.sort_by(|(_, a), (_, b)| (a.sub(), a.version()).cmp(&(b.sub(), b.version())));
    let mut pending: std::collections::VecDeque<(usize, Rendered)> = events.iter().cloned().collect();
    let mut refused = std::collections::BTreeSet::new();
    while !pending.is_empty() {
        let n = next_call(pending.make_contiguous(), |(_, e)| e.sub());
        let call: Vec<(usize, Rendered)> = pending.drain(..n).collect();
        let batch: Vec<Rendered> = call.iter().map(|(_, e)| e.clone()).collect();
        let taken = publisher.publish(&batch).await?;
        for ((message, event), taken) in call.into_iter().zip(taken) {
            if taken {
                replayed.events += 1;
            } else {
                // This user's later events wait with it for the next replay.
                refused.insert(message);
                pending.retain(|(later, e)| {
                    let behind = e.sub() == event.sub();
                    if behind {
                        refused.insert(*later);
                    }
                    !behind
                });
            }
        }
    }
    let done: std::collections::BTreeSet<usize> = events
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| !refused.contains(m))
        .collect();
    let mut delete: Vec<&str> = done
        .iter()
        .filter_map(|m| messages.get(*m))
        .map(|m| m.receipt.as_str())
        .collect();
    replayed.messages = delete.len();
    replayed.left = refused.len();
    if drop_notes {
        delete.extend(notes);
    }
    queue.delete(&delete).await?;
    // Everything else is visible again at once: this run is done with it.
    let deleted: std::collections::BTreeSet<&str> = delete.into_iter().collect();
    let left: Vec<&str> = messages
        .iter()
        .map(|m| m.receipt.as_str())
        .filter(|r| !deleted.contains(r))
        .collect();
    queue.release(&left).await?;
    Ok(replayed)
}
