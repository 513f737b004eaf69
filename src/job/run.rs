//! The state one run of the job shares across its segments and grants.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::report::Counters;
use super::{CycleId, DailyBudget};
use crate::upstream::Upstream;

/// The state one run shares across its segments.
pub(super) struct Run<'a> {
    pub(super) cycle: &'a CycleId,
    pub(super) owner: &'a str,
    pub(super) stop_at: Instant,
    pub(super) in_flight: Semaphore,
    pub(super) stop: AtomicBool,
    pub(super) misconfiguration: std::sync::Mutex<Option<Upstream>>,
    pub(super) counters: Counters,
    /// Stored tokens opened, and not opened, in this run: the circuit breaker's inputs.
    pub(super) opened: AtomicU64,
    pub(super) opens_failed: AtomicU64,
    pub(super) budget: DailyBudget,
    /// The day's budget is spent: take no more work.
    pub(super) budget_spent: AtomicBool,
    /// The pacer's next slot comes after `stop_at`: the run is as good as at its deadline.
    pub(super) paced_out: AtomicBool,
}

impl Run<'_> {
    /// Take no more work: the deadline is near, the run must stop, or the day's budget
    /// is spent.
    pub(super) fn stopping(&self) -> bool {
        self.interrupted() || self.budget_spent.load(Ordering::SeqCst)
    }

    /// Work in progress ends too: the deadline is near (or the pacer would make a call
    /// wait past it), or the run must stop. (A spent budget lets a grant make the calls it
    /// reserved.)
    pub(super) fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.at_deadline()
    }

    pub(super) fn at_deadline(&self) -> bool {
        self.paced_out.load(Ordering::SeqCst) || Instant::now() >= self.stop_at
    }

    pub(super) fn stop_for(&self, cause: Upstream) {
        tracing::error!(error = %cause, "MISCONFIGURATION: stopping the run");
        self.stop.store(true, Ordering::SeqCst);
        let mut slot = self
            .misconfiguration
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(cause);
    }
}

/// Units a grant reserved from the day's budget for the calls it will make first; what
/// it does not spend goes back to the run's share when it is done.
#[derive(Debug, Default)]
pub(super) struct Prepaid(pub(super) AtomicU64);

impl Prepaid {
    pub(super) fn spend(&self, units: u64) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(units))
            .is_ok()
    }
}

/// A Google call that failed, or that the day's budget could not pay for.
#[derive(Debug)]
pub(super) enum Attempt<E> {
    Failed(E),
    OverBudget,
}

/// How one grant went, for the segment's bookkeeping.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Worked {
    Done,
    Skipped,
    /// Not started, or let go: the deadline was near or the run is stopping.
    NotStarted,
}
