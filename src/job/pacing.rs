//! How the job paces its calls to Google: one rate limit for the whole run (a GCRA from
//! `governor`), and retries with capped exponential backoff and full jitter.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, ReasonablyRealtime};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// `governor`'s clock, read from tokio's: in production the same as the system's, and in
/// tests with paused time it follows the test's virtual time.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl ReasonablyRealtime for TokioClock {}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// A global rate limit on Google calls: evenly spaced slots, no burst.
#[derive(Debug)]
pub struct Pacer {
    limiter: Option<Limiter>,
}

impl Pacer {
    /// `rate` calls per second across the run; 0 means no limit.
    pub fn per_second(rate: u32) -> Self {
        let limiter = NonZeroU32::new(rate)
            .and_then(|rate| Quota::with_period(Duration::from_secs(1) / rate.get()))
            .map(|quota| RateLimiter::direct_with_clock(quota, TokioClock));
        Self { limiter }
    }

    /// Waits for the next slot.
    pub async fn acquire(&self) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        while let Err(not_until) = limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
        }
    }
}

/// Retries of one Google call.
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
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap);
        let jitter = ceiling.mul_f64(random_unit());
        retry_after.map_or(jitter, |floor| jitter.max(floor))
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
    use tokio::time::Instant;

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..10 {
            let d = policy.delay(attempt, None);
            assert!(d <= Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1)));
        }
        assert!(policy.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_calls_evenly() {
        let pacer = Pacer::per_second(10);
        let start = Instant::now();
        for _ in 0..21 {
            pacer.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_of_zero_never_waits() {
        let pacer = Pacer::per_second(0);
        let start = Instant::now();
        for _ in 0..1_000 {
            pacer.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
