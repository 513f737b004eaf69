//! How the job paces its calls to Google: one rate limit for the whole run (a GCRA from
//! `governor`), and retries with capped exponential backoff and full jitter.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The run's one budget of Google quota units per minute (`GOOGLE_QUOTA_UNITS_PER_MIN`),
/// which every call spends its units from: a GCRA from `governor` whose cells are units.
///
/// The burst is the dearest call (a call must fit in it), and the rate is what is left of
/// the minute after it, so that no 60-second window — however it falls — spends more than
/// the budget: a window holds at most one burst plus a minute's replenishment.
#[derive(Debug)]
pub struct Pacer {
    limiter: Option<Limiter>,
    /// Units spent since [`Pacer::take_spent`] last read them (the per-minute metric).
    spent: AtomicU64,
}

impl Pacer {
    /// `units_per_min` across the run, no call costing more than `largest_call`; 0 means
    /// no limit.
    pub fn units_per_minute(units_per_min: u64, largest_call: u32) -> Self {
        let burst = largest_call.max(1);
        let steady = units_per_min.saturating_sub(u64::from(burst));
        let limiter = (units_per_min > 0)
            .then(|| {
                let per_unit = Duration::from_secs(60).div_f64(steady.max(1) as f64);
                Quota::with_period(per_unit).map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
            })
            .flatten()
            .map(|quota| RateLimiter::direct_with_clock(quota, TokioClock));
        Self {
            limiter,
            spent: AtomicU64::new(0),
        }
    }

    /// The units spent since the last call.
    pub fn take_spent(&self) -> u64 {
        self.spent.swap(0, Ordering::Relaxed)
    }

    /// Waits until `units` may be spent, and spends them: `true`. `false` when their slot
    /// comes at or after `deadline`: nothing is spent and nothing waited for, so no wait
    /// of the pacer outlives the run.
    pub async fn acquire(&self, units: u32, deadline: tokio::time::Instant) -> bool {
        if let (Some(limiter), Some(cells)) = (&self.limiter, NonZeroU32::new(units)) {
            loop {
                match limiter.check_n(cells) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(TokioClock.now());
                        if tokio::time::Instant::now() + wait >= deadline {
                            return false;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    // Larger than the burst: cannot happen, as the burst is the dearest
                    // call; spend what fits rather than never call.
                    Err(_) => {
                        let _ = limiter.check();
                        break;
                    }
                }
            }
        }
        self.spent.fetch_add(u64::from(units), Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Units spent per sliding 60-second window never exceed the budget, and the run
    /// keeps close to it: a mix of calls at their costs, on tokio's paused (virtual) clock.
    #[tokio::test(start_paused = true)]
    async fn units_per_window_never_exceed_the_budget() {
        const BUDGET: u64 = 12_000;
        let pacer = Pacer::units_per_minute(BUDGET, 100);
        let start = Instant::now();
        let far = start + Duration::from_secs(86_400);
        let costs = [1u32, 5, 100, 1, 100, 5, 100, 1, 5, 100];
        let mut spent: Vec<(Duration, u64)> = Vec::new();
        for i in 0..2_000 {
            let units = costs[i % costs.len()];
            assert!(pacer.acquire(units, far).await);
            spent.push((start.elapsed(), u64::from(units)));
        }
        let total: u64 = spent.iter().map(|(_, u)| u).sum();
        let elapsed = spent.last().map(|(at, _)| *at).unwrap_or_default();
        // Every window starting at a call.
        let mut end = 0;
        let mut in_window = 0u64;
        for begin in 0..spent.len() {
            while end < spent.len() && spent[end].0 < spent[begin].0 + Duration::from_secs(60) {
                in_window += spent[end].1;
                end += 1;
            }
            assert!(
                in_window <= BUDGET,
                "{in_window} units in the minute from {:?}",
                spent[begin].0
            );
            in_window -= spent[begin].1;
        }
        let per_minute = total as f64 / elapsed.as_secs_f64() * 60.0;
        assert!(
            per_minute >= 0.95 * BUDGET as f64,
            "only {per_minute:.0} units a minute"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_of_zero_never_waits() {
        let pacer = Pacer::units_per_minute(0, 100);
        let start = Instant::now();
        let far = start + Duration::from_secs(1);
        for _ in 0..1_000 {
            assert!(pacer.acquire(100, far).await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_at_once_and_spends_nothing() {
        // A burst of 100 units, then 1 unit a minute.
        let pacer = Pacer::units_per_minute(101, 100);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        assert!(pacer.acquire(100, deadline).await);
        assert_eq!(pacer.take_spent(), 100);
        assert!(
            !pacer.acquire(1, deadline).await,
            "the next unit's slot is a minute away"
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting");
        assert_eq!(pacer.take_spent(), 0, "nothing spent");
        // With time enough, the same call waits for its slot.
        assert!(pacer.acquire(1, start + Duration::from_secs(120)).await);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(59_900) && waited <= Duration::from_secs(60),
            "the slot a minute after the burst: waited {waited:?}"
        );
    }
}
