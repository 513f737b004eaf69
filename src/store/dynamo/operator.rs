//! The operator's reads and writes (the port is [`crate::store::OperatorStore`]).

use aws_sdk_dynamodb::types::AttributeValue;

use super::expr::Update;
use super::schema::{self, grant, n, s, state};
use super::{DynamoStore, access};
use crate::crypto::SealedToken;
use crate::domain::GoogleSubject;
use crate::store::{CachedToken, GrantPage, GrantStatus, OperatorStore, ReencryptCheckpoint, StoreError};
use crate::upstream::classify_aws;

impl DynamoStore {
    /// `SET attr = :new` on the item `key` of `table`, if `attr` is still `:old`.
    async fn swap_sealed(
        &self,
        table: &str,
        key: (&str, String),
        attr: &str,
        old: &SealedToken,
        new: &SealedToken,
    ) -> Result<bool, StoreError> {
        let mut u = Update::default();
        let (a, was) = (u.p.name(attr), u.p.value(schema::sealed(old)));
        u.condition(format!("{a} = {was}"));
        u.set(attr, schema::sealed(new));
        let sent = self.update_in(table, key, &u).send().await;
        match sent.map_err(super::conflict_or) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl OperatorStore for DynamoStore {
    async fn grants_page(
        &self,
        after: Option<&str>,
        status: Option<GrantStatus>,
        limit: i32,
    ) -> Result<GrantPage, StoreError> {
        let mut scan = self
            .client
            .scan()
            .table_name(&self.grants_table)
            .limit(limit)
            .set_exclusive_start_key(after.map(|sub| [(grant::SUB.to_owned(), s(sub))].into()));
        if let Some(status) = status {
            scan = scan
                .filter_expression("#s = :s")
                .expression_attribute_names("#s", grant::STATUS)
                .expression_attribute_values(":s", schema::status(status));
        }
        let out = scan.send().await.map_err(|e| classify_aws("dynamodb", &e))?;
        let (grants, malformed) = schema::grants_of(out.items());
        Ok(GrantPage {
            grants,
            malformed,
            next: out
                .last_evaluated_key()
                .and_then(|k| k.get(grant::SUB))
                .and_then(|v| v.as_s().ok())
                .cloned(),
        })
    }

    async fn cached_access_token(&self, sub: &GoogleSubject) -> Result<Option<CachedToken>, StoreError> {
        let item = self
            .get(&self.state_table, (state::PK, schema::access_key(sub.as_str())))
            .await?;
        Ok(item.as_ref().map(access::cache_entry).and_then(|e| e.token))
    }

    async fn rewrap_refresh_token(
        &self,
        sub: &GoogleSubject,
        old: &SealedToken,
        new: &SealedToken,
    ) -> Result<bool, StoreError> {
        let key = (grant::SUB, sub.as_str().to_owned());
        self.swap_sealed(&self.grants_table, key, grant::REFRESH_TOKEN, old, new)
            .await
    }

    async fn rewrap_access_token(
        &self,
        sub: &GoogleSubject,
        old: &SealedToken,
        new: &SealedToken,
    ) -> Result<bool, StoreError> {
        let key = (state::PK, schema::access_key(sub.as_str()));
        self.swap_sealed(&self.state_table, key, state::ACCESS_TOKEN, old, new)
            .await
    }

    async fn reencrypt_checkpoint(&self) -> Result<Option<ReencryptCheckpoint>, StoreError> {
        let item = self
            .get(&self.state_table, (state::PK, schema::REENCRYPT_KEY.to_owned()))
            .await?;
        Ok(item.map(|item| {
            let count = |name: &str| schema::number(&item, name).unwrap_or_default();
            ReencryptCheckpoint {
                target_key: schema::text(&item, state::TARGET_KEY).unwrap_or_default(),
                after: schema::text(&item, state::AFTER),
                scanned: count(state::SCANNED),
                refresh_tokens: count(state::REFRESH_TOKENS),
                access_tokens: count(state::ACCESS_TOKENS),
                changed_meanwhile: count(state::CHANGED_MEANWHILE),
                unopened: count(state::UNOPENED),
                malformed: count(state::MALFORMED),
            }
        }))
    }

    async fn save_reencrypt_checkpoint(&self, c: &ReencryptCheckpoint) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item(state::PK, s(schema::REENCRYPT_KEY))
            .item(state::TARGET_KEY, s(c.target_key.clone()))
            .item(state::SCANNED, n(c.scanned))
            .item(state::REFRESH_TOKENS, n(c.refresh_tokens))
            .item(state::ACCESS_TOKENS, n(c.access_tokens))
            .item(state::CHANGED_MEANWHILE, n(c.changed_meanwhile))
            .item(state::UNOPENED, n(c.unopened))
            .item(state::MALFORMED, n(c.malformed));
        if let Some(after) = &c.after {
            put = put.item(state::AFTER, AttributeValue::S(after.clone()));
        }
        put.send().await.map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn clear_reencrypt_checkpoint(&self) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.state_table)
            .key(state::PK, s(schema::REENCRYPT_KEY))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }
}
