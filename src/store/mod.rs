//! Grants and short-lived records (DESIGN §4): the ports and their types. The DynamoDB
//! adapter, and with it the tables' schema, is in [`dynamo`].
//!
//! Every write that could race is conditional. A sign-in is two round trips: the claim
//! of its code, then one write that stores the grant and the outcome together. The store
//! alone owns a grant's `version`: both writers (sign-in and the offline job) ask for a
//! change, and the store conditions and increments it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod access;
mod deletion;
mod dynamo;
mod job;
mod lease;
mod operator;
mod risc;

pub use access::{AccessStore, AccessTokenCache, AccessView, CacheEntry, CachedToken, RefreshLease, cache_details};
pub use deletion::{DeletionStart, DeletionStore};
pub use dynamo::{DynamoStore, change_from_record, check_image_invariants};
pub use job::{Checkpoint, JobStore, ScanPage, ScanRequest};
pub use lease::{DriveOutcome, GrantOutcome, Holder, Lease, Recorded};
pub use operator::{GrantPage, OperatorStore, ReencryptCheckpoint};
pub use risc::{AccountState, Applied, RiscStore, event_key};

use crate::crypto::{NewRefreshToken, SealedToken};
use crate::domain::{GoogleSubject, Profile, Scopes, TokenDigests};
use crate::upstream::Upstream;

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    ReconsentRequired,
    Revoked,
    /// The user asked for deletion: unusable at once; the token is still held, sealed,
    /// until Google confirms its revocation (the offline job retries that, never a refresh).
    Revoking,
    /// Deleted at the user's request: a tombstone without tokens or profile, expired by
    /// TTL.
    Deleted,
    /// Google disabled the account (RISC `account-disabled`, hijacking or no reason):
    /// neither refreshed nor served, the token kept sealed until `account-enabled`.
    Suspended,
}

impl GrantStatus {
    pub const ALL: [Self; 6] = [
        Self::Active,
        Self::ReconsentRequired,
        Self::Revoked,
        Self::Revoking,
        Self::Deleted,
        Self::Suspended,
    ];

    /// The status as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::ReconsentRequired => "reconsent_required",
            Self::Revoked => "revoked",
            Self::Revoking => "revoking",
            Self::Deleted => "deleted",
            Self::Suspended => "suspended",
        }
    }
}

/// Why a grant cannot be used, where the code states it (Google's own reasons, such as
/// `invalid_grant:<subtype>`, are kept as Google gave them).
pub mod reasons {
    /// Time-based access ran out (`refresh_token_expires_in` passed).
    pub const TIME_BASED_ACCESS_EXPIRED: &str = "time_based_access_expired";
    /// An active grant holds no refresh token.
    pub const NO_REFRESH_TOKEN: &str = "no_refresh_token";
    /// The user deleted their data (`DELETE /grants/me`).
    pub const USER_DELETED: &str = "user_deleted";
    /// Google revoked the user's tokens (RISC `tokens-revoked`).
    pub const RISC_TOKENS_REVOKED: &str = "risc:tokens-revoked";
    /// Google revoked this refresh token (RISC `token-revoked`).
    pub const RISC_TOKEN_REVOKED: &str = "risc:token-revoked";
    /// Google disabled the account (RISC `account-disabled`).
    pub const RISC_ACCOUNT_DISABLED: &str = "risc:account-disabled";
    /// An operator revoked the grant (`offline-access grants revoke`).
    pub const OPERATOR_REVOKED: &str = "operator_revoked";
    /// Google wants the user to sign in again (`invalid_rapt`): the token is kept.
    pub const AWAITING_SIGN_IN: &str = "invalid_grant:invalid_rapt";
}

/// A level of a grant's health that fails ([`crate::grant::health`]): since when (the end
/// of the first cycle whose retries were spent), and the error's class — never Google's
/// text. Absent while the level is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub since: u64,
    pub error: String,
}

/// An end of a grant that can be predicted, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub at: u64,
    pub reason: String,
}

/// One user's offline-access grant, as stored.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sub: GoogleSubject,
    pub status: GrantStatus,
    pub status_reason: Option<String>,
    /// For a grant Google revoked: what most likely caused it
    /// ([`crate::grant::decide::LikelyCause`]).
    pub likely_cause: Option<String>,
    pub profile: Profile,
    pub email_verified: bool,
    pub scopes: Scopes,
    /// The client the refresh token was issued to (part of its encryption binding).
    pub client_id: String,
    pub refresh_token: Option<SealedToken>,
    /// What Google's `token-revoked` events name the token by; `None` on grants stored
    /// before digests were kept (their `tokens-revoked` still match by `sub`).
    pub token_digests: Option<TokenDigests>,
    /// What Google's security events flagged for review (e.g. `risc:sessions-revoked`).
    pub review_flags: Vec<String>,
    /// Time-based access (Unix seconds): the refresh token stops working then, and the
    /// user must consent again. `None` for lasting access.
    pub refresh_expires_at: Option<u64>,
    /// When the stored refresh token was issued (Unix seconds); `None` on grants stored
    /// before it was kept, where `created_at` stands in.
    pub token_issued_at: Option<u64>,
    /// Which refresh token the grant holds: 1 for the first stored, one more each time
    /// another replaces it (a sign-in's, a rotation's); kept when a token is deleted, so
    /// it only rises. A cached access token names the generation it came from, and an end
    /// of the grant marks its cache item with the generation that ended.
    pub token_gen: u64,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_refresh_at: Option<u64>,
    pub last_sync_at: Option<u64>,
    pub failure_count: u32,
    pub next_attempt_at: Option<u64>,
    /// The refresh level of its health, when it fails (Google does not refresh it).
    pub refresh_failing: Option<Failing>,
    /// The api level of its health, when it fails (the Drive call does not work).
    pub api_failing: Option<Failing>,
    /// How many times the user consented again with a new refresh token (a sign-in that
    /// replaced the stored one): Google keeps 100 live per account and client.
    pub reconsents: u32,
    /// The end the job announced (`GrantExpiring`): when the grant is expected to stop
    /// working, and why ([`crate::grant::health::predicted_end`]). Announced once.
    pub expiring: Option<Expiring>,
    /// What the offline job last recorded: the cycle that took the grant, and what the
    /// last Drive listing found (`DRIVE_SYNC=list`).
    pub last_cycle: Option<String>,
    pub drive_files: Option<u64>,
    pub drive_truncated: bool,
    /// Who holds the grant's lease, and until when (Unix seconds), as read.
    pub lease_owner: Option<String>,
    pub lease_until: Option<u64>,
    /// Optimistic-concurrency version, owned by the store: read it, never set it.
    pub version: u64,
}

impl Grant {
    /// Google held the grant back until its user signs in again (`invalid_rapt`): it keeps
    /// its token, and a sign-in makes it active again.
    pub fn awaits_sign_in(&self) -> bool {
        self.status == GrantStatus::ReconsentRequired
            && self.refresh_token.is_some()
            && self.status_reason.as_deref() == Some(reasons::AWAITING_SIGN_IN)
    }

    /// A grant as a first sign-in creates it: active, version 1, nothing refreshed yet.
    pub fn new_active(
        sub: GoogleSubject,
        client_id: String,
        scopes: Scopes,
        refresh_token: NewRefreshToken,
        profile: Profile,
        email_verified: bool,
        now: u64,
    ) -> Self {
        Self {
            sub,
            status: GrantStatus::Active,
            status_reason: None,
            likely_cause: None,
            profile,
            email_verified,
            scopes,
            client_id,
            refresh_token: Some(refresh_token.sealed),
            token_digests: Some(refresh_token.digests),
            review_flags: Vec::new(),
            refresh_expires_at: None,
            token_issued_at: Some(now),
            token_gen: 1,
            created_at: now,
            updated_at: now,
            last_refresh_at: None,
            last_sync_at: None,
            failure_count: 0,
            next_attempt_at: None,
            refresh_failing: None,
            api_failing: None,
            expiring: None,
            reconsents: 0,
            last_cycle: None,
            drive_files: None,
            drive_truncated: false,
            lease_owner: None,
            lease_until: None,
            version: 1,
        }
    }
}

/// An active grant of user `1` with these scopes, created at `now`, holding the smallest
/// well-formed sealed token (it opens under no key): for unit tests of what is decided
/// from a grant.
#[cfg(test)]
pub(crate) fn sample_grant(scopes: &str, now: u64) -> Grant {
    let mut bytes = vec![1, 0, 1, 7];
    bytes.extend([0; 12 + 16]);
    Grant::new_active(
        GoogleSubject::parse("1").expect("sub"),
        "client".into(),
        Scopes::from_space_delimited(scopes),
        NewRefreshToken {
            sealed: SealedToken::from_bytes(&bytes).expect("sealed form"),
            digests: TokenDigests::of(&crate::domain::RefreshToken::new("1//t".into())),
        },
        Profile::default(),
        false,
        now,
    )
}

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write kept losing races: retry later.
    #[error("the item changed since it was read")]
    Conflict,
    /// A stored item is not in the shape this code writes.
    #[error("stored item is malformed: {0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

impl StoreError {
    /// Whether trying again may succeed: the store was unavailable, throttled, or the write
    /// met another transaction.
    pub fn may_pass(&self) -> bool {
        matches!(self, Self::Upstream(Upstream::Unavailable { .. }))
    }
}

/// The grants table as a port.
pub trait GrantStore: Send + Sync {
    fn load(&self, sub: &GoogleSubject) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    /// Writes a grant that must not exist yet (seeding and imports).
    fn insert(&self, grant: &Grant) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The stored outcome of a sign-in, replayed to a retry of the same code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedOutcome {
    SignedIn {
        sub: String,
        email: Option<String>,
        scopes: Vec<String>,
        offline_access: bool,
    },
    ReconsentRequired,
    InvalidGrant,
    InvalidIdToken,
    /// The exchange named no user Google confirms (no ID token, tokeninfo without `sub`).
    IdentityUnconfirmed,
    /// The app's `idToken` named another user than Google did.
    IdentityMismatch,
}

/// What claiming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We hold the code: do the work, then store the grant, record a refusal, or release.
    /// `code_sent`: an earlier attempt already sent this code to Google and did not
    /// finish, so Google may have redeemed it.
    Claimed { code_sent: bool },
    /// Another invocation holds it right now.
    InProgress,
    /// Google's answer for it is parked, not stored yet (`sign_in::parked`).
    Parked,
    /// It was done before: here is what it answered.
    Done(RecordedOutcome),
}

/// What a sign-in writes about its user.
#[derive(Debug, Clone)]
pub struct SignInGrant {
    pub sub: GoogleSubject,
    pub client_id: String,
    /// What Google granted with this code.
    pub scopes: Scopes,
    pub profile: Profile,
    pub email_verified: bool,
    /// The new refresh token, sealed; `None` when Google sent none (the user had
    /// consented before): the stored one is kept.
    pub refresh_token: Option<NewRefreshToken>,
    /// When the new refresh token stops working, for time-based access (Unix seconds).
    pub refresh_expires_at: Option<u64>,
}

/// One write of a sign-in's grant, as the sign-in rule (`sign_in::rule`) decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantWrite {
    /// The whole grant with the new token, on condition that none is stored.
    PutNew,
    /// The new token over the stored grant, unconditionally: it becomes active with this
    /// code's scopes, no failures and no end of life. The same write ends the cached
    /// access token of the refresh token it replaces: `ends` names that generation when
    /// the refused put returned the stored grant, so no refresh still in flight caches one
    /// of it again.
    ReplaceToken { ends: Option<u64> },
    /// The stored token kept: the profile refreshed and `scopes` recorded, on condition
    /// that the grant is active, holds a token, and is as `expect` says.
    ///
    /// `revives`: the grant waits for this very sign-in (`invalid_rapt`, [`Grant::awaits_sign_in`])
    /// holding this token generation; the write makes it active again and lets that
    /// generation's access tokens be cached again (the hold ended them).
    KeepToken {
        expect: Expect,
        scopes: Scopes,
        revives: Option<u64>,
    },
}

/// What a [`GrantWrite::KeepToken`] expects of the stored grant besides being active with
/// a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Its scopes are exactly these.
    Scopes(Scopes),
    /// It is still at this version.
    Version(u64),
}

/// How the last write went, when it did not.
#[derive(Debug, Clone)]
pub enum Refused {
    /// Its condition failed; the stored grant as it was (`None`: there is none).
    Condition(Option<Box<Grant>>),
    /// Another write touched the grant at the same moment: try the same again.
    Conflict,
}

impl GrantWrite {
    /// The scopes the grant holds once this write is made.
    pub fn scopes<'a>(&'a self, grant: &'a SignInGrant) -> &'a Scopes {
        match self {
            GrantWrite::KeepToken { scopes, .. } => scopes,
            GrantWrite::PutNew | GrantWrite::ReplaceToken { .. } => &grant.scopes,
        }
    }
}

/// How storing a sign-in went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInStored {
    /// Stored, with its outcome recorded for replays. `scopes` are the grant's now: with a
    /// new token, this code's; without one, the union with what the stored token carries.
    Stored { scopes: Scopes },
    /// No refresh token came and no usable one is stored: nothing was written.
    NoRefreshToken,
}

/// A code's claim: which code (the hex SHA-256 of it, never the code itself) and which
/// attempt holds it. Only its holder stores its outcome or releases it, so an attempt that
/// outlived its lease cannot undo the work of the one that took the claim over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimKey {
    pub code: String,
    pub owner: String,
}

impl ClaimKey {
    /// A claim on `code_digest` for a new attempt, under a random owner id.
    pub fn new(code_digest: String) -> Self {
        Self {
            code: code_digest,
            owner: random_owner(),
        }
    }
}

/// A random id for whoever holds a claim or a lease, so that only its holder lets go.
pub fn random_owner() -> String {
    let mut id = [0u8; 16];
    // A failed draw leaves zeros: still an owner, only a less unique one.
    let _ = aws_lc_rs::rand::fill(&mut id);
    hex::encode(id)
}

/// Sign-in's side of the store: the code's claim, then one write.
pub trait SignInStore: Send + Sync {
    /// Claims a code for `lease`; its record expires (TTL) after `window`.
    fn claim(
        &self,
        claim: &ClaimKey,
        now: u64,
        lease: Duration,
        window: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Makes one write of the sign-in rule and records the successful outcome on the
    /// claim, in one round trip; `Err(Refused)` says why the write was not made. Should
    /// the claim be another's by then, the grant is written all the same.
    fn write_grant(
        &self,
        claim: &ClaimKey,
        write: &GrantWrite,
        grant: &SignInGrant,
        now: u64,
        window: Duration,
    ) -> impl Future<Output = Result<Result<(), Refused>, StoreError>> + Send;
    /// Records a final refusal (the code is spent) for replays.
    fn record_refusal(
        &self,
        claim: &ClaimKey,
        outcome: &RecordedOutcome,
        now: u64,
        window: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Lets a later retry start over (the work failed transiently). `code_sent`: the code
    /// went to Google, which the retry's claim will then say.
    fn release(&self, claim: &ClaimKey, code_sent: bool) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks the claim parked (Google's answer waits in the parking queue), kept for
    /// `ttl`: a retry is told to wait instead of spending the code. Only the holder
    /// marks, and only a claim still in progress (the parked answer may be stored first).
    fn park_claim(
        &self,
        claim: &ClaimKey,
        now: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One committed change of a grant, as the table's stream records it: its position and
/// the grant before and after (`None`: no item).
#[derive(Debug, Clone)]
pub struct Change {
    pub sequence_number: String,
    /// When DynamoDB committed it (Unix seconds), as the stream says.
    pub created_at: Option<u64>,
    pub old: Option<Grant>,
    pub new: Option<Grant>,
}

/// A stream record whose images this code cannot read as grants: named by its position
/// and key, never by what the images hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub sequence_number: String,
    pub created_at: Option<u64>,
    /// The grant's key, when the record's keys name one.
    pub sub: Option<String>,
}

/// Whether a refresh answer's time limit (`refresh_expires_at` it implies, if any) is the
/// one the grant holds. Google states the time left each time: the same limit, give or
/// take a minute.
pub fn same_time_limit(answered: Option<u64>, stored: Option<u64>) -> bool {
    match (answered, stored) {
        (None, _) => true,
        (Some(new), Some(old)) => new.abs_diff(old) <= 60,
        (Some(_), None) => false,
    }
}
