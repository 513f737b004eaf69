//! A grant's health (DESIGN §17, issue 22) as the offline job keeps it, against moto and
//! the Google emulator: the refresh level fails only once a cycle's retries are spent and
//! heals with the next refresh; Drive's `domainPolicy` fails the api level of that user
//! alone without deferring the grant; `insufficientPermissions` takes Drive off its scopes;
//! a healthy grant carries no attribute of health.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic is a failed test"
)]

use aws_sdk_dynamodb::types::AttributeValue;
use google_emulator::{DriveReason, Endpoint, Fault};
use offline_access::job::CycleId;
use test_support::{no_deadline, spawn_stack};

const DRIVE: &str = "https://www.googleapis.com/auth/drive.appdata";

fn cycle(name: &str) -> CycleId {
    CycleId::parse(name).expect("cycle")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

const HEALTH_ATTRIBUTES: [&str; 4] = ["rf_since", "rf_err", "api_since", "api_err"];

#[tokio::test]
async fn the_refresh_level_fails_once_a_cycles_retries_are_spent_and_heals_with_the_next_refresh() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, &format!("openid {DRIVE}"), 1).await;
    let job = stack.job(&[("RETRY_MAX_ATTEMPTS", "3")]);
    let healthy = job.run(&cycle("c0"), "a", no_deadline()).await.expect("run");
    assert_eq!(healthy.refreshed, 2);
    for s in &seeded {
        for name in HEALTH_ATTRIBUTES {
            assert!(
                stack.grant_attribute(&s.sub, name).await.is_none(),
                "a healthy grant has no {name}"
            );
        }
    }

    // A blip the cycle's own retries absorb is no failure.
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(503),
            count: Some(1),
            ..Fault::default()
        },
    );
    let blip = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");
    assert_eq!((blip.refreshed, blip.deferred, blip.retries), (2, 0, 1), "{blip:?}");
    assert!(
        stack
            .grant(&seeded[0].sub)
            .await
            .expect("grant")
            .refresh_failing
            .is_none()
    );

    // An outage that outlives them: failing since this cycle, as "unavailable".
    stack.emulator.inject_fault(
        Endpoint::Token,
        Fault {
            status: Some(500),
            ..Fault::default()
        },
    );
    let before = now();
    let down = job.run(&cycle("c2"), "a", no_deadline()).await.expect("run");
    assert_eq!(down.deferred, 2, "{down:?}");
    let grant = stack.grant(&seeded[0].sub).await.expect("grant");
    let failing = grant.refresh_failing.clone().expect("the refresh level fails");
    assert!(failing.since >= before && failing.since <= now(), "{failing:?}");
    assert_eq!(failing.error, "unavailable");
    assert!(grant.last_refresh_at.is_some(), "when it last worked is kept");

    // Still failing a cycle later: the time it began is kept.
    for s in &seeded {
        stack
            .set_grant_attributes(&s.sub, &[("next_attempt_at", Some(AttributeValue::N("0".into())))])
            .await;
    }
    let still = job.run(&cycle("c3"), "a", no_deadline()).await.expect("run");
    assert_eq!(still.deferred, 2);
    let again = stack.grant(&seeded[0].sub).await.expect("grant");
    assert_eq!(again.refresh_failing.as_ref().map(|f| f.since), Some(failing.since));
    assert_eq!(again.failure_count, 2);

    // Google answers again: the next refresh ends it, and nothing of it is left.
    stack.emulator.clear_faults();
    for s in &seeded {
        stack
            .set_grant_attributes(&s.sub, &[("next_attempt_at", Some(AttributeValue::N("0".into())))])
            .await;
    }
    let healed = job.run(&cycle("c4"), "a", no_deadline()).await.expect("run");
    assert_eq!(healed.refreshed, 2, "{healed:?}");
    for s in &seeded {
        let grant = stack.grant(&s.sub).await.expect("grant");
        assert!(grant.refresh_failing.is_none() && grant.failure_count == 0);
        for name in HEALTH_ATTRIBUTES {
            assert!(
                stack.grant_attribute(&s.sub, name).await.is_none(),
                "{name} left behind"
            );
        }
    }
}

#[tokio::test]
async fn domain_policy_fails_the_api_level_of_that_user_alone_and_defers_nothing() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, &format!("openid {DRIVE}"), 1).await;
    let (barred, free) = (&seeded[0].sub, &seeded[1].sub);
    stack.emulator.refuse_drive(Some(barred), DriveReason::DomainPolicy);
    let job = stack.job(&[]);

    let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");

    assert_eq!(
        (
            report.refreshed,
            report.drive_refused,
            report.deferred,
            report.stopped_for.as_deref()
        ),
        (2, 1, 0, None),
        "{report:?}"
    );
    let grant = stack.grant(barred).await.expect("grant");
    let api = grant.api_failing.clone().expect("the api level fails");
    assert_eq!(api.error, "domain_policy");
    assert!(grant.refresh_failing.is_none(), "the refresh works");
    assert_eq!((grant.failure_count, grant.next_attempt_at), (0, None), "not deferred");
    assert!(grant.last_sync_at.is_none(), "Drive never answered for this user");
    let other = stack.grant(free).await.expect("grant");
    assert!(other.api_failing.is_none() && other.last_sync_at.is_some());

    // The administrator lifts the policy: the next cycle's Drive call heals the level.
    stack.emulator.clear_drive_refusals();
    let next = job.run(&cycle("c2"), "a", no_deadline()).await.expect("run");
    assert_eq!((next.refreshed, next.drive_refused), (2, 0));
    let grant = stack.grant(barred).await.expect("grant");
    assert!(grant.api_failing.is_none() && grant.last_sync_at.is_some());
    assert!(stack.grant_attribute(barred, "api_since").await.is_none());
}

#[tokio::test]
async fn insufficient_permissions_takes_drive_off_the_grants_scopes_and_drive_is_not_called_again() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(1, &format!("openid {DRIVE}"), 1).await;
    let sub = &seeded[0].sub;
    stack
        .emulator
        .refuse_drive(Some(sub), DriveReason::InsufficientPermissions);
    // Google's refresh answer still names the scope: Drive's refusal is what is known.
    stack.emulator.set_refresh_omits_scope(true);
    let job = stack.job(&[]);

    let report = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");
    assert_eq!(
        (report.refreshed, report.refresh_only, report.deferred),
        (1, 1, 0),
        "{report:?}"
    );
    let grant = stack.grant(sub).await.expect("grant");
    assert!(!grant.scopes.contains(DRIVE), "{:?}", grant.scopes);
    assert!(grant.scopes.contains("openid"));
    assert!(grant.api_failing.is_none(), "no Drive work is owed: not failing");

    let drive_calls = stack.emulator.stats().drive;
    let next = job.run(&cycle("c2"), "a", no_deadline()).await.expect("run");
    assert_eq!(next.refreshed, 1);
    assert_eq!(
        stack.emulator.stats().drive,
        drive_calls,
        "no Drive call without its scope"
    );
}

#[tokio::test]
async fn a_consent_screen_in_testing_is_announced_three_days_before_its_seventh_day() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, &format!("openid {DRIVE}"), 0).await;
    let basic = stack.seed_grants(1, "openid email profile", 0).await;
    let issued = now() - 5 * 86_400;
    for s in seeded.iter().chain(&basic) {
        stack
            .set_grant_attributes(
                &s.sub,
                &[("token_issued_at", Some(AttributeValue::N(issued.to_string())))],
            )
            .await;
    }
    // Published (the default): nothing to announce.
    let published = stack.job(&[]);
    published.run(&cycle("c1"), "a", no_deadline()).await.expect("run");
    assert!(stack.grant(&seeded[0].sub).await.expect("grant").expiring.is_none());

    let testing = stack.job(&[("GOOGLE_CONSENT_TESTING", "true")]);
    testing.run(&cycle("c2"), "a", no_deadline()).await.expect("run");
    for s in &seeded {
        let grant = stack.grant(&s.sub).await.expect("grant");
        let expiring = grant.expiring.expect("announced");
        assert_eq!(
            (expiring.at, expiring.reason.as_str()),
            (issued + 7 * 86_400, "consent_screen_in_testing")
        );
    }
    let version = stack.grant(&seeded[0].sub).await.expect("grant").version;
    assert!(
        stack.grant(&basic[0].sub).await.expect("grant").expiring.is_none(),
        "name, email and profile do not end in Testing"
    );
    testing.run(&cycle("c3"), "a", no_deadline()).await.expect("run");
    assert_eq!(
        stack.grant(&seeded[0].sub).await.expect("grant").version,
        version,
        "not again: a routine cycle writes the grant no more"
    );
}

#[tokio::test]
async fn drive_probe_every_calls_drive_every_nth_cycle_and_refreshes_every_cycle() {
    let stack = spawn_stack().await;
    let seeded = stack.seed_grants(2, &format!("openid {DRIVE}"), 1).await;
    // Four cycles of six hours: Drive is due once its last call is 21 hours old.
    let job = stack.job(&[("DRIVE_PROBE_EVERY", "4"), ("CYCLE_MINUTES", "360")]);

    let first = job.run(&cycle("c1"), "a", no_deadline()).await.expect("run");
    assert_eq!((first.refreshed, first.drive_synced), (2, 2), "never probed: due");
    let drive_calls = stack.emulator.stats().drive;
    let second = job.run(&cycle("c2"), "a", no_deadline()).await.expect("run");
    assert_eq!(
        (second.refreshed, second.drive_synced, second.refresh_only),
        (2, 0, 2),
        "{second:?}"
    );
    assert_eq!(stack.emulator.stats().drive, drive_calls, "no Drive call this cycle");
    let synced = stack.grant(&seeded[0].sub).await.expect("grant").last_sync_at;

    // 21 hours on for one grant: its probe is due again, the other's not.
    let other = stack.grant(&seeded[1].sub).await.expect("grant").last_sync_at;
    let long_ago = synced.expect("synced") - 21 * 3_600;
    stack
        .set_grant_attributes(
            &seeded[0].sub,
            &[("last_sync_at", Some(AttributeValue::N(long_ago.to_string())))],
        )
        .await;
    let third = job.run(&cycle("c3"), "a", no_deadline()).await.expect("run");
    assert_eq!((third.refreshed, third.drive_synced), (2, 1), "{third:?}");
    let probed = stack.grant(&seeded[0].sub).await.expect("grant");
    assert!(probed.last_sync_at > Some(long_ago) && probed.api_failing.is_none());
    assert_eq!(
        stack.grant(&seeded[1].sub).await.expect("grant").last_sync_at,
        other,
        "the other grant's last probe stands"
    );
}
