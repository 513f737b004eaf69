//! The grant lease, one rule for both of its holders: the offline job (a cycle's lease,
//! `job.rs`) and the access-token function (a user-facing refresh's, `access.rs`).
//!
//! - **Taken** only when nobody holds it at `now`: no lease, an expired one, or one the
//!   grant's cached-token item names as ended (`released`: a routine record ends the lease
//!   in that item alone, without a write to the grant).
//! - **Ended** by its owner only, in the write that records the outcome.
//! - **A token-touching outcome** (a rotated token, a revocation, a tombstone) is written
//!   only while the grant's version is still the one leased; if a sign-in stored a newer
//!   grant meanwhile, the outcome is written again without the token's part
//!   (`Superseded`), and a lease that was lost writes nothing (`LeaseLost`).

use super::DynamoStore;
use super::expr::{Placeholders, Update};
use super::schema::{grant, n, s};
use crate::store::{Grant, Recorded, StoreError};

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

/// Conditions the write on the version leased, and moves the version on: a write of what
/// a newer sign-in would own (the token, the status).
pub(super) fn on_leased_version(u: &mut Update, leased: &Grant) {
    let (version, leased_version) = (u.p.name(grant::VERSION), u.p.value(n(leased.version)));
    u.condition(format!("{version} = {leased_version}"));
    u.increment(grant::VERSION);
}

impl DynamoStore {
    /// Records an outcome and ends the lease: `update(true)` writes it all on the leased
    /// version when it `touches_token`; if a sign-in moved the version meanwhile,
    /// `update(false)` records it without the token's part.
    pub(super) async fn end_lease_recording(
        &self,
        leased: &Grant,
        touches_token: bool,
        update: impl Fn(bool) -> Update,
    ) -> Result<Recorded, StoreError> {
        let sub = leased.sub.as_str();
        if self.update_grant(sub, &update(touches_token)).await? {
            return Ok(Recorded::Written);
        }
        if !touches_token {
            return Ok(Recorded::LeaseLost);
        }
        if self.update_grant(sub, &update(false)).await? {
            Ok(Recorded::Superseded)
        } else {
            Ok(Recorded::LeaseLost)
        }
    }
}
