//! The offline job end to end against moto and the Google emulator over real HTTP:
//! every grant refreshed once a cycle, Drive listed for those with the scope, each error
//! class handled, nothing lost under faults, races and deadlines.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use google_emulator::{ClientState, CodeSpec, Consent, DriveReason, Endpoint, Fault};
use offline_access::job::CycleId;
use test_support::{Seeded, Stack, android_form_event, no_deadline, spawn_stack};

const DRIVE: &str = "openid https://www.googleapis.com/auth/drive.appdata";
const NO_DRIVE: &str = "openid https://www.googleapis.com/auth/userinfo.email";

fn cycle(name: &str) -> CycleId {
    CycleId::parse(name).expect("cycle")
}

/// Every seeded grant's stored token is one Google still honours: nothing lost or regressed.
async fn assert_every_token_is_live(stack: &Stack, seeded: &[Seeded]) {
    for s in seeded {
        let stored = stack.stored_refresh_token(&s.sub).await.expect("a stored token");
        assert_eq!(
            Some(stored),
            stack.emulator.refresh_token_of(&s.sub),
            "{}: stored token is not Google's live one",
            s.sub
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_run_refreshes_every_grant_lists_drive_where_granted_and_uses_each_fresh_access_token() {
    let stack = spawn_stack().await;
    let with_drive = stack.seed_grants(1_500, DRIVE, 150).await;
    let without = stack.seed_grants(500, NO_DRIVE, 0).await;
    let (job, kms) = stack.counting_job(&[
        ("REFRESH_CONCURRENCY", "64"),
        ("REFRESH_SEGMENTS", "4"),
        ("DRIVE_SYNC", "list"),
    ]);

    let report = job
        .run(&cycle("2026-11-26T10:00:00Z"), "run-1", no_deadline())
        .await
        .expect("run");

    assert!(report.complete && !report.already_done, "{report:?}");
    assert_eq!(
        (report.refreshed, report.drive_synced, report.refresh_only),
        (2_000, 1_500, 500),
        "{report:?}"
    );
    assert_eq!(
        (report.revoked, report.deferred, report.errors),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.drive_calls, 1_500 * 2, "150 files are two pages of 100");
    for s in &with_drive {
        let issued = stack.emulator.refreshed_access_tokens(&s.sub);
        assert_eq!(issued.len(), 1, "{} refreshed once", s.sub);
        assert!(
            stack.emulator.access_token_was_used(&issued[0]),
            "{}: Drive saw the fresh access token",
            s.sub
        );
        assert_eq!(
            stack
                .grant_attribute(&s.sub, "drive_files")
                .await
                .and_then(|v| v.as_n().ok().cloned())
                .as_deref(),
            Some("150")
        );
    }
    for s in &without {
        let issued = stack.emulator.refreshed_access_tokens(&s.sub);
        assert_eq!(issued.len(), 1, "refreshed as a keep-alive");
        assert!(
            !stack.emulator.access_token_was_used(&issued[0]),
            "no Drive call without the scope"
        );
    }
    let grant = stack.grant(&with_drive[0].sub).await.expect("grant");
    assert!(grant.last_refresh_at.is_some() && grant.last_sync_at.is_some());
    // Every grant was sealed under one data key: KMS Decrypt once, not per grant.
    assert_eq!(kms.decrypted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_same_cycle_delivered_twice_refreshes_nothing_twice() {
    let stack = spawn_stack().await;
    stack.seed_grants(50, DRIVE, 3).await;
    let job = stack.job(&[]);

    let first = job.run(&cycle("c1"), "a", no_deadline()).await.expect("first");
    let again = job.run(&cycle("c1"), "b", no_deadline()).await.expect("again");
    let next = job.run(&cycle("c2"), "c", no_deadline()).await.expect("next cycle");

    assert_eq!(first.refreshed, 50);
    assert!(again.already_done && again.refreshed == 0, "{again:?}");
    assert_eq!(next.refreshed, 50, "a new cycle refreshes again");
    assert_eq!(stack.emulator.stats().refreshes, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_runs_and_a_concurrent_sign_in_never_double_refresh_or_lose_a_token() {
    let stack = spawn_stack().await;
    // Google rotates refresh tokens on every refresh: a lost write would leave a dead one.
    stack.emulator.set_refresh_token_rotation(true);
    let seeded = stack.seed_grants(300, DRIVE, 1).await;
    let (a, b) = (
        stack.job(&[("REFRESH_CONCURRENCY", "16")]),
        stack.job(&[("REFRESH_CONCURRENCY", "16")]),
    );
    let signing_in = seeded[7].sub.clone();
    let code = stack.mint(CodeSpec {
        sub: Some(signing_in.clone()),
        consent: Consent::Forced,
        ..CodeSpec::default()
    });

    let (overlap, event) = (cycle("overlap"), android_form_event(&code.code));
    let (ra, rb, answer) = tokio::join!(
        a.run(&overlap, "invocation-a", no_deadline()),
        b.run(&overlap, "invocation-b", no_deadline()),
        stack.invoke(&event),
    );

    let (ra, rb) = (ra.expect("run a"), rb.expect("run b"));
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(ra.refreshed + rb.refreshed, 300, "{ra:?} / {rb:?}");
    for s in &seeded {
        assert_eq!(
            stack.emulator.refreshed_access_tokens(&s.sub).len(),
            1,
            "{} refreshed exactly once",
            s.sub
        );
    }
    // Everyone else's stored token is the rotated, live one.
    let others: Vec<Seeded> = seeded.iter().filter(|s| s.sub != signing_in).cloned().collect();
    assert_every_token_is_live(&stack, &others).await;
    // The user who signed in holds a token Google honours: the sign-in's or the rotation's.
    let stored = stack.stored_refresh_token(&signing_in).await.expect("stored");
    assert!(
        stack.emulator.refresh_token_is_live(&stored),
        "the signed-in user's token was lost"
    );
}

/// A sign-in stores a new refresh token while the job's refresh of the old one is at
/// Google, which answers it with a rotated token: the job's write of it comes after the
/// sign-in's and is superseded — the sign-in's token stays. (Without a rotated token the
/// job's routine record touches no token, and is written.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_in_during_the_jobs_refresh_supersedes_the_jobs_outcome() {
    let stack = spawn_stack().await;
    let user = stack.seed_grants(1, DRIVE, 1).await.remove(0);
    stack.emulator.set_refresh_token_rotation(true);
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            held: true,
            count: Some(1),
            ..Fault::default()
        },
    );
    let job = stack.job(&[("DRIVE_SYNC", "off")]);
    let raced = cycle("raced");
    let run = job.run(&raced, "run", no_deadline());
    let sign_in = async {
        assert!(stack.emulator.until_held(1).await, "the job's refresh reached Google");
        let code = stack.mint(CodeSpec {
            sub: Some(user.sub.clone()),
            consent: Consent::Forced,
            ..CodeSpec::default()
        });
        let answer = stack.invoke(&android_form_event(&code.code)).await;
        let token = stack.emulator.refresh_token_of(&user.sub);
        stack.emulator.release_held();
        (answer, token)
    };
    let (report, (signed_in, sign_in_token)) = tokio::join!(run, sign_in);
    let report = report.expect("run");
    assert_eq!(signed_in.status, 200, "{}", signed_in.json);

    assert_eq!(
        (report.refreshed, report.superseded, report.errors),
        (1, 1, 0),
        "{report:?}"
    );
    let sign_in_token = sign_in_token.expect("the sign-in's token");
    assert_ne!(sign_in_token, user.token);
    assert_eq!(stack.stored_refresh_token(&user.sub).await, Some(sign_in_token));
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert_eq!(grant.status.as_str(), "active");
}

/// Every invocation is cut short, and the cycle still covers each grant once. The cut is
/// made by the pacer, not by the wall clock: each invocation (a new job, as a new Lambda
/// process) has a burst of 100 quota units, then one unit a minute, so its next slot
/// falls after its deadline and it stops as at the deadline — after the same number of
/// calls on any machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_cut_short_resumes_over_invocations_and_covers_every_grant_once() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(240, DRIVE, 1).await;
    let settings = [
        ("DRIVE_SYNC", "get"),
        ("GOOGLE_QUOTA_UNITS_PER_MIN", "101"),
        ("REFRESH_CONCURRENCY", "8"),
        ("REFRESH_SEGMENTS", "3"),
        ("SCAN_PAGE_SIZE", "20"),
    ];

    let mut invocations = 0;
    let mut refreshed = 0;
    loop {
        invocations += 1;
        let job = stack.job(&settings);
        let stop_at = tokio::time::Instant::now() + Duration::from_secs(30);
        let report = job
            .run(&cycle("cut"), &format!("inv-{invocations}"), stop_at)
            .await
            .expect("run");
        refreshed += report.refreshed;
        if report.complete {
            break;
        }
        assert!(report.stopped_at_deadline && !report.budget_exhausted, "{report:?}");
        // A burst of 100 units pays for 16 grants at 6 units (a refresh 1, a files.get
        // 5) and at most 23: up to 8 grants in flight may have been refreshed when the
        // next files.get no longer fits (r + 5(r - 8) <= 100). Which, between the two,
        // depends on how the eight workers interleave.
        assert!(
            (16..=23).contains(&report.refreshed),
            "invocation {invocations} refreshed {}: {report:?}",
            report.refreshed
        );
        assert_eq!((report.deferred, report.errors), (0, 0), "{report:?}");
    }

    assert!(
        (11..=15).contains(&invocations),
        "240 grants at 16 to 23 an invocation take 11 to 15: {invocations}"
    );
    assert_eq!(refreshed, 240);
    for s in &seeded {
        assert_eq!(
            stack.emulator.refreshed_access_tokens(&s.sub).len(),
            1,
            "{} exactly once",
            s.sub
        );
    }
    let done = stack
        .job(&settings)
        .run(&cycle("cut"), "late", no_deadline())
        .await
        .expect("late");
    assert!(done.already_done);
}

#[tokio::test]
async fn invalid_grant_revokes_the_grant_and_invalid_rapt_holds_it_until_the_user_signs_in_again() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(3, DRIVE, 1).await;
    stack
        .emulator
        .revoke_refresh_token(&seeded[0].token, Some("invalid_rapt"));
    stack.emulator.revoke_refresh_token(&seeded[1].token, None);
    let job = stack.job(&[]);

    let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");

    assert_eq!(
        (report.revoked, report.reconsent_required, report.refreshed),
        (1, 1, 1),
        "{report:?}"
    );
    let rapt = stack.grant(&seeded[0].sub).await.expect("grant");
    assert_eq!(
        (
            rapt.status.as_str(),
            rapt.status_reason.as_deref(),
            rapt.likely_cause.as_deref()
        ),
        (
            "reconsent_required",
            Some("invalid_grant:invalid_rapt"),
            Some("reauthentication_required")
        )
    );
    assert!(
        rapt.refresh_token.is_some(),
        "kept sealed: it works again after a sign-in"
    );
    let plain = stack.grant(&seeded[1].sub).await.expect("grant");
    assert_eq!(
        (plain.status.as_str(), plain.status_reason.as_deref()),
        ("revoked", Some("invalid_grant"))
    );
    assert!(plain.refresh_token.is_none(), "the dead token is deleted");

    let refreshes = stack.emulator.stats().refreshes;
    let next = job.run(&cycle("c2"), "b", no_deadline()).await.expect("next");
    assert_eq!(next.refreshed, 1);
    assert_eq!(stack.emulator.stats().refreshes, refreshes + 1, "neither is retried");

    // The user signs in again; Google sends no new refresh token (they consented before):
    // the kept one is the grant's again, and the next cycle refreshes it.
    let again = stack.mint(CodeSpec {
        sub: Some(seeded[0].sub.clone()),
        scopes: Some(DRIVE.into()),
        consent: Consent::Repeat,
        ..CodeSpec::default()
    });
    let answer = stack.invoke(&android_form_event(&again.code)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let revived = stack.grant(&seeded[0].sub).await.expect("grant");
    assert_eq!(
        (
            revived.status.as_str(),
            revived.status_reason.as_deref(),
            revived.likely_cause.as_deref()
        ),
        ("active", None, None)
    );
    let third = job.run(&cycle("c3"), "c", no_deadline()).await.expect("run");
    assert_eq!((third.refreshed, third.revoked), (2, 0), "{third:?}");
    assert_every_token_is_live(&stack, &seeded[..1]).await;
    // The hold ended that generation's cached tokens; the sign-in lifted that, so what the
    // job cached serves the backend without another refresh at Google.
    let refreshes = stack.emulator.stats().refreshes;
    let served =
        test_support::ask_for_token(&stack.access_tokens(&[]), &serde_json::json!({"sub": seeded[0].sub})).await;
    assert_eq!(served["status"], 200, "{served}");
    assert_eq!(
        stack.emulator.stats().refreshes,
        refreshes,
        "served from the job's cache"
    );
}

/// A refusal of the client or the project, never of a user: how to make Google answer it.
#[derive(Debug, Clone, Copy)]
enum ClientFault {
    InvalidClient,
    DeletedClient,
    UnauthorizedClient,
    DriveApiOff,
    DriveDailyQuota,
}

/// Each client-level fault stops the run cleanly: the report names it, no grant changes
/// (status, token, failures, health, the cycle that took it), and the next cycle, once
/// the operator has acted, refreshes every grant.
#[tokio::test]
async fn a_client_level_fault_stops_the_run_cleanly_and_changes_no_grant() {
    let cases = [
        (ClientFault::InvalidClient, "invalid_client"),
        (ClientFault::DeletedClient, "restore it within 30 days"),
        (ClientFault::UnauthorizedClient, "unauthorized_client"),
        (ClientFault::DriveApiOff, "accessNotConfigured"),
        (ClientFault::DriveDailyQuota, "dailyLimitExceeded"),
    ];
    for (fault, names) in cases {
        let stack = spawn_stack().await;
        let seeded = stack.seed_grants(20, DRIVE, 1).await;
        let secret = stack.emulator.settings().client_secret;
        let before: Vec<_> = {
            let mut items = stack.grants().await;
            items.sort_by_key(|i| format!("{:?}", i.get("sub")));
            items
        };
        match fault {
            ClientFault::InvalidClient => stack.emulator.set_client_secret("GOCSPX-rotated-at-google-only"),
            ClientFault::DeletedClient => stack.emulator.set_client_state(ClientState::Deleted),
            ClientFault::UnauthorizedClient => stack.emulator.set_client_state(ClientState::Unauthorized),
            ClientFault::DriveApiOff => stack.emulator.refuse_drive(None, DriveReason::AccessNotConfigured),
            ClientFault::DriveDailyQuota => stack.emulator.refuse_drive(None, DriveReason::DailyLimitExceeded),
        }
        let job = stack.job(&[("REFRESH_CONCURRENCY", "4")]);

        let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("a clean stop");

        let said = report.stopped_for.as_deref().unwrap_or_default();
        assert!(said.contains(names), "{fault:?}: {said}");
        assert!(!report.complete && !report.stopped_at_deadline, "{fault:?}: {report:?}");
        assert_eq!((report.revoked, report.deferred), (0, 0), "{fault:?}");
        assert!(
            stack.emulator.stats().refreshes <= 4 + 1,
            "{fault:?}: the run stopped instead of trying every grant"
        );
        let mut after = stack.grants().await;
        after.sort_by_key(|i| format!("{:?}", i.get("sub")));
        assert_eq!(
            after, before,
            "{fault:?}: no grant changed, not even its lease or cycle"
        );

        // The operator fixes it: the next cycle refreshes every grant.
        stack.emulator.set_client_state(ClientState::Active);
        stack.emulator.clear_drive_refusals();
        stack.emulator.set_client_secret(&secret);
        let next = job.run(&cycle("c2"), "b", no_deadline()).await.expect("run");
        assert_eq!((next.refreshed, next.stopped_for.as_deref()), (20, None), "{fault:?}");
        assert_every_token_is_live(&stack, &seeded).await;
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_succeed() {
    let stack = spawn_stack().await;
    stack.seed_grants(1, DRIVE, 1).await;
    for fault in [
        Fault {
            status: Some(429),
            retry_after: Some(1),
            count: Some(1),
            ..Fault::default()
        },
        Fault {
            status: Some(500),
            count: Some(1),
            ..Fault::default()
        },
        Fault {
            status: Some(200),
            body: Some("<html>oops</html>".into()),
            count: Some(1),
            ..Fault::default()
        },
        Fault {
            delay_ms: 2_000,
            count: Some(1),
            ..Fault::default()
        },
    ] {
        stack.emulator.inject_fault(Endpoint::Token, fault);
    }
    stack.emulator.inject_fault(
        Endpoint::Drive,
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
    );
    let job = stack.job(&[("RETRY_MAX_ATTEMPTS", "6")]);

    let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");

    assert_eq!(
        (report.refreshed, report.drive_synced, report.deferred),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.retries, 5, "four token faults and one Drive fault");
    assert!(
        report.backed_off_ms >= 1_000,
        "the Retry-After: 1 answer was waited for: {report:?}"
    );
}

#[tokio::test]
async fn a_persistent_outage_defers_the_grant_with_a_failure_count_and_a_next_attempt() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, DRIVE, 1).await;
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(503),
            ..Fault::default()
        },
    );
    let job = stack.job(&[("RETRY_MAX_ATTEMPTS", "3")]);

    let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");

    assert_eq!((report.deferred, report.refreshed), (2, 0), "{report:?}");
    assert_eq!(
        stack.emulator.stats().faults_served,
        6,
        "three attempts each, then deferred"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for s in &seeded {
        let grant = stack.grant(&s.sub).await.expect("grant");
        assert_eq!((grant.status.as_str(), grant.failure_count), ("active", 1));
        assert!(grant.next_attempt_at.is_some_and(|t| t > now), "retried later");
        assert!(grant.refresh_token.is_some(), "nothing lost");
    }
    // The next cycle does not touch grants that are not due.
    stack.emulator.clear_faults();
    let next = job.run(&cycle("c2"), "b", no_deadline()).await.expect("next");
    assert_eq!((next.scanned, next.refreshed), (0, 0), "{next:?}");
    assert_eq!(
        stack.emulator.stats().faults_served + stack.emulator.stats().refreshes,
        6
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_stored_one_and_an_absent_one_keeps_it() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, NO_DRIVE, 0).await;
    let job = stack.job(&[]);

    job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");
    for s in &seeded {
        assert_eq!(
            stack.stored_refresh_token(&s.sub).await.as_deref(),
            Some(s.token.as_str()),
            "kept"
        );
    }

    stack.emulator.set_refresh_token_rotation(true);
    let report = job.run(&cycle("c2"), "b", no_deadline()).await.expect("run");
    assert_eq!(report.rotated_tokens, 2);
    for s in &seeded {
        let stored = stack.stored_refresh_token(&s.sub).await.expect("stored");
        assert_ne!(stored, s.token, "replaced");
        assert_eq!(
            Some(stored),
            stack.emulator.refresh_token_of(&s.sub),
            "with the live one, re-encrypted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_503s_with_retry_after_still_ends_with_nothing_lost() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(200, DRIVE, 1).await;
    for endpoint in [Endpoint::Token, Endpoint::Drive] {
        stack.emulator.inject_fault(
            endpoint,
            Fault {
                status: Some(503),
                retry_after: Some(1),
                probability: Some(0.3),
                ..Fault::default()
            },
        );
    }
    let job = stack.job(&[("REFRESH_CONCURRENCY", "64"), ("RETRY_MAX_ATTEMPTS", "5")]);

    let report = job.run(&cycle("burst"), "a", no_deadline()).await.expect("run");

    assert!(report.retries > 0, "{report:?}");
    assert_eq!(
        report.refreshed + report.deferred,
        200,
        "every grant is accounted for: {report:?}"
    );
    assert_eq!((report.revoked, report.reconsent_required, report.errors), (0, 0, 0));
    assert_every_token_is_live(&stack, &seeded).await;
    for s in &seeded {
        assert!(
            stack.emulator.refreshed_access_tokens(&s.sub).len() <= 1,
            "a failed attempt issues no token"
        );
        assert_eq!(stack.grant(&s.sub).await.map(|g| g.status.as_str()), Some("active"));
    }
}

#[tokio::test]
async fn a_malformed_row_is_skipped_counted_and_the_rest_are_refreshed() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(6, DRIVE, 1).await;
    // A row in the grants table that this code did not write: no version, no token.
    stack
        .dynamo()
        .put_item()
        .table_name(&stack.config.common.grants_table)
        .item("sub", aws_sdk_dynamodb::types::AttributeValue::S("9-malformed".into()))
        .item("status", aws_sdk_dynamodb::types::AttributeValue::S("active".into()))
        .item("client_id", aws_sdk_dynamodb::types::AttributeValue::S("x.apps".into()))
        .send()
        .await
        .expect("put a malformed row");
    let job = stack.job(&[("SCAN_PAGE_SIZE", "3"), ("REFRESH_SEGMENTS", "1")]);

    for run in ["2026-11-26T10:00:00Z", "2026-11-26T16:00:00Z"] {
        let report = job
            .run(&cycle(run), "run", no_deadline())
            .await
            .expect("the run goes on");
        assert!(report.complete, "{report:?}");
        assert_eq!((report.refreshed, report.malformed), (6, 1), "{report:?}");
    }
    assert_every_token_is_live(&stack, &seeded).await;
}

#[tokio::test]
async fn a_long_or_looping_drive_listing_stops_at_the_cap_and_is_recorded_as_truncated() {
    let stack = spawn_stack().await;
    let long = stack.seed_grants(2, DRIVE, 10_000).await;
    let job = stack.job(&[("DRIVE_MAX_PAGES", "3"), ("DRIVE_SYNC", "list")]);

    // 10,000 files are 100 pages of 100: the listing stops at the third.
    let report = job
        .run(&cycle("2026-11-26T10:00:00Z"), "run", no_deadline())
        .await
        .expect("run");
    assert_eq!(
        (
            report.refreshed,
            report.drive_truncated,
            report.drive_synced,
            report.drive_calls
        ),
        (2, 2, 0, 6),
        "{report:?}"
    );
    for s in &long {
        let truncated = stack.grant_attribute(&s.sub, "drive_truncated").await;
        assert_eq!(truncated.and_then(|v| v.as_bool().ok().copied()), Some(true));
        let grant = stack.grant(&s.sub).await.expect("grant");
        assert!(grant.last_sync_at.is_none(), "a truncated listing is not a full sync");
        assert!(grant.last_refresh_at.is_some());
    }

    // Drive names the same next page again and again: the listing stops at the repeat.
    stack.emulator.set_drive_page_loop(true);
    let report = job
        .run(&cycle("2026-11-26T16:00:00Z"), "run", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.drive_truncated, report.drive_calls), (2, 4), "{report:?}");
}

#[tokio::test]
async fn an_oversized_drive_page_ends_the_listing_as_truncated_and_an_oversized_token_answer_defers() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, DRIVE, 3).await;
    let job = stack.job(&[("DRIVE_MAX_PAGE_BYTES", "65536"), ("DRIVE_SYNC", "list")]);
    // A 2 MiB page of valid JSON: read no further than 64 KiB.
    let files: Vec<String> = (0..50_000)
        .map(|i| format!(r#"{{"id":"file-{i:08}","name":"state-{i:08}.json"}}"#))
        .collect();
    let page = format!(r#"{{"files":[{}]}}"#, files.join(","));
    assert!(page.len() > 1 << 20);
    stack.emulator.inject_fault(
        Endpoint::Drive,
        Fault {
            status: Some(200),
            body: Some(page),
            count: Some(1),
            ..Fault::default()
        },
    );

    let report = job
        .run(&cycle("2026-11-26T10:00:00Z"), "run", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.refreshed, report.drive_truncated), (1, 1), "{report:?}");

    // A token answer of 100 KiB is no token answer: transient, retried, then deferred.
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(200),
            body: Some(format!(r#"{{"access_token":"{}"}}"#, "a".repeat(100 * 1024))),
            ..Fault::default()
        },
    );
    let report = job
        .run(&cycle("2026-11-26T16:00:00Z"), "run", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.refreshed, report.deferred), (0, 1), "{report:?}");
    stack.emulator.clear_faults();
    assert_every_token_is_live(&stack, &seeded).await;
}

#[tokio::test]
async fn a_restored_table_is_read_with_its_token_binding_and_without_it_the_run_stops_changing_no_grant() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(12, DRIVE, 1).await;
    let original = stack.config.common.grants_table.clone();

    // A point-in-time restore creates the table anew, under another name.
    let restored = format!("{original}-restored");
    let dynamo = stack.dynamo();
    dynamo
        .create_table()
        .table_name(&restored)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sub")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sub")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create the restored table");
    // As the README's restore procedure says, the roles are granted the new table.
    stack.iam.grant_table_as(&restored, "GrantsTable");
    for item in stack.grants().await {
        dynamo
            .put_item()
            .table_name(&restored)
            .set_item(Some(item))
            .send()
            .await
            .expect("copy");
    }

    // Pointed at it without its binding: the tokens do not open, and that is ours to fix.
    let unbound = stack.job(&[("GRANTS_TABLE", &restored)]);
    let stopped = unbound
        .run(&cycle("2026-11-26T10:00:00Z"), "run-1", no_deadline())
        .await;
    let stopped = stopped.expect("a clean stop");
    assert!(
        stopped
            .stopped_for
            .as_deref()
            .is_some_and(|s| s.contains("TOKEN_BINDING")),
        "{stopped:?}"
    );
    for s in &seeded {
        let item = dynamo
            .get_item()
            .table_name(&restored)
            .key("sub", aws_sdk_dynamodb::types::AttributeValue::S(s.sub.clone()))
            .send()
            .await
            .expect("get");
        let item = item.item().expect("the grant is still there");
        assert_eq!(
            item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str),
            Some("active")
        );
        assert_eq!(
            item.get("version").and_then(|v| v.as_n().ok()).map(String::as_str),
            Some("1")
        );
        assert_eq!(
            item.get("failure_count")
                .and_then(|v| v.as_n().ok())
                .map(String::as_str),
            Some("0")
        );
        assert!(item.contains_key("refresh_token"), "no token is deleted");
        assert!(
            !item.contains_key("last_cycle") && !item.contains_key("lease_owner"),
            "left as it was"
        );
    }

    // The documented restore: GRANTS_TABLE names the new table, TOKEN_BINDING stays.
    let restored_job = stack.job(&[("GRANTS_TABLE", &restored), ("TOKEN_BINDING", &original)]);
    let report = restored_job
        .run(&cycle("2026-11-26T16:00:00Z"), "run-2", no_deadline())
        .await
        .expect("run");
    assert_eq!((report.refreshed, report.undecryptable), (12, 0), "{report:?}");
}

#[tokio::test]
async fn one_grant_whose_token_does_not_open_is_left_as_it_is_and_the_run_goes_on() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(4, DRIVE, 1).await;
    // Another user's sealed token copied into the first grant: its binding does not match.
    let foreign = stack
        .grant_attribute(&seeded[1].sub, "refresh_token")
        .await
        .expect("token");
    stack
        .dynamo()
        .update_item()
        .table_name(&stack.config.common.grants_table)
        .key("sub", aws_sdk_dynamodb::types::AttributeValue::S(seeded[0].sub.clone()))
        .update_expression("SET refresh_token = :t")
        .expression_attribute_values(":t", foreign)
        .send()
        .await
        .expect("copy a token");

    let report = stack
        .job(&[])
        .run(&cycle("2026-11-26T10:00:00Z"), "run", no_deadline())
        .await
        .expect("one bad row does not stop the run");

    assert_eq!(
        (report.refreshed, report.undecryptable, report.reconsent_required),
        (3, 1, 0),
        "{report:?}"
    );
    let grant = stack.grant(&seeded[0].sub).await.expect("grant");
    assert_eq!(
        (grant.status.as_str(), grant.version, grant.failure_count),
        ("active", 1, 0)
    );
}

#[tokio::test]
async fn a_listing_that_outlasts_the_deadline_stops_with_it_and_a_rotated_token_is_kept() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(3, DRIVE, 10_000).await;
    stack.emulator.set_refresh_token_rotation(true);
    stack.emulator.inject_fault(
        Endpoint::Drive,
        Fault {
            delay_ms: 1_000,
            ..Fault::default()
        },
    );
    let job = stack.job(&[("DRIVE_MAX_PAGES", "1000"), ("DRIVE_SYNC", "list")]);
    // Long enough for the run to lease every grant on a busy machine; far shorter than
    // the 100 s each listing would take.
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(15);

    let report = job
        .run(&cycle("2026-11-26T10:00:00Z"), "run", stop_at)
        .await
        .expect("run");

    // 100 pages of a second each would take 100 s: every listing ended with the run.
    assert_eq!((report.refreshed, report.drive_truncated), (3, 3), "{report:?}");
    assert!(report.drive_calls < 3 * 100 / 2, "{report:?}");
    assert_eq!(report.rotated_tokens, 3, "{report:?}");
    stack.emulator.clear_faults();
    assert_every_token_is_live(&stack, &seeded).await;
}

#[tokio::test]
async fn a_refresh_answers_scope_replaces_the_stored_set_and_without_drive_the_job_calls_no_drive() {
    let stack = spawn_stack().await;
    let user = stack.seed_grants(1, DRIVE, 1).await.remove(0);
    let job = stack.job(&[("DRIVE_SYNC", "list")]);
    job.run(&cycle("s1"), "a", no_deadline()).await.expect("run");
    let drive_calls = stack.emulator.stats().drive;
    assert!(drive_calls > 0);
    let version = stack.grant(&user.sub).await.expect("grant").version;

    // The user took Drive back at their account's settings: Google's answer says so.
    stack.emulator.set_granted_scopes(&user.sub, NO_DRIVE);
    let report = job.run(&cycle("s2"), "a", no_deadline()).await.expect("run");
    assert_eq!((report.refreshed, report.refresh_only), (1, 1), "{report:?}");
    assert_eq!(
        stack.emulator.stats().drive,
        drive_calls,
        "no Drive call without its scope"
    );
    let grant = stack.grant(&user.sub).await.expect("grant");
    let stored: Vec<&str> = grant.scopes.iter().collect();
    let mut granted: Vec<&str> = NO_DRIVE.split(' ').collect();
    granted.sort_unstable();
    assert_eq!(stored, granted);
    assert!(grant.version > version, "a change of the grant (its scopes event)");

    // An answer without `scope` changes nothing.
    stack.emulator.set_refresh_omits_scope(true);
    stack.emulator.set_granted_scopes(&user.sub, DRIVE);
    job.run(&cycle("s3"), "a", no_deadline()).await.expect("run");
    let kept: Vec<String> = stack
        .grant(&user.sub)
        .await
        .expect("grant")
        .scopes
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(kept, granted);
    // With it, Drive is back.
    stack.emulator.set_refresh_omits_scope(false);
    job.run(&cycle("s4"), "a", no_deadline()).await.expect("run");
    let grant = stack.grant(&user.sub).await.expect("grant");
    assert!(grant.scopes.contains(offline_access::domain::DRIVE_APPDATA_SCOPE));
}
