//! Events for the customer's systems (DESIGN §13): every committed change of a grant's
//! state, read from the grants table's DynamoDB Stream, published to the stack's
//! EventBridge bus. Nothing else writes events: what was committed is published at least
//! once, and nothing that was not.
//!
//! [`events_for`] decides, from a change's old and new image, which events it is (a pure
//! function); [`publish_batch`] publishes a stream batch in order and says which record
//! the stream must deliver again. Consumers de-duplicate on (`sub`, `version`).

use serde_json::{Value, json};

use crate::store::{Change, Grant, GrantStatus, Unreadable};
use crate::upstream::Upstream;

/// Every event's `source`.
pub const SOURCE: &str = "offline-access";
/// The most entries one `PutEvents` takes.
pub const MAX_ENTRIES_PER_PUT: usize = 10;

/// An event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailType {
    /// A usable grant: a first sign-in, or a sign-in after the grant ended.
    GrantCreated,
    /// An active grant's scopes changed (a sign-in granted more, or fewer).
    GrantScopesChanged,
    /// Google revoked the grant (`invalid_grant`, or a security event).
    GrantRevoked,
    /// The user must consent again (time-based access ran out, or no token is held).
    ReconsentRequired,
    /// Google disabled the account (security event): not served until resumed.
    GrantSuspended,
    /// Google enabled the account again.
    GrantResumed,
    /// The user asked for their data to be deleted: unusable from now on.
    GrantDeleted,
    /// The offline job failed to refresh the grant `REFRESH_FAILING_AFTER` times in a row.
    RefreshFailing,
    /// A security event from Google flagged the grant for review.
    RiscEventReceived,
}

impl DetailType {
    pub const ALL: [Self; 9] = [
        Self::GrantCreated,
        Self::GrantScopesChanged,
        Self::GrantRevoked,
        Self::ReconsentRequired,
        Self::GrantSuspended,
        Self::GrantResumed,
        Self::GrantDeleted,
        Self::RefreshFailing,
        Self::RiscEventReceived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantCreated => "GrantCreated",
            Self::GrantScopesChanged => "GrantScopesChanged",
            Self::GrantRevoked => "GrantRevoked",
            Self::ReconsentRequired => "ReconsentRequired",
            Self::GrantSuspended => "GrantSuspended",
            Self::GrantResumed => "GrantResumed",
            Self::GrantDeleted => "GrantDeleted",
            Self::RefreshFailing => "RefreshFailing",
            Self::RiscEventReceived => "RiscEventReceived",
        }
    }
}

/// One event about one grant: what its `detail` carries, and nothing else — never a
/// token, an email or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEvent {
    pub detail_type: DetailType,
    pub sub: String,
    pub status: GrantStatus,
    pub reason: Option<String>,
    pub scopes: Vec<String>,
    /// When the change was committed (the grant's `updated_at`, Unix seconds).
    pub at: u64,
    pub version: u64,
    /// For `RiscEventReceived`: the flags the event added.
    pub flags: Vec<String>,
}

impl GrantEvent {
    fn of(detail_type: DetailType, grant: &Grant) -> Self {
        Self {
            detail_type,
            sub: grant.sub.as_str().to_owned(),
            status: grant.status,
            reason: grant.status_reason.clone(),
            scopes: grant.scopes.iter().map(str::to_owned).collect(),
            at: grant.updated_at,
            version: grant.version,
            flags: Vec::new(),
        }
    }

    /// The event's `detail`.
    pub fn detail(&self) -> Value {
        let at = i64::try_from(self.at)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut detail = json!({
            "sub": self.sub,
            "status": self.status.as_str(),
            "reason": self.reason,
            "scopes": self.scopes,
            "at": at,
            "version": self.version,
        });
        if self.detail_type == DetailType::RiscEventReceived {
            detail["flags"] = json!(self.flags);
        }
        detail
    }
}

/// The events one committed change is, in the order a consumer should see them. A change
/// that does not change the grant's state (a routine refresh, a lease) is none.
pub fn events_for(old: Option<&Grant>, new: Option<&Grant>, failing_after: u32) -> Vec<GrantEvent> {
    // A removed item is a tombstone's TTL: its deletion was published when it began.
    let Some(new) = new else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let was = old.map(|g| g.status);
    if was != Some(new.status) {
        let detail_type = match (was, new.status) {
            (Some(GrantStatus::Suspended), GrantStatus::Active) => Some(DetailType::GrantResumed),
            (_, GrantStatus::Active) => Some(DetailType::GrantCreated),
            (_, GrantStatus::Revoked) => Some(DetailType::GrantRevoked),
            (_, GrantStatus::ReconsentRequired) => Some(DetailType::ReconsentRequired),
            (_, GrantStatus::Suspended) => Some(DetailType::GrantSuspended),
            // A deletion is told when it begins: the grant is unusable from then on.
            (_, GrantStatus::Revoking) => Some(DetailType::GrantDeleted),
            (Some(GrantStatus::Revoking), GrantStatus::Deleted) => None,
            (_, GrantStatus::Deleted) => Some(DetailType::GrantDeleted),
        };
        events.extend(detail_type.map(|t| GrantEvent::of(t, new)));
    } else if new.status == GrantStatus::Active && old.is_some_and(|o| o.scopes != new.scopes) {
        events.push(GrantEvent::of(DetailType::GrantScopesChanged, new));
    }
    let failures_before = old.map_or(0, |g| g.failure_count);
    if failing_after > 0 && failures_before < failing_after && new.failure_count >= failing_after {
        events.push(GrantEvent::of(DetailType::RefreshFailing, new));
    }
    let added: Vec<String> = new
        .review_flags
        .iter()
        .filter(|f| old.is_none_or(|o| !o.review_flags.contains(f)))
        .cloned()
        .collect();
    if !added.is_empty() {
        events.push(GrantEvent {
            flags: added,
            ..GrantEvent::of(DetailType::RiscEventReceived, new)
        });
    }
    events
}

/// An event as it goes on the bus, and as the failure queue keeps it: its `detail-type`
/// and its `detail`, rendered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    pub detail_type: String,
    pub detail: Value,
}

impl Rendered {
    /// The grant it is about (`detail.sub`).
    pub fn sub(&self) -> &str {
        self.detail["sub"].as_str().unwrap_or_default()
    }

    /// The grant's version it comes from (`detail.version`).
    pub fn version(&self) -> u64 {
        self.detail["version"].as_u64().unwrap_or_default()
    }
}

impl From<&GrantEvent> for Rendered {
    fn from(event: &GrantEvent) -> Self {
        Self {
            detail_type: event.detail_type.as_str().to_owned(),
            detail: event.detail(),
        }
    }
}

/// Publishes events; the production one is [`EventBridgePublisher`].
pub trait EventPublisher: Send + Sync {
    /// Publishes at most [`MAX_ENTRIES_PER_PUT`] events in one call, and says for each
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

impl Kept {
    pub fn sequence_number(&self) -> &str {
        match self {
            Self::Events { sequence_number, .. } | Self::UnreadableRecord { sequence_number, .. } => sequence_number,
        }
    }
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
    /// Every message visible now, each hidden for `hold` while this run works on it.
    pub async fn take_all(&self, hold: std::time::Duration) -> Result<Vec<QueuedMessage>, Upstream> {
        let hold = i32::try_from(hold.as_secs()).unwrap_or(i32::MAX);
        let mut taken = Vec::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(hold)
                .wait_time_seconds(0)
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
    }

    /// Deletes messages that are done with.
    pub async fn delete(&self, receipts: &[&str]) -> Result<(), Upstream> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        for chunk in receipts.chunks(MAX_MESSAGES_PER_SEND) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .build()
                        .map_err(|_| Upstream::unavailable("sqs", "batch entry"))
                })
                .collect::<Result<Vec<_>, _>>()?;
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
}

impl FailureQueue {
    /// Makes messages this run is not done with visible again at once, for the next reader.
    pub async fn release(&self, receipts: &[&str]) -> Result<(), Upstream> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
        for chunk in receipts.chunks(MAX_MESSAGES_PER_SEND) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|_| Upstream::unavailable("sqs", "batch entry"))
                })
                .collect::<Result<Vec<_>, _>>()?;
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
}

/// How long a replay hides the messages it works on from other readers.
const REPLAY_HOLD: std::time::Duration = std::time::Duration::from_secs(300);

/// Publishes again what the failure queue kept, in (`sub`, `version`) order so that each
/// user's events go out oldest first, and deletes each message once all its events are
/// taken. Notes of unreadable records are reported, and deleted with `drop_notes`;
/// anything else in the queue is counted and left.
pub async fn replay<P: EventPublisher>(
    queue: &FailureQueue,
    publisher: &P,
    drop_notes: bool,
) -> Result<Replayed, Upstream> {
    let messages = queue.take_all(REPLAY_HOLD).await?;
    let mut replayed = Replayed::default();
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
    let mut refused = std::collections::BTreeSet::new();
    for chunk in events.chunks(MAX_ENTRIES_PER_PUT) {
        let batch: Vec<Rendered> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let taken = publisher.publish(&batch).await?;
        for ((message, _), taken) in chunk.iter().zip(taken) {
            if taken {
                replayed.events += 1;
            } else {
                refused.insert(*message);
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

/// How a batch is published.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// `REFRESH_FAILING_AFTER`.
    pub failing_after: u32,
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
/// - At the first event not taken, publishing stops: that record is delivered again, and
///   the records after it are not published now (they come again with it). Unless the
///   record is older than `give_up_after`: its events are kept in the failure queue, as
///   events, and the batch goes on.
/// - If the queue cannot take what is to be kept, the earliest such record is delivered
///   again instead: nothing is dropped.
pub async fn publish_batch<P: EventPublisher, K: EventKeeper>(
    changes: Vec<Result<Change, Unreadable>>,
    publisher: &P,
    keeper: &K,
    settings: BatchSettings,
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
                let events = events_for(change.old.as_ref(), change.new.as_ref(), settings.failing_after);
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
    let mut stopped_at = None;
    'calls: for chunk in pending.chunks(MAX_ENTRIES_PER_PUT) {
        let events: Vec<Rendered> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let taken = match publisher.publish(&events).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "PutEvents failed");
                vec![false; events.len()]
            }
        };
        for ((record, event), taken) in chunk.iter().zip(taken) {
            if taken {
                published.events += 1;
                tracing::info!(
                    detail_type = event.detail_type,
                    sub = event.sub(),
                    version = event.version(),
                    "event published"
                );
            } else if too_old(*record) {
                given_up.entry(*record).or_default().push(event.clone());
            } else {
                // Entries after it in the same call may have been taken: they are published
                // again with their records (consumers de-duplicate on sub and version).
                tracing::warn!(
                    sequence_number = records.get(*record).map(|(s, _)| s.as_str()),
                    "an event was not taken; its record comes again"
                );
                stopped_at = Some(*record);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedToken;
    use crate::domain::{GoogleSubject, Profile, Scopes};
    use std::sync::Mutex;

    fn grant(status: GrantStatus, scopes: &str, version: u64) -> Grant {
        Grant {
            sub: GoogleSubject::parse("1234").expect("sub"),
            status,
            status_reason: None,
            likely_cause: None,
            profile: Profile {
                email: Some(crate::domain::Email::new("ada@example.com".into())),
                name: Some("Ada".into()),
                ..Profile::default()
            },
            email_verified: true,
            scopes: Scopes::from_space_delimited(scopes),
            client_id: "web".into(),
            refresh_token: SealedToken::from_bytes(&[0; 64]).ok(),
            token_digests: None,
            review_flags: Vec::new(),
            refresh_expires_at: None,
            token_issued_at: None,
            token_gen: 1,
            created_at: 1,
            updated_at: 1_800_000_000,
            last_refresh_at: None,
            last_sync_at: None,
            failure_count: 0,
            next_attempt_at: None,
            last_cycle: None,
            drive_files: None,
            drive_truncated: false,
            lease_owner: None,
            lease_until: None,
            version,
        }
    }

    fn types(old: Option<&Grant>, new: Option<&Grant>) -> Vec<&'static str> {
        events_for(old, new, 3).iter().map(|e| e.detail_type.as_str()).collect()
    }

    #[test]
    fn each_change_of_state_is_its_event_and_a_routine_write_is_none() {
        use GrantStatus::*;
        let active = grant(Active, "openid", 1);
        let with = |status, version| grant(status, "openid", version);
        assert_eq!(types(None, Some(&active)), ["GrantCreated"]);
        assert_eq!(types(Some(&with(Revoked, 1)), Some(&with(Active, 2))), ["GrantCreated"]);
        assert_eq!(types(Some(&active), Some(&with(Revoked, 2))), ["GrantRevoked"]);
        assert_eq!(
            types(Some(&active), Some(&with(ReconsentRequired, 2))),
            ["ReconsentRequired"]
        );
        assert_eq!(types(Some(&active), Some(&with(Suspended, 2))), ["GrantSuspended"]);
        assert_eq!(
            types(Some(&with(Suspended, 2)), Some(&with(Active, 3))),
            ["GrantResumed"]
        );
        assert_eq!(types(Some(&active), Some(&with(Revoking, 2))), ["GrantDeleted"]);
        assert_eq!(
            types(Some(&with(Revoking, 2)), Some(&with(Deleted, 3))),
            Vec::<&str>::new()
        );
        assert_eq!(types(Some(&with(Deleted, 3)), None), Vec::<&str>::new());
        let wider = grant(Active, "openid https://www.googleapis.com/auth/drive.appdata", 2);
        assert_eq!(types(Some(&active), Some(&wider)), ["GrantScopesChanged"]);
        // A refresh: times and counters move, the state does not.
        let refreshed = Grant {
            last_refresh_at: Some(5),
            updated_at: 1_800_000_100,
            ..active.clone()
        };
        assert_eq!(types(Some(&active), Some(&refreshed)), Vec::<&str>::new());
    }

    #[test]
    fn refresh_failing_is_told_once_when_the_count_reaches_the_threshold() {
        let mut old = grant(GrantStatus::Active, "openid", 1);
        let mut seen = Vec::new();
        for count in 1..=5 {
            let new = Grant {
                failure_count: count,
                ..old.clone()
            };
            seen.push(types(Some(&old), Some(&new)));
            old = new;
        }
        let failing: Vec<usize> = (0..5).filter(|&i| seen[i] == ["RefreshFailing"]).collect();
        assert_eq!(failing, [2], "{seen:?}");
    }

    #[test]
    fn a_flag_added_by_a_security_event_is_told_with_the_new_flags_only() {
        let old = Grant {
            review_flags: vec!["risc:sessions-revoked".into()],
            ..grant(GrantStatus::Active, "openid", 1)
        };
        let new = Grant {
            review_flags: vec![
                "risc:sessions-revoked".into(),
                "risc:account-credential-change-required".into(),
            ],
            ..old.clone()
        };
        let events = events_for(Some(&old), Some(&new), 3);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].detail()["flags"],
            json!(["risc:account-credential-change-required"])
        );
    }

    #[test]
    fn the_detail_holds_the_state_and_never_a_token_an_email_or_a_name() {
        let events = events_for(None, Some(&grant(GrantStatus::Active, "openid email", 7)), 3);
        let detail = events[0].detail();
        assert_eq!(
            detail,
            json!({"sub": "1234", "status": "active", "reason": null, "scopes": ["email", "openid"],
                   "at": "2027-01-15T08:00:00Z", "version": 7})
        );
        let text = detail.to_string();
        assert!(!text.contains("ada@example.com") && !text.contains("Ada"));
    }

    /// Takes every event but those of one version, and records what it took.
    struct Recorder {
        refuse_version: Option<u64>,
        taken: Mutex<Vec<(String, u64)>>,
    }

    impl EventPublisher for Recorder {
        async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
            assert!(events.len() <= MAX_ENTRIES_PER_PUT);
            let mut taken = self.taken.lock().expect("taken");
            Ok(events
                .iter()
                .map(|e| {
                    let ok = Some(e.version()) != self.refuse_version;
                    if ok {
                        taken.push((e.detail_type.clone(), e.version()));
                    }
                    ok
                })
                .collect())
        }
    }

    fn recorder(refuse_version: Option<u64>) -> Recorder {
        Recorder {
            refuse_version,
            taken: Mutex::new(Vec::new()),
        }
    }

    fn taken(recorder: &Recorder) -> Vec<u64> {
        recorder.taken.lock().expect("taken").iter().map(|(_, v)| *v).collect()
    }

    /// Keeps what it is given, or refuses everything when `down`.
    #[derive(Default)]
    struct Queue {
        down: bool,
        kept: Mutex<Vec<Kept>>,
    }

    impl EventKeeper for Queue {
        async fn keep(&self, kept: &[Kept]) -> Result<(), Upstream> {
            if self.down {
                return Err(Upstream::unavailable("sqs", "down"));
            }
            self.kept.lock().expect("kept").extend_from_slice(kept);
            Ok(())
        }
    }

    const NOW: u64 = 1_800_000_000;
    const SETTINGS: BatchSettings = BatchSettings {
        failing_after: 3,
        give_up_after: std::time::Duration::from_secs(18_000),
    };

    /// Records 1..=n committed `age` seconds ago; the odd ones are suspensions (an event
    /// each, of version v + 1), the even ones routine (none).
    fn batch_aged(n: u64, age: u64) -> Vec<Result<Change, Unreadable>> {
        (1..=n)
            .map(|v| {
                Ok(Change {
                    sequence_number: format!("seq-{v}"),
                    created_at: Some(NOW - age),
                    old: Some(grant(GrantStatus::Active, "openid", v)),
                    new: Some(grant(
                        if v % 2 == 0 {
                            GrantStatus::Active
                        } else {
                            GrantStatus::Suspended
                        },
                        "openid",
                        v + 1,
                    )),
                })
            })
            .collect()
    }

    fn batch(n: u64) -> Vec<Result<Change, Unreadable>> {
        batch_aged(n, 5)
    }

    fn poison(sequence_number: &str) -> Result<Change, Unreadable> {
        Err(Unreadable {
            sequence_number: sequence_number.into(),
            created_at: Some(NOW - 5),
            sub: Some("1234".into()),
        })
    }

    #[tokio::test]
    async fn a_refused_entry_stops_the_batch_at_its_record_and_nothing_after_goes_out_of_order() {
        let (refusing, queue) = (recorder(Some(14)), Queue::default());
        // 25 records; the odd ones are suspensions (an event each), the even ones routine.
        let published = publish_batch(batch(25), &refusing, &queue, SETTINGS, NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-13"));
        // The first call held records 1 to 19's events; EventBridge took all but record
        // 13's. Nothing after that call went out.
        assert_eq!(taken(&refusing), [2, 4, 6, 8, 10, 12, 16, 18, 20]);
        assert_eq!(published.events, 6, "counted up to the refused one");
        assert!(
            queue.kept.lock().expect("kept").is_empty(),
            "a young record is not given up"
        );

        let all = recorder(None);
        let published = publish_batch(batch(25), &all, &queue, SETTINGS, NOW).await;
        assert_eq!((published.events, published.retry_from), (13, None));
    }

    #[tokio::test]
    async fn an_unreadable_record_is_noted_and_skipped_and_never_blocks_the_records_behind_it() {
        let (all, queue) = (recorder(None), Queue::default());
        let mut changes = batch(5);
        changes.insert(2, poison("seq-poison"));
        let published = publish_batch(changes, &all, &queue, SETTINGS, NOW).await;
        assert_eq!(published.retry_from, None, "nothing comes again");
        assert_eq!((published.events, published.unreadable), (3, 1));
        assert_eq!(taken(&all), [2, 4, 6], "records 1, 3 and 5 behind it went");
        assert_eq!(
            *queue.kept.lock().expect("kept"),
            [Kept::UnreadableRecord {
                sequence_number: "seq-poison".into(),
                sub: Some("1234".into()),
            }]
        );
    }

    #[tokio::test]
    async fn the_events_of_a_record_too_old_to_wait_for_are_kept_as_events_and_the_batch_goes_on() {
        let (refusing, queue) = (recorder(Some(4)), Queue::default());
        let published = publish_batch(batch_aged(5, 18_000), &refusing, &queue, SETTINGS, NOW).await;
        assert_eq!(published.retry_from, None);
        assert_eq!((published.events, published.kept_events), (2, 1));
        assert_eq!(taken(&refusing), [2, 6]);
        let kept = queue.kept.lock().expect("kept").clone();
        let [
            Kept::Events {
                sequence_number,
                events,
            },
        ] = kept.as_slice()
        else {
            panic!("one record's events: {kept:?}");
        };
        assert_eq!(sequence_number, "seq-3");
        assert_eq!(
            (events[0].detail_type.as_str(), events[0].sub(), events[0].version()),
            ("GrantSuspended", "1234", 4)
        );
    }

    #[tokio::test]
    async fn what_the_queue_does_not_take_comes_again_from_its_record() {
        let (refusing, queue) = (
            recorder(Some(4)),
            Queue {
                down: true,
                ..Queue::default()
            },
        );
        let published = publish_batch(batch_aged(5, 18_000), &refusing, &queue, SETTINGS, NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-3"));
        assert_eq!(published.kept_events, 0);

        let mut changes = batch(3);
        changes.insert(1, poison("seq-poison"));
        let published = publish_batch(changes, &recorder(None), &queue, SETTINGS, NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-poison"));
        assert_eq!(published.unreadable, 0);
    }
}
