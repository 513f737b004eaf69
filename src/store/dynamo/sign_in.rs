//! Sign-in's two round trips: the claim of the code (a conditional `PutItem` in the state
//! table, which on a repeat returns the recorded outcome in the same answer), then one
//! `TransactWriteItems` that stores the grant and records the outcome together — so a
//! replay can never see a success that was not stored, nor a stored grant lose its
//! outcome.
//!
//! With a new refresh token the grant is written whatever it held: put whole when there is
//! none yet (a first consent, the usual case for a new token), else updated (a new token
//! always wins; the version goes up, so the offline job's write of an older one fails its
//! condition). Without one, the stored token is kept: the write is conditioned on an
//! active grant holding a token, and on its scopes being the ones this code brings (the
//! usual case, so the answer's scopes are known without a read). When they differ, the
//! cancelled write returns the stored item, and a second write records the union at that
//! item's version.

use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update as TransactUpdate,
};

use super::expr::{Placeholders, Update};
use super::schema::{self, Item, grant, n, s, state};
use super::{DynamoStore, conflict_or, holds_either_way};
use crate::crypto::NewRefreshToken;
use crate::domain::Scopes;
use crate::store::{
    Claim, ClaimKey, Expect, Grant, GrantStatus, GrantWrite, RecordedOutcome, Refused, SignInGrant, SignInStore,
    StoreError, reasons,
};
use crate::upstream::classify_aws;

/// Why the transaction was cancelled.
enum Cancelled {
    /// The grant's condition failed; the stored item as it was, if any.
    Condition(Option<Item>),
    /// Another transaction touched the item at the same moment.
    Conflict,
    /// The claim is another attempt's now: this one's outcome is not to be recorded.
    ClaimLost,
}

impl DynamoStore {
    /// The claim's outcome, written only while `claim.owner` holds it.
    fn outcome_put(
        &self,
        claim: &ClaimKey,
        outcome: &RecordedOutcome,
        now: u64,
        window: Duration,
    ) -> Result<Put, StoreError> {
        let outcome = serde_json::to_string(outcome).map_err(|_| StoreError::Corrupt(state::OUTCOME))?;
        let mut p = Placeholders::default();
        let condition = format!("{} = {}", p.name(state::OWNER), p.value(s(claim.owner.clone())));
        Put::builder()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::sign_in_key(&claim.code)))
            .item(state::STATE, s(state::DONE))
            .item(state::OWNER, s(claim.owner.clone()))
            .item(state::OUTCOME, s(outcome))
            .item(state::EXPIRES_AT, n(now + window.as_secs()))
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .build()
            .map_err(|_| StoreError::Corrupt("outcome put"))
    }

    /// The grant's part of the write: what every sign-in sets.
    fn grant_update(&self, new: &SignInGrant, now: u64) -> Update {
        let mut u = Update::default();
        for (attr, value) in schema::profile(&new.profile) {
            u.set_or_remove(attr, value);
        }
        u.set(grant::EMAIL_VERIFIED, AttributeValue::Bool(new.email_verified))
            .set(grant::UPDATED_AT, n(now))
            .increment(grant::VERSION);
        u
    }

    /// The grant's part as an update of the stored item, which on a failed condition
    /// returns the item as it was.
    fn update_item(&self, update: &Update, sub: &str) -> Result<TransactWriteItem, StoreError> {
        let update = TransactUpdate::builder()
            .table_name(&self.grants_table)
            .key(grant::SUB, s(sub))
            .update_expression(update.expression())
            .set_condition_expression(update.condition_expression())
            .set_expression_attribute_names(update.p.names())
            .set_expression_attribute_values(update.p.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|_| StoreError::Corrupt("grant update"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One write of the sign-in rule as the grant's part of the transaction.
    fn grant_write(&self, write: &GrantWrite, new: &SignInGrant, now: u64) -> Result<TransactWriteItem, StoreError> {
        let sub = new.sub.as_str();
        match write {
            GrantWrite::PutNew => {
                let token = new
                    .refresh_token
                    .as_ref()
                    .ok_or(StoreError::Corrupt("no token to put"))?;
                self.put_new_item(new, token, now)
            }
            GrantWrite::ReplaceToken { .. } => {
                let token = new
                    .refresh_token
                    .as_ref()
                    .ok_or(StoreError::Corrupt("no token to store"))?;
                let mut u = self.grant_update(new, now);
                schema::set_token(&mut u, token)
                    .set_or_remove(grant::REFRESH_EXPIRES_AT, new.refresh_expires_at.map(n))
                    .set(grant::TOKEN_ISSUED_AT, n(now))
                    .remove(grant::LIKELY_CAUSE)
                    // Over a tombstone: a new grant, which no TTL may delete.
                    .remove(grant::EXPIRES_AT)
                    .set(grant::CLIENT_ID, s(new.client_id.clone()))
                    .set(grant::SCOPES, schema::scopes(&new.scopes))
                    .set(grant::STATUS, schema::status(GrantStatus::Active))
                    .remove(grant::STATUS_REASON)
                    .set(grant::FAILURE_COUNT, n(0))
                    .remove(grant::NEXT_ATTEMPT_AT)
                    // A new token: whatever failed to refresh the old one is behind it.
                    .remove(grant::REFRESH_FAILING_SINCE)
                    .remove(grant::REFRESH_FAILING_ERROR)
                    // Another consent: Google keeps 100 live tokens per user and client.
                    .increment(grant::RECONSENTS)
                    // Its end, if it has one, is the new token's: announced afresh.
                    .remove(grant::EXPIRING_AT)
                    .remove(grant::EXPIRING_REASON)
                    .set_once(grant::CREATED_AT, n(now));
                self.update_item(&u, sub)
            }
            GrantWrite::KeepToken {
                expect,
                scopes,
                revives,
            } => {
                let mut u = self.grant_update(new, now);
                let (token, status) = (u.p.name(grant::REFRESH_TOKEN), u.p.name(grant::STATUS));
                if revives.is_some() {
                    // Held back by Google until this very sign-in (`invalid_rapt`).
                    let (held, reason, rapt) = (
                        u.p.value(schema::status(GrantStatus::ReconsentRequired)),
                        u.p.name(grant::STATUS_REASON),
                        u.p.value(s(reasons::AWAITING_SIGN_IN)),
                    );
                    u.condition(format!(
                        "attribute_exists({token}) AND {status} = {held} AND {reason} = {rapt}"
                    ));
                    u.set(grant::STATUS, schema::status(GrantStatus::Active))
                        .remove(grant::STATUS_REASON)
                        .remove(grant::LIKELY_CAUSE);
                } else {
                    let active = u.p.value(schema::status(GrantStatus::Active));
                    u.condition(format!("attribute_exists({token}) AND {status} = {active}"));
                }
                match expect {
                    Expect::Scopes(expected) => {
                        let (attr, value) = (u.p.name(grant::SCOPES), u.p.value(schema::scopes(expected)));
                        u.condition(format!("{attr} = {value}"));
                    }
                    Expect::Version(version) => {
                        let (attr, value) = (u.p.name(grant::VERSION), u.p.value(n(*version)));
                        u.condition(format!("{attr} = {value}"));
                        u.set(grant::SCOPES, schema::scopes(scopes));
                    }
                }
                self.update_item(&u, sub)
            }
        }
    }

    /// What else the write changes, in the same transaction: a replaced token's cached
    /// access token ends (its item becomes the marker of that generation).
    fn cache_end(&self, write: &GrantWrite, sub: &str, now: u64) -> Result<Option<TransactWriteItem>, StoreError> {
        let mut u = Update::default();
        match write {
            GrantWrite::ReplaceToken { ends } => super::end_marker(&mut u, *ends, now),
            // The hold ended the generation's cached tokens with a marker naming it: the
            // grant's own condition says it is that generation, held, so the marker (or
            // an older one) goes, as a resumed account's does.
            GrantWrite::KeepToken { revives: Some(_), .. } => {
                u.remove(state::ENDED_GEN);
            }
            GrantWrite::PutNew | GrantWrite::KeepToken { revives: None, .. } => return Ok(None),
        }
        let update = TransactUpdate::builder()
            .table_name(&self.state_table)
            .key(state::PK, s(schema::access_key(sub)))
            .update_expression(u.expression())
            .set_expression_attribute_names(u.p.names())
            .set_expression_attribute_values(u.p.values())
            .build()
            .map_err(|_| StoreError::Corrupt("cache end or revival"))?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    /// The grant's part as a whole new item, on condition that there is none yet.
    fn put_new_item(
        &self,
        new: &SignInGrant,
        token: &NewRefreshToken,
        now: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut grant = Grant::new_active(
            new.sub.clone(),
            new.client_id.clone(),
            new.scopes.clone(),
            token.clone(),
            new.profile.clone(),
            new.email_verified,
            now,
        );
        grant.refresh_expires_at = new.refresh_expires_at;
        let mut p = Placeholders::default();
        let condition = format!("attribute_not_exists({})", p.name(grant::SUB));
        let put = Put::builder()
            .table_name(&self.grants_table)
            .set_item(Some(schema::item_from_grant(&grant)))
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            // A refusal returns the grant stored, whose generation the replacement ends.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|_| StoreError::Corrupt("grant put"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes the grant's part, the outcome and what else goes with the grant (`also`) in
    /// one transaction, in that order. Should the claim be another attempt's by now, the
    /// grant is written without the outcome: it holds what Google gave this attempt, and
    /// only the outcome is the claim holder's to record.
    async fn transact(
        &self,
        grant: TransactWriteItem,
        outcome: Put,
        also: Option<TransactWriteItem>,
    ) -> Result<Result<(), Cancelled>, StoreError> {
        let outcome = TransactWriteItem::builder().put(outcome).build();
        let items = [Some(grant.clone()), Some(outcome), also.clone()];
        match self.transact_items(items.into_iter().flatten().collect()).await? {
            Err(Cancelled::ClaimLost) => {
                tracing::warn!("the code's claim was taken over; storing the grant without its outcome");
                self.transact_items([Some(grant), also].into_iter().flatten().collect())
                    .await
            }
            done => Ok(done),
        }
    }

    async fn transact_items(&self, items: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Ok(())),
            Err(e) => e,
        };
        let reasons = err.as_service_error().and_then(|se| match se {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(c.cancellation_reasons().to_vec()),
            _ => None,
        });
        let Some(reasons) = reasons else {
            return Err(classify_aws("dynamodb", &err).into());
        };
        let code_of = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        match code_of(0) {
            schema::CANCELLED_BY_CONDITION => Ok(Err(Cancelled::Condition(
                reasons.first().and_then(|r| r.item()).cloned(),
            ))),
            schema::CANCELLED_BY_CONFLICT => Ok(Err(Cancelled::Conflict)),
            _ if code_of(1) == schema::CANCELLED_BY_CONFLICT || code_of(2) == schema::CANCELLED_BY_CONFLICT => {
                Ok(Err(Cancelled::Conflict))
            }
            _ if code_of(1) == schema::CANCELLED_BY_CONDITION => Ok(Err(Cancelled::ClaimLost)),
            // Cancelled because DynamoDB throttled an item: may pass, as throttling does.
            _ if (0..reasons.len()).any(|i| schema::CANCELLED_BY_THROTTLING.contains(&code_of(i))) => {
                Err(crate::upstream::Upstream::Unavailable {
                    service: "dynamodb",
                    throttled: true,
                    retry_after: None,
                    detail: "transaction cancelled: throttled".into(),
                }
                .into())
            }
            _ => {
                tracing::warn!(reasons = ?reasons.iter().map(|r| r.code()).collect::<Vec<_>>(), "sign-in write cancelled");
                Err(classify_aws("dynamodb", &err).into())
            }
        }
    }
}

fn signed_in(new: &SignInGrant, scopes: &Scopes) -> RecordedOutcome {
    RecordedOutcome::SignedIn {
        sub: new.sub.as_str().to_owned(),
        email: new.profile.email.as_ref().map(|e| e.as_str().to_owned()),
        scopes: scopes.iter().map(str::to_owned).collect(),
        offline_access: true,
    }
}

impl SignInStore for DynamoStore {
    async fn claim(&self, claim: &ClaimKey, now: u64, lease: Duration, window: Duration) -> Result<Claim, StoreError> {
        let mut p = Placeholders::default();
        let (pk, st, lease_until, expires) = (
            p.name(state::PK),
            p.name(state::STATE),
            p.name(state::LEASE_UNTIL),
            p.name(state::EXPIRES_AT),
        );
        let (in_progress, now_v) = (p.value(s(state::IN_PROGRESS)), p.value(n(now)));
        // Free, or held by an invocation whose lease ran out, or past its TTL but not yet
        // swept (DynamoDB deletes expired items lazily).
        let condition = format!(
            "attribute_not_exists({pk}) OR ({st} = {in_progress} AND {lease_until} < {now_v}) OR {expires} < {now_v}"
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::sign_in_key(&claim.code)))
            .item(state::STATE, s(state::IN_PROGRESS))
            .item(state::OWNER, s(claim.owner.clone()))
            .item(state::LEASE_UNTIL, n(now + lease.as_secs()))
            .item(state::EXPIRES_AT, n(now + window.as_secs()))
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            // A repeat learns what the record holds in this same round trip, and so does
            // the attempt that takes over an abandoned claim.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let err = match put {
            Ok(out) => {
                let taken_over = out
                    .attributes()
                    .filter(|old| schema::text(old, state::STATE).as_deref() == Some(state::IN_PROGRESS));
                let code_sent = taken_over.is_some_and(|old| schema::flag(old, state::CODE_SENT));
                return Ok(Claim::Claimed { code_sent });
            }
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(held)) = err.as_service_error() else {
            return Err(classify_aws("dynamodb", &err).into());
        };
        let item = held.item();
        match item.and_then(|i| schema::text(i, state::STATE)).as_deref() {
            Some(state::PARKED) => Ok(Claim::Parked),
            Some(state::DONE) => {
                let raw = item
                    .and_then(|i| schema::text(i, state::OUTCOME))
                    .ok_or(StoreError::Corrupt(state::OUTCOME))?;
                let outcome = serde_json::from_str(&raw).map_err(|_| StoreError::Corrupt(state::OUTCOME))?;
                Ok(Claim::Done(outcome))
            }
            _ => Ok(Claim::InProgress),
        }
    }

    async fn write_grant(
        &self,
        claim: &ClaimKey,
        write: &GrantWrite,
        new: &SignInGrant,
        now: u64,
        window: Duration,
    ) -> Result<Result<(), Refused>, StoreError> {
        let outcome = self.outcome_put(claim, &signed_in(new, write.scopes(new)), now, window)?;
        let also = self.cache_end(write, new.sub.as_str(), now)?;
        Ok(
            match self.transact(self.grant_write(write, new, now)?, outcome, also).await? {
                Ok(()) => Ok(()),
                Err(Cancelled::Conflict | Cancelled::ClaimLost) => Err(Refused::Conflict),
                Err(Cancelled::Condition(item)) => Err(Refused::Condition(
                    item.as_ref().map(schema::grant_from_item).transpose()?.map(Box::new),
                )),
            },
        )
    }

    async fn record_refusal(
        &self,
        claim: &ClaimKey,
        outcome: &RecordedOutcome,
        now: u64,
        window: Duration,
    ) -> Result<(), StoreError> {
        let put = self.outcome_put(claim, outcome, now, window)?;
        let written = self
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await;
        // Another attempt holds the claim now: the outcome is its to record.
        holds_either_way(written.map_err(conflict_or))
    }

    async fn release(&self, claim: &ClaimKey, code_sent: bool) -> Result<(), StoreError> {
        let mut u = Update::default();
        let (st, in_progress) = (u.p.name(state::STATE), u.p.value(s(state::IN_PROGRESS)));
        let (owner, me) = (u.p.name(state::OWNER), u.p.value(s(claim.owner.clone())));
        // Only the holder lets go, and only of a claim still in progress.
        u.condition(format!("{st} = {in_progress} AND {owner} = {me}"));
        let key = schema::sign_in_key(&claim.code);
        let result = if code_sent {
            // Keep the record, free to take over at once, saying the code went to Google.
            u.set(state::LEASE_UNTIL, n(0))
                .set(state::CODE_SENT, AttributeValue::Bool(true));
            self.update_state_item(key, &u)
                .send()
                .await
                .map(|_| ())
                .map_err(conflict_or)
        } else {
            self.client
                .delete_item()
                .table_name(&self.state_table)
                .key(state::PK, s(key))
                .set_condition_expression(u.condition_expression())
                .set_expression_attribute_names(u.p.names())
                .set_expression_attribute_values(u.p.values())
                .send()
                .await
                .map(|_| ())
                .map_err(conflict_or)
        };
        holds_either_way(result)
    }

    async fn park_claim(&self, claim: &ClaimKey, now: u64, ttl: Duration) -> Result<(), StoreError> {
        let mut u = Update::default();
        let (st, in_progress) = (u.p.name(state::STATE), u.p.value(s(state::IN_PROGRESS)));
        let (owner, me) = (u.p.name(state::OWNER), u.p.value(s(claim.owner.clone())));
        u.condition(format!("{st} = {in_progress} AND {owner} = {me}"));
        u.set(state::STATE, s(state::PARKED))
            .remove(state::LEASE_UNTIL)
            .set(state::EXPIRES_AT, n(now.saturating_add(ttl.as_secs())));
        let result = self
            .update_state_item(schema::sign_in_key(&claim.code), &u)
            .send()
            .await
            .map(|_| ())
            .map_err(conflict_or);
        holds_either_way(result)
    }
}
