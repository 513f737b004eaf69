//! Sign-in benchmark against the local stack (moto + the Google emulator), run by
//! `make bench`. It prints, for the README:
//!
//! - the handler's own time per sign-in: CPU time of the thread that runs the handler,
//!   so waiting on Google and AWS round trips is excluded (the emulator runs on another
//!   thread, moto in another process);
//! - wall time per sign-in (p50, p95) against the local stack, for context;
//! - AWS round trips per sign-in (DynamoDB and KMS requests, counted by an SDK
//!   interceptor on the clients the service uses);
//! - the same figures for the sign-in a Python developer would write instead
//!   (`benches/python_sign_in.py`: requests + google-auth + boto3, one `PutItem`, no
//!   idempotency), run on the same moto and emulator in the same run;
//! - KMS calls per 100 sign-ins (the data-key cache's effect);
//! - the release binary's size and its init time (process start → first poll of the
//!   Runtime API, including the warm-up fetch of the secret and the JWKS).

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

use std::time::{Duration, Instant};

use google_emulator::CodeSpec;
use offline_access::app::AppBuilder;
use test_support::bench::{percentile, run_python, thread_cpu};

const SIGN_INS: usize = 400;

/// Runs the Python sign-in over `codes` (the first `warm_up` unmeasured) and returns its
/// one-line JSON report.
async fn python_sign_in(
    stack: &test_support::Stack,
    codes: &[String],
    warm_up: usize,
    mode: &str,
) -> serde_json::Value {
    let settings = stack.emulator_settings();
    let plan = serde_json::json!({
        "token_uri": stack.emulator.token_uri(),
        "certs_uri": stack.emulator.certs_uri(),
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
        "table": stack.config.common.grants_table,
        "key_id": stack.config.common.token_key_id,
        "codes": codes,
        "warm_up": warm_up,
    });
    run_python("python_sign_in.py", &plan, &[mode]).await
}

fn main() {
    // The handler runs on this thread; the emulator's server on its own runtime.
    let emulator_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The emulator's server is spawned on the runtime that starts it: start it on its
    // own, so its work (minting and RS256-signing ID tokens) is not counted as ours.
    let stack = emulator_rt.block_on(test_support::spawn_stack());
    let dynamodb_requests = test_support::CountRequests::default();
    let kms_requests = test_support::CountRequests::default();
    let counted_dynamodb = dynamodb_requests.dynamodb(&stack.aws);
    let counted_kms = kms_requests.kms(&stack.aws);
    // The production App, with its AWS clients counting their requests.
    let service = AppBuilder::new(&stack.config.common, &stack.aws)
        .dynamodb(counted_dynamodb)
        .keys(offline_access::app::kms_keys(&stack.config.common, counted_kms))
        .cache_clock(stack.cache_clock.clone())
        .build()
        .expect("app")
        .sign_in(&stack.config);

    let minted: Vec<_> = (0..SIGN_INS + 20).map(|_| stack.mint(CodeSpec::default())).collect();
    let events: Vec<String> = minted
        .iter()
        .map(|m| test_support::android_form_event(&m.code))
        .collect();
    // Warm up connections, the secret and the JWKS. KMS calls are counted from the cold
    // start on: generating the first data key is part of the figure.
    for event in &events[SIGN_INS..] {
        assert_eq!(rt.block_on(test_support::invoke_service(&service, event)).status, 200);
    }

    let mut walls = Vec::with_capacity(SIGN_INS);
    let dynamodb_before = dynamodb_requests.count();
    let kms_before = kms_requests.count();
    let cpu_before = thread_cpu();
    let started = Instant::now();
    for event in &events[..SIGN_INS] {
        let t = Instant::now();
        let answer = rt.block_on(test_support::invoke_service(&service, event));
        walls.push(t.elapsed());
        assert_eq!(answer.status, 200);
    }
    let total = started.elapsed();
    let cpu = thread_cpu() - cpu_before;
    let per = |n: u64| n as f64 / SIGN_INS as f64;
    let dynamodb_trips = per(dynamodb_requests.count() - dynamodb_before);
    let kms_trips = per(kms_requests.count() - kms_before);
    walls.sort();
    let kms = kms_requests.count();
    let all = SIGN_INS + 20;

    println!("sign-in benchmark: {SIGN_INS} sign-ins, sequential, against moto + the Google emulator");
    println!(
        "  handler CPU time per sign-in (excl. round trips): {:.0} µs",
        cpu.as_secs_f64() * 1e6 / SIGN_INS as f64
    );
    println!(
        "  wall time per sign-in: p50 {:.1} ms, p95 {:.1} ms, mean {:.1} ms",
        percentile(&walls, 0.5).as_secs_f64() * 1e3,
        percentile(&walls, 0.95).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / SIGN_INS as f64
    );
    println!("  AWS round trips per warm sign-in: DynamoDB {dynamodb_trips:.2}, KMS {kms_trips:.2}; Google: 1");

    // Returning users: Google sends no refresh token, and the stored one is kept.
    let returning: Vec<String> = minted[..SIGN_INS]
        .iter()
        .map(|m| {
            let again = stack.mint(CodeSpec {
                sub: Some(m.sub.clone()),
                ..CodeSpec::default()
            });
            test_support::android_form_event(&again.code)
        })
        .collect();
    let trips_before = dynamodb_requests.count();
    let mut again_walls = Vec::with_capacity(SIGN_INS);
    for event in &returning {
        let t = Instant::now();
        let answer = rt.block_on(test_support::invoke_service(&service, event));
        again_walls.push(t.elapsed());
        assert_eq!(answer.status, 200);
    }
    again_walls.sort();
    println!(
        "  returning users (no new refresh token): wall p50 {:.1} ms, p95 {:.1} ms; DynamoDB round trips {:.2}",
        percentile(&again_walls, 0.5).as_secs_f64() * 1e3,
        percentile(&again_walls, 0.95).as_secs_f64() * 1e3,
        (dynamodb_requests.count() - trips_before) as f64 / SIGN_INS as f64
    );

    // A code granted without an identity scope (Android's AuthorizationClient asking for
    // Drive alone): the exchange brings no ID token, and tokeninfo names the user.
    let drive_only: Vec<String> = (0..SIGN_INS)
        .map(|_| {
            let minted = stack.mint(CodeSpec {
                scopes: Some(offline_access::domain::DRIVE_APPDATA_SCOPE.into()),
                ..CodeSpec::default()
            });
            test_support::android_form_event(&minted.code)
        })
        .collect();
    let (trips_before, google_before) = (dynamodb_requests.count(), stack.emulator.stats());
    let mut tokeninfo_walls = Vec::with_capacity(SIGN_INS);
    for event in &drive_only {
        let t = Instant::now();
        let answer = rt.block_on(test_support::invoke_service(&service, event));
        tokeninfo_walls.push(t.elapsed());
        assert_eq!(answer.status, 200);
    }
    tokeninfo_walls.sort();
    let google = stack.emulator.stats();
    println!(
        "  no ID token in the exchange (tokeninfo names the user): wall p50 {:.1} ms, p95 {:.1} ms; DynamoDB round trips {:.2}; Google calls {:.2} (exchange + tokeninfo)",
        percentile(&tokeninfo_walls, 0.5).as_secs_f64() * 1e3,
        percentile(&tokeninfo_walls, 0.95).as_secs_f64() * 1e3,
        (dynamodb_requests.count() - trips_before) as f64 / SIGN_INS as f64,
        ((google.code_exchanges + google.tokeninfo) - (google_before.code_exchanges + google_before.tokeninfo)) as f64
            / SIGN_INS as f64
    );

    // The same sign-in as a Python developer would write it, on the same stand-ins.
    const PYTHON_WARM_UP: usize = 20;
    for mode in ["kms", "plaintext"] {
        let codes: Vec<String> = (0..SIGN_INS + PYTHON_WARM_UP)
            .map(|_| stack.mint(CodeSpec::default()).code)
            .collect();
        let report = rt.block_on(python_sign_in(&stack, &codes, PYTHON_WARM_UP, mode));
        println!(
            "  Python sign-in ({mode}): wall p50 {:.1} ms, p95 {:.1} ms, mean {:.1} ms; per sign-in: {}",
            report["p50_ms"].as_f64().unwrap_or_default(),
            report["p95_ms"].as_f64().unwrap_or_default(),
            report["mean_ms"].as_f64().unwrap_or_default(),
            report["calls_per_sign_in"]
        );
    }

    println!(
        "  KMS calls per 100 sign-ins, from a cold cache: {:.2} ({kms} in {all})",
        kms as f64 * 100.0 / all as f64
    );

    let binary = test_support::runtime_api::binary("auth-code");
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!("  binary {}: {:.1} MiB", binary.display(), size as f64 / 1_048_576.0);
    let mut inits: Vec<Duration> = (0..7)
        .map(|_| {
            rt.block_on(async {
                let function = test_support::runtime_api::Function::start(binary.clone(), &stack.env).await;
                function.init_duration().await
            })
        })
        .collect();
    inits.sort();
    println!(
        "  init (process start → ready for the first event, incl. secret + JWKS prefetch): median {:.1} ms, max {:.1} ms",
        percentile(&inits, 0.5).as_secs_f64() * 1e3,
        inits.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    drop(emulator_rt);
}
