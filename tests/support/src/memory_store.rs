//! An in-memory `JobStore` with the DynamoDB adapter's conditional semantics (lease only
//! an active, due, unleased grant not done this cycle; finish only while holding the
//! lease; token writes only at the leased version). Test-only: the refresh benchmark uses
//! it to measure the job's own throughput where moto, a single Python process that
//! serves one request at a time, would otherwise be the bottleneck.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use offline_access::crypto::NewRefreshToken;
use offline_access::domain::GoogleSubject;
use offline_access::store::{
    AccessTokenCache, CachedToken, Checkpoint, DriveOutcome, Failing, Grant, GrantOutcome, GrantStatus, Holder,
    JobStore, Lease, Recorded, ScanPage, ScanRequest, StoreError,
};

#[derive(Debug, Clone)]
struct Row {
    grant: Grant,
    last_cycle: Option<String>,
    lease: Option<(String, u64)>,
}

#[derive(Debug, Default)]
pub struct MemoryJobStore {
    rows: Mutex<BTreeMap<String, Row>>,
    checkpoints: Mutex<HashMap<(String, u32), Checkpoint>>,
    done: Mutex<Vec<String>>,
    access_tokens: Mutex<HashMap<String, CachedToken>>,
    /// Google quota units claimed per quota day.
    units: Mutex<HashMap<String, u64>>,
}

impl MemoryJobStore {
    pub fn with(grants: Vec<Grant>) -> Self {
        let rows = grants
            .into_iter()
            .map(|g| {
                (
                    g.sub.as_str().to_owned(),
                    Row {
                        grant: g,
                        last_cycle: None,
                        lease: None,
                    },
                )
            })
            .collect();
        Self {
            rows: Mutex::new(rows),
            ..Self::default()
        }
    }

    fn segment_of(sub: &str, segments: u32) -> u32 {
        let hash = sub
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        hash % segments
    }
}

impl MemoryJobStore {
    /// Units claimed on `day` and not given back.
    pub fn units_claimed(&self, day: &str) -> u64 {
        self.units
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(day)
            .copied()
            .unwrap_or(0)
    }
}

impl JobStore for MemoryJobStore {
    async fn released_lease(&self, _sub: &GoogleSubject) -> Result<Option<String>, StoreError> {
        // A routine record lets go of the lease here at once.
        Ok(None)
    }

    async fn claim_units(&self, day: &str, want: u64, limit: u64, _keep_until: u64) -> Result<u64, StoreError> {
        let mut units = self.units.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let spent = units.entry(day.to_owned()).or_default();
        let granted = want.min(limit.saturating_sub(*spent));
        *spent += granted;
        Ok(granted)
    }

    async fn return_units(&self, day: &str, returned: u64) -> Result<(), StoreError> {
        let mut units = self.units.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(spent) = units.get_mut(day) {
            *spent = spent.saturating_sub(returned);
        }
        Ok(())
    }

    async fn cycle_done(&self, cycle: &str) -> Result<bool, StoreError> {
        Ok(self.done.lock().expect("done").iter().any(|c| c == cycle))
    }

    async fn mark_cycle_done(&self, cycle: &str, _now: u64, _ttl: Duration) -> Result<(), StoreError> {
        self.done.lock().expect("done").push(cycle.to_owned());
        Ok(())
    }

    async fn checkpoints(&self, cycle: &str, segments: u32) -> Result<Vec<Checkpoint>, StoreError> {
        let saved = self.checkpoints.lock().expect("checkpoints");
        Ok((0..segments)
            .map(|segment| {
                saved.get(&(cycle.to_owned(), segment)).cloned().unwrap_or(Checkpoint {
                    segment,
                    start: None,
                    done: false,
                })
            })
            .collect())
    }

    async fn save_checkpoint(
        &self,
        cycle: &str,
        checkpoint: &Checkpoint,
        _now: u64,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut saved = self.checkpoints.lock().expect("checkpoints");
        let slot = saved
            .entry((cycle.to_owned(), checkpoint.segment))
            .or_insert_with(|| checkpoint.clone());
        if !slot.done {
            *slot = checkpoint.clone();
        }
        Ok(())
    }

    async fn scan_active(&self, scan: ScanRequest<'_>) -> Result<ScanPage, StoreError> {
        let rows = self.rows.lock().expect("rows");
        let start = scan
            .start
            .map_or(std::ops::Bound::Unbounded, |s| std::ops::Bound::Excluded(s.to_owned()));
        let mut evaluated = 0;
        let mut page = ScanPage::default();
        for (sub, row) in rows.range((start, std::ops::Bound::Unbounded)) {
            if Self::segment_of(sub, scan.segments) != scan.segment {
                continue;
            }
            evaluated += 1;
            let g = &row.grant;
            if matches!(g.status, GrantStatus::Active | GrantStatus::Revoking)
                && row.last_cycle.as_deref() != Some(scan.cycle)
                && g.next_attempt_at.is_none_or(|t| t <= scan.now)
            {
                page.grants.push(g.clone());
            }
            if evaluated == scan.limit {
                page.next = Some(sub.clone());
                break;
            }
        }
        Ok(page)
    }

    async fn lease(&self, sub: &GoogleSubject, lease: Lease<'_>) -> Result<Option<Grant>, StoreError> {
        let mut rows = self.rows.lock().expect("rows");
        let Some(row) = rows.get_mut(sub.as_str()) else {
            return Ok(None);
        };
        let free = row.lease.as_ref().is_none_or(|(_, until)| *until < lease.now);
        let due = row.grant.next_attempt_at.is_none_or(|t| t <= lease.now);
        if !matches!(row.grant.status, GrantStatus::Active | GrantStatus::Revoking)
            || !free
            || !due
            || row.last_cycle.as_deref() == Some(lease.cycle)
        {
            return Ok(None);
        }
        row.lease = Some((lease.owner.to_owned(), lease.until));
        // As the DynamoDB adapter: the grant as it was, and the cycle taken up front.
        let mut before = row.grant.clone();
        before.last_cycle = row.last_cycle.replace(lease.cycle.to_owned());
        if let Some((at, reason)) = lease.notice {
            row.grant.expiring = Some(offline_access::store::Expiring {
                at,
                reason: reason.to_owned(),
            });
            row.grant.version += 1;
        }
        Ok(Some(before))
    }

    async fn save_token(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        token: &NewRefreshToken,
    ) -> Result<Recorded, StoreError> {
        let mut rows = self.rows.lock().expect("rows");
        let Some(row) = rows.get_mut(leased.sub.as_str()) else {
            return Ok(Recorded::Superseded);
        };
        let holds = row.lease.as_ref().map(|(owner, _)| owner.as_str()) == Some(lease.owner);
        if !holds || row.grant.token_gen != leased.token_gen || row.grant.status != leased.status {
            return Ok(Recorded::Superseded);
        }
        row.grant.refresh_token = Some(token.sealed.clone());
        row.grant.token_digests = Some(token.digests.clone());
        row.grant.token_gen += 1;
        row.grant.version += 1;
        Ok(Recorded::Written)
    }

    async fn record(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        finish: &GrantOutcome,
        cached: Option<&CachedToken>,
    ) -> Result<(Recorded, bool), StoreError> {
        if let Some(token) = cached {
            self.cache_token(&leased.sub, token).await?;
        }
        let routine = cached.is_some() && finish.is_routine(leased, &Holder::Cycle(lease));
        let mut rows = self.rows.lock().expect("rows");
        if routine {
            // The cached token's write ends the lease (the grant itself is not written).
            if let Some(row) = rows.get_mut(leased.sub.as_str())
                && row.lease.as_ref().map(|(owner, _)| owner.as_str()) == Some(lease.owner)
            {
                row.lease = None;
                row.grant.last_refresh_at = Some(lease.now);
            }
            return Ok((Recorded::Written, true));
        }
        Ok((
            Self::record_on_grant(&mut rows, leased, lease, finish),
            cached.is_some(),
        ))
    }
}

impl MemoryJobStore {
    fn record_on_grant(
        rows: &mut BTreeMap<String, Row>,
        leased: &Grant,
        lease: Lease<'_>,
        finish: &GrantOutcome,
    ) -> Recorded {
        let Some(row) = rows.get_mut(leased.sub.as_str()) else {
            return Recorded::LeaseLost;
        };
        if row.lease.as_ref().map(|(owner, _)| owner.as_str()) != Some(lease.owner) {
            return Recorded::LeaseLost;
        }
        // As the DynamoDB adapter: the token and status leased, not the version (a lease
        // that announces an end moves the version on).
        let same_version = row.grant.token_gen == leased.token_gen && row.grant.status == leased.status;
        row.lease = None;
        let g = &mut row.grant;
        let mut result = Recorded::Written;
        match finish {
            GrantOutcome::Released | GrantOutcome::Unopened { .. } => {
                row.last_cycle = leased.last_cycle.clone();
                return result;
            }
            GrantOutcome::Refreshed {
                new_token,
                refresh_expires_at,
                drive,
                scopes,
            } => {
                g.last_refresh_at = Some(lease.now);
                if let (Some(scopes), true) = (scopes, same_version) {
                    g.scopes = scopes.clone();
                }
                if refresh_expires_at.is_some() {
                    g.refresh_expires_at = *refresh_expires_at;
                }
                g.refresh_failing = None;
                let failing = |was: &Option<Failing>, error: &str| {
                    Some(Failing {
                        since: was.as_ref().map_or(lease.now, |f| f.since),
                        error: error.to_owned(),
                    })
                };
                match drive {
                    DriveOutcome::Failed {
                        failure_count,
                        next_attempt_at,
                        error,
                        ..
                    } => {
                        g.failure_count = *failure_count;
                        g.next_attempt_at = Some(*next_attempt_at);
                        g.api_failing = failing(&g.api_failing, error);
                    }
                    DriveOutcome::Synced { .. }
                    | DriveOutcome::Reached
                    | DriveOutcome::Skipped
                    | DriveOutcome::Refused { .. } => {
                        g.failure_count = 0;
                        g.next_attempt_at = None;
                        match drive {
                            DriveOutcome::Refused { error } => g.api_failing = failing(&g.api_failing, error),
                            DriveOutcome::Skipped => {}
                            _ => g.api_failing = None,
                        }
                    }
                }
                if let DriveOutcome::Synced { .. } | DriveOutcome::Reached = drive {
                    g.last_sync_at = Some(lease.now);
                }
                if let DriveOutcome::Synced { files, truncated } = drive {
                    g.drive_files = Some(*files);
                    g.drive_truncated = *truncated;
                }
                if let Some(token) = new_token {
                    if same_version {
                        g.refresh_token = Some(token.sealed.clone());
                        g.token_digests = Some(token.digests.clone());
                        g.token_gen += 1;
                        g.version += 1;
                    } else {
                        result = Recorded::Superseded;
                    }
                }
            }
            GrantOutcome::Deferred {
                failure_count,
                next_attempt_at,
                error,
                ..
            } => {
                g.failure_count = *failure_count;
                g.next_attempt_at = Some(*next_attempt_at);
                g.refresh_failing = Some(Failing {
                    since: g.refresh_failing.as_ref().map_or(lease.now, |f| f.since),
                    error: (*error).to_owned(),
                });
            }
            GrantOutcome::Deleted { .. } => {
                if same_version {
                    g.status = GrantStatus::Deleted;
                    g.refresh_token = None;
                    g.version += 1;
                } else {
                    result = Recorded::Superseded;
                }
            }
            GrantOutcome::Reauthenticate { reason } => {
                if same_version {
                    g.status = GrantStatus::ReconsentRequired;
                    g.status_reason = Some(reason.clone());
                    g.version += 1;
                } else {
                    result = Recorded::Superseded;
                }
            }
            GrantOutcome::Revoked { reason, .. } | GrantOutcome::ReconsentRequired { reason } => {
                if same_version {
                    g.status = if matches!(finish, GrantOutcome::Revoked { .. }) {
                        GrantStatus::Revoked
                    } else {
                        GrantStatus::ReconsentRequired
                    };
                    g.refresh_token = None;
                    g.status_reason = Some(reason.clone());
                    g.version += 1;
                } else {
                    result = Recorded::Superseded;
                }
            }
        }
        row.last_cycle = Some(lease.cycle.to_owned());
        result
    }
}

impl AccessTokenCache for MemoryJobStore {
    async fn cache_token(&self, sub: &GoogleSubject, token: &CachedToken) -> Result<(), StoreError> {
        let mut cache = self
            .access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep = cache
            .get(sub.as_str())
            .is_some_and(|held| held.obtained_at > token.obtained_at);
        if !keep {
            cache.insert(sub.as_str().to_owned(), token.clone());
        }
        Ok(())
    }
}
