//! Classification of failures of the services we depend on (Google, AWS), done once so
//! callers act on the class: retry later, or stop and tell the operator.

use std::time::Duration;

/// A dependency failed in a way that is not the end user's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Upstream {
    /// Transient: throttling, 5xx, timeouts, connection failures, non-JSON answers.
    /// Retry later, after `retry_after` when the service said so.
    #[error("{service} is unavailable ({detail})")]
    Unavailable {
        service: &'static str,
        throttled: bool,
        retry_after: Option<Duration>,
        /// Safe to log: a status, an error code or a transport error; never a body.
        detail: String,
    },
    /// Our configuration is wrong (`invalid_client`, a missing secret, KMS access denied).
    /// Retrying does not help; an operator must act.
    #[error("{service} refused our configuration ({detail})")]
    Misconfigured { service: &'static str, detail: String },
}

impl Upstream {
    pub fn unavailable(service: &'static str, detail: impl Into<String>) -> Self {
        Self::Unavailable {
            service,
            throttled: false,
            retry_after: None,
            detail: detail.into(),
        }
    }

    pub fn misconfigured(service: &'static str, detail: impl Into<String>) -> Self {
        Self::Misconfigured {
            service,
            detail: detail.into(),
        }
    }
}

/// Parses `Retry-After` in its delta-seconds form (RFC 9110 §10.2.3), which is what
/// Google sends. The HTTP-date form is rare enough that callers fall back to their own
/// backoff for it.
pub fn parse_retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3_600)))
}

/// Classifies an AWS SDK error by its error code and HTTP status: throttling, 5xx and
/// transport failures are transient; everything else (access denied, not found, a
/// disabled key, a validation error) is our misconfiguration.
pub fn classify_aws<E, R>(service: &'static str, err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Upstream
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::SdkError;
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Upstream::unavailable(service, "transport failure")
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let throttled = matches!(
                code,
                "ThrottlingException"
                    | "Throttling"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
                    | "LimitExceededException"
            );
            let server = matches!(
                code,
                "InternalServerError"
                    | "InternalFailure"
                    | "InternalServiceError"
                    | "ServiceUnavailable"
                    | "KMSInternalException"
                    | "DependencyTimeoutException"
            );
            if throttled || server {
                Upstream::Unavailable {
                    service,
                    throttled,
                    retry_after: None,
                    detail: code.to_owned(),
                }
            } else {
                Upstream::misconfigured(service, code.to_owned())
            }
        }
        _ => Upstream::misconfigured(service, "request could not be built"),
    }
}
