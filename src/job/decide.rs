//! What the offline job does with a failure (DESIGN §8), as one pure function with a
//! table test: the run loop acts on the [`Disposition`], it does not re-decide.

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
    /// A rotated refresh token could not be sealed.
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
    /// never retry.
    Revoke { reason: String },
    /// The stored token does not open. Nothing about the grant is changed: one such
    /// grant is logged and counted; many in a run mean our keys or binding are wrong.
    Unopenable { reason: String },
    /// Drive refused for the user's scopes: count the grant as refreshed only.
    RefreshOnly,
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
        Failure::Open(CryptoError::Upstream(u)) | Failure::Seal(CryptoError::Upstream(u)) => upstream(u),
        Failure::Open(e) => Disposition::Unopenable {
            reason: format!("stored token does not open: {e}"),
        },
        Failure::Seal(_) => Disposition::StopRun(Upstream::misconfigured("crypto", "seal failed")),
        Failure::Refresh(GoogleTokenError::InvalidGrant { subtype }) => Disposition::Revoke {
            reason: subtype
                .as_ref()
                .map_or_else(|| "invalid_grant".to_owned(), |s| format!("invalid_grant:{s}")),
        },
        Failure::Refresh(GoogleTokenError::RedirectUriMismatch) => {
            Disposition::StopRun(Upstream::misconfigured("google-token", "redirect_uri_mismatch"))
        }
        Failure::Refresh(GoogleTokenError::Upstream(u)) | Failure::Drive(DriveError::Upstream(u)) => upstream(u),
        // The user took the scope away since signing in: keep refreshing.
        Failure::Drive(DriveError::Refused { status: 403, .. }) => Disposition::RefreshOnly,
        Failure::Drive(e @ DriveError::Refused { .. }) => Disposition::Defer {
            reason: format!("drive: {e}"),
        },
    }
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
            (Failure::Open(&tampered), "unopenable"),
            (Failure::Open(&CryptoError::KeyRejected), "unopenable"),
            (Failure::Open(&CryptoError::Malformed), "unopenable"),
            (Failure::Open(&kms_down), "transient"),
            (Failure::Open(&kms_denied), "stop"),
            (Failure::Seal(&kms_down), "transient"),
            (Failure::Seal(&CryptoError::Random), "stop"),
        ];
        for (failure, expected) in rows {
            let got = match disposition(failure) {
                Disposition::Revoke { reason } => format!("revoke {reason}"),
                Disposition::StopRun(_) => "stop".into(),
                Disposition::Transient {
                    retry_after: Some(d), ..
                } => format!("transient {}s", d.as_secs()),
                Disposition::Transient { .. } => "transient".into(),
                Disposition::RefreshOnly => "refresh only".into(),
                Disposition::Defer { .. } => "defer".into(),
                Disposition::Unopenable { .. } => "unopenable".into(),
            };
            assert_eq!(got, expected, "{failure:?}");
        }
    }
}
