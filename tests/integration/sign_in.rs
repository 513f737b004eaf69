//! Sign-in end to end: the real handler driven with API Gateway v2 events, against moto
//! (DynamoDB, KMS, Secrets Manager) and the Google emulator over real HTTP.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::time::Duration;

use google_emulator::{CodeSpec, Consent};
use test_support::{android_form_event, apigw_event, json_event, spawn_stack, spawn_stack_with};

#[tokio::test]
async fn the_android_form_post_stores_a_grant_whose_token_decrypts_to_what_google_issued() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec {
        email: Some("ada@example.com".into()),
        name: Some("Ada Lovelace".into()),
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&android_form_event(&minted.code)).await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["sub"], minted.sub.as_str());
    assert_eq!(answer.json["email"], "ada@example.com");
    assert_eq!(answer.json["offline_access"], true);
    let scopes = answer.json["scopes"].as_array().expect("scopes");
    assert!(
        scopes
            .iter()
            .any(|s| s == "https://www.googleapis.com/auth/drive.appdata")
    );
    assert!(answer.json.get("refresh_token").is_none() && answer.json.get("access_token").is_none());

    let issued = stack
        .emulator
        .refresh_token_of(&minted.sub)
        .expect("Google issued a refresh token");
    assert_eq!(stack.stored_refresh_token(&minted.sub).await, Some(issued));
    let grant = stack.grant(&minted.sub).await.expect("grant stored");
    assert_eq!(grant.status.as_str(), "active");
    assert_eq!(grant.version, 1);
    assert_eq!(grant.profile.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(grant.profile.given_name.as_deref(), Some("Ada"));
    assert!(grant.email_verified);
}

#[tokio::test]
async fn a_json_post_from_the_web_uses_the_postmessage_redirect_uri() {
    let stack = spawn_stack().await;
    let web = stack.mint(CodeSpec {
        redirect_uri: Some("postmessage".into()),
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&json_event(&web.code, "web")).await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        stack.stored_refresh_token(&web.sub).await,
        stack.emulator.refresh_token_of(&web.sub)
    );
}

#[tokio::test]
async fn ios_and_android_json_posts_use_an_empty_redirect_uri() {
    let stack = spawn_stack().await;
    for platform in ["ios", "android"] {
        let minted = stack.mint(CodeSpec::default());
        let answer = stack.invoke(&json_event(&minted.code, platform)).await;
        assert_eq!(answer.status, 200, "{platform}: {}", answer.json);
    }
}

#[tokio::test]
async fn a_code_for_another_platform_is_refused_as_invalid_grant() {
    let stack = spawn_stack().await;
    let web = stack.mint(CodeSpec {
        redirect_uri: Some("postmessage".into()),
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&json_event(&web.code, "android")).await;

    assert_eq!((answer.status, answer.error_code()), (400, "invalid_grant"));
    assert!(stack.grants().await.is_empty());
}

/// A web app's redirect flow with PKCE: the app sends the code with the `redirectUri` it
/// was issued for and its `codeVerifier`. An allowed URI and the right verifier sign in;
/// a URI not allowed is refused before Google is called (the code stays unspent); a wrong
/// or missing verifier is Google's `invalid_grant`. The verifier is in no table.
#[tokio::test]
async fn a_redirect_flow_code_signs_in_with_its_allowed_redirect_uri_and_verifier() {
    let callback = "https://app.example.com/oauth/callback";
    let stack = spawn_stack_with(&[(
        "ALLOWED_REDIRECT_URIS",
        "https://app.example.com/other, https://app.example.com/oauth/callback",
    )])
    .await;
    let verifier = "VerifierKeptNowhere-0123456789abcdefghijklmnopqrstuvwxyz";
    let mint = |redirect: &str| {
        stack.mint(CodeSpec {
            redirect_uri: Some(redirect.into()),
            code_challenge: Some(google_emulator::s256_challenge(verifier)),
            ..CodeSpec::default()
        })
    };
    let post = |code: &str, redirect: &str, verifier: Option<&str>| {
        let mut body = serde_json::json!({"authCode": code, "platform": "web", "redirectUri": redirect});
        if let Some(v) = verifier {
            body["codeVerifier"] = v.into();
        }
        apigw_event(
            "apigw-authcode-json.json",
            Some("application/json"),
            body.to_string().as_bytes(),
            &[],
        )
    };

    // Not allowed: refused before the code goes to Google.
    let elsewhere = mint("https://evil.example.com/cb");
    let answer = stack
        .invoke(&post(&elsewhere.code, "https://evil.example.com/cb", Some(verifier)))
        .await;
    assert_eq!((answer.status, answer.error_code()), (400, "invalid_request"));
    assert!(
        answer.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("redirectUri") && !m.contains("evil"))
    );
    assert_eq!(stack.emulator.stats().code_exchanges, 0, "the code is not spent");

    // A wrong verifier, then none: Google refuses the code.
    for sent in [Some("x".repeat(43)), None] {
        let code = mint(callback);
        let answer = stack.invoke(&post(&code.code, callback, sent.as_deref())).await;
        assert_eq!((answer.status, answer.error_code()), (400, "invalid_grant"), "{sent:?}");
    }
    assert!(stack.grants().await.is_empty());

    let minted = mint(callback);
    let answer = stack.invoke(&post(&minted.code, callback, Some(verifier))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
    let mut items = stack.grants().await;
    items.extend(stack.scan(&stack.config.common.state_table).await);
    for item in &items {
        assert!(
            !format!("{item:?}").contains("VerifierKeptNowhere"),
            "a table holds the verifier"
        );
    }
}

#[tokio::test]
async fn no_table_attribute_holds_a_plaintext_token_code_or_client_secret() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec::default());
    let answer = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!(answer.status, 200);

    let refresh = stack.emulator.refresh_token_of(&minted.sub).expect("refresh token");
    let secret = stack.emulator_settings().client_secret;
    let planted = [refresh.as_str(), minted.code.as_str(), secret.as_str()];
    let mut items = stack.grants().await;
    items.extend(stack.scan(&stack.config.common.state_table).await);
    assert!(items.len() >= 2, "a grant and a request record");
    for item in &items {
        let dump = format!("{item:?}");
        for needle in planted {
            assert!(!dump.contains(needle), "an attribute holds a planted secret");
        }
        for value in item.values() {
            if let Ok(blob) = value.as_b() {
                let bytes = blob.as_ref();
                for needle in planted {
                    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
                }
            }
        }
    }
}

#[tokio::test]
async fn posting_the_same_code_twice_calls_google_once() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec::default());

    let first = stack.invoke(&android_form_event(&minted.code)).await;
    let second = stack.invoke(&android_form_event(&minted.code)).await;

    assert_eq!(first.status, 200);
    assert_eq!((second.status, &second.json), (200, &first.json));
    assert_eq!(stack.emulator.stats().code_exchanges, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_posts_of_one_code_call_google_once() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);

    let (a, b) = tokio::join!(stack.invoke(&event), stack.invoke(&event));

    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.json, b.json);
    assert_eq!(a.json, b.json);
    assert_eq!(stack.emulator.stats().code_exchanges, 1);
}

#[tokio::test]
async fn signing_in_again_without_a_refresh_token_keeps_the_stored_one() {
    let stack = spawn_stack().await;
    let first = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&first.code)).await.status, 200);
    let original = stack.stored_refresh_token(&first.sub).await.expect("stored");

    // Google sends no refresh token the second time: the user already consented.
    let again = stack.mint(CodeSpec {
        sub: Some(first.sub.clone()),
        ..CodeSpec::default()
    });
    let answer = stack.invoke(&android_form_event(&again.code)).await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["offline_access"], true);
    assert_eq!(stack.stored_refresh_token(&first.sub).await, Some(original));
    assert_eq!(stack.grant(&first.sub).await.map(|g| g.version), Some(2));
}

#[tokio::test]
async fn a_forced_consent_replaces_the_stored_refresh_token() {
    let stack = spawn_stack().await;
    let first = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&first.code)).await.status, 200);
    let original = stack.stored_refresh_token(&first.sub).await;

    let forced = stack.mint(CodeSpec {
        sub: Some(first.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&forced.code)).await.status, 200);

    let stored = stack.stored_refresh_token(&first.sub).await.expect("a token is stored");
    assert_eq!(
        Some(&stored),
        stack.emulator.refresh_token_of(&first.sub).as_ref(),
        "the new consent's token, the one Google issued last"
    );
    assert_ne!(Some(stored), original);
    assert_eq!(stack.grants().await.len(), 1);
    let grant = stack.grant(&first.sub).await.expect("grant");
    assert_eq!((grant.status.as_str(), grant.version), ("active", 2));
}

#[tokio::test]
async fn a_first_sign_in_without_a_refresh_token_answers_reconsent_required() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec {
        consent: Consent::Repeat,
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&android_form_event(&minted.code)).await;

    assert_eq!((answer.status, answer.error_code()), (409, "reconsent_required"));
    assert!(stack.grants().await.is_empty());
    // A retry of the same code replays the answer without calling Google again.
    let again = stack.invoke(&android_form_event(&minted.code)).await;
    assert_eq!((again.status, stack.emulator.stats().code_exchanges), (409, 1));
}

#[tokio::test]
async fn a_sign_in_costs_two_dynamodb_round_trips_first_time_and_again() {
    let stack = spawn_stack().await;
    let requests = test_support::CountRequests::default();
    let service = offline_access::app::AppBuilder::new(&stack.config.common, &stack.aws_as(test_support::Role::SignIn))
        .dynamodb(requests.dynamodb(&stack.aws_as(test_support::Role::SignIn)))
        .build()
        .expect("app")
        .sign_in(&stack.config);
    let first = stack.mint(CodeSpec::default());
    let again = stack.mint(CodeSpec {
        sub: Some(first.sub.clone()),
        ..CodeSpec::default()
    });

    for minted in [&first, &again] {
        let before = requests.count();
        let answer = test_support::invoke_service(&service, &android_form_event(&minted.code)).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(
            requests.count() - before,
            2,
            "the claim, then one write of grant and answer"
        );
    }
    // A replay is one round trip: the claim's refusal carries the recorded answer.
    let before = requests.count();
    let replay = test_support::invoke_service(&service, &android_form_event(&again.code)).await;
    assert_eq!((replay.status, requests.count() - before), (200, 1));

    // A new refresh token over the stored grant (a forced consent) is three: the claim,
    // the put (refused, returning the grant whose generation the replacement ends), then
    // the replacement with its outcome.
    let forced = stack.mint(CodeSpec {
        sub: Some(first.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    let before = requests.count();
    let answer = test_support::invoke_service(&service, &android_form_event(&forced.code)).await;
    assert_eq!((answer.status, requests.count() - before), (200, 3), "{}", answer.json);
}

#[tokio::test]
async fn a_sign_in_without_a_refresh_token_answers_and_records_the_union_of_scopes() {
    let stack = spawn_stack().await;
    let first = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&first.code)).await.status, 200);
    let version = stack.grant(&first.sub).await.map(|g| g.version);

    // The repeat code names fewer scopes than the stored token carries.
    let narrower = stack.mint(CodeSpec {
        sub: Some(first.sub.clone()),
        scopes: Some("openid https://www.googleapis.com/auth/userinfo.email".into()),
        ..CodeSpec::default()
    });
    let answer = stack.invoke(&android_form_event(&narrower.code)).await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    let answered: Vec<&str> = answer.json["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    assert!(
        answered.contains(&offline_access::domain::DRIVE_APPDATA_SCOPE),
        "{answered:?}"
    );
    let grant = stack.grant(&first.sub).await.expect("grant");
    assert!(grant.scopes.contains(offline_access::domain::DRIVE_APPDATA_SCOPE));
    assert_eq!(grant.scopes.iter().collect::<Vec<_>>(), answered);
    assert_eq!(Some(grant.version), version.map(|v| v + 1));
    // The replay answers the same union.
    let replay = stack.invoke(&android_form_event(&narrower.code)).await;
    assert_eq!(replay.json, answer.json);
}

#[tokio::test]
async fn partial_consent_records_only_the_granted_scopes() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec {
        scopes: Some("openid https://www.googleapis.com/auth/userinfo.email".into()),
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&android_form_event(&minted.code)).await;

    assert_eq!(answer.status, 200);
    let grant = stack.grant(&minted.sub).await.expect("grant");
    assert!(!grant.scopes.contains(offline_access::domain::DRIVE_APPDATA_SCOPE));
    assert!(grant.scopes.contains("openid"));
}

#[tokio::test]
async fn an_unverified_email_is_not_trusted() {
    let stack = spawn_stack().await;
    let minted = stack.mint(CodeSpec {
        email_verified: Some(false),
        ..CodeSpec::default()
    });

    let answer = stack.invoke(&android_form_event(&minted.code)).await;

    assert_eq!(answer.status, 200);
    assert!(answer.json["email"].is_null());
    assert!(
        stack
            .grant(&minted.sub)
            .await
            .is_some_and(|g| g.profile.email.is_none() && !g.email_verified)
    );
}

#[tokio::test]
async fn jwks_rotation_is_followed_with_one_refetch_and_unknown_kids_cannot_force_more() {
    // An unknown kid refetches at most once per ten minutes of the caches' clock (which
    // the test moves), so the count below does not depend on how fast the machine is.
    let stack = test_support::spawn_stack_with(&[("JWKS_MIN_REFETCH_SECS", "600")]).await;
    assert_eq!(
        stack
            .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
            .await
            .status,
        200
    );
    let fetched = stack.emulator.stats().certs;

    stack.emulator.rotate_keys(true).expect("rotate");
    let after_rotation = stack
        .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
        .await;
    assert_eq!(after_rotation.status, 200, "{}", after_rotation.json);
    assert_eq!(stack.emulator.stats().certs, fetched + 1, "one refetch for the new key");

    let forged = || async {
        let forged = stack.mint(CodeSpec {
            forgery: google_emulator::Forgery::UnknownKid,
            ..CodeSpec::default()
        });
        let answer = stack.invoke(&android_form_event(&forged.code)).await;
        assert_eq!((answer.status, answer.error_code()), (401, "invalid_id_token"));
    };
    for _ in 0..3 {
        forged().await;
    }
    assert_eq!(
        stack.emulator.stats().certs,
        fetched + 1,
        "no refetch within the interval of the last"
    );

    // The interval passed: one refetch for the next unknown kid, then none again.
    stack.cache_clock.advance(Duration::from_secs(601));
    for _ in 0..3 {
        forged().await;
    }
    assert_eq!(stack.emulator.stats().certs, fetched + 2, "one refetch per interval");
}

#[tokio::test]
async fn the_jwks_is_cached_as_long_as_its_max_age_says() {
    let stack = spawn_stack().await;
    let max_age = Duration::from_secs(stack.emulator.settings().jwks_max_age);
    let sign_in = || async {
        let answer = stack
            .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
    };
    // Every ID token below is signed by the key the first fetch brought.
    for _ in 0..3 {
        sign_in().await;
    }
    assert_eq!(stack.emulator.stats().certs, 1, "cached within max-age");

    // Moments before max-age ends: still the cached set. (Google dates its ID tokens by
    // the same clock the cache ages by. That clock is the wall clock moved on, so the
    // margin leaves the seconds the test itself takes on a loaded machine: at one second
    // it failed once when the wall clock ticked over between the fetch and the check.)
    let almost = max_age - Duration::from_secs(10);
    stack.cache_clock.advance(almost);
    stack.emulator.advance_clock(almost);
    sign_in().await;
    assert_eq!(stack.emulator.stats().certs, 1, "not refetched before max-age");

    // Max-age passed: the next sign-in fetches the keys again, once.
    stack.cache_clock.advance(Duration::from_secs(11));
    stack.emulator.advance_clock(Duration::from_secs(11));
    sign_in().await;
    sign_in().await;
    assert_eq!(stack.emulator.stats().certs, 2, "refetched once max-age passed");
}

#[tokio::test]
async fn a_jwks_outage_while_googles_keys_rotate_does_not_spend_the_code() {
    let stack = spawn_stack().await;
    assert_eq!(
        stack
            .invoke(&android_form_event(&stack.mint(CodeSpec::default()).code))
            .await
            .status,
        200
    );
    // Google rotates its keys, and the first fetches of the new set fail: one, then two
    // and three in a row (a refetch is allowed once a second, so these outlast the fixed
    // 100/300/900 ms tries this once had).
    for failures in [1, 2, 3] {
        stack.emulator.rotate_keys(true).expect("rotate");
        stack.emulator.inject_fault(
            google_emulator::Endpoint::Certs,
            google_emulator::Fault {
                status: Some(503),
                count: Some(failures),
                ..google_emulator::Fault::default()
            },
        );
        let minted = stack.mint(CodeSpec::default());

        let answer = stack.invoke(&android_form_event(&minted.code)).await;

        assert_eq!(
            answer.status, 200,
            "{failures} failed fetches: the code was spent, the sign-in finishes in the request"
        );
        assert_eq!(
            stack.stored_refresh_token(&minted.sub).await,
            stack.emulator.refresh_token_of(&minted.sub)
        );
    }
}

#[tokio::test]
async fn a_retry_of_a_code_an_unfinished_attempt_spent_answers_reconsent_required_not_invalid_grant() {
    let stack = spawn_stack().await;
    // The first attempt exchanges the code, then cannot store the grant.
    let mut env = stack.env.clone();
    env.insert("GRANTS_TABLE".into(), "no-such-table".into());
    let config = offline_access::config::SignInConfig::from_env(&env).expect("config");
    let broken = test_support::build_app(&config, &stack.aws, stack.cache_clock.clone()).sign_in(&config);
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);

    let first = test_support::invoke_service(&broken, &event).await;
    assert_eq!(first.status, 500, "{}", first.json);

    // The phone retries: Google refuses the redeemed code, and the app is told what to do.
    let retry = stack.invoke(&event).await;
    assert_eq!((retry.status, retry.error_code()), (409, "reconsent_required"));
    assert_eq!(stack.emulator.stats().code_exchanges, 2);
    let replay = stack.invoke(&event).await;
    assert_eq!((replay.status, stack.emulator.stats().code_exchanges), (409, 2));
}

#[tokio::test]
async fn only_the_holder_of_a_claim_releases_it_or_records_its_outcome() {
    use offline_access::store::{Claim, ClaimKey, RecordedOutcome, SignInStore};
    let stack = spawn_stack().await;
    let store = &stack.service.store;
    let (now, lease, window) = (1_800_000_000, Duration::from_secs(20), Duration::from_secs(600));
    let slow = ClaimKey::new("ab".repeat(32));
    let claimed = Ok(Claim::Claimed { code_sent: false });
    assert_eq!(store.claim(&slow, now, lease, window).await, claimed);

    // The slow attempt outlives its lease, and another takes the claim over.
    let next = ClaimKey::new(slow.code.clone());
    assert_eq!(store.claim(&next, now + 21, lease, window).await, claimed);

    // The slow one lets go, or records a refusal: neither touches the new holder's claim.
    assert_eq!(store.release(&slow, false).await, Ok(()));
    let refused = store
        .record_refusal(&slow, &RecordedOutcome::InvalidGrant, now + 22, window)
        .await;
    assert_eq!(refused, Ok(()));
    let probe = ClaimKey::new(slow.code.clone());
    assert_eq!(
        store.claim(&probe, now + 23, lease, window).await,
        Ok(Claim::InProgress)
    );

    // The holder's outcome is the one recorded and replayed.
    let recorded = store
        .record_refusal(&next, &RecordedOutcome::ReconsentRequired, now + 24, window)
        .await;
    assert_eq!(recorded, Ok(()));
    assert_eq!(
        store.claim(&probe, now + 25, lease, window).await,
        Ok(Claim::Done(RecordedOutcome::ReconsentRequired))
    );
}

/// The sign-in use case under its role, with `vars` over the stack's environment.
fn sign_in_with(stack: &test_support::Stack, vars: &[(&str, &str)]) -> test_support::TestSignIn {
    test_support::sign_in_as(stack, test_support::Role::SignIn, vars)
}

#[tokio::test]
async fn a_dynamodb_call_that_hangs_is_given_up_within_the_budget_and_the_code_is_not_spent() {
    let stack = spawn_stack().await;
    let service = sign_in_with(
        &stack,
        &[("AWS_ATTEMPT_TIMEOUT_MS", "2000"), ("AWS_CALL_TIMEOUT_MS", "8000")],
    );
    // Without timeouts each answer below waits out the 30 s the call hangs.
    let service = &service;
    let answer = |event: String| async move {
        tokio::time::timeout(Duration::from_secs(20), test_support::invoke_service(service, &event))
            .await
            .expect("answered within the budget, not after the hanging call")
    };

    // One attempt hangs: it is given up and tried again, and the sign-in goes through.
    stack.iam.delay("PutItem", Duration::from_secs(30), 1);
    let minted = stack.mint(CodeSpec::default());
    let first = answer(android_form_event(&minted.code)).await;
    assert_eq!(first.status, 200, "{}", first.json);

    // Every attempt hangs: the claim is given up before the code goes to Google, and the
    // app is told to retry.
    stack.iam.delay("PutItem", Duration::from_secs(30), 100);
    let exchanges = stack.emulator.stats().code_exchanges;
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let refused = answer(event.clone()).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (502, "upstream_unavailable"),
        "{}",
        refused.json
    );
    assert!(refused.retry_after().is_some());
    assert_eq!(
        stack.emulator.stats().code_exchanges,
        exchanges,
        "the code was not spent"
    );

    // DynamoDB answers again: the same code signs the user in.
    stack.iam.delay("PutItem", Duration::ZERO, 0);
    let retried = answer(event).await;
    assert_eq!(retried.status, 200, "{}", retried.json);
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
}

#[tokio::test]
async fn a_store_down_for_seconds_after_the_exchange_is_waited_out_within_the_budget() {
    let stack = spawn_stack().await;
    // One attempt per call (no SDK retry inside it), and room for a loaded moto.
    let service = sign_in_with(&stack, &test_support::one_attempt_sign_in("20000", &[]));

    // After Google's answer, the grant's write hangs for five calls (ten seconds and the
    // waits, of the twenty; the fixed 100/300/900 ms gave up after four): it is tried
    // again with backoff, and the first consent is kept.
    stack.iam.delay("TransactWriteItems", Duration::from_secs(30), 5);
    let minted = stack.mint(CodeSpec::default());
    let answer = test_support::invoke_service(&service, &android_form_event(&minted.code)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(stack.iam.held("TransactWriteItems"), 5, "every hanging call was made");
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
    let replayed = test_support::invoke_service(&service, &android_form_event(&minted.code)).await;
    assert_eq!(replayed.status, 200, "{}", replayed.json);
}

#[tokio::test]
async fn a_code_is_not_sent_to_google_when_too_little_of_the_budget_is_left_for_what_follows() {
    let stack = spawn_stack().await;
    // The exchange may take 1.5 s (HTTP_TIMEOUT_MS); the claim's first attempt hangs for
    // 2 s of a 3 s budget, leaving too little to spend the code and store what it brings.
    let service = sign_in_with(
        &stack,
        &[
            ("SIGN_IN_BUDGET_MS", "3000"),
            ("AWS_ATTEMPT_TIMEOUT_MS", "2000"),
            ("AWS_CALL_TIMEOUT_MS", "3000"),
        ],
    );
    stack.iam.delay("PutItem", Duration::from_secs(30), 1);
    let exchanges = stack.emulator.stats().code_exchanges;
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let refused = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (502, "upstream_unavailable"),
        "{}",
        refused.json
    );
    assert!(refused.retry_after().is_some());
    assert_eq!(
        stack.emulator.stats().code_exchanges,
        exchanges,
        "the code was not spent"
    );

    // The app retries the same code: it signs the user in.
    let retried = test_support::invoke_service(&service, &event).await;
    assert_eq!(retried.status, 200, "{}", retried.json);
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
}

#[tokio::test]
async fn a_parked_sign_in_waits_out_the_store_and_one_that_does_not_open_or_parse_is_set_aside() {
    let stack = spawn_stack().await;
    // A quarter of the budget is kept for parking's two calls.
    let service = sign_in_with(&stack, &test_support::one_attempt_sign_in("16000", &[]));
    stack.iam.hang("TransactWriteItems");
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let parked = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (parked.status, parked.error_code()),
        (503, "upstream_unavailable"),
        "{}",
        parked.json
    );
    assert_eq!(parked.retry_after(), Some(30));
    let messages = stack.take_parked().await;
    assert_eq!(messages.len(), 1);

    // The store is still down: the consumer gives the message back for a later delivery.
    let consumer = test_support::sign_in_as(
        &stack,
        test_support::Role::ParkedSignIn,
        &test_support::one_attempt_sign_in("3000", &[]),
    );
    let again = test_support::deliver_parked(&consumer, &messages).await;
    assert_eq!(again, vec![messages[0].0.clone()]);

    // A message moved to another code does not open (its parts are bound to their code's
    // digest), and one that is not a parked sign-in at all: both are set aside, never
    // retried, and neither stores anything.
    let mut moved: serde_json::Value = serde_json::from_str(&messages[0].1).expect("JSON");
    moved["code"] = "0".repeat(64).into();
    let set_aside = [
        ("moved".to_owned(), moved.to_string()),
        ("garbage".to_owned(), "not a parked sign-in".to_owned()),
    ];
    assert_eq!(
        test_support::deliver_parked(&consumer, &set_aside).await,
        Vec::<String>::new()
    );
    assert!(stack.grant(&minted.sub).await.is_none(), "nothing stored");
    let waiting = test_support::invoke_service(&service, &event).await;
    assert_eq!((waiting.status, waiting.error_code()), (503, "upstream_unavailable"));

    // The store is back: the redelivered message is stored, and the code replays.
    stack.iam.release("TransactWriteItems");
    assert_eq!(
        test_support::deliver_parked(&consumer, &messages).await,
        Vec::<String>::new()
    );
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
    let replayed = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (replayed.status, replayed.json["sub"].as_str()),
        (200, Some(minted.sub.as_str()))
    );
    assert_eq!(stack.emulator.stats().code_exchanges, 1, "Google saw the code once");
}

#[tokio::test]
async fn without_a_parking_queue_a_grant_not_stored_in_time_is_not_parked() {
    let stack = spawn_stack().await;
    let service = sign_in_with(
        &stack,
        &test_support::one_attempt_sign_in("5000", &[("SIGN_IN_PARKING_QUEUE_URL", "")]),
    );
    stack.iam.hang("TransactWriteItems");
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let answer = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (answer.status, answer.error_code()),
        (502, "upstream_unavailable"),
        "{}",
        answer.json
    );
    assert!(stack.take_parked().await.is_empty());
    // What parking prevents: the code is spent, and its retry can only ask for consent.
    let retried = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (retried.status, retried.error_code()),
        (409, "reconsent_required"),
        "{}",
        retried.json
    );
}

#[tokio::test]
async fn a_sign_in_whose_id_token_cannot_be_checked_while_googles_keys_are_down_is_parked_and_verified_later() {
    let stack = spawn_stack().await;
    let service = sign_in_with(&stack, &test_support::one_attempt_sign_in("16000", &[]));
    // Google rotates its keys and the new set cannot be fetched for the whole budget.
    stack.emulator.rotate_keys(true).expect("rotate");
    let outage = google_emulator::Fault {
        status: Some(503),
        count: Some(10_000),
        ..google_emulator::Fault::default()
    };
    stack.emulator.inject_fault(google_emulator::Endpoint::Certs, outage);
    let minted = stack.mint(CodeSpec::default());
    let event = android_form_event(&minted.code);
    let parked = test_support::invoke_service(&service, &event).await;
    assert_eq!(
        (parked.status, parked.error_code()),
        (503, "upstream_unavailable"),
        "{}",
        parked.json
    );
    let messages = stack.take_parked().await;
    assert_eq!(messages.len(), 1);

    // Google's keys are back: the consumer verifies the ID token as of Google's answer.
    stack.emulator.clear_faults();
    let consumer = test_support::sign_in_as(&stack, test_support::Role::ParkedSignIn, &[]);
    assert_eq!(
        test_support::deliver_parked(&consumer, &messages).await,
        Vec::<String>::new()
    );
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
    let replayed = test_support::invoke_service(&service, &event).await;
    assert_eq!(replayed.status, 200, "{}", replayed.json);
}
