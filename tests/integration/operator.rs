//! The operator CLI (DESIGN §14): the built `offline-access` binary against the local
//! stack (moto and the emulator), as an operator runs it with `--env-file` (what `make
//! dev` writes) or `--stack`.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::collections::HashMap;
use std::process::Output;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use google_emulator::{CodeSpec, Consent};
use offline_access::crypto::{Binding, KeyCacheLimits, KmsKeyProvider, TokenCipher};
use offline_access::domain::{AccessToken, GoogleSubject, RefreshToken};
use offline_access::store::{GrantStatus, OperatorStore};
use serde_json::{Value, json};
use test_support::runtime_api::binary;
use test_support::{Stack, android_form_event, ask_for_token, spawn_stack};

const SCOPES: &str = "openid https://www.googleapis.com/auth/drive.appdata";

/// The file an operator points `--env-file` at: the functions' variables and the local
/// AWS endpoint.
fn env_file(stack: &Stack, extra: &[(&str, &str)]) -> tempfile_path::TempFile {
    let mut vars: Vec<(String, String)> = stack.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.push(("AWS_ENDPOINT_URL".into(), test_support::aws_endpoint()));
    vars.push(("AWS_REGION".into(), "us-east-1".into()));
    vars.push(("AWS_ACCESS_KEY_ID".into(), "test".into()));
    vars.push(("AWS_SECRET_ACCESS_KEY".into(), "test".into()));
    vars.push(("GOOGLE_RISC_API".into(), stack.emulator.risc_api()));
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    tempfile_path::TempFile::with(&text)
}

/// A file removed when dropped.
mod tempfile_path {
    pub struct TempFile(pub std::path::PathBuf);
    impl TempFile {
        pub fn with(text: &str) -> Self {
            let mut id = [0u8; 8];
            aws_lc_rs::rand::fill(&mut id).expect("random");
            let path = std::env::temp_dir().join(format!("offline-access-test-{}.env", hex::encode(id)));
            std::fs::write(&path, text).expect("write");
            Self(path)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Runs the CLI with `args`, its output piped (so no progress bar), and an empty
/// process environment but `PATH`, so only the env file names the stack.
async fn cli(file: &tempfile_path::TempFile, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("offline-access"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--env-file")
        .arg(&file.0)
        .args(args)
        .output()
        .await
        .expect("the CLI runs")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "the CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[tokio::test]
async fn the_environment_wins_over_the_env_file_and_the_names_it_overrides_are_printed() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, SCOPES, 0).await;
    // The file names a table that does not exist; the environment names the real one.
    let file = env_file(&stack, &[("GRANTS_TABLE", "no-such-table")]);
    let out = tokio::process::Command::new(binary("offline-access"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRANTS_TABLE", &stack.config.common.grants_table)
        .env("TOKEN_BINDING", &stack.config.common.token_binding)
        .arg("--env-file")
        .arg(&file.0)
        .args(["grants", "show", &seeded[0].sub, "--json"])
        .output()
        .await
        .expect("the CLI runs");
    let shown = json_of(&out);
    assert_eq!(shown["sub"], json!(seeded[0].sub));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the environment sets GRANTS_TABLE"), "{stderr}");
    assert!(
        !stderr.contains("no-such-table") && !stderr.contains(&stack.config.common.grants_table),
        "names, never values: {stderr}"
    );
}

#[tokio::test]
async fn one_malformed_row_is_named_and_skipped_by_list_stats_and_reencrypt() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(3, SCOPES, 0).await;
    let file = env_file(&stack, &[]);
    stack
        .set_grant_attributes(&seeded[1].sub, &[("status", Some(AttributeValue::S("weird".into())))])
        .await;

    let listed = cli(&file, &["grants", "list", "--json"]).await;
    let grants = json_of(&listed);
    assert_eq!(grants.as_array().map(Vec::len), Some(2), "{grants}");
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(stderr.contains(&seeded[1].sub), "the row is named: {stderr}");

    let stats = json_of(&cli(&file, &["stats", "--json"]).await);
    assert_eq!(
        (stats["grants"].as_u64(), stats["malformed"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );

    let reencrypted = json_of(&cli(&file, &["reencrypt", "--json"]).await);
    assert_eq!(
        (
            reencrypted["grants_scanned"].as_u64(),
            reencrypted["refresh_tokens_rewrapped"].as_u64(),
            reencrypted["malformed_rows"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{reencrypted}"
    );
}

#[tokio::test]
async fn list_show_and_stats_read_the_seeded_grants_and_never_print_a_token() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(5, SCOPES, 0).await;
    stack
        .set_grant_attributes(
            &seeded[1].sub,
            &[("status", Some(AttributeValue::S("suspended".into())))],
        )
        .await;
    stack
        .set_grant_attributes(
            &seeded[2].sub,
            &[(
                "review_flags",
                Some(AttributeValue::Ss(vec!["risc:sessions-revoked".into()])),
            )],
        )
        .await;
    // Health: one grant's Drive call fails for a domain policy since a known time (as the
    // job records it), one lacks the required scope, one holds a malformed failing level.
    stack
        .set_grant_attributes(
            &seeded[3].sub,
            &[
                ("api_since", Some(AttributeValue::N("1800000000".into()))),
                ("api_err", Some(AttributeValue::S("domain_policy".into()))),
                ("last_sync_at", Some(AttributeValue::N("1799990000".into()))),
                ("last_refresh_at", Some(AttributeValue::N("1800000100".into()))),
            ],
        )
        .await;
    stack
        .set_grant_attributes(&seeded[4].sub, &[("scopes", Some(AttributeValue::S("openid".into())))])
        .await;
    stack
        .set_grant_attributes(
            &seeded[2].sub,
            &[("rf_since", Some(AttributeValue::S("not a number".into())))],
        )
        .await;
    let file = env_file(
        &stack,
        &[("REQUIRED_SCOPES", "https://www.googleapis.com/auth/drive.appdata")],
    );
    let tokens = stack.access_tokens(&[]);
    let answer = ask_for_token(&tokens, &json!({"sub": seeded[0].sub})).await;
    let access_token = answer["access_token"].as_str().expect("token").to_owned();

    let all = json_of(&cli(&file, &["grants", "list", "--json"]).await);
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    let suspended = json_of(&cli(&file, &["grants", "list", "--status", "suspended", "--json"]).await);
    assert_eq!(suspended[0]["sub"], seeded[1].sub.as_str());
    assert_eq!(suspended.as_array().map(Vec::len), Some(1));

    let table = cli(&file, &["grants", "list"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("5 grant(s)") && text.contains("suspended") && text.contains("drive.appdata"),
        "{text}"
    );
    assert!(
        table.stderr.is_empty(),
        "no progress bar when piped: {}",
        String::from_utf8_lossy(&table.stderr)
    );

    let shown = cli(&file, &["grants", "show", &seeded[0].sub, "--json"]).await;
    let details = json_of(&shown);
    assert_eq!(details["status"], "active");
    assert_eq!(details["refresh_token"], "held (sealed)");
    assert!(details["access_token_cached_until"].is_string(), "{details}");
    let printed = String::from_utf8_lossy(&shown.stdout).to_string()
        + &String::from_utf8_lossy(&cli(&file, &["grants", "show", &seeded[0].sub]).await.stdout);
    let sealed = stack
        .grant(&seeded[0].sub)
        .await
        .expect("grant")
        .refresh_token
        .expect("sealed")
        .to_bytes();
    for (what, secret) in [
        ("refresh token", seeded[0].token.clone()),
        ("access token", access_token),
        (
            "ciphertext (base64)",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sealed),
        ),
        ("ciphertext (hex)", hex::encode(&sealed)),
    ] {
        assert!(!printed.contains(&secret), "grants show printed the {what}");
    }

    let stats = json_of(&cli(&file, &["stats", "--json"]).await);
    assert_eq!(stats["grants"], 5);
    assert_eq!(stats["by_status"]["active"], 4);
    assert_eq!(stats["by_status"]["suspended"], 1);
    assert_eq!(stats["flagged"], 1);
    assert_eq!(stats["without_token_digests"], 0);
    assert_eq!(
        stats["health"],
        json!({
            // Seeded grants the job has not refreshed yet are unknown.
            "refresh": {"ok": 1, "failing": 0, "unknown": 3},
            "api": {"ok": 0, "failing": 1, "unknown": 3},
            "scopes": {"ok": 3, "missing": 1},
        }),
        "active grants by level; a malformed level reads as not failing"
    );
    let barred = json_of(&cli(&file, &["grants", "show", &seeded[3].sub, "--json"]).await);
    assert_eq!(
        barred["health"]["api"],
        json!({"state": "failing", "ok_at": "2027-01-15T05:13:20Z", "failing_since": "2027-01-15T08:00:00Z", "error": "domain_policy"})
    );
    assert_eq!(barred["health"]["refresh"]["state"], "ok");
    let lacking = json_of(&cli(&file, &["grants", "show", &seeded[4].sub, "--json"]).await);
    assert_eq!(
        lacking["health"]["scopes"],
        json!({"state": "missing", "granted": ["openid"], "missing": ["https://www.googleapis.com/auth/drive.appdata"]})
    );
    let words = String::from_utf8_lossy(&cli(&file, &["grants", "show", &seeded[3].sub]).await.stdout).to_string();
    assert!(
        words.contains("FAILING since 2027-01-15T08:00:00Z (domain_policy)"),
        "{words}"
    );

    let missing = cli(&file, &["grants", "show", "123"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no grant is stored for this user"));
}

#[tokio::test]
async fn revoke_and_delete_act_as_the_products_own_paths_do() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, SCOPES, 0).await;
    let file = env_file(&stack, &[]);

    let revoked = json_of(&cli(&file, &["grants", "revoke", &seeded[0].sub, "--json"]).await);
    assert_eq!(
        revoked,
        json!({"sub": seeded[0].sub, "google": "revoked", "grant": "revoked"})
    );
    let grant = stack.grant(&seeded[0].sub).await.expect("grant");
    assert_eq!(
        (
            grant.status,
            grant.status_reason.as_deref(),
            grant.refresh_token.is_none()
        ),
        (GrantStatus::Revoked, Some("operator_revoked"), true)
    );
    assert!(
        !stack.emulator.refresh_token_is_live(&seeded[0].token),
        "revoked at Google"
    );
    let tokens = stack.access_tokens(&[]);
    let answer = ask_for_token(&tokens, &json!({"sub": seeded[0].sub})).await;
    assert_eq!(
        (answer["status"].clone(), answer["reason"].clone()),
        (json!(409), json!("operator_revoked"))
    );

    let deleted = json_of(&cli(&file, &["grants", "delete", &seeded[1].sub, "--json"]).await);
    assert_eq!(deleted, json!({"sub": seeded[1].sub, "google": "revoked"}));
    let grant = stack.grant(&seeded[1].sub).await.expect("tombstone");
    assert_eq!(
        (grant.status, grant.profile.email.is_none()),
        (GrantStatus::Deleted, true)
    );
    assert!(!stack.emulator.refresh_token_is_live(&seeded[1].token));
    // Again: nothing left to do, and the answer says so.
    let again = json_of(&cli(&file, &["grants", "delete", &seeded[1].sub, "--json"]).await);
    assert_eq!(again["google"], "already_revoked");

    // A sub never stored is not found, for every subcommand that names one; nothing is
    // written for it (no tombstone of a user we never had).
    for command in ["show", "revoke", "delete"] {
        let unknown = cli(&file, &["grants", command, "123"]).await;
        assert_eq!(
            unknown.status.code(),
            Some(3),
            "{command}: {}",
            String::from_utf8_lossy(&unknown.stderr)
        );
    }
    assert!(stack.grant("123").await.is_none(), "nothing stored for it");
}

/// The KMS key a sealed token's data key is wrapped under, as KMS says.
async fn wrapping_key(stack: &Stack, wrapped: &[u8], purpose: &str) -> String {
    let binding = &stack.config.common.token_binding;
    aws_sdk_kms::Client::new(&stack.aws)
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
        .encryption_context("purpose", purpose)
        .encryption_context("binding", binding)
        .send()
        .await
        .expect("decrypt")
        .key_id()
        .expect("key id")
        .to_owned()
}

#[tokio::test]
async fn reencrypt_under_a_second_key_leaves_every_token_opening_to_the_same_plaintext_and_none_under_the_old_key() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(12, SCOPES, 0).await;
    let tokens = stack.access_tokens(&[]);
    let mut access = HashMap::new();
    for user in &seeded[..4] {
        let answer = ask_for_token(&tokens, &json!({"sub": user.sub})).await;
        access.insert(
            user.sub.clone(),
            answer["access_token"].as_str().expect("token").to_owned(),
        );
    }
    let kms = aws_sdk_kms::Client::new(&stack.aws);
    let new_key = kms
        .create_key()
        .description("offline-access test: the key after a change")
        .send()
        .await
        .expect("key")
        .key_metadata()
        .expect("metadata")
        .arn()
        .expect("arn")
        .to_owned();
    let file = env_file(&stack, &[]);
    let done = json_of(&cli(&file, &["reencrypt", "--to-key", &new_key, "--json"]).await);
    assert_eq!(
        (
            done["grants_scanned"].clone(),
            done["refresh_tokens_rewrapped"].clone(),
            done["access_tokens_rewrapped"].clone()
        ),
        (json!(12), json!(12), json!(4)),
        "{done}"
    );
    let store = offline_access::app::store(&stack.config.common, aws_sdk_dynamodb::Client::new(&stack.aws));
    assert_eq!(
        store.reencrypt_checkpoint().await.expect("read"),
        None,
        "a finished run leaves no checkpoint"
    );

    // Every token opens under the new key alone, to what it was.
    let new_only = KmsKeyProvider::new(kms.clone(), new_key.clone(), &stack.config.common.token_binding);
    let refresh_cipher: TokenCipher<_, RefreshToken> = TokenCipher::new(new_only.clone(), KeyCacheLimits::default());
    let access_cipher: TokenCipher<_, AccessToken> = TokenCipher::new(new_only, KeyCacheLimits::default());
    for user in &seeded {
        let grant = stack.grant(&user.sub).await.expect("grant");
        let binding = Binding {
            store: &stack.config.common.token_binding,
            sub: &user.sub,
            client_id: &grant.client_id,
        };
        let sealed = grant.refresh_token.expect("sealed");
        assert_eq!(
            wrapping_key(&stack, sealed.wrapped_key(), "offline-access/refresh-token").await,
            new_key
        );
        let opened = refresh_cipher.open(&sealed, binding).await.expect("opens");
        assert_eq!(opened.expose_secret(), user.token);
        let sub = GoogleSubject::parse(&user.sub).expect("sub");
        if let Some(cached) = store.cached_access_token(&sub).await.expect("cache") {
            assert_eq!(
                wrapping_key(&stack, cached.token.wrapped_key(), "offline-access/access-token").await,
                new_key
            );
            let opened = access_cipher
                .open_described(&cached.token, binding, &cached.details())
                .await
                .expect("opens");
            assert_eq!(Some(opened.expose_secret()), access.get(&user.sub).map(String::as_str));
        }
    }
    // The functions, told of the change (TOKEN_KEY_ID the new key, the old one previous),
    // and their roles granted the new key, keep serving.
    stack.iam.grant_key_as_token_key(&new_key);
    let mut env = stack.env.clone();
    let old_key = env.insert("TOKEN_KEY_ID".into(), new_key).expect("old key");
    env.insert("PREVIOUS_TOKEN_KEY_IDS".into(), old_key);
    let config = offline_access::config::AccessTokenConfig::from_env(&env).expect("config");
    let after = offline_access::app::App::production(&config.common, &stack.aws_as(test_support::Role::AccessToken))
        .expect("app")
        .access_tokens(&config);
    for user in &seeded[..4] {
        let answer = ask_for_token(&after, &json!({"sub": user.sub})).await;
        assert_eq!(
            answer["access_token"].as_str(),
            access.get(&user.sub).map(String::as_str)
        );
    }
}

#[tokio::test]
async fn a_sign_in_during_reencrypt_is_never_overwritten() {
    let stack = Arc::new(spawn_stack().await);
    let mut users = Vec::new();
    for _ in 0..30 {
        let code = stack.mint(CodeSpec::default());
        assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
        users.push(code.sub);
    }
    // The conditional write itself: a token a sign-in replaced is not re-wrapped over it.
    let store = offline_access::app::store(&stack.config.common, aws_sdk_dynamodb::Client::new(&stack.aws));
    let first = GoogleSubject::parse(&users[0]).expect("sub");
    let before = stack
        .grant(&users[0])
        .await
        .expect("grant")
        .refresh_token
        .expect("sealed");
    let again = stack.mint(CodeSpec {
        sub: Some(users[0].clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });
    assert_eq!(stack.invoke(&android_form_event(&again.code)).await.status, 200);
    assert!(
        !store
            .rewrap_refresh_token(&first, &before, &before)
            .await
            .expect("write")
    );

    // And a whole run racing sign-ins that replace tokens: none is lost.
    let mut before = HashMap::new();
    for sub in &users {
        before.insert(sub.clone(), stack.stored_refresh_token(sub).await.expect("token"));
    }
    let file = env_file(&stack, &[]);
    let signing_in = {
        let stack = Arc::clone(&stack);
        let users = users.clone();
        tokio::spawn(async move {
            for sub in users.iter().skip(1).step_by(2) {
                let code = stack.mint(CodeSpec {
                    sub: Some(sub.clone()),
                    consent: Consent::Forced,
                    ..CodeSpec::default()
                });
                assert_eq!(stack.invoke(&android_form_event(&code.code)).await.status, 200);
            }
        })
    };
    let done = json_of(&cli(&file, &["reencrypt", "--json"]).await);
    signing_in.await.expect("sign-ins");
    assert_eq!(done["grants_scanned"], 30);
    for (i, sub) in users.iter().enumerate() {
        let stored = stack.stored_refresh_token(sub).await.expect("token");
        assert!(
            stack.emulator.refresh_token_is_live(&stored),
            "user {i}'s stored token is one Google holds"
        );
        // Users who signed in again hold their new token; the others, the one re-wrapped.
        assert_eq!(stored != before[sub], i % 2 == 1, "user {i}");
    }
}

/// Serves the HTTP API (sign-in, deletion, RISC) on a loopback port, as API Gateway
/// would in front of the function: the receiver Google's stream pushes to.
async fn serve_api(stack: Arc<Stack>) -> String {
    let routes = Arc::new(stack.routes());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let routes = Arc::clone(&routes);
        async move {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
            let request = http::Request::from_parts(parts, bytes);
            let response = offline_access::lambda::http::serve(&routes, &request).await;
            response.map(axum::body::Body::from)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn risc_register_verify_and_status_drive_googles_stream_end_to_end() {
    let stack = Arc::new(spawn_stack().await);
    let receiver = serve_api(Arc::clone(&stack)).await;
    let file = env_file(&stack, &[]);
    let account = tempfile_path::TempFile::with(&stack.emulator.service_account_json().expect("key file"));
    let account_path = account.0.to_string_lossy().to_string();
    let risc = |args: &[&str]| {
        let mut all = vec!["risc", "--service-account", account_path.as_str()];
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>()
    };
    let run = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&file, &args).await
    };

    let url = format!("{receiver}/risc");
    let registered = json_of(&run(risc(&["register", "--url", &url, "--json"])).await);
    assert_eq!(registered["delivery"]["url"], url.as_str());
    let (configured, events, enabled, _) = stack.emulator.risc_stream();
    assert_eq!((configured.as_deref(), enabled), (Some(url.as_str()), true));
    assert_eq!(events.len(), 7, "every event type the receiver acts on");

    // The verification goes through Google's stream to the receiver, which keeps its state.
    let verified = run(risc(&["verify", "--state", "checked by the test"])).await;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(
        stack.emulator.risc_stream().3,
        Some(202),
        "the receiver took the verification event"
    );
    assert_eq!(
        stack.risc_verification_state().await.as_deref(),
        Some("checked by the test")
    );

    assert_eq!(
        json_of(&run(risc(&["status", "--json"])).await),
        json!({"status": "enabled"})
    );
    assert_eq!(
        json_of(&run(risc(&["status", "disable", "--json"])).await),
        json!({"status": "disabled"})
    );
    assert!(!stack.emulator.risc_stream().2);
    assert_eq!(
        json_of(&run(risc(&["status", "enable", "--json"])).await),
        json!({"status": "enabled"})
    );

    // A key Google does not know is refused, and the CLI says so.
    let stranger = stack.emulator.service_account_json().expect("key file");
    let mut forged: Value = serde_json::from_str(&stranger).expect("JSON");
    forged["private_key_id"] = json!("not-a-key-google-has");
    let forged = tempfile_path::TempFile::with(&forged.to_string());
    let refused = cli(
        &file,
        &["risc", "--service-account", &forged.0.to_string_lossy(), "status"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Google answered 401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test]
async fn the_stack_is_found_from_its_cloudformation_outputs_and_job_run_runs_a_cycle() {
    let stack = spawn_stack().await;
    stack.seed_grants(3, SCOPES, 0).await;
    // A stack whose outputs are this stack's names, as a deployed one's are.
    let name = format!("ops-{}", &stack.config.common.grants_table.replace(['_', '.'], "-"));
    let outputs: serde_json::Map<String, Value> = offline_access::config::STACK_OUTPUTS
        .iter()
        .map(|(output, variable)| ((*output).to_owned(), json!({"Value": stack.env[*variable]})))
        .collect();
    let template = json!({
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(&stack.aws)
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create stack");
    // Only what reaches AWS comes from the file; the stack's names come from its outputs.
    let bare = tempfile_path::TempFile::with(&format!(
        "AWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test\n",
        test_support::aws_endpoint()
    ));
    let binding = format!("{name}/grants");
    assert_ne!(
        binding, stack.config.common.token_binding,
        "the outputs' binding is the stack's own"
    );
    let listed = json_of(&cli(&bare, &["--stack", &name, "grants", "list", "--json"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));

    let file = env_file(&stack, &[("GOOGLE_QUOTA_UNITS_PER_MIN", "0")]);
    let report = json_of(&cli(&file, &["job", "run", "--cycle", "2026-11-26T18:00:00Z", "--json"]).await);
    assert_eq!(
        (report["refreshed"].clone(), report["errors"].clone()),
        (json!(3), json!(0)),
        "{report}"
    );
}

#[tokio::test]
async fn a_stopped_reencrypt_resumes_after_the_last_grant_it_did() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(10, SCOPES, 0).await;
    let mut subs: Vec<String> = seeded.iter().map(|s| s.sub.clone()).collect();
    let store = offline_access::app::store(&stack.config.common, aws_sdk_dynamodb::Client::new(&stack.aws));
    // A run that stopped after the first page: the grants in scan order up to `done`.
    let order = store.grants_page(None, None, 100).await.expect("scan").grants;
    subs.sort_by_key(|s| order.iter().position(|g| g.sub.as_str() == s));
    let done = &subs[3];
    let before: HashMap<String, Vec<u8>> = {
        let mut m = HashMap::new();
        for s in &subs {
            let sealed = stack.grant(s).await.expect("grant").refresh_token.expect("sealed");
            m.insert(s.clone(), sealed.to_bytes());
        }
        m
    };
    store
        .save_reencrypt_checkpoint(&offline_access::store::ReencryptCheckpoint {
            target_key: stack.config.common.token_key_id.clone(),
            after: Some(done.clone()),
            scanned: 4,
            refresh_tokens: 4,
            ..Default::default()
        })
        .await
        .expect("checkpoint");
    let file = env_file(&stack, &[]);
    let resumed = json_of(&cli(&file, &["reencrypt", "--json"]).await);
    assert_eq!(
        (
            resumed["grants_scanned"].clone(),
            resumed["refresh_tokens_rewrapped"].clone()
        ),
        (json!(10), json!(10)),
        "four counted before, six now: {resumed}"
    );
    for (i, s) in subs.iter().enumerate() {
        let now = stack
            .grant(s)
            .await
            .expect("grant")
            .refresh_token
            .expect("sealed")
            .to_bytes();
        assert_eq!(
            now != before[s],
            i > 3,
            "grant {i} re-wrapped only if after the checkpoint"
        );
    }
    assert_eq!(store.reencrypt_checkpoint().await.expect("read"), None);
}

/// README: `grants revoke` with Google unreachable changes nothing, and the command fails.
#[tokio::test]
async fn revoke_with_google_unreachable_changes_nothing_and_fails() {
    let stack = spawn_stack().await;
    let user = stack.seed_grants(1, SCOPES, 0).await.remove(0);
    let file = env_file(&stack, &[]);
    let before = stack.grant(&user.sub).await.expect("grant");
    stack.emulator.inject_fault(
        google_emulator::Endpoint::Revoke,
        google_emulator::Fault {
            status: Some(503),
            ..google_emulator::Fault::default()
        },
    );

    let out = cli(&file, &["grants", "revoke", &user.sub]).await;

    assert!(!out.status.success(), "the command fails");
    assert_ne!(out.status.code(), Some(3), "not 'not found'");
    let after = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(
        (after.status, after.version, after.token_gen),
        (GrantStatus::Active, before.version, before.token_gen),
        "the grant is as it was"
    );
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(user.token.clone()));
    assert!(
        stack.emulator.refresh_token_is_live(&user.token),
        "not revoked at Google"
    );
    stack.emulator.clear_faults();
    let answer = ask_for_token(&stack.access_tokens(&[]), &json!({"sub": user.sub})).await;
    assert_eq!(answer["status"], json!(200), "still served: {answer}");
}

/// `doctor`'s checklist as JSON: each check's name and outcome, and the exit status.
async fn doctor(file: &tempfile_path::TempFile, extra: &[&str]) -> (bool, Vec<(String, String)>, Value) {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let out = cli(file, &args).await;
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON checklist");
    let checks = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect();
    assert_eq!(report["healthy"].as_bool(), Some(out.status.success()), "{report}");
    (out.status.success(), checks, report)
}

fn outcome<'a>(checks: &'a [(String, String)], name: &str) -> &'a str {
    checks
        .iter()
        .find(|(n, _)| n == name)
        .map_or("absent", |(_, o)| o.as_str())
}

#[tokio::test]
async fn doctor_passes_a_working_stack_and_names_what_is_broken_and_how_to_fix_it() {
    let stack = spawn_stack().await;
    let file = env_file(&stack, &[]);
    let (ok, checks, report) = doctor(&file, &[]).await;
    assert!(ok, "{report}");
    for name in [
        "client_secret",
        "kms_key",
        "grants_table",
        "state_table",
        "event_bus",
        "google_keys",
        "google_client",
    ] {
        assert_eq!(outcome(&checks, name), "pass", "{name}: {report}");
    }
    assert_eq!(
        outcome(&checks, "risc_stream"),
        "skipped",
        "not passed without a service account"
    );
    let printed = report.to_string();
    assert!(
        !printed.contains(&stack.emulator_settings().client_secret),
        "never the secret"
    );
    let calls = stack.emulator.stats();
    assert_eq!(
        (calls.refreshes, calls.certs),
        (1, 1),
        "one refresh (spends nothing) and one JWKS fetch"
    );

    // With a service account: the RISC stream is checked too, and fails until registered.
    let account = tempfile_path::TempFile::with(&stack.emulator.service_account_json().expect("key file"));
    let account = account.0.to_string_lossy().to_string();
    let (ok, checks, _) = doctor(&file, &["--service-account", &account]).await;
    assert!(!ok);
    assert_eq!(outcome(&checks, "risc_stream"), "fail");
    let registered = cli(
        &file,
        &[
            "risc",
            "--service-account",
            &account,
            "register",
            "--url",
            "https://example.com/risc",
        ],
    )
    .await;
    assert!(registered.status.success());
    let (ok, checks, _) = doctor(&file, &["--service-account", &account]).await;
    assert!(ok);
    assert_eq!(outcome(&checks, "risc_stream"), "pass");

    // Google refuses the client: the check fails, says how to fix it, and the exit is not 0.
    stack.emulator.set_client_state(google_emulator::ClientState::Deleted);
    let (ok, checks, report) = doctor(&file, &[]).await;
    assert!(!ok);
    assert_eq!(outcome(&checks, "google_client"), "fail");
    assert!(report.to_string().contains("within 30 days"), "{report}");
    stack.emulator.set_client_state(google_emulator::ClientState::Active);
    stack.emulator.set_client_secret("GOCSPX-rotated-at-google-only");
    let (_, checks, report) = doctor(&file, &[]).await;
    assert_eq!(outcome(&checks, "google_client"), "fail");
    assert!(report.to_string().contains("invalid_client"), "{report}");

    // A table that is not there, a secret that is not Google's JSON, a bus that is not there.
    let broken = env_file(
        &stack,
        &[
            ("GRANTS_TABLE", "no-such-table"),
            ("CLIENT_SECRET_ID", "no/such/secret"),
            ("EVENT_BUS_NAME", "no-such-bus"),
        ],
    );
    let out = cli(&broken, &["doctor"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("client_secret") && stderr.contains("grants_table") && stderr.contains("event_bus"),
        "{stderr}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("FAIL") && table.contains("make secret"), "{table}");
}
