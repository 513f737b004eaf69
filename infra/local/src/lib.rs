//! # local-stack
//!
//! Bootstraps the local AWS (moto's server, or any endpoint `AWS_ENDPOINT_URL` names)
//! for offline-access, idempotently:
//!
//! - the DynamoDB tables, **read from `template.yaml`** (key schema, attribute
//!   definitions, global secondary indexes, billing mode, TTL) so the template and the
//!   local stack cannot drift;
//! - the KMS key and its alias;
//! - the client secret, in Google's `client_secret_*.json` format, its `token_uri`
//!   pointing at the Google emulator;
//! - the event bus the `events` function publishes to, and the queue that keeps what it
//!   gives up (`EventsFailures`).
//!
//! [`stream`] reads the grants table's stream as Lambda's event source mapping does.
//!
//! Used by `make dev` (through the `local-stack` binary) and by the integration tests.

pub mod stream;

use std::path::Path;

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde_yaml_ng::Value;

/// One table as the template declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    pub logical_id: String,
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<(String, String)>,
    pub ttl_attribute: Option<String>,
    pub indexes: Vec<IndexDefinition>,
    /// `StreamSpecification.StreamViewType`, when the table has a stream.
    pub stream_view_type: Option<String>,
}

/// A global secondary index as the template declares it: a partition key only.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDefinition {
    pub name: String,
    pub partition_key: String,
    pub projection: String,
}

/// Reads every `AWS::DynamoDB::Table` in a CloudFormation/SAM template.
pub fn tables_from_template(path: &Path) -> anyhow::Result<Vec<TableDefinition>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .context("template has no Resources")?;
    let mut tables = Vec::new();
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let id = id.as_str().context("resource id is not a string")?.to_owned();
        let props = resource
            .get("Properties")
            .with_context(|| format!("{id} has no Properties"))?;
        let pairs = |list: &str, a: &str, b: &str| -> anyhow::Result<Vec<(String, String)>> {
            props
                .get(list)
                .and_then(Value::as_sequence)
                .with_context(|| format!("{id}.{list} missing"))?
                .iter()
                .map(|e| {
                    let x = e
                        .get(a)
                        .and_then(Value::as_str)
                        .with_context(|| format!("{id}.{list}.{a}"))?;
                    let y = e
                        .get(b)
                        .and_then(Value::as_str)
                        .with_context(|| format!("{id}.{list}.{b}"))?;
                    Ok((x.to_owned(), y.to_owned()))
                })
                .collect()
        };
        let ttl = props.get("TimeToLiveSpecification");
        let ttl_enabled = ttl
            .and_then(|t| t.get("Enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let indexes = props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .map(|index| {
                let field = |path: &[&str]| {
                    path.iter()
                        .try_fold(index, |v, k| v.get(*k))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .with_context(|| format!("{id}.GlobalSecondaryIndexes.{}", path.join(".")))
                };
                let key = index
                    .get("KeySchema")
                    .and_then(Value::as_sequence)
                    .and_then(|keys| keys.first())
                    .and_then(|k| k.get("AttributeName"))
                    .and_then(Value::as_str)
                    .with_context(|| format!("{id}.GlobalSecondaryIndexes.KeySchema"))?;
                Ok(IndexDefinition {
                    name: field(&["IndexName"])?,
                    partition_key: key.to_owned(),
                    projection: field(&["Projection", "ProjectionType"])?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tables.push(TableDefinition {
            indexes,
            stream_view_type: props
                .get("StreamSpecification")
                .and_then(|s| s.get("StreamViewType"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            attributes: pairs("AttributeDefinitions", "AttributeName", "AttributeType")?,
            keys: pairs("KeySchema", "AttributeName", "KeyType")?,
            ttl_attribute: ttl
                .filter(|_| ttl_enabled)
                .and_then(|t| t.get("AttributeName"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            logical_id: id,
        });
    }
    Ok(tables)
}

/// The path of `template.yaml` at the workspace root.
pub fn default_template() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

/// What to create, and under which names.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Names are `{prefix}-grants`, `{prefix}-state`, `alias/{prefix}-tokens`, `{prefix}/google-client`.
    pub prefix: String,
    pub template: std::path::PathBuf,
    /// Google's client_secret JSON to store.
    pub client_secret_json: String,
}

/// The names the bootstrap created: exactly the functions' configuration.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub grants_table: String,
    pub state_table: String,
    pub token_key_id: String,
    pub client_secret_id: String,
    pub event_bus_name: String,
    pub events_failure_queue_url: String,
    pub parking_queue_url: String,
}

impl Bootstrapped {
    /// The functions' environment variables for these resources.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GRANTS_TABLE", self.grants_table.clone()),
            ("STATE_TABLE", self.state_table.clone()),
            ("TOKEN_KEY_ID", self.token_key_id.clone()),
            ("CLIENT_SECRET_ID", self.client_secret_id.clone()),
            ("EVENT_BUS_NAME", self.event_bus_name.clone()),
            ("EVENTS_FAILURE_QUEUE_URL", self.events_failure_queue_url.clone()),
            ("SIGN_IN_PARKING_QUEUE_URL", self.parking_queue_url.clone()),
        ]
    }
}

/// The local table name for a template table: `GrantsTable` → `{prefix}-grants`.
pub fn local_table_name(prefix: &str, logical_id: &str) -> String {
    let base = logical_id
        .strip_suffix("Table")
        .unwrap_or(logical_id)
        .to_ascii_lowercase();
    format!("{prefix}-{base}")
}

/// Creates whatever is missing; running it twice changes nothing the second time
/// (except the secret's value, which is set to the plan's).
pub async fn bootstrap(aws: &aws_config::SdkConfig, plan: &Plan) -> anyhow::Result<Bootstrapped> {
    let tables = tables_from_template(&plan.template)?;
    let dynamo = aws_sdk_dynamodb::Client::new(aws);
    for table in &tables {
        create_table(&dynamo, &local_table_name(&plan.prefix, &table.logical_id), table).await?;
    }
    let name_of = |id: &str| -> anyhow::Result<String> {
        if !tables.iter().any(|t| t.logical_id == id) {
            bail!("template.yaml declares no {id}");
        }
        Ok(local_table_name(&plan.prefix, id))
    };
    let token_key_id = ensure_key(&aws_sdk_kms::Client::new(aws), &format!("alias/{}-tokens", plan.prefix)).await?;
    let client_secret_id = format!("{}/google-client", plan.prefix);
    put_secret(
        &aws_sdk_secretsmanager::Client::new(aws),
        &client_secret_id,
        &plan.client_secret_json,
    )
    .await?;
    let event_bus_name = format!("{}-grants", plan.prefix);
    ensure_event_bus(&aws_sdk_eventbridge::Client::new(aws), &event_bus_name).await?;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let events_failure_queue_url = ensure_queue(&sqs, &format!("{}-events-failures", plan.prefix), None).await?;
    // Locally a parked sign-in not stored yet is tried again after ten seconds (the
    // template's three minutes are six times the function's timeout).
    let parking_queue_url = ensure_queue(&sqs, &format!("{}-parked-sign-ins", plan.prefix), Some(10)).await?;
    Ok(Bootstrapped {
        grants_table: name_of("GrantsTable")?,
        state_table: name_of("StateTable")?,
        token_key_id,
        client_secret_id,
        event_bus_name,
        events_failure_queue_url,
        parking_queue_url,
    })
}

/// Creates a queue (or finds it), with this visibility timeout in seconds.
async fn ensure_queue(sqs: &aws_sdk_sqs::Client, name: &str, visibility: Option<u32>) -> anyhow::Result<String> {
    let mut create = sqs.create_queue().queue_name(name);
    if let Some(secs) = visibility {
        create = create.attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            secs.to_string(),
        );
    }
    Ok(create
        .send()
        .await
        .with_context(|| format!("creating the queue {name}"))?
        .queue_url()
        .context("the created queue has no URL")?
        .to_owned())
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, def: &TableDefinition) -> anyhow::Result<()> {
    if client.describe_table().table_name(name).send().await.is_ok() {
        return Ok(());
    }
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attr, kind) in &def.attributes {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()?,
        );
    }
    for (attr, kind) in &def.keys {
        create = create.key_schema(
            KeySchemaElement::builder()
                .attribute_name(attr)
                .key_type(KeyType::from(kind.as_str()))
                .build()?,
        );
    }
    for index in &def.indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(&index.partition_key)
                        .key_type(KeyType::Hash)
                        .build()?,
                )
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection.as_str()))
                        .build(),
                )
                .build()?,
        );
    }
    if let Some(view) = &def.stream_view_type {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()?,
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => {
            return Ok(());
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating table {name}"))),
    }
    if let Some(attr) = &def.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enabling TTL on {name}"))?;
    }
    Ok(())
}

/// The stack's own EventBridge bus (`EventBus` in the template).
async fn ensure_event_bus(client: &aws_sdk_eventbridge::Client, name: &str) -> anyhow::Result<()> {
    if client.describe_event_bus().name(name).send().await.is_ok() {
        return Ok(());
    }
    client
        .create_event_bus()
        .name(name)
        .send()
        .await
        .with_context(|| format!("creating event bus {name}"))?;
    Ok(())
}

async fn ensure_key(client: &aws_sdk_kms::Client, alias: &str) -> anyhow::Result<String> {
    let aliases = client
        .list_aliases()
        .limit(100)
        .send()
        .await
        .context("listing KMS aliases")?;
    if aliases
        .aliases()
        .iter()
        .any(|a| a.alias_name() == Some(alias) && a.target_key_id().is_some())
    {
        return Ok(alias.to_owned());
    }
    let key = client
        .create_key()
        .description("offline-access local refresh-token key")
        .send()
        .await
        .context("creating KMS key")?;
    let key_id = key
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .context("KMS returned no key id")?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id)
        .send()
        .await
        .context("creating KMS alias")?;
    Ok(alias.to_owned())
}

async fn put_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> anyhow::Result<()> {
    let created = client.create_secret().name(name).secret_string(value).send().await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_exists_exception()) => {
            client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .context("updating the client secret")?;
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context("creating the client secret")),
    }
}

/// An AWS config for a local endpoint, with the dummy credentials moto accepts.
pub async fn local_aws_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack",
        ))
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_tables_are_read_with_keys_and_ttl() -> anyhow::Result<()> {
        let tables = tables_from_template(&default_template())?;
        let grants = tables
            .iter()
            .find(|t| t.logical_id == "GrantsTable")
            .context("GrantsTable")?;
        assert_eq!(grants.keys, vec![("sub".to_owned(), "HASH".to_owned())]);
        assert_eq!(grants.ttl_attribute.as_deref(), Some("expires_at"), "tombstones expire");
        let indexes: Vec<_> = grants
            .indexes
            .iter()
            .map(|i| (i.name.as_str(), i.partition_key.as_str(), i.projection.as_str()))
            .collect();
        assert_eq!(
            indexes,
            [
                ("by-token-prefix", "t_prefix", "KEYS_ONLY"),
                ("by-token-hash", "t_hash", "KEYS_ONLY"),
            ]
        );
        let state = tables
            .iter()
            .find(|t| t.logical_id == "StateTable")
            .context("StateTable")?;
        assert_eq!(state.keys, vec![("pk".to_owned(), "HASH".to_owned())]);
        assert_eq!(state.ttl_attribute.as_deref(), Some("expires_at"));
        Ok(())
    }
}

/// What the template's HTTP API answers a browser (its `CorsConfiguration`), less the
/// origins, which are the `AllowedOrigins` parameter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRules {
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub max_age: u64,
}

/// Reads `HttpApi`'s `CorsConfiguration` (the `!If [HasAllowedOrigins, {...}, ...]` of
/// `template.yaml`), so the local function URL answers browsers as API Gateway would.
pub fn cors_from_template(path: &Path) -> anyhow::Result<CorsRules> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let cors = doc
        .get("Resources")
        .and_then(|r| r.get("HttpApi"))
        .and_then(|r| r.get("Properties"))
        .and_then(|p| p.get("CorsConfiguration"))
        .context("HttpApi has no CorsConfiguration")?;
    // `!If [condition, when true, when false]`: the rules are the "when true".
    let rules = match cors {
        Value::Tagged(tagged) => tagged.value.as_sequence().and_then(|s| s.get(1)).cloned(),
        other => Some(other.clone()),
    }
    .context("CorsConfiguration is not an !If of the rules")?;
    let list = |name: &str| -> anyhow::Result<Vec<String>> {
        rules
            .get(name)
            .and_then(Value::as_sequence)
            .with_context(|| format!("CorsConfiguration.{name}"))?
            .iter()
            .map(|v| v.as_str().map(str::to_ascii_lowercase).context("a string"))
            .collect()
    };
    Ok(CorsRules {
        methods: list("AllowMethods")?
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        headers: list("AllowHeaders")?,
        max_age: rules
            .get("MaxAge")
            .and_then(Value::as_u64)
            .context("CorsConfiguration.MaxAge")?,
    })
}
