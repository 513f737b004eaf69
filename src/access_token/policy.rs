//! The access-token function's pure decisions, each with its table test: whether a grant
//! can give tokens at all ([`usable`]), and whether a refresh may be tried now ([`floor`]).

use std::time::Duration;

use super::{AccessError, unavailable};
use crate::store::{AccessView, Grant, GrantStatus, reasons};

/// The grant, if it can give tokens at `now`; else the answer.
pub(super) fn usable(grant: Option<&Grant>, now: u64) -> Result<&Grant, AccessError> {
    let grant = grant.ok_or(AccessError::GrantNotFound)?;
    let reason = || {
        grant
            .status_reason
            .clone()
            .unwrap_or_else(|| grant.status.as_str().to_owned())
    };
    match grant.status {
        // Time-based access ran out: even a cached access token is no longer the app's
        // to use. The offline job marks the grant.
        GrantStatus::Active if grant.refresh_expires_at.is_some_and(|at| at <= now) => {
            Err(AccessError::ReauthorizationRequired {
                reason: reasons::TIME_BASED_ACCESS_EXPIRED.into(),
                likely_cause: None,
            })
        }
        GrantStatus::Active if grant.refresh_token.is_some() => Ok(grant),
        GrantStatus::Active => Err(AccessError::ReauthorizationRequired {
            reason: reasons::NO_REFRESH_TOKEN.into(),
            likely_cause: None,
        }),
        GrantStatus::Suspended => Err(AccessError::Suspended),
        // Deleted, or being deleted, at the user's request: as if there were no grant.
        GrantStatus::Revoking | GrantStatus::Deleted => Err(AccessError::GrantNotFound),
        GrantStatus::ReconsentRequired | GrantStatus::Revoked => Err(AccessError::ReauthorizationRequired {
            reason: reason(),
            likely_cause: grant.likely_cause.clone(),
        }),
    }
}

/// Whether a refresh may be tried now, by the per-grant floor (`FORCE_REFRESH_MIN_SECS`);
/// else the answer: after a failed refresh, no new attempt within the floor (503); a
/// forced refresh no sooner than the floor after the last one (429).
pub(super) fn floor(view: &AccessView, force_refresh: bool, floor: Duration, now: u64) -> Result<(), AccessError> {
    let floor = floor.as_secs();
    let wait_until = |at: u64| (at + floor > now).then(|| Duration::from_secs(at + floor - now));
    // After a failure: the floor, or Google's `Retry-After` if it asked for longer.
    let after_failure = view.cache.failed_at.map(|at| at + floor).max(view.cache.retry_at);
    if let Some(until) = after_failure.filter(|until| *until > now) {
        return Err(unavailable(
            Duration::from_secs(until - now),
            "the last refresh of this grant failed; waiting for the floor or Google's Retry-After",
        ));
    }
    if force_refresh {
        let obtained = view.cache.token.as_ref().map(|t| t.obtained_at);
        let last = obtained.max(view.grant.as_ref().and_then(|g| g.last_refresh_at));
        if let Some(retry_after) = last.and_then(wait_until) {
            return Err(AccessError::RefreshBackoff { retry_after });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{NewRefreshToken, SealedToken};
    use crate::domain::{GoogleSubject, Profile, RefreshToken, Scopes, TokenDigests};
    use crate::store::{CacheEntry, CachedToken};

    const NOW: u64 = 1_800_000_000;

    fn sealed() -> SealedToken {
        let mut bytes = vec![1, 0, 1, 7];
        bytes.extend([0; 12 + 16]);
        SealedToken::from_bytes(&bytes).expect("sealed form")
    }

    fn grant(status: GrantStatus, with_token: bool, reason: Option<&str>, expires_at: Option<u64>) -> Grant {
        let mut grant = Grant::new_active(
            GoogleSubject::parse("1").expect("sub"),
            "client".into(),
            Scopes::from_space_delimited("openid"),
            NewRefreshToken {
                sealed: sealed(),
                digests: TokenDigests::of(&RefreshToken::new("1//t".into())),
            },
            Profile::default(),
            false,
            NOW - 100,
        );
        grant.status = status;
        grant.status_reason = reason.map(str::to_owned);
        grant.refresh_expires_at = expires_at;
        if !with_token {
            grant.refresh_token = None;
        }
        grant
    }

    fn answer(result: Result<&Grant, AccessError>) -> String {
        match result {
            Ok(_) => "usable".into(),
            Err(AccessError::GrantNotFound) => "404".into(),
            Err(AccessError::Suspended) => "suspended".into(),
            Err(AccessError::ReauthorizationRequired { reason, .. }) => format!("409 {reason}"),
            Err(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn whether_a_grant_can_give_tokens_follows_its_status_token_and_time_limit() {
        use GrantStatus::*;
        let rows = [
            (Some(grant(Active, true, None, None)), "usable"),
            (Some(grant(Active, true, None, Some(NOW + 1))), "usable"),
            (
                Some(grant(Active, true, None, Some(NOW))),
                "409 time_based_access_expired",
            ),
            (Some(grant(Active, false, None, None)), "409 no_refresh_token"),
            (
                Some(grant(Suspended, true, Some("risc:account-disabled"), None)),
                "suspended",
            ),
            (Some(grant(Revoking, true, Some("user_deleted"), None)), "404"),
            (Some(grant(Deleted, false, Some("user_deleted"), None)), "404"),
            (
                Some(grant(Revoked, false, Some("invalid_grant"), None)),
                "409 invalid_grant",
            ),
            (
                Some(grant(ReconsentRequired, true, None, None)),
                "409 reconsent_required",
            ),
            (None, "404"),
        ];
        for (grant, expected) in rows {
            assert_eq!(answer(usable(grant.as_ref(), NOW)), expected, "{grant:?}");
        }
    }

    fn view(failed_at: Option<u64>, obtained_at: Option<u64>, last_refresh_at: Option<u64>) -> AccessView {
        let mut g = grant(GrantStatus::Active, true, None, None);
        g.last_refresh_at = last_refresh_at;
        AccessView {
            grant: Some(g),
            leased_until: None,
            cache: CacheEntry {
                token: obtained_at.map(|at| CachedToken {
                    token: sealed(),
                    expires_at: at + 3_599,
                    scopes: Scopes::from_space_delimited("openid"),
                    obtained_at: at,
                    token_gen: 1,
                    grant_ends_at: None,
                }),
                failed_at,
                retry_at: None,
                released_lease: None,
            },
        }
    }

    #[test]
    fn a_refresh_waits_for_the_floor_after_a_failure_and_a_forced_one_after_the_last_refresh() {
        let floor_of = Duration::from_secs(30);
        let rows = [
            // (failed at, token obtained at, grant refreshed at, forced, answer)
            (None, None, None, false, "go"),
            (None, None, None, true, "go"),
            (Some(NOW - 10), None, None, false, "503 after 20"),
            (Some(NOW - 10), None, None, true, "503 after 20"),
            (Some(NOW - 30), None, None, false, "go"),
            (None, Some(NOW - 5), None, false, "go"),
            (None, Some(NOW - 5), None, true, "429 after 25"),
            (None, Some(NOW - 31), None, true, "go"),
            (None, Some(NOW - 100), Some(NOW - 1), true, "429 after 29"),
            (None, None, Some(NOW - 40), true, "go"),
        ];
        for (failed, obtained, refreshed, forced, expected) in rows {
            let got = match floor(&view(failed, obtained, refreshed), forced, floor_of, NOW) {
                Ok(()) => "go".to_owned(),
                Err(AccessError::Unavailable { retry_after, .. }) => format!("503 after {}", retry_after.as_secs()),
                Err(AccessError::RefreshBackoff { retry_after }) => format!("429 after {}", retry_after.as_secs()),
                Err(other) => format!("{other:?}"),
            };
            assert_eq!(got, expected, "{failed:?} {obtained:?} {refreshed:?} {forced}");
        }
        // Google's Retry-After outlasting the floor holds every caller; one already past
        // does not.
        for (retry_at, expected) in [(Some(NOW + 40), "503 after 40"), (Some(NOW - 1), "go")] {
            let mut failed_long_ago = view(Some(NOW - 100), None, None);
            failed_long_ago.cache.retry_at = retry_at;
            let got = match floor(&failed_long_ago, false, floor_of, NOW) {
                Ok(()) => "go".to_owned(),
                Err(AccessError::Unavailable { retry_after, .. }) => format!("503 after {}", retry_after.as_secs()),
                Err(other) => format!("{other:?}"),
            };
            assert_eq!(got, expected, "{retry_at:?}");
        }
    }
}
