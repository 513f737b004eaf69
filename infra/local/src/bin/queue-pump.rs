//! `queue-pump`: what Lambda's SQS event source mapping does for the `parked-sign-in`
//! function, for `make dev`: long-polls the `ParkedSignIns` queue (moto's), invokes the
//! function with each batch over cargo lambda's Invoke API, and deletes every message the
//! answer does not name in `batchItemFailures`. A named message, or a whole batch whose
//! invocation failed, stays in the queue and is received again once its visibility
//! timeout passes, as with Lambda.
//!
//! Environment: `AWS_ENDPOINT_URL` (required: never a real account),
//! `SIGN_IN_PARKING_QUEUE_URL`, `PARKED_INVOKE_URL`
//! (`http://127.0.0.1:9000/2015-03-31/functions/parked-sign-in/invocations`).

#![allow(clippy::print_stdout, reason = "a local tool: its log is its standard output")]

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::Message;
use serde_json::{Value, json};

/// The template's `BatchSize`.
const BATCH_SIZE: i32 = 2;

/// A received message as Lambda's SQS event source puts it in the event.
fn record(message: &Message, queue_arn: &str) -> Value {
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

/// The ids the function asks to have delivered again; `None`: the invocation failed.
async fn invoke(http: &reqwest::Client, url: &str, event: &Value) -> Option<BTreeSet<String>> {
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body: Value = serde_json::from_slice(&answer.bytes().await.ok()?).ok()?;
    let failures = body.get("batchItemFailures")?.as_array()?;
    Some(
        failures
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL must name the local AWS endpoint (this never reads a real account)")?;
    let queue = std::env::var("SIGN_IN_PARKING_QUEUE_URL").context("SIGN_IN_PARKING_QUEUE_URL")?;
    let url = std::env::var("PARKED_INVOKE_URL").context("PARKED_INVOKE_URL")?;
    let sqs = aws_sdk_sqs::Client::new(&local_stack::local_aws_config(&endpoint).await);
    let queue_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queue.rsplit('/').next().unwrap_or("queue")
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    println!("queue-pump: feeding {queue} to {url}");
    loop {
        let received = match sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(BATCH_SIZE)
            .wait_time_seconds(1)
            .send()
            .await
        {
            Ok(received) => received,
            Err(e) => {
                println!("queue-pump: the queue could not be read: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let messages = received.messages();
        if messages.is_empty() {
            continue;
        }
        let event = json!({"Records": messages.iter().map(|m| record(m, &queue_arn)).collect::<Vec<_>>()});
        let Some(again) = invoke(&http, &url, &event).await else {
            println!(
                "queue-pump: the invocation failed; {} message(s) come back after their visibility timeout",
                messages.len()
            );
            continue;
        };
        for message in messages {
            let id = message.message_id().unwrap_or_default();
            if again.contains(id) {
                continue;
            }
            if let Some(receipt) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .context("deleting a delivered message")?;
            }
        }
        println!(
            "queue-pump: delivered {} message(s), {} to go again",
            messages.len() - again.len(),
            again.len()
        );
    }
}
