//! The offline job's side of the grants table (DESIGN §8).
//!
//! A grant is processed under a lease: a conditional write that succeeds only for an
//! active grant that nobody else holds, that is due, and that this cycle has not done yet
//! (`last_cycle`). The finishing write is conditioned on still holding the lease, and
//! — when it replaces or deletes the refresh token — on the version read at lease time,
//! so a sign-in that stored a newer token meanwhile is never overwritten.
//!
//! Checkpoints (where each scan segment stopped) and the cycle's done marker live in the
//! state table and expire with its TTL.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, Grant, StoreError, grant_from_item, n, s, sealed_to_item};
use crate::crypto::SealedToken;
use crate::domain::GoogleSubject;
use crate::upstream::classify_aws;

/// One page of a scan segment.
#[derive(Debug, Default)]
pub struct ScanPage {
    pub grants: Vec<Grant>,
    /// Where the next page starts; `None` when the segment is exhausted.
    pub next: Option<String>,
}

/// One scan request.
#[derive(Debug, Clone, Copy)]
pub struct ScanRequest<'a> {
    pub segment: u32,
    pub segments: u32,
    pub start: Option<&'a str>,
    pub limit: i32,
    pub cycle: &'a str,
    pub now: u64,
}

/// Where one scan segment of a cycle stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub segment: u32,
    pub start: Option<String>,
    pub done: bool,
}

/// A lease request.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub cycle: &'a str,
    pub now: u64,
    pub until: u64,
}

/// How a leased grant ends this cycle.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Refreshed. `new_token` is a rotated refresh token to store in place of the old one.
    Refreshed {
        new_token: Option<SealedToken>,
        drive: DriveOutcome,
    },
    /// A transient failure outlived its retries: try again at `next_attempt_at`.
    Deferred {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
    },
    /// Google said `invalid_grant`: the token is deleted and the grant marked revoked.
    Revoked { reason: String },
    /// The stored token cannot be used (it does not decrypt): the user must consent again.
    ReconsentRequired { reason: String },
    /// Let go without recording anything (the run stopped): the grant is retried.
    Release,
}

/// How the Drive part of a refresh went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveOutcome {
    Synced {
        files: u64,
    },
    /// The grant lacks `drive.appdata`: refreshed only, as a keep-alive.
    NotGranted,
    /// Drive failed after retries: the grant is retried at `next_attempt_at`.
    Failed {
        failure_count: u32,
        next_attempt_at: u64,
        reason: String,
    },
}

/// What the finishing write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishResult {
    Recorded,
    /// A sign-in stored a newer grant meanwhile: the outcome was recorded without
    /// touching its token or status.
    Superseded,
    /// The lease had expired and someone else holds the grant: nothing was written.
    LeaseLost,
}

/// The job's store operations as a port.
pub trait JobStore: Send + Sync {
    fn cycle_done(&self, cycle: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn mark_cycle_done(
        &self,
        cycle: &str,
        now: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn checkpoints(
        &self,
        cycle: &str,
        segments: u32,
    ) -> impl Future<Output = Result<Vec<Checkpoint>, StoreError>> + Send;
    fn save_checkpoint(
        &self,
        cycle: &str,
        checkpoint: &Checkpoint,
        now: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One page of active grants that are due and not yet done in `cycle`.
    fn scan_active(&self, scan: ScanRequest<'_>) -> impl Future<Output = Result<ScanPage, StoreError>> + Send;
    /// The leased grant as stored, or `None` when it is not ours to take.
    fn lease(
        &self,
        sub: &GoogleSubject,
        lease: Lease<'_>,
    ) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    fn finish(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        finish: &Finish,
    ) -> impl Future<Output = Result<FinishResult, StoreError>> + Send;
}

/// A grant the job should do in `:cycle` at `:now`: active, not done this cycle, and due.
/// The scan filters on it and the lease is conditioned on it (plus being unleased).
const DUE_THIS_CYCLE: &str = "#status = :active \
    AND (attribute_not_exists(last_cycle) OR last_cycle <> :cycle) \
    AND (attribute_not_exists(next_attempt_at) OR next_attempt_at <= :now)";

fn checkpoint_key(cycle: &str, segment: u32) -> String {
    format!("cycle#{cycle}#segment#{segment}")
}

/// The fields of a deferral: how often it failed, when to try again, and why.
fn record_deferral(
    sets: &mut Vec<String>,
    values: &mut HashMap<String, AttributeValue>,
    failure_count: u32,
    next_attempt_at: u64,
    reason: &str,
) {
    sets.extend([
        "failure_count = :failures".into(),
        "next_attempt_at = :next_attempt".into(),
        "last_error = :reason".into(),
    ]);
    values.insert(":failures".into(), n(failure_count));
    values.insert(":next_attempt".into(), n(next_attempt_at));
    values.insert(":reason".into(), s(reason));
}

/// Whether `expression` uses the placeholder `name` (as a whole token).
fn references(expression: &str, name: &str) -> bool {
    expression.match_indices(name).any(|(at, _)| {
        expression[at + name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

fn is_conditional<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    async fn update_leased(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        finish: &Finish,
        with_version: bool,
    ) -> Result<bool, StoreError> {
        let mut sets: Vec<String> = vec!["last_cycle = :cycle".into(), "updated_at = :now".into()];
        let mut removes: Vec<&str> = vec!["lease_owner", "lease_until"];
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":cycle".into(), s(lease.cycle)),
            (":now".into(), n(lease.now)),
            (":me".into(), s(lease.owner)),
        ]);
        let mut condition = "lease_owner = :me".to_owned();
        match finish {
            Finish::Refreshed { new_token, drive } => {
                sets.push("last_refresh_at = :now".into());
                match drive {
                    DriveOutcome::Failed {
                        failure_count,
                        next_attempt_at,
                        reason,
                    } => record_deferral(&mut sets, &mut values, *failure_count, *next_attempt_at, reason),
                    DriveOutcome::Synced { .. } | DriveOutcome::NotGranted => {
                        sets.push("failure_count = :zero".into());
                        values.insert(":zero".into(), n(0));
                        removes.extend(["next_attempt_at", "last_error"]);
                    }
                }
                if let DriveOutcome::Synced { files } = drive {
                    sets.extend(["last_sync_at = :now".into(), "drive_files = :files".into()]);
                    values.insert(":files".into(), n(files));
                }
                if let (Some(token), true) = (new_token, with_version) {
                    sets.extend(["refresh_token = :token".into(), "version = :new_version".into()]);
                    values.insert(":token".into(), sealed_to_item(token));
                }
            }
            Finish::Deferred {
                failure_count,
                next_attempt_at,
                reason,
            } => record_deferral(&mut sets, &mut values, *failure_count, *next_attempt_at, reason),
            Finish::Revoked { reason } | Finish::ReconsentRequired { reason } if with_version => {
                let status = if matches!(finish, Finish::Revoked { .. }) {
                    "revoked"
                } else {
                    "reconsent_required"
                };
                sets.extend([
                    "#status = :status".into(),
                    "status_reason = :reason".into(),
                    "version = :new_version".into(),
                ]);
                values.insert(":status".into(), s(status));
                values.insert(":reason".into(), s(reason.clone()));
                if matches!(finish, Finish::Revoked { .. }) {
                    removes.push("refresh_token");
                }
            }
            Finish::Revoked { .. } | Finish::ReconsentRequired { .. } => {}
            Finish::Release => sets.retain(|s| s != "last_cycle = :cycle"),
        }
        if with_version {
            condition.push_str(" AND version = :version");
            values.insert(":version".into(), n(leased.version));
            values.insert(":new_version".into(), n(leased.version + 1));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        // DynamoDB refuses values the expressions do not use.
        values.retain(|k, _| references(&expression, k) || references(&condition, k));
        let mut update = self
            .client
            .update_item()
            .table_name(&self.grants_table)
            .key("sub", s(leased.sub.as_str()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values));
        if sets.iter().any(|s| s.contains("#status")) {
            update = update.expression_attribute_names("#status", "status");
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(classify_aws("dynamodb", &e).into()),
        }
    }
}

impl JobStore for DynamoStore {
    async fn cycle_done(&self, cycle: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.state_table)
            .key("pk", s(format!("cycle#{cycle}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("done"))
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false))
    }

    async fn mark_cycle_done(&self, cycle: &str, now: u64, ttl: Duration) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item("pk", s(format!("cycle#{cycle}")))
            .item("done", AttributeValue::Bool(true))
            .item("finished_at", n(now))
            .item("expires_at", n(now + ttl.as_secs()))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn checkpoints(&self, cycle: &str, segments: u32) -> Result<Vec<Checkpoint>, StoreError> {
        let mut found = Vec::with_capacity(segments as usize);
        for segment in 0..segments {
            let out = self
                .client
                .get_item()
                .table_name(&self.state_table)
                .key("pk", s(checkpoint_key(cycle, segment)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify_aws("dynamodb", &e))?;
            let item = out.item();
            found.push(Checkpoint {
                segment,
                start: item.and_then(|i| i.get("start")).and_then(|v| v.as_s().ok()).cloned(),
                done: item
                    .and_then(|i| i.get("done"))
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
            });
        }
        Ok(found)
    }

    async fn save_checkpoint(
        &self,
        cycle: &str,
        checkpoint: &Checkpoint,
        now: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item("pk", s(checkpoint_key(cycle, checkpoint.segment)))
            .item("done", AttributeValue::Bool(checkpoint.done))
            .item("expires_at", n(now + ttl.as_secs()));
        if let Some(start) = &checkpoint.start {
            put = put.item("start", s(start.clone()));
        }
        // A segment once done stays done, whatever an overlapping invocation still writes.
        let result = put
            .condition_expression("attribute_not_exists(done) OR done = :false")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(()),
            Err(e) => Err(classify_aws("dynamodb", &e).into()),
        }
    }

    async fn scan_active(&self, scan: ScanRequest<'_>) -> Result<ScanPage, StoreError> {
        let segment = i32::try_from(scan.segment).map_err(|_| StoreError::Corrupt("segment"))?;
        let segments = i32::try_from(scan.segments).map_err(|_| StoreError::Corrupt("segments"))?;
        // Grants done this cycle or not due are filtered out by DynamoDB, so a resumed
        // run skips them without a write each.
        let out = self
            .client
            .scan()
            .table_name(&self.grants_table)
            .segment(segment)
            .total_segments(segments)
            .limit(scan.limit)
            .filter_expression(DUE_THIS_CYCLE)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":cycle", s(scan.cycle))
            .expression_attribute_values(":now", n(scan.now))
            .set_exclusive_start_key(scan.start.map(|sub| HashMap::from([("sub".to_owned(), s(sub))])))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        let grants = out.items().iter().map(grant_from_item).collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("sub"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(ScanPage { grants, next })
    }

    async fn lease(&self, sub: &GoogleSubject, lease: Lease<'_>) -> Result<Option<Grant>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.grants_table)
            .key("sub", s(sub.as_str()))
            .update_expression("SET lease_owner = :me, lease_until = :until")
            .condition_expression(format!(
                "{DUE_THIS_CYCLE} AND (attribute_not_exists(lease_until) OR lease_until < :now)"
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":me", s(lease.owner))
            .expression_attribute_values(":until", n(lease.until))
            .expression_attribute_values(":now", n(lease.now))
            .expression_attribute_values(":cycle", s(lease.cycle))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes().map(grant_from_item).transpose(),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(None),
            Err(e) => Err(classify_aws("dynamodb", &e).into()),
        }
    }

    async fn finish(&self, leased: &Grant, lease: Lease<'_>, finish: &Finish) -> Result<FinishResult, StoreError> {
        let touches_token = match finish {
            Finish::Refreshed { new_token, .. } => new_token.is_some(),
            Finish::Revoked { .. } | Finish::ReconsentRequired { .. } => true,
            Finish::Deferred { .. } | Finish::Release => false,
        };
        if self.update_leased(leased, lease, finish, touches_token).await? {
            return Ok(FinishResult::Recorded);
        }
        if !touches_token {
            return Ok(FinishResult::LeaseLost);
        }
        // The version moved: a sign-in stored a newer grant. Record the outcome without
        // touching its token or status.
        if self.update_leased(leased, lease, finish, false).await? {
            Ok(FinishResult::Superseded)
        } else {
            Ok(FinishResult::LeaseLost)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::references;

    #[test]
    fn placeholders_are_matched_as_whole_tokens() {
        assert!(references("SET a = :new_version", ":new_version"));
        assert!(!references("SET a = :next_attempt", ":next"));
        assert!(references("lease_owner = :me AND version = :version", ":me"));
        assert!(!references("SET x = :members", ":me"));
    }
}
