//! The AWS actions each function's code calls, by the template resource they act on.
//! `template.yaml`'s policies must allow exactly these; `tests/template.rs` checks it.
//! That the code asks for nothing else is proven from its requests: every test runs the
//! functions' code through an IAM proxy that refuses, as AWS does, what the role in the
//! template does not allow (`tests/support/src/iam.rs`, `tests/integration/iam.rs`).
//!
//! Where each comes from:
//! - sign-in: `store::DynamoStore` as `SignInStore`: the claim (PutItem on state, which
//!   returns a recorded outcome itself), one TransactWriteItems (PutItem on grants for a
//!   new user, UpdateItem for a known one, PutItem on state, and UpdateItem on state when a
//!   new token replaces one (its cached access token ends): IAM authorizes a transaction
//!   by its items' actions), a refusal's
//!   record (PutItem) and a release (DeleteItem on state, or UpdateItem when the code went
//!   to Google); `crypto::KmsKeyProvider` seals (GenerateDataKey) and, for a deletion,
//!   opens (Decrypt); `google::SecretsManagerSource` (GetSecretValue). The same function
//!   deletes grants (`DeletionStore`: UpdateItem on grants, DeleteItem of the cached
//!   token) and receives Google's security events (`RiscStore`: Query on the grants
//!   table's two token indexes, UpdateItem on grants; GetItem and PutItem on state for
//!   the events applied, DeleteItem of a revoked grant's cached token).
//! - the offline job: `store::DynamoStore` as `JobStore` (Scan and UpdateItem on grants; GetItem
//!   and PutItem on state, which also caches the access tokens it obtains; UpdateItem on
//!   state to claim and give back the day's Google quota units); `crypto` opens
//!   and re-seals rotated tokens and seals access tokens (Decrypt, GenerateDataKey); the
//!   secret; and Lambda's on-failure destination (SendMessage).
//! - access tokens: `store::DynamoStore` as `AccessStore` (GetItem of the cached token
//!   alone, which serves a hit; else one BatchGetItem of the grant and its cached token; UpdateItem on grants: the lease, and the record of a refresh
//!   that changes the grant; PutItem and UpdateItem on state: the cached token, which
//!   ends a routine refresh's lease, and a failed refresh's note); `crypto` for both
//!   purposes; the secret.
//!   A sign-in that cannot store its grant in time parks Google's answer (SendMessage on
//!   `ParkedSignIns`).
//! - the parked sign-in consumer: the sign-in's own grant write (TransactWriteItems: PutItem
//!   or UpdateItem on grants, PutItem of the outcome on state, UpdateItem of a replaced
//!   token's cached access token) or a refusal's record
//!   (PutItem on state); `crypto` opens the parked message and seals the token under the
//!   grant's binding (Decrypt, GenerateDataKey); the secret, to refresh a parked token
//!   whose access token expired before tokeninfo named its user. Lambda's SQS poller reads the queue with the execution role SAM attaches
//!   for the SQS event source.
//! - all: `kms:Decrypt` through DynamoDB and Secrets Manager only (`kms:ViaService`),
//!   because the tables and the secret are encrypted with the same customer key.

use crate::crypto::Purpose;

/// One allowed action on one template resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// The template's logical id of the resource.
    pub resource: &'static str,
    pub action: &'static str,
}

const fn allow(resource: &'static str, action: &'static str) -> Permission {
    Permission { resource, action }
}

/// What the sign-in function calls.
pub const SIGN_IN: &[Permission] = &[
    allow("GrantsTable", "dynamodb:PutItem"),
    allow("GrantsTable", "dynamodb:UpdateItem"),
    allow("GrantsTable/index/by-token-prefix", "dynamodb:Query"),
    allow("GrantsTable/index/by-token-hash", "dynamodb:Query"),
    allow("StateTable", "dynamodb:GetItem"),
    allow("StateTable", "dynamodb:PutItem"),
    allow("StateTable", "dynamodb:UpdateItem"),
    allow("StateTable", "dynamodb:DeleteItem"),
    allow("TokenKey", "kms:GenerateDataKey"),
    allow("TokenKey", "kms:Decrypt"),
    allow("ClientSecret", "secretsmanager:GetSecretValue"),
    allow("ParkedSignIns", "sqs:SendMessage"),
];

/// What the parked sign-in consumer calls.
pub const PARKED_SIGN_IN: &[Permission] = &[
    allow("GrantsTable", "dynamodb:PutItem"),
    allow("GrantsTable", "dynamodb:UpdateItem"),
    allow("StateTable", "dynamodb:PutItem"),
    allow("StateTable", "dynamodb:UpdateItem"),
    allow("TokenKey", "kms:GenerateDataKey"),
    allow("TokenKey", "kms:Decrypt"),
    allow("ClientSecret", "secretsmanager:GetSecretValue"),
];

/// What the offline job calls.
pub const JOB: &[Permission] = &[
    allow("GrantsTable", "dynamodb:Scan"),
    allow("GrantsTable", "dynamodb:UpdateItem"),
    allow("StateTable", "dynamodb:GetItem"),
    allow("StateTable", "dynamodb:PutItem"),
    allow("StateTable", "dynamodb:UpdateItem"),
    allow("TokenKey", "kms:Decrypt"),
    allow("TokenKey", "kms:GenerateDataKey"),
    allow("ClientSecret", "secretsmanager:GetSecretValue"),
    allow("JobFailures", "sqs:SendMessage"),
];

/// What the access-token function calls.
pub const ACCESS_TOKEN: &[Permission] = &[
    allow("GrantsTable", "dynamodb:BatchGetItem"),
    allow("GrantsTable", "dynamodb:UpdateItem"),
    allow("StateTable", "dynamodb:GetItem"),
    allow("StateTable", "dynamodb:BatchGetItem"),
    allow("StateTable", "dynamodb:PutItem"),
    allow("StateTable", "dynamodb:UpdateItem"),
    allow("TokenKey", "kms:Decrypt"),
    allow("TokenKey", "kms:GenerateDataKey"),
    allow("ClientSecret", "secretsmanager:GetSecretValue"),
];

/// What the events function calls (Lambda's stream poller reads the stream with the
/// execution role SAM attaches for the DynamoDB event source).
pub const EVENTS: &[Permission] = &[
    allow("EventBus", "events:PutEvents"),
    allow("EventsFailures", "sqs:SendMessage"),
];

/// The KMS encryption-context purposes each function seals or opens under; its data-key
/// grants are conditioned on exactly these.
pub const SIGN_IN_PURPOSES: &[Purpose] = &[Purpose::RefreshToken];
pub const PARKED_SIGN_IN_PURPOSES: &[Purpose] = &[Purpose::RefreshToken];
pub const JOB_PURPOSES: &[Purpose] = &[Purpose::RefreshToken, Purpose::AccessToken];
pub const ACCESS_TOKEN_PURPOSES: &[Purpose] = &[Purpose::RefreshToken, Purpose::AccessToken];
