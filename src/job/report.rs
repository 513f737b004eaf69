//! What a run of the offline job did: one list of counters, from which the report's
//! fields, the run's atomic counters and the CloudWatch metrics are all made.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Declares every counter once: its report field, and the metric it is emitted as.
macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $metric:expr, )*) => {
        /// What a run did. Returned by the invocation, logged, and emitted as metrics.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct Report {
            pub cycle: String,
            /// The cycle had been finished by an earlier invocation: nothing was done.
            pub already_done: bool,
            /// Every segment of the cycle is now finished.
            pub complete: bool,
            /// The run stopped taking work because the deadline was near.
            pub stopped_at_deadline: bool,
            /// The run stopped taking work because the day's Google quota budget
            /// (`GOOGLE_DAILY_UNIT_BUDGET`) is spent; the cycle resumes the next day.
            pub budget_exhausted: bool,
            /// The run stopped because Google or AWS refused our configuration
            /// (`invalid_client`, `deleted_client`, Drive's `accessNotConfigured`, KMS
            /// denied, ...): what refused and why. No grant was changed for it.
            pub stopped_for: Option<String>,
            $( $(#[$doc])* pub $field: u64, )*
            pub duration_ms: u64,
        }

        /// One counter of a run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types, reason = "each variant is named as its report field")]
        pub enum Count { $( $field, )* }

        impl Count {
            pub const ALL: &[Count] = &[ $( Count::$field, )* ];

            /// The CloudWatch metric this counter is emitted as, if it is one.
            pub fn metric(self) -> Option<&'static str> {
                match self { $( Count::$field => $metric, )* }
            }
        }

        impl Report {
            /// The value of one counter.
            pub fn count(&self, count: Count) -> u64 {
                match count { $( Count::$field => self.$field, )* }
            }

            fn set(&mut self, count: Count, value: u64) {
                match count { $( Count::$field => self.$field = value, )* }
            }
        }
    };
}

counters! {
    scanned => None,
    /// Rows the job could not read as grants: skipped, logged by key.
    malformed => Some("Malformed"),
    refreshed => Some("Refreshed"),
    drive_synced => Some("DriveSynced"),
    drive_calls => Some("DriveCalls"),
    /// Listed, but the listing stopped at `DRIVE_MAX_PAGES` or at a repeated page token.
    drive_truncated => Some("DriveTruncated"),
    refresh_only => None,
    /// Refreshed, but Drive failed after retries: the grant is retried later.
    drive_deferred => None,
    /// Refreshed, but Drive refused the user (`domainPolicy`): the grant's api level
    /// fails; not deferred.
    drive_refused => Some("DriveRefused"),
    revoked => Some("Revoked"),
    /// Grants deleted at the user's request whose revocation at Google the job finished.
    deleted => Some("Deleted"),
    /// Of those, grants whose stored token never opens (it does not authenticate, or its
    /// KMS key is gone): tombstoned without a revocation at Google (logged `UNREVOCABLE`).
    unrevocable => Some("Unrevocable"),
    deferred => Some("Deferred"),
    reconsent_required => Some("ReconsentRequired"),
    /// Grants whose stored token did not open: left as they were, logged by `sub`.
    undecryptable => Some("Undecryptable"),
    rotated_tokens => None,
    /// Refresh answers whose rotated refresh token could not be sealed, even under the
    /// opened key and after retries: the grant is deferred (logged `MISCONFIGURATION`).
    rotated_unsealed => None,
    /// Access tokens cached for the access-token function, so a call after the job is
    /// served without Google.
    access_tokens_cached => None,
    superseded => None,
    /// Leased by another invocation at the same moment.
    skipped => Some("Skipped"),
    google_calls => None,
    /// Google quota units spent (emitted each minute as `QuotaUnits`, beside the run's
    /// other metrics).
    quota_units => None,
    retries => Some("Retries"),
    /// Milliseconds the run chose to wait before retrying a Google call (the backoff, or
    /// Google's `Retry-After` when longer), summed over every grant in flight.
    backed_off_ms => None,
    errors => Some("Errors"),
}

/// A run's counters, bumped from every grant in flight.
#[derive(Debug)]
pub(super) struct Counters(Vec<AtomicU64>);

impl Default for Counters {
    fn default() -> Self {
        Self(Count::ALL.iter().map(|_| AtomicU64::new(0)).collect())
    }
}

impl Counters {
    fn slot(&self, count: Count) -> Option<&AtomicU64> {
        Count::ALL.iter().position(|c| *c == count).and_then(|i| self.0.get(i))
    }

    pub(super) fn add(&self, count: Count, n: u64) {
        if let Some(slot) = self.slot(count) {
            slot.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn bump(&self, count: Count) {
        self.add(count, 1);
    }

    /// Copies every counter into `report`.
    pub(super) fn fill(&self, report: &mut Report) {
        for &count in Count::ALL {
            let value = self.slot(count).map_or(0, |s| s.load(Ordering::Relaxed));
            report.set(count, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_reaches_the_report_under_its_own_name() {
        let counters = Counters::default();
        for (i, &count) in Count::ALL.iter().enumerate() {
            counters.add(count, i as u64 + 1);
        }
        let mut report = Report::default();
        counters.fill(&mut report);
        let json = serde_json::to_value(&report).unwrap_or_default();
        for (i, &count) in Count::ALL.iter().enumerate() {
            assert_eq!(report.count(count), i as u64 + 1);
            let name = format!("{count:?}");
            assert_eq!(json[&name].as_u64(), Some(i as u64 + 1), "{name}");
        }
    }
}
