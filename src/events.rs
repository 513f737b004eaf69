//! Events for the customer's systems (DESIGN §13): every committed change of a grant's
//! state, read from the grants table's DynamoDB Stream, published to the stack's
//! EventBridge bus. Nothing else writes events: what was committed is published at least
//! once, and nothing that was not.
//!
//! [`events_for`] decides, from a change's old and new image, which events it is (a pure
//! function); [`publish_batch`] publishes a stream batch in order and says which record
//! the stream must deliver again. Consumers de-duplicate on (`sub`, `version`).

use serde_json::{Value, json};

use crate::store::{Change, Grant, GrantStatus};
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

/// Publishes events; the production one is [`EventBridgePublisher`].
pub trait EventPublisher: Send + Sync {
    /// Publishes at most [`MAX_ENTRIES_PER_PUT`] events in one call, and says for each
    /// whether it was taken.
    fn publish(&self, events: &[GrantEvent]) -> impl Future<Output = Result<Vec<bool>, Upstream>> + Send;
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
    async fn publish(&self, events: &[GrantEvent]) -> Result<Vec<bool>, Upstream> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(e.detail_type.as_str())
                    .detail(e.detail().to_string())
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

/// What publishing a batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub events: usize,
    /// The first record not fully published: the stream delivers it (and the records
    /// after it) again. `None`: the whole batch is done.
    pub retry_from: Option<String>,
}

/// Publishes a batch's events in record order. At the first record that cannot be read
/// or whose event is not taken, it stops: that record is delivered again, and the records
/// after it are not published now (they come again with it, so nothing is published out
/// of order or twice more than needed).
pub async fn publish_batch<P: EventPublisher>(
    changes: Vec<Result<Change, String>>,
    publisher: &P,
    failing_after: u32,
) -> Published {
    let mut published = Published::default();
    // Events waiting to go, each with the index of its record.
    let mut pending: Vec<(usize, GrantEvent)> = Vec::new();
    let mut sequence = Vec::with_capacity(changes.len());
    let mut unreadable = None;
    for (i, change) in changes.into_iter().enumerate() {
        match change {
            Ok(change) => {
                let events = events_for(change.old.as_ref(), change.new.as_ref(), failing_after);
                pending.extend(events.into_iter().map(|e| (i, e)));
                sequence.push(change.sequence_number);
            }
            Err(sequence_number) => {
                // Everything before it still goes; it and what follows come again.
                tracing::error!(sequence_number, "a stream record is not a grant this code can read");
                unreadable = Some(sequence_number);
                break;
            }
        }
    }
    for chunk in pending.chunks(MAX_ENTRIES_PER_PUT) {
        let events: Vec<GrantEvent> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let taken = match publisher.publish(&events).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "PutEvents failed; the records come again");
                vec![false; events.len()]
            }
        };
        published.events += taken.iter().filter(|ok| **ok).count();
        if let Some(first) = taken.iter().position(|ok| !ok) {
            // Entries after it in the same call may have been taken: they are published
            // again with their records (consumers de-duplicate on sub and version).
            let record = chunk[first].0;
            tracing::warn!(
                sequence_number = sequence.get(record),
                "an event was not taken; its record comes again"
            );
            published.retry_from = sequence.get(record).cloned();
            return published;
        }
        for (_, e) in chunk {
            tracing::info!(detail_type = e.detail_type.as_str(), sub = %e.sub, version = e.version, "event published");
        }
    }
    published.retry_from = unreadable;
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
        async fn publish(&self, events: &[GrantEvent]) -> Result<Vec<bool>, Upstream> {
            assert!(events.len() <= MAX_ENTRIES_PER_PUT);
            let mut taken = self.taken.lock().expect("taken");
            Ok(events
                .iter()
                .map(|e| {
                    let ok = Some(e.version) != self.refuse_version;
                    if ok {
                        taken.push((e.detail_type.as_str().to_owned(), e.version));
                    }
                    ok
                })
                .collect())
        }
    }

    fn batch(n: u64) -> Vec<Result<Change, String>> {
        (1..=n)
            .map(|v| {
                Ok(Change {
                    sequence_number: format!("seq-{v}"),
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

    #[tokio::test]
    async fn a_refused_entry_stops_the_batch_at_its_record_and_nothing_after_goes_out_of_order() {
        let recorder = Recorder {
            refuse_version: Some(14),
            taken: Mutex::new(Vec::new()),
        };
        // 25 records; the odd ones are suspensions (an event each), the even ones routine.
        let published = publish_batch(batch(25), &recorder, 3).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-13"));
        // The first call held records 1 to 19's events; EventBridge took all but record
        // 13's. Nothing after that call went out.
        let taken: Vec<u64> = recorder.taken.lock().expect("taken").iter().map(|(_, v)| *v).collect();
        assert_eq!(taken, [2, 4, 6, 8, 10, 12, 16, 18, 20]);
        assert_eq!(published.events, 9);

        let all = Recorder {
            refuse_version: None,
            taken: Mutex::new(Vec::new()),
        };
        let published = publish_batch(batch(25), &all, 3).await;
        assert_eq!((published.events, published.retry_from), (13, None));
    }

    #[tokio::test]
    async fn an_unreadable_record_is_delivered_again_after_those_before_it_are_published() {
        let recorder = Recorder {
            refuse_version: None,
            taken: Mutex::new(Vec::new()),
        };
        let mut changes = batch(3);
        changes.insert(2, Err("seq-poison".into()));
        let published = publish_batch(changes, &recorder, 3).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-poison"));
        assert_eq!(published.events, 1, "record 1's suspension went; record 3 comes again");
    }
}
