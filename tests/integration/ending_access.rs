//! Ending access (DESIGN §12), through the real handlers against moto and the emulator:
//! the user deletes their data (`DELETE /grants/me`), time-based access runs out, and an
//! `invalid_grant` is given its likely cause.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use aws_sdk_dynamodb::types::AttributeValue;
use google_emulator::{CodeSpec, Consent, Endpoint, Fault, Forgery};
use offline_access::clock::{Clock, SystemClock};
use offline_access::store::GrantStatus;
use serde_json::json;
use test_support::{Stack, android_form_event, ask_for_token, delete_event, no_deadline, spawn_stack};

const DAY: u64 = 86_400;

async fn set_grant_number(stack: &Stack, sub: &str, attr: &str, value: Option<u64>) {
    let value = value.map(|v| AttributeValue::N(v.to_string()));
    stack.set_grant_attributes(sub, &[(attr, value)]).await;
}

fn cycle(name: &str) -> offline_access::job::CycleId {
    offline_access::job::CycleId::parse(name).expect("cycle")
}

#[tokio::test]
async fn time_based_access_is_kept_and_once_it_runs_out_nothing_calls_google_and_consent_is_asked_again() {
    let stack = spawn_stack().await;
    let code = stack.mint(CodeSpec {
        refresh_token_expires_in: Some(DAY),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let now = SystemClock.now_unix();
    let limit = stack.grant(&code.sub).await.expect("grant").refresh_expires_at;
    assert!(
        limit.is_some_and(|at| (now + DAY - 5..=now + DAY).contains(&at)),
        "{limit:?}"
    );
    let tokens = stack.access_tokens(&[]);
    let answer = ask_for_token(&tokens, &json!({"sub": code.sub})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");

    // The day passes: the grant's time is up, and so is the token cached within it (no
    // token is cached for longer than the grant lasts, so its item alone never serves one
    // past the end).
    set_grant_number(&stack, &code.sub, "refresh_expires_at", Some(now - 1)).await;
    stack
        .set_cached_token_attributes(
            &code.sub,
            &[("token_expires_at", Some(AttributeValue::N((now - 1).to_string())))],
        )
        .await;
    let refreshes = stack.emulator.stats().refreshes;
    let answer = ask_for_token(&tokens, &json!({"sub": code.sub})).await;
    assert_eq!(
        (answer["status"].clone(), answer["reason"].clone()),
        (json!(409), json!("time_based_access_expired")),
        "even with a token cached: {answer}"
    );
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T12:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.reconsent_required, report.google_calls), (1, 0), "{report:?}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes, "Google was not called");
    let grant = stack.grant(&code.sub).await.expect("grant");
    assert_eq!(
        (
            grant.status,
            grant.status_reason.as_deref(),
            grant.refresh_token.is_none()
        ),
        (GrantStatus::ReconsentRequired, Some("time_based_access_expired"), true)
    );

    // The user consents again, for good this time.
    let again = stack.mint(CodeSpec {
        sub: Some(code.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&again.code)).await.status, 200);
    let grant = stack.grant(&code.sub).await.expect("grant");
    assert_eq!((grant.status, grant.refresh_expires_at), (GrantStatus::Active, None));
    let answer = ask_for_token(&tokens, &json!({"sub": code.sub})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");
}

#[tokio::test]
async fn a_time_limit_first_seen_in_a_refresh_answer_is_recorded() {
    let stack = spawn_stack().await;
    let code = stack.mint(CodeSpec {
        refresh_token_expires_in: Some(DAY),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    // A grant stored by a version that did not keep the limit.
    set_grant_number(&stack, &code.sub, "refresh_expires_at", None).await;
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T18:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!(report.refreshed, 1, "{report:?}");
    let now = SystemClock.now_unix();
    let limit = stack.grant(&code.sub).await.expect("grant").refresh_expires_at;
    assert!(
        limit.is_some_and(|at| (now + DAY - 10..=now + DAY).contains(&at)),
        "{limit:?}"
    );
}

#[tokio::test]
async fn an_invalid_grant_records_its_likely_cause_and_the_backend_is_told() {
    let stack = spawn_stack().await;
    let seeded = stack
        .seed_grants(3, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await;
    let now = SystemClock.now_unix();
    // Issued seven days and two hours ago, as a Testing-mode consent screen's tokens die.
    set_grant_number(&stack, &seeded[0].sub, "token_issued_at", Some(now - 7 * DAY - 7_200)).await;
    stack.emulator.revoke_refresh_token(&seeded[0].token, None);
    stack
        .emulator
        .revoke_refresh_token(&seeded[1].token, Some("invalid_rapt"));
    stack.emulator.revoke_refresh_token(&seeded[2].token, None);
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-27T00:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.revoked, report.reconsent_required), (2, 1), "{report:?}");
    let tokens = stack.access_tokens(&[]);
    for (user, cause) in seeded.iter().zip([
        "consent_screen_in_testing",
        "reauthentication_required",
        "revoked_or_replaced",
    ]) {
        let grant = stack.grant(&user.sub).await.expect("grant");
        assert_eq!(grant.likely_cause.as_deref(), Some(cause), "{}", user.sub);
        let answer = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
        assert_eq!(
            (answer["status"].clone(), answer["likely_cause"].clone()),
            (json!(409), json!(cause)),
            "{answer}"
        );
    }
}

/// Signs a user in through the real handler; their refresh token as Google holds it.
async fn signed_in(stack: &Stack) -> (String, String) {
    let code = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let token = stack.emulator.refresh_token_of(&code.sub).expect("a live token");
    (code.sub, token)
}

#[tokio::test]
async fn a_user_deletes_their_data_google_revokes_the_token_and_a_tombstone_is_left() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let (sub, token) = signed_in(&stack).await;
    let tokens = stack.access_tokens(&[]);
    assert_eq!(ask_for_token(&tokens, &json!({"sub": sub})).await["status"], json!(200));

    let answer = stack.delete_as(&routes, &sub).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json, json!({"sub": sub, "google": "revoked"}));
    assert!(
        !stack.emulator.refresh_token_is_live(&token),
        "Google refuses the token now"
    );
    let grant = stack.grant(&sub).await.expect("a tombstone");
    assert_eq!(
        (
            grant.status,
            grant.status_reason.as_deref(),
            grant.refresh_token.is_none()
        ),
        (GrantStatus::Deleted, Some("user_deleted"), true)
    );
    assert_eq!((grant.profile.email.is_none(), grant.scopes.is_empty()), (true, true));
    assert!(
        stack.grant_attribute(&sub, "expires_at").await.is_some(),
        "the tombstone expires"
    );
    assert_eq!(
        ask_for_token(&tokens, &json!({"sub": sub})).await["status"],
        json!(404),
        "nothing is served after deletion"
    );

    // Asked again: 200 again.
    let again = stack.delete_as(&routes, &sub).await;
    assert_eq!(
        (again.status, again.json["google"].clone()),
        (200, json!("already_revoked"))
    );

    // Signing in again makes a fresh grant.
    let code = stack.mint(CodeSpec {
        sub: Some(sub.clone()),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let grant = stack.grant(&sub).await.expect("grant");
    assert_eq!(
        (grant.status, grant.refresh_token.is_some()),
        (GrantStatus::Active, true)
    );
    assert!(
        stack.grant_attribute(&sub, "expires_at").await.is_none(),
        "no TTL on a live grant"
    );
}

#[tokio::test]
async fn with_google_unreachable_the_deletion_is_pending_and_the_job_finishes_it() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let (sub, token) = signed_in(&stack).await;
    revoke_unavailable_once(&stack);
    let answer = stack.delete_as(&routes, &sub).await;
    assert_eq!(answer.json, json!({"sub": sub, "google": "pending"}), "{}", answer.json);
    let grant = stack.grant(&sub).await.expect("grant");
    assert_eq!(
        (grant.status, grant.refresh_token.is_some()),
        (GrantStatus::Revoking, true)
    );
    assert_eq!(
        ask_for_token(&stack.access_tokens(&[]), &json!({"sub": sub})).await["status"],
        json!(404),
        "unusable at once"
    );

    let refreshes = stack.emulator.stats().refreshes;
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T06:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.deleted, report.refreshed), (1, 0), "{report:?}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes, "never refreshed");
    assert!(!stack.emulator.refresh_token_is_live(&token));
    let grant = stack.grant(&sub).await.expect("tombstone");
    assert_eq!(
        (grant.status, grant.refresh_token.is_none()),
        (GrantStatus::Deleted, true)
    );
}

#[tokio::test]
async fn a_deletion_needs_a_valid_id_token_and_x_requested_with() {
    // Only our Android app may present a user's ID token (empty ALLOWED_AZP allows any).
    let android = google_emulator::Settings::default().android_client_id;
    let stack = test_support::spawn_stack_with(&[("ALLOWED_AZP", &android)]).await;
    let routes = stack.routes();
    let (sub, token) = signed_in(&stack).await;
    let valid = stack.id_token(&sub, Forgery::None);
    for (event, status, code) in [
        (delete_event(None, &[]), 401, "invalid_id_token"),
        (delete_event(Some("not-a-jwt"), &[]), 401, "invalid_id_token"),
        (
            delete_event(Some(&stack.id_token(&sub, Forgery::FlippedSignatureBit)), &[]),
            401,
            "invalid_id_token",
        ),
        (
            delete_event(Some(&stack.id_token(&sub, Forgery::AlgNone)), &[]),
            401,
            "invalid_id_token",
        ),
        (delete_event(Some(&valid), &["x-requested-with"]), 403, "forbidden"),
    ] {
        let answer = stack.invoke_api(&routes, &event).await;
        assert_eq!((answer.status, answer.error_code()), (status, code), "{}", answer.json);
    }
    // Checked as sign-in's is (DESIGN §6): every forgery, and every claim that is not
    // Google's, our client's, or current.
    let forgeries = [Forgery::Hs256WithPublicKey, Forgery::UnknownKid, Forgery::ForeignKey];
    for forgery in forgeries {
        let event = delete_event(Some(&stack.id_token(&sub, forgery)), &[]);
        let answer = stack.invoke_api(&routes, &event).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (401, "invalid_id_token"),
            "{forgery:?}: {}",
            answer.json
        );
    }
    let now = offline_access::clock::Clock::now_unix(&offline_access::clock::SystemClock);
    let claims = |changes: serde_json::Value| {
        let mut claims = stack.id_token_claims(&sub);
        if let (Some(all), Some(changed)) = (claims.as_object_mut(), changes.as_object()) {
            for (name, value) in changed {
                all.insert(name.clone(), value.clone());
            }
        }
        claims
    };
    for (why, changes) in [
        ("another issuer", json!({"iss": "https://accounts.example.com"})),
        (
            "another audience",
            json!({"aud": "someone-else.apps.googleusercontent.com"}),
        ),
        (
            "an app not in ALLOWED_AZP",
            json!({"azp": "someone-else.apps.googleusercontent.com"}),
        ),
        ("expired", json!({"iat": now - 7_200, "exp": now - 3_600})),
        ("issued in the future", json!({"iat": now + 3_600, "exp": now + 7_200})),
    ] {
        let token = stack
            .emulator
            .sign_id_token(&claims(changes), Forgery::None)
            .expect("signed");
        let answer = stack.invoke_api(&routes, &delete_event(Some(&token), &[])).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (401, "invalid_id_token"),
            "{why}: {}",
            answer.json
        );
    }
    let grant = stack.grant(&sub).await.expect("grant");
    assert_eq!(grant.status, GrantStatus::Active, "nothing changed");
    assert!(stack.emulator.refresh_token_is_live(&token));

    // The claims each refusal above changed one of are a valid token's: it deletes.
    let control = stack
        .emulator
        .sign_id_token(&claims(json!({})), Forgery::None)
        .expect("signed");
    let answer = stack.invoke_api(&routes, &delete_event(Some(&control), &[])).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_tombstone(&stack, &sub).await;
}

/// Google's revocation endpoint answers the next call 503.
fn revoke_unavailable_once(stack: &Stack) {
    stack.emulator.inject_fault(
        Endpoint::Revoke,
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
    );
}

/// The grant is a tombstone: no token, no profile, no scopes.
async fn assert_tombstone(stack: &Stack, sub: &str) {
    let grant = stack.grant(sub).await.expect("a tombstone");
    assert_eq!(
        (
            grant.status,
            grant.refresh_token.is_none(),
            grant.profile.email.is_none(),
            grant.scopes.is_empty()
        ),
        (GrantStatus::Deleted, true, true, true),
        "everything we held is deleted"
    );
}

#[tokio::test]
async fn a_user_whose_token_no_longer_authenticates_is_deleted_all_the_same_as_unrevocable() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let (sub, token) = signed_in(&stack).await;
    // The sealed token's last byte altered: it never authenticates again, while KMS answers.
    let Some(AttributeValue::B(sealed)) = stack.grant_attribute(&sub, "refresh_token").await else {
        panic!("a sealed token");
    };
    let mut altered = sealed.into_inner();
    if let Some(last) = altered.last_mut() {
        *last ^= 1;
    }
    stack
        .set_grant_attributes(&sub, &[("refresh_token", Some(AttributeValue::B(altered.into())))])
        .await;

    let answer = stack.delete_as(&routes, &sub).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json, json!({"sub": sub, "google": "unrevocable"}));
    assert_tombstone(&stack, &sub).await;
    assert!(
        stack.emulator.refresh_token_is_live(&token),
        "nothing could be revoked at Google: the README sends the user to their account's permissions"
    );
    let again = stack.delete_as(&routes, &sub).await;
    assert_eq!(
        (again.status, again.json["google"].clone()),
        (200, json!("already_revoked"))
    );
}

#[tokio::test]
async fn a_user_whose_kms_key_is_disabled_or_deleted_is_deleted_as_unrevocable_by_the_route_and_by_the_job() {
    let stack = spawn_stack().await;
    let (first, _) = signed_in(&stack).await;
    let (second, _) = signed_in(&stack).await;
    // The second deletion is pending (Google unreachable) while the key still works.
    revoke_unavailable_once(&stack);
    let answer = stack.delete_as(&stack.routes(), &second).await;
    assert_eq!(answer.json["google"], json!("pending"), "{}", answer.json);

    // The key is scheduled for deletion, through the proxy that makes moto refuse as KMS
    // does; a fresh function instance has no data key cached, so it must ask KMS.
    let kms = aws_sdk_kms::Client::new(&stack.iam.admin(&stack.aws));
    let key = kms
        .describe_key()
        .key_id(&stack.config.common.token_key_id)
        .send()
        .await
        .expect("the token key");
    let key_id = key.key_metadata().map(|m| m.key_id().to_owned()).expect("its id");
    kms.schedule_key_deletion()
        .key_id(key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("schedule the key's deletion");
    let fresh = test_support::build_app(
        &stack.config,
        &stack.aws_as(test_support::Role::SignIn),
        offline_access::clock::ShiftedClock::default(),
    )
    .http_api(&stack.config);
    let answer = stack.delete_as(&fresh, &first).await;
    assert_eq!(
        answer.json,
        json!({"sub": first, "google": "unrevocable"}),
        "{}",
        answer.json
    );
    assert_tombstone(&stack, &first).await;

    // The job finishes the pending deletion the same way, and counts it.
    let report = stack
        .job(&[])
        .run(&cycle("2026-12-03T06:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!(
        (report.deleted, report.unrevocable, report.refreshed),
        (1, 1, 0),
        "{report:?}"
    );
    assert_tombstone(&stack, &second).await;
}

#[tokio::test]
async fn a_kms_that_may_pass_deletes_nothing_unreachable_is_pending_and_a_refusal_an_error() {
    let stack = spawn_stack().await;
    for (unreachable, status, google) in [(true, 200, Some("pending")), (false, 500, None)] {
        let (sub, token) = signed_in(&stack).await;
        // A fresh instance (no data key cached) whose KMS calls all fail.
        let keys = test_support::CountingKeys::new(&stack, test_support::Role::SignIn);
        if unreachable {
            keys.unreachable_after(0);
        } else {
            keys.refuse_after(0);
        }
        let fresh =
            offline_access::app::AppBuilder::new(&stack.config.common, &stack.aws_as(test_support::Role::SignIn))
                .keys(keys)
                .build()
                .expect("app")
                .http_api(&stack.config);
        let request = lambda_http::request::from_str(&delete_event(Some(&stack.id_token(&sub, Forgery::None)), &[]))
            .expect("event");
        let response = offline_access::lambda::http::serve(&fresh, &request).await;
        let body: serde_json::Value = serde_json::from_str(response.body()).expect("JSON");
        assert_eq!(response.status().as_u16(), status, "{body}");
        assert_eq!(body["google"].as_str(), google, "{body}");
        let grant = stack.grant(&sub).await.expect("grant");
        assert_eq!(
            (
                grant.status,
                grant.refresh_token.is_some(),
                grant.profile.email.is_some()
            ),
            (GrantStatus::Revoking, true, true),
            "kept sealed for the job to revoke"
        );
        assert!(stack.emulator.refresh_token_is_live(&token));
    }
}

#[tokio::test]
async fn a_token_cached_before_google_revoked_the_grant_is_not_served_after_the_user_signs_in_again() {
    let stack = spawn_stack().await;
    let user = &stack
        .seed_grants(1, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await[0];
    let tokens = stack.access_tokens(&[]);
    let before = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
    let old = before["access_token"].as_str().expect("a token").to_owned();

    // Google revokes the grant (its access tokens with it); the job finds out.
    assert!(stack.emulator.revoke_refresh_token(&user.token, None));
    let report = stack
        .job(&[])
        .run(
            &offline_access::job::CycleId::parse("2026-11-26T08:00:00Z").expect("cycle"),
            "job",
            no_deadline(),
        )
        .await
        .expect("run");
    assert_eq!(report.revoked, 1, "{report:?}");
    let item = stack.cached_token_item(&user.sub).await.expect("the cache item");
    assert!(!item.contains_key("access_token"), "ended: {item:?}");

    // The user signs in again: a new grant, whose first call gets a new token.
    let again = stack.mint(CodeSpec {
        sub: Some(user.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&again.code)).await.status, 200);
    let after = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
    let new = after["access_token"].as_str().expect("a token");
    assert_ne!(new, old, "the revoked grant's token is never served");
    assert_eq!(
        stack
            .emulator
            .refreshed_access_tokens(&user.sub)
            .last()
            .map(String::as_str),
        Some(new)
    );
}

#[tokio::test]
async fn a_refresh_in_flight_when_the_grant_ends_never_writes_its_token_back() {
    let stack = spawn_stack().await;
    let users = stack
        .seed_grants(2, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await;
    let routes = stack.routes();
    for (user, end) in users.iter().zip(["DELETE /grants/me", "RISC tokens-revoked"]) {
        // The refresh's cache write reaches DynamoDB only after the grant has ended.
        stack.iam.hold("PutItem", 1);
        let tokens = stack.access_tokens(&[("AWS_CALL_TIMEOUT_MS", "60000"), ("AWS_ATTEMPT_TIMEOUT_MS", "60000")]);
        let sub = user.sub.clone();
        let in_flight = tokio::spawn(async move { ask_for_token(&tokens, &json!({"sub": sub})).await });
        stack.iam.until_held("PutItem").await;
        let ended = if end.starts_with("DELETE") {
            stack.delete_as(&routes, &user.sub).await
        } else {
            let spec = google_emulator::SecurityEventSpec {
                event: "tokens-revoked".into(),
                sub: Some(user.sub.clone()),
                ..google_emulator::SecurityEventSpec::default()
            };
            let (set, _) = stack.emulator.security_event(&spec).expect("SET");
            stack
                .invoke_api(&routes, &test_support::risc_event(&set, "application/secevent+jwt"))
                .await
        };
        assert!([200, 202].contains(&ended.status), "{end}: {:?}", ended.json);
        stack.iam.release("PutItem");
        let answer = in_flight.await.expect("the call");
        assert_eq!(answer["status"], json!(200), "{end}: it began before the end: {answer}");
        // Its write came after the end, and was refused: nothing of the grant's token is
        // kept (a deleted user's sealed token would otherwise live until its TTL).
        let item = stack.cached_token_item(&user.sub).await.expect("the cache item");
        assert!(!item.contains_key("access_token"), "{end}: {item:?}");
        assert!(item.contains_key("ended_gen"), "{end}: {item:?}");
        let again = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub})).await;
        assert_ne!(again["status"], json!(200), "{end}: not served: {again}");
    }
}

#[tokio::test]
async fn a_job_refresh_in_flight_when_the_user_deletes_their_data_never_writes_its_token_back() {
    let stack = spawn_stack().await;
    let user = &stack
        .seed_grants(1, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await[0];
    let routes = stack.routes();
    // The job's refresh succeeds; its routine record (the cache write that ends its
    // lease: the job's first PutItem) reaches DynamoDB only after the user deleted
    // their data.
    stack.iam.hold("PutItem", 1);
    let job = stack.job(&[
        ("DRIVE_SYNC", "off"),
        ("AWS_CALL_TIMEOUT_MS", "60000"),
        ("AWS_ATTEMPT_TIMEOUT_MS", "60000"),
    ]);
    let cycle = cycle("2026-11-26T08:00:00Z");
    let run = job.run(&cycle, "job", no_deadline());
    let end = async {
        stack.iam.until_held("PutItem").await;
        let deleted = stack.delete_as(&routes, &user.sub).await;
        stack.iam.release("PutItem");
        deleted
    };
    let (report, deleted) = tokio::join!(run, end);
    assert_eq!(deleted.status, 200, "{:?}", deleted.json);
    report.expect("the run");

    // Nothing of the deleted user's token is kept: the refused write left the marker.
    let item = stack.cached_token_item(&user.sub).await.expect("the cache item");
    assert!(!item.contains_key("access_token"), "{item:?}");
    assert!(item.contains_key("ended_gen"), "{item:?}");
    // The deletion is done, or (Google's revocation still pending while the job ran) left
    // for the job to finish: either way the grant is never served again.
    let grant = stack.grant(&user.sub).await.expect("a tombstone");
    assert!(
        [GrantStatus::Deleted, GrantStatus::Revoking].contains(&grant.status),
        "{:?}: {:?}",
        grant.status,
        deleted.json
    );
    let again = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub})).await;
    assert_ne!(again["status"], json!(200), "not served: {again}");
}

#[tokio::test]
async fn a_new_refresh_token_from_a_sign_in_ends_the_cached_access_token_of_the_one_it_replaces() {
    let stack = spawn_stack().await;
    let users = stack
        .seed_grants(2, "openid https://www.googleapis.com/auth/drive.appdata", 0)
        .await;
    let tokens = stack.access_tokens(&[]);
    let consent_again = |sub: &str| {
        stack.mint(CodeSpec {
            sub: Some(sub.to_owned()),
            consent: Consent::Forced,
            ..CodeSpec::default()
        })
    };

    // A token cached from the first refresh token; the user consents again.
    let first = ask_for_token(&tokens, &json!({"sub": users[0].sub})).await;
    assert_eq!(first["status"], json!(200), "{first}");
    let code = consent_again(&users[0].sub);
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let item = stack.cached_token_item(&users[0].sub).await.expect("the cache item");
    assert!(!item.contains_key("access_token"), "ended with the sign-in: {item:?}");
    let next = ask_for_token(&tokens, &json!({"sub": users[0].sub})).await;
    assert_ne!(next["access_token"], first["access_token"], "{next}");

    // A refresh of the first token in flight when the user consents again: its cache write
    // lands after the sign-in's, and is refused.
    stack.iam.hold("PutItem", 1);
    let sub = users[1].sub.clone();
    let in_flight = {
        let tokens = stack.access_tokens(&[("AWS_CALL_TIMEOUT_MS", "60000"), ("AWS_ATTEMPT_TIMEOUT_MS", "60000")]);
        tokio::spawn(async move { ask_for_token(&tokens, &json!({"sub": sub})).await })
    };
    stack.iam.until_held("PutItem").await;
    let code = consent_again(&users[1].sub);
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    stack.iam.release("PutItem");
    let old = in_flight.await.expect("the call");
    assert_eq!(old["status"], json!(200), "it began before the sign-in: {old}");
    let item = stack.cached_token_item(&users[1].sub).await.expect("the cache item");
    assert!(!item.contains_key("access_token"), "{item:?}");
    let new = ask_for_token(&tokens, &json!({"sub": users[1].sub})).await;
    assert_eq!(new["status"], json!(200), "{new}");
    assert_ne!(
        new["access_token"], old["access_token"],
        "a token of the new refresh token"
    );
}

#[tokio::test]
async fn no_access_token_is_cached_for_longer_than_a_time_limited_grant_lasts() {
    let stack = spawn_stack().await;
    // The user granted two minutes; Google's access tokens live an hour.
    let code = stack.mint(CodeSpec {
        refresh_token_expires_in: Some(120),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    let limit = stack
        .grant(&code.sub)
        .await
        .and_then(|g| g.refresh_expires_at)
        .expect("a limit");
    let answer = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": code.sub})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");
    let item = stack.cached_token_item(&code.sub).await.expect("the cache item");
    let cached_until = item
        .get("token_expires_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("an expiry");
    assert!(
        cached_until <= limit,
        "cached until {cached_until}, the grant ends at {limit}"
    );
}
