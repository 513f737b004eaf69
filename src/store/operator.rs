//! What the operator CLI (DESIGN §14) reads and writes, as a port: listing grants, the
//! cached access token of one, and re-wrapping sealed tokens in place.

use super::{CachedToken, Grant, GrantStatus, StoreError};
use crate::crypto::SealedToken;
use crate::domain::GoogleSubject;

/// One page of grants and where the next begins.
#[derive(Debug, Clone, Default)]
pub struct GrantPage {
    pub grants: Vec<Grant>,
    /// The `sub`s of rows on the page that could not be read: skipped, not fatal.
    pub malformed: Vec<String>,
    /// The `sub` to start the next page after; `None` at the end of the table.
    pub next: Option<String>,
}

/// Where a re-encryption stands: the key it re-wraps under and the last grant done, so
/// a run that stopped resumes there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptCheckpoint {
    pub target_key: String,
    pub after: Option<String>,
    pub scanned: u64,
    pub refresh_tokens: u64,
    pub access_tokens: u64,
    pub changed_meanwhile: u64,
    /// Tokens that did not open (tampered, or under a key not configured): left as they
    /// are, and logged by `sub`.
    pub unopened: u64,
    /// Rows that could not be read as grants: skipped, and logged by `sub`.
    pub malformed: u64,
}

/// The operator's store operations.
pub trait OperatorStore: Send + Sync {
    /// Grants in key order, `limit` read at a time, starting after `after`; with `status`,
    /// only those (filtered by DynamoDB, so a page may hold fewer).
    fn grants_page(
        &self,
        after: Option<&str>,
        status: Option<GrantStatus>,
        limit: i32,
    ) -> impl Future<Output = Result<GrantPage, StoreError>> + Send;
    /// The grant's cached access token, if one is held.
    fn cached_access_token(
        &self,
        sub: &GoogleSubject,
    ) -> impl Future<Output = Result<Option<CachedToken>, StoreError>> + Send;
    /// Replaces the grant's sealed refresh token by `new`, if it is still `old`; `false`
    /// when a sign-in or a refresh stored another meanwhile (which stays).
    fn rewrap_refresh_token(
        &self,
        sub: &GoogleSubject,
        old: &SealedToken,
        new: &SealedToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The same for the cached access token.
    fn rewrap_access_token(
        &self,
        sub: &GoogleSubject,
        old: &SealedToken,
        new: &SealedToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn reencrypt_checkpoint(&self) -> impl Future<Output = Result<Option<ReencryptCheckpoint>, StoreError>> + Send;
    fn save_reencrypt_checkpoint(
        &self,
        checkpoint: &ReencryptCheckpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn clear_reencrypt_checkpoint(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
