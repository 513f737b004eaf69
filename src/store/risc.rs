//! What Google's security events (RISC, DESIGN §12) change, as a port.
//!
//! Every change is one conditional write of one grant, so an event applied twice, or
//! racing a sign-in, a refresh or a deletion, leaves the grant as one application would.

use std::time::Duration;

use super::StoreError;
use crate::domain::{GoogleSubject, TokenLookup};

/// What a change found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Changed,
    /// The grant's state does not call for it (already so, being deleted, or a later
    /// event already decided), and it was left alone.
    Unchanged,
    /// No grant for this user.
    NoGrant,
}

/// Google's word on an account's state, with when Google said it (the event's `iat`):
/// an older word never overrides a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// `account-disabled`: an active grant becomes `suspended`.
    Disabled,
    /// `account-enabled`: a `suspended` grant is active again.
    Enabled,
}

/// The store operations of the RISC receiver.
pub trait RiscStore: Send + Sync {
    /// Whether an event (by [`event_key`]) was applied before.
    fn event_seen(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records an event as applied, kept for `keep` (Google delivers again for days).
    fn record_event(&self, key: &str, now: u64, keep: Duration) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The grants whose stored refresh token has this digest.
    fn grants_by_token(
        &self,
        lookup: &TokenLookup,
    ) -> impl Future<Output = Result<Vec<GoogleSubject>, StoreError>> + Send;
    /// Deletes the grant's refresh token, its digests and its cached access token, and
    /// marks it `revoked` with `reason`. With `only_if`, only while the stored token is
    /// still the one that digest names. A grant being deleted, or deleted, is left alone.
    fn revoke_tokens(
        &self,
        sub: &GoogleSubject,
        reason: &str,
        only_if: Option<&TokenLookup>,
        now: u64,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Applies Google's word on the account, unless a newer word was applied already.
    fn set_account_state(
        &self,
        sub: &GoogleSubject,
        state: AccountState,
        said_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Adds `flag` to the grant's flags for an operator's review.
    fn flag_for_review(
        &self,
        sub: &GoogleSubject,
        flag: &str,
        now: u64,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Keeps the last verification event's `state`, for the operator who asked for it.
    fn record_verification(&self, state: &str, now: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The key an event is de-duplicated by: the SHA-256 of its `jti`, so a key has a
/// bounded size whatever Google sends.
pub fn event_key(jti: &str) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    hex::encode(digest(&SHA256, jti.as_bytes()))
}
