//! Time as a port, so claim checks and caches can be tested with an injected clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in whole seconds since the Unix epoch, which is what JWT claims,
/// DynamoDB TTL and `Cache-Control` arithmetic all use.
pub trait Clock: Send + Sync {
    fn now_unix(&self) -> u64;
}

/// Unix seconds as RFC 3339 in UTC (`2027-01-01T00:00:00Z`), as answers, events and the
/// CLI print times; empty for a time out of range.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock, moved forward by hand: a test's caches age with real time and jump
/// when the test says (past a TTL, a max-age), while what the test's Google signs — dated
/// by the real clock — still reads as current.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock(Arc<AtomicU64>);

impl ShiftedClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now_unix(&self) -> u64 {
        SystemClock.now_unix() + self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_unix(&self) -> u64 {
        (**self).now_unix()
    }
}
