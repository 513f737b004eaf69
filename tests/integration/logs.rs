//! The logs of a full run — sign-in, replay, re-sign-in, refusals and faults — contain
//! none of the planted secrets: code, refresh or access token, ID token, client secret,
//! email.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use google_emulator::{CodeSpec, Endpoint, Fault, Forgery};
use test_support::{android_form_event, spawn_stack};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_logs_of_a_full_run_hold_no_token_code_secret_or_email() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,offline_access=trace"))
        .with_writer(captured.clone())
        .finish();
    // A current-thread runtime: every task of this test logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let stack = spawn_stack().await;
    // Other tests of this binary log through no subscriber, on other threads, at the same
    // time: a callsite one of them was registering while this subscriber was installed may
    // have cached "no interest" (tracing-core's registration races its rebuild). Rebuilt
    // now, once they are under way, every callsite asks this subscriber too.
    tracing::callsite::rebuild_interest_cache();
    let ada = stack.mint(CodeSpec {
        email: Some("ada.planted@example.com".into()),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&ada.code)).await.status, 200);
    assert_eq!(stack.invoke(&android_form_event(&ada.code)).await.status, 200);
    let again = stack.mint(CodeSpec {
        sub: Some(ada.sub.clone()),
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&again.code)).await.status, 200);
    // A web code with PKCE: the verifier goes to Google and into no log, right or wrong.
    let verifier = "PlantedVerifier-0123456789abcdefghijklmnopqrstuvwxyz";
    for sent in [verifier, "PlantedWrongVerifier-0123456789abcdefghijklmnopqrstuvwxyz"] {
        let pkce = stack.mint(CodeSpec {
            redirect_uri: Some("postmessage".into()),
            code_challenge: Some(google_emulator::s256_challenge(verifier)),
            ..CodeSpec::default()
        });
        let body = serde_json::json!({"authCode": pkce.code, "platform": "web", "redirectUri": "postmessage", "codeVerifier": sent});
        let event = test_support::apigw_event(
            "apigw-authcode-json.json",
            Some("application/json"),
            body.to_string().as_bytes(),
            &[],
        );
        let expected = if sent == verifier { 200 } else { 400 };
        assert_eq!(stack.invoke(&event).await.status, expected, "{sent}");
    }
    // A code without an identity scope with Credential Manager's ID token (tokeninfo names
    // the user), and one whose app ID token names someone else (a security event).
    for (sub, expected) in [(None, 200), (Some("108888888888888888888"), 401)] {
        let drive_only = stack.mint(CodeSpec {
            scopes: Some(offline_access::domain::DRIVE_APPDATA_SCOPE.into()),
            ..CodeSpec::default()
        });
        let mut claims = stack.id_token_claims(sub.unwrap_or(&drive_only.sub));
        claims["email"] = "cm.planted@example.com".into();
        let id_token = stack.emulator.sign_id_token(&claims, Forgery::None).expect("signed");
        let body = serde_json::json!({"authCode": drive_only.code, "idToken": id_token});
        let event = test_support::apigw_event(
            "apigw-authcode-json.json",
            Some("application/json"),
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(stack.invoke(&event).await.status, expected);
    }
    let forged = stack.mint(CodeSpec {
        forgery: Forgery::FlippedSignatureBit,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&forged.code)).await.status, 401);
    let faulted = stack.mint(CodeSpec::default());
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
    );
    assert_eq!(stack.invoke(&android_form_event(&faulted.code)).await.status, 503);
    assert_eq!(
        stack
            .invoke(&android_form_event("4/0never-issued-planted"))
            .await
            .status,
        400
    );

    // And a refresh run, with a rotation and a revoked grant among them.
    let seeded = stack
        .seed_grants(5, "openid https://www.googleapis.com/auth/drive.appdata", 1)
        .await;
    stack
        .emulator
        .revoke_refresh_token(&seeded[0].token, Some("invalid_rapt"));
    stack.emulator.set_refresh_token_rotation(true);
    let cycle = offline_access::job::CycleId::parse("2026-11-26T10:00:00Z").expect("cycle");
    let report = stack
        .job(&[])
        .run(&cycle, "logged", test_support::no_deadline())
        .await
        .expect("refresh run");
    // Ada, the PKCE user and the Drive-only user (signed in above) and four seeded users;
    // one seeded grant is held until its user signs in again (invalid_rapt).
    assert_eq!((report.refreshed, report.reconsent_required), (7, 1), "{report:?}");

    // And the customer's backend asking for tokens: from the job's cache, refreshed,
    // refused, and a request that carries a token where none belongs.
    let tokens = stack.access_tokens(&[]);
    for payload in [
        serde_json::json!({"sub": ada.sub}),
        serde_json::json!({"sub": seeded[1].sub, "min_ttl_secs": 3000, "force_refresh": true}),
        serde_json::json!({"sub": seeded[0].sub}),
        serde_json::json!({"sub": ada.sub, "refresh_token": "1//planted-in-request"}),
    ] {
        let answer = test_support::ask_for_token(&tokens, &payload).await;
        assert!(answer["status"].is_u64(), "{payload}");
    }

    // And the user deleting their data with their ID token (which revokes the token).
    let refresh = stack.emulator.refresh_token_of(&ada.sub).expect("refresh token");
    let settings = stack.emulator_settings();
    let now = offline_access::clock::Clock::now_unix(&offline_access::clock::SystemClock);
    let id_token = stack
        .emulator
        .sign_id_token(
            &serde_json::json!({
                "iss": "https://accounts.google.com", "aud": settings.client_id, "sub": ada.sub,
                "email": "ada.planted@example.com", "email_verified": true, "iat": now, "exp": now + 3_600,
            }),
            Forgery::None,
        )
        .expect("ID token");
    let routes = stack.routes();
    let deleted = stack
        .invoke_api(&routes, &test_support::delete_event(Some(&id_token), &[]))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.json);

    // Google's security events: one naming a refresh token by its prefix (part of the
    // token itself), one by its hash, a refused one, and a verification with its state.
    let live = |i: usize| stack.emulator.refresh_token_of(&seeded[i].sub).expect("live token");
    let prefix = google_emulator::token_identifier(&live(3), "prefix").expect("prefix");
    let hash = google_emulator::token_identifier(&live(4), "hash_base64_sha512_sha512").expect("hash");
    for spec in [
        google_emulator::SecurityEventSpec {
            event: "token-revoked".into(),
            sub: Some(seeded[3].sub.clone()),
            token_identifier_alg: Some("prefix".into()),
            ..Default::default()
        },
        google_emulator::SecurityEventSpec {
            event: "token-revoked".into(),
            sub: Some(seeded[4].sub.clone()),
            token_identifier_alg: Some("hash_base64_sha512_sha512".into()),
            ..Default::default()
        },
        google_emulator::SecurityEventSpec {
            event: "token-revoked".into(),
            refresh_token: Some("1//0planted-in-a-set".into()),
            forgery: Forgery::FlippedSignatureBit,
            ..Default::default()
        },
        google_emulator::SecurityEventSpec {
            event: "verification".into(),
            state: Some("state-planted-in-a-set".into()),
            ..Default::default()
        },
    ] {
        let (set, _) = stack.emulator.security_event(&spec).expect("SET");
        let answer = stack
            .invoke_api(&routes, &test_support::risc_event(&set, "application/secevent+jwt"))
            .await;
        assert!([202, 400].contains(&answer.status), "{:?}", answer.json);
    }

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("UTF-8 logs");
    assert!(logs.contains("sign-in succeeded"), "the run was logged");
    assert!(logs.contains("security event applied"), "the events were logged");
    assert!(
        logs.contains("identity_mismatch"),
        "a mismatch is logged as a security event"
    );
    let secret = stack.emulator_settings().client_secret;
    for (what, planted) in [
        ("auth code", ada.code.as_str()),
        ("second auth code", again.code.as_str()),
        ("forged code", forged.code.as_str()),
        ("unknown code", "4/0never-issued-planted"),
        ("refresh token", refresh.as_str()),
        ("access token prefix", "ya29."),
        ("ID token header", "eyJ"),
        ("client secret", secret.as_str()),
        ("email", "ada.planted@example.com"),
        ("app ID token's email", "cm.planted@example.com"),
        ("seeded refresh token", seeded[1].token.as_str()),
        ("token sent to the access-token function", "1//planted-in-request"),
        ("refresh token prefix in a SET", prefix.as_str()),
        ("refresh token hash in a SET", hash.as_str()),
        ("token named in a refused SET", "1//0planted-in-a-set"),
        ("verification state", "state-planted-in-a-set"),
        ("PKCE verifier", "PlantedVerifier"),
        ("wrong PKCE verifier", "PlantedWrongVerifier"),
        (
            "rotated refresh token",
            &stack.emulator.refresh_token_of(&seeded[2].sub).expect("rotated"),
        ),
    ] {
        assert!(!logs.contains(planted), "the logs contain the {what}");
    }
}
