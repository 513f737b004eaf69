//! Grants and short-lived request records in DynamoDB (DESIGN §4).
//!
//! The grants table is keyed by `sub`. Every write that could race is conditional: a
//! new grant only where none exists, an update only at the version that was read.
//! Sign-in idempotency records live in a second table (`STATE_TABLE`, key `pk`, TTL
//! `expires_at`) so the refresher's scan of grants never reads them.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

mod job;

pub use job::{Checkpoint, DriveOutcome, Finish, FinishResult, JobStore, Lease, ScanPage, ScanRequest};

use crate::crypto::SealedToken;
use crate::domain::{Email, GoogleSubject, Profile, Scopes};
use crate::upstream::{Upstream, classify_aws};

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    ReconsentRequired,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::ReconsentRequired => "reconsent_required",
            Self::Revoked => "revoked",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "reconsent_required" => Some(Self::ReconsentRequired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// One user's offline-access grant.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sub: GoogleSubject,
    pub status: GrantStatus,
    pub status_reason: Option<String>,
    pub profile: Profile,
    pub email_verified: bool,
    pub scopes: Scopes,
    /// The client the refresh token was issued to (part of its encryption binding).
    pub client_id: String,
    pub refresh_token: Option<SealedToken>,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_refresh_at: Option<u64>,
    pub last_sync_at: Option<u64>,
    pub failure_count: u32,
    pub next_attempt_at: Option<u64>,
    /// Optimistic-concurrency version: every write sets `version + 1` on condition that
    /// the stored one is still `version`.
    pub version: u64,
}

impl Grant {
    /// A grant as a first sign-in creates it: active, version 1, nothing refreshed yet.
    pub fn new_active(
        sub: GoogleSubject,
        client_id: String,
        scopes: Scopes,
        refresh_token: SealedToken,
        profile: Profile,
        email_verified: bool,
        now: u64,
    ) -> Self {
        Self {
            sub,
            status: GrantStatus::Active,
            status_reason: None,
            profile,
            email_verified,
            scopes,
            client_id,
            refresh_token: Some(refresh_token),
            created_at: now,
            updated_at: now,
            last_refresh_at: None,
            last_sync_at: None,
            failure_count: 0,
            next_attempt_at: None,
            version: 1,
        }
    }
}

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race: read again and retry.
    #[error("the item changed since it was read")]
    Conflict,
    /// A stored item is not in the shape this code writes.
    #[error("stored item is malformed: {0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Upstream(#[from] Upstream),
}

/// The grants table as a port.
pub trait GrantStore: Send + Sync {
    fn load(&self, sub: &GoogleSubject) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;
    /// Writes a grant that must not exist yet.
    fn insert(&self, grant: &Grant) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes what a sign-in owns (profile, scopes, token, status) on condition that the
    /// stored version is `grant.version - 1`; the refresher's lease and schedule fields
    /// are left as they are.
    fn save_sign_in(&self, grant: &Grant) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The stored outcome of a sign-in, replayed to a retry of the same code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedOutcome {
    SignedIn {
        sub: String,
        email: Option<String>,
        scopes: Vec<String>,
        offline_access: bool,
    },
    ReconsentRequired,
    InvalidGrant,
    InvalidIdToken,
}

/// What opening a request record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// We hold the request: do the work, then `finish` or `abandon`.
    Started,
    /// Another invocation holds it right now.
    InProgress,
    /// It was done before: here is what it answered.
    Done(RecordedOutcome),
}

/// Idempotency records as a port.
pub trait RequestLog: Send + Sync {
    /// Claims `key` for `lease`; the record expires (TTL) after `window`.
    fn begin(
        &self,
        key: &str,
        now: u64,
        lease: Duration,
        window: Duration,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;
    fn finish(
        &self,
        key: &str,
        outcome: &RecordedOutcome,
        now: u64,
        window: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Lets a later retry start over (the work failed transiently).
    fn abandon(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Both tables in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) grants_table: String,
    pub(crate) state_table: String,
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
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn conflict_or<E, R>(service: &'static str, err: SdkError<E, R>, is_conflict: impl Fn(&E) -> bool) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    R: std::fmt::Debug,
{
    if err.as_service_error().is_some_and(&is_conflict) {
        StoreError::Conflict
    } else {
        classify_aws(service, &err).into()
    }
}

/// The attributes a sign-in owns, for both the insert and the update.
fn sign_in_attributes(grant: &Grant) -> Vec<(&'static str, Option<AttributeValue>)> {
    let p = &grant.profile;
    let text = |v: &Option<String>| v.as_ref().map(|v| s(v.clone()));
    vec![
        ("status", Some(s(grant.status.as_str()))),
        ("status_reason", text(&grant.status_reason)),
        ("email", p.email.as_ref().map(|e| s(e.as_str()))),
        ("email_verified", Some(AttributeValue::Bool(grant.email_verified))),
        ("name", text(&p.name)),
        ("given_name", text(&p.given_name)),
        ("family_name", text(&p.family_name)),
        ("picture", text(&p.picture)),
        ("locale", text(&p.locale)),
        ("scopes", Some(s(grant.scopes.iter().collect::<Vec<_>>().join(" ")))),
        ("client_id", Some(s(grant.client_id.clone()))),
        ("refresh_token", grant.refresh_token.as_ref().map(sealed_to_item)),
        ("failure_count", Some(n(grant.failure_count))),
        ("next_attempt_at", grant.next_attempt_at.map(n)),
        ("updated_at", Some(n(grant.updated_at))),
        ("version", Some(n(grant.version))),
    ]
}

fn sealed_to_item(sealed: &SealedToken) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("v".to_owned(), n(sealed.version)),
        (
            "key".to_owned(),
            AttributeValue::B(Blob::new(sealed.wrapped_key.clone())),
        ),
        ("nonce".to_owned(), AttributeValue::B(Blob::new(sealed.nonce.to_vec()))),
        ("ct".to_owned(), AttributeValue::B(Blob::new(sealed.ciphertext.clone()))),
    ]))
}

fn sealed_from_item(item: &AttributeValue) -> Result<SealedToken, StoreError> {
    let corrupt = || StoreError::Corrupt("refresh_token");
    let map = item.as_m().map_err(|_| corrupt())?;
    let blob = |k: &str| {
        map.get(k)
            .and_then(|v| v.as_b().ok())
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(corrupt)
    };
    let version = map
        .get("v")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(corrupt)?;
    Ok(SealedToken {
        version,
        wrapped_key: blob("key")?,
        nonce: blob("nonce")?.try_into().map_err(|_| corrupt())?,
        ciphertext: blob("ct")?,
    })
}

fn grant_from_item(item: &HashMap<String, AttributeValue>) -> Result<Grant, StoreError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let sub = text("sub")
        .and_then(|s| GoogleSubject::parse(&s).ok())
        .ok_or(StoreError::Corrupt("sub"))?;
    Ok(Grant {
        sub,
        status: text("status")
            .as_deref()
            .and_then(GrantStatus::parse)
            .ok_or(StoreError::Corrupt("status"))?,
        status_reason: text("status_reason"),
        profile: Profile {
            email: text("email").map(Email::new),
            name: text("name"),
            given_name: text("given_name"),
            family_name: text("family_name"),
            picture: text("picture"),
            locale: text("locale"),
        },
        email_verified: item
            .get("email_verified")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        scopes: Scopes::from_space_delimited(&text("scopes").unwrap_or_default()),
        client_id: text("client_id").ok_or(StoreError::Corrupt("client_id"))?,
        refresh_token: item.get("refresh_token").map(sealed_from_item).transpose()?,
        created_at: num("created_at").unwrap_or_default(),
        updated_at: num("updated_at").unwrap_or_default(),
        last_refresh_at: num("last_refresh_at"),
        last_sync_at: num("last_sync_at"),
        failure_count: num("failure_count")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or_default(),
        next_attempt_at: num("next_attempt_at"),
        version: num("version").ok_or(StoreError::Corrupt("version"))?,
    })
}

impl GrantStore for DynamoStore {
    async fn load(&self, sub: &GoogleSubject) -> Result<Option<Grant>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.grants_table)
            .key("sub", s(sub.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        out.item().map(grant_from_item).transpose()
    }

    async fn insert(&self, grant: &Grant) -> Result<(), StoreError> {
        let mut item: HashMap<String, AttributeValue> = sign_in_attributes(grant)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect();
        item.insert("sub".into(), s(grant.sub.as_str()));
        item.insert("created_at".into(), n(grant.created_at));
        self.client
            .put_item()
            .table_name(&self.grants_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#sub)")
            .expression_attribute_names("#sub", "sub")
            .send()
            .await
            .map_err(|e| conflict_or("dynamodb", e, |se| se.is_conditional_check_failed_exception()))?;
        Ok(())
    }

    async fn save_sign_in(&self, grant: &Grant) -> Result<(), StoreError> {
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.grants_table)
            .key("sub", s(grant.sub.as_str()));
        for (i, (name, value)) in sign_in_attributes(grant).into_iter().enumerate() {
            update = update.expression_attribute_names(format!("#a{i}"), name);
            match value {
                Some(v) => {
                    sets.push(format!("#a{i} = :v{i}"));
                    update = update.expression_attribute_values(format!(":v{i}"), v);
                }
                None => removes.push(format!("#a{i}")),
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        update
            .update_expression(expression)
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(grant.version.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| conflict_or("dynamodb", e, |se| se.is_conditional_check_failed_exception()))?;
        Ok(())
    }
}

impl RequestLog for DynamoStore {
    async fn begin(&self, key: &str, now: u64, lease: Duration, window: Duration) -> Result<Begin, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.state_table)
            .item("pk", s(key))
            .item("state", s("in_progress"))
            .item("lease_until", n(now + lease.as_secs()))
            .item("expires_at", n(now + window.as_secs()))
            // Free, or held by an invocation whose lease ran out, or past its TTL but
            // not yet swept (DynamoDB deletes expired items lazily).
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :in_progress AND lease_until < :now) OR expires_at < :now",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Begin::Started),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(classify_aws("dynamodb", &e).into()),
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.state_table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        let item = out.item();
        let state = item.and_then(|i| i.get("state")).and_then(|v| v.as_s().ok());
        match state.map(String::as_str) {
            Some("done") => {
                let raw = item
                    .and_then(|i| i.get("outcome"))
                    .and_then(|v| v.as_s().ok())
                    .ok_or(StoreError::Corrupt("outcome"))?;
                let outcome = serde_json::from_str(raw).map_err(|_| StoreError::Corrupt("outcome"))?;
                Ok(Begin::Done(outcome))
            }
            // Gone between our write and our read (abandoned): report busy, the caller retries.
            _ => Ok(Begin::InProgress),
        }
    }

    async fn finish(&self, key: &str, outcome: &RecordedOutcome, now: u64, window: Duration) -> Result<(), StoreError> {
        let outcome = serde_json::to_string(outcome).map_err(|_| StoreError::Corrupt("outcome"))?;
        self.client
            .put_item()
            .table_name(&self.state_table)
            .item("pk", s(key))
            .item("state", s("done"))
            .item("outcome", s(outcome))
            .item("expires_at", n(now + window.as_secs()))
            .send()
            .await
            .map_err(|e| classify_aws("dynamodb", &e))?;
        Ok(())
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.state_table)
            .key("pk", s(key))
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify_aws("dynamodb", &e).into()),
        }
    }
}
