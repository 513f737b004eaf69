//! The grant lease, one rule for both of its holders: the offline job (a cycle's lease,
//! `job.rs`) and the access-token function (a user-facing refresh's, `access.rs`).
//!
//! - **Taken** only when nobody holds it at `now`: no lease, an expired one, or one the
//!   grant's cached-token item names as ended (`released`: a routine record ends the lease
//!   in that item alone, without a write to the grant).
//! - **Ended** by its owner only, in the write that records the outcome.
//! - **A token-touching outcome** (a rotated token, a revocation, a tombstone) is written
//!   only while the grant holds the token generation and status leased; if a sign-in
//!   stored another token (or a deletion or suspension began) meanwhile, the outcome is
//!   written again without the token's part (`Superseded`), and a lease that was lost
//!   writes nothing (`LeaseLost`). Every outcome that records something moves `version` on.

use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::deletion::tombstone;
use super::expr::{Placeholders, Update};
use super::schema::{self, grant, n, s};
use crate::grant::decide::LikelyCause;
use crate::store::{DriveOutcome, Grant, GrantOutcome, GrantStatus, Holder, Lease, Recorded, StoreError};

/// The clause "nobody holds the lease at `now`".
pub(super) fn free(p: &mut Placeholders, now: u64, released: Option<&str>) -> String {
    let (until, now) = (p.name(grant::LEASE_UNTIL), p.value(n(now)));
    match released {
        None => format!("(attribute_not_exists({until}) OR {until} < {now})"),
        Some(released) => {
            let (owner, released) = (p.name(grant::LEASE_OWNER), p.value(s(released)));
            format!("(attribute_not_exists({until}) OR {until} < {now} OR {owner} = {released})")
        }
    }
}

/// Takes the lease for `owner` until `until` (the caller's condition says when).
pub(super) fn take(u: &mut Update, owner: &str, until: u64) {
    u.set(grant::LEASE_OWNER, s(owner)).set(grant::LEASE_UNTIL, n(until));
}

/// Lets go of `owner`'s lease, on condition that it is still `owner`'s.
pub(super) fn end(u: &mut Update, owner: &str) {
    let (lease_owner, me) = (u.p.name(grant::LEASE_OWNER), u.p.value(s(owner)));
    u.condition(format!("{lease_owner} = {me}"));
    u.remove(grant::LEASE_OWNER).remove(grant::LEASE_UNTIL);
}

/// Conditions a write of what a newer sign-in would own (the token, the status) on the
/// grant still holding the token and the status leased: a sign-in that stored another
/// token (a new `token_gen`), a deletion or a suspension since the lease wins. A change
/// that owns neither — a security event's flag — never makes the token look superseded.
pub(super) fn on_leased_token(u: &mut Update, leased: &Grant) {
    let token_gen = u.p.name(grant::TOKEN_GEN);
    let same_token = if leased.token_gen == 0 {
        // Stored before generations were counted, and not replaced since.
        format!("attribute_not_exists({token_gen})")
    } else {
        format!("{token_gen} = {}", u.p.value(n(leased.token_gen)))
    };
    let (status, leased_status) = (u.p.name(grant::STATUS), u.p.value(schema::status(leased.status)));
    u.condition(format!("{same_token} AND {status} = {leased_status}"));
}

/// The fields of a deferral: how often it failed, when to try again, and why.
fn record_deferral(u: &mut Update, failure_count: u32, next_attempt_at: u64, reason: &str) {
    u.set(grant::FAILURE_COUNT, n(failure_count))
        .set(grant::NEXT_ATTEMPT_AT, n(next_attempt_at))
        .set(grant::LAST_ERROR, s(reason));
}

/// The update that records `outcome` and ends `holder`'s lease; `leased` is the grant as
/// it was before the lease. `with_version` also writes what a newer sign-in would own
/// (token, status), conditioned on the leased version.
fn outcome_update(leased: &Grant, holder: Holder<'_>, outcome: &GrantOutcome, with_version: bool) -> Update {
    let mut u = Update::default();
    end(&mut u, holder.owner());
    let now = holder.now();
    if let Holder::Cycle(lease) = holder {
        put_back(&mut u, leased, lease, outcome, with_version);
    }
    if !matches!(outcome, GrantOutcome::Released | GrantOutcome::Unopened { .. }) {
        // Every change recorded on the grant is a version of its own: an event it makes
        // has its own (`sub`, `version`). Letting go records nothing.
        u.set(grant::UPDATED_AT, n(now)).increment(grant::VERSION);
    }
    match outcome {
        GrantOutcome::Refreshed {
            new_token,
            refresh_expires_at,
            drive,
            scopes,
        } => {
            u.set(grant::LAST_REFRESH_AT, n(now));
            schema::clear_failing(&mut u, schema::REFRESH_HEALTH, leased.refresh_failing.as_ref());
            if let Some(at) = refresh_expires_at {
                u.set(grant::REFRESH_EXPIRES_AT, n(*at));
            }
            if let Holder::Cycle(_) = holder {
                settle_drive(&mut u, leased, drive, now);
            }
            if let (Some(token), true) = (new_token, with_version) {
                schema::set_token(&mut u, token).set(grant::TOKEN_ISSUED_AT, n(now));
            }
            if let (Some(scopes), true) = (scopes, with_version) {
                u.set(grant::SCOPES, schema::scopes(scopes));
            }
        }
        GrantOutcome::Deferred {
            failure_count,
            next_attempt_at,
            reason,
            error,
        } => {
            record_deferral(&mut u, *failure_count, *next_attempt_at, reason);
            schema::set_failing(
                &mut u,
                schema::REFRESH_HEALTH,
                leased.refresh_failing.as_ref(),
                now,
                error,
            );
        }
        GrantOutcome::Revoked { reason, .. } | GrantOutcome::ReconsentRequired { reason } if with_version => {
            let status = if let GrantOutcome::Revoked { likely_cause, .. } = outcome {
                u.set(grant::LIKELY_CAUSE, s(likely_cause.clone()));
                GrantStatus::Revoked
            } else {
                GrantStatus::ReconsentRequired
            };
            // Either way the stored token no longer works (revoked, run out, or absent):
            // keep nothing that is of no use.
            schema::remove_token(&mut u)
                .set(grant::STATUS, schema::status(status))
                .set(grant::STATUS_REASON, s(reason.clone()));
        }
        GrantOutcome::Reauthenticate { reason } if with_version => {
            // The token is kept: it works again once the user has signed in.
            u.set(grant::STATUS, schema::status(GrantStatus::ReconsentRequired))
                .set(grant::STATUS_REASON, s(reason.clone()))
                .set(grant::LIKELY_CAUSE, s(LikelyCause::ReauthenticationRequired.as_str()));
        }
        GrantOutcome::Deleted { tombstone_ttl } if with_version => tombstone(&mut u, now, *tombstone_ttl),
        GrantOutcome::Deleted { .. }
        | GrantOutcome::Revoked { .. }
        | GrantOutcome::ReconsentRequired { .. }
        | GrantOutcome::Reauthenticate { .. }
        | GrantOutcome::Unopened { .. }
        | GrantOutcome::Released => {}
    }
    if with_version {
        on_leased_token(&mut u, leased);
    }
    u
}

/// A cycle's lease recorded up front what a routine cycle ends with: puts back what did
/// not happen.
fn put_back(u: &mut Update, leased: &Grant, lease: Lease<'_>, outcome: &GrantOutcome, with_version: bool) {
    // A tombstone removes these itself.
    let tombstoned = with_version && matches!(outcome, GrantOutcome::Deleted { .. });
    if !matches!(outcome, GrantOutcome::Refreshed { .. }) && !tombstoned {
        u.set_or_remove(grant::LAST_REFRESH_AT, leased.last_refresh_at.map(n));
    }
    let synced = matches!(
        outcome,
        GrantOutcome::Refreshed {
            drive: DriveOutcome::Reached | DriveOutcome::Synced { truncated: false, .. },
            ..
        }
    );
    if synced {
        u.set(grant::LAST_SYNC_AT, n(lease.now));
    } else if lease.drive_planned && !tombstoned {
        u.set_or_remove(grant::LAST_SYNC_AT, leased.last_sync_at.map(n));
    }
    if matches!(outcome, GrantOutcome::Released | GrantOutcome::Unopened { .. }) {
        // Let go, or a token that does not open: the cycle has not done this grant.
        u.set_or_remove(grant::LAST_CYCLE, leased.last_cycle.clone().map(s));
    }
}

/// A cycle's refresh settles the grant's deferral and its api level of health by how
/// Drive went, and keeps what a listing found.
fn settle_drive(u: &mut Update, leased: &Grant, drive: &DriveOutcome, now: u64) {
    let api = leased.api_failing.as_ref();
    match drive {
        DriveOutcome::Failed {
            failure_count,
            next_attempt_at,
            reason,
            error,
        } => {
            record_deferral(u, *failure_count, *next_attempt_at, reason);
            schema::set_failing(u, schema::API_HEALTH, api, now, error);
        }
        DriveOutcome::Synced { .. } | DriveOutcome::Reached | DriveOutcome::Skipped | DriveOutcome::Refused { .. } => {
            u.set(grant::FAILURE_COUNT, n(0))
                .remove(grant::NEXT_ATTEMPT_AT)
                .remove(grant::LAST_ERROR);
            match drive {
                DriveOutcome::Refused { error } => schema::set_failing(u, schema::API_HEALTH, api, now, error),
                // Not called (no scope, or the day's budget): what was known stays.
                DriveOutcome::Skipped => {}
                _ => schema::clear_failing(u, schema::API_HEALTH, api),
            }
        }
    }
    if let DriveOutcome::Synced { files, truncated } = drive {
        u.set(grant::DRIVE_FILES, n(*files))
            .set(grant::DRIVE_TRUNCATED, AttributeValue::Bool(*truncated));
    }
}

impl DynamoStore {
    /// Records `outcome` and ends `holder`'s lease. A token-touching outcome is written
    /// on the leased version; if a sign-in moved the version meanwhile, it is written
    /// again without the token's part (`Superseded`).
    pub(super) async fn record_outcome(
        &self,
        leased: &Grant,
        holder: Holder<'_>,
        outcome: &GrantOutcome,
    ) -> Result<Recorded, StoreError> {
        let sub = leased.sub.as_str();
        let touches_token = outcome.touches_token();
        if self
            .update_grant(sub, &outcome_update(leased, holder, outcome, touches_token))
            .await?
        {
            if outcome.ends_grant() {
                // Revoked, no longer usable, or deleted: its cached token goes, and no
                // refresh in flight writes it again.
                self.end_cached_access_token(&leased.sub, leased.token_gen, holder.now())
                    .await?;
            }
            return Ok(Recorded::Written);
        }
        if !touches_token {
            return Ok(Recorded::LeaseLost);
        }
        if self
            .update_grant(sub, &outcome_update(leased, holder, outcome, false))
            .await?
        {
            Ok(Recorded::Superseded)
        } else {
            Ok(Recorded::LeaseLost)
        }
    }
}
