//! Each function's AWS calls against its role in `template.yaml`. Every test's stack runs
//! the functions' code through the harness's IAM proxy, which refuses what the role does
//! not allow as AWS would (`test_support::iam`); these tests show that the proxy derives
//! what a request needs from the request (a transaction's items included), that it does
//! refuse, and that each function's main paths need only what its role allows.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::BTreeSet;

use google_emulator::{CodeSpec, Consent, Forgery, SecurityEventSpec};
use offline_access::permissions::{self, Permission};
use serde_json::json;
use test_support::iam::{Names, Need, needs};
use test_support::{
    Role, Stack, android_form_event, ask_for_token, delete_event, no_deadline, risc_event, spawn_stack,
};

fn names() -> Names {
    Names {
        tables: [("p-grants", "GrantsTable"), ("p-state", "StateTable")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
        token_key_id: "alias/p-tokens".into(),
        other_token_keys: Vec::new(),
        client_secret_id: "p/google-client".into(),
        event_bus_name: "p-bus".into(),
        events_failure_queue_url: "http://127.0.0.1/123/p-events-failures".into(),
        parking_queue_url: "http://127.0.0.1/123/p-parked-sign-ins".into(),
    }
}

fn need(action: &str, resource: &str) -> Need {
    Need {
        action: action.into(),
        resource: resource.into(),
        purpose: None,
    }
}

#[test]
fn a_transaction_needs_the_action_of_each_of_its_items_on_that_items_table() {
    let body = json!({"TransactItems": [
        {"Put": {"TableName": "p-grants", "Item": {}}},
        {"Update": {"TableName": "p-grants", "Key": {}}},
        {"Put": {"TableName": "p-state", "Item": {}}},
        {"Delete": {"TableName": "p-state", "Key": {}}},
        {"ConditionCheck": {"TableName": "other", "Key": {}}},
    ]});
    assert_eq!(
        needs("DynamoDB_20120810.TransactWriteItems", &body, &names()),
        vec![
            need("dynamodb:PutItem", "GrantsTable"),
            need("dynamodb:UpdateItem", "GrantsTable"),
            need("dynamodb:PutItem", "StateTable"),
            need("dynamodb:DeleteItem", "StateTable"),
            need("dynamodb:ConditionCheckItem", "?other"),
        ]
    );
}

#[test]
fn a_query_on_an_index_needs_the_index_and_kms_calls_carry_their_purpose() {
    let query = json!({"TableName": "p-grants", "IndexName": "by-token-hash"});
    assert_eq!(
        needs("DynamoDB_20120810.Query", &query, &names()),
        vec![need("dynamodb:Query", "GrantsTable/index/by-token-hash")]
    );
    let batch = json!({"RequestItems": {"p-grants": {}, "p-state": {}}});
    assert_eq!(
        needs("DynamoDB_20120810.BatchGetItem", &batch, &names()),
        vec![
            need("dynamodb:BatchGetItem", "GrantsTable"),
            need("dynamodb:BatchGetItem", "StateTable")
        ]
    );
    let decrypt = json!({"CiphertextBlob": "", "EncryptionContext": {"purpose": "offline-access/access-token"}});
    assert_eq!(
        needs("TrentService.Decrypt", &decrypt, &names()),
        vec![Need {
            action: "kms:Decrypt".into(),
            resource: "TokenKey".into(),
            purpose: Some("offline-access/access-token".into()),
        }]
    );
}

#[test]
fn a_message_batch_needs_sendmessage_on_its_queue() {
    let batch = json!({"QueueUrl": "http://127.0.0.1/123/p-events-failures", "Entries": []});
    assert_eq!(
        needs("AmazonSQS.SendMessageBatch", &batch, &names()),
        vec![need("sqs:SendMessage", "EventsFailures")]
    );
    let elsewhere = json!({"QueueUrl": "http://127.0.0.1/123/other"});
    assert_eq!(
        needs("AmazonSQS.SendMessage", &elsewhere, &names()),
        vec![need("sqs:SendMessage", "?http://127.0.0.1/123/other")]
    );
}

#[tokio::test]
async fn a_call_the_role_does_not_allow_is_refused_as_aws_refuses_it() {
    let stack = spawn_stack().await;
    // The access-token function may read a grant, never scan the table.
    let client = aws_sdk_dynamodb::Client::new(&stack.aws_as(Role::AccessToken));
    let err = client
        .scan()
        .table_name(&stack.config.common.grants_table)
        .send()
        .await
        .expect_err("refused");
    let code = err.as_service_error().and_then(|e| e.meta().code().map(str::to_owned));
    assert_eq!(code.as_deref(), Some("AccessDeniedException"), "{err:?}");
    // Nor decrypt under a purpose its key grant does not name.
    let kms = aws_sdk_kms::Client::new(&stack.aws_as(Role::AccessToken));
    let err = kms
        .generate_data_key()
        .key_id(&stack.config.common.token_key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .encryption_context("purpose", "offline-access/something-else")
        .send()
        .await
        .expect_err("refused");
    let code = err.as_service_error().and_then(|e| e.meta().code().map(str::to_owned));
    assert_eq!(code.as_deref(), Some("AccessDeniedException"), "{err:?}");
    let refused = stack.iam.checked().iter().filter(|c| !c.allowed).count();
    assert_eq!(refused, 2);
}

/// What `role` asked of AWS so far, as (resource, action), after checking that none of it
/// was refused.
fn asked(stack: &Stack, role: Role) -> BTreeSet<(String, String)> {
    let checked: Vec<_> = stack.iam.checked().into_iter().filter(|c| c.role == role).collect();
    let refused: Vec<_> = checked.iter().filter(|c| !c.allowed).collect();
    assert!(refused.is_empty(), "{role:?} was refused: {refused:?}");
    checked
        .into_iter()
        .flat_map(|c| c.needs)
        .map(|n| (n.resource, n.action))
        .collect()
}

fn declared(permissions: &[Permission]) -> BTreeSet<(String, String)> {
    permissions
        .iter()
        .map(|p| (p.resource.to_owned(), p.action.to_owned()))
        .collect()
}

#[tokio::test]
async fn a_first_sign_in_puts_the_grant_in_its_transaction_and_the_role_allows_it() {
    let stack = spawn_stack().await;
    let first = stack.mint(CodeSpec::default());
    let answer = stack.invoke(&android_form_event(&first.code)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);

    let asked = asked(&stack, Role::SignIn);
    assert!(
        asked.contains(&("GrantsTable".into(), "dynamodb:PutItem".into())),
        "a new user's grant is put whole, inside the transaction: {asked:?}"
    );
}

#[tokio::test]
async fn the_sign_in_functions_routes_ask_only_what_its_role_allows() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let first = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&first.code)).await.status, 200);
    // The same code again (the recorded outcome), a sign-in without a refresh token,
    // a forced consent, a refused code.
    assert_eq!(stack.invoke(&android_form_event(&first.code)).await.status, 200);
    for consent in [Consent::Repeat, Consent::Forced] {
        let code = stack.mint(CodeSpec {
            sub: Some(first.sub.clone()),
            consent,
            ..CodeSpec::default()
        });
        assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
    }
    assert_eq!(stack.invoke(&android_form_event("4/not-a-code")).await.status, 400);
    // Google's security events, by token and by account.
    let seeded = stack.seed_grants(2, "openid", 0).await;
    for (kind, sub) in [("account-disabled", &seeded[0].sub), ("tokens-revoked", &seeded[1].sub)] {
        let (set, _) = stack
            .emulator
            .security_event(&SecurityEventSpec {
                event: kind.into(),
                sub: Some(sub.clone()),
                ..SecurityEventSpec::default()
            })
            .expect("a signed SET");
        let answer = stack
            .invoke_api(&routes, &risc_event(&set, "application/secevent+jwt"))
            .await;
        assert_eq!(answer.status, 202, "{kind}: {}", answer.json);
    }
    // The user deletes their data.
    let answer = stack
        .invoke_api(
            &routes,
            &delete_event(Some(&stack.id_token(&first.sub, Forgery::None)), &[]),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);

    let asked = asked(&stack, Role::SignIn);
    let declared = declared(permissions::SIGN_IN);
    assert!(
        asked.is_subset(&declared),
        "{:?}",
        asked.difference(&declared).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_job_and_the_access_token_function_ask_only_what_their_roles_allow() {
    let stack = spawn_stack().await;
    let seeded = stack
        .seed_grants(3, "openid https://www.googleapis.com/auth/drive.appdata", 1)
        .await;
    let tokens = stack.access_tokens(&[]);
    for (i, user) in seeded.iter().enumerate() {
        let force = i == 0;
        let answer = ask_for_token(&tokens, &json!({"sub": user.sub, "force_refresh": force})).await;
        assert_eq!(answer["status"], json!(200), "{answer}");
    }
    assert_eq!(
        ask_for_token(&tokens, &json!({"sub": "123"})).await["status"],
        json!(404)
    );
    let cycle = offline_access::job::CycleId::parse("2026-12-03T06:00:00Z").expect("cycle");
    let report = stack.job(&[]).run(&cycle, "job", no_deadline()).await.expect("run");
    assert_eq!(report.refreshed, 3, "{report:?}");
    // A grant Google revoked meanwhile: the job records it.
    stack.emulator.revoke_refresh_token(&seeded[1].token, None);
    let next = offline_access::job::CycleId::parse("2026-12-03T12:00:00Z").expect("cycle");
    let report = stack.job(&[]).run(&next, "job", no_deadline()).await.expect("run");
    assert_eq!(report.revoked, 1, "{report:?}");

    for (role, permissions) in [
        (Role::AccessToken, permissions::ACCESS_TOKEN),
        (Role::Job, permissions::JOB),
    ] {
        let asked = asked(&stack, role);
        let declared = declared(permissions);
        assert!(
            asked.is_subset(&declared),
            "{role:?}: {:?}",
            asked.difference(&declared).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn parking_a_sign_in_and_storing_it_later_ask_only_what_the_two_roles_allow() {
    let stack = spawn_stack().await;
    let service = test_support::sign_in_as(&stack, Role::SignIn, &test_support::one_attempt_sign_in("16000", &[]));
    // A known user (their grant is updated) and a new one (put whole).
    let known = stack.mint(CodeSpec::default());
    assert_eq!(stack.invoke(&android_form_event(&known.code)).await.status, 200);
    let first_token = stack.stored_refresh_token(&known.sub).await;
    let again = stack.mint(CodeSpec {
        sub: Some(known.sub.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    let parked = stack.mint(CodeSpec::default());
    // A code without an identity scope: the consumer asks tokeninfo, and once its access
    // token has expired, refreshes with the client secret first.
    let drive_only = stack.mint(CodeSpec {
        scopes: Some(offline_access::domain::DRIVE_APPDATA_SCOPE.into()),
        ..CodeSpec::default()
    });
    stack.iam.hang("TransactWriteItems");
    let (new_user, forced) = (android_form_event(&parked.code), android_form_event(&again.code));
    let unnamed = android_form_event(&drive_only.code);
    let (first, second, third) = tokio::join!(
        test_support::invoke_service(&service, &new_user),
        test_support::invoke_service(&service, &forced),
        test_support::invoke_service(&service, &unnamed),
    );
    assert_eq!(
        (first.status, second.status, third.status),
        (503, 503, 503),
        "{} {} {}",
        first.json,
        second.json,
        third.json
    );
    stack.iam.release("TransactWriteItems");
    let mut messages = stack.take_parked().await;
    assert_eq!(messages.len(), 3);
    stack.emulator.advance_clock(std::time::Duration::from_secs(3_700));
    // And one the consumer refuses for good: its refusal is recorded too.
    let mut moved: serde_json::Value = serde_json::from_str(&messages[0].1).expect("JSON");
    moved["code"] = "0".repeat(64).into();
    messages.push(("moved".into(), moved.to_string()));
    let consumer = test_support::sign_in_as(&stack, Role::ParkedSignIn, &[]);
    assert!(test_support::deliver_parked(&consumer, &messages).await.is_empty());
    assert!(stack.grant(&parked.sub).await.is_some());
    assert!(stack.grant(&drive_only.sub).await.is_some());
    let forced_token = stack.stored_refresh_token(&known.sub).await;
    assert!(
        forced_token.is_some() && forced_token != first_token,
        "the forced consent's token replaced the first"
    );

    let asked_to_park = asked(&stack, Role::SignIn);
    assert!(asked_to_park.contains(&("ParkedSignIns".into(), "sqs:SendMessage".into())));
    assert!(asked_to_park.is_subset(&declared(permissions::SIGN_IN)));
    assert_eq!(asked(&stack, Role::ParkedSignIn), declared(permissions::PARKED_SIGN_IN));
}
