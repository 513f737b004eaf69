//! The application core (`offline_access::app`): one App a process, whose parts every use
//! case made from it shares.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use google_emulator::{CodeSpec, Forgery, SecurityEventSpec};
use offline_access::app::HttpApi;
use offline_access::clock::{Clock, ShiftedClock, SystemClock};
use serde_json::json;
use test_support::iam::Checked;
use test_support::{Role, Stack, android_form_event, build_app, delete_event, risc_event, spawn_stack};

async fn serve(api: &HttpApi<test_support::TestPorts>, event: &str) -> u16 {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway v2 event");
    offline_access::lambda::http::serve(api, &request)
        .await
        .status()
        .as_u16()
}

/// The sign-in function's requests of `action` so far.
fn asked(stack: &Stack, action: &str) -> usize {
    let sent: Vec<Checked> = stack.iam.checked();
    sent.iter()
        .filter(|c| c.role == Role::SignIn)
        .flat_map(|c| &c.needs)
        .filter(|n| n.action == action)
        .count()
}

#[tokio::test]
async fn the_http_apis_routes_share_one_secret_one_id_token_key_set_and_one_data_key() {
    let stack = spawn_stack().await;
    let app = build_app(&stack.config, &stack.aws_as(Role::SignIn), ShiftedClock::default());
    let api = app.http_api(&stack.config);
    api.warm_up().await;
    assert_eq!(asked(&stack, "secretsmanager:GetSecretValue"), 1, "warmed at init");
    assert_eq!(
        stack.emulator.stats().certs,
        1,
        "Google's ID-token keys, warmed at init"
    );

    // A sign-in, then the user deletes their data: the deletion's ID token is checked with
    // the keys the warm-up fetched, and the token sign-in sealed opens with the data key
    // sign-in generated.
    let code = stack.mint(CodeSpec::default());
    assert_eq!(serve(&api, &android_form_event(&code.code)).await, 200);
    let settings = stack.emulator_settings();
    // Every use case's Debug is derived now: with the secret cached and a data key in
    // use, it shows neither.
    let shown = format!("{api:?}");
    assert!(
        shown.contains("SignIn") && !shown.contains(&settings.client_secret),
        "the HTTP API's Debug shows the client secret"
    );
    let now = SystemClock.now_unix();
    let claims = json!({
        "iss": "https://accounts.google.com", "aud": settings.client_id, "azp": settings.android_client_id,
        "sub": code.sub, "email_verified": false, "iat": now, "exp": now + 3_600,
    });
    let id_token = stack.emulator.sign_id_token(&claims, Forgery::None).expect("signed");
    assert_eq!(serve(&api, &delete_event(Some(&id_token), &[])).await, 200);

    // A security event: its verifier fetches Google's RISC keys, its own set.
    let (set, _) = stack
        .emulator
        .security_event(&SecurityEventSpec {
            event: "account-disabled".into(),
            sub: Some(code.sub.clone()),
            ..SecurityEventSpec::default()
        })
        .expect("a signed SET");
    assert_eq!(serve(&api, &risc_event(&set, "application/secevent+jwt")).await, 202);

    assert_eq!(asked(&stack, "secretsmanager:GetSecretValue"), 1, "one secret cache");
    assert_eq!(
        stack.emulator.stats().certs,
        2,
        "one ID-token key set, and the RISC one"
    );
    assert_eq!(asked(&stack, "kms:GenerateDataKey"), 1, "sign-in's seal");
    assert_eq!(
        asked(&stack, "kms:Decrypt"),
        0,
        "the deletion opened with the cached key"
    );
}
