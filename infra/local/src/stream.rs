//! The grants table's DynamoDB Stream, read as Lambda's event source mapping reads it:
//! every shard from its oldest record (`TRIM_HORIZON`), in order, each batch shaped as the
//! DynamoDB event Lambda delivers (`{"Records": [...]}`, images in DynamoDB JSON). `make
//! dev`'s `stream-pump` and the tests feed the `events` function with it.

use anyhow::Context;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{Value, json};

/// One shard's position.
#[derive(Debug)]
struct Shard {
    id: String,
    iterator: Option<String>,
}

/// A reader of one table's stream.
#[derive(Debug)]
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shards: Vec<Shard>,
}

impl StreamReader {
    /// Opens the stream of `table` at its oldest record.
    pub async fn open(aws: &aws_config::SdkConfig, table: &str) -> anyhow::Result<Self> {
        let described = aws_sdk_dynamodb::Client::new(aws)
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("describing {table}"))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .with_context(|| format!("{table} has no stream (StreamSpecification in template.yaml)"))?
            .to_owned();
        let mut reader = Self {
            client: aws_sdk_dynamodbstreams::Client::new(aws),
            stream_arn,
            shards: Vec::new(),
        };
        reader.find_shards().await?;
        Ok(reader)
    }

    async fn find_shards(&mut self) -> anyhow::Result<()> {
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .context("describing the stream")?;
        let listed = stream
            .stream_description()
            .map(|d| d.shards().to_vec())
            .unwrap_or_default();
        for shard in listed {
            let Some(id) = shard.shard_id() else { continue };
            if self.shards.iter().any(|s| s.id == id) {
                continue;
            }
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .context("getting a shard iterator")?;
            self.shards.push(Shard {
                id: id.to_owned(),
                iterator: iterator.shard_iterator().map(str::to_owned),
            });
        }
        Ok(())
    }

    /// The next records, at most `limit`, as Lambda's DynamoDB event records; empty when
    /// none are waiting.
    pub async fn next_batch(&mut self, limit: i32) -> anyhow::Result<Vec<Value>> {
        if self.shards.iter().all(|s| s.iterator.is_none()) {
            self.find_shards().await?;
        }
        for shard in &mut self.shards {
            let Some(iterator) = shard.iterator.clone() else {
                continue;
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(limit)
                .send()
                .await
                .context("reading the stream")?;
            shard.iterator = out.next_shard_iterator().map(str::to_owned);
            if !out.records().is_empty() {
                return Ok(out
                    .records()
                    .iter()
                    .map(|r| lambda_record(r, &self.stream_arn))
                    .collect());
            }
        }
        Ok(Vec::new())
    }

    /// Reads every record waiting now.
    pub async fn drain(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        loop {
            let batch = self.next_batch(1_000).await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }
}

fn image(
    item: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>,
) -> Option<Value> {
    let item = serde_dynamo::Item::from(item?.clone());
    serde_json::to_value(item).ok()
}

/// A stream record as Lambda delivers it.
fn lambda_record(record: &Record, stream_arn: &str) -> Value {
    let change = record.dynamodb();
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.and_then(|c| c.approximate_creation_date_time()).map(|t| t.secs()),
        "Keys": image(change.and_then(|c| c.keys.as_ref())),
        "SequenceNumber": change.and_then(|c| c.sequence_number()),
        "SizeBytes": change.and_then(|c| c.size_bytes()),
        "StreamViewType": change.and_then(|c| c.stream_view_type()).map(|v| v.as_str()),
    });
    if let Some(new) = image(change.and_then(|c| c.new_image.as_ref())) {
        dynamodb["NewImage"] = new;
    }
    if let Some(old) = image(change.and_then(|c| c.old_image.as_ref())) {
        dynamodb["OldImage"] = old;
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// Lambda's DynamoDB event for `records`.
pub fn lambda_event(records: &[Value]) -> Value {
    json!({ "Records": records })
}
