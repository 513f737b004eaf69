//! Offline-job benchmark, run by `make bench`: the release `refresher` binary behind a
//! Lambda Runtime API, against moto and the Google emulator with 100 ms injected on every
//! Google call (refresh and Drive), over 20,000 seeded grants.
//!
//! It prints grants per second at 64 and at 256 grants in flight (Little's law bounds
//! them at in-flight / 0.2 s: 320/s and 1,280/s), and the binary's peak RSS (VmHWM).
//!
//! moto serves one request at a time (~8 ms each here), and every grant costs two
//! conditional writes (lease, finish), so against moto the store caps the run near
//! 60 grants/s whatever the concurrency. The second part runs the same job in-process
//! with the in-memory `JobStore` (same conditional semantics) to show the job's own
//! throughput against the 100 ms Google latency.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

use std::time::Duration;

use google_emulator::{Endpoint, Fault};

const GRANTS: usize = 20_000;
const LATENCY_MS: u64 = 100;

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
    let seeded = rt.block_on(stack.seed_grants(GRANTS, "openid https://www.googleapis.com/auth/drive.appdata", 3));
    assert_eq!(seeded.len(), GRANTS);
    for endpoint in [Endpoint::Token, Endpoint::Drive] {
        stack.emulator.inject_fault(
            endpoint,
            Fault {
                delay_ms: LATENCY_MS,
                ..Fault::default()
            },
        );
    }

    println!("refresh benchmark: {GRANTS} grants, {LATENCY_MS} ms on every Google call (refresh + Drive)");
    // `REFRESH_BENCH=memory` (or `moto`) runs one part only.
    let parts = std::env::var("REFRESH_BENCH").unwrap_or_else(|_| "moto,memory".into());
    let moto_runs: &[(u32, u32)] = if parts.contains("moto") {
        &[(64, 4), (256, 8)]
    } else {
        &[]
    };
    let memory_runs: &[(u32, u32)] = if parts.contains("memory") {
        &[(64, 4), (256, 8)]
    } else {
        &[]
    };
    println!(" the release refresher binary against moto (DynamoDB) and the emulator:");
    for &(in_flight, segments) in moto_runs {
        let mut env = stack.env.clone();
        for (k, v) in [
            ("REFRESH_CONCURRENCY", in_flight.to_string()),
            ("REFRESH_SEGMENTS", segments.to_string()),
            ("GOOGLE_QUOTA_UNITS_PER_MIN", "0".into()),
            ("SCAN_PAGE_SIZE", "100".into()),
        ] {
            env.insert(k.into(), v);
        }
        let binary = test_support::runtime_api::binary("refresher");
        let report = rt.block_on(async {
            let mut function =
                test_support::runtime_api::Function::start_with_timeout(binary, &env, Duration::from_secs(900)).await;
            let event =
                serde_json::json!({"time": format!("2026-01-{:02}T00:00:00Z", in_flight / 32), "source": "aws.events"})
                    .to_string();
            let test_support::runtime_api::Outcome::Response(report) = function.invoke(&event).await else {
                panic!("the job failed: {}", function.logs());
            };
            (report, function.peak_rss_kib())
        });
        let (report, rss) = report;
        let refreshed = report["refreshed"].as_u64().unwrap_or(0);
        let secs = report["duration_ms"].as_u64().unwrap_or(1) as f64 / 1e3;
        let limit = f64::from(in_flight) / (2.0 * LATENCY_MS as f64 / 1e3);
        println!(
            "  {in_flight:>3} in flight: {refreshed} refreshed in {secs:.1} s = {:.0} grants/s ({:.0}% of the {limit:.0}/s Little's-law limit); peak RSS {:.1} MiB; complete={}",
            refreshed as f64 / secs,
            100.0 * refreshed as f64 / secs / limit,
            rss.unwrap_or(0) as f64 / 1024.0,
            report["complete"],
        );
    }

    println!(" the same job in-process, with the in-memory JobStore instead of moto:");
    let grants: Vec<_> = seeded.iter().map(|s| s.grant.clone()).collect();
    for &(in_flight, segments) in memory_runs {
        let config = stack.job_config(&[
            ("REFRESH_CONCURRENCY", &in_flight.to_string()),
            ("REFRESH_SEGMENTS", &segments.to_string()),
            ("GOOGLE_QUOTA_UNITS_PER_MIN", "0"),
        ]);
        let app = offline_access::app::AppBuilder::new(&config.common, &stack.aws)
            .build()
            .expect("app");
        let job = app.offline_job_on(
            &config,
            test_support::MemoryJobStore::with(grants.clone()),
            offline_access::clock::SystemClock,
        );
        let cycle = offline_access::job::CycleId::parse(&format!("memory-{in_flight}")).expect("cycle");
        let report = rt
            .block_on(job.run(&cycle, "bench", test_support::no_deadline()))
            .expect("run");
        let secs = report.duration_ms as f64 / 1e3;
        let limit = f64::from(in_flight) / (2.0 * LATENCY_MS as f64 / 1e3);
        println!(
            "  {in_flight:>3} in flight: {} refreshed in {secs:.1} s = {:.0} grants/s ({:.0}% of the {limit:.0}/s Little's-law limit); complete={}",
            report.refreshed,
            report.refreshed as f64 / secs,
            100.0 * report.refreshed as f64 / secs / limit,
            report.complete,
        );
    }
}
