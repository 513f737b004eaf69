//! Cross-Account Protection benchmark against the local stack (moto + the Google
//! emulator), run by `make bench`. It prints, for the README:
//!
//! - `account-disabled` and `token-revoked` through the real `POST /risc` handler: wall
//!   time (p50, p95) and DynamoDB requests per event;
//! - matching `token-revoked` the way receivers without an index do it — scan every
//!   grant, open each sealed token, compare its first 16 characters — on the same stand-ins
//!   in the same run, at two table sizes.

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

use std::time::{Duration, Instant};

use google_emulator::SecurityEventSpec;
use offline_access::crypto::Binding;
use offline_access::store::DynamoStore;
use test_support::bench::percentile;
use test_support::{CountRequests, Seeded, Stack, risc_event};

const EVENTS: usize = 40;
const SCOPES: &str = "openid https://www.googleapis.com/auth/drive.appdata";
const SIZES: [usize; 2] = [500, 2_000];

fn print(what: &str, walls: &mut [Duration], requests: f64) {
    walls.sort();
    println!(
        "    {what}: wall p50 {:.1} ms, p95 {:.1} ms; DynamoDB requests per event {requests:.1}",
        percentile(walls, 0.5).as_secs_f64() * 1e3,
        percentile(walls, 0.95).as_secs_f64() * 1e3,
    );
}

/// The matching a receiver without digests must do: every grant, opened, compared.
async fn scan_and_open(stack: &Stack, prefix: &str) -> (Vec<String>, u64) {
    let requests = CountRequests::default();
    let pages = requests
        .dynamodb(&stack.aws)
        .scan()
        .table_name(&stack.config.common.grants_table)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut matched = Vec::new();
    for item in pages {
        let item = item.expect("scan");
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let Some(sealed) = item.get("refresh_token").and_then(|v| v.as_b().ok()) else {
            continue;
        };
        let sealed = offline_access::crypto::SealedToken::from_bytes(sealed.as_ref()).expect("sealed");
        let (sub, client_id) = (text("sub"), text("client_id"));
        let binding = Binding {
            store: &stack.config.common.token_binding,
            sub: &sub,
            client_id: &client_id,
        };
        let token = stack.service.cipher.open(&sealed, binding).await.expect("open");
        if token.expose_secret().starts_with(prefix) {
            matched.push(sub);
        }
    }
    (matched, requests.count())
}

fn main() {
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
    let mut routes = stack.routes();
    let requests = CountRequests::default();
    routes.risc.store = DynamoStore::new(
        requests.dynamodb(&stack.aws),
        stack.config.common.grants_table.clone(),
        stack.config.common.state_table.clone(),
    );
    println!("RISC benchmark: {EVENTS} events of each kind, sequential, against moto + the Google emulator");
    let mut seeded: Vec<Seeded> = Vec::new();
    for size in SIZES {
        seeded.extend(rt.block_on(stack.seed_grants(size - seeded.len(), SCOPES, 0)));
        println!("  {size} grants:");
        // Warm the receiver (discovery document, keys, client secret).
        let warm = SecurityEventSpec {
            event: "verification".into(),
            ..SecurityEventSpec::default()
        };
        let (set, _) = stack.emulator.security_event(&warm).expect("SET");
        assert_eq!(
            rt.block_on(stack.invoke_api(&routes, &risc_event(&set, "application/secevent+jwt")))
                .status,
            202
        );

        let deliver = |spec: SecurityEventSpec| {
            let (set, _) = stack.emulator.security_event(&spec).expect("SET");
            let before = requests.count();
            let t = Instant::now();
            let answer = rt.block_on(stack.invoke_api(&routes, &risc_event(&set, "application/secevent+jwt")));
            assert_eq!(answer.status, 202, "{:?}", answer.json);
            (t.elapsed(), requests.count() - before)
        };
        // Each event on a grant of its own, from the end of the list backwards, so that
        // no size reuses one.
        let targets: Vec<&Seeded> = seeded.iter().rev().take(2 * EVENTS).collect();
        let (mut walls, mut sent) = (Vec::new(), 0);
        for user in &targets[..EVENTS] {
            let (wall, n) = deliver(SecurityEventSpec {
                event: "account-disabled".into(),
                sub: Some(user.sub.clone()),
                ..SecurityEventSpec::default()
            });
            walls.push(wall);
            sent += n;
        }
        print("ours, account-disabled", &mut walls, sent as f64 / EVENTS as f64);
        let (mut walls, mut sent) = (Vec::new(), 0);
        for user in &targets[EVENTS..] {
            let (wall, n) = deliver(SecurityEventSpec {
                event: "token-revoked".into(),
                sub: Some(user.sub.clone()),
                token_identifier_alg: Some("prefix".into()),
                ..SecurityEventSpec::default()
            });
            walls.push(wall);
            sent += n;
        }
        print(
            "ours, token-revoked (index query)",
            &mut walls,
            sent as f64 / EVENTS as f64,
        );

        // Without an index: scan and open every grant (5 rounds; it only reads).
        let (mut walls, mut sent) = (Vec::new(), 0);
        for user in seeded.iter().take(5) {
            let prefix: String = user.token.chars().take(16).collect();
            let t = Instant::now();
            let (matched, n) = rt.block_on(scan_and_open(&stack, &prefix));
            walls.push(t.elapsed());
            sent += n;
            assert_eq!(matched, std::slice::from_ref(&user.sub));
        }
        let rounds = walls.len() as f64;
        print(
            "scan + open every token, match only (no write)",
            &mut walls,
            sent as f64 / rounds,
        );
    }
    drop(emulator_rt);
}
