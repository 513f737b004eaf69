//! Deleting a user's grant at their request (DESIGN §12), as a port.
//!
//! Two steps around Google's revocation: the grant is first marked `revoking` (unusable
//! at once, its token still sealed for the revocation), then replaced by a tombstone — no
//! tokens, no profile; status `deleted`, the reason and the time; expired by TTL — once
//! Google confirms. Should Google be unreachable, the grant stays `revoking`, and the
//! offline job retries the revocation (never a refresh) and writes the tombstone.

use std::time::Duration;

use super::{Grant, StoreError};
use crate::domain::GoogleSubject;

/// What starting a deletion found.
#[derive(Debug, Clone)]
pub enum DeletionStart {
    /// Now `revoking`: the grant as the write left it, with its sealed token if any.
    Started(Box<Grant>),
    /// A tombstone: deleted before.
    AlreadyDeleted,
    /// No grant for this user.
    NotFound,
}

/// The deletion's store operations.
pub trait DeletionStore: Send + Sync {
    /// Marks the grant `revoking` and drops its cached access token.
    fn begin_deletion(
        &self,
        sub: &GoogleSubject,
        now: u64,
    ) -> impl Future<Output = Result<DeletionStart, StoreError>> + Send;
    /// Replaces the grant by a tombstone kept for `keep`, if it is still the version that
    /// `begin_deletion` returned; `false` when a sign-in made it a new grant meanwhile.
    fn finish_deletion(
        &self,
        revoking: &Grant,
        now: u64,
        keep: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
