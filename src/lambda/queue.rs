//! The `ParkedSignIns` queue in (Lambda's SQS event source mapping): each message is a
//! sign-in whose grant could not be stored in time, written now by
//! [`SignIn::unpark`](crate::sign_in::SignIn::unpark). A message that cannot be written
//! yet (the store, KMS or Google's keys still unavailable) is named for Lambda to deliver
//! again after the queue's visibility timeout (`ReportBatchItemFailures`); one that is
//! refused for good has its outcome recorded for the code's retries and is done.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tokio::time::Instant;

use crate::ports::Ports;
use crate::sign_in::parked::ParkedSignIn;
use crate::sign_in::{SignIn, Unparked};

/// One invocation of the `parked-sign-in` function. `deadline`: when the invocation must
/// have answered; a message is started only while a whole sign-in budget fits before it.
pub async fn handle<P: Ports>(event: &SqsEvent, sign_in: &SignIn<P>, deadline: Instant) -> SqsBatchResponse {
    let budget = sign_in.settings.budget;
    let (mut stored, mut refused, mut unreadable) = (0_usize, 0_usize, 0_usize);
    let mut response = SqsBatchResponse::default();
    let mut again = |id: &str| {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id.to_owned();
        response.batch_item_failures.push(failure);
    };
    for message in &event.records {
        let id = message.message_id.as_deref().unwrap_or_default();
        if Instant::now() + budget > deadline {
            again(id);
            continue;
        }
        let parked = message
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<ParkedSignIn>(body).ok());
        let Some(parked) = parked else {
            // Never readable, so never retried: named by its id, nothing of its body.
            tracing::error!(message_id = id, "a parked sign-in message is not readable; dropped");
            unreadable += 1;
            continue;
        };
        // Boxed: the sign-in's future is deep, and the runtime's layout of it would
        // otherwise pass the compiler's query depth in the function's test build.
        match Box::pin(sign_in.unpark(&parked, Instant::now() + budget)).await {
            Ok(Unparked::Stored(done)) => {
                tracing::info!(message_id = id, sub = %done.sub, "parked sign-in stored");
                stored += 1;
            }
            Ok(Unparked::Refused(_)) => refused += 1,
            Err(e) => {
                tracing::warn!(message_id = id, error = %e, "parked sign-in not stored yet; delivered again later");
                again(id);
            }
        }
    }
    tracing::info!(
        messages = event.records.len(),
        stored,
        refused,
        unreadable,
        again = response.batch_item_failures.len(),
        "parked sign-ins done"
    );
    response
}
