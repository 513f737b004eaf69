//! The offline job's side of the tables (the port is [`crate::store::JobStore`]).
//!
//! Checkpoints (where each scan segment stopped) and the cycle's done marker live in the
//! state table and expire with its TTL.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::expr::{Placeholders, Update};
use super::schema::{self, grant, n, s, state};
use super::{DynamoStore, conflict_or, holds_either_way, lease};
use crate::crypto::NewRefreshToken;
use crate::domain::GoogleSubject;
use crate::store::{
    CachedToken, Checkpoint, Grant, GrantOutcome, GrantStatus, Holder, JobStore, Lease, Recorded, ScanPage,
    ScanRequest, StoreError,
};
use crate::upstream::classify_aws;

/// A grant the job should do in `cycle` at `now`: active (or being deleted: its
/// revocation is retried), not done this cycle, and due. The scan filters on it and the
/// lease is conditioned on it (plus being unleased).
fn due_this_cycle(p: &mut Placeholders, cycle: &str, now: u64) -> String {
    let (status, active) = (p.name(grant::STATUS), p.value(schema::status(GrantStatus::Active)));
    let revoking = p.value(schema::status(GrantStatus::Revoking));
    let (last_cycle, cycle) = (p.name(grant::LAST_CYCLE), p.value(s(cycle)));
    let (next, now) = (p.name(grant::NEXT_ATTEMPT_AT), p.value(n(now)));
    format!(
        "({status} = {active} OR {status} = {revoking}) \
         AND (attribute_not_exists({last_cycle}) OR {last_cycle} <> {cycle}) \
         AND (attribute_not_exists({next}) OR {next} <= {now})"
    )
}

impl DynamoStore {
    async fn state_item(&self, pk: String) -> Result<Option<schema::Item>, StoreError> {
        self.get(&self.state_table, (state::PK, pk)).await
    }
}

impl JobStore for DynamoStore {
    async fn cycle_done(&self, cycle: &str) -> Result<bool, StoreError> {
        let item = self.state_item(schema::cycle_key(cycle)).await?;
        Ok(item.is_some_and(|i| schema::flag(&i, state::FINISHED)))
    }

    async fn mark_cycle_done(&self, cycle: &str, now: u64, ttl: Duration) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::cycle_key(cycle)))
            .item(state::FINISHED, AttributeValue::Bool(true))
            .item(state::FINISHED_AT, n(now))
            .item(state::EXPIRES_AT, n(now + ttl.as_secs()))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn checkpoints(&self, cycle: &str, segments: u32) -> Result<Vec<Checkpoint>, StoreError> {
        let mut found = Vec::with_capacity(segments as usize);
        for segment in 0..segments {
            let item = self.state_item(schema::checkpoint_key(cycle, segment)).await?;
            found.push(Checkpoint {
                segment,
                start: item.as_ref().and_then(|i| schema::text(i, state::START)),
                done: item.is_some_and(|i| schema::flag(&i, state::FINISHED)),
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
        let mut p = Placeholders::default();
        let (done, no) = (p.name(state::FINISHED), p.value(AttributeValue::Bool(false)));
        // A segment once done stays done, whatever an overlapping invocation still writes.
        let condition = format!("attribute_not_exists({done}) OR {done} = {no}");
        let mut put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::checkpoint_key(cycle, checkpoint.segment)))
            .item(state::FINISHED, AttributeValue::Bool(checkpoint.done))
            .item(state::EXPIRES_AT, n(now + ttl.as_secs()));
        if let Some(start) = &checkpoint.start {
            put = put.item(state::START, s(start.clone()));
        }
        let result = put
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .send()
            .await;
        holds_either_way(result.map_err(conflict_or))
    }

    async fn scan_active(&self, scan: ScanRequest<'_>) -> Result<ScanPage, StoreError> {
        let segment = i32::try_from(scan.segment).map_err(|_| StoreError::Corrupt("segment"))?;
        let segments = i32::try_from(scan.segments).map_err(|_| StoreError::Corrupt("segments"))?;
        let mut p = Placeholders::default();
        // Grants done this cycle or not due are filtered out by DynamoDB, so a resumed
        // run skips them without a write each.
        let filter = due_this_cycle(&mut p, scan.cycle, scan.now);
        let out = self
            .client
            .scan()
            .table_name(&self.grants_table)
            .segment(segment)
            .total_segments(segments)
            .limit(scan.limit)
            .filter_expression(filter)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .set_exclusive_start_key(scan.start.map(|sub| HashMap::from([(grant::SUB.to_owned(), s(sub))])))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        let (grants, malformed) = schema::grants_of(out.items());
        let page = ScanPage {
            grants,
            malformed: malformed.len() as u64,
            next: out.last_evaluated_key().and_then(|k| schema::text(k, grant::SUB)),
        };
        Ok(page)
    }

    async fn lease(&self, sub: &GoogleSubject, lease: Lease<'_>) -> Result<Option<Grant>, StoreError> {
        let mut u = Update::default();
        let due = due_this_cycle(&mut u.p, lease.cycle, lease.now);
        let free = lease::free(&mut u.p, lease.now, lease.released);
        u.condition(format!("{due} AND {free}"));
        lease::take(&mut u, lease.owner, lease.until);
        // What a routine cycle ends with, so that its record is the cached token alone.
        u.set(grant::LAST_CYCLE, s(lease.cycle))
            .set(grant::LAST_REFRESH_AT, n(lease.now));
        if lease.drive_planned {
            u.set(grant::LAST_SYNC_AT, n(lease.now));
        }
        if let Some((at, reason)) = lease.notice {
            // An announcement is a change of its own: its event has its own version.
            u.set(grant::EXPIRING_AT, n(at))
                .set(grant::EXPIRING_REASON, s(reason))
                .set(grant::UPDATED_AT, n(lease.now))
                .increment(grant::VERSION);
        }
        let result = self
            .update_grant_item(sub.as_str(), &u)
            // The grant as it was: what a non-routine record puts back.
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result.map_err(conflict_or) {
            Ok(out) => out.attributes().map(schema::grant_from_item).transpose(),
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save_token(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        token: &NewRefreshToken,
    ) -> Result<Recorded, StoreError> {
        let mut u = Update::default();
        let (owner, me) = (u.p.name(grant::LEASE_OWNER), u.p.value(s(lease.owner)));
        u.condition(format!("{owner} = {me}"));
        lease::on_leased_token(&mut u, leased);
        u.increment(grant::VERSION);
        schema::set_token(&mut u, token)
            .set(grant::TOKEN_ISSUED_AT, n(lease.now))
            .set(grant::UPDATED_AT, n(lease.now));
        if self.update_grant(leased.sub.as_str(), &u).await? {
            Ok(Recorded::Written)
        } else {
            Ok(Recorded::Superseded)
        }
    }

    async fn released_lease(&self, sub: &GoogleSubject) -> Result<Option<String>, StoreError> {
        let item = self.state_item(schema::access_key(sub.as_str())).await?;
        Ok(item.and_then(|i| schema::text(&i, state::RELEASED_LEASE)))
    }

    async fn claim_units(&self, day: &str, want: u64, limit: u64, keep_until: u64) -> Result<u64, StoreError> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let mut want = want.min(limit);
        // Claims race only with other invocations' claims: a few tries settle it.
        for _ in 0..5 {
            if want == 0 {
                return Ok(0);
            }
            let mut u = Update::default();
            let (units, most) = (u.p.name(state::UNITS), u.p.value(n(limit - want)));
            u.condition(format!("attribute_not_exists({units}) OR {units} <= {most}"));
            u.add(state::UNITS, n(want)).set_once(state::EXPIRES_AT, n(keep_until));
            let result = self
                .update_state_item(schema::quota_key(day), &u)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(want),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                        let spent = refused
                            .item()
                            .and_then(|item| schema::number(item, state::UNITS))
                            .unwrap_or(limit);
                        want = want.min(limit.saturating_sub(spent));
                    }
                    _ => return Err(classify_aws("dynamodb", &e).into()),
                },
            }
        }
        Ok(0)
    }

    async fn return_units(&self, day: &str, units: u64) -> Result<(), StoreError> {
        let mut u = Update::default();
        let key = u.p.name(state::UNITS);
        u.condition(format!("attribute_exists({key})"));
        u.add(state::UNITS, AttributeValue::N(format!("-{units}")));
        let result = self.update_state_item(schema::quota_key(day), &u).send().await;
        // A count already gone (its TTL) needs nothing given back.
        holds_either_way(result.map_err(conflict_or))
    }

    async fn record(
        &self,
        leased: &Grant,
        lease: Lease<'_>,
        outcome: &GrantOutcome,
        cached: Option<&CachedToken>,
    ) -> Result<(Recorded, bool), StoreError> {
        if let Some(token) = cached
            && outcome.is_routine(leased, &Holder::Cycle(lease))
        {
            // One write: the cached token, naming the lease it ends.
            return match self.put_cached(&leased.sub, token, Some(lease.owner)).await {
                Ok(()) => Ok((Recorded::Written, true)),
                // A newer token is cached (an access-token call refreshed meanwhile): give
                // the lease back on the grant instead.
                Err(StoreError::Conflict) => self
                    .record_outcome(leased, Holder::Cycle(lease), outcome)
                    .await
                    .map(|r| (r, false)),
                Err(e) => Err(e),
            };
        }
        let cached = match cached {
            None => false,
            Some(token) => match self.put_cached(&leased.sub, token, None).await {
                Ok(()) => true,
                Err(StoreError::Conflict) => false,
                // The cache costs only a later refresh: the outcome is what must not be lost.
                Err(e) => {
                    tracing::warn!(sub = %leased.sub, error = %e, "access token not cached");
                    false
                }
            },
        };
        Ok((
            self.record_outcome(leased, Holder::Cycle(lease), outcome).await?,
            cached,
        ))
    }
}
