//! What is done with a failure while a grant is worked (DESIGN §8), as one pure function
//! with a table test: the offline job and the access-token function act on the
//! [`Disposition`], they do not re-decide.

use std::time::Duration;

use crate::crypto::CryptoError;
use crate::google::{DriveError, GoogleTokenError};
use crate::upstream::Upstream;

/// A failure while working one grant.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The stored refresh token could not be opened.
    Open(&'a CryptoError),
    /// The refresh call failed.
    Refresh(&'a GoogleTokenError),
    /// A rotated refresh token could not be sealed, even after retries.
    Seal(&'a CryptoError),
    /// The Drive call failed (after the refresh succeeded).
    Drive(&'a DriveError),
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: retry the call (no sooner than `retry_after`), then defer the grant.
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Google revoked the grant: mark it `revoked` with this reason, delete its token,
    /// never retry. `subtype` is Google's `error_subtype`, for [`likely_cause`].
    Revoke { reason: String, subtype: Option<String> },
    /// The stored token does not open. Nothing about the grant is changed: one such
    /// grant is logged and counted; many in a run mean our keys or binding are wrong.
    Unopenable { reason: String },
    /// Drive refused for the user's scopes: count the grant as refreshed only.
    RefreshOnly,
    /// Drive refused the user (an administrator's policy): the grant is refreshed, its
    /// api level failing; not deferred.
    ApiRefused,
    /// Drive refused the call itself: defer the grant without retrying.
    Defer { reason: String },
    /// Our misconfiguration: stop the run, change no grant.
    StopRun(Upstream),
}

fn upstream(error: &Upstream) -> Disposition {
    match error {
        Upstream::Unavailable { retry_after, .. } => Disposition::Transient {
            retry_after: *retry_after,
            reason: error.to_string(),
        },
        Upstream::Misconfigured { .. } => Disposition::StopRun(error.clone()),
    }
}

/// The one decision.
pub fn disposition(failure: Failure<'_>) -> Disposition {
    match failure {
        Failure::Open(CryptoError::Upstream(u)) => upstream(u),
        Failure::Open(e) => Disposition::Unopenable {
            reason: format!("stored token does not open: {e}"),
        },
        // Already tried until the deadline (`grant::seal_rotated`). Google retired the
        // stored token, but it is all we hold: keep it, and try the grant again later.
        Failure::Seal(e) => Disposition::Defer {
            reason: format!("a rotated refresh token could not be sealed: {e}"),
        },
        Failure::Refresh(GoogleTokenError::InvalidGrant { subtype }) => Disposition::Revoke {
            reason: subtype
                .as_ref()
                .map_or_else(|| "invalid_grant".to_owned(), |s| format!("invalid_grant:{s}")),
            subtype: subtype.clone(),
        },
        Failure::Refresh(GoogleTokenError::RedirectUriMismatch) => {
            Disposition::StopRun(Upstream::misconfigured("google-token", "redirect_uri_mismatch"))
        }
        Failure::Refresh(GoogleTokenError::Upstream(u)) | Failure::Drive(DriveError::Upstream(u)) => upstream(u),
        Failure::Drive(DriveError::Refused { status: 403, reason }) => drive_forbidden(reason),
        Failure::Drive(e @ DriveError::Refused { .. }) => Disposition::Defer {
            reason: format!("drive: {e}"),
        },
    }
}

/// The class a failure is kept under on a grant's health ([`crate::grant::health`]): a
/// stable word, never Google's text.
pub fn error_class(failure: Failure<'_>) -> &'static str {
    fn of(u: &Upstream) -> &'static str {
        match u {
            Upstream::Unavailable { throttled: true, .. } => "throttled",
            Upstream::Unavailable { .. } => "unavailable",
            Upstream::Misconfigured { .. } => "misconfigured",
        }
    }
    match failure {
        Failure::Open(CryptoError::Upstream(u)) => of(u),
        Failure::Open(_) => "unopenable",
        Failure::Seal(_) => "rotated_token_unsealed",
        Failure::Refresh(GoogleTokenError::InvalidGrant { .. }) => "invalid_grant",
        Failure::Refresh(GoogleTokenError::RedirectUriMismatch) => "misconfigured",
        Failure::Refresh(GoogleTokenError::Upstream(u)) | Failure::Drive(DriveError::Upstream(u)) => of(u),
        Failure::Drive(DriveError::Refused { status: 401, .. }) => "auth_error",
        Failure::Drive(DriveError::Refused { status: 404, .. }) => "not_found",
        Failure::Drive(DriveError::Refused { reason, .. }) => match reason.as_str() {
            "domainPolicy" => "domain_policy",
            "insufficientPermissions" | "insufficientScopes" => "insufficient_permissions",
            _ => "forbidden",
        },
    }
}

/// Drive's 403 by its reason (rate limits are transient before they get here): the
/// project's faults stop the run and change no grant; the user's leave the grant
/// refreshed.
fn drive_forbidden(reason: &str) -> Disposition {
    match reason {
        "accessNotConfigured" => Disposition::StopRun(Upstream::misconfigured(
            "drive",
            "accessNotConfigured: the Google Drive API is not enabled in the OAuth client's project; \
             enable it in the Google Cloud console, APIs & Services > Library > Google Drive API",
        )),
        "dailyLimitExceeded" => Disposition::StopRun(Upstream::misconfigured(
            "drive",
            "dailyLimitExceeded: the project's Drive quota for the day is spent; \
             see APIs & Services > Google Drive API > Quotas",
        )),
        // An administrator keeps Drive from the user: the grant refreshes, its api level
        // fails until the policy changes; not deferred, nothing retried sooner.
        "domainPolicy" => Disposition::ApiRefused,
        // The user took the scope away since signing in: keep refreshing, and the grant's
        // scopes lose Drive's.
        _ => Disposition::RefreshOnly,
    }
}

/// What most likely ended a grant that Google answered `invalid_grant`, as far as can be
/// told honestly from what we know: Google's `error_subtype`, when the refresh token was
/// issued and when it was last used. The README lists each with its fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikelyCause {
    /// `invalid_rapt`: a Google Workspace session-control policy wants the user to sign in
    /// again.
    ReauthenticationRequired,
    /// The token died about seven days after it was issued: the OAuth consent screen is
    /// still in Testing, where Google expires refresh tokens after seven days.
    ConsentScreenInTesting,
    /// The token went unused for six months, after which Google expires it.
    UnusedForSixMonths,
    /// Anything else: the user removed the app's access, changed a password (Gmail
    /// scopes), an administrator revoked it, or a newer token pushed it out of Google's
    /// limit of 100 live refresh tokens per account and client.
    RevokedOrReplaced,
}

impl LikelyCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::ConsentScreenInTesting => "consent_screen_in_testing",
            Self::UnusedForSixMonths => "unused_for_six_months",
            Self::RevokedOrReplaced => "revoked_or_replaced",
        }
    }
}

const DAY: u64 = 86_400;

/// The likely cause of an `invalid_grant` at `now` for a token issued at `issued_at` and
/// last refreshed at `last_used` (Unix seconds).
pub fn likely_cause(subtype: Option<&str>, issued_at: u64, last_used: Option<u64>, now: u64) -> LikelyCause {
    if subtype == Some("invalid_rapt") {
        return LikelyCause::ReauthenticationRequired;
    }
    let age = now.saturating_sub(issued_at);
    // Testing-mode tokens die 7 days after issue; a job that refreshes every few hours
    // sees it within a day after that.
    if (7 * DAY - 3_600..=8 * DAY).contains(&age) {
        return LikelyCause::ConsentScreenInTesting;
    }
    if now.saturating_sub(last_used.unwrap_or(issued_at)) >= 180 * DAY {
        return LikelyCause::UnusedForSixMonths;
    }
    LikelyCause::RevokedOrReplaced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(retry_after: Option<u64>) -> Upstream {
        Upstream::Unavailable {
            service: "google-token",
            throttled: true,
            retry_after: retry_after.map(Duration::from_secs),
            detail: "HTTP 429".into(),
        }
    }

    #[test]
    fn each_failure_of_design_section_8_has_its_disposition() {
        let invalid_grant = GoogleTokenError::InvalidGrant { subtype: None };
        let invalid_rapt = GoogleTokenError::InvalidGrant {
            subtype: Some("invalid_rapt".into()),
        };
        let invalid_client = GoogleTokenError::Upstream(Upstream::misconfigured("google-token", "invalid_client"));
        let unauthorized = GoogleTokenError::Upstream(Upstream::misconfigured("google-token", "unauthorized_client"));
        let throttled = GoogleTokenError::Upstream(unavailable(Some(7)));
        let html = GoogleTokenError::Upstream(Upstream::unavailable("google-token", "non-JSON answer with HTTP 200"));
        let drive_scope = DriveError::Refused {
            status: 403,
            reason: "insufficientPermissions".into(),
        };
        let drive_401 = DriveError::Refused {
            status: 401,
            reason: "authError".into(),
        };
        let drive_503 = DriveError::Upstream(unavailable(None));
        let drive_off = DriveError::Refused {
            status: 403,
            reason: "accessNotConfigured".into(),
        };
        let drive_quota = DriveError::Refused {
            status: 403,
            reason: "dailyLimitExceeded".into(),
        };
        let drive_domain = DriveError::Refused {
            status: 403,
            reason: "domainPolicy".into(),
        };
        let deleted_client = GoogleTokenError::Upstream(Upstream::misconfigured("google-token", "deleted_client"));
        let tampered = CryptoError::Tampered;
        let kms_down = CryptoError::Upstream(unavailable(None));
        let kms_denied = CryptoError::Upstream(Upstream::misconfigured("kms", "AccessDeniedException"));

        let rows: Vec<(Failure<'_>, &str)> = vec![
            (Failure::Refresh(&invalid_grant), "revoke invalid_grant"),
            (Failure::Refresh(&invalid_rapt), "revoke invalid_grant:invalid_rapt"),
            (Failure::Refresh(&invalid_client), "stop"),
            (Failure::Refresh(&unauthorized), "stop"),
            (Failure::Refresh(&GoogleTokenError::RedirectUriMismatch), "stop"),
            (Failure::Refresh(&throttled), "transient 7s"),
            (Failure::Refresh(&html), "transient"),
            (Failure::Drive(&drive_scope), "refresh only"),
            (Failure::Drive(&drive_401), "defer"),
            (Failure::Drive(&drive_503), "transient"),
            (Failure::Drive(&drive_off), "stop"),
            (Failure::Drive(&drive_quota), "stop"),
            (Failure::Refresh(&deleted_client), "stop"),
            (Failure::Drive(&drive_domain), "api refused"),
            (Failure::Open(&tampered), "unopenable"),
            (Failure::Open(&CryptoError::KeyRejected), "unopenable"),
            (Failure::Open(&CryptoError::Malformed), "unopenable"),
            (Failure::Open(&kms_down), "transient"),
            (Failure::Open(&kms_denied), "stop"),
            (Failure::Seal(&kms_down), "defer"),
            (Failure::Seal(&kms_denied), "defer"),
            (Failure::Seal(&CryptoError::Random), "defer"),
        ];
        for (failure, expected) in rows {
            let got = match disposition(failure) {
                Disposition::Revoke { reason, .. } => format!("revoke {reason}"),
                Disposition::StopRun(_) => "stop".into(),
                Disposition::Transient {
                    retry_after: Some(d), ..
                } => format!("transient {}s", d.as_secs()),
                Disposition::Transient { .. } => "transient".into(),
                Disposition::RefreshOnly => "refresh only".into(),
                Disposition::ApiRefused => "api refused".into(),
                Disposition::Defer { .. } => "defer".into(),
                Disposition::Unopenable { .. } => "unopenable".into(),
            };
            assert_eq!(got, expected, "{failure:?}");
        }
    }

    #[test]
    fn an_invalid_grant_gets_the_cause_its_timing_and_subtype_point_to() {
        let issued = 1_000_000_000;
        let rows = [
            (
                Some("invalid_rapt"),
                7 * DAY,
                None,
                LikelyCause::ReauthenticationRequired,
            ),
            (
                None,
                7 * DAY,
                Some(7 * DAY - 6 * 3_600),
                LikelyCause::ConsentScreenInTesting,
            ),
            (None, 7 * DAY + 20 * 3_600, None, LikelyCause::ConsentScreenInTesting),
            (None, 6 * DAY, Some(6 * DAY - 3_600), LikelyCause::RevokedOrReplaced),
            (None, 9 * DAY, Some(9 * DAY - 3_600), LikelyCause::RevokedOrReplaced),
            (None, 200 * DAY, None, LikelyCause::UnusedForSixMonths),
            (None, 400 * DAY, Some(200 * DAY), LikelyCause::UnusedForSixMonths),
            (None, 400 * DAY, Some(399 * DAY), LikelyCause::RevokedOrReplaced),
        ];
        for (subtype, age, last_used_age, expected) in rows {
            let now = issued + age;
            let last_used = last_used_age.map(|a| issued + a);
            assert_eq!(
                likely_cause(subtype, issued, last_used, now),
                expected,
                "{subtype:?} {age}"
            );
        }
    }

    #[test]
    fn each_failure_is_kept_under_a_class_and_never_googles_text() {
        let throttled = GoogleTokenError::Upstream(unavailable(Some(7)));
        let down = DriveError::Upstream(Upstream::unavailable("drive", "HTTP 503"));
        let domain = DriveError::Refused {
            status: 403,
            reason: "domainPolicy".into(),
        };
        let scope = DriveError::Refused {
            status: 403,
            reason: "insufficientPermissions".into(),
        };
        let odd = DriveError::Refused {
            status: 403,
            reason: "someNewReason with text".into(),
        };
        let auth = DriveError::Refused {
            status: 401,
            reason: "authError".into(),
        };
        let rows = [
            (Failure::Refresh(&throttled), "throttled"),
            (Failure::Drive(&down), "unavailable"),
            (Failure::Drive(&domain), "domain_policy"),
            (Failure::Drive(&scope), "insufficient_permissions"),
            (Failure::Drive(&odd), "forbidden"),
            (Failure::Drive(&auth), "auth_error"),
            (Failure::Seal(&CryptoError::Random), "rotated_token_unsealed"),
        ];
        for (failure, class) in rows {
            assert_eq!(error_class(failure), class, "{failure:?}");
        }
    }
}
