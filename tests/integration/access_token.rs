//! The access-token function (DESIGN §11) through its real handler, against moto and the
//! Google emulator over real HTTP: served from the cache, refreshed once for many callers,
//! refused with the right answer, never a false revocation, nothing lost under faults, and
//! no access token readable at rest.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::join_all;
use google_emulator::{CodeSpec, Consent, Endpoint, Fault};
use offline_access::clock::{Clock, SystemClock};
use offline_access::domain::{GoogleSubject, Profile};
use offline_access::store::{Grant, GrantStatus, GrantStore};
use serde_json::{Value, json};
use test_support::{Stack, android_form_event, ask_for_token, no_deadline, spawn_stack};

const DRIVE: &str = "openid https://www.googleapis.com/auth/drive.appdata";
const DRIVE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A lease on `sub`'s grant held by `owner` until `until`, as another invocation leaves it.
async fn plant_lease(stack: &Stack, sub: &str, owner: &str, until: u64) {
    let attrs = [
        ("lease_owner", Some(AttributeValue::S(owner.into()))),
        ("lease_until", Some(number(until))),
    ];
    stack.set_grant_attributes(sub, &attrs).await;
}

fn token_of(answer: &Value) -> &str {
    assert_eq!(answer["status"], json!(200), "{answer}");
    answer["access_token"].as_str().expect("an access token")
}

#[tokio::test]
async fn a_second_call_is_served_from_the_cache_and_a_larger_min_ttl_refreshes() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 1).await[0];
    // Google's tokens live an hour; these live 20 minutes, so 30 minutes asks too much.
    stack.emulator.set_access_token_lifetime(1_200);
    let service = stack.access_tokens(&[]);

    let first = ask_for_token(&service, &json!({"sub": user.sub})).await;
    let issued = stack.emulator.refreshed_access_tokens(&user.sub);
    assert_eq!(issued.len(), 1);
    assert_eq!(token_of(&first), issued[0], "the token Google issued");
    let expires = first["expires_at"].as_str().expect("expires_at");
    assert!(expires.ends_with('Z'), "RFC 3339 in UTC: {expires}");
    let expires: jiff::Timestamp = expires.parse().expect("RFC 3339");
    let left = expires.as_second() - jiff::Timestamp::now().as_second();
    assert!((1_100..=1_200).contains(&left), "{left} s left");
    assert_eq!(first["scopes"], json!([DRIVE_APPDATA, "openid"]));

    let again = ask_for_token(
        &service,
        &json!({"sub": user.sub, "min_ttl_secs": 900, "scopes": [DRIVE_APPDATA]}),
    )
    .await;
    assert_eq!(token_of(&again), issued[0], "served from the cache");
    assert_eq!(stack.emulator.stats().refreshes, 1, "no Google call");

    // Moments after Google issued it, the token is the longest-lived there is: answered
    // as it is, not refreshed again for nothing.
    let longer = ask_for_token(&service, &json!({"sub": user.sub, "min_ttl_secs": 1_800})).await;
    assert_eq!(token_of(&longer), issued[0]);
    assert_eq!(stack.emulator.stats().refreshes, 1);
    // Past the floor (none here), too little left means a refresh.
    let unfloored = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let longer = ask_for_token(&unfloored, &json!({"sub": user.sub, "min_ttl_secs": 1_800})).await;
    let issued = stack.emulator.refreshed_access_tokens(&user.sub);
    assert_eq!(issued.len(), 2, "too little left: refreshed");
    assert_eq!(token_of(&longer), issued[1]);
    // Google accepts the token it issued.
    assert!(stack.emulator.refresh_token_is_live(&user.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_calls_on_an_expired_cache_reach_google_once_and_get_one_token() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 1).await[0];
    // Cache a token with 60 s left: too little for the default `min_ttl_secs` of 300.
    stack.emulator.set_access_token_lifetime(60);
    let stale = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub, "min_ttl_secs": 0})).await;
    let stale = token_of(&stale).to_owned();
    // Issued long ago, as a token with a minute left was.
    let long_ago = SystemClock.now_unix() - 3_540;
    stack
        .set_cached_token_attributes(&user.sub, &[("obtained_at", Some(number(long_ago)))])
        .await;
    stack.emulator.set_access_token_lifetime(3_599);
    let before = stack.emulator.stats().refreshes;

    // Twenty Lambda instances, each with its own clients and caches.
    let instances: Vec<_> = (0..20).map(|_| stack.access_tokens(&[])).collect();
    let request = json!({"sub": user.sub});
    let answers = join_all(instances.iter().map(|service| ask_for_token(service, &request))).await;

    assert_eq!(stack.emulator.stats().refreshes - before, 1, "one Google refresh");
    let tokens: std::collections::BTreeSet<&str> = answers.iter().map(token_of).collect();
    assert_eq!(tokens.len(), 1, "one token for all twenty");
    assert!(!tokens.contains(stale.as_str()));
    assert!(!stack.lease_held(&user.sub).await, "the lease was let go");
}

#[tokio::test]
async fn a_lease_holder_that_died_blocks_the_grant_no_longer_than_its_lease() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 1).await[0];
    // An invocation took the lease and died: its lease runs until a second ago.
    let now = SystemClock.now_unix();
    plant_lease(&stack, &user.sub, "dead", now - 1).await;
    let answer = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub})).await;
    token_of(&answer);

    // One still held, and no token cached: the caller waits its budget, then is told to
    // retry; Google is not called and nothing changes.
    let other = &stack.seed_grants(1, DRIVE, 1).await[0];
    plant_lease(&stack, &other.sub, "busy", now + 600).await;
    let before = stack.emulator.stats().refreshes;
    let service = stack.access_tokens(&[("ACCESS_TOKEN_BUDGET_MS", "300")]);
    let answer = ask_for_token(&service, &json!({"sub": other.sub})).await;
    assert_eq!(
        (answer["status"].clone(), answer["error"].clone()),
        (json!(503), json!("upstream_unavailable")),
        "{answer}"
    );
    assert!(answer["retry_after_secs"].as_u64().is_some_and(|s| s >= 1));
    assert_eq!(
        stack.emulator.stats().refreshes,
        before,
        "no Google call while another holds it"
    );
}

async fn insert(stack: &Stack, sub: &str, status: GrantStatus, reason: Option<&str>, with_token: bool) {
    let seeded = &stack.seed_grants(1, DRIVE, 0).await[0];
    let mut grant: Grant = seeded.grant.clone();
    grant.sub = GoogleSubject::parse(sub).expect("sub");
    grant.status = status;
    grant.status_reason = reason.map(str::to_owned);
    grant.profile = Profile::default();
    if !with_token {
        grant.refresh_token = None;
    }
    stack.service.store.insert(&grant).await.expect("insert");
}

#[tokio::test]
async fn unknown_unusable_and_under_scoped_grants_get_their_answers_without_a_google_call() {
    let stack = spawn_stack().await;
    let service = stack.access_tokens(&[]);
    insert(
        &stack,
        "5001",
        GrantStatus::Revoked,
        Some("invalid_grant:invalid_rapt"),
        false,
    )
    .await;
    insert(
        &stack,
        "5002",
        GrantStatus::ReconsentRequired,
        Some("no refresh token stored"),
        false,
    )
    .await;
    insert(&stack, "5003", GrantStatus::Active, None, false).await;
    let user = &stack.seed_grants(1, "openid", 0).await[0];

    let cases = [
        (json!({"sub": "4040"}), 404, "grant_not_found", None),
        (
            json!({"sub": "5001"}),
            409,
            "reauthorization_required",
            Some("invalid_grant:invalid_rapt"),
        ),
        (
            json!({"sub": "5002"}),
            409,
            "reauthorization_required",
            Some("no refresh token stored"),
        ),
        (
            json!({"sub": "5003"}),
            409,
            "reauthorization_required",
            Some("no_refresh_token"),
        ),
        (
            json!({"sub": user.sub, "scopes": ["openid", DRIVE_APPDATA]}),
            403,
            "scope_not_granted",
            None,
        ),
    ];
    for (payload, status, error, reason) in cases {
        let answer = ask_for_token(&service, &payload).await;
        assert_eq!(answer["status"], json!(status), "{payload}: {answer}");
        assert_eq!(answer["error"], json!(error), "{payload}");
        if let Some(reason) = reason {
            assert_eq!(answer["reason"], json!(reason), "{payload}");
        }
        assert!(answer.get("access_token").is_none());
    }
    let missing = ask_for_token(&service, &json!({"sub": user.sub, "scopes": [DRIVE_APPDATA, "openid"]})).await;
    assert_eq!(missing["missing_scopes"], json!([DRIVE_APPDATA]));
    assert_eq!(stack.emulator.stats().refreshes, 0, "Google was never called");
}

#[tokio::test]
async fn malformed_requests_are_answered_400_and_change_nothing() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let service = stack.access_tokens(&[]);
    let oversize = json!({"sub": user.sub, "scopes": ["x".repeat(9_000)]});
    for payload in [
        json!({}),
        json!({"min_ttl_secs": 300}),
        json!({"sub": 1001}),
        json!({"sub": user.sub, "min_ttl_secs": 3_001}),
        json!({"sub": user.sub, "min_ttl_secs": "300"}),
        json!({"sub": user.sub, "scopes": "openid"}),
        json!({"sub": user.sub, "force_refresh": "true"}),
        json!({"sub": user.sub, "user": "x"}),
        oversize,
        json!([user.sub]),
    ] {
        let answer = ask_for_token(&service, &payload).await;
        assert_eq!(answer["status"], json!(400), "{payload}: {answer}");
        assert_eq!(answer["error"], json!("invalid_request"));
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(stack.emulator.stats().refreshes, 0);
    assert!(stack.cached_token_item(&user.sub).await.is_none());
}

#[tokio::test]
async fn force_refresh_is_held_to_the_per_grant_floor() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let service = stack.access_tokens(&[]);
    let first = ask_for_token(&service, &json!({"sub": user.sub, "force_refresh": true})).await;
    token_of(&first);
    let again = ask_for_token(&service, &json!({"sub": user.sub, "force_refresh": true})).await;
    assert_eq!(again["status"], json!(429), "{again}");
    assert_eq!(again["error"], json!("refresh_backoff"));
    assert!(
        again["retry_after_secs"]
            .as_u64()
            .is_some_and(|s| (1..=30).contains(&s))
    );
    assert_eq!(stack.emulator.stats().refreshes, 1);

    // With no floor, a forced refresh refreshes even with a good token cached.
    let unfloored = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let forced = ask_for_token(&unfloored, &json!({"sub": user.sub, "force_refresh": true})).await;
    assert_ne!(token_of(&forced), token_of(&first));
    assert_eq!(stack.emulator.stats().refreshes, 2);
    // The forced token replaces the cached one (the caller may have seen it refused),
    // even though it lives shorter.
    stack.emulator.set_access_token_lifetime(1_000);
    let shorter = ask_for_token(
        &unfloored,
        &json!({"sub": user.sub, "force_refresh": true, "min_ttl_secs": 0}),
    )
    .await;
    let next = ask_for_token(&service, &json!({"sub": user.sub, "min_ttl_secs": 0})).await;
    assert_eq!(token_of(&next), token_of(&shorter));
}

#[tokio::test]
async fn googles_retry_after_holds_in_the_process_when_the_table_could_not_note_it() {
    use std::time::Duration;
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    // No floor: only Google's Retry-After may hold a caller back.
    let service = stack.access_tokens(&[
        ("FORCE_REFRESH_MIN_SECS", "0"),
        // One attempt per call: a held one is not retried inside the call.
        ("AWS_ATTEMPT_TIMEOUT_MS", "1500"),
        ("AWS_CALL_TIMEOUT_MS", "1500"),
        ("HTTP_TIMEOUT_MS", "5000"),
    ]);
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(429),
            retry_after: Some(40),
            delay_ms: 2_500,
            count: Some(1),
            ..Fault::default()
        },
    );
    let sub = user.sub.clone();
    let first = {
        let service = &service;
        async move { ask_for_token(service, &json!({"sub": sub})).await }
    };
    let hold_the_note = async {
        // The lease is taken: the next UpdateItem is the note of Google's answer, and the
        // store does not answer it in time.
        while !stack.lease_held(&user.sub).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stack.iam.delay("UpdateItem", Duration::from_secs(5), 1);
    };
    let (first, ()) = tokio::join!(first, hold_the_note);
    assert_eq!(first["status"], json!(503), "{first}");
    let item = stack.cached_token_item(&user.sub).await.unwrap_or_default();
    assert!(
        !item.contains_key("retry_at"),
        "the note did not reach the table: {item:?}"
    );

    let refreshes = stack.emulator.stats().refreshes;
    let held = ask_for_token(&service, &json!({"sub": user.sub})).await;
    assert_eq!(held["status"], json!(503), "{held}");
    assert!(held["retry_after_secs"].as_u64().is_some_and(|s| s >= 38), "{held}");
    assert_eq!(
        stack.emulator.stats().refreshes,
        refreshes,
        "not sent to Google before it"
    );
}

#[tokio::test]
async fn google_unavailable_answers_503_with_retry_after_and_loses_nothing() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(3, DRIVE, 0).await;
    let service = stack.access_tokens(&[("HTTP_TIMEOUT_MS", "300")]);
    let faults = [
        Fault {
            status: Some(429),
            retry_after: Some(40),
            count: Some(1),
            ..Fault::default()
        },
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
        // Slower than the call's timeout.
        Fault {
            delay_ms: 1_000,
            count: Some(1),
            ..Fault::default()
        },
    ];
    for (user, fault) in users.iter().zip(faults) {
        let retry_after = fault.retry_after;
        stack.emulator.inject_fault(Endpoint::Token, fault);
        let answer = ask_for_token(&service, &json!({"sub": user.sub})).await;
        assert_eq!(answer["status"], json!(503), "{answer}");
        assert_eq!(answer["error"], json!("upstream_unavailable"));
        let waited = answer["retry_after_secs"].as_u64().expect("retry_after_secs");
        assert!(waited >= retry_after.unwrap_or(1), "{waited}");
        let grant = stack.grant(&user.sub).await.expect("grant");
        assert_eq!(grant.status, GrantStatus::Active);
        assert_eq!(
            stack.stored_refresh_token(&user.sub).await.as_deref(),
            Some(user.token.as_str())
        );
        assert!(stack.emulator.refresh_token_is_live(&user.token));
        assert!(!stack.lease_held(&user.sub).await, "the lease was let go");
    }
    // Google's Retry-After (40 s) holds for the next caller too, even past the floor.
    let refreshes = stack.emulator.stats().refreshes;
    let no_floor = stack.access_tokens(&[("HTTP_TIMEOUT_MS", "300"), ("FORCE_REFRESH_MIN_SECS", "0")]);
    let held = ask_for_token(&no_floor, &json!({"sub": users[0].sub})).await;
    assert_eq!(held["status"], json!(503), "{held}");
    assert!(held["retry_after_secs"].as_u64().is_some_and(|s| s >= 38), "{held}");
    assert_eq!(
        stack.emulator.stats().refreshes,
        refreshes,
        "no caller goes to Google before it"
    );
    // Within the floor after a failure, the next caller is told to wait, not sent to Google.
    let again = ask_for_token(&service, &json!({"sub": users[1].sub})).await;
    assert_eq!(again["status"], json!(503), "{again}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes);
    // Once the floor allows, it works.
    let unfloored = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    token_of(&ask_for_token(&unfloored, &json!({"sub": users[1].sub})).await);
}

#[tokio::test]
async fn invalid_grant_ends_the_grant_as_the_job_would() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(2, DRIVE, 0).await;
    let (held, revoked) = (&users[0], &users[1]);
    stack.emulator.revoke_refresh_token(&held.token, Some("invalid_rapt"));
    stack.emulator.revoke_refresh_token(&revoked.token, None);
    let service = stack.access_tokens(&[]);

    // A session control: held until the user signs in again, its token kept.
    let answer = ask_for_token(&service, &json!({"sub": held.sub})).await;
    assert_eq!(answer["status"], json!(409), "{answer}");
    assert_eq!(answer["error"], json!("reauthorization_required"));
    assert_eq!(answer["reason"], json!("invalid_grant:invalid_rapt"));
    assert_eq!(answer["likely_cause"], json!("reauthentication_required"));
    let grant = stack.grant(&held.sub).await.expect("grant");
    assert_eq!(
        (
            grant.status,
            grant.status_reason.as_deref(),
            grant.refresh_token.is_some()
        ),
        (GrantStatus::ReconsentRequired, Some("invalid_grant:invalid_rapt"), true)
    );
    assert_eq!(grant.version, held.grant.version + 1);
    assert!(!stack.lease_held(&held.sub).await, "the lease was let go");

    // A revocation: the token is deleted.
    let answer = ask_for_token(&service, &json!({"sub": revoked.sub})).await;
    assert_eq!(
        (answer["status"].clone(), answer["reason"].clone()),
        (json!(409), json!("invalid_grant"))
    );
    let grant = stack.grant(&revoked.sub).await.expect("grant");
    assert_eq!(
        (grant.status, grant.refresh_token.is_none()),
        (GrantStatus::Revoked, true)
    );
}

/// A user-facing refresh of `sub`'s grant whose stored `token` Google has revoked, held
/// at Google until the test calls `release_held`: returned once the refresh has reached
/// Google, with its lease.
async fn refresh_held_at_google(stack: &Stack, sub: &str, token: &str) -> tokio::task::JoinHandle<Value> {
    stack.emulator.revoke_refresh_token(token, None);
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            held: true,
            count: Some(1),
            ..Fault::default()
        },
    );
    let service = stack.access_tokens(&[("HTTP_TIMEOUT_MS", "60000")]);
    let sub = sub.to_owned();
    let call = tokio::spawn(async move { ask_for_token(&service, &json!({"sub": sub})).await });
    assert!(stack.emulator.until_held(1).await, "the refresh reached Google");
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_in_that_replaces_the_token_during_a_refresh_is_not_revoked_and_its_token_is_used() {
    let stack = spawn_stack().await;
    let user = stack.seed_grants(1, DRIVE, 0).await.remove(0);
    // The stored token is dead at Google, and its refresh is held up while a sign-in
    // stores a new one.
    let call = refresh_held_at_google(&stack, &user.sub, &user.token).await;
    let code = stack.mint(CodeSpec {
        sub: Some(user.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let new_token = stack.emulator.refresh_token_of(&user.sub).expect("the new token");

    stack.emulator.release_held();
    let answer = call.await.expect("call");
    token_of(&answer);
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(grant.status, GrantStatus::Active, "no false revocation");
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(new_token));
    assert!(!stack.lease_held(&user.sub).await, "the lease was let go");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    stack.emulator.set_refresh_token_rotation(true);
    token_of(&ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub})).await);
    let live = stack.emulator.refresh_token_of(&user.sub).expect("rotated");
    assert_ne!(live, user.token);
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(live));
}

#[tokio::test]
async fn a_call_after_the_job_is_served_from_the_token_the_job_obtained() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(3, DRIVE, 1).await;
    let cycle = offline_access::job::CycleId::parse("2026-11-26T12:00:00Z").expect("cycle");
    let report = stack.job(&[]).run(&cycle, "job", no_deadline()).await.expect("run");
    assert_eq!((report.refreshed, report.access_tokens_cached), (3, 3), "{report:?}");
    let refreshes = stack.emulator.stats().refreshes;

    let service = stack.access_tokens(&[]);
    for user in &users {
        let answer = ask_for_token(&service, &json!({"sub": user.sub, "scopes": [DRIVE_APPDATA]})).await;
        let from_job = stack.emulator.refreshed_access_tokens(&user.sub);
        assert_eq!(Some(token_of(&answer)), from_job.last().map(String::as_str));
    }
    assert_eq!(stack.emulator.stats().refreshes, refreshes, "no Google call");
}

#[tokio::test]
async fn no_access_token_is_readable_at_rest_nor_opens_anywhere_but_its_own_place() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(2, DRIVE, 0).await;
    let (ada, bob) = (&users[0], &users[1]);
    let service = stack.access_tokens(&[]);
    let ada_token = token_of(&ask_for_token(&service, &json!({"sub": ada.sub})).await).to_owned();
    let bob_token = token_of(&ask_for_token(&service, &json!({"sub": bob.sub})).await).to_owned();

    let mut items = stack.scan(&stack.config.common.state_table).await;
    items.extend(stack.grants().await);
    let bytes = format!("{items:?}");
    for planted in [&ada_token, &bob_token, &ada.token, &bob.token] {
        assert!(!bytes.contains(planted.as_str()), "a token in plaintext at rest");
    }
    let sealed = stack.cached_token_item(&ada.sub).await.expect("ada's cache")["access_token"].clone();

    // Ada's sealed access token in Bob's cache item: it does not open for Bob, who gets
    // a fresh token of his own.
    let fresh = stack.access_tokens(&[]);
    stack
        .set_cached_token_attributes(&bob.sub, &[("access_token", Some(sealed.clone()))])
        .await;
    let bob_again = ask_for_token(&fresh, &json!({"sub": bob.sub})).await;
    assert_ne!(token_of(&bob_again), ada_token);
    assert_ne!(
        token_of(&bob_again),
        bob_token,
        "refreshed: the copied token did not open"
    );

    // Ada's sealed access token as her refresh token: it does not open as one. The
    // grant is left as it was and no token is answered.
    stack
        .set_grant_attributes(&ada.sub, &[("refresh_token", Some(sealed))])
        .await;
    let unfloored = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let answer = ask_for_token(&unfloored, &json!({"sub": ada.sub, "force_refresh": true})).await;
    assert_eq!(answer["status"], json!(500), "{answer}");
    assert_eq!(answer["error"], json!("server_misconfigured"));
    let grant = stack.grant(&ada.sub).await.expect("grant");
    assert_eq!(grant.status, GrantStatus::Active);
    assert!(!stack.lease_held(&ada.sub).await, "the lease was let go");
}

#[tokio::test]
async fn a_cached_token_costs_one_read_of_its_item_and_a_refresh_four_requests() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let requests = test_support::CountRequests::default();
    let config = stack.access_config(&[]);
    let service = offline_access::app::AppBuilder::new(&config.common, &stack.aws_as(test_support::Role::AccessToken))
        .dynamodb(requests.dynamodb(&stack.aws_as(test_support::Role::AccessToken)))
        .build()
        .expect("app")
        .access_tokens(&config);

    // A refresh: the cache item (nothing there), the grant and its cache (one
    // BatchGetItem), take the lease, cache the new token, which lets go of the lease.
    token_of(&ask_for_token(&service, &json!({"sub": user.sub})).await);
    assert_eq!(requests.count(), 4);
    // From the cache: its item alone, one read of one item.
    token_of(&ask_for_token(&service, &json!({"sub": user.sub})).await);
    assert_eq!(requests.count(), 4 + 1);
    let last = stack.iam.checked().pop().map(|c| c.needs);
    let one_read = vec![("dynamodb:GetItem".to_owned(), "StateTable".to_owned())];
    assert_eq!(
        last.map(|needs| needs.into_iter().map(|n| (n.action, n.resource)).collect::<Vec<_>>()),
        Some(one_read)
    );
    // The lease is let go: a forced refresh past the floor takes it at once.
    stack
        .set_cached_token_attributes(&user.sub, &[("obtained_at", Some(AttributeValue::N("1".into())))])
        .await;
    stack
        .set_grant_attributes(&user.sub, &[("last_refresh_at", None)])
        .await;
    let refreshes = stack.emulator.stats().refreshes;
    token_of(&ask_for_token(&service, &json!({"sub": user.sub, "force_refresh": true})).await);
    assert_eq!(stack.emulator.stats().refreshes, refreshes + 1);
    assert_eq!(
        requests.count(),
        4 + 1 + 3,
        "a forced refresh reads the grant with its cache at once, and waits for no lease"
    );
}

#[tokio::test]
async fn a_grant_the_job_deferred_gets_one_user_facing_attempt_per_floor() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let now = SystemClock.now_unix();
    // Deferred as the job does it.
    stack
        .set_grant_attributes(
            &user.sub,
            &[
                ("failure_count", Some(number(3))),
                ("next_attempt_at", Some(number(now + 3_600))),
            ],
        )
        .await;
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
    );
    let service = stack.access_tokens(&[]);

    let tried = ask_for_token(&service, &json!({"sub": user.sub})).await;
    assert_eq!(tried["status"], json!(503), "{tried}");
    assert_eq!(stack.emulator.stats().faults_served, 1, "the deferred grant was tried");
    let again = ask_for_token(&service, &json!({"sub": user.sub})).await;
    assert_eq!(again["status"], json!(503), "{again}");
    let stats = stack.emulator.stats();
    assert_eq!(
        (stats.faults_served, stats.refreshes),
        (1, 0),
        "not again within the floor"
    );

    let later = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    token_of(&ask_for_token(&later, &json!({"sub": user.sub})).await);
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(
        (grant.failure_count, grant.next_attempt_at),
        (3, Some(now + 3_600)),
        "the job's own backoff is the job's"
    );
}

/// The access-token function records a refresh and nothing of the job's: a deferral the
/// job set (Drive failing while refreshes work) outlives a user-facing refresh, which
/// leaves the grant's token and status (its version) as they were. (README, decisions:
/// one grant lease, two records of its end.)
#[tokio::test]
async fn a_user_facing_refresh_leaves_the_jobs_deferral_as_it_was() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let later = SystemClock.now_unix() + 3_600;
    stack
        .set_grant_attributes(
            &user.sub,
            &[
                ("failure_count", Some(number(2))),
                ("next_attempt_at", Some(number(later))),
                ("last_error", Some(AttributeValue::S("drive: 500".into()))),
            ],
        )
        .await;
    let before = stack.grant(&user.sub).await.expect("grant");
    let service = stack.access_tokens(&[]);
    token_of(&ask_for_token(&service, &json!({"sub": user.sub})).await);
    assert_eq!(stack.emulator.stats().refreshes, 1, "a refresh at Google");
    let after = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(
        (after.failure_count, after.next_attempt_at),
        (2, Some(later)),
        "the job's deferral stands"
    );
    assert_eq!(
        stack.grant_attribute(&user.sub, "last_error").await,
        Some(AttributeValue::S("drive: 500".into()))
    );
    assert_eq!(after.version, before.version, "the grant's token and status untouched");
}

#[tokio::test]
async fn a_hostile_token_answer_is_refused_or_bounded_and_loses_nothing() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(3, DRIVE, 0).await;
    let service = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let answering = |body: String| Fault {
        status: Some(200),
        body: Some(body),
        count: Some(1),
        ..Fault::default()
    };

    // A 200 without a usable access token: the caller is told to retry; nothing is cached,
    // and the grant keeps its token.
    stack.emulator.inject_fault(
        Endpoint::Token,
        answering(r#"{"access_token": "", "expires_in": 3599, "token_type": "Bearer"}"#.into()),
    );
    let answer = ask_for_token(&service, &json!({"sub": users[0].sub})).await;
    assert_eq!(answer["status"], json!(503), "{answer}");
    assert_eq!(answer["error"], json!("upstream_unavailable"));
    assert!(
        stack
            .cached_token_item(&users[0].sub)
            .await
            .is_none_or(|item| !item.contains_key("access_token")),
        "nothing cached"
    );
    let grant = stack.grant(&users[0].sub).await.expect("grant");
    assert_eq!(grant.status, GrantStatus::Active);
    assert_eq!(
        stack.stored_refresh_token(&users[0].sub).await.as_deref(),
        Some(users[0].token.as_str())
    );

    // Lifetimes past any Google gives (one overflows an expiry): the token is served with
    // a short, real expiry, never a blank or a panic.
    for (user, expires_in) in users[1..].iter().zip(["1000000000000000", &u64::MAX.to_string()]) {
        stack.emulator.inject_fault(
            Endpoint::Token,
            answering(format!(
                r#"{{"access_token": "ya29.hostile", "expires_in": {expires_in}, "token_type": "Bearer"}}"#
            )),
        );
        let answer = ask_for_token(&service, &json!({"sub": user.sub, "min_ttl_secs": 0})).await;
        assert_eq!(token_of(&answer), "ya29.hostile");
        let expires_at: jiff::Timestamp = answer["expires_at"]
            .as_str()
            .and_then(|at| at.parse().ok())
            .unwrap_or_else(|| panic!("a real expiry: {answer}"));
        let left = expires_at.as_second() - jiff::Timestamp::now().as_second();
        assert!(left <= 300, "taken as short-lived, not {left} s");
    }
}

#[tokio::test]
async fn a_corrupted_cache_item_is_taken_as_absent_and_replaced() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(4, DRIVE, 0).await;
    let service = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let corruptions: [(&str, AttributeValue); 4] = [
        ("access_token", AttributeValue::S("not bytes".into())),
        ("access_token", AttributeValue::B(vec![9, 9, 9].into())),
        ("token_expires_at", AttributeValue::S("soon".into())),
        ("obtained_at", AttributeValue::S("earlier".into())),
    ];
    for (user, (attribute, value)) in users.iter().zip(corruptions) {
        let first = ask_for_token(&service, &json!({"sub": user.sub})).await;
        token_of(&first);
        stack
            .dynamo()
            .update_item()
            .table_name(&stack.config.common.state_table)
            .key("pk", AttributeValue::S(format!("access#{}", user.sub)))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("corrupt the cache item");

        // Neither a plain call nor a forced one is answered 500: each refreshes.
        for request in [
            json!({"sub": user.sub}),
            json!({"sub": user.sub, "force_refresh": true}),
        ] {
            let before = stack.emulator.stats().refreshes;
            let answer = ask_for_token(&service, &request).await;
            let issued = stack.emulator.refreshed_access_tokens(&user.sub);
            assert_eq!(token_of(&answer), issued[issued.len() - 1], "{attribute}: {request}");
            assert_eq!(stack.emulator.stats().refreshes, before + 1, "{attribute}: {request}");
        }
        // The refresh replaced the item: the next call is served from it.
        let before = stack.emulator.stats().refreshes;
        let cached = ask_for_token(&service, &json!({"sub": user.sub})).await;
        token_of(&cached);
        assert_eq!(
            stack.emulator.stats().refreshes,
            before,
            "{attribute}: served from the cache"
        );
    }
}

#[tokio::test]
async fn a_cache_items_details_changed_in_the_table_make_its_token_not_open() {
    let stack = spawn_stack().await;
    let users = stack.seed_grants(3, DRIVE, 0).await;
    let service = stack.access_tokens(&[]);
    let far = (jiff::Timestamp::now().as_second() + 86_400).to_string();
    // Each is what someone who can write the table, not read a key, would change: a
    // longer life, a wider scope set, a later issue time (past the force-refresh floor).
    let changes: [(&str, AttributeValue); 3] = [
        ("token_expires_at", AttributeValue::N(far.clone())),
        ("scopes", AttributeValue::S(format!("{DRIVE} https://mail.google.com/"))),
        ("obtained_at", AttributeValue::N(far)),
    ];
    for (user, (attribute, value)) in users.iter().zip(changes) {
        let first = token_of(&ask_for_token(&service, &json!({"sub": user.sub})).await).to_owned();
        stack
            .set_cached_token_attributes(&user.sub, &[(attribute, Some(value))])
            .await;
        let before = stack.emulator.stats().refreshes;
        let answer = ask_for_token(&service, &json!({"sub": user.sub})).await;
        assert_ne!(token_of(&answer), first, "{attribute}: the changed item was served");
        assert_eq!(stack.emulator.stats().refreshes, before + 1, "{attribute}");
    }
}

#[tokio::test]
async fn a_security_flag_landing_mid_refresh_does_not_make_the_token_look_superseded() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let routes = stack.routes();
    // Google has revoked the token, and takes its time to say so.
    let in_flight = refresh_held_at_google(&stack, &user.sub, &user.token).await;
    // Meanwhile Google flags the account: a new version of the grant, the same token.
    let flag = google_emulator::SecurityEventSpec {
        event: "sessions-revoked".into(),
        sub: Some(user.sub.clone()),
        ..google_emulator::SecurityEventSpec::default()
    };
    let (set, _) = stack.emulator.security_event(&flag).expect("SET");
    let flagged = stack
        .invoke_api(&routes, &test_support::risc_event(&set, "application/secevent+jwt"))
        .await;
    assert_eq!(flagged.status, 202);

    stack.emulator.release_held();
    let answer = in_flight.await.expect("the call");
    assert_eq!(answer["error"], json!("reauthorization_required"), "{answer}");
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(
        (grant.status, grant.refresh_token.is_none(), grant.review_flags.len()),
        (GrantStatus::Revoked, true, 1),
        "revoked, not taken for superseded by the flag"
    );
}

#[tokio::test]
async fn a_user_facing_refresh_records_the_scopes_google_answers() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, DRIVE, 0).await[0];
    let service = stack.access_tokens(&[]);
    stack.emulator.set_granted_scopes(&user.sub, "openid");
    let answer = ask_for_token(&service, &json!({"sub": user.sub})).await;
    assert!(answer.get("access_token").is_some(), "{answer}");
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(grant.scopes.iter().collect::<Vec<_>>(), ["openid"]);
    // The next caller asking for Drive is told it is missing, without a call to Google.
    let refreshes = stack.emulator.stats().refreshes;
    let missing = ask_for_token(&service, &json!({"sub": user.sub, "scopes": [DRIVE_APPDATA]})).await;
    assert_eq!(missing["missing_scopes"], json!([DRIVE_APPDATA]), "{missing}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes);
}
