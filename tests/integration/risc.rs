//! Google's Cross-Account Protection (DESIGN §12): Security Event Tokens signed by the
//! emulator with its RISC keys, delivered through the real `POST /risc` handler as API
//! Gateway delivers them, against moto.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use aws_sdk_dynamodb::types::AttributeValue;
use google_emulator::{Endpoint, Fault, Forgery, SecurityEventSpec};
use offline_access::clock::{Clock, SystemClock};
use offline_access::store::GrantStatus;
use serde_json::json;
use test_support::{Answer, Routes, Stack, ask_for_token, no_deadline, risc_event, spawn_stack};

const SET_TYPE: &str = "application/secevent+jwt";
const SCOPES: &str = "openid https://www.googleapis.com/auth/drive.appdata";

fn event(kind: &str, sub: &str) -> SecurityEventSpec {
    SecurityEventSpec {
        event: kind.into(),
        sub: Some(sub.into()),
        ..SecurityEventSpec::default()
    }
}

async fn deliver(stack: &Stack, routes: &Routes, spec: &SecurityEventSpec) -> Answer {
    let (set, _) = stack.emulator.security_event(spec).expect("a signed SET");
    stack.invoke_api(routes, &risc_event(&set, SET_TYPE)).await
}

async fn status_of(stack: &Stack, sub: &str) -> (GrantStatus, Option<String>) {
    let grant = stack.grant(sub).await.expect("grant");
    (grant.status, grant.status_reason)
}

async fn flags_of(stack: &Stack, sub: &str) -> Vec<String> {
    let mut flags = stack.grant(sub).await.expect("grant").review_flags;
    flags.sort();
    flags
}

fn cycle(name: &str) -> offline_access::job::CycleId {
    offline_access::job::CycleId::parse(name).expect("cycle")
}

#[tokio::test]
async fn each_event_of_the_table_acts_on_its_grant() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(6, SCOPES, 0).await;
    let tokens = stack.access_tokens(&[]);
    let sub = |i: usize| seeded[i].sub.clone();

    // tokens-revoked: tokens gone (the cached access token too), revoked, not served.
    let answer = ask_for_token(&tokens, &json!({"sub": sub(0)})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");
    let answer = deliver(&stack, &routes, &event("tokens-revoked", &sub(0))).await;
    assert_eq!((answer.status, answer.json.clone()), (202, json!(null)));
    let grant = stack.grant(&sub(0)).await.expect("grant");
    assert_eq!(
        (grant.status, grant.status_reason.as_deref()),
        (GrantStatus::Revoked, Some("risc:tokens-revoked"))
    );
    assert!(grant.refresh_token.is_none() && grant.token_digests.is_none());
    let cached = stack.scan(&stack.config.common.state_table).await;
    let item = cached
        .iter()
        .find(|i| i.get("pk") == Some(&AttributeValue::S(format!("access#{}", sub(0)))))
        .expect("the cache item");
    assert!(
        !item.contains_key("access_token") && item.get("ended_gen") == Some(&AttributeValue::N("1".into())),
        "the cached access token is gone, and its generation marked ended: {item:?}"
    );
    let answer = ask_for_token(&tokens, &json!({"sub": sub(0)})).await;
    assert_eq!(
        (answer["status"].clone(), answer["reason"].clone()),
        (json!(409), json!("risc:tokens-revoked"))
    );

    // account-disabled (hijacking, and no reason): suspended, token kept sealed, not served.
    let mut hijacked = event("account-disabled", &sub(1));
    hijacked.reason = Some("hijacking".into());
    assert_eq!(deliver(&stack, &routes, &hijacked).await.status, 202);
    assert_eq!(
        deliver(&stack, &routes, &event("account-disabled", &sub(2)))
            .await
            .status,
        202
    );
    for i in [1, 2] {
        let grant = stack.grant(&sub(i)).await.expect("grant");
        assert_eq!(
            (
                grant.status,
                grant.status_reason.as_deref(),
                grant.refresh_token.is_some()
            ),
            (GrantStatus::Suspended, Some("risc:account-disabled"), true)
        );
        let answer = ask_for_token(&tokens, &json!({"sub": sub(i)})).await;
        assert_eq!(
            (
                answer["status"].clone(),
                answer["error"].clone(),
                answer["reason"].clone()
            ),
            (
                json!(409),
                json!("reauthorization_required"),
                json!("risc:account-disabled")
            ),
            "{answer}"
        );
    }

    // account-disabled for bulk accounts, sessions-revoked, credential change: flagged only.
    let mut bulk = event("account-disabled", &sub(3));
    bulk.reason = Some("bulk-account".into());
    assert_eq!(deliver(&stack, &routes, &bulk).await.status, 202);
    assert_eq!(
        deliver(&stack, &routes, &event("sessions-revoked", &sub(4)))
            .await
            .status,
        202
    );
    let change = event("account-credential-change-required", &sub(4));
    assert_eq!(deliver(&stack, &routes, &change).await.status, 202);
    assert_eq!(status_of(&stack, &sub(3)).await.0, GrantStatus::Active);
    assert_eq!(flags_of(&stack, &sub(3)).await, ["risc:account-disabled:bulk-account"]);
    assert_eq!(status_of(&stack, &sub(4)).await.0, GrantStatus::Active);
    assert_eq!(
        flags_of(&stack, &sub(4)).await,
        ["risc:account-credential-change-required", "risc:sessions-revoked"]
    );

    // The job refreshes neither suspended grant, and still does the others.
    let refreshes = stack.emulator.stats().refreshes;
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T12:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.scanned, report.refreshed), (3, 3), "{report:?}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes + 3);

    // account-enabled lifts the suspension; the grant is served again.
    assert_eq!(
        deliver(&stack, &routes, &event("account-enabled", &sub(1)))
            .await
            .status,
        202
    );
    assert_eq!(status_of(&stack, &sub(1)).await, (GrantStatus::Active, None));
    let answer = ask_for_token(&tokens, &json!({"sub": sub(1)})).await;
    assert_eq!(answer["status"], json!(200), "{answer}");
    // Its access tokens are cached again: the next call is answered without Google (the
    // suspension's marker named the generation that resumed, and went with the suspension).
    let refreshes = stack.emulator.stats().refreshes;
    let again = ask_for_token(&tokens, &json!({"sub": sub(1)})).await;
    assert_eq!(again["access_token"], answer["access_token"], "{again}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes);
    // …and an account-disabled Google said before it, delivered late, does not undo it.
    let mut late = event("account-disabled", &sub(1));
    late.iat = Some(SystemClock.now_unix() - 3_600);
    assert_eq!(deliver(&stack, &routes, &late).await.status, 202);
    assert_eq!(status_of(&stack, &sub(1)).await.0, GrantStatus::Active);

    // verification: its state is kept for the operator.
    let verification = SecurityEventSpec {
        event: "verification".into(),
        state: Some("set up on 2026-11-26".into()),
        ..SecurityEventSpec::default()
    };
    assert_eq!(deliver(&stack, &routes, &verification).await.status, 202);
    assert_eq!(
        stack.risc_verification_state().await.as_deref(),
        Some("set up on 2026-11-26")
    );

    // A user we do not know, and an event type we do not know: accepted, nothing done.
    let before = stack.grants().await;
    assert_eq!(
        deliver(&stack, &routes, &event("tokens-revoked", "123456789"))
            .await
            .status,
        202
    );
    assert_eq!(
        deliver(&stack, &routes, &event("some-future-event", &sub(5)))
            .await
            .status,
        202
    );
    assert_eq!(stack.grants().await, before);
}

#[tokio::test]
async fn a_grant_stored_before_digests_were_kept_still_matches_tokens_revoked() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    let sub = &seeded[0].sub;
    stack
        .set_grant_attributes(sub, &[("t_prefix", None), ("t_hash", None)])
        .await;
    assert_eq!(
        deliver(&stack, &routes, &event("tokens-revoked", sub)).await.status,
        202
    );
    assert_eq!(
        status_of(&stack, sub).await,
        (GrantStatus::Revoked, Some("risc:tokens-revoked".into()))
    );
}

#[tokio::test]
async fn token_revoked_finds_exactly_the_grant_whose_token_it_names_by_either_identifier() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(20, SCOPES, 0).await;
    for (target, alg) in [(7, "prefix"), (12, "hash_base64_sha512_sha512")] {
        let spec = SecurityEventSpec {
            event: "token-revoked".into(),
            sub: Some(seeded[target].sub.clone()),
            token_identifier_alg: Some(alg.into()),
            ..SecurityEventSpec::default()
        };
        assert_eq!(deliver(&stack, &routes, &spec).await.status, 202, "{alg}");
    }
    for (i, grant) in seeded.iter().enumerate() {
        let expected = match i {
            7 | 12 => (GrantStatus::Revoked, Some("risc:token-revoked".to_owned())),
            _ => (GrantStatus::Active, None),
        };
        assert_eq!(status_of(&stack, &grant.sub).await, expected, "grant {i}");
    }
    // Nothing of the token is stored in the clear: the digests are one-way.
    let prefix: String = seeded[3].token.chars().take(16).collect();
    for (attr, len) in [("t_prefix", 16), ("t_hash", 64)] {
        let item = stack.grant_attribute(&seeded[3].sub, attr).await;
        let stored = item
            .and_then(|v| v.as_b().ok().map(|b| b.as_ref().to_vec()))
            .expect("digest stored");
        assert_eq!(stored.len(), len, "{attr}");
        assert!(
            !stored.windows(16).any(|w| w == prefix.as_bytes()),
            "{attr} holds the prefix"
        );
    }

    // A token the user replaced since (a new sign-in) is not taken for the new one.
    let spec = SecurityEventSpec {
        event: "token-revoked".into(),
        refresh_token: Some("1//0emu-not-a-token-we-hold".into()),
        ..SecurityEventSpec::default()
    };
    assert_eq!(deliver(&stack, &routes, &spec).await.status, 202);
    assert_eq!(
        stack
            .grants()
            .await
            .iter()
            .filter(|g| g.get("status") == Some(&AttributeValue::S("revoked".into())))
            .count(),
        2
    );
}

#[tokio::test]
async fn an_account_enabled_delivered_before_the_older_disabled_is_not_undone_by_it() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    let sub = &seeded[0].sub;
    let now = SystemClock.now_unix();
    // Google said `disabled`, then `enabled`; they arrive the other way round, on a grant
    // that is still active.
    let mut enabled = event("account-enabled", sub);
    enabled.iat = Some(now - 60);
    let mut disabled = event("account-disabled", sub);
    disabled.iat = Some(now - 120);
    assert_eq!(deliver(&stack, &routes, &enabled).await.status, 202);
    let version = stack.grant(sub).await.expect("grant").version;
    assert_eq!(deliver(&stack, &routes, &disabled).await.status, 202);
    let grant = stack.grant(sub).await.expect("grant");
    assert_eq!(
        (grant.status, grant.version),
        (GrantStatus::Active, version),
        "the older word changes nothing"
    );
    // A word said after it still counts.
    let mut later = event("account-disabled", sub);
    later.iat = Some(now);
    assert_eq!(deliver(&stack, &routes, &later).await.status, 202);
    assert_eq!(status_of(&stack, sub).await.0, GrantStatus::Suspended);
}

#[tokio::test]
async fn a_delivered_again_jti_does_nothing() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    let sub = &seeded[0].sub;
    let (disabled, _) = stack
        .emulator
        .security_event(&event("account-disabled", sub))
        .expect("SET");
    let first = stack.invoke_api(&routes, &risc_event(&disabled, SET_TYPE)).await;
    assert_eq!(first.status, 202);
    assert_eq!(status_of(&stack, sub).await.0, GrantStatus::Suspended);
    let mut enabled = event("account-enabled", sub);
    enabled.iat = Some(SystemClock.now_unix() + 1);
    assert_eq!(deliver(&stack, &routes, &enabled).await.status, 202);
    let version = stack.grant(sub).await.expect("grant").version;

    let again = stack.invoke_api(&routes, &risc_event(&disabled, SET_TYPE)).await;
    assert_eq!((again.status, again.json), (202, json!(null)));
    let grant = stack.grant(sub).await.expect("grant");
    assert_eq!((grant.status, grant.version), (GrantStatus::Active, version));
}

#[tokio::test]
async fn forged_or_malformed_sets_are_refused_with_their_rfc_8935_code_and_change_nothing() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    let sub = seeded[0].sub.clone();
    let forged = |forgery: Forgery| SecurityEventSpec {
        forgery,
        ..event("tokens-revoked", &sub)
    };
    let with_claims = |claims: serde_json::Value| SecurityEventSpec {
        claims: Some(claims),
        ..event("tokens-revoked", &sub)
    };
    // Warm the key cache, so the unknown kid below is what triggers the one refetch.
    assert_eq!(
        deliver(&stack, &routes, &event("sessions-revoked", &sub)).await.status,
        202
    );
    let before = stack.grants().await;
    let now = SystemClock.now_unix();
    let cases = [
        (
            "another key under Google's kid",
            forged(Forgery::ForeignKey),
            "authentication_failed",
        ),
        (
            "a flipped signature bit",
            forged(Forgery::FlippedSignatureBit),
            "authentication_failed",
        ),
        ("alg none", forged(Forgery::AlgNone), "invalid_key"),
        (
            "HS256 keyed with the public key",
            forged(Forgery::Hs256WithPublicKey),
            "invalid_key",
        ),
        ("an unknown kid", forged(Forgery::UnknownKid), "invalid_key"),
        (
            "another audience",
            with_claims(json!({"aud": "someone-else.apps.googleusercontent.com"})),
            "invalid_audience",
        ),
        (
            "another issuer",
            with_claims(json!({"iss": "https://accounts.example.com/"})),
            "invalid_issuer",
        ),
        ("no issuer", with_claims(json!({"iss": null})), "invalid_issuer"),
        (
            "issued in the future",
            with_claims(json!({"iat": now + 3_600})),
            "invalid_request",
        ),
        ("no jti", with_claims(json!({"jti": null})), "invalid_request"),
        ("no events", with_claims(json!({"events": {}})), "invalid_request"),
        (
            "our user's sub under another issuer",
            with_claims(json!({"events": {
                "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {
                    "subject": {"subject_type": "iss-sub", "iss": "https://accounts.example.com/", "sub": sub}
                }
            }})),
            "invalid_request",
        ),
    ];
    let (certs, discovery) = (stack.emulator.stats().certs, stack.emulator.stats().risc_config);
    assert_eq!(
        discovery, 1,
        "the discovery document was fetched once, for the first event"
    );
    for (what, spec, err) in cases {
        let answer = deliver(&stack, &routes, &spec).await;
        assert_eq!(
            (answer.status, answer.json["err"].as_str()),
            (400, Some(err)),
            "{what}: {:?}",
            answer.json
        );
        assert!(answer.json["description"].is_string(), "{what}");
    }
    assert_eq!(
        stack.emulator.stats().certs,
        certs + 1,
        "one refetch for the unknown kid, none for the rest"
    );
    assert_eq!(
        stack.emulator.stats().risc_config,
        1,
        "and the discovery document stayed cached"
    );
    let (good, _) = stack
        .emulator
        .security_event(&event("tokens-revoked", &sub))
        .expect("SET");
    for (what, body, content_type) in [
        ("not a JWT", "not-a-jwt", SET_TYPE),
        ("a JWT in the wrong content type", good.as_str(), "application/json"),
        ("an empty body", "", SET_TYPE),
    ] {
        let answer = stack.invoke_api(&routes, &risc_event(body, content_type)).await;
        assert_eq!(
            (answer.status, answer.json["err"].as_str()),
            (400, Some("invalid_request")),
            "{what}"
        );
    }
    assert_eq!(stack.grants().await, before, "nothing changed");

    // The issuer is compared without its trailing slash.
    let answer = deliver(
        &stack,
        &routes,
        &with_claims(json!({"iss": "https://accounts.google.com"})),
    )
    .await;
    assert_eq!(answer.status, 202);
    assert_eq!(status_of(&stack, &sub).await.0, GrantStatus::Revoked);
}

#[tokio::test]
async fn google_discovery_or_keys_unreachable_answers_503_so_google_delivers_again() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    let spec = event("tokens-revoked", &seeded[0].sub);
    for endpoint in [Endpoint::RiscConfig, Endpoint::Certs] {
        let routes = stack.routes();
        stack.emulator.inject_fault(
            endpoint,
            Fault {
                status: Some(503),
                ..Fault::default()
            },
        );
        let answer = deliver(&stack, &routes, &spec).await;
        assert_eq!(answer.status, 503, "{endpoint:?}: {:?}", answer.json);
        assert!(answer.retry_after().is_some(), "{endpoint:?}");
        assert_eq!(status_of(&stack, &seeded[0].sub).await.0, GrantStatus::Active);
        stack.emulator.clear_faults();
    }
    // Once Google answers, the same event (delivered again) is applied.
    let routes = stack.routes();
    assert_eq!(deliver(&stack, &routes, &spec).await.status, 202);
    assert_eq!(status_of(&stack, &seeded[0].sub).await.0, GrantStatus::Revoked);
}

#[tokio::test]
async fn the_job_never_refreshes_revoking_suspended_revoked_or_deleted_grants() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(5, SCOPES, 0).await;
    for (grant, status) in seeded.iter().zip(["revoking", "suspended", "revoked", "deleted"]) {
        stack
            .set_grant_attributes(&grant.sub, &[("status", Some(AttributeValue::S(status.into())))])
            .await;
    }
    let refreshes = stack.emulator.stats().refreshes;
    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T13:00:00Z"), "job", no_deadline())
        .await
        .expect("run");
    assert_eq!(report.refreshed, 1, "only the active grant: {report:?}");
    assert_eq!(stack.emulator.stats().refreshes, refreshes + 1);
    assert_eq!(
        report.deleted, 1,
        "the revoking grant's revocation finished: {report:?}"
    );
}

#[tokio::test]
async fn each_event_costs_a_few_dynamodb_round_trips_and_a_repeat_costs_one() {
    let stack = spawn_stack().await;
    let mut routes = stack.routes();
    let requests = test_support::CountRequests::default();
    routes.risc.store = offline_access::store::DynamoStore::new(
        requests.dynamodb(&stack.aws),
        stack.config.common.grants_table.clone(),
        stack.config.common.state_table.clone(),
    );
    let seeded = stack.seed_grants(3, SCOPES, 0).await;
    let count = |expected: u64, what: &str| {
        let sent = requests.count();
        assert_eq!(sent, expected, "{what}");
        requests.0.store(0, std::sync::atomic::Ordering::SeqCst);
    };
    // The jti's check, the grant's one conditional write, the jti's record.
    let (disabled, _) = stack
        .emulator
        .security_event(&event("account-disabled", &seeded[0].sub))
        .expect("SET");
    assert_eq!(
        stack.invoke_api(&routes, &risc_event(&disabled, SET_TYPE)).await.status,
        202
    );
    // …and the mark that ends its cached access token.
    count(4, "account-disabled");
    assert_eq!(
        deliver(&stack, &routes, &event("sessions-revoked", &seeded[1].sub))
            .await
            .status,
        202
    );
    count(3, "sessions-revoked");
    // …and the mark that ends its cached access token.
    assert_eq!(
        deliver(&stack, &routes, &event("tokens-revoked", &seeded[1].sub))
            .await
            .status,
        202
    );
    count(4, "tokens-revoked");
    // …and one query of the token index.
    let by_hash = SecurityEventSpec {
        token_identifier_alg: Some("hash_base64_sha512_sha512".into()),
        ..event("token-revoked", &seeded[2].sub)
    };
    assert_eq!(deliver(&stack, &routes, &by_hash).await.status, 202);
    count(5, "token-revoked");
    // A repeat: the jti's check alone.
    assert_eq!(
        stack.invoke_api(&routes, &risc_event(&disabled, SET_TYPE)).await.status,
        202
    );
    count(1, "a repeat");
}

/// README: a sign-in with fresh consent lifts a suspension (Google issues no code for a
/// disabled account); its access tokens are served again.
#[tokio::test]
async fn a_fresh_consent_sign_in_lifts_a_suspension() {
    let stack = spawn_stack().await;
    let routes = stack.routes();
    let user = stack.seed_grants(1, "openid", 0).await.remove(0);
    let tokens = stack.access_tokens(&[]);
    let mut hijacked = event("account-disabled", &user.sub);
    hijacked.reason = Some("hijacking".into());
    assert_eq!(deliver(&stack, &routes, &hijacked).await.status, 202);
    assert_eq!(status_of(&stack, &user.sub).await.0, GrantStatus::Suspended);
    let refused = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
    assert_eq!(refused["status"], json!(409), "{refused}");

    let code = stack.mint(google_emulator::CodeSpec {
        sub: Some(user.sub.clone()),
        consent: google_emulator::Consent::Forced,
        ..google_emulator::CodeSpec::default()
    });
    let signed_in = stack.invoke(&test_support::android_form_event(&code.code)).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.json);

    assert_eq!(status_of(&stack, &user.sub).await, (GrantStatus::Active, None));
    assert_eq!(
        stack.stored_refresh_token(&user.sub).await,
        stack.emulator.refresh_token_of(&user.sub),
        "the new consent's token"
    );
    let served = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
    assert_eq!(served["status"], json!(200), "served again: {served}");
}

/// README: Google addresses a security event to whichever of the project's clients the
/// user used; one addressed to a client in `ALLOWED_AZP` is ours, and acts.
#[tokio::test]
async fn a_security_event_addressed_to_an_allowed_azp_client_is_accepted() {
    let android = google_emulator::Settings::default().android_client_id;
    let stack = test_support::spawn_stack_with(&[("ALLOWED_AZP", &android)]).await;
    let routes = stack.routes();
    let user = stack.seed_grants(1, "openid", 0).await.remove(0);

    let mut to_android = event("tokens-revoked", &user.sub);
    to_android.aud = Some(android);
    let answer = deliver(&stack, &routes, &to_android).await;
    assert_eq!(answer.status, 202, "{}", answer.json);
    assert_eq!(
        status_of(&stack, &user.sub).await,
        (GrantStatus::Revoked, Some("risc:tokens-revoked".into()))
    );

    // A client that is not ours is still refused.
    let other = stack.seed_grants(1, "openid", 0).await.remove(0);
    let mut elsewhere = event("tokens-revoked", &other.sub);
    elsewhere.aud = Some("someone-else.apps.googleusercontent.com".into());
    let answer = deliver(&stack, &routes, &elsewhere).await;
    assert_eq!(answer.status, 400, "{}", answer.json);
    assert_eq!(status_of(&stack, &other.sub).await.0, GrantStatus::Active);
}
