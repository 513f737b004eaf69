//! `stream-pump`: what Lambda's event source mapping does for the `events` function, for
//! `make dev`: reads the grants table's DynamoDB Stream (moto's) in order and invokes the
//! function with each batch over cargo lambda's Invoke API. A batch whose answer names a
//! failed record (`batchItemFailures`) is sent again from that record; after
//! `MAX_RETRIES` the records are given up on and logged, as Lambda would send them to
//! the on-failure queue.
//!
//! Environment: `AWS_ENDPOINT_URL` (required: never a real account), `GRANTS_TABLE`,
//! `EVENTS_INVOKE_URL` (`http://127.0.0.1:9000/2015-03-31/functions/events/invocations`).

#![allow(clippy::print_stdout, reason = "a local tool: its log is its standard output")]

use std::time::Duration;

use anyhow::Context;
use local_stack::stream::{StreamReader, lambda_event};
use serde_json::Value;

const BATCH_SIZE: i32 = 100;
const MAX_RETRIES: usize = 5;
const POLL_EVERY: Duration = Duration::from_millis(250);

/// What the function answered: the position to go again from, if any.
fn retry_from(answer: &Value, batch: &[Value]) -> Option<usize> {
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()?
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    batch.iter().position(|r| {
        r["dynamodb"]["SequenceNumber"]
            .as_str()
            .is_some_and(|s| failed.contains(&s))
    })
}

async fn deliver(http: &reqwest::Client, url: &str, mut batch: Vec<Value>) -> anyhow::Result<()> {
    for attempt in 0..=MAX_RETRIES {
        let sent = http
            .post(url)
            .header("content-type", "application/json")
            .body(lambda_event(&batch).to_string())
            .send()
            .await;
        let outcome = match sent {
            Ok(answer) if answer.status().is_success() => {
                let bytes = answer.bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if body.get("errorType").is_some() {
                    Err(format!("the function failed: {body}"))
                } else {
                    Ok(retry_from(&body, &batch))
                }
            }
            Ok(answer) => Err(format!("the Invoke API answered {}", answer.status())),
            Err(e) => Err(format!("the Invoke API could not be reached: {e}")),
        };
        match outcome {
            Ok(None) => {
                println!("stream-pump: delivered {} record(s)", batch.len());
                return Ok(());
            }
            Ok(Some(from)) => {
                println!(
                    "stream-pump: {} record(s) to go again (attempt {})",
                    batch.len() - from,
                    attempt + 1
                );
                batch.drain(..from);
            }
            Err(why) => println!("stream-pump: {why} (attempt {})", attempt + 1),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "stream-pump: stopped retrying {} record(s) from sequence number {} (Lambda retries until a record is six hours old; the function keeps its events in EventsFailures after EVENTS_GIVE_UP_SECS)",
        batch.len(),
        batch
            .first()
            .and_then(|r| r["dynamodb"]["SequenceNumber"].as_str())
            .unwrap_or("?")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL must name the local AWS endpoint (this never reads a real account)")?;
    let table = std::env::var("GRANTS_TABLE").context("GRANTS_TABLE")?;
    let url = std::env::var("EVENTS_INVOKE_URL").context("EVENTS_INVOKE_URL")?;
    let aws = local_stack::local_aws_config(&endpoint).await;
    let mut reader = StreamReader::open(&aws, &table).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    println!("stream-pump: feeding {table}'s stream to {url}");
    loop {
        let batch = reader.next_batch(BATCH_SIZE).await?;
        if batch.is_empty() {
            tokio::time::sleep(POLL_EVERY).await;
            continue;
        }
        deliver(&http, &url, batch).await?;
    }
}
