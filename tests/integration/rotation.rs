//! A refresh answer that rotates the refresh token (DESIGN §8, §11): Google retires the
//! old token as it answers, so the new one must be kept. Both paths that refresh — the
//! offline job and the access-token function — keep it through the grant core's one rule
//! (`grant::seal_rotated`): sealed under the data key that opened the stored token, with no
//! KMS call; and when even that cannot be done, the grant is deferred (503 for a caller),
//! its stored token left as it was — never a success.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::time::Duration;

use offline_access::crypto::{Binding, Purpose};
use offline_access::job::CycleId;
use serde_json::json;
use test_support::{CountingKeys, Role, Seeded, Stack, ask_for_token, spawn_stack};

/// No Drive scope: the refresh alone is what is tested.
const SCOPES: &str = "openid";

fn binding<'a>(stack: &'a Stack, user: &'a Seeded) -> Binding<'a> {
    Binding {
        store: &stack.config.common.token_binding,
        sub: &user.sub,
        client_id: &user.grant.client_id,
    }
}

fn cycle() -> CycleId {
    CycleId::parse("2026-12-03T06:00:00Z").expect("cycle")
}

fn access_tokens(
    stack: &Stack,
    keys: &CountingKeys,
    extra: &[(&str, &str)],
) -> offline_access::access_token::AccessTokens<offline_access::ports::Aws<CountingKeys>> {
    let config = stack.access_config(extra);
    offline_access::app::AppBuilder::new(&config.common, &stack.aws_as(Role::AccessToken))
        .keys(keys.clone())
        .build()
        .expect("app")
        .access_tokens(&config)
}

async fn cached_token_item(stack: &Stack, sub: &str) -> bool {
    let item = stack.cached_token_item(sub).await;
    item.is_some_and(|i| i.contains_key("access_token"))
}

#[tokio::test]
async fn the_job_keeps_a_rotated_token_sealed_under_the_opened_key_with_kms_refusing() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, SCOPES, 0).await[0];
    stack.emulator.set_refresh_token_rotation(true);
    let (job, keys) = stack.counting_job(&[]);
    // Only the open of the stored token reaches KMS; then KMS refuses everything.
    keys.refuse_after(1);

    let report = job
        .run(&cycle(), "job", tokio::time::Instant::now() + Duration::from_secs(60))
        .await
        .expect("run");

    assert_eq!((report.refreshed, report.rotated_unsealed), (1, 0), "{report:?}");
    let live = stack.emulator.refresh_token_of(&user.sub).expect("rotated");
    assert_ne!(live, user.token, "Google rotated it");
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(live));
    assert_eq!(
        keys.calls_for(Purpose::RefreshToken),
        1,
        "the open alone: the rotated token was sealed without KMS"
    );
}

#[tokio::test]
async fn the_job_defers_a_grant_whose_rotated_token_cannot_be_sealed_and_keeps_the_stored_one() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, SCOPES, 0).await[0];
    let stored = stack.grant(&user.sub).await.expect("grant").refresh_token;
    stack.emulator.set_refresh_token_rotation(true);
    // No data key is cached for a moment: the seal needs KMS again, and KMS refuses after
    // the open.
    let (job, keys) = stack.counting_job(&[("DATA_KEY_MAX_AGE_SECS", "0")]);
    keys.refuse_after(1);

    let report = job
        .run(&cycle(), "job", tokio::time::Instant::now() + Duration::from_secs(2))
        .await
        .expect("run");

    assert_eq!(
        (report.refreshed, report.deferred, report.rotated_unsealed),
        (0, 1, 1),
        "{report:?}"
    );
    assert!(
        keys.calls_for(Purpose::RefreshToken) > 2,
        "the seal was tried again until the deadline"
    );
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(grant.refresh_token, stored, "the stored token is left as it was");
    assert_eq!((grant.failure_count, grant.next_attempt_at.is_some()), (1, true));
    assert!(!cached_token_item(&stack, &user.sub).await, "no access token handed on");
}

#[tokio::test]
async fn the_access_token_function_keeps_a_rotated_token_with_no_kms_call() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, SCOPES, 0).await[0];
    stack.emulator.set_refresh_token_rotation(true);
    let keys = CountingKeys::new(&stack, Role::AccessToken);
    let service = access_tokens(&stack, &keys, &[]);
    // A warm function: the stored token's data key is already unwrapped.
    let sealed = user.grant.refresh_token.clone().expect("sealed");
    service
        .refresh_cipher
        .open(&sealed, binding(&stack, user))
        .await
        .expect("opens");
    let before = keys.calls_for(Purpose::RefreshToken);
    keys.refuse_after(0);

    let answer = ask_for_token(&service, &json!({"sub": user.sub})).await;

    assert_eq!(answer["status"], json!(200), "{answer}");
    let live = stack.emulator.refresh_token_of(&user.sub).expect("rotated");
    assert_ne!(live, user.token);
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(live));
    assert_eq!(keys.calls_for(Purpose::RefreshToken), before, "no KMS call");
}

#[tokio::test]
async fn the_access_token_function_answers_503_when_a_rotated_token_cannot_be_sealed() {
    let stack = spawn_stack().await;
    let user = &stack.seed_grants(1, SCOPES, 0).await[0];
    let stored = stack.grant(&user.sub).await.expect("grant").refresh_token;
    stack.emulator.set_refresh_token_rotation(true);
    let keys = CountingKeys::new(&stack, Role::AccessToken);
    let service = access_tokens(
        &stack,
        &keys,
        &[("DATA_KEY_MAX_AGE_SECS", "0"), ("ACCESS_TOKEN_BUDGET_MS", "1500")],
    );
    keys.refuse_after(1);

    let answer = ask_for_token(&service, &json!({"sub": user.sub})).await;

    assert_eq!(
        (answer["status"].clone(), answer["error"].clone()),
        (json!(503), json!("upstream_unavailable")),
        "{answer}"
    );
    assert!(answer.get("access_token").is_none(), "never a success");
    assert_eq!(
        stack.grant(&user.sub).await.expect("grant").refresh_token,
        stored,
        "the stored token is left as it was"
    );
    assert!(!cached_token_item(&stack, &user.sub).await, "nothing cached");
    assert!(
        keys.calls_for(Purpose::RefreshToken) > 2,
        "tried again within the budget"
    );
}
