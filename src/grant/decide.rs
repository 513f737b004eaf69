//! What is done with a failure while a grant is worked (DESIGN §8), as one pure function
//! with a table test: the offline job and the access-token function act on the
//! [`Disposition`], they do not re-decide.

use std::time::Duration;

use crate::crypto::CryptoError;
use crate::google::{DriveError, GoogleTokenError};
use crate::store::{Grant, GrantOutcome};
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
    /// Google wants the user to sign in again (`invalid_rapt`): mark the grant
    /// `reconsent_required` with this reason and keep its token sealed (DESIGN §8).
    Reauthenticate { reason: String },
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

/// Google's `error_subtype` when a Workspace session policy wants the user to sign in
/// again: the refresh token is not dead, only held back until then.
pub const INVALID_RAPT: &str = "invalid_rapt";

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
        Failure::Refresh(GoogleTokenError::InvalidGrant { subtype }) if subtype.as_deref() == Some(INVALID_RAPT) => {
            Disposition::Reauthenticate {
                reason: crate::store::reasons::AWAITING_SIGN_IN.to_owned(),
            }
        }
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
/// told honestly from what we know: Google's `error_subtype`, the grant's time limit and
/// scopes, when its refresh token was issued and last used, how often its user consented
/// again, and whether the consent screen is in Testing. The README lists each with its
/// fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikelyCause {
    /// `invalid_rapt`: a Google Workspace session-control policy wants the user to sign in
    /// again (the grant is then `reconsent_required`, not revoked).
    ReauthenticationRequired,
    /// The user granted time-based access, and it ran out.
    TimeLimitedAccessEnded,
    /// The token died about seven days after it was issued: the OAuth consent screen is
    /// still in Testing, where Google expires refresh tokens after seven days.
    ConsentScreenInTesting,
    /// The token went unused for six months, after which Google expires it.
    UnusedForSixMonths,
    /// The user consented again a hundred times or more: Google keeps 100 live refresh
    /// tokens per account and client and ends the oldest, so tokens the app took
    /// elsewhere can push this one out.
    TooManyRefreshTokens,
    /// The grant holds Gmail scopes: a password change ends its tokens, as does the user
    /// removing the app's access.
    PasswordChangedOrRevoked,
    /// Anything else: the user removed the app's access, or an administrator revoked it.
    RevokedOrReplaced,
}

impl LikelyCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::TimeLimitedAccessEnded => "time_limited_access_ended",
            Self::ConsentScreenInTesting => "consent_screen_in_testing",
            Self::UnusedForSixMonths => "unused_for_six_months",
            Self::TooManyRefreshTokens => "too_many_refresh_tokens",
            Self::PasswordChangedOrRevoked => "password_changed_or_revoked",
            Self::RevokedOrReplaced => "revoked_or_replaced",
        }
    }
}

const DAY: u64 = 86_400;

/// Google's limit of live refresh tokens per account and client.
pub const REFRESH_TOKENS_PER_USER: u32 = 100;

/// The likely cause of an `invalid_grant` for `grant` at `now` (Unix seconds);
/// `consent_testing`: `GOOGLE_CONSENT_TESTING`.
pub fn likely_cause(subtype: Option<&str>, grant: &Grant, consent_testing: bool, now: u64) -> LikelyCause {
    if subtype == Some(INVALID_RAPT) {
        return LikelyCause::ReauthenticationRequired;
    }
    if grant
        .refresh_expires_at
        .is_some_and(|end| end <= now.saturating_add(60))
    {
        return LikelyCause::TimeLimitedAccessEnded;
    }
    let issued_at = grant.token_issued_at.unwrap_or(grant.created_at);
    let age = now.saturating_sub(issued_at);
    // Testing-mode tokens die 7 days after issue; a job that refreshes every few hours
    // sees it within a day after that. With the consent screen known to be in Testing,
    // any token of more than the basic scopes past its seventh day.
    let testing_end = crate::grant::health::predicted_end(grant, consent_testing)
        .filter(|(_, why)| *why == crate::grant::health::ends::CONSENT_SCREEN_IN_TESTING);
    if testing_end.is_some_and(|(end, _)| now + 3_600 >= end) || (7 * DAY - 3_600..=8 * DAY).contains(&age) {
        return LikelyCause::ConsentScreenInTesting;
    }
    if now.saturating_sub(grant.last_refresh_at.unwrap_or(issued_at)) >= 180 * DAY {
        return LikelyCause::UnusedForSixMonths;
    }
    if grant.reconsents.saturating_add(1) >= REFRESH_TOKENS_PER_USER {
        return LikelyCause::TooManyRefreshTokens;
    }
    if grant.scopes.iter().any(is_gmail_scope) {
        return LikelyCause::PasswordChangedOrRevoked;
    }
    LikelyCause::RevokedOrReplaced
}

/// How `grant` ends when Google refused its refresh token (a [`Disposition::Revoke`] or
/// [`Disposition::Reauthenticate`]): the outcome to record, and the likely cause to tell
/// whoever asked. One rule for the offline job and the access-token function; `None` for
/// any other disposition.
pub fn ended_by_google(
    disposition: &Disposition,
    grant: &Grant,
    consent_testing: bool,
    now: u64,
) -> Option<(GrantOutcome, LikelyCause)> {
    match disposition {
        Disposition::Revoke { reason, subtype } => {
            let cause = likely_cause(subtype.as_deref(), grant, consent_testing, now);
            let outcome = GrantOutcome::Revoked {
                reason: reason.clone(),
                likely_cause: cause.as_str().to_owned(),
            };
            Some((outcome, cause))
        }
        Disposition::Reauthenticate { reason } => Some((
            GrantOutcome::Reauthenticate { reason: reason.clone() },
            LikelyCause::ReauthenticationRequired,
        )),
        _ => None,
    }
}

/// Gmail's scopes: a password change ends their tokens.
fn is_gmail_scope(scope: &str) -> bool {
    scope == "https://mail.google.com/" || scope.starts_with("https://www.googleapis.com/auth/gmail.")
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
            (
                Failure::Refresh(&invalid_rapt),
                "reauthenticate invalid_grant:invalid_rapt",
            ),
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
                Disposition::Reauthenticate { reason } => format!("reauthenticate {reason}"),
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
    fn an_invalid_grant_gets_the_cause_what_we_know_points_to() {
        let issued = 1_000_000_000;
        let grant = |scopes: &str| crate::store::sample_grant(scopes, issued);
        let drive = "openid https://www.googleapis.com/auth/drive.appdata";
        let used = |age: u64, last: Option<u64>| {
            let mut g = grant(drive);
            g.last_refresh_at = last.map(|l| issued + l);
            (g, issued + age)
        };
        let cause = |subtype, (g, now): (Grant, u64), testing| likely_cause(subtype, &g, testing, now);
        let rows = [
            (
                cause(Some("invalid_rapt"), used(7 * DAY, None), false),
                LikelyCause::ReauthenticationRequired,
            ),
            (
                cause(None, used(7 * DAY, Some(7 * DAY - 6 * 3_600)), false),
                LikelyCause::ConsentScreenInTesting,
            ),
            (
                cause(None, used(7 * DAY + 20 * 3_600, None), false),
                LikelyCause::ConsentScreenInTesting,
            ),
            (
                cause(None, used(6 * DAY, Some(6 * DAY - 3_600)), false),
                LikelyCause::RevokedOrReplaced,
            ),
            (
                cause(None, used(9 * DAY, Some(9 * DAY - 3_600)), false),
                LikelyCause::RevokedOrReplaced,
            ),
            (
                cause(None, used(9 * DAY, Some(9 * DAY - 3_600)), true),
                LikelyCause::ConsentScreenInTesting,
            ),
            (
                cause(None, used(200 * DAY, None), false),
                LikelyCause::UnusedForSixMonths,
            ),
            (
                cause(None, used(400 * DAY, Some(200 * DAY)), false),
                LikelyCause::UnusedForSixMonths,
            ),
            (
                cause(None, used(400 * DAY, Some(399 * DAY)), false),
                LikelyCause::RevokedOrReplaced,
            ),
        ];
        for (i, (got, expected)) in rows.into_iter().enumerate() {
            assert_eq!(got, expected, "row {i}");
        }
        let mut limited = grant(drive);
        limited.refresh_expires_at = Some(issued + DAY);
        assert_eq!(
            likely_cause(None, &limited, false, issued + DAY),
            LikelyCause::TimeLimitedAccessEnded
        );
        let mut eager = grant(drive);
        eager.reconsents = 120;
        assert_eq!(
            likely_cause(None, &eager, false, issued + 30 * DAY),
            LikelyCause::TooManyRefreshTokens
        );
        let gmail = grant("openid https://www.googleapis.com/auth/gmail.readonly");
        assert_eq!(
            likely_cause(None, &gmail, false, issued + 30 * DAY),
            LikelyCause::PasswordChangedOrRevoked
        );
        let basic = grant("openid email profile");
        assert_eq!(
            likely_cause(None, &basic, true, issued + 30 * DAY),
            LikelyCause::RevokedOrReplaced,
            "basic scopes do not end in Testing"
        );
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
