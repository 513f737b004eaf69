//! Access-token benchmark against the local stack (moto + the Google emulator), run by
//! `make bench`. It prints, for the README:
//!
//! - a call served from the cache and a call that refreshes: wall time (p50, p95), the
//!   handler's own CPU time, DynamoDB requests and KMS calls per call, Google calls;
//! - twenty concurrent callers (separate instances) on a stale cache: how long until all
//!   are answered, and how many Google calls that took;
//! - the lookup a Python backend would write instead (`benches/python_access_token.py`:
//!   `GetItem`, KMS `Decrypt`, google-auth refresh on every request), on the same stand-ins
//!   in the same run;
//! - production-like: every AWS request 4 ms away and every Google call 30 ms, ours from
//!   the cache beside the Python lookup that keeps its token on the grant and the one that
//!   refreshes every request.

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use test_support::bench::{percentile, run_python, run_python_with, thread_cpu};
use test_support::{CountRequests, ask_for_token};

const USERS: usize = 300;
const WARM_UP: usize = 20;
const DRIVE: &str = "openid https://www.googleapis.com/auth/drive.appdata";

struct Measured {
    walls: Vec<Duration>,
    cpu: Duration,
    dynamodb: u64,
    kms: u64,
    google: u64,
}

fn print(what: &str, m: &Measured) {
    let n = m.walls.len() as f64;
    println!(
        "  {what}: wall p50 {:.1} ms, p95 {:.1} ms; handler CPU {:.0} µs; per call: DynamoDB {:.2}, KMS {:.3}, Google {:.2}",
        percentile(&m.walls, 0.5).as_secs_f64() * 1e3,
        percentile(&m.walls, 0.95).as_secs_f64() * 1e3,
        m.cpu.as_secs_f64() * 1e6 / n,
        m.dynamodb as f64 / n,
        m.kms as f64 / n,
        m.google as f64 / n,
    );
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
    let stack = emulator_rt.block_on(test_support::spawn_stack());
    let users = rt.block_on(stack.seed_grants(USERS + WARM_UP, DRIVE, 0));
    let (dynamodb, kms) = (CountRequests::default(), CountRequests::default());
    let config = stack.access_config(&[]);
    // The production App, with its AWS clients counting their requests.
    let service = offline_access::app::AppBuilder::new(&config.common, &stack.aws)
        .dynamodb(dynamodb.dynamodb(&stack.aws))
        .keys(offline_access::app::kms_keys(&config.common, kms.kms(&stack.aws)))
        .build()
        .expect("app")
        .access_tokens(&config);
    for user in &users[USERS..] {
        let answer = rt.block_on(ask_for_token(&service, &json!({"sub": user.sub})));
        assert_eq!(answer["status"], 200, "{answer}");
    }

    let measure = |label: &str| {
        let (d, k, g) = (dynamodb.count(), kms.count(), stack.emulator.stats().refreshes);
        let cpu = thread_cpu();
        let mut walls = Vec::with_capacity(USERS);
        for user in &users[..USERS] {
            let t = Instant::now();
            let answer = rt.block_on(ask_for_token(&service, &json!({"sub": user.sub})));
            walls.push(t.elapsed());
            assert_eq!(answer["status"], 200, "{label}: {answer}");
        }
        walls.sort();
        Measured {
            walls,
            cpu: thread_cpu() - cpu,
            dynamodb: dynamodb.count() - d,
            kms: kms.count() - k,
            google: stack.emulator.stats().refreshes - g,
        }
    };
    println!("access-token benchmark: {USERS} users, sequential, against moto + the Google emulator");
    print("first call (refresh at Google, cache the token)", &measure("refresh"));
    print("next call (served from the cache)", &measure("cached"));

    // Twenty instances, one user whose cached token is about to expire.
    // No floor: the stale token was issued moments ago, which the floor would serve as it is.
    let instances: Vec<_> = (0..20)
        .map(|_| stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]))
        .collect();
    let mut rounds = Vec::new();
    let mut google = 0;
    for user in users.iter().take(5) {
        stack.emulator.set_access_token_lifetime(60);
        let force = stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]);
        let stale = rt.block_on(ask_for_token(&force, &json!({"sub": user.sub, "force_refresh": true})));
        assert_eq!(stale["status"], 200, "{stale}");
        stack.emulator.set_access_token_lifetime(3_599);
        let before = stack.emulator.stats().refreshes;
        let request = json!({"sub": user.sub});
        let t = Instant::now();
        let answers = rt.block_on(join_all(instances.iter().map(|s| ask_for_token(s, &request))));
        rounds.push(t.elapsed());
        google += stack.emulator.stats().refreshes - before;
        let tokens: std::collections::BTreeSet<String> =
            answers.iter().map(|a| a["access_token"].to_string()).collect();
        assert_eq!(tokens.len(), 1, "one token for all");
    }
    rounds.sort();
    println!(
        "  20 concurrent callers on a stale cache: all answered in p50 {:.0} ms, max {:.0} ms; Google calls per round {:.1}",
        percentile(&rounds, 0.5).as_secs_f64() * 1e3,
        rounds.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        google as f64 / rounds.len() as f64
    );

    // What a Python backend would write instead, on the same stand-ins.
    let settings = stack.emulator_settings();
    let plan = json!({
        "token_uri": stack.emulator.token_uri(),
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
        "table": stack.config.common.grants_table,
        "key_id": stack.config.common.token_key_id,
        "users": users.iter().map(|u| [u.sub.clone(), u.token.clone()]).collect::<Vec<_>>(),
        "warm_up": WARM_UP,
    });
    let python = rt.block_on(run_python("python_access_token.py", &plan, &[]));
    println!(
        "  Python (GetItem + KMS Decrypt + google-auth refresh, every request): wall p50 {:.1} ms, p95 {:.1} ms; per request: {}",
        python["p50_ms"].as_f64().unwrap_or_default(),
        python["p95_ms"].as_f64().unwrap_or_default(),
        python["calls_per_request"]
    );

    // Production-like: every AWS request ~4 ms away (the IAM proxy adds it; ours is signed
    // as the function's role) and every Google call ~30 ms (the emulator's token
    // endpoint). The same cached tokens, now served across those distances; the Python
    // lookups through the same proxy and emulator.
    const FAR_USERS: usize = 100;
    stack.iam.set_latency(Duration::from_millis(4));
    stack.emulator.inject_fault(
        google_emulator::Endpoint::Token,
        google_emulator::Fault {
            delay_ms: 30,
            ..google_emulator::Fault::default()
        },
    );
    let aws = stack.aws_as(test_support::Role::AccessToken);
    let far_requests = CountRequests::default();
    let far = offline_access::app::AppBuilder::new(&config.common, &aws)
        .dynamodb(far_requests.dynamodb(&aws))
        .build()
        .expect("app")
        .access_tokens(&config);
    for user in &users[USERS..] {
        assert_eq!(
            rt.block_on(ask_for_token(&far, &json!({"sub": user.sub})))["status"],
            200
        );
    }
    let (before, google_before) = (far_requests.count(), stack.emulator.stats().refreshes);
    let mut walls = Vec::with_capacity(FAR_USERS);
    for user in &users[..FAR_USERS] {
        let t = Instant::now();
        let answer = rt.block_on(ask_for_token(&far, &json!({"sub": user.sub})));
        walls.push(t.elapsed());
        assert_eq!(answer["status"], 200, "{answer}");
    }
    walls.sort();
    println!(
        "  production-like (AWS +4 ms, Google +30 ms), {FAR_USERS} users: ours from the cache: wall p50 {:.1} ms, p95 {:.1} ms; per call: DynamoDB {:.2}, Google {:.2}",
        percentile(&walls, 0.5).as_secs_f64() * 1e3,
        percentile(&walls, 0.95).as_secs_f64() * 1e3,
        (far_requests.count() - before) as f64 / FAR_USERS as f64,
        (stack.emulator.stats().refreshes - google_before) as f64 / FAR_USERS as f64,
    );
    let mut far_plan = plan.clone();
    far_plan["users"] = json!(
        users[..FAR_USERS + WARM_UP]
            .iter()
            .map(|u| [u.sub.clone(), u.token.clone()])
            .collect::<Vec<_>>()
    );
    let proxy = [("AWS_ENDPOINT_URL", stack.iam.url.as_str())];
    for (what, args) in [
        (
            "Python keeping the token on the grant (one GetItem a hit)",
            &["--keep-token"][..],
        ),
        ("Python refreshing every request", &[][..]),
    ] {
        let python = rt.block_on(run_python_with("python_access_token.py", &far_plan, args, &proxy));
        println!(
            "  production-like: {what}: wall p50 {:.1} ms, p95 {:.1} ms; per request: {}",
            python["p50_ms"].as_f64().unwrap_or_default(),
            python["p95_ms"].as_f64().unwrap_or_default(),
            python["calls_per_request"]
        );
    }
    stack.iam.set_latency(Duration::ZERO);
    stack.emulator.clear_faults();
    drop(emulator_rt);
}
