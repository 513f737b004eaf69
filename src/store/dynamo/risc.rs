//! Security events (the port is [`crate::store::RiscStore`]).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use super::expr::Update;
use super::schema::{self, grant, n, s, state};
use super::{DynamoStore, Updated};
use crate::domain::{GoogleSubject, TokenLookup};
use crate::store::{AccountState, Applied, GrantStatus, RiscStore, StoreError};
use crate::upstream::classify_aws;

/// The longest verification `state` kept; the rest is cut.
const MAX_STATE_CHARS: usize = 256;

impl From<Updated> for Applied {
    fn from(updated: Updated) -> Self {
        match updated {
            Updated::Written(_) => Self::Changed,
            Updated::Refused(Some(_)) => Self::Unchanged,
            Updated::Refused(None) => Self::NoGrant,
        }
    }
}

/// The index and digest a lookup reads.
fn index_of(lookup: &TokenLookup) -> (&'static str, &'static str, &[u8]) {
    match lookup {
        TokenLookup::Prefix(d) => (grant::BY_TOKEN_PREFIX, grant::TOKEN_PREFIX_DIGEST, d),
        TokenLookup::DoubleSha512(d) => (grant::BY_TOKEN_HASH, grant::TOKEN_HASH, d),
    }
}

impl DynamoStore {
    /// Records when Google last spoke about the account, if no later word is recorded:
    /// nothing else about the grant changes (no status, no version, no event).
    async fn record_account_event_at(&self, sub: &GoogleSubject, said_at: u64) -> Result<(), StoreError> {
        let mut u = Update::default();
        let (key, status, at) = (
            u.p.name(grant::SUB),
            u.p.name(grant::STATUS),
            u.p.name(grant::ACCOUNT_EVENT_AT),
        );
        let (deleted, said) = (u.p.value(schema::status(GrantStatus::Deleted)), u.p.value(n(said_at)));
        u.condition(format!(
            "attribute_exists({key}) AND {status} <> {deleted} AND (attribute_not_exists({at}) OR {at} < {said})"
        ));
        u.set(grant::ACCOUNT_EVENT_AT, n(said_at));
        // Refused: a later word landed meanwhile, or the grant is gone; either way done.
        self.update_grant_returning(sub.as_str(), &u).await?;
        Ok(())
    }
}

impl RiscStore for DynamoStore {
    async fn event_seen(&self, key: &str) -> Result<bool, StoreError> {
        let item = self
            .get(&self.state_table, (state::PK, schema::security_event_key(key)))
            .await?;
        Ok(item.is_some())
    }

    async fn record_event(&self, key: &str, now: u64, keep: Duration) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::security_event_key(key)))
            .item(state::APPLIED_AT, n(now))
            .item(state::EXPIRES_AT, n(now.saturating_add(keep.as_secs())))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn grants_by_token(&self, lookup: &TokenLookup) -> Result<Vec<GoogleSubject>, StoreError> {
        let (index, attr, digest) = index_of(lookup);
        let pages = self
            .client
            .query()
            .table_name(&self.grants_table)
            .index_name(index)
            .key_condition_expression("#d = :d")
            .expression_attribute_names("#d", attr)
            .expression_attribute_values(":d", schema::bytes(digest))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut subs = Vec::new();
        for item in pages {
            let item = item.map_err(|e| classify_aws("dynamodb", &e))?;
            let sub = schema::text(&item, grant::SUB)
                .and_then(|s| GoogleSubject::parse(&s).ok())
                .ok_or(StoreError::Corrupt(grant::SUB))?;
            subs.push(sub);
        }
        Ok(subs)
    }

    async fn revoke_tokens(
        &self,
        sub: &GoogleSubject,
        reason: &str,
        only_if: Option<&TokenLookup>,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let mut u = Update::default();
        let (key, status) = (u.p.name(grant::SUB), u.p.name(grant::STATUS));
        let left_alone = [GrantStatus::Revoked, GrantStatus::Revoking, GrantStatus::Deleted]
            .map(|st| format!("{status} <> {}", u.p.value(schema::status(st))))
            .join(" AND ");
        u.condition(format!("attribute_exists({key}) AND {left_alone}"));
        if let Some(lookup) = only_if {
            let (_, attr, digest) = index_of(lookup);
            let (a, d) = (u.p.name(attr), u.p.value(schema::bytes(digest)));
            u.condition(format!("{a} = {d}"));
        }
        schema::remove_token(&mut u)
            .set(grant::STATUS, schema::status(GrantStatus::Revoked))
            .set(grant::STATUS_REASON, s(reason))
            .remove(grant::LIKELY_CAUSE)
            .set(grant::UPDATED_AT, n(now))
            .increment(grant::VERSION);
        let updated = self.update_grant_returning(sub.as_str(), &u).await?;
        if let Updated::Written(item) = &updated {
            self.end_cached_access_token(sub, schema::token_gen(item), now).await?;
        }
        Ok(updated.into())
    }

    async fn set_account_state(
        &self,
        sub: &GoogleSubject,
        account: AccountState,
        said_at: u64,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let mut u = Update::default();
        let (status, at) = (u.p.name(grant::STATUS), u.p.name(grant::ACCOUNT_EVENT_AT));
        let said = u.p.value(n(said_at));
        let (from, to) = match account {
            AccountState::Disabled => (GrantStatus::Active, GrantStatus::Suspended),
            AccountState::Enabled => (GrantStatus::Suspended, GrantStatus::Active),
        };
        let from = u.p.value(schema::status(from));
        u.condition(format!(
            "{status} = {from} AND (attribute_not_exists({at}) OR {at} <= {said})"
        ));
        u.set(grant::STATUS, schema::status(to))
            .set(grant::ACCOUNT_EVENT_AT, n(said_at))
            .set(grant::UPDATED_AT, n(now))
            .increment(grant::VERSION);
        match account {
            AccountState::Disabled => u.set(grant::STATUS_REASON, s(crate::store::reasons::RISC_ACCOUNT_DISABLED)),
            AccountState::Enabled => u.remove(grant::STATUS_REASON),
        };
        let updated = self.update_grant_returning(sub.as_str(), &u).await?;
        if let Updated::Written(item) = &updated {
            let token_gen = schema::token_gen(item);
            match account {
                // Suspended: its cached token is not served while the account is disabled,
                // nor written again by a refresh in flight.
                AccountState::Disabled => self.end_cached_access_token(sub, token_gen, now).await?,
                // Active again with the same refresh token: its access tokens may be cached
                // again.
                AccountState::Enabled => self.resume_cached_access_token(sub, token_gen).await?,
            }
        }
        if let Updated::Refused(Some(item)) = &updated
            && schema::number(item, grant::ACCOUNT_EVENT_AT).is_none_or(|at| at < said_at)
        {
            // The grant is not where this word moves it from (`enabled` on an active grant,
            // say, delivered before the older `disabled` it answers): the word is
            // recorded all the same, so an older one delivered later cannot undo it.
            self.record_account_event_at(sub, said_at).await?;
        }
        Ok(updated.into())
    }

    async fn flag_for_review(&self, sub: &GoogleSubject, flag: &str, now: u64) -> Result<Applied, StoreError> {
        let mut u = Update::default();
        let (key, status) = (u.p.name(grant::SUB), u.p.name(grant::STATUS));
        let deleted = u.p.value(schema::status(GrantStatus::Deleted));
        u.condition(format!("attribute_exists({key}) AND {status} <> {deleted}"));
        // A version of its own: the event it makes has its own (`sub`, `version`).
        u.add(grant::REVIEW_FLAGS, AttributeValue::Ss(vec![flag.to_owned()]))
            .set(grant::UPDATED_AT, n(now))
            .increment(grant::VERSION);
        Ok(self.update_grant_returning(sub.as_str(), &u).await?.into())
    }

    async fn record_verification(&self, verification: &str, now: u64) -> Result<(), StoreError> {
        let kept: String = verification.chars().take(MAX_STATE_CHARS).collect();
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::RISC_VERIFICATION_KEY))
            .item(state::VERIFICATION_STATE, s(kept))
            .item(state::RECEIVED_AT, n(now))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }
}
