//! The access-token side of the tables (the ports are [`crate::store::AccessStore`] and
//! [`crate::store::AccessTokenCache`]).
//!
//! The lease is the offline job's (`lease_owner`, `lease_until` on the grant), so an
//! access-token call and the job never refresh one grant at the same time. The cached
//! token is an item of its own in the state table, `access#<sub>`, whose TTL is the
//! token's expiry.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::expr::{Placeholders, Update};
use super::schema::{self, Item, grant, n, s, state};
use super::{DynamoStore, Updated, conflict_or, holds_either_way, lease};
use crate::crypto::SealedToken;
use crate::domain::GoogleSubject;
use crate::store::{
    AccessStore, AccessTokenCache, AccessView, CacheEntry, CachedToken, Grant, GrantOutcome, GrantStatus, Holder,
    Recorded, RefreshLease, StoreError,
};
use crate::upstream::classify_aws;

/// A grant's cache item as read. A cached token this code cannot read is taken as absent
/// (logged by attribute, never by value): the caller refreshes, and the new token's write
/// replaces it — it never answers 500 until the item expires.
pub(super) fn cache_entry(item: &Item) -> CacheEntry {
    let token = cached_token(item).unwrap_or_else(|attribute| {
        tracing::warn!(
            item = schema::text(item, state::PK).unwrap_or_default(),
            attribute,
            "a cached access token is malformed; taken as absent"
        );
        None
    });
    CacheEntry {
        token,
        failed_at: schema::number(item, state::FAILED_AT),
        retry_at: schema::number(item, state::RETRY_AT),
        released_lease: schema::text(item, state::RELEASED_LEASE),
    }
}

/// The cached token of a cache item; `Err` names the attribute that cannot be read.
fn cached_token(item: &Item) -> Result<Option<CachedToken>, &'static str> {
    let Some(value) = item.get(state::ACCESS_TOKEN) else {
        return Ok(None);
    };
    // Written before tokens named their generation: absent (it lives an hour at most).
    let Some(token_gen) = schema::number(item, state::GEN) else {
        return Ok(None);
    };
    let bytes = value.as_b().map_err(|_| state::ACCESS_TOKEN)?;
    let token = SealedToken::from_bytes(bytes.as_ref()).map_err(|_| state::ACCESS_TOKEN)?;
    // Sealed before its details were authenticated with it: absent too.
    if token.version() != crate::crypto::DESCRIBED_FORMAT_VERSION {
        return Ok(None);
    }
    Ok(Some(CachedToken {
        token,
        expires_at: schema::number(item, state::TOKEN_EXPIRES_AT).ok_or(state::TOKEN_EXPIRES_AT)?,
        scopes: schema::read_scopes(schema::text(item, state::SCOPES)),
        obtained_at: schema::number(item, state::OBTAINED_AT).ok_or(state::OBTAINED_AT)?,
        token_gen,
        grant_ends_at: schema::number(item, state::GRANT_ENDS_AT),
    }))
}

/// How often keys DynamoDB left unprocessed (under throttling) are asked for again.
const BATCH_GET_ATTEMPTS: u32 = 4;

impl DynamoStore {
    /// The grant item and its cache item, strongly consistent, in one `BatchGetItem`.
    async fn grant_and_cache_items(&self, sub: &GoogleSubject) -> Result<(Option<Item>, Option<Item>), StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let keys = |name: &str, value: String| {
            KeysAndAttributes::builder()
                .keys(std::collections::HashMap::from([(name.to_owned(), s(value))]))
                .consistent_read(true)
                .build()
                .map_err(|_| StoreError::Corrupt("batch keys"))
        };
        let mut request = std::collections::HashMap::from([
            (self.grants_table.clone(), keys(grant::SUB, sub.as_str().to_owned())?),
            (
                self.state_table.clone(),
                keys(state::PK, schema::access_key(sub.as_str()))?,
            ),
        ]);
        let (mut grant, mut cache) = (None, None);
        for attempt in 0..BATCH_GET_ATTEMPTS {
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| classify_aws("dynamodb", &e))?;
            for (table, items) in out.responses().into_iter().flatten() {
                let slot = if *table == self.grants_table {
                    &mut grant
                } else {
                    &mut cache
                };
                *slot = items.first().cloned();
            }
            match out.unprocessed_keys() {
                Some(left) if !left.is_empty() => request = left.clone(),
                _ => return Ok((grant, cache)),
            }
            // DynamoDB's advice for unprocessed keys: back off, then ask again.
            tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
        }
        Err(crate::upstream::Upstream::unavailable("dynamodb", "keys left unprocessed").into())
    }
}

impl DynamoStore {
    /// Puts `token` in `sub`'s cache item unless one Google issued later is there
    /// (`Conflict`), naming the job's lease the write ends, if it ends one.
    pub(super) async fn put_cached(
        &self,
        sub: &GoogleSubject,
        token: &CachedToken,
        ends_lease: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut p = Placeholders::default();
        let (obtained, new_obtained) = (p.name(state::OBTAINED_AT), p.value(n(token.obtained_at)));
        let (cached_gen, ended, token_gen) = (
            p.name(state::GEN),
            p.name(state::ENDED_GEN),
            p.value(n(token.token_gen)),
        );
        let number = p.value(s("N"));
        // Never a token of a generation that ended (a marker names it), nor one older than
        // the cached token's. Within a generation the token Google issued last wins, even
        // if it lives shorter: a forced refresh is often asked because the cached token was
        // refused. An item whose issue time is not a number is malformed, and replaced.
        let condition = format!(
            "(attribute_not_exists({ended}) OR {ended} < {token_gen}) AND \
             (attribute_not_exists({cached_gen}) OR {cached_gen} < {token_gen} OR \
              ({cached_gen} = {token_gen} AND (attribute_not_exists({obtained}) OR \
               NOT attribute_type({obtained}, {number}) OR {obtained} <= {new_obtained})))"
        );
        let mut put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::access_key(sub.as_str())))
            .item(
                state::ACCESS_TOKEN,
                AttributeValue::B(Blob::new(token.token.to_bytes())),
            )
            .item(state::TOKEN_EXPIRES_AT, n(token.expires_at))
            .item(state::SCOPES, schema::scopes(&token.scopes))
            .item(state::OBTAINED_AT, n(token.obtained_at))
            .item(state::GEN, n(token.token_gen))
            .item(state::EXPIRES_AT, n(token.expires_at));
        if let Some(lease) = ends_lease {
            put = put.item(state::RELEASED_LEASE, s(lease));
        }
        if let Some(at) = token.grant_ends_at {
            put = put.item(state::GRANT_ENDS_AT, n(at));
        }
        let result = put
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .send()
            .await;
        result.map(|_| ()).map_err(conflict_or)
    }
}

impl AccessTokenCache for DynamoStore {
    async fn cache_token(&self, sub: &GoogleSubject, token: &CachedToken) -> Result<(), StoreError> {
        holds_either_way(self.put_cached(sub, token, None).await)
    }
}

impl AccessStore for DynamoStore {
    async fn read_cache(&self, sub: &GoogleSubject) -> Result<CacheEntry, StoreError> {
        let item = self
            .get(&self.state_table, (state::PK, schema::access_key(sub.as_str())))
            .await?;
        Ok(item.as_ref().map(cache_entry).unwrap_or_default())
    }

    async fn read(&self, sub: &GoogleSubject) -> Result<AccessView, StoreError> {
        // One request for both items.
        let (grant, cache) = self.grant_and_cache_items(sub).await?;
        let cache = cache.as_ref().map(cache_entry).unwrap_or_default();
        // A lease the cache item says the job ended is nobody's.
        let ended = grant.as_ref().is_some_and(|g| {
            schema::text(g, grant::LEASE_OWNER).is_some_and(|owner| cache.released_lease.as_deref() == Some(&owner))
        });
        Ok(AccessView {
            leased_until: grant
                .as_ref()
                .and_then(|g| schema::number(g, grant::LEASE_UNTIL))
                .filter(|_| !ended),
            grant: grant.as_ref().map(schema::grant_from_item).transpose()?,
            cache,
        })
    }

    async fn take_lease(
        &self,
        sub: &GoogleSubject,
        owner: &str,
        now: u64,
        until: u64,
        released: Option<&str>,
    ) -> Result<RefreshLease, StoreError> {
        let mut u = Update::default();
        let (status, active) = (u.p.name(grant::STATUS), u.p.value(schema::status(GrantStatus::Active)));
        let token = u.p.name(grant::REFRESH_TOKEN);
        let free = lease::free(&mut u.p, now, released);
        u.condition(format!("{status} = {active} AND attribute_exists({token}) AND {free}"));
        lease::take(&mut u, owner, until);
        // A refusal says why in the same round trip: gone, not usable, or held.
        let item = match self.update_grant_returning(sub.as_str(), &u).await? {
            Updated::Written(item) => return Ok(RefreshLease::Taken(schema::grant_from_item(&item)?)),
            Updated::Refused(None) => return Ok(RefreshLease::Unusable(None)),
            Updated::Refused(Some(item)) => item,
        };
        let found = schema::grant_from_item(&item)?;
        if found.status != GrantStatus::Active || found.refresh_token.is_none() {
            return Ok(RefreshLease::Unusable(Some(found)));
        }
        Ok(RefreshLease::Held {
            until: schema::number(&item, grant::LEASE_UNTIL).unwrap_or(now),
        })
    }

    async fn note_failure(
        &self,
        sub: &GoogleSubject,
        now: u64,
        retry_at: Option<u64>,
        keep: u64,
    ) -> Result<(), StoreError> {
        let mut u = Update::default();
        u.set(state::FAILED_AT, n(now))
            .set_or_remove(state::RETRY_AT, retry_at.map(n))
            .set_once(state::EXPIRES_AT, n(now.saturating_add(keep)));
        self.update_state_item(schema::access_key(sub.as_str()), &u)
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn cache_and_release(
        &self,
        sub: &GoogleSubject,
        token: &CachedToken,
        owner: &str,
    ) -> Result<bool, StoreError> {
        match self.put_cached(sub, token, Some(owner)).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn end_lease(
        &self,
        leased: &Grant,
        owner: &str,
        now: u64,
        outcome: &GrantOutcome,
    ) -> Result<Recorded, StoreError> {
        self.record_outcome(leased, Holder::Caller { owner, now }, outcome)
            .await
    }
}
