//! Google-quota benchmark, run by `make bench` (`QUOTA_BENCH_SECS` sets each run's
//! length, 120 by default).
//!
//! Part 1, pacing: the offline job in-process (the in-memory `JobStore`, so that moto is
//! not the bound) against the Google emulator enforcing a per-minute unit quota of the
//! same size as the job's budget, with 20 ms on every Google call and `DRIVE_SYNC=list`
//! (a refresh costs 1 unit, a `files.list` page 100: the mix a call-counting limiter gets
//! wrong). Side by side, for the same length of time:
//!   - the job's unit budget (`GOOGLE_QUOTA_UNITS_PER_MIN` = the quota);
//!   - what a call-counting limit has to be set to stay under the quota whatever the mix
//!     (the quota ÷ the dearest call's 100 units);
//!   - no limit at all.
//!
//! It prints grants per second, units spent per minute (against the quota), the most
//! units the emulator saw in any 60 seconds, and the calls it refused.
//!
//! Part 2, DynamoDB write units: the job against moto, `DRIVE_SYNC=get`, two cycles over
//! the same grants, every write logged, each billed on its item's size (DynamoDB's rules:
//! one unit per 1 KB of the larger of the item before and after).

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

use std::collections::HashMap;
use std::time::Duration;

use google_emulator::{Endpoint, Fault, UnitQuota};
use offline_access::job::CycleId;

const QUOTA: u64 = 120_000;
const LATENCY_MS: u64 = 20;
const GRANTS: usize = 6_000;

fn main() {
    let emulator_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let _emulator_side = emulator_rt.enter();
    let stack = rt.block_on(test_support::spawn_stack());
    let secs: u64 = std::env::var("QUOTA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let parts = std::env::var("QUOTA_BENCH").unwrap_or_else(|_| "pacing,writes".into());
    if parts.contains("pacing") {
        pacing(&rt, &stack, secs);
    }
    if parts.contains("writes") {
        // A stack of its own: tables holding only the users signed in for it.
        let stack = rt.block_on(test_support::spawn_stack());
        write_units(&rt, &stack);
    }
}

fn pacing(rt: &tokio::runtime::Runtime, stack: &test_support::Stack, secs: u64) {
    println!(
        "quota benchmark: DRIVE_SYNC=list (a refresh 1 unit, a files.list page 100), {LATENCY_MS} ms on every Google call, \
         the emulator refusing past {QUOTA} units in any 60 s, {secs} s a run, in-process job with the in-memory store"
    );
    let seeded = rt.block_on(stack.seed_grants(GRANTS, "openid https://www.googleapis.com/auth/drive.appdata", 3));
    let grants: Vec<_> = seeded.iter().map(|s| s.grant.clone()).collect();
    for endpoint in [Endpoint::Token, Endpoint::Drive] {
        stack.emulator.inject_fault(
            endpoint,
            Fault {
                delay_ms: LATENCY_MS,
                ..Fault::default()
            },
        );
    }
    let per_call_limit = (QUOTA / 100).to_string();
    let quota = QUOTA.to_string();
    let runs: [(&str, Vec<(&str, &str)>); 3] = [
        ("unit budget = the quota", vec![("GOOGLE_QUOTA_UNITS_PER_MIN", &quota)]),
        (
            "calls limited to quota / 100 a minute",
            vec![
                ("GOOGLE_QUOTA_UNITS_PER_MIN", &per_call_limit),
                ("GOOGLE_UNITS_REFRESH", "1"),
                ("GOOGLE_UNITS_FILES_LIST", "1"),
            ],
        ),
        ("no limit", vec![("GOOGLE_QUOTA_UNITS_PER_MIN", "0")]),
    ];
    for (i, (name, settings)) in runs.iter().enumerate() {
        stack.emulator.set_quota(Some(UnitQuota::per_minute(QUOTA)));
        let before = stack.emulator.stats();
        let mut extra = vec![
            ("DRIVE_SYNC", "list"),
            ("REFRESH_CONCURRENCY", "64"),
            ("GOOGLE_DAILY_UNIT_BUDGET", "0"),
            ("RETRY_MAX_ATTEMPTS", "1"),
        ];
        extra.extend(settings.iter().copied());
        let config = stack.job_config(&extra);
        let app = offline_access::app::AppBuilder::new(&config.common, &stack.aws)
            .build()
            .expect("app");
        let job = app.offline_job_on(
            &config,
            test_support::MemoryJobStore::with(grants.clone()),
            offline_access::clock::SystemClock,
        );
        let cycle = CycleId::parse(&format!("pacing-{i}")).expect("cycle");
        let stop_at = tokio::time::Instant::now() + Duration::from_secs(secs);
        let report = rt.block_on(job.run(&cycle, "bench", stop_at)).expect("run");
        let after = stack.emulator.stats();
        let minutes = report.duration_ms as f64 / 60_000.0;
        // What the quota counted: the units of the calls the emulator answered, per
        // minute of the run (a run shorter than a minute is counted as one).
        let units_per_min = (after.units - before.units) as f64 / minutes.max(1.0);
        println!(
            "  {name:<38} {:>6.1} grants/s listed, {:>6.0} units/min = {:>5.1}% of the quota; peak {} units in 60 s; {} calls refused, {} grants deferred; {:.0} s",
            report.drive_synced as f64 / (minutes * 60.0),
            units_per_min,
            100.0 * units_per_min / QUOTA as f64,
            after.peak_units_per_min,
            after.quota_refusals - before.quota_refusals,
            report.deferred + report.drive_deferred,
            minutes * 60.0,
        );
    }
    stack.emulator.set_quota(None);
    stack.emulator.clear_faults();
}

/// Billed write units of a write to an item of `size` bytes.
fn units(size: usize) -> usize {
    size.div_ceil(1024).max(1)
}

fn write_units(rt: &tokio::runtime::Runtime, stack: &test_support::Stack) {
    const SEEDED: usize = 200;
    println!(
        "DynamoDB write units per grant per cycle: the job against moto, {SEEDED} users signed in through the real \
         handler (the emulator's profile: email, names, picture URL, locale), two cycles of DRIVE_SYNC=get, then one of list"
    );
    let subs: Vec<String> = rt.block_on(async {
        let mut subs = Vec::with_capacity(SEEDED);
        for _ in 0..SEEDED {
            let minted = stack.mint(google_emulator::CodeSpec::default());
            let answer = stack.invoke(&test_support::android_form_event(&minted.code)).await;
            assert_eq!(answer.status, 200, "{:?}", answer.json);
            subs.push(minted.sub);
        }
        subs
    });
    let log = test_support::WriteLog::default();
    let grants_table = stack.config.common.grants_table.clone();
    let state_table = stack.config.common.state_table.clone();
    for (name, mode) in [
        ("first cycle", "get"),
        ("routine cycle", "get"),
        ("first listing", "list"),
    ] {
        let config = stack.job_config(&[("DRIVE_SYNC", mode), ("GOOGLE_QUOTA_UNITS_PER_MIN", "0")]);
        let job = offline_access::app::AppBuilder::new(&config.common, &stack.aws)
            .dynamodb(log.dynamodb(&stack.aws))
            .build()
            .expect("app")
            .offline_job(&config);
        log.take_all();
        let cycle = CycleId::parse(&format!("writes-{}", name.replace(' ', "-"))).expect("cycle");
        let report = rt
            .block_on(job.run(&cycle, "bench", test_support::no_deadline()))
            .expect("run");
        let requests = log.take_all();
        let reads = requests.iter().filter(|r| !r.is_write()).count();
        let writes: Vec<_> = requests.into_iter().filter(test_support::Write::is_write).collect();
        let sizes: HashMap<String, usize> = rt
            .block_on(stack.scan(&grants_table))
            .into_iter()
            .chain(rt.block_on(stack.scan(&state_table)))
            .filter_map(|item| {
                let key = item
                    .get("sub")
                    .or_else(|| item.get("pk"))
                    .and_then(|k| k.as_s().ok())
                    .cloned()?;
                Some((key, test_support::item_size(&item)))
            })
            .collect();
        let mine: Vec<_> = writes
            .iter()
            .filter(|w| w.table == grants_table || w.key.starts_with("access#"))
            .collect();
        let billed: usize = mine
            .iter()
            .map(|w| units(sizes.get(&w.key).copied().unwrap_or(0)))
            .sum();
        let others = writes.len() - mine.len();
        let grant_size = subs.iter().filter_map(|s| sizes.get(s)).max().copied().unwrap_or(0);
        let cache_size = subs
            .iter()
            .filter_map(|s| sizes.get(&format!("access#{s}")))
            .max()
            .copied()
            .unwrap_or(0);
        println!(
            "  {name:<14} {} refreshed: {:.2} writes and {:.2} write units per grant (grant item ≤ {grant_size} B, cached-token item ≤ {cache_size} B); {others} writes for the run itself (quota count, checkpoints, done marker)",
            report.refreshed,
            mine.len() as f64 / SEEDED as f64,
            billed as f64 / SEEDED as f64,
        );
        println!(
            "                 {reads} reads in all ({:.2} a grant)",
            reads as f64 / SEEDED as f64
        );
    }
}
