//! Every row of the HTTP error table (DESIGN §7), and the ID-token attacks, through the
//! real handler with API Gateway v2 events. Nothing is written for a refused request.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use google_emulator::{CodeSpec, Endpoint, Fault, Forgery};
use serde_json::json;
use test_support::{Stack, android_form_event, apigw_event, spawn_stack, spawn_stack_with};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

async fn assert_refused(stack: &Stack, event: &str, status: u16, code: &str) -> test_support::Answer {
    let answer = stack.invoke(event).await;
    assert_eq!((answer.status, answer.error_code()), (status, code), "{}", answer.json);
    assert!(
        answer.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a human message"
    );
    assert!(stack.grants().await.is_empty(), "nothing written");
    answer
}

fn with_route(event: &str, method: &str, path: &str) -> String {
    let mut e: serde_json::Value = serde_json::from_str(event).expect("event");
    e["rawPath"] = path.into();
    e["routeKey"] = format!("{method} {path}").into();
    e["requestContext"]["http"]["method"] = method.into();
    e["requestContext"]["http"]["path"] = path.into();
    e.to_string()
}

#[tokio::test]
async fn malformed_requests_get_their_status_and_stable_code() {
    let stack = spawn_stack().await;
    let code = stack.mint(CodeSpec::default()).code;
    let good = android_form_event(&code);
    let form = |body: &[u8]| apigw_event("apigw-authcode-form.json", FORM, body, &[]);
    let with_requested_with = |value: &str| {
        let mut event: serde_json::Value = serde_json::from_str(&good).expect("event");
        event["headers"]["x-requested-with"] = json!(value);
        event.to_string()
    };

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty X-Requested-With", with_requested_with(""), 403, "forbidden"),
        ("blank X-Requested-With", with_requested_with("  "), 403, "forbidden"),
        (
            "no X-Requested-With",
            apigw_event("apigw-authcode-form.json", FORM, b"authCode=x", &["x-requested-with"]),
            403,
            "forbidden",
        ),
        ("wrong path", with_route(&good, "POST", "/authcodes"), 404, "not_found"),
        (
            "wrong method",
            with_route(&good, "GET", "/authcode"),
            405,
            "method_not_allowed",
        ),
        (
            "text/plain",
            apigw_event("apigw-authcode-form.json", Some("text/plain"), b"authCode=x", &[]),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            apigw_event("apigw-authcode-form.json", None, b"authCode=x", &[]),
            415,
            "unsupported_media_type",
        ),
        ("9 KiB body", form(&[b'a'; 9 * 1024]), 413, "payload_too_large"),
        ("missing code", form(b"platform=android"), 400, "invalid_request"),
        ("empty code", form(b"authCode="), 400, "invalid_request"),
        (
            "oversized code",
            form(format!("authCode={}", "a".repeat(600)).as_bytes()),
            400,
            "invalid_request",
        ),
        (
            "non-printable code",
            form(b"authCode=4%2F0%00abc"),
            400,
            "invalid_request",
        ),
        (
            "non-UTF-8 body",
            form(&[b'a', b'u', 0xC3, 0x28, 0xFF]),
            400,
            "invalid_request",
        ),
        ("repeated field", form(b"authCode=a&authCode=b"), 400, "invalid_request"),
        (
            "unknown platform",
            form(b"authCode=abc&platform=tizen"),
            400,
            "invalid_request",
        ),
        (
            "bad JSON",
            apigw_event(
                "apigw-authcode-json.json",
                Some("application/json"),
                b"{\"authCode\":",
                &[],
            ),
            400,
            "invalid_request",
        ),
        (
            "JSON code not a string",
            apigw_event(
                "apigw-authcode-json.json",
                Some("application/json"),
                b"{\"authCode\":42}",
                &[],
            ),
            400,
            "invalid_request",
        ),
    ];
    for (what, event, status, code) in cases {
        let answer = stack.invoke(&event).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code),
            "{what}: {}",
            answer.json
        );
    }
    assert_eq!(
        stack.emulator.stats().code_exchanges,
        0,
        "no bad request reaches Google"
    );
    assert!(stack.grants().await.is_empty());
}

#[tokio::test]
async fn a_code_google_does_not_know_or_already_redeemed_is_invalid_grant() {
    let stack = spawn_stack().await;
    assert_refused(
        &stack,
        &android_form_event("4/0AeanS0-never-issued"),
        400,
        "invalid_grant",
    )
    .await;

    // Redeemed by someone else (not ours to replay): Google says "Code was already redeemed."
    let minted = stack.mint(CodeSpec::default());
    let form = format!(
        "grant_type=authorization_code&code={}&client_id={}&client_secret={}&redirect_uri=",
        url::form_urlencoded::byte_serialize(minted.code.as_bytes()).collect::<String>(),
        stack.emulator_settings().client_id,
        stack.emulator_settings().client_secret
    );
    let redeemed = reqwest::Client::new()
        .post(stack.emulator.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("direct exchange");
    assert!(redeemed.status().is_success());
    assert_refused(&stack, &android_form_event(&minted.code), 400, "invalid_grant").await;
}

#[tokio::test]
async fn every_forged_or_foreign_id_token_is_refused() {
    let stack = spawn_stack().await;
    let claims = |c: serde_json::Value| CodeSpec {
        id_token_claims: Some(c),
        ..CodeSpec::default()
    };
    let forged = |f: Forgery| CodeSpec {
        forgery: f,
        ..CodeSpec::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let cases = [
        ("alg none", forged(Forgery::AlgNone)),
        (
            "HS256 keyed with the RSA public key",
            forged(Forgery::Hs256WithPublicKey),
        ),
        ("flipped signature bit", forged(Forgery::FlippedSignatureBit)),
        ("unknown kid", forged(Forgery::UnknownKid)),
        (
            "wrong aud",
            claims(json!({"aud": "someone-else.apps.googleusercontent.com"})),
        ),
        ("wrong iss", claims(json!({"iss": "https://accounts.evil.example"}))),
        ("expired", claims(json!({"exp": now - 3_600, "iat": now - 7_200}))),
        (
            "issued in the future",
            claims(json!({"iat": now + 3_600, "exp": now + 7_200})),
        ),
        ("no sub", claims(json!({"sub": null}))),
        // A code without an identity scope brings no ID token: tokeninfo names the user
        // then (`identity::a_code_without_an_identity_scope_signs_in_as_the_user_tokeninfo_names`).
    ];
    for (what, spec) in cases {
        let minted = stack.mint(spec);
        let answer = stack.invoke(&android_form_event(&minted.code)).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (401, "invalid_id_token"),
            "{what}: {}",
            answer.json
        );
    }
    assert!(stack.grants().await.is_empty());
}

#[tokio::test]
async fn both_issuer_spellings_and_a_little_clock_skew_are_accepted() {
    let stack = spawn_stack().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for claims in [
        json!({"iss": "accounts.google.com"}),
        json!({"iss": "https://accounts.google.com", "iat": now + 30}),
    ] {
        let minted = stack.mint(CodeSpec {
            id_token_claims: Some(claims.clone()),
            ..CodeSpec::default()
        });
        let answer = stack.invoke(&android_form_event(&minted.code)).await;
        assert_eq!(answer.status, 200, "{claims}: {}", answer.json);
    }
}

#[tokio::test]
async fn an_azp_outside_the_allow_list_is_refused_when_one_is_set() {
    let stack = spawn_stack_with(&[(
        "ALLOWED_AZP",
        "emulator-android.apps.googleusercontent.com, ios.apps.googleusercontent.com",
    )])
    .await;
    let allowed = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&allowed.code)).await.status, 200);

    let foreign = stack.mint(CodeSpec {
        azp: Some("someone-elses-app.apps.googleusercontent.com".into()),
        ..CodeSpec::default()
    });
    let answer = stack.invoke(&android_form_event(&foreign.code)).await;
    assert_eq!((answer.status, answer.error_code()), (401, "invalid_id_token"));
    assert!(stack.grant(&foreign.sub).await.is_none());
}

#[tokio::test]
async fn google_faults_answer_502_or_503_with_retry_after_and_write_nothing() {
    let stack = spawn_stack().await;
    let cases = [
        (
            "429 with Retry-After",
            Fault {
                status: Some(429),
                retry_after: Some(7),
                count: Some(1),
                ..Fault::default()
            },
            503,
            Some(7),
        ),
        (
            "503",
            Fault {
                status: Some(503),
                count: Some(1),
                ..Fault::default()
            },
            503,
            Some(1),
        ),
        (
            "500",
            Fault {
                status: Some(500),
                count: Some(1),
                ..Fault::default()
            },
            502,
            Some(1),
        ),
        (
            "HTML body",
            Fault {
                status: Some(502),
                body: Some("<html><body>Bad Gateway</body></html>".into()),
                count: Some(1),
                ..Fault::default()
            },
            502,
            Some(1),
        ),
        (
            "HTML with 200",
            Fault {
                status: Some(200),
                body: Some("<!DOCTYPE html><p>captive portal</p>".into()),
                count: Some(1),
                ..Fault::default()
            },
            502,
            Some(1),
        ),
        (
            "timeout",
            Fault {
                delay_ms: 2_500,
                count: Some(1),
                ..Fault::default()
            },
            502,
            Some(1),
        ),
    ];
    for (what, fault, status, retry_after) in cases {
        let minted = stack.mint(CodeSpec::default());
        stack.emulator.inject_fault(Endpoint::Token, fault);
        let answer = stack.invoke(&android_form_event(&minted.code)).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, "upstream_unavailable"),
            "{what}: {}",
            answer.json
        );
        assert_eq!(answer.retry_after(), retry_after, "{what}");
        assert!(stack.grant(&minted.sub).await.is_none(), "{what}: nothing written");
        stack.emulator.clear_faults();
        if what != "timeout" {
            // The code was not spent: the phone's retry succeeds.
            let retry = stack.invoke(&android_form_event(&minted.code)).await;
            assert_eq!(retry.status, 200, "{what}: retry: {}", retry.json);
            assert!(stack.grant(&minted.sub).await.is_some());
        }
    }
}

#[tokio::test]
async fn an_unreachable_jwks_is_upstream_unavailable_not_a_bad_token() {
    // Without a parking queue, Google's own Retry-After is passed on.
    let stack = spawn_stack_with(&[("SIGN_IN_PARKING_QUEUE_URL", "")]).await;
    let down = Fault {
        status: Some(503),
        retry_after: Some(3),
        ..Fault::default()
    };
    stack.emulator.inject_fault(Endpoint::Certs, down.clone());
    let minted = stack.mint(CodeSpec::default());
    let answer = assert_refused(&stack, &android_form_event(&minted.code), 503, "upstream_unavailable").await;
    assert_eq!(answer.retry_after(), Some(3));

    // With one (the template's), the sign-in is parked: the app is told when to retry the
    // code, which is then not sent to Google again.
    let stack = spawn_stack().await;
    stack.emulator.inject_fault(Endpoint::Certs, down);
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let answer = assert_refused(&stack, &event, 503, "upstream_unavailable").await;
    assert_eq!(answer.retry_after(), Some(30));
    assert_refused(&stack, &event, 503, "upstream_unavailable").await;
    assert_eq!(stack.emulator.stats().code_exchanges, 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_our_misconfiguration() {
    let stack = spawn_stack().await;
    let settings = stack.emulator_settings();
    // Twice: neither the current version nor the previous is the one Google takes.
    for wrong in ["GOCSPX-wrong", "GOCSPX-wrong-too"] {
        stack
            .put_client_secret(&google_emulator::client_secret_json(
                &settings.client_id,
                wrong,
                &stack.emulator.token_uri(),
            ))
            .await;
    }
    let minted = stack.mint(CodeSpec::default());
    assert_refused(&stack, &android_form_event(&minted.code), 500, "server_misconfigured").await;
}

#[tokio::test]
async fn a_missing_secret_or_kms_key_is_our_misconfiguration() {
    let missing_secret = spawn_stack_with(&[("CLIENT_SECRET_ID", "no/such/secret")]).await;
    let minted = missing_secret.mint(CodeSpec::default());
    assert_refused(
        &missing_secret,
        &android_form_event(&minted.code),
        500,
        "server_misconfigured",
    )
    .await;

    let missing_key = spawn_stack_with(&[("TOKEN_KEY_ID", "alias/no-such-key")]).await;
    let minted = missing_key.mint(CodeSpec::default());
    assert_refused(
        &missing_key,
        &android_form_event(&minted.code),
        500,
        "server_misconfigured",
    )
    .await;
}

#[tokio::test]
async fn a_secret_that_is_not_googles_json_is_our_misconfiguration_and_not_echoed() {
    let stack = spawn_stack().await;
    stack.put_client_secret("GOCSPX-plain-string-not-json").await;
    let minted = stack.mint(CodeSpec::default());
    let answer = assert_refused(&stack, &android_form_event(&minted.code), 500, "server_misconfigured").await;
    assert!(!answer.json.to_string().contains("GOCSPX"));
}

#[tokio::test]
async fn an_unreachable_aws_is_upstream_unavailable_and_google_is_not_called() {
    let stack = spawn_stack().await;
    // Nothing listens on the discard port: every AWS call fails to connect.
    let dead = local_stack::local_aws_config("http://127.0.0.1:9").await;
    let service = test_support::build_app(&stack.config, &dead, stack.cache_clock.clone()).sign_in(&stack.config);
    let minted = stack.mint(CodeSpec::default());

    let answer = test_support::invoke_service(&service, &android_form_event(&minted.code)).await;

    assert_eq!(
        (answer.status, answer.error_code()),
        (502, "upstream_unavailable"),
        "{}",
        answer.json
    );
    assert!(answer.retry_after().is_some());
    assert_eq!(stack.emulator.stats().code_exchanges, 0, "the code is not spent");
    let retry = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!(retry.status, 200, "the same code works once AWS is back");
}

#[tokio::test]
async fn a_retry_after_an_exchange_that_outlived_its_timeout_is_never_told_invalid_grant() {
    let stack = spawn_stack().await;
    // Google answers after our timeout (HTTP_TIMEOUT_MS is 1500 here).
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            delay_ms: 2_500,
            count: Some(1),
            ..Fault::default()
        },
    );
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);

    let first = stack.invoke(&event).await;
    assert_eq!(first.error_code(), "upstream_unavailable", "{}", first.json);
    // Google went on to redeem the code after we stopped waiting: the retry comes after
    // that, so the code is spent at Google.
    let mut polls = 0;
    while stack.emulator.stats().code_exchanges == 0 {
        polls += 1;
        assert!(polls < 300, "the delayed exchange never reached the emulator");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let retry = stack.invoke(&event).await;
    assert_eq!(
        (retry.status, retry.error_code()),
        (409, "reconsent_required"),
        "a retry of a code Google redeemed is told to ask for consent again, never invalid_grant: {}",
        retry.json
    );
    assert_eq!(stack.emulator.stats().code_exchanges, 2, "the retry asked Google once");
}

/// DynamoDB's error body for `error` (`TransactionConflictException`, ...).
fn dynamodb_error(error: &str) -> serde_json::Value {
    json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{error}"), "message": "planted by the test"})
}

#[tokio::test]
async fn dynamodbs_conflicts_and_throttled_transactions_are_transient_for_sign_in() {
    // One attempt per AWS call, so a step after the exchange has room to be tried again.
    let stack = spawn_stack_with(&test_support::one_attempt_sign_in("12000", &[])).await;
    // The claim meets another transaction on its item (the SDK does not retry this): the
    // app is told to retry, and the code is not spent.
    stack
        .iam
        .answer_with("PutItem", dynamodb_error("TransactionConflictException"), 1);
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let answer = assert_refused(&stack, &event, 502, "upstream_unavailable").await;
    assert!(answer.retry_after().is_some());
    assert_eq!(stack.emulator.stats().code_exchanges, 0);

    // The grant's transaction is cancelled for throttling, after Google redeemed the code:
    // tried again within the budget, and the user is signed in.
    let mut cancelled = dynamodb_error("TransactionCanceledException");
    cancelled["CancellationReasons"] = json!([{"Code": "ThrottlingError", "Message": "planted"}, {"Code": "None"}]);
    stack.iam.answer_with("TransactWriteItems", cancelled, 2);
    let answer = stack.invoke(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
}

#[tokio::test]
async fn dynamodbs_conflicts_are_transient_for_the_access_token_function_and_the_job() {
    let stack = spawn_stack().await;
    let users = stack
        .seed_grants(2, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await;
    // The lease's write meets a sign-in's transaction on the grant.
    let conflict = dynamodb_error("TransactionConflictException");
    stack.iam.answer_with("UpdateItem GrantsTable", conflict.clone(), 1);
    let tokens = stack.access_tokens(&[]);
    let answer = test_support::ask_for_token(&tokens, &json!({"sub": users[0].sub})).await;
    assert_eq!(
        (answer["status"].clone(), answer["error"].clone()),
        (json!(503), json!("upstream_unavailable")),
        "{answer}"
    );
    let answer = test_support::ask_for_token(&tokens, &json!({"sub": users[0].sub})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");

    // The job's lease meets one too: tried again, not a misconfiguration that stops the
    // run.
    stack.iam.answer_with("UpdateItem GrantsTable", conflict, 1);
    let cycle = offline_access::job::CycleId::parse("2026-11-26T10:00:00Z").expect("cycle");
    let report = stack
        .job(&[])
        .run(&cycle, "job", test_support::no_deadline())
        .await
        .expect("the run goes on");
    assert_eq!(report.scanned, 2, "{report:?}");
    assert_eq!(report.refreshed, 2, "{report:?}");
}
