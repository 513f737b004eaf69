//! Google calls under the run's budgets: each paid for in quota units (per minute and
//! per day), retried with backoff while the run's deadline allows.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::run::{Attempt, Prepaid, Run};
use super::{Count, GoogleCall, OfflineJob};
use crate::clock::Clock;
use crate::grant::decide::Disposition;
use crate::ports::Ports;

impl<P: Ports> OfflineJob<P> {
    /// Every HTTP call to Google goes through here: paid for from the grant's
    /// reservation or the day's budget, given its units' slot by the run's pacer, and
    /// counted. `false`: make no call — the budget is spent, or the pacer's slot comes
    /// after the run's deadline (the units go back, and the run stops as it does at its
    /// deadline).
    pub(super) async fn google_call(&self, run: &Run<'_>, call: GoogleCall, prepaid: &Prepaid) -> bool {
        if run.paced_out.load(Ordering::SeqCst) {
            return false;
        }
        let units = self.settings.quota_costs.units(call);
        let from_reservation = prepaid.spend(u64::from(units));
        if !from_reservation {
            match run
                .budget
                .take(&self.store, u64::from(units), self.clock.now_unix())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    run.budget_spent.store(true, Ordering::SeqCst);
                    return false;
                }
                Err(e) => {
                    // The count cannot be read: spend nothing more than was reserved.
                    tracing::warn!(error = %e, "the day's quota count could not be claimed");
                    return false;
                }
            }
        }
        if !self.pacer.acquire(units, run.stop_at).await {
            if from_reservation {
                prepaid.0.fetch_add(u64::from(units), Ordering::SeqCst);
            } else {
                run.budget.give_back(u64::from(units)).await;
            }
            run.paced_out.store(true, Ordering::SeqCst);
            return false;
        }
        run.counters.bump(Count::google_calls);
        run.counters.add(Count::quota_units, u64::from(units));
        true
    }

    /// Calls `call` until it succeeds, fails for good, runs out of attempts, or the next
    /// wait would pass the deadline. With `paid`, each attempt is first paid for as that
    /// Google call; an attempt the day's budget cannot pay for is not made (the failure
    /// before it stands, or `OverBudget` if there was none).
    pub(super) async fn retrying<R, E, F, Fut>(
        &self,
        run: &Run<'_>,
        paid: Option<(GoogleCall, &Prepaid)>,
        mut call: F,
        decide: impl Fn(&E) -> Disposition,
    ) -> Result<R, Attempt<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut attempt = 0;
        let mut last = None;
        loop {
            if let Some((google_call, prepaid)) = paid
                && !self.google_call(run, google_call, prepaid).await
            {
                return Err(last.map_or(Attempt::OverBudget, Attempt::Failed));
            }
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            attempt += 1;
            let Disposition::Transient { retry_after, .. } = decide(&error) else {
                return Err(Attempt::Failed(error));
            };
            let wait = self.settings.retry.delay(attempt - 1, retry_after);
            if attempt >= self.settings.retry.max_attempts || Instant::now() + wait >= run.stop_at {
                return Err(Attempt::Failed(error));
            }
            run.counters.bump(Count::retries);
            run.counters.add(
                Count::backed_off_ms,
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            );
            tokio::time::sleep(wait).await;
            last = Some(error);
        }
    }
}
