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

/// Classifies an AWS SDK error by its error code and HTTP status: throttling, 5xx,
/// transport failures and a write that met a transaction on the same item
/// (`TransactionConflictException`, which the SDK does not retry) are transient;
/// everything else (access denied, not found, a disabled key, a validation error) is our
/// misconfiguration. A cancelled transaction is read by its reasons where it is sent.
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
                    | "TransactionConflictException"
                    | "TransactionInProgressException"
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

/// Retries of a transient failure (a Google call, a seal): capped exponential backoff
/// with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Full jitter (a random wait in `0..=min(cap, base·2^attempt)`, as in AWS's
    /// "Exponential Backoff And Jitter"), but never sooner than the server's
    /// `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_at(attempt, retry_after, random_unit())
    }

    /// [`RetryPolicy::delay`] for a given draw `unit` in `[0, 1)`: the wait is that
    /// fraction of the attempt's ceiling.
    fn delay_at(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        let jitter = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        retry_after.map_or(jitter, |floor| jitter.max(floor))
    }
}

/// Runs `step` until it succeeds, fails for good (`transient` says no), the policy's
/// attempts run out, or another try — its wait and then `step_timeout` — would end after
/// `deadline`; the last error is returned then. The one retry loop of a step that must not
/// outlive its request or run.
pub async fn retry_until<T, E, Fut>(
    policy: &RetryPolicy,
    deadline: tokio::time::Instant,
    step_timeout: Duration,
    mut step: impl FnMut() -> Fut,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let error = match step().await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let wait = policy.delay(attempt, None);
        let tried = attempt.saturating_add(1);
        if !transient(&error) || tried >= policy.max_attempts {
            return Err(error);
        }
        if tokio::time::Instant::now() + wait + step_timeout > deadline {
            tracing::warn!(error = %error, attempts = tried, "a step failed transiently and its time is up");
            return Err(error);
        }
        tracing::warn!(error = %error, attempt, wait_ms = wait.as_millis(), "a step failed transiently; trying again");
        tokio::time::sleep(wait).await;
        attempt = tried;
    }
}

/// A uniform random number in `[0, 1)` from the system's CSPRNG (aws-lc, already linked).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
    };

    /// The ceiling doubles from the base to the cap, and the draw places the wait in it:
    /// a draw near 1 waits (almost) the whole ceiling, so backoff grows, not just stays
    /// under a bound.
    #[test]
    fn backoff_is_the_drawn_fraction_of_a_doubling_capped_ceiling() {
        let ms = |attempt, unit| POLICY.delay_at(attempt, None, unit).as_millis();
        let ceilings: Vec<u128> = (0..6).map(|attempt| ms(attempt, 1.0)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(ms(3, 0.5), 400);
        assert_eq!(ms(3, 0.0), 0, "full jitter may retry at once");
        assert_eq!(ms(40, 0.75), 750, "a late attempt stays at the cap");
    }

    #[test]
    fn retry_after_is_a_floor_never_a_ceiling() {
        let three = Some(Duration::from_secs(3));
        assert_eq!(POLICY.delay_at(0, three, 0.0), Duration::from_secs(3));
        assert_eq!(POLICY.delay_at(9, three, 0.99), Duration::from_secs(3));
        let brief = Some(Duration::from_millis(10));
        assert_eq!(
            POLICY.delay_at(3, brief, 0.5),
            Duration::from_millis(400),
            "the backoff when longer"
        );
    }

    /// The random draw spreads over the whole ceiling: of 1,000 draws, some wait more than
    /// 90 % of it and some less than 10 % (each fails with odds below 10^-45).
    #[test]
    fn the_draw_covers_the_ceiling() {
        let draws: Vec<Duration> = (0..1_000).map(|_| POLICY.delay(2, None)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(360)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(40)));
    }
}
