//! Rotating the OAuth client secret (DESIGN §17, issue 22): the operator stores Google's new
//! JSON in Secrets Manager (it becomes `AWSCURRENT`; the old one `AWSPREVIOUS`). A warm
//! function that Google refuses with `invalid_client` fetches the secret again at once —
//! it does not wait for its cache's TTL — and tries the previous one after it. Every path
//! that authenticates as the client goes through the one rule (`google::as_client`): the
//! sign-in's exchange, the access-token function's refresh and the offline job's.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use google_emulator::CodeSpec;
use offline_access::job::CycleId;
use serde_json::json;
use test_support::{Stack, android_form_event, ask_for_token, no_deadline, spawn_stack};

const SCOPES: &str = "openid https://www.googleapis.com/auth/drive.appdata";

/// Stores a client secret JSON for the stack's client as the operator would.
async fn store_secret(stack: &Stack, secret: &str) {
    let settings = stack.emulator_settings();
    let json = google_emulator::client_secret_json(&settings.client_id, secret, &stack.emulator.token_uri());
    stack.put_client_secret(&json).await;
}

/// Sends the code to Google ourselves, so that it is spent.
async fn spend(stack: &Stack, code: &str, secret: &str) {
    let settings = stack.emulator_settings();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("client_id", &settings.client_id)
        .append_pair("client_secret", secret)
        .append_pair("redirect_uri", "")
        .finish();
    let answer = reqwest::Client::new()
        .post(stack.emulator.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("exchange");
    assert_eq!(answer.status(), 200, "the code is spent");
}

#[tokio::test]
async fn a_rotated_secret_is_used_at_the_first_refusal_by_the_sign_in_the_access_token_function_and_the_job() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(3, SCOPES, 0).await;
    // Every path warm, its cache holding the secret of today.
    let first = stack
        .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
        .await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    let access = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
    let warm = ask_for_token(&access, &json!({"sub": seeded[0].sub})).await;
    assert!(warm["access_token"].is_string(), "{warm}");
    let job = stack.job(&[]);
    let warm = job
        .run(&CycleId::parse("c1").expect("cycle"), "a", no_deadline())
        .await
        .expect("run");
    assert_eq!(warm.refreshed, 4, "three seeded, one signed in");

    // Rotated: Google takes only the new secret (the old one disabled), and the operator
    // has stored it. The caches' TTL is minutes away.
    stack.emulator.set_client_secret("GOCSPX-rotated");
    store_secret(&stack, "GOCSPX-rotated").await;

    let signed_in = stack
        .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
        .await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json);
    let forced = ask_for_token(&access, &json!({"sub": seeded[1].sub, "force_refresh": true})).await;
    assert!(forced["access_token"].is_string(), "{forced}");
    let report = job
        .run(&CycleId::parse("c2").expect("cycle"), "b", no_deadline())
        .await
        .expect("run");
    assert_eq!(
        (report.refreshed, report.stopped_for.as_deref()),
        (5, None),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_new_secret_google_does_not_take_yet_falls_back_to_the_previous_one() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, SCOPES, 0).await;
    let right = stack.emulator_settings().client_secret;
    // The operator stored a secret Google does not know (a paste error, or not yet
    // created at Google): the one before it is AWSPREVIOUS and still works.
    store_secret(&stack, "GOCSPX-not-at-google").await;

    let signed_in = stack
        .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
        .await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json);
    let report = stack
        .job(&[])
        .run(&CycleId::parse("c1").expect("cycle"), "a", no_deadline())
        .await
        .expect("run");
    assert_eq!(
        (report.refreshed, report.stopped_for.as_deref()),
        (3, None),
        "two seeded, one signed in"
    );
    let token = ask_for_token(
        &stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]),
        &json!({"sub": seeded[0].sub, "force_refresh": true}),
    )
    .await;
    assert!(token["access_token"].is_string(), "{token}");
    assert_eq!(
        stack.emulator_settings().client_secret,
        right,
        "Google's secret never changed"
    );
}

#[tokio::test]
async fn when_neither_version_is_taken_the_sign_in_is_our_misconfiguration_and_the_job_stops() {
    let stack = spawn_stack().await;
    stack.seed_grants(2, SCOPES, 0).await;
    stack.emulator.set_client_secret("GOCSPX-only-google-knows");
    store_secret(&stack, "GOCSPX-wrong-1").await;
    store_secret(&stack, "GOCSPX-wrong-2").await;

    let minted = stack.mint(CodeSpec::default());
    let answer = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!((answer.status, answer.error_code()), (500, "server_misconfigured"));
    let report = stack
        .job(&[])
        .run(&CycleId::parse("c1").expect("cycle"), "a", no_deadline())
        .await
        .expect("a clean stop");
    assert!(
        report
            .stopped_for
            .as_deref()
            .is_some_and(|s| s.contains("invalid_client")),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_code_google_spent_before_refusing_the_client_answers_reconsent_required() {
    let stack = spawn_stack().await;
    let warm = stack
        .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
        .await;
    assert_eq!(warm.status, 200);
    stack.emulator.set_client_secret("GOCSPX-rotated");
    store_secret(&stack, "GOCSPX-rotated").await;
    // RFC 6749 has Google authenticate the client first; should it have read the code
    // anyway, the retry after the refetch finds it spent.
    let minted = stack.mint(CodeSpec::default());
    spend(&stack, &minted.code, "GOCSPX-rotated").await;

    let answer = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (409, "reconsent_required"),
        "{:?}",
        answer.json
    );
    let replay = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!(
        (replay.status, replay.error_code()),
        (409, "reconsent_required"),
        "the same on replay"
    );
}
