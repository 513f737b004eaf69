//! Events for the customer's systems (DESIGN §13): real writes through the real handlers,
//! the grants table's stream read from moto as Lambda's event source mapping reads it,
//! the `events` handler, and moto's EventBridge delivering through a rule to an SQS queue,
//! where the test reads what a customer's consumer would.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use google_emulator::{CodeSpec, Consent, Endpoint, Fault, SecurityEventSpec};
use local_stack::stream::{StreamReader, lambda_event};
use offline_access::clock::{Clock, SystemClock};
use offline_access::config::EventsConfig;
use offline_access::events::{BatchSettings, EventBridgePublisher, EventPublisher, FailureQueue, Rendered};
use offline_access::upstream::Upstream;
use serde_json::{Value, json};
use test_support::{Stack, android_form_event, no_deadline, risc_event, spawn_stack};

/// An SQS queue behind a rule on the stack's bus: every event, as a consumer gets it.
struct Consumer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Consumer {
    async fn attach(stack: &Stack) -> Self {
        let bus = stack.env["EVENT_BUS_NAME"].clone();
        let sqs = aws_sdk_sqs::Client::new(&stack.aws);
        let name = format!("{bus}-consumer");
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("queue")
            .queue_url()
            .expect("url")
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("arn");
        let events = aws_sdk_eventbridge::Client::new(&stack.aws);
        events
            .put_rule()
            .name(&name)
            .event_bus_name(&bus)
            .event_pattern(json!({"source": ["offline-access"]}).to_string())
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("consumer")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("target");
        Self { sqs, queue_url }
    }

    /// Every event delivered so far (EventBridge's envelope), taken off the queue.
    async fn take(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            if out.messages().is_empty() {
                return events;
            }
            for message in out.messages() {
                events.push(serde_json::from_str(message.body().expect("body")).expect("an event"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

/// Feeds what the stream holds now to the events handler, as Lambda would, and answers
/// the sequence number it asks to have delivered again.
async fn pump(reader: &mut StreamReader, events: &EventsFunction) -> (usize, Option<String>) {
    let records = reader.drain().await.expect("stream");
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(lambda_event(&records)).expect("Lambda's DynamoDB event");
    let answer = events.handle(&event, &events.publisher).await;
    let retry = answer
        .batch_item_failures
        .first()
        .and_then(|f| f.item_identifier.clone());
    (records.len(), retry)
}

/// The `events` function's parts, as its `main` builds them, under its role.
struct EventsFunction {
    publisher: EventBridgePublisher,
    keeper: FailureQueue,
    settings: BatchSettings,
}

impl EventsFunction {
    fn new(stack: &Stack, extra: &[(&str, &str)]) -> Self {
        let mut env = stack.env.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = EventsConfig::from_env(&env).expect("events config");
        let aws = stack.aws_as(test_support::Role::Events);
        Self {
            publisher: offline_access::app::event_publisher(&config, &aws),
            keeper: offline_access::app::event_keeper(&config, &aws),
            settings: offline_access::app::batch_settings(&config),
        }
    }

    /// One invocation, publishing through `publisher` (the function's own, or one that
    /// fails on purpose).
    async fn handle<P: EventPublisher>(
        &self,
        event: &aws_lambda_events::event::dynamodb::Event,
        publisher: &P,
    ) -> aws_lambda_events::event::streams::DynamoDbEventResponse {
        let now = SystemClock.now_unix();
        offline_access::lambda::stream::handle(event, publisher, &self.keeper, &self.settings, now).await
    }
}

/// The detail-types each user got, in the order the consumer received them (the test
/// asserts that order: it is never sorted here).
fn by_user(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        assert_eq!(e["source"], "offline-access");
        let sub = e["detail"]["sub"].as_str().expect("sub").to_owned();
        users
            .entry(sub)
            .or_default()
            .push(e["detail-type"].as_str().expect("type").to_owned());
    }
    users
}

fn cycle(name: &str) -> offline_access::job::CycleId {
    offline_access::job::CycleId::parse(name).expect("cycle")
}

#[tokio::test]
async fn each_change_of_a_grants_state_yields_exactly_its_event_and_a_routine_refresh_none() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let mut reader = StreamReader::open(&stack.aws, &stack.config.common.grants_table)
        .await
        .expect("stream");
    let publisher = EventsFunction::new(&stack, &[]);
    let routes = stack.routes();
    let deliver = async |spec: SecurityEventSpec| {
        let (set, _) = stack.emulator.security_event(&spec).expect("SET");
        let answer = stack
            .invoke_api(&routes, &risc_event(&set, "application/secevent+jwt"))
            .await;
        assert_eq!(answer.status, 202);
    };
    let event = |kind: &str, sub: &str| SecurityEventSpec {
        event: kind.into(),
        sub: Some(sub.into()),
        ..SecurityEventSpec::default()
    };

    // Ada signs in, the job refreshes her grant (routine: no event), she signs in again
    // granting fewer scopes, Google suspends and resumes her account and flags it, the job
    // fails three times to refresh, then Google revokes her tokens.
    let ada = stack.mint(CodeSpec {
        email: Some("ada.events@example.com".into()),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&ada.code)).await.status, 200);
    let refresh = stack.emulator.refresh_token_of(&ada.sub).expect("refresh token");
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T06:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!(report.refreshed, 1);
    let narrower = stack.mint(CodeSpec {
        sub: Some(ada.sub.clone()),
        scopes: Some("openid https://www.googleapis.com/auth/userinfo.email".into()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&narrower.code)).await.status, 200);
    deliver(event("account-disabled", &ada.sub)).await;
    let mut enabled = event("account-enabled", &ada.sub);
    enabled.iat = Some(SystemClock.now_unix() + 1);
    deliver(enabled).await;
    deliver(event("sessions-revoked", &ada.sub)).await;
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    let failing = stack.job(&[("RETRY_MAX_ATTEMPTS", "1")]);
    for hour in 7..10 {
        let report = failing
            .run(&cycle(&format!("2026-11-26T{hour:02}:00:00Z")), "job", no_deadline())
            .await
            .expect("run");
        assert_eq!(report.deferred, 1, "{report:?}");
        stack
            .set_grant_attributes(&ada.sub, &[("next_attempt_at", Some(AttributeValue::N("0".into())))])
            .await;
    }
    stack.emulator.clear_faults();
    deliver(event("tokens-revoked", &ada.sub)).await;

    // Bob signs in with time-limited access, which runs out; Cy signs in and deletes his data.
    let bob = stack.mint(CodeSpec {
        refresh_token_expires_in: Some(3_600),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&bob.code)).await.status, 200);
    stack
        .set_grant_attributes(&bob.sub, &[("refresh_expires_at", Some(AttributeValue::N("1".into())))])
        .await;
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T12:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!(report.reconsent_required, 1, "{report:?}");
    let cy = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&cy.code)).await.status, 200);
    let deleted = stack.delete_as(&routes, &cy.sub).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.json);

    let (records, retry) = pump(&mut reader, &publisher).await;
    assert!(records > 10, "{records} stream records");
    assert_eq!(retry, None);
    let events = consumer.take().await;
    // Every event its own (`sub`, `version`): consumers de-duplicate on it.
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        let key = (e["detail"]["sub"].to_string(), e["detail"]["version"].to_string());
        assert!(seen.insert(key), "a second event with this (sub, version): {e}");
    }
    let users = by_user(&events);
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        users.get(&ada.sub).cloned().unwrap_or_default(),
        strings(&[
            "GrantCreated",
            "GrantScopesChanged",
            "GrantSuspended",
            "GrantResumed",
            "RiscEventReceived",
            // The first cycle whose retries were spent; not the two after it.
            "GrantHealthChanged",
            "GrantRevoked",
        ])
    );
    let health: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "GrantHealthChanged")
        .collect();
    assert_eq!(
        (
            &health[0]["detail"]["level"],
            &health[0]["detail"]["from"],
            &health[0]["detail"]["to"],
            &health[0]["detail"]["error"]
        ),
        // Google's 503 is its "slow down" as much as 429 is.
        (&json!("refresh"), &json!("ok"), &json!("failing"), &json!("throttled")),
        "{}",
        health[0]
    );
    assert_eq!(
        users.get(&bob.sub).cloned().unwrap_or_default(),
        strings(&["GrantCreated", "ReconsentRequired"])
    );
    assert_eq!(
        users.get(&cy.sub).cloned().unwrap_or_default(),
        strings(&["GrantCreated", "GrantDeleted"])
    );
    assert_eq!(users.len(), 3);

    // The detail: the state, never a token or an email.
    let revoked = events
        .iter()
        .find(|e| e["detail-type"] == "GrantRevoked")
        .expect("GrantRevoked");
    assert_eq!(revoked["detail"]["status"], "revoked");
    assert_eq!(revoked["detail"]["reason"], "risc:tokens-revoked");
    let detail_keys: Vec<&String> = revoked["detail"].as_object().expect("detail").keys().collect();
    assert_eq!(detail_keys, ["at", "reason", "scopes", "status", "sub", "version"]);
    let all = serde_json::to_string(&events).expect("JSON");
    for (what, planted) in [
        ("refresh token", refresh.as_str()),
        ("email", "ada.events@example.com"),
        ("an email domain", "@example.com"),
        ("access token", "ya29."),
    ] {
        assert!(!all.contains(planted), "an event carries the {what}");
    }

    // Nothing more is published for what was already done.
    let (records, retry) = pump(&mut reader, &publisher).await;
    assert_eq!((records, retry), (0, None));
    assert!(consumer.take().await.is_empty());
}

/// Refuses the events of one user the first time they come, then takes everything.
struct RefusesOnce<'a> {
    inner: &'a EventBridgePublisher,
    refuse: String,
    refused: Mutex<bool>,
}

impl EventPublisher for RefusesOnce<'_> {
    async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
        let refuse_now = {
            let mut refused = self.refused.lock().expect("lock");
            let now = !*refused && events.iter().any(|e| e.sub() == self.refuse);
            *refused |= now;
            now
        };
        let refused = |e: &Rendered| refuse_now && e.sub() == self.refuse;
        let keep: Vec<Rendered> = events.iter().filter(|e| !refused(e)).cloned().collect();
        let taken = self.inner.publish(&keep).await?;
        let mut answer = Vec::with_capacity(events.len());
        let mut taken = taken.into_iter();
        for e in events {
            answer.push(!refused(e) && taken.next().unwrap_or(false));
        }
        Ok(answer)
    }
}

/// Time-based access ending in two days is announced once (the lease of the cycle that
/// first sees it within `EXPIRY_NOTICE_SECS` records it), with its end and reason; the
/// access-token function tells its caller the same end.
#[tokio::test]
async fn a_predictable_end_is_announced_once_and_the_access_token_answer_carries_it() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let mut reader = StreamReader::open(&stack.aws, &stack.config.common.grants_table)
        .await
        .expect("stream");
    let publisher = EventsFunction::new(&stack, &[]);
    let limited = stack.mint(CodeSpec {
        refresh_token_expires_in: Some(2 * 86_400),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&limited.code)).await.status, 200);
    let lasting = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&lasting.code)).await.status, 200);
    let ends = stack
        .grant(&limited.sub)
        .await
        .expect("grant")
        .refresh_expires_at
        .expect("time-based access");

    let job = stack.job(&[]);
    for hour in ["06", "12", "18"] {
        let report = job
            .run(&cycle(&format!("2026-12-04T{hour}:00:00Z")), "job", no_deadline())
            .await
            .expect("run");
        assert_eq!(report.refreshed, 2, "{report:?}");
    }
    let grant = stack.grant(&limited.sub).await.expect("grant");
    let expiring = grant.expiring.expect("announced");
    assert_eq!((expiring.at, expiring.reason.as_str()), (ends, "time_limited_access"));

    let (_, retry) = pump(&mut reader, &publisher).await;
    assert_eq!(retry, None);
    let events = consumer.take().await;
    let users = by_user(&events);
    assert_eq!(
        users.get(&limited.sub).cloned().unwrap_or_default(),
        ["GrantCreated", "GrantExpiring"],
        "once, however many cycles see it"
    );
    assert_eq!(users.get(&lasting.sub).cloned().unwrap_or_default(), ["GrantCreated"]);
    let announced = events
        .iter()
        .find(|e| e["detail-type"] == "GrantExpiring")
        .expect("GrantExpiring");
    let at = jiff::Timestamp::from_second(i64::try_from(ends).expect("seconds")).expect("time");
    assert_eq!(announced["detail"]["expires_at"], json!(at.to_string()));
    assert_eq!(announced["detail"]["reason"], json!("time_limited_access"));

    let answer = test_support::ask_for_token(&stack.access_tokens(&[]), &json!({"sub": limited.sub})).await;
    assert_eq!(answer["refresh_expires_at"], json!(at.to_string()), "{answer}");
    let answer = test_support::ask_for_token(&stack.access_tokens(&[]), &json!({"sub": lasting.sub})).await;
    assert!(
        answer["access_token"].is_string() && answer.get("refresh_expires_at").is_none(),
        "{answer}"
    );
}

#[tokio::test]
async fn an_event_not_taken_is_delivered_again_from_its_record_and_every_event_arrives() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let mut reader = StreamReader::open(&stack.aws, &stack.config.common.grants_table)
        .await
        .expect("stream");
    let publisher = EventsFunction::new(&stack, &[]);
    let mut subs = Vec::new();
    for _ in 0..3 {
        let code = stack.mint(CodeSpec::default());
        assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
        subs.push(code.sub);
    }
    let records = reader.drain().await.expect("stream");
    let flaky = RefusesOnce {
        inner: &publisher.publisher,
        refuse: subs[1].clone(),
        refused: Mutex::new(false),
    };
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(lambda_event(&records)).expect("event");
    let answer = publisher.handle(&event, &flaky).await;
    let failed: Vec<Option<String>> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let second = records[1]["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned);
    assert_eq!(
        failed,
        std::slice::from_ref(&second),
        "only the record whose event was not taken"
    );

    // Lambda delivers the batch again from that record.
    let from = records
        .iter()
        .position(|r| r["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned) == second)
        .expect("position");
    let again: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(lambda_event(&records[from..])).expect("event");
    let answer = publisher.handle(&again, &flaky).await;
    assert!(answer.batch_item_failures.is_empty());
    let users = by_user(&consumer.take().await);
    // Each user's GrantCreated arrived; the third's at most twice (it went out in the
    // refused call too), which consumers de-duplicate on (sub, version).
    assert_eq!(users.len(), 3);
    assert_eq!(users[&subs[0]], ["GrantCreated"]);
    assert_eq!(users[&subs[1]], ["GrantCreated"]);
    assert!(users[&subs[2]].iter().all(|t| t == "GrantCreated") && !users[&subs[2]].is_empty());
}

/// EventBridge refusing one user's first event once (as an entry's `InternalFailure`),
/// then taking everything through the real publisher.
struct RefusesFirstOf<'a> {
    inner: &'a EventBridgePublisher,
    refuse: String,
    refused: Mutex<bool>,
}

impl EventPublisher for RefusesFirstOf<'_> {
    async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
        let refused_at = {
            let mut refused = self.refused.lock().expect("lock");
            let at = if *refused {
                None
            } else {
                events.iter().position(|e| e.sub() == self.refuse)
            };
            *refused |= at.is_some();
            at
        };
        let keep: Vec<Rendered> = events
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != refused_at)
            .map(|(_, e)| e.clone())
            .collect();
        let mut taken = self.inner.publish(&keep).await?.into_iter();
        Ok((0..events.len())
            .map(|i| Some(i) != refused_at && taken.next().unwrap_or(false))
            .collect())
    }
}

/// EventBridge refusing every entry, as in an outage.
struct Outage;

impl EventPublisher for Outage {
    async fn publish(&self, events: &[Rendered]) -> Result<Vec<bool>, Upstream> {
        Ok(vec![false; events.len()])
    }
}

/// Runs `offline-access events replay --json` (the CLI binary) against the stack.
async fn replay(stack: &Stack, extra: &[&str]) -> Value {
    let out = tokio::process::Command::new(test_support::runtime_api::binary("offline-access"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&stack.env)
        .env("AWS_ENDPOINT_URL", test_support::aws_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(["events", "replay", "--json"])
        .args(extra)
        .output()
        .await
        .expect("the CLI runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test]
async fn an_unreadable_record_is_noted_in_the_failure_queue_and_never_blocks_the_records_behind_it() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let mut reader = StreamReader::open(&stack.aws, &stack.config.common.grants_table)
        .await
        .expect("stream");
    let function = EventsFunction::new(&stack, &[]);
    let mut subs = Vec::new();
    for _ in 0..2 {
        let code = stack.mint(CodeSpec::default());
        assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
        subs.push(code.sub);
    }
    // A write this code cannot read (a status it does not know), then one more sign-in.
    stack
        .set_grant_attributes(&subs[0], &[("status", Some(AttributeValue::S("bogus".into())))])
        .await;
    let code = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    subs.push(code.sub);

    let (records, retry) = pump(&mut reader, &function).await;
    assert_eq!((records, retry), (4, None), "nothing is delivered again");
    let users = by_user(&consumer.take().await);
    assert_eq!(
        users.len(),
        3,
        "the sign-in behind the unreadable record went: {users:?}"
    );
    assert!(subs.iter().all(|s| users[s] == ["GrantCreated"]));

    // The note names the record and its key, nothing of its images; replay publishes
    // nothing for it, and keeps it until told to drop it.
    let replayed = replay(&stack, &[]).await;
    assert_eq!(replayed["events"], json!(0));
    let notes = replayed["unreadable"].as_array().expect("notes").clone();
    assert_eq!(notes.len(), 1, "{replayed}");
    assert_eq!(notes[0]["sub"], json!(subs[0]));
    assert!(notes[0]["sequence_number"].as_str().is_some_and(|s| !s.is_empty()));
    let dropped = replay(&stack, &["--drop-notes"]).await;
    assert_eq!(dropped["unreadable"].as_array().map(Vec::len), Some(1));
    assert_eq!(replay(&stack, &[]).await["unreadable"], json!([]), "dropped");
}

/// Ada and Bob sign in and Ada deletes her grant while EventBridge is down: the events
/// function gives their three events up at once (so the test need not wait hours for a
/// record to age) and keeps them; the stream moves on, nothing is lost, none delivered.
async fn kept_through_an_outage(
    stack: &Stack,
    consumer: &Consumer,
) -> (google_emulator::MintedCode, google_emulator::MintedCode) {
    let mut reader = StreamReader::open(&stack.aws, &stack.config.common.grants_table)
        .await
        .expect("stream");
    let function = EventsFunction::new(stack, &[("EVENTS_GIVE_UP_SECS", "0")]);
    let routes = stack.routes();
    let (ada, bob) = (stack.mint(CodeSpec::default()), stack.mint(CodeSpec::default()));
    for user in [&ada, &bob] {
        assert_eq!(stack.invoke(&android_form_event(&user.code)).await.status, 200);
    }
    let deleted = stack.delete_as(&routes, &ada.sub).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.json);
    let records = reader.drain().await.expect("stream");
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(lambda_event(&records)).expect("event");
    let answer = function.handle(&event, &Outage).await;
    assert!(answer.batch_item_failures.is_empty(), "given up, not retried");
    assert!(consumer.take().await.is_empty());
    (ada, bob)
}

#[tokio::test]
async fn events_not_published_in_time_are_kept_as_events_and_events_replay_publishes_them_in_order() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let (ada, bob) = kept_through_an_outage(&stack, &consumer).await;

    // The operator replays once EventBridge is back: every event, each user's in order.
    let replayed = replay(&stack, &[]).await;
    assert_eq!(
        (replayed["events"].as_u64(), replayed["left"].as_u64()),
        (Some(3), Some(0)),
        "{replayed}"
    );
    assert_eq!(replayed["more"], json!(false), "all taken in one run");
    let delivered = consumer.take().await;
    let of = |sub: &str| -> Vec<(String, u64)> {
        delivered
            .iter()
            .filter(|e| e["detail"]["sub"] == json!(sub))
            .map(|e| {
                (
                    e["detail-type"].as_str().unwrap_or_default().to_owned(),
                    e["detail"]["version"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let ada_events = of(&ada.sub);
    assert_eq!(
        ada_events.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["GrantCreated", "GrantDeleted"],
        "as delivered"
    );
    assert!(ada_events[0].1 < ada_events[1].1);
    assert_eq!(of(&bob.sub).len(), 1);
    // Deleted once published: a second replay has nothing to do.
    assert_eq!(replay(&stack, &[]).await["events"], json!(0));
}

#[tokio::test]
async fn a_replay_holds_back_a_users_later_events_behind_one_not_taken() {
    let stack = spawn_stack().await;
    let consumer = Consumer::attach(&stack).await;
    let (ada, bob) = kept_through_an_outage(&stack, &consumer).await;

    // The operator's replay (the CLI's parts, under the operator's credentials); its call
    // refuses Ada's GrantCreated: her GrantDeleted is not sent after it.
    let config = EventsConfig::from_env(&stack.env).expect("events config");
    let (keeper, publisher) = (
        offline_access::app::event_keeper(&config, &stack.aws),
        offline_access::app::event_publisher(&config, &stack.aws),
    );
    let flaky = RefusesFirstOf {
        inner: &publisher,
        refuse: ada.sub.clone(),
        refused: Mutex::new(false),
    };
    let replayed = offline_access::events::replay(&keeper, &flaky, false)
        .await
        .expect("replay");
    assert_eq!(
        (replayed.events, replayed.messages, replayed.left),
        (1, 1, 2),
        "{replayed:?}"
    );
    assert_eq!(
        by_user(&consumer.take().await),
        BTreeMap::from([(bob.sub.clone(), vec!["GrantCreated".to_owned()])])
    );

    // The next replay sends hers, in order as delivered.
    let replayed = offline_access::events::replay(&keeper, &publisher, false)
        .await
        .expect("replay");
    assert_eq!((replayed.events, replayed.left), (2, 0), "{replayed:?}");
    assert_eq!(
        by_user(&consumer.take().await),
        BTreeMap::from([(
            ada.sub.clone(),
            vec!["GrantCreated".to_owned(), "GrantDeleted".to_owned()]
        )])
    );
}
