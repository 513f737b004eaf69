//! Google's quota as the job spends it (DESIGN §15), against moto and the Google emulator
//! over real HTTP: each `DRIVE_SYNC` mode makes exactly its calls, the day's budget stops
//! a run cleanly and the next day finishes the cycle, and Drive's rate-limit answers are
//! retried while a refusal for a missing scope is not.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::time::Duration;

use google_emulator::{Endpoint, Fault};
use offline_access::clock::{Clock, ManualClock, SystemClock};
use offline_access::job::CycleId;
use offline_access::wiring::JobBuilder;
use test_support::{Stack, no_deadline, spawn_stack};

const DRIVE: &str = "openid https://www.googleapis.com/auth/drive.appdata";
const NO_DRIVE: &str = "openid https://www.googleapis.com/auth/userinfo.email";

fn cycle(name: &str) -> CycleId {
    CycleId::parse(name).expect("cycle")
}

/// Google calls the emulator answered: refreshes, `files.get`, `files.list` pages.
fn calls(stack: &Stack) -> (u64, u64, u64) {
    let stats = stack.emulator.stats();
    (stats.refreshes, stats.drive_gets, stats.drive_lists)
}

#[tokio::test]
async fn each_drive_sync_mode_makes_exactly_its_calls_and_spends_their_units() {
    let stack = spawn_stack().await;
    // 250 files: three pages of 100.
    stack.seed_grants(4, DRIVE, 250).await;
    stack.seed_grants(2, NO_DRIVE, 0).await;

    let mut before = calls(&stack);
    for (mode, expected, units) in [
        // Six refreshes; `files.get` once for each grant with drive.appdata.
        ("get", (6, 4, 0), 6 + 4 * 5),
        // Every page of every listing.
        ("list", (6, 0, 12), 6 + 12 * 100),
        // Refresh only.
        ("off", (6, 0, 0), 6),
    ] {
        let job = stack.job(&[("DRIVE_SYNC", mode)]);
        let report = job.run(&cycle(mode), "run", no_deadline()).await.expect("run");
        let after = calls(&stack);
        let made = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        assert_eq!(made, expected, "{mode}: {report:?}");
        assert_eq!(report.quota_units, units, "{mode}");
        assert_eq!(report.refreshed, 6, "{mode}");
        let synced = if mode == "off" { 0 } else { 4 };
        assert_eq!(
            (report.drive_synced, report.refresh_only),
            (synced, 6 - synced),
            "{mode}: {report:?}"
        );
        before = after;
    }
}

#[tokio::test]
async fn the_days_budget_stops_the_run_cleanly_and_the_next_day_finishes_the_cycle() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(30, DRIVE, 3).await;
    // Each grant costs 6 units (a refresh and a files.get): 100 units pay for 16.
    let config = stack.job_config(&[
        ("GOOGLE_DAILY_UNIT_BUDGET", "100"),
        ("GOOGLE_QUOTA_DAY_TZ", "UTC0"),
        ("DRIVE_SYNC", "get"),
    ]);
    let clock = ManualClock::at(SystemClock.now_unix());
    let job = JobBuilder::new(&config, &stack.aws)
        .build_with_clock(clock.clone())
        .expect("job");
    let cycle = cycle("2026-11-27T00:00:00Z");

    let first = job.run(&cycle, "first", no_deadline()).await.expect("run");
    assert!(
        first.budget_exhausted && !first.complete && !first.stopped_at_deadline,
        "{first:?}"
    );
    assert_eq!((first.refreshed, first.quota_units), (16, 96), "{first:?}");
    assert_eq!((first.deferred, first.errors, first.skipped), (0, 0, 0), "{first:?}");
    assert_eq!(stack.emulator.stats().refreshes, 16);

    // The same day: nothing is done, not even a scan.
    let again = job.run(&cycle, "again", no_deadline()).await.expect("run");
    assert!(again.budget_exhausted && !again.complete, "{again:?}");
    assert_eq!((again.scanned, again.refreshed), (0, 0), "{again:?}");
    assert_eq!(stack.emulator.stats().refreshes, 16);

    // No grant was deferred or marked failed because of the budget.
    for s in &seeded {
        let grant = stack.grant(&s.sub).await.expect("grant");
        assert_eq!((grant.failure_count, grant.next_attempt_at), (0, None), "{}", s.sub);
    }

    // The quota day turns over: the cycle resumes and finishes, refreshing each of the
    // other 14 once.
    clock.advance(Duration::from_secs(86_400));
    let next_day = job.run(&cycle, "next-day", no_deadline()).await.expect("run");
    assert!(next_day.complete && !next_day.budget_exhausted, "{next_day:?}");
    assert_eq!(next_day.refreshed, 14, "{next_day:?}");
    assert_eq!(stack.emulator.stats().refreshes, 30, "no grant refreshed twice");
    let done_after = job.run(&cycle, "after", no_deadline()).await.expect("run");
    assert!(done_after.already_done, "{done_after:?}");

    // Each day's count: the first day's is its whole budget (96 units spent, and 4 too
    // few for another grant, kept so that the day reads as spent); the next day's is the
    // 84 units spent (what was claimed and not spent was given back).
    let today = offline_access::job::quota_day(clock.now_unix() - 86_400, &jiff::tz::TimeZone::UTC);
    let tomorrow = offline_access::job::quota_day(clock.now_unix(), &jiff::tz::TimeZone::UTC);
    assert_eq!(stack.state_number(&format!("quota#{today}"), "units").await, Some(100));
    assert_eq!(
        stack.state_number(&format!("quota#{tomorrow}"), "units").await,
        Some(84)
    );
}

fn drive_403(reason: &str) -> Fault {
    Fault {
        status: Some(403),
        body: Some(format!(
            r#"{{"error":{{"code":403,"message":"{reason}","errors":[{{"domain":"usageLimits","reason":"{reason}","message":"{reason}"}}]}}}}"#
        )),
        count: Some(1),
        ..Fault::default()
    }
}

#[tokio::test]
async fn drives_rate_limit_answers_are_retried_and_a_missing_scope_is_not() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, DRIVE, 3).await;
    for mode in ["get", "list"] {
        for fault in [
            drive_403("userRateLimitExceeded"),
            drive_403("rateLimitExceeded"),
            Fault {
                status: Some(429),
                retry_after: Some(1),
                count: Some(1),
                ..Fault::default()
            },
        ] {
            stack.emulator.inject_fault(Endpoint::Drive, fault);
        }
        let job = stack.job(&[("DRIVE_SYNC", mode), ("RETRY_MAX_ATTEMPTS", "5")]);
        let started = std::time::Instant::now();
        let report = job
            .run(&cycle(&format!("rate-{mode}")), "run", no_deadline())
            .await
            .expect("run");
        assert_eq!(
            (
                report.drive_synced,
                report.refresh_only,
                report.retries,
                report.deferred
            ),
            (1, 0, 3, 0),
            "{mode}: {report:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{mode}: Retry-After was honoured"
        );
        let grant = stack.grant(&seeded[0].sub).await.expect("grant");
        assert!(grant.scopes.contains("https://www.googleapis.com/auth/drive.appdata"));
    }

    // A 403 for a scope the user took away: refreshed only, never retried.
    stack
        .emulator
        .inject_fault(Endpoint::Drive, drive_403("insufficientPermissions"));
    let before = stack.emulator.stats();
    let job = stack.job(&[("DRIVE_SYNC", "get")]);
    let report = job.run(&cycle("scope-gone"), "run", no_deadline()).await.expect("run");
    assert_eq!(
        (report.refreshed, report.refresh_only, report.retries, report.deferred),
        (1, 1, 0, 0),
        "{report:?}"
    );
    let after = stack.emulator.stats();
    assert_eq!(
        (after.faults_served, after.drive),
        (before.faults_served + 1, before.drive),
        "one call, refused, not retried"
    );
}
