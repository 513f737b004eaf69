//! Who signs in when the code's exchange carries no ID token (DESIGN §16): Google's
//! tokeninfo names the user, an app's `idToken` must name the same one, and a refused
//! `idToken` never spends the code. Also granular consent (`REQUIRED_SCOPES`) and
//! re-consent, which never revokes.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::time::Duration;

use google_emulator::{CodeSpec, Consent, Endpoint, Fault, Forgery};
use offline_access::domain::DRIVE_APPDATA_SCOPE;
use serde_json::json;
use test_support::{Answer, Stack, apigw_event, spawn_stack, spawn_stack_with};

/// What Android's `AuthorizationClient` gives for Drive alone: no identity scope.
fn drive_only(sub: Option<&str>) -> CodeSpec {
    CodeSpec {
        sub: sub.map(str::to_owned),
        email: Some("drive.only@example.com".into()),
        scopes: Some(DRIVE_APPDATA_SCOPE.into()),
        ..CodeSpec::default()
    }
}

/// The POST an app sends, as JSON with these fields.
fn post(fields: &serde_json::Value) -> String {
    apigw_event(
        "apigw-authcode-json.json",
        Some("application/json"),
        fields.to_string().as_bytes(),
        &[],
    )
}

/// The Android app's POST: the code and, when given, Credential Manager's ID token.
fn android(code: &str, id_token: Option<&str>) -> String {
    let mut fields = json!({"authCode": code, "platform": "android"});
    if let Some(token) = id_token {
        fields["idToken"] = token.into();
    }
    post(&fields)
}

fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!((answer.status, answer.error_code()), (status, code), "{}", answer.json);
}

/// An ID token as Credential Manager gives it: for `sub`, audience our web client.
fn app_id_token(stack: &Stack, sub: &str, email: &str) -> String {
    let mut claims = stack.id_token_claims(sub);
    claims["email"] = email.into();
    stack.emulator.sign_id_token(&claims, Forgery::None).expect("signed")
}

#[tokio::test]
async fn a_code_without_an_identity_scope_signs_in_as_the_user_tokeninfo_names() {
    let stack = spawn_stack().await;
    // With an ID token in the exchange, nothing changes: tokeninfo is not called.
    let usual = stack.mint(CodeSpec::default());
    let answer = stack.invoke(&android(&usual.code, None)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(stack.emulator.stats().tokeninfo, 0);

    let minted = stack.mint(drive_only(None));
    let answer = stack.invoke(&android(&minted.code, None)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["sub"], minted.sub.as_str());
    assert_eq!(answer.json["scopes"], json!([DRIVE_APPDATA_SCOPE]));
    // No email scope: tokeninfo names no email, and none is made up.
    assert_eq!(answer.json["email"], serde_json::Value::Null);
    assert_eq!(stack.emulator.stats().tokeninfo, 1, "one tokeninfo call");
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );

    // With the app's ID token of the same user, its profile is kept.
    let other = stack.mint(drive_only(None));
    let token = app_id_token(&stack, &other.sub, "cm.user@example.com");
    let answer = stack.invoke(&android(&other.code, Some(&token))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["email"], "cm.user@example.com");
    let grant = stack.grant(&other.sub).await.expect("stored");
    assert_eq!(
        grant.profile.email.map(|e| e.as_str().to_owned()).as_deref(),
        Some("cm.user@example.com")
    );
}

#[tokio::test]
async fn tokeninfo_without_a_user_stores_nothing_and_answers_identity_unconfirmed() {
    let stack = spawn_stack().await;
    stack.emulator.set_tokeninfo_names_user(false);
    let minted = stack.mint(drive_only(None));
    let event = android(&minted.code, None);

    let answer = stack.invoke(&event).await;
    refused(&answer, 401, "identity_unconfirmed");
    assert!(answer.json["message"].as_str().is_some_and(|m| m.contains("openid")));
    assert!(stack.grants().await.is_empty(), "nothing stored");

    // The code is spent: its retry replays the refusal without calling Google.
    let again = stack.invoke(&event).await;
    refused(&again, 401, "identity_unconfirmed");
    let stats = stack.emulator.stats();
    assert_eq!((stats.code_exchanges, stats.tokeninfo, stats.revokes), (1, 1, 0));
}

#[tokio::test]
async fn an_app_id_token_of_another_user_is_a_mismatch_that_stores_and_revokes_nothing() {
    let stack = spawn_stack().await;
    let someone_else = "109999999999999999999";
    let token = app_id_token(&stack, someone_else, "else@example.com");
    // With the exchange's ID token, and with tokeninfo's answer.
    for spec in [CodeSpec::default(), drive_only(None)] {
        let minted = stack.mint(spec);
        let answer = stack.invoke(&android(&minted.code, Some(&token))).await;
        refused(&answer, 401, "identity_mismatch");
        let body = answer.json.to_string();
        assert!(
            !body.contains(&minted.sub) && !body.contains(someone_else),
            "no ids in the body: {body}"
        );
        assert!(stack.grant(&minted.sub).await.is_none());
        assert!(
            stack
                .emulator
                .refresh_token_is_live(&stack.emulator.refresh_token_of(&minted.sub).expect("issued"))
        );
        // Replayed as such.
        refused(
            &stack.invoke(&android(&minted.code, Some(&token))).await,
            401,
            "identity_mismatch",
        );
    }
    assert!(stack.grant(someone_else).await.is_none());
    assert!(stack.grants().await.is_empty());
    assert_eq!(stack.emulator.stats().revokes, 0);
}

#[tokio::test]
async fn a_refused_app_id_token_never_spends_the_code() {
    let stack = spawn_stack().await;
    let minted = stack.mint(drive_only(None));
    let mut expired = stack.id_token_claims(&minted.sub);
    expired["exp"] = json!(1_600_000_000);
    expired["iat"] = json!(1_599_996_400);
    let mut elsewhere = stack.id_token_claims(&minted.sub);
    elsewhere["aud"] = "another-client.apps.googleusercontent.com".into();
    let sign = |claims: &serde_json::Value, forgery| stack.emulator.sign_id_token(claims, forgery).expect("signed");
    let cases = [
        ("expired", sign(&expired, Forgery::None)),
        ("another audience", sign(&elsewhere, Forgery::None)),
        ("forged", sign(&stack.id_token_claims(&minted.sub), Forgery::ForeignKey)),
    ];
    for (what, token) in &cases {
        let answer = stack.invoke(&android(&minted.code, Some(token))).await;
        refused(&answer, 401, "invalid_id_token");
        assert!(
            answer.json["message"].as_str().is_some_and(|m| m.contains("idToken")),
            "{what}: {}",
            answer.json
        );
    }
    for (what, raw) in [
        ("malformed", "not-a-jwt".to_owned()),
        ("over 4 KiB", format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", "a".repeat(4_100))),
    ] {
        let answer = stack.invoke(&android(&minted.code, Some(&raw))).await;
        refused(&answer, 400, "invalid_request");
        let message = answer.json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("idToken") && !message.contains("not-a-jwt"),
            "{what}: {message}"
        );
    }
    // Each with the code missing: the request is refused as a whole, the field named.
    let answer = stack.invoke(&post(&json!({"idToken": "not-a-jwt"}))).await;
    refused(&answer, 400, "invalid_request");
    assert_eq!(stack.emulator.stats().code_exchanges, 0, "Google never saw the code");
    assert!(stack.grants().await.is_empty());

    // The same code with a good ID token: it was never spent.
    let good = app_id_token(&stack, &minted.sub, "drive.only@example.com");
    let answer = stack.invoke(&android(&minted.code, Some(&good))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

#[tokio::test]
async fn tokeninfo_unreachable_parks_the_sign_in_and_the_consumer_confirms_the_user_later() {
    let stack = spawn_stack().await;
    let minted = stack.mint(drive_only(None));
    let token = app_id_token(&stack, &minted.sub, "parked@example.com");
    let event = android(&minted.code, Some(&token));
    stack.emulator.inject_fault(
        Endpoint::TokenInfo,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    let answer = stack.invoke(&event).await;
    refused(&answer, 503, "upstream_unavailable");
    assert_eq!(answer.retry_after(), Some(30), "parked: {}", answer.json);
    refused(&stack.invoke(&event).await, 503, "upstream_unavailable");
    assert_eq!(stack.emulator.stats().code_exchanges, 1);

    // Google is back, after the first access token expired by its clock: the consumer
    // refreshes with the parked token and asks again.
    stack.emulator.clear_faults();
    stack.emulator.advance_clock(Duration::from_secs(3_700));
    let parked = stack.take_parked().await;
    assert_eq!(parked.len(), 1);
    let body = &parked[0].1;
    for planted in [minted.code.as_str(), token.as_str(), "parked@example.com"] {
        assert!(!body.contains(planted), "a parked message holds a secret or the user");
    }
    let consumer = test_support::sign_in_as(&stack, test_support::Role::ParkedSignIn, &[]);
    assert!(test_support::deliver_parked(&consumer, &parked).await.is_empty());
    let stats = stack.emulator.stats();
    assert_eq!(stats.refreshes, 1, "one refresh for a fresh access token");

    let answer = stack.invoke(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["sub"], minted.sub.as_str());
    assert_eq!(answer.json["email"], "parked@example.com");
    assert_eq!(
        stack.stored_refresh_token(&minted.sub).await,
        stack.emulator.refresh_token_of(&minted.sub)
    );
}

#[tokio::test]
async fn a_sign_in_without_a_required_scope_keeps_the_grant_and_says_how_to_ask_again() {
    let stack = spawn_stack_with(&[("REQUIRED_SCOPES", DRIVE_APPDATA_SCOPE)]).await;
    let identity = "openid https://www.googleapis.com/auth/userinfo.email";
    for (platform, how) in [
        ("android", "AuthorizationRequest.setRequestedScopes"),
        ("ios", "GIDGoogleUser.addScopes"),
        ("web", "initCodeClient with include_granted_scopes"),
    ] {
        let minted = stack.mint(CodeSpec {
            scopes: Some(identity.into()),
            redirect_uri: (platform == "web").then(|| "postmessage".into()),
            ..CodeSpec::default()
        });
        let event = post(&json!({"authCode": minted.code, "platform": platform}));
        let answer = stack.invoke(&event).await;
        assert_eq!(answer.status, 200, "{platform}: {}", answer.json);
        assert_eq!(answer.json["missing_scopes"], json!([DRIVE_APPDATA_SCOPE]));
        let ask = json!({"platform": platform, "scopes": [DRIVE_APPDATA_SCOPE], "how": how});
        assert_eq!(answer.json["ask_again"], ask, "{platform}");
        assert!(
            stack
                .grant(&minted.sub)
                .await
                .is_some_and(|g| g.refresh_token.is_some())
        );
        // The replay answers the same.
        let replay = stack.invoke(&event).await;
        assert_eq!(replay.json, answer.json, "{platform}");
    }
    // Granted: neither field.
    let minted = stack.mint(CodeSpec::default());
    let answer = stack.invoke(&android(&minted.code, None)).await;
    assert_eq!(answer.status, 200);
    assert!(answer.json.get("missing_scopes").is_none() && answer.json.get("ask_again").is_none());
}

#[tokio::test]
async fn repeated_forced_consents_store_the_newest_token_and_never_call_revoke() {
    let stack = spawn_stack().await;
    let sub = "105555555555555555555";
    for _ in 0..3 {
        let minted = stack.mint(CodeSpec {
            sub: Some(sub.into()),
            consent: Consent::Forced,
            ..CodeSpec::default()
        });
        let answer = stack.invoke(&android(&minted.code, None)).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(
            stack.stored_refresh_token(sub).await,
            stack.emulator.refresh_token_of(sub)
        );
    }
    assert_eq!(
        stack.emulator.live_refresh_tokens(sub),
        3,
        "Google still holds every one"
    );
    assert_eq!(stack.emulator.stats().revokes, 0, "a superseded token is never revoked");
}
