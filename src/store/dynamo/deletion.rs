//! Deletion at the user's request (the port is [`crate::store::DeletionStore`]).

use std::time::Duration;

use super::expr::Update;
use super::schema::{self, grant, n, s};
use super::{DynamoStore, Updated};
use crate::domain::GoogleSubject;
use crate::store::{DeletionStart, DeletionStore, Grant, GrantStatus, StoreError, reasons};

/// What turns a grant into a tombstone kept until `now + keep`. The writer adds the
/// version's condition and increment, `updated_at`, and the lease's removal.
pub(super) fn tombstone(u: &mut Update, now: u64, keep: Duration) {
    for attr in grant::PERSONAL_AND_TOKENS {
        u.remove(attr);
    }
    u.set(grant::STATUS, schema::status(GrantStatus::Deleted))
        .set(grant::STATUS_REASON, s(reasons::USER_DELETED))
        .set(grant::EXPIRES_AT, n(now + keep.as_secs()));
}

impl DeletionStore for DynamoStore {
    async fn begin_deletion(&self, sub: &GoogleSubject, now: u64) -> Result<DeletionStart, StoreError> {
        let mut u = Update::default();
        let (key, status) = (u.p.name(grant::SUB), u.p.name(grant::STATUS));
        let deleted = u.p.value(schema::status(GrantStatus::Deleted));
        u.condition(format!("attribute_exists({key}) AND {status} <> {deleted}"));
        u.set(grant::STATUS, schema::status(GrantStatus::Revoking))
            .set(grant::STATUS_REASON, s(reasons::USER_DELETED))
            .set(grant::UPDATED_AT, n(now))
            .increment(grant::VERSION);
        let (started, item) = match self.update_grant_returning(sub.as_str(), &u).await? {
            Updated::Written(item) => (DeletionStart::Started(Box::new(schema::grant_from_item(&item)?)), item),
            Updated::Refused(Some(item)) => (DeletionStart::AlreadyDeleted, item),
            Updated::Refused(None) => return Ok(DeletionStart::NotFound),
        };
        // The cached access token goes at once, and no refresh in flight brings it back:
        // nothing of the user's is served, or kept, again.
        self.end_cached_access_token(sub, schema::token_gen(&item), now).await?;
        Ok(started)
    }

    async fn finish_deletion(&self, revoking: &Grant, now: u64, keep: Duration) -> Result<bool, StoreError> {
        let mut u = Update::default();
        tombstone(&mut u, now, keep);
        u.set(grant::UPDATED_AT, n(now))
            .remove(grant::LEASE_OWNER)
            .remove(grant::LEASE_UNTIL)
            .increment(grant::VERSION);
        // Still the grant being deleted: a sign-in since then made a new one, which stays.
        let (v, expected) = (u.p.name(grant::VERSION), u.p.value(n(revoking.version)));
        u.condition(format!("{v} = {expected}"));
        self.update_grant(revoking.sub.as_str(), &u).await
    }
}
