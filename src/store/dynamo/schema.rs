//! The tables' schema: every attribute name, key format and stored spelling, and the one
//! way a failed condition is recognised. No other file names stored data.
//!
//! Grants table (`GRANTS_TABLE`): partition key `sub`, one item a grant.
//! State table (`STATE_TABLE`): partition key `pk`, TTL attribute `expires_at`; sign-in
//! claims and outcomes (`signin#<sha-256 of the code>`), the job's cycle markers
//! (`cycle#<cycle>`) and checkpoints (`cycle#<cycle>#segment#<n>`), and each grant's
//! cached access token (`access#<sub>`, expiring with the token), the security events
//! applied (`risc#<sha-256 of the jti>`), the last RISC verification
//! (`risc-verification`) and the operator's re-encryption checkpoint (`reencrypt`).

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::expr::Update;
use crate::crypto::{NewRefreshToken, SealedToken};
use crate::domain::{Email, GoogleSubject, Profile, Scopes, TokenDigests};
use crate::store::{Grant, GrantStatus, StoreError};

/// A stored item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Attribute names of a grant item.
pub(super) mod grant {
    pub const SUB: &str = "sub";
    pub const STATUS: &str = "status";
    pub const STATUS_REASON: &str = "status_reason";
    /// For a revoked grant: what most likely caused it.
    pub const LIKELY_CAUSE: &str = "likely_cause";
    pub const EMAIL: &str = "email";
    pub const EMAIL_VERIFIED: &str = "email_verified";
    pub const NAME: &str = "name";
    pub const GIVEN_NAME: &str = "given_name";
    pub const FAMILY_NAME: &str = "family_name";
    pub const PICTURE: &str = "picture";
    pub const LOCALE: &str = "locale";
    /// Space-delimited, sorted: the same set always has the same spelling, so a
    /// condition can compare it.
    pub const SCOPES: &str = "scopes";
    pub const CLIENT_ID: &str = "client_id";
    /// The sealed refresh token, in `crypto`'s one stored form.
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// The refresh token's digests ([`crate::domain::TokenDigests`], as bytes), each the
    /// key of a sparse index: written and removed with the token. Short names: every byte
    /// of a grant item is billed on each of the job's writes, and the item stays under
    /// the 1 KB of one write unit.
    pub const TOKEN_PREFIX_DIGEST: &str = "t_prefix";
    pub const TOKEN_HASH: &str = "t_hash";
    /// The indexes over them.
    pub const BY_TOKEN_PREFIX: &str = "by-token-prefix";
    pub const BY_TOKEN_HASH: &str = "by-token-hash";
    /// What Google's security events flagged for an operator's review (a string set).
    pub const REVIEW_FLAGS: &str = "review_flags";
    /// The `iat` of the last account-disabled or account-enabled event applied, so an
    /// older one delivered late cannot undo a newer one.
    pub const ACCOUNT_EVENT_AT: &str = "account_event_at";
    /// Time-based access: when the refresh token stops working (Unix seconds).
    pub const REFRESH_EXPIRES_AT: &str = "refresh_expires_at";
    /// When the stored refresh token was issued.
    pub const TOKEN_ISSUED_AT: &str = "token_issued_at";
    /// The stored refresh token's generation ([`crate::store::Grant::token_gen`]); a
    /// tombstone keeps it.
    pub const TOKEN_GEN: &str = "token_gen";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const LAST_REFRESH_AT: &str = "last_refresh_at";
    pub const LAST_SYNC_AT: &str = "last_sync_at";
    pub const DRIVE_FILES: &str = "drive_files";
    /// The last listing stopped before its end; `last_sync_at` is the last full one.
    pub const DRIVE_TRUNCATED: &str = "drive_truncated";
    pub const FAILURE_COUNT: &str = "failure_count";
    pub const NEXT_ATTEMPT_AT: &str = "next_attempt_at";
    pub const LAST_ERROR: &str = "last_error";
    /// A failing level of the grant's health ([`crate::store::Failing`]): since when, and
    /// the error's class. Short names, absent while healthy: a healthy grant carries none.
    pub const REFRESH_FAILING_SINCE: &str = "rf_since";
    pub const REFRESH_FAILING_ERROR: &str = "rf_err";
    pub const API_FAILING_SINCE: &str = "api_since";
    pub const API_FAILING_ERROR: &str = "api_err";
    /// The end announced by `GrantExpiring` (Unix seconds), and why: absent until one
    /// is near.
    pub const EXPIRING_AT: &str = "exp_at";
    pub const EXPIRING_REASON: &str = "exp_why";
    /// Sign-ins that replaced the stored refresh token with a new one (absent: none).
    pub const RECONSENTS: &str = "reconsents";
    /// Optimistic concurrency: every write that changes the token or the status adds one.
    pub const VERSION: &str = "version";
    pub const LEASE_OWNER: &str = "lease_owner";
    pub const LEASE_UNTIL: &str = "lease_until";
    /// The last cycle of the offline job that did this grant.
    pub const LAST_CYCLE: &str = "last_cycle";
    /// A tombstone's TTL (the grants table's TTL attribute).
    pub const EXPIRES_AT: &str = "expires_at";
    /// What a tombstone removes: every token, the profile, the scopes and the job's
    /// bookkeeping. It keeps `sub`, the status, its reason, `client_id`, the times and the
    /// version (and the lease, which its writer removes).
    pub const PERSONAL_AND_TOKENS: [&str; 30] = [
        REFRESH_TOKEN,
        TOKEN_PREFIX_DIGEST,
        TOKEN_HASH,
        REVIEW_FLAGS,
        ACCOUNT_EVENT_AT,
        REFRESH_EXPIRES_AT,
        TOKEN_ISSUED_AT,
        EMAIL,
        EMAIL_VERIFIED,
        NAME,
        GIVEN_NAME,
        FAMILY_NAME,
        PICTURE,
        LOCALE,
        SCOPES,
        LIKELY_CAUSE,
        LAST_REFRESH_AT,
        LAST_SYNC_AT,
        DRIVE_FILES,
        DRIVE_TRUNCATED,
        FAILURE_COUNT,
        NEXT_ATTEMPT_AT,
        LAST_ERROR,
        REFRESH_FAILING_SINCE,
        REFRESH_FAILING_ERROR,
        API_FAILING_SINCE,
        API_FAILING_ERROR,
        EXPIRING_AT,
        EXPIRING_REASON,
        RECONSENTS,
    ];
}

/// Attribute names of a state-table item.
pub(super) mod state {
    pub const PK: &str = "pk";
    pub const EXPIRES_AT: &str = "expires_at";
    /// A sign-in claim: `in_progress` while held, `done` with its outcome, `parked` while
    /// Google's answer waits to be stored.
    pub const STATE: &str = "state";
    pub const IN_PROGRESS: &str = "in_progress";
    pub const DONE: &str = "done";
    /// Google's answer for the code waits in the parking queue (`sign_in::parked`).
    pub const PARKED: &str = "parked";
    pub const OUTCOME: &str = "outcome";
    pub const LEASE_UNTIL: &str = "lease_until";
    /// Which attempt holds the claim.
    pub const OWNER: &str = "owner";
    /// An attempt sent the code to Google and did not finish: Google may have redeemed it.
    pub const CODE_SENT: &str = "code_sent";
    /// Cycle markers and checkpoints.
    pub const FINISHED: &str = "done";
    pub const FINISHED_AT: &str = "finished_at";
    pub const START: &str = "start";
    /// A cached access token, sealed, and what goes with it.
    pub const ACCESS_TOKEN: &str = "access_token";
    pub const TOKEN_EXPIRES_AT: &str = "token_expires_at";
    /// Space-delimited, sorted, as on a grant.
    pub const SCOPES: &str = "scopes";
    pub const OBTAINED_AT: &str = "obtained_at";
    /// The grant's time-based access ends then: only on a cached token of such a grant.
    pub const GRANT_ENDS_AT: &str = "grant_ends_at";
    /// The offline job's lease that the cached token's write ended (a routine refresh).
    pub const RELEASED_LEASE: &str = "released_lease";
    /// The grant's token generation the cached token came from.
    pub const GEN: &str = "gen";
    /// A marker, in place of a cached token: the grant's generation that ended (revoked,
    /// deleted, suspended); no token of it, or of an older one, is cached again.
    pub const ENDED_GEN: &str = "ended_gen";
    /// The last user-facing refresh that failed transiently.
    pub const FAILED_AT: &str = "failed_at";
    /// The end of Google's `Retry-After` for that failure: no caller goes to Google before.
    pub const RETRY_AT: &str = "retry_at";
    /// A security event applied (`risc#<sha-256 of its jti>`), and when.
    pub const APPLIED_AT: &str = "applied_at";
    /// The last RISC verification event: its `state` and when it came.
    pub const VERIFICATION_STATE: &str = "verification_state";
    pub const RECEIVED_AT: &str = "received_at";
    /// A re-encryption's checkpoint: the key it re-wraps under, the last grant done and
    /// its counts.
    pub const TARGET_KEY: &str = "target_key";
    pub const AFTER: &str = "after";
    pub const SCANNED: &str = "scanned";
    pub const REFRESH_TOKENS: &str = "refresh_tokens";
    pub const ACCESS_TOKENS: &str = "access_tokens";
    pub const CHANGED_MEANWHILE: &str = "changed_meanwhile";
    pub const UNOPENED: &str = "unopened";
    pub const MALFORMED: &str = "malformed";
    /// Google quota units claimed on one quota day (`quota#<day>`).
    pub const UNITS: &str = "units";
}

/// The state-table key of the operator's re-encryption checkpoint.
pub(super) const REENCRYPT_KEY: &str = "reencrypt";

/// The state-table key of an applied security event.
pub(super) fn security_event_key(event_key: &str) -> String {
    format!("risc#{event_key}")
}

/// The state-table key of the last RISC verification event.
pub(super) const RISC_VERIFICATION_KEY: &str = "risc-verification";

/// The state-table key of a sign-in claim, from the hex SHA-256 of its code.
pub(super) fn sign_in_key(code_digest_hex: &str) -> String {
    format!("signin#{code_digest_hex}")
}

pub(super) fn cycle_key(cycle: &str) -> String {
    format!("cycle#{cycle}")
}

/// The state-table key of a grant's cached access token.
pub(super) fn access_key(sub: &str) -> String {
    format!("access#{sub}")
}

/// The state-table key of a quota day's count of units.
pub(super) fn quota_key(day: &str) -> String {
    format!("quota#{day}")
}

pub(super) fn checkpoint_key(cycle: &str, segment: u32) -> String {
    format!("cycle#{cycle}#segment#{segment}")
}

/// The stored spelling of a status.
pub(super) fn status(status: GrantStatus) -> AttributeValue {
    s(status.as_str())
}

fn parse_status(raw: &str) -> Option<GrantStatus> {
    GrantStatus::ALL.into_iter().find(|s| s.as_str() == raw)
}

/// The cancellation reason of a transaction's item whose condition failed.
pub(super) const CANCELLED_BY_CONDITION: &str = "ConditionalCheckFailed";
/// The cancellation reason of an item another transaction was writing at the same time.
pub(super) const CANCELLED_BY_CONFLICT: &str = "TransactionConflict";
/// The reasons a transaction is cancelled for throttling (one of its items' table or
/// partition was over its capacity): a failure that may pass.
pub(super) const CANCELLED_BY_THROTTLING: [&str; 3] = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// Whether a DynamoDB error is a failed condition (a lost race or a refused state), as
/// opposed to a failure of the service.
pub(super) fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Where Google's scope URLs (all but the identity scopes) begin.
const GOOGLE_SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// The scopes Google names by a bare word.
const BARE_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// Scopes as stored: space-delimited, each of Google's scope URLs without the prefix they
/// all share (`drive.appdata` for `https://www.googleapis.com/auth/drive.appdata`). Four
/// scopes take some 60 bytes instead of 155, which keeps a grant with a long real profile
/// inside the 1 KB of one write unit. [`read_scopes`] reads both forms.
pub(super) fn scopes(scopes: &Scopes) -> AttributeValue {
    let compact: Vec<&str> = scopes
        .iter()
        .map(|scope| {
            scope
                .strip_prefix(GOOGLE_SCOPE_PREFIX)
                .filter(|rest| !rest.is_empty() && !rest.contains(':') && !BARE_SCOPES.contains(rest))
                .unwrap_or(scope)
        })
        .collect();
    s(compact.join(" "))
}

/// The scopes of a stored `scopes` attribute: a word with no `:` that is not one of the
/// identity scopes is one of Google's scope URLs without its prefix (items written before
/// the compact form hold whole URLs, read as they are).
pub(super) fn read_scopes(stored: Option<String>) -> Scopes {
    let stored = stored.unwrap_or_default();
    stored
        .split_ascii_whitespace()
        .map(|word| {
            if word.contains(':') || BARE_SCOPES.contains(&word) {
                word.to_owned()
            } else {
                format!("{GOOGLE_SCOPE_PREFIX}{word}")
            }
        })
        .collect()
}

pub(super) fn bytes(value: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

pub(super) fn binary(item: &Item, name: &str) -> Option<Vec<u8>> {
    item.get(name).and_then(|v| v.as_b().ok()).map(|b| b.as_ref().to_vec())
}

pub(super) fn sealed(token: &SealedToken) -> AttributeValue {
    AttributeValue::B(Blob::new(token.to_bytes()))
}

/// SETs a new refresh token: sealed, with its digests.
pub(super) fn set_token<'u>(u: &'u mut Update, token: &NewRefreshToken) -> &'u mut Update {
    u.increment(grant::TOKEN_GEN)
        .set(grant::REFRESH_TOKEN, sealed(&token.sealed))
        .set(grant::TOKEN_PREFIX_DIGEST, bytes(&token.digests.prefix))
        .set(grant::TOKEN_HASH, bytes(&token.digests.double_sha512))
}

/// REMOVEs the refresh token and its digests.
pub(super) fn remove_token(u: &mut Update) -> &mut Update {
    u.remove(grant::REFRESH_TOKEN)
        .remove(grant::TOKEN_PREFIX_DIGEST)
        .remove(grant::TOKEN_HASH)
}

pub(super) fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

pub(super) fn flag(item: &Item, name: &str) -> bool {
    item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

/// The profile attributes a sign-in writes; `None` removes a claim Google no longer sends.
pub(super) fn profile(profile: &Profile) -> [(&'static str, Option<AttributeValue>); 6] {
    let text = |v: &Option<String>| v.as_ref().map(|v| s(v.clone()));
    [
        (grant::EMAIL, profile.email.as_ref().map(|e| s(e.as_str()))),
        (grant::NAME, text(&profile.name)),
        (grant::GIVEN_NAME, text(&profile.given_name)),
        (grant::FAMILY_NAME, text(&profile.family_name)),
        (grant::PICTURE, text(&profile.picture)),
        (grant::LOCALE, text(&profile.locale)),
    ]
}

/// The grant a stored item holds.
pub(super) fn grant_from_item(item: &Item) -> Result<Grant, StoreError> {
    use grant::*;
    let refresh_token = match item.get(REFRESH_TOKEN) {
        None => None,
        Some(value) => {
            let bytes = value.as_b().map_err(|_| StoreError::Corrupt(REFRESH_TOKEN))?;
            Some(SealedToken::from_bytes(bytes.as_ref()).map_err(|_| StoreError::Corrupt(REFRESH_TOKEN))?)
        }
    };
    Ok(Grant {
        sub: text(item, SUB)
            .and_then(|s| GoogleSubject::parse(&s).ok())
            .ok_or(StoreError::Corrupt(SUB))?,
        status: text(item, STATUS)
            .as_deref()
            .and_then(parse_status)
            .ok_or(StoreError::Corrupt(STATUS))?,
        status_reason: text(item, STATUS_REASON),
        likely_cause: text(item, LIKELY_CAUSE),
        profile: Profile {
            email: text(item, EMAIL).map(Email::new),
            name: text(item, NAME),
            given_name: text(item, GIVEN_NAME),
            family_name: text(item, FAMILY_NAME),
            picture: text(item, PICTURE),
            locale: text(item, LOCALE),
        },
        email_verified: flag(item, EMAIL_VERIFIED),
        scopes: read_scopes(text(item, SCOPES)),
        client_id: text(item, CLIENT_ID).ok_or(StoreError::Corrupt(CLIENT_ID))?,
        refresh_token,
        token_digests: binary(item, TOKEN_PREFIX_DIGEST)
            .zip(binary(item, TOKEN_HASH))
            .map(|(prefix, double_sha512)| TokenDigests { prefix, double_sha512 }),
        review_flags: item
            .get(REVIEW_FLAGS)
            .and_then(|v| v.as_ss().ok())
            .map(|flags| flags.to_vec())
            .unwrap_or_default(),
        refresh_expires_at: number(item, REFRESH_EXPIRES_AT),
        token_issued_at: number(item, TOKEN_ISSUED_AT),
        token_gen: token_gen(item),
        created_at: number(item, CREATED_AT).unwrap_or_default(),
        updated_at: number(item, UPDATED_AT).unwrap_or_default(),
        last_refresh_at: number(item, LAST_REFRESH_AT),
        last_sync_at: number(item, LAST_SYNC_AT),
        failure_count: number(item, FAILURE_COUNT)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or_default(),
        next_attempt_at: number(item, NEXT_ATTEMPT_AT),
        refresh_failing: failing(item, REFRESH_FAILING_SINCE, REFRESH_FAILING_ERROR),
        api_failing: failing(item, API_FAILING_SINCE, API_FAILING_ERROR),
        reconsents: number(item, RECONSENTS)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or_default(),
        expiring: number(item, EXPIRING_AT).map(|at| crate::store::Expiring {
            at,
            reason: text(item, EXPIRING_REASON).unwrap_or_default(),
        }),
        last_cycle: text(item, LAST_CYCLE),
        drive_files: number(item, DRIVE_FILES),
        drive_truncated: flag(item, DRIVE_TRUNCATED),
        lease_owner: text(item, LEASE_OWNER),
        lease_until: number(item, LEASE_UNTIL),
        version: number(item, VERSION).ok_or(StoreError::Corrupt(VERSION))?,
    })
}

/// A failing level of health as stored; one whose attributes are missing or malformed
/// (stored before health was kept, or by hand) reads as not failing, never as an error.
fn failing(item: &Item, since: &str, error: &str) -> Option<crate::store::Failing> {
    let since = number(item, since)?;
    let error = text(item, error).filter(|e| !e.is_empty() && e.len() <= 64)?;
    Some(crate::store::Failing { since, error })
}

/// Records a level of health as failing since `now` with `error`, keeping the time it
/// began when it was failing already (`was`).
pub(super) fn set_failing(
    u: &mut Update,
    (since, err): (&'static str, &'static str),
    was: Option<&crate::store::Failing>,
    now: u64,
    error: &str,
) {
    u.set(since, n(was.map_or(now, |f| f.since))).set(err, s(error));
}

/// Records a level of health as healthy again, when it was failing (`was`): a healthy
/// level has no attribute to remove, so nothing is written for it.
pub(super) fn clear_failing(
    u: &mut Update,
    (since, err): (&'static str, &'static str),
    was: Option<&crate::store::Failing>,
) {
    if was.is_some() {
        u.remove(since).remove(err);
    }
}

/// The attributes of each level of health.
pub(super) const REFRESH_HEALTH: (&str, &str) = (grant::REFRESH_FAILING_SINCE, grant::REFRESH_FAILING_ERROR);
pub(super) const API_HEALTH: (&str, &str) = (grant::API_FAILING_SINCE, grant::API_FAILING_ERROR);

/// A grant item's token generation; 0 on grants stored before generations were counted.
pub(super) fn token_gen(item: &Item) -> u64 {
    number(item, grant::TOKEN_GEN).unwrap_or_default()
}

/// The grants of a page of items. A row this code cannot read is skipped, logged by its
/// `sub` and the attribute at fault (never a value), and named in the second list: one bad
/// row never stops a run, a listing or a re-encryption.
pub(super) fn grants_of(items: &[Item]) -> (Vec<Grant>, Vec<String>) {
    let mut grants = Vec::with_capacity(items.len());
    let mut malformed = Vec::new();
    for item in items {
        match grant_from_item(item) {
            Ok(grant) => grants.push(grant),
            Err(e) => {
                let sub: String = text(item, grant::SUB).unwrap_or_default().chars().take(64).collect();
                tracing::error!(sub = %sub, error = %e, "malformed grant skipped");
                malformed.push(sub);
            }
        }
    }
    (grants, malformed)
}

/// A whole grant item, for an insert.
pub(super) fn item_from_grant(g: &Grant) -> Item {
    use grant::*;
    let mut item: Item = profile(&g.profile)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    let optional = [
        (STATUS_REASON, g.status_reason.as_ref().map(|r| s(r.clone()))),
        (REFRESH_TOKEN, g.refresh_token.as_ref().map(sealed)),
        (TOKEN_PREFIX_DIGEST, g.token_digests.as_ref().map(|d| bytes(&d.prefix))),
        (TOKEN_HASH, g.token_digests.as_ref().map(|d| bytes(&d.double_sha512))),
        (
            REVIEW_FLAGS,
            (!g.review_flags.is_empty()).then(|| AttributeValue::Ss(g.review_flags.clone())),
        ),
        (REFRESH_EXPIRES_AT, g.refresh_expires_at.map(n)),
        (TOKEN_ISSUED_AT, g.token_issued_at.map(n)),
        (LIKELY_CAUSE, g.likely_cause.as_ref().map(|c| s(c.clone()))),
        (LAST_REFRESH_AT, g.last_refresh_at.map(n)),
        (LAST_SYNC_AT, g.last_sync_at.map(n)),
        (NEXT_ATTEMPT_AT, g.next_attempt_at.map(n)),
        (REFRESH_FAILING_SINCE, g.refresh_failing.as_ref().map(|f| n(f.since))),
        (
            REFRESH_FAILING_ERROR,
            g.refresh_failing.as_ref().map(|f| s(f.error.clone())),
        ),
        (API_FAILING_SINCE, g.api_failing.as_ref().map(|f| n(f.since))),
        (API_FAILING_ERROR, g.api_failing.as_ref().map(|f| s(f.error.clone()))),
        (EXPIRING_AT, g.expiring.as_ref().map(|e| n(e.at))),
        (RECONSENTS, (g.reconsents > 0).then(|| n(g.reconsents))),
        (EXPIRING_REASON, g.expiring.as_ref().map(|e| s(e.reason.clone()))),
    ];
    item.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
    item.extend([
        (SUB.to_owned(), s(g.sub.as_str())),
        (STATUS.to_owned(), status(g.status)),
        (EMAIL_VERIFIED.to_owned(), AttributeValue::Bool(g.email_verified)),
        (SCOPES.to_owned(), scopes(&g.scopes)),
        (CLIENT_ID.to_owned(), s(g.client_id.clone())),
        (CREATED_AT.to_owned(), n(g.created_at)),
        (UPDATED_AT.to_owned(), n(g.updated_at)),
        (FAILURE_COUNT.to_owned(), n(g.failure_count)),
        (VERSION.to_owned(), n(g.version)),
        (TOKEN_GEN.to_owned(), n(g.token_gen)),
    ]);
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_stored_without_googles_prefix_and_read_back_whole() {
        let granted = Scopes::from_space_delimited(
            "openid email profile https://www.googleapis.com/auth/drive.appdata \
             https://www.googleapis.com/auth/userinfo.email https://mail.google.com/",
        );
        let stored = scopes(&granted);
        assert_eq!(
            stored.as_s().map(String::as_str),
            Ok("email https://mail.google.com/ drive.appdata userinfo.email openid profile")
        );
        assert_eq!(read_scopes(stored.as_s().ok().cloned()), granted);
        // Items written before the compact form hold whole URLs.
        let whole = "openid https://www.googleapis.com/auth/drive.appdata";
        assert_eq!(read_scopes(Some(whole.into())), Scopes::from_space_delimited(whole));
        assert!(read_scopes(None).is_empty());
    }
}
