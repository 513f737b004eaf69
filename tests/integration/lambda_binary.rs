//! The built `auth-code` binary, run the way Lambda runs it: behind a Runtime API,
//! with committed API Gateway v2 events (sign-in, and Google's security events), against
//! moto and the emulator.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use google_emulator::CodeSpec;
use test_support::runtime_api::{Function, Outcome, binary};
use test_support::{Role, android_form_event, apigw_event, risc_event, spawn_stack};

fn http_answer(outcome: Outcome) -> (u16, serde_json::Value) {
    let Outcome::Response(response) = outcome else {
        panic!("the function failed: {outcome:?}")
    };
    let status = u16::try_from(response["statusCode"].as_u64().expect("statusCode")).expect("u16 status");
    let body = match response["body"].as_str().unwrap_or_default() {
        "" => serde_json::Value::Null,
        text => serde_json::from_str(text).expect("JSON body"),
    };
    (status, body)
}

#[tokio::test]
async fn the_built_binary_signs_in_from_an_api_gateway_event_and_logs_no_secret() {
    let stack = spawn_stack().await;
    let mut function = Function::start(binary("auth-code"), &stack.function_env(Role::SignIn)).await;
    let ada = stack.mint(CodeSpec {
        email: Some("ada.binary@example.com".into()),
        ..CodeSpec::default()
    });

    let (status, body) = http_answer(function.invoke(&android_form_event(&ada.code)).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], ada.sub.as_str());
    assert_eq!(
        stack.stored_refresh_token(&ada.sub).await,
        stack.emulator.refresh_token_of(&ada.sub)
    );

    let (status, body) = http_answer(function.invoke(&android_form_event(&ada.code)).await);
    assert_eq!(
        (status, body["sub"].as_str()),
        (200, Some(ada.sub.as_str())),
        "replayed"
    );
    assert_eq!(stack.emulator.stats().code_exchanges, 1);

    let forged = apigw_event(
        "apigw-authcode-form.json",
        Some("application/x-www-form-urlencoded"),
        b"authCode=x",
        &["x-requested-with"],
    );
    let (status, body) = http_answer(function.invoke(&forged).await);
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));

    let refresh = stack.emulator.refresh_token_of(&ada.sub).expect("refresh");
    // Google's Cross-Account Protection through the same binary: the committed POST /risc
    // event carrying a SET the emulator signed, then one with a broken signature.
    let revoked = google_emulator::SecurityEventSpec {
        event: "tokens-revoked".into(),
        sub: Some(ada.sub.clone()),
        ..Default::default()
    };
    let (set, _) = stack.emulator.security_event(&revoked).expect("SET");
    let (status, body) = http_answer(function.invoke(&risc_event(&set, "application/secevent+jwt")).await);
    assert_eq!((status, body), (202, serde_json::Value::Null));
    let grant = stack.grant(&ada.sub).await.expect("grant");
    assert_eq!(grant.status_reason.as_deref(), Some("risc:tokens-revoked"));
    let forged = google_emulator::SecurityEventSpec {
        forgery: google_emulator::Forgery::FlippedSignatureBit,
        ..revoked
    };
    let (set, _) = stack.emulator.security_event(&forged).expect("SET");
    let (status, body) = http_answer(function.invoke(&risc_event(&set, "application/secevent+jwt")).await);
    assert_eq!((status, body["err"].as_str()), (400, Some("authentication_failed")));

    let logs = function.logs();
    assert!(logs.contains("sign-in succeeded"), "{logs}");
    for planted in [
        ada.code.as_str(),
        refresh.as_str(),
        "ada.binary@example.com",
        stack.emulator_settings().client_secret.as_str(),
    ] {
        assert!(!logs.contains(planted), "the function's logs contain a planted secret");
    }
}

#[tokio::test]
async fn the_binary_fails_init_naming_a_missing_variable() {
    let stack = spawn_stack().await;
    let mut env = stack.function_env(Role::SignIn);
    env.remove("GRANTS_TABLE");
    let mut function = Function::start(binary("auth-code"), &env).await;
    let status = function.wait().await;
    assert!(!status.success());
    assert!(function.logs().contains("GRANTS_TABLE"), "{}", function.logs());
}

/// The committed EventBridge scheduled event (`make job` sends it too).
fn scheduled_event() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/events/eventbridge-scheduled.json"
    ))
    .expect("committed event")
}

#[tokio::test]
async fn the_built_refresher_runs_a_cycle_from_an_eventbridge_event_and_emits_metrics() {
    let stack = spawn_stack().await;
    let seeded = stack
        .seed_grants(5, "openid https://www.googleapis.com/auth/drive.appdata", 2)
        .await;
    let mut env = stack.function_env(Role::Job);
    env.insert("GOOGLE_QUOTA_UNITS_PER_MIN".into(), "0".into());
    let mut function = Function::start(binary("refresher"), &env).await;
    let event = scheduled_event();

    let Outcome::Response(report) = function.invoke(&event).await else {
        panic!("the job failed")
    };
    assert_eq!(
        report["cycle"], "2026-11-26T06:00:00Z",
        "the 6-hour period holding 10:00"
    );
    assert_eq!(
        (report["refreshed"].as_u64(), report["drive_synced"].as_u64()),
        (Some(5), Some(5)),
        "{report}"
    );
    assert_eq!(report["complete"], true);

    let Outcome::Response(again) = function.invoke(&event).await else {
        panic!("the job failed")
    };
    assert_eq!(
        (again["already_done"].as_bool(), again["refreshed"].as_u64()),
        (Some(true), Some(0)),
        "{again}"
    );

    let logs = function.logs();
    let emf: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    let counters = emf
        .iter()
        .find(|l| l.get("Refreshed").is_some())
        .expect("the report's Embedded Metric Format line");
    assert_eq!(counters["Refreshed"].as_u64(), Some(5));
    assert_eq!(counters["BudgetExhausted"].as_u64(), Some(0));
    // A refresh and a files.get a grant: 6 units each, summed over the run's unit lines.
    let units: u64 = emf.iter().filter_map(|l| l["QuotaUnits"].as_u64()).sum();
    assert_eq!(units, 30);
    for s in &seeded {
        assert!(!logs.contains(&s.token), "the job's logs contain a refresh token");
    }
    assert!(!logs.contains("ya29."), "the job's logs contain an access token");
}

#[tokio::test]
async fn the_refresher_fails_the_invocation_on_an_event_without_a_scheduled_time() {
    let stack = spawn_stack().await;
    let mut function = Function::start(binary("refresher"), &stack.function_env(Role::Job)).await;
    let outcome = function.invoke(r#"{"source": "aws.events"}"#).await;
    assert!(matches!(outcome, Outcome::Error(_)), "{outcome:?}");
}

#[tokio::test]
async fn the_built_refresher_stops_at_an_oversized_drive_page_without_holding_it() {
    let stack = spawn_stack().await;
    stack
        .seed_grants(1, "openid https://www.googleapis.com/auth/drive.appdata", 2)
        .await;
    // A 100 MB "page": the binary must not read it into memory.
    let huge = format!(r#"{{"files":[{}]}}"#, r#"{"id":"x"},"#.repeat(10_000_000));
    stack.emulator.inject_fault(
        google_emulator::Endpoint::Drive,
        google_emulator::Fault {
            status: Some(200),
            body: Some(huge),
            ..google_emulator::Fault::default()
        },
    );
    let mut env = stack.function_env(Role::Job);
    env.insert("GOOGLE_QUOTA_UNITS_PER_MIN".into(), "0".into());
    env.insert("DRIVE_SYNC".into(), "list".into());
    let mut function = Function::start(binary("refresher"), &env).await;
    let event = scheduled_event();

    let Outcome::Response(report) = function.invoke(&event).await else {
        panic!("the job failed: {}", function.logs())
    };

    assert_eq!(
        (report["refreshed"].as_u64(), report["drive_truncated"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    // Reported, not asserted (memory is shown by benchmarks): before the cap, this page
    // took the job past 500 MB.
    eprintln!(
        "refresher peak RSS with a 100 MB Drive page: {:.1} MiB",
        function.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
}

/// The committed direct-invoke payload of `access-token`, as a backend sends it with the
/// AWS SDK's Lambda `Invoke`. Its `sub` is the first user a test stack seeds.
const ACCESS_TOKEN_EVENT: &str = include_str!("../events/access-token-invoke.json");

#[tokio::test]
async fn the_built_access_token_binary_answers_an_invoke_with_a_token_then_from_its_cache() {
    let stack = spawn_stack().await;
    let user = &stack
        .seed_grants(1, "openid https://www.googleapis.com/auth/drive.appdata", 1)
        .await[0];
    let event: serde_json::Value = serde_json::from_str(ACCESS_TOKEN_EVENT).expect("event JSON");
    assert_eq!(
        event["sub"].as_str(),
        Some(user.sub.as_str()),
        "the committed event names the seeded user"
    );
    let mut function = Function::start(binary("access-token"), &stack.function_env(Role::AccessToken)).await;

    let Outcome::Response(first) = function.invoke(ACCESS_TOKEN_EVENT).await else {
        panic!("the function failed")
    };
    assert_eq!(first["status"], 200, "{first}");
    let issued = stack.emulator.refreshed_access_tokens(&user.sub);
    assert_eq!(first["access_token"].as_str(), issued.last().map(String::as_str));
    let Outcome::Response(second) = function.invoke(ACCESS_TOKEN_EVENT).await else {
        panic!("the function failed")
    };
    assert_eq!(second["access_token"], first["access_token"], "from the cache");
    assert_eq!(stack.emulator.stats().refreshes, 1);

    // An expected refusal is an answer, not a function error.
    let Outcome::Response(refused) = function.invoke(r#"{"sub": "404404"}"#).await else {
        panic!("a refusal must be an answer")
    };
    assert_eq!(
        (refused["status"].as_u64(), refused["error"].as_str()),
        (Some(404), Some("grant_not_found"))
    );
    // So is a payload nested past serde's depth limit, which the runtime cannot turn into
    // a value.
    let nested = format!(r#"{{"sub": {}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let Outcome::Response(deep) = function.invoke(&nested).await else {
        panic!("a malformed request must be an answer: {}", function.logs())
    };
    assert_eq!(
        (deep["status"].as_u64(), deep["error"].as_str()),
        (Some(400), Some("invalid_request")),
        "{deep}"
    );

    let logs = function.logs();
    let token = first["access_token"].as_str().expect("token");
    assert!(logs.contains("access token issued"), "{logs}");
    assert!(
        !logs.contains(token) && !logs.contains(&user.token),
        "a token in the logs"
    );
}

#[tokio::test]
async fn a_first_consent_the_store_cannot_take_is_parked_by_the_built_binary_and_stored_by_parked_sign_in() {
    use std::time::Duration;
    // One attempt per AWS call; the grant's write hangs for the whole budget, a quarter of
    // which is kept for parking's two calls.
    let stack = test_support::spawn_stack_with(&test_support::one_attempt_sign_in("16000", &[])).await;
    let mut sign_in = Function::start(binary("auth-code"), &stack.function_env(Role::SignIn)).await;
    let ada = stack.mint(CodeSpec {
        email: Some("ada.parked@example.com".into()),
        ..CodeSpec::default()
    });
    stack.iam.hang("TransactWriteItems");

    let (status, body) = http_answer(sign_in.invoke(&android_form_event(&ada.code)).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("upstream_unavailable")),
        "{body}"
    );
    assert!(stack.iam.held("TransactWriteItems") >= 1, "the grant's write was tried");
    assert_eq!(stack.grant(&ada.sub).await.map(|g| g.sub), None, "nothing stored yet");
    // The app retries the same code: told to wait, and the code is not sent again.
    let (status, body) = http_answer(sign_in.invoke(&android_form_event(&ada.code)).await);
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("upstream_unavailable")),
        "{body}"
    );
    assert_eq!(stack.emulator.stats().code_exchanges, 1);

    // What waits in the queue is sealed: no token, no email, no code.
    let parked = stack.take_parked().await;
    assert_eq!(parked.len(), 1, "one parked sign-in");
    let refresh = stack
        .emulator
        .refresh_token_of(&ada.sub)
        .expect("Google issued a refresh token");
    let body = &parked[0].1;
    for planted in [
        refresh.as_str(),
        ada.code.as_str(),
        "ada.parked@example.com",
        ada.sub.as_str(),
    ] {
        assert!(
            !body.contains(planted),
            "a parked message holds a secret or the user: {body}"
        );
    }
    let fields: std::collections::BTreeSet<String> = serde_json::from_str::<serde_json::Value>(body)
        .expect("JSON")
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    let expected = [
        "client_id",
        "code",
        "format",
        "id_token",
        "owner",
        "received_at",
        "refresh_token",
        "scopes",
    ];
    assert_eq!(fields, expected.into_iter().map(str::to_owned).collect());

    // The store is back; Lambda delivers the message to the parked-sign-in binary.
    stack.iam.release("TransactWriteItems");
    let mut consumer = Function::start_with_timeout(
        binary("parked-sign-in"),
        &stack.function_env(Role::ParkedSignIn),
        Duration::from_secs(30),
    )
    .await;
    let Outcome::Response(answer) = consumer.invoke(&test_support::sqs_event(&parked)).await else {
        panic!("the consumer failed: {}", consumer.logs())
    };
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{}",
        consumer.logs()
    );
    assert_eq!(stack.stored_refresh_token(&ada.sub).await, Some(refresh.clone()));

    // The code's retry now replays the sign-in, still without a second exchange.
    let (status, body) = http_answer(sign_in.invoke(&android_form_event(&ada.code)).await);
    assert_eq!((status, body["sub"].as_str()), (200, Some(ada.sub.as_str())), "{body}");
    assert_eq!(body["email"].as_str(), Some("ada.parked@example.com"));
    assert_eq!(stack.emulator.stats().code_exchanges, 1);

    for logs in [sign_in.logs(), consumer.logs()] {
        for planted in [ada.code.as_str(), refresh.as_str(), "ada.parked@example.com"] {
            assert!(!logs.contains(planted), "a function's logs contain a planted secret");
        }
    }
    assert!(sign_in.logs().contains("parking Google's answer"));
    assert!(consumer.logs().contains("parked sign-in stored"));
}
