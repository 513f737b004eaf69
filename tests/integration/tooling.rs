//! The project's own tooling, run as `make` runs it.
#![allow(clippy::expect_used, reason = "tests: a panic is a failed test")]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use test_support::ROOT;

/// A moto that starts and never answers (a hung install, a port that never opens) fails
/// `with-moto` after its wait, naming why — it never runs the tests against nothing.
#[test]
fn with_moto_fails_when_moto_never_answers() {
    let dir = std::env::temp_dir().join(format!("with-moto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let silent = dir.join("python");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 30\n").expect("script");
    std::fs::set_permissions(&silent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ran = dir.join("ran");

    let out = Command::new(format!("{ROOT}/infra/local/with-moto"))
        .args(["touch", ran.to_str().expect("path")])
        .env("WITH_MOTO_PYTHON", &silent)
        .env("WITH_MOTO_WAIT_SECS", "2")
        .output()
        .expect("with-moto runs");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it fails: {stderr}");
    assert!(stderr.contains("moto did not answer"), "{stderr}");
    assert!(!ran.exists(), "the command was not run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local moto serves requests one at a time (DynamoDB's atomicity), but an SQS long
/// poll waits outside that: `make dev`'s pollers keep one open all the time, and under the
/// lock each would hold a sign-in's every write for its wait (the pasted example took
/// 9 s, not 0.2 s). Here a DynamoDB call answers while a ten-second poll still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_long_poll_does_not_hold_the_local_aws_for_other_calls() {
    let stack = test_support::spawn_stack().await;
    let sqs = aws_sdk_sqs::Client::new(&stack.aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("long-poll-{}", std::process::id()))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let poll = tokio::spawn({
        let sqs = sqs.clone();
        let queue_url = queue_url.clone();
        async move {
            sqs.receive_message()
                .queue_url(queue_url)
                .wait_time_seconds(10)
                .send()
                .await
        }
    });
    // Let the poll reach moto first. Nothing shows when it has, so this waits; a poll
    // slower than that to arrive would make the test pass without proving anything, never
    // fail it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.aws);
    dynamodb
        .describe_table()
        .table_name(&stack.env["GRANTS_TABLE"])
        .send()
        .await
        .expect("describe");
    assert!(!poll.is_finished(), "the table answered only after the poll's wait");
    let received = poll.await.expect("task").expect("receive");
    assert!(received.messages().is_empty());
}

/// `make dev`'s function URL answers browsers as API Gateway would by `template.yaml`'s
/// CORS rules and the allowed origins: an allowed origin's preflight gets the headers, a
/// refused origin's (or a header the template does not allow) none, and a request's
/// answer names only an allowed origin — never cargo lambda's "any origin".
#[tokio::test]
async fn the_local_function_url_applies_the_templates_cors_to_each_origin() {
    let emulator = google_emulator::Emulator::start_default().await.expect("an upstream");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut front = tokio::process::Command::new(test_support::runtime_api::binary("function-url"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("UPSTREAM", emulator.base_url())
        .env("ALLOWED_ORIGINS", "http://127.0.0.1:8788, https://app.example.com")
        .env("TEMPLATE", format!("{ROOT}/template.yaml"))
        .kill_on_drop(true)
        .spawn()
        .expect("function-url starts");
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/_emulator/health");
    let mut up = false;
    for _ in 0..200 {
        if http.get(&url).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(up, "function-url answers");
    let preflight = |origin: &'static str, headers: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let allow_origin = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let allowed = preflight("https://app.example.com", "content-type,x-requested-with")
        .await
        .expect("OPTIONS");
    assert_eq!(allowed.status().as_u16(), 204);
    assert_eq!(allow_origin(&allowed).as_deref(), Some("https://app.example.com"));
    assert_eq!(
        allowed
            .headers()
            .get("access-control-max-age")
            .and_then(|v| v.to_str().ok()),
        Some("600")
    );
    for (origin, headers) in [
        ("https://evil.example.com", "content-type,x-requested-with"),
        ("https://app.example.com", "content-type,x-custom"),
    ] {
        let refused = preflight(origin, headers).await.expect("OPTIONS");
        assert_eq!(allow_origin(&refused), None, "{origin} {headers}");
    }
    for (origin, expected) in [
        ("http://127.0.0.1:8788", Some("http://127.0.0.1:8788")),
        ("https://evil.example.com", None),
    ] {
        let answer = http.get(&url).header("origin", origin).send().await.expect("GET");
        assert_eq!(allow_origin(&answer).as_deref(), expected, "{origin}");
        assert_eq!(answer.text().await.expect("body"), "ok", "forwarded");
    }
    front.kill().await.ok();
}
