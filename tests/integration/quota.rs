//! Google's quota as the job spends it (DESIGN §15), against moto and the Google emulator
//! over real HTTP: each `DRIVE_SYNC` mode makes exactly its calls, the day's budget stops
//! a run cleanly and the next day finishes the cycle, a per-minute budget never keeps a
//! run past its deadline, and Drive's rate-limit answers are retried while a refusal for
//! a missing scope is not.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::time::Duration;

use google_emulator::{CodeSpec, DriveReason, Endpoint, Fault};
use offline_access::app::AppBuilder;
use offline_access::clock::{Clock, ManualClock, SystemClock};
use offline_access::job::CycleId;
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
    let app = AppBuilder::new(&config.common, &stack.aws_as(test_support::Role::Job))
        .build()
        .expect("app");
    let job = app.offline_job_on(&config, app.store.clone(), clock.clone());
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

#[tokio::test]
async fn a_pacer_wait_past_the_deadline_stops_the_run_cleanly_and_the_next_run_finishes() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(30, DRIVE, 3).await;
    // A burst of 100 units (the dearest call), then one unit a minute: one grant at a
    // time, 16 grants at 6 units each and the 17th's refresh fit; its `files.get` would
    // wait a minute — far past the deadline.
    let job = stack.job(&[
        ("DRIVE_SYNC", "get"),
        ("GOOGLE_QUOTA_UNITS_PER_MIN", "101"),
        ("REFRESH_CONCURRENCY", "1"),
    ]);
    let cycle = cycle("paced");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Without the fix the run waits out the pacer, minutes past its deadline.
    let report = tokio::time::timeout(Duration::from_secs(60), job.run(&cycle, "paced", deadline))
        .await
        .expect("the run ends without waiting out the pacer")
        .expect("run");
    assert!(
        report.stopped_at_deadline && !report.complete && !report.budget_exhausted,
        "{report:?}"
    );
    assert_eq!(
        (report.refreshed, report.drive_synced, report.quota_units),
        (17, 16, 97),
        "{report:?}"
    );
    assert_eq!((report.deferred, report.errors), (0, 0), "{report:?}");
    for s in &seeded {
        let grant = stack.grant(&s.sub).await.expect("grant");
        assert_eq!((grant.failure_count, grant.next_attempt_at), (0, None), "{}", s.sub);
        assert!(!stack.lease_held(&s.sub).await, "{} was let go", s.sub);
    }

    // The next run (no per-minute limit) finishes the cycle: each grant refreshed once.
    let unpaced = stack.job(&[("DRIVE_SYNC", "get")]);
    let rest = unpaced.run(&cycle, "rest", no_deadline()).await.expect("run");
    assert!(rest.complete, "{rest:?}");
    assert_eq!(report.refreshed + rest.refreshed, 30, "{report:?} {rest:?}");
    assert_eq!(stack.emulator.stats().refreshes, 30);
}

#[tokio::test]
async fn drives_rate_limit_answers_are_retried_and_a_missing_scope_is_not() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, DRIVE, 3).await;
    for mode in ["get", "list"] {
        for fault in [
            DriveReason::UserRateLimitExceeded.fault(1),
            DriveReason::RateLimitExceeded.fault(1),
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
            report.backed_off_ms >= 1_000,
            "{mode}: the Retry-After: 1 answer was waited for: {report:?}"
        );
        let grant = stack.grant(&seeded[0].sub).await.expect("grant");
        assert!(grant.scopes.contains("https://www.googleapis.com/auth/drive.appdata"));
    }

    // A 403 for a scope the user took away: refreshed only, never retried.
    stack
        .emulator
        .inject_fault(Endpoint::Drive, DriveReason::InsufficientPermissions.fault(1));
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

/// The job's writes per grant per cycle, by the writes it sends: how many go to the
/// grant's item and to its cached token's item.
fn writes_per_grant(log: &test_support::WriteLog, grants: &str, grants_count: usize) -> (f64, f64) {
    let writes = log.take();
    let on_grants = writes.iter().filter(|w| w.table == grants).count();
    let on_cache = writes.iter().filter(|w| w.key.starts_with("access#")).count();
    (
        on_grants as f64 / grants_count as f64,
        on_cache as f64 / grants_count as f64,
    )
}

#[tokio::test]
async fn a_routine_cycle_costs_each_grant_two_writes_of_one_write_unit() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = spawn_stack().await;
    const GRANTS: usize = 20;
    let seeded = stack.seed_grants(GRANTS - 1, DRIVE, 150).await;
    // One grant signed in as a user is: through the sign-in, with a profile as long as
    // real ones run (a long name with accents, a work address, Google's picture URL).
    let real = stack.mint(CodeSpec {
        email: Some("maria-jose.fernandez-castellanos@ingenieria.example-university.edu".into()),
        name: Some("María José Fernández-Castellanos de la Peña".into()),
        scopes: Some(format!(
            "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile {DRIVE}"
        )),
        drive_files: Some(150),
        id_token_claims: Some(serde_json::json!({
            "picture": "https://lh3.googleusercontent.com/a/ACg8ocJx3q7Vb0kZ9tYw2LmN4pQ8rS1uV6xW0yZ3aB5cD7eF9gH1jK2lM4nO6pQ8rS0tU2vW4xY6zA=s96-c",
            "locale": "es-419",
            "hd": "ingenieria.example-university.edu",
        })),
        ..CodeSpec::default()
    });
    let signed_in = stack.invoke(&test_support::android_form_event(&real.code)).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.json);
    let grants_table = stack.config.common.grants_table.clone();
    let log = test_support::WriteLog::default();
    let job_with = |mode: &str| {
        let config = stack.job_config(&[("DRIVE_SYNC", mode)]);
        AppBuilder::new(&config.common, &stack.aws_as(test_support::Role::Job))
            .dynamodb(log.dynamodb(&stack.aws_as(test_support::Role::Job)))
            .build()
            .expect("app")
            .offline_job(&config)
    };

    // DRIVE_SYNC=get: every cycle is routine, the first one too. One write to the grant
    // (the lease) and one to its cached token (which also ends the lease).
    let job = job_with("get");
    for name in ["get-1", "get-2"] {
        let report = job.run(&cycle(name), "run", no_deadline()).await.expect("run");
        assert_eq!((report.refreshed, report.skipped), (GRANTS as u64, 0), "{report:?}");
        assert_eq!(writes_per_grant(&log, &grants_table, GRANTS), (1.0, 1.0), "{name}");
    }
    // An access-token call right after is served from what the job cached, and a forced
    // one is not held up by the job's lease, which the cached token's item ended.
    let seeded_sub = seeded[0].sub.clone();
    let service = stack.access_tokens(&[]);
    let cached = test_support::ask_for_token(&service, &serde_json::json!({"sub": seeded_sub})).await;
    assert_eq!(cached["status"], 200, "{cached}");
    let refreshes = stack.emulator.stats().refreshes;
    let forced = test_support::ask_for_token(
        &stack.access_tokens(&[("FORCE_REFRESH_MIN_SECS", "0")]),
        &serde_json::json!({"sub": seeded_sub, "force_refresh": true}),
    )
    .await;
    assert_eq!(forced["status"], 200, "{forced}");
    assert_eq!(
        stack.emulator.stats().refreshes,
        refreshes + 1,
        "a forced refresh took the lease at once"
    );

    // DRIVE_SYNC=list: the first listing records what it found on the grant (a third
    // write); from then on the cycle is routine again.
    let job = job_with("list");
    let report = job.run(&cycle("list-1"), "run", no_deadline()).await.expect("run");
    assert_eq!(report.drive_synced, GRANTS as u64, "{report:?}");
    assert_eq!(writes_per_grant(&log, &grants_table, GRANTS), (2.0, 1.0), "list-1");
    let report = job.run(&cycle("list-2"), "run", no_deadline()).await.expect("run");
    assert_eq!(report.drive_synced, GRANTS as u64, "{report:?}");
    assert_eq!(writes_per_grant(&log, &grants_table, GRANTS), (1.0, 1.0), "list-2");

    // Each write is billed on its item, and every item is under the 1 KB of one unit.
    for (table, prefix) in [
        (grants_table.as_str(), ""),
        (stack.config.common.state_table.as_str(), "access#"),
    ] {
        let items = stack.scan(table).await;
        let sizes: Vec<usize> = items
            .iter()
            .filter(|i| {
                i.get("pk")
                    .or_else(|| i.get("sub"))
                    .and_then(|k| k.as_s().ok())
                    .is_some_and(|k| k.starts_with(prefix))
            })
            .map(test_support::item_size)
            .collect();
        assert!(!sizes.is_empty(), "{table}");
        let largest = sizes.iter().max().copied().unwrap_or_default();
        assert!(
            largest <= 1024,
            "{table}: an item of {largest} bytes costs two write units"
        );
    }
    let real_grant = stack
        .scan(&grants_table)
        .await
        .into_iter()
        .find(|i| i.get("sub").and_then(|k| k.as_s().ok()) == Some(&real.sub))
        .expect("the signed-in grant");
    assert!(
        real_grant.contains_key("email") && real_grant.contains_key("picture"),
        "the profile is on the item: {:?}",
        real_grant.keys().collect::<Vec<_>>()
    );
    let size = test_support::item_size(&real_grant);
    eprintln!("the signed-in grant with a real-length profile: {size} bytes");
    assert!(size <= 1024, "the signed-in grant is {size} bytes");
    for name in [
        "rf_since",
        "rf_err",
        "api_since",
        "api_err",
        "exp_at",
        "exp_why",
        "reconsents",
    ] {
        assert!(!real_grant.contains_key(name), "a healthy grant carries no {name}");
    }
    // The same grant at its largest: both levels failing, an end announced, consents
    // counted (each written only by a cycle that is not routine).
    let mut worst = real_grant.clone();
    for (name, value) in [
        ("rf_since", AttributeValue::N("1800000000".into())),
        ("rf_err", AttributeValue::S("rotated_token_unsealed".into())),
        ("api_since", AttributeValue::N("1800000000".into())),
        ("api_err", AttributeValue::S("insufficient_permissions".into())),
        ("exp_at", AttributeValue::N("1800000000".into())),
        ("exp_why", AttributeValue::S("consent_screen_in_testing".into())),
        ("reconsents", AttributeValue::N("100".into())),
    ] {
        worst.insert(name.to_owned(), value);
    }
    eprintln!(
        "the same grant with every health attribute at its longest: {} bytes",
        test_support::item_size(&worst)
    );
    let lease = stack.grant_attribute(&seeded_sub, "lease_owner").await;
    assert!(
        matches!(lease, Some(AttributeValue::S(_))),
        "a routine cycle leaves its ended lease on the grant"
    );
}
