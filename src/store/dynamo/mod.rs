//! The store over DynamoDB: both tables, with the schema in [`schema`] and expressions
//! built by [`expr`].

use aws_sdk_dynamodb::error::SdkError;

mod access;
mod deletion;
mod expr;
mod job;
mod lease;
mod operator;
mod risc;
mod schema;
mod sign_in;
mod stream;

pub use stream::{change_from_record, check_image_invariants};

use super::{Grant, GrantStore, StoreError};
use crate::domain::GoogleSubject;
use crate::upstream::classify_aws;
use schema::{grant, is_condition_failed, s};

/// Both tables in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    grants_table: String,
    state_table: String,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, grants_table: String, state_table: String) -> Self {
        Self {
            client,
            grants_table,
            state_table,
        }
    }

    pub fn grants_table(&self) -> &str {
        &self.grants_table
    }

    /// An `UpdateItem` of the item `key` of `table` with `update`'s expressions, ready to
    /// send.
    fn update_in(
        &self,
        table: &str,
        key: (&str, String),
        update: &expr::Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(table)
            .key(key.0, s(key.1))
            .update_expression(update.expression())
            .set_condition_expression(update.condition_expression())
            .set_expression_attribute_names(update.p.names())
            .set_expression_attribute_values(update.p.values())
    }

    /// An `UpdateItem` of `sub`'s grant.
    fn update_grant_item(
        &self,
        sub: &str,
        update: &expr::Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update_in(&self.grants_table, (grant::SUB, sub.to_owned()), update)
    }

    /// An `UpdateItem` of the state table's item `pk`.
    fn update_state_item(
        &self,
        pk: String,
        update: &expr::Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update_in(&self.state_table, (schema::state::PK, pk), update)
    }
}

impl DynamoStore {
    /// One item by its key, read consistently.
    async fn get(&self, table: &str, key: (&str, String)) -> Result<Option<schema::Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(key.0, s(key.1))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(out.item().cloned())
    }

    /// Applies a conditional `update` to the grant and says what it found in the same
    /// round trip: the item as written, or — the condition failed — the item as it was
    /// (`None`: there is none).
    async fn update_grant_returning(&self, sub: &str, update: &expr::Update) -> Result<Updated, StoreError> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let result = self
            .update_grant_item(sub, update)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Updated::Written(
                out.attributes().cloned().ok_or(StoreError::Corrupt(grant::SUB))?,
            )),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Updated::Refused(refused.item().cloned()))
                }
                _ => Err(classify_aws("dynamodb", &e).into()),
            },
        }
    }

    /// Ends the grant's cached access token: its cache item becomes a marker naming the
    /// token generation that ended (`ended_gen`), and every cache write is conditioned on
    /// that item — so a refresh still in flight when the grant ended never writes a token
    /// of it again, and a sign-in's new generation caches as before. A token of a newer
    /// generation already cached stays. The marker is kept a day: far longer than any
    /// refresh is in flight (a lease is minutes).
    async fn end_cached_access_token(&self, sub: &GoogleSubject, ended_gen: u64, now: u64) -> Result<(), StoreError> {
        use schema::{n, state};
        let mut u = expr::Update::default();
        let (cached_gen, ended, this) = (
            u.p.name(state::GEN),
            u.p.name(state::ENDED_GEN),
            u.p.value(n(ended_gen)),
        );
        u.condition(format!(
            "(attribute_not_exists({cached_gen}) OR {cached_gen} <= {this}) AND \
             (attribute_not_exists({ended}) OR {ended} <= {this})"
        ));
        end_marker(&mut u, Some(ended_gen), now);
        let marked = self
            .update_state_item(schema::access_key(sub.as_str()), &u)
            .send()
            .await
            .map_err(conflict_or);
        holds_either_way(marked)
    }

    /// Lets a resumed grant's generation be cached again: the marker its suspension left,
    /// naming that generation, goes (a marker of any other end stays).
    async fn resume_cached_access_token(&self, sub: &GoogleSubject, resumed_gen: u64) -> Result<(), StoreError> {
        use schema::{n, state};
        let mut u = expr::Update::default();
        let (ended, this) = (u.p.name(state::ENDED_GEN), u.p.value(n(resumed_gen)));
        u.condition(format!("{ended} = {this}"));
        u.remove(state::ENDED_GEN);
        let resumed = self
            .update_state_item(schema::access_key(sub.as_str()), &u)
            .send()
            .await
            .map_err(conflict_or);
        holds_either_way(resumed)
    }

    /// Applies `update` to the grant; `false` when its condition failed.
    async fn update_grant(&self, sub: &str, update: &expr::Update) -> Result<bool, StoreError> {
        match self.update_grant_item(sub, update).send().await.map_err(conflict_or) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How long a marker of an ended generation is kept (a day).
const MARKER_KEEP_SECS: u64 = 86_400;

/// Makes `u` turn a cache item into the marker of `ended_gen` (or, when the generation is
/// not known, just empty it, keeping any marker it holds): the token and what goes with
/// it go; the job's released lease stays (a lease that item ended is still nobody's).
fn end_marker(u: &mut expr::Update, ended_gen: Option<u64>, now: u64) {
    use schema::{n, state};
    if let Some(ended) = ended_gen {
        u.set(state::ENDED_GEN, n(ended));
    }
    u.set(state::EXPIRES_AT, n(now.saturating_add(MARKER_KEEP_SECS)))
        .remove(state::ACCESS_TOKEN)
        .remove(state::TOKEN_EXPIRES_AT)
        .remove(state::SCOPES)
        .remove(state::OBTAINED_AT)
        .remove(state::GEN);
}

/// What a conditional update found.
enum Updated {
    /// Written: the item as it is now.
    Written(schema::Item),
    /// The condition failed: the item as it was, if there is one.
    Refused(Option<schema::Item>),
}

/// A failed condition as [`StoreError::Conflict`], anything else classified once.
fn conflict_or<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: std::fmt::Debug,
{
    if err.as_service_error().is_some_and(is_condition_failed) {
        StoreError::Conflict
    } else {
        classify_aws("dynamodb", &err).into()
    }
}

/// The result of a write whose failed condition means "already so" (a segment already
/// done, a claim already gone): its purpose holds either way.
fn holds_either_way<T>(result: Result<T, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

impl GrantStore for DynamoStore {
    async fn load(&self, sub: &GoogleSubject) -> Result<Option<Grant>, StoreError> {
        let item = self
            .get(&self.grants_table, (grant::SUB, sub.as_str().to_owned()))
            .await?;
        item.as_ref().map(schema::grant_from_item).transpose()
    }

    async fn insert(&self, new: &Grant) -> Result<(), StoreError> {
        let mut p = expr::Placeholders::default();
        let condition = format!("attribute_not_exists({})", p.name(grant::SUB));
        self.client
            .put_item()
            .table_name(&self.grants_table)
            .set_item(Some(schema::item_from_grant(new)))
            .condition_expression(condition)
            .set_expression_attribute_names(p.names())
            .send()
            .await
            .map_err(conflict_or)?;
        Ok(())
    }
}
