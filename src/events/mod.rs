//! Events for the customer's systems (DESIGN §13): every committed change of a grant's
//! state, read from the grants table's DynamoDB Stream, published to the stack's
//! EventBridge bus. Nothing else writes events: what was committed is published at least
//! once, and nothing that was not.
//!
//! [`events_for`] decides, from a change's old and new image, which events it is (a pure
//! function); [`publish_batch`] publishes a stream batch in order and says which record
//! the stream must deliver again. Consumers de-duplicate on (`sub`, `version`).

use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::domain::Scopes;
use crate::grant::health;
#[cfg(test)]
use crate::store::{Change, Unreadable};
use crate::store::{Grant, GrantStatus};
#[cfg(test)]
use crate::upstream::Upstream;

mod bridge;
mod publish;
mod queue;

pub use bridge::{EventBridgePublisher, EventPublisher};
pub use publish::{BatchSettings, Published, publish_batch};
pub use queue::{EventKeeper, FailureQueue, Kept, QueuedMessage, Replayed, replay};

/// Every event's `source`.
pub const SOURCE: &str = "offline-access";
/// The most entries one `PutEvents` takes.
pub const MAX_ENTRIES_PER_PUT: usize = 10;

/// How many entries from the front of `entries` make the next `PutEvents` call: at most
/// [`MAX_ENTRIES_PER_PUT`], and at most one of each user. EventBridge takes or refuses
/// each entry of a call on its own, so two events of one user in one call could be taken
/// out of order (the second taken, the first refused); one a call, a refused entry holds
/// back only its own user's later events, which the caller does not send after it.
pub(crate) fn next_call<T>(entries: &[T], sub: impl Fn(&T) -> &str) -> usize {
    let mut subs = std::collections::HashSet::new();
    entries
        .iter()
        .take(MAX_ENTRIES_PER_PUT)
        .take_while(|entry| subs.insert(sub(entry)))
        .count()
}

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
    /// A level of the grant's health changed state ([`crate::grant::health`]): its
    /// refresh or its Drive call began or stopped failing, or the `REQUIRED_SCOPES` it
    /// lacks changed. (It replaces `RefreshFailing`.)
    GrantHealthChanged,
    /// A security event from Google flagged the grant for review.
    RiscEventReceived,
    /// The grant will end at a time that can be predicted (time-based access; a consent
    /// screen in Testing), now within `EXPIRY_NOTICE_SECS`: told once.
    GrantExpiring,
}

impl DetailType {
    pub const ALL: [Self; 10] = [
        Self::GrantCreated,
        Self::GrantScopesChanged,
        Self::GrantRevoked,
        Self::ReconsentRequired,
        Self::GrantSuspended,
        Self::GrantResumed,
        Self::GrantDeleted,
        Self::GrantHealthChanged,
        Self::RiscEventReceived,
        Self::GrantExpiring,
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
            Self::GrantHealthChanged => "GrantHealthChanged",
            Self::RiscEventReceived => "RiscEventReceived",
            Self::GrantExpiring => "GrantExpiring",
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
    /// For `GrantHealthChanged`: the level and its change.
    pub health: Option<health::Change>,
    /// For `GrantExpiring`: the end announced.
    pub expiring: Option<crate::store::Expiring>,
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
            health: None,
            expiring: None,
        }
    }

    /// The event's `detail`.
    pub fn detail(&self) -> Value {
        let at = rfc3339(self.at);
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
        if let (DetailType::GrantExpiring, Some(expiring)) = (self.detail_type, &self.expiring) {
            detail["expires_at"] = json!(rfc3339(expiring.at));
            detail["reason"] = json!(expiring.reason);
        }
        if let Some(change) = &self.health {
            detail["level"] = json!(change.level);
            detail["from"] = json!(change.from);
            detail["to"] = json!(change.to);
            match change.level {
                "scopes" => detail["missing"] = json!(change.missing),
                _ => detail["error"] = json!(change.error),
            }
        }
        detail
    }
}

/// The events one committed change is, in the order a consumer should see them. A change
/// that does not change the grant's state (a routine refresh, a lease) is none.
pub fn events_for(old: Option<&Grant>, new: Option<&Grant>, required: &Scopes) -> Vec<GrantEvent> {
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
    let announced = new
        .expiring
        .as_ref()
        .filter(|e| old.is_none_or(|o| o.expiring.as_ref() != Some(*e)));
    if let (Some(expiring), GrantStatus::Active) = (announced, new.status) {
        events.push(GrantEvent {
            expiring: Some(expiring.clone()),
            ..GrantEvent::of(DetailType::GrantExpiring, new)
        });
    }
    // Health is news while the grant is usable; its end is told by its status.
    if new.status == GrantStatus::Active && was == Some(GrantStatus::Active) {
        events.extend(
            health::changes(old, new, required)
                .into_iter()
                .map(|change| GrantEvent {
                    health: Some(change),
                    ..GrantEvent::of(DetailType::GrantHealthChanged, new)
                }),
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedToken;
    use crate::domain::{GoogleSubject, Profile, Scopes};
    use std::sync::Mutex;

    fn grant(status: GrantStatus, scopes: &str, version: u64) -> Grant {
        grant_of("1234", status, scopes, version)
    }

    fn grant_of(sub: &str, status: GrantStatus, scopes: &str, version: u64) -> Grant {
        Grant {
            sub: GoogleSubject::parse(sub).expect("sub"),
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
            refresh_failing: None,
            api_failing: None,
            expiring: None,
            reconsents: 0,
            last_cycle: None,
            drive_files: None,
            drive_truncated: false,
            lease_owner: None,
            lease_until: None,
            version,
        }
    }

    fn types(old: Option<&Grant>, new: Option<&Grant>) -> Vec<&'static str> {
        events_for(old, new, &Scopes::default())
            .iter()
            .map(|e| e.detail_type.as_str())
            .collect()
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
    fn a_level_of_health_that_begins_or_stops_failing_is_told_once_with_its_change() {
        let required = Scopes::from_space_delimited("https://www.googleapis.com/auth/drive.appdata");
        let old = Grant {
            last_refresh_at: Some(10),
            ..grant(
                GrantStatus::Active,
                "openid https://www.googleapis.com/auth/drive.appdata",
                1,
            )
        };
        let failing = Grant {
            failure_count: 1,
            refresh_failing: Some(crate::store::Failing {
                since: 20,
                error: "unavailable".into(),
            }),
            version: 2,
            ..old.clone()
        };
        let again = Grant {
            failure_count: 2,
            version: 3,
            ..failing.clone()
        };
        let healed = Grant {
            refresh_failing: None,
            failure_count: 0,
            version: 4,
            ..again.clone()
        };
        let health = |old: &Grant, new: &Grant| -> Vec<Value> {
            events_for(Some(old), Some(new), &required)
                .iter()
                .filter(|e| e.detail_type == DetailType::GrantHealthChanged)
                .map(GrantEvent::detail)
                .collect()
        };
        let began = health(&old, &failing);
        assert_eq!(began.len(), 1);
        assert_eq!(
            (
                &began[0]["level"],
                &began[0]["from"],
                &began[0]["to"],
                &began[0]["error"],
                &began[0]["version"]
            ),
            (
                &json!("refresh"),
                &json!("ok"),
                &json!("failing"),
                &json!("unavailable"),
                &json!(2)
            )
        );
        assert!(health(&failing, &again).is_empty(), "still failing: nothing new");
        let ended = health(&again, &healed);
        assert_eq!((&ended[0]["from"], &ended[0]["to"]), (&json!("failing"), &json!("ok")));
        let lost_drive = Grant {
            scopes: Scopes::from_space_delimited("openid"),
            version: 5,
            ..healed.clone()
        };
        let scopes = health(&healed, &lost_drive);
        assert_eq!(
            (&scopes[0]["level"], &scopes[0]["to"], &scopes[0]["missing"]),
            (
                &json!("scopes"),
                &json!("missing"),
                &json!(["https://www.googleapis.com/auth/drive.appdata"])
            )
        );
        let revoked = Grant {
            status: GrantStatus::Revoked,
            ..failing.clone()
        };
        assert!(health(&old, &revoked).is_empty(), "an end is told by its status");
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
        let events = events_for(Some(&old), Some(&new), &Scopes::default());
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].detail()["flags"],
            json!(["risc:account-credential-change-required"])
        );
    }

    #[test]
    fn the_detail_holds_the_state_and_never_a_token_an_email_or_a_name() {
        let events = events_for(
            None,
            Some(&grant(GrantStatus::Active, "openid email", 7)),
            &Scopes::default(),
        );
        let detail = events[0].detail();
        assert_eq!(
            detail,
            json!({"sub": "1234", "status": "active", "reason": null, "scopes": ["email", "openid"],
                   "at": "2027-01-15T08:00:00Z", "version": 7})
        );
        let text = detail.to_string();
        assert!(!text.contains("ada@example.com") && !text.contains("Ada"));
    }

    /// Takes every event but one (`sub`, `version`), and records each call as it was made
    /// and what it took, in the order taken.
    struct Recorder {
        refuse: Option<(&'static str, u64)>,
        calls: Mutex<Vec<Vec<(String, u64)>>>,
        taken: Mutex<Vec<(String, u64)>>,
    }

    impl EventPublisher for Recorder {
        async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
            assert!(events.len() <= MAX_ENTRIES_PER_PUT);
            let entries: Vec<(String, u64)> = events.iter().map(|e| (e.sub().to_owned(), e.version())).collect();
            self.calls.lock().expect("calls").push(entries.clone());
            let mut taken = self.taken.lock().expect("taken");
            Ok(entries
                .into_iter()
                .map(|(sub, version)| {
                    let ok = self.refuse != Some((sub.as_str(), version));
                    if ok {
                        taken.push((sub, version));
                    }
                    ok
                })
                .collect())
        }
    }

    fn recorder(refuse_version: Option<u64>) -> Recorder {
        refusing(refuse_version.map(|v| ("1234", v)))
    }

    fn refusing(refuse: Option<(&'static str, u64)>) -> Recorder {
        Recorder {
            refuse,
            calls: Mutex::new(Vec::new()),
            taken: Mutex::new(Vec::new()),
        }
    }

    fn taken(recorder: &Recorder) -> Vec<u64> {
        recorder.taken.lock().expect("taken").iter().map(|(_, v)| *v).collect()
    }

    /// What one user's events were taken, in the order taken.
    fn taken_of(recorder: &Recorder, sub: &str) -> Vec<u64> {
        recorder
            .taken
            .lock()
            .expect("taken")
            .iter()
            .filter(|(s, _)| s == sub)
            .map(|(_, v)| *v)
            .collect()
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
    fn settings() -> BatchSettings {
        BatchSettings {
            required_scopes: Scopes::default(),
            give_up_after: std::time::Duration::from_secs(18_000),
        }
    }

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

    /// `rounds` rounds of one record per user, in the users' order: each a suspension of
    /// version `round + 1` (one event each), committed `age` seconds ago.
    fn interleaved(users: &[&str], rounds: u64, age: u64) -> Vec<Result<Change, Unreadable>> {
        (1..=rounds)
            .flat_map(|v| {
                users.iter().map(move |sub| {
                    Ok(Change {
                        sequence_number: format!("seq-{sub}-{v}"),
                        created_at: Some(NOW - age),
                        old: Some(grant_of(sub, GrantStatus::Active, "openid", v)),
                        new: Some(grant_of(sub, GrantStatus::Suspended, "openid", v + 1)),
                    })
                })
            })
            .collect()
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
        // 25 records of one user; the odd ones are suspensions (an event each), the even
        // ones routine. One user: one event a call.
        let published = publish_batch(batch(25), &refusing, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-13"));
        assert_eq!(taken(&refusing), [2, 4, 6, 8, 10, 12], "nothing after the refused one");
        assert!(refusing.calls.lock().expect("calls").iter().all(|call| call.len() == 1));
        assert_eq!(published.events, 6, "counted up to the refused one");
        assert!(
            queue.kept.lock().expect("kept").is_empty(),
            "a young record is not given up"
        );

        let all = recorder(None);
        let published = publish_batch(batch(25), &all, &queue, &settings(), NOW).await;
        assert_eq!((published.events, published.retry_from), (13, None));
    }

    #[tokio::test]
    async fn a_call_holds_one_event_of_each_user_and_no_user_has_an_event_taken_after_a_refused_one() {
        let users = ["111", "222", "333", "444"];
        // Twelve rounds of four users: 48 events. The second user's fourth is refused.
        let (first, queue) = (refusing(Some(("222", 5))), Queue::default());
        let published = publish_batch(interleaved(&users, 12, 5), &first, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-222-4"));
        let calls = first.calls.lock().expect("calls").clone();
        for call in &calls {
            let subs: std::collections::HashSet<&str> = call.iter().map(|(s, _)| s.as_str()).collect();
            assert_eq!(subs.len(), call.len(), "one event of each user a call: {call:?}");
        }
        // Delivered as delivered: each user's taken events in version order, and the
        // refused user's none after the refused one.
        assert_eq!(taken_of(&first, "222"), [2, 3, 4]);
        for sub in ["111", "333", "444"] {
            let versions = taken_of(&first, sub);
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{sub}: {versions:?}");
            assert!(versions.starts_with(&[2, 3, 4]), "{sub}: {versions:?}");
        }
        assert_eq!(published.events, 4 * 3 + 1, "counted up to the refused one");

        // The stream delivers the batch again from that record: every user's events arrive,
        // and what went twice is a repeat of one (sub, version).
        let all = refusing(None);
        let again: Vec<_> = interleaved(&users, 12, 5)
            .into_iter()
            .skip_while(|c| c.as_ref().ok().map(|c| c.sequence_number.as_str()) != Some("seq-222-4"))
            .collect();
        let published = publish_batch(again, &all, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from, None);
        for sub in users {
            let versions = taken_of(&all, sub);
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{sub}: {versions:?}");
            assert_eq!(versions.last(), Some(&13), "{sub}: {versions:?}");
        }
    }

    #[tokio::test]
    async fn a_user_given_up_on_has_their_later_events_kept_behind_it_and_the_others_go_on() {
        let users = ["111", "222"];
        let (eb, queue) = (refusing(Some(("111", 3))), Queue::default());
        let published = publish_batch(interleaved(&users, 4, 18_000), &eb, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from, None);
        assert_eq!(taken_of(&eb, "111"), [2], "nothing of 111 after the given-up one");
        assert_eq!(taken_of(&eb, "222"), [2, 3, 4, 5]);
        assert_eq!((published.events, published.kept_events), (5, 3));
        let kept: Vec<(String, Vec<u64>)> = queue
            .kept
            .lock()
            .expect("kept")
            .iter()
            .map(|k| match k {
                Kept::Events {
                    sequence_number,
                    events,
                } => (sequence_number.clone(), events.iter().map(Rendered::version).collect()),
                Kept::UnreadableRecord { .. } => panic!("no unreadable record here"),
            })
            .collect();
        assert_eq!(
            kept,
            [
                ("seq-111-2".to_owned(), vec![3]),
                ("seq-111-3".to_owned(), vec![4]),
                ("seq-111-4".to_owned(), vec![5]),
            ]
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_is_noted_and_skipped_and_never_blocks_the_records_behind_it() {
        let (all, queue) = (recorder(None), Queue::default());
        let mut changes = batch(5);
        changes.insert(2, poison("seq-poison"));
        let published = publish_batch(changes, &all, &queue, &settings(), NOW).await;
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
        let published = publish_batch(batch_aged(5, 18_000), &refusing, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from, None, "the stream moves on");
        // The user's later event (record 5's) is kept behind the given-up one, not sent
        // before it.
        assert_eq!((published.events, published.kept_events), (1, 2));
        assert_eq!(taken(&refusing), [2]);
        let kept = queue.kept.lock().expect("kept").clone();
        let [
            Kept::Events {
                sequence_number,
                events,
            },
            Kept::Events {
                sequence_number: behind,
                events: behind_events,
            },
        ] = kept.as_slice()
        else {
            panic!("two records' events: {kept:?}");
        };
        assert_eq!((sequence_number.as_str(), behind.as_str()), ("seq-3", "seq-5"));
        assert_eq!(
            (events[0].detail_type.as_str(), events[0].sub(), events[0].version()),
            ("GrantSuspended", "1234", 4)
        );
        assert_eq!(behind_events[0].version(), 6);
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
        let published = publish_batch(batch_aged(5, 18_000), &refusing, &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-3"));
        assert_eq!(published.kept_events, 0);

        let mut changes = batch(3);
        changes.insert(1, poison("seq-poison"));
        let published = publish_batch(changes, &recorder(None), &queue, &settings(), NOW).await;
        assert_eq!(published.retry_from.as_deref(), Some("seq-poison"));
        assert_eq!(published.unreadable, 0);
    }
}
