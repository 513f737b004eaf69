//! The variables every function but `events` reads.

use super::super::var::{Absent, List, OneOf, Span, Text, Unit, Url, Var, Whole};
use super::{millis, secs};
use crate::google::{DEFAULT_CERTS_URI, DEFAULT_DRIVE_API, DEFAULT_REVOKE_URI};

pub const GRANTS_TABLE: Var<Text> = Var {
    name: "GRANTS_TABLE",
    absent: Absent::Required,
    kind: Text,
    doc: "DynamoDB table of grants (partition key `sub`)",
};
pub const STATE_TABLE: Var<Text> = Var {
    name: "STATE_TABLE",
    absent: Absent::Required,
    kind: Text,
    doc: "DynamoDB table of short-lived records: sign-in idempotency, the job's checkpoints and the cached \
          access tokens (partition key `pk`, TTL `expires_at`)",
};
pub const CLIENT_SECRET_ID: Var<Text> = Var {
    name: "CLIENT_SECRET_ID",
    absent: Absent::Required,
    kind: Text,
    doc: "Secrets Manager id or ARN of Google's `client_secret_*.json`",
};
pub const TOKEN_KEY_ID: Var<Text> = Var {
    name: "TOKEN_KEY_ID",
    absent: Absent::Required,
    kind: Text,
    doc: "KMS key id, ARN or alias for envelope encryption",
};
pub const PREVIOUS_TOKEN_KEY_IDS: Var<List> = Var {
    name: "PREVIOUS_TOKEN_KEY_IDS",
    absent: Absent::Default(""),
    kind: List,
    doc: "KMS keys tokens were sealed under before a change of key: still opened (tried after \
          `TOKEN_KEY_ID`), never sealed under, until `offline-access reencrypt` has re-wrapped every token; \
          see [Operating the stack](operating.md)",
};
pub const TOKEN_BINDING: Var<Text> = Var {
    name: "TOKEN_BINDING",
    absent: Absent::Means("the value of `GRANTS_TABLE` (the template sets `<stack name>/grants`)"),
    kind: Text,
    doc: "the stable name every sealed token is bound to (AAD and KMS context); set once and kept, so a table \
          restored under another name is read by changing `GRANTS_TABLE` alone",
};
pub const GOOGLE_TOKEN_URI: Var<Url> = Var {
    name: "GOOGLE_TOKEN_URI",
    absent: Absent::Means("the secret's `token_uri`, else `https://oauth2.googleapis.com/token`"),
    kind: Url,
    doc: "Google's token endpoint",
};
pub const GOOGLE_CERTS_URI: Var<Url> = Var {
    name: "GOOGLE_CERTS_URI",
    absent: Absent::Default(DEFAULT_CERTS_URI),
    kind: Url,
    doc: "ID-token signing keys (JWKS)",
};
pub const GOOGLE_REVOKE_URI: Var<Url> = Var {
    name: "GOOGLE_REVOKE_URI",
    absent: Absent::Default(DEFAULT_REVOKE_URI),
    kind: Url,
    doc: "revocation endpoint",
};
pub const GOOGLE_DRIVE_API: Var<Url> = Var {
    name: "GOOGLE_DRIVE_API",
    absent: Absent::Default(DEFAULT_DRIVE_API),
    kind: Url,
    doc: "Drive v3 base URL",
};
pub const ALLOWED_AZP: Var<List> = Var {
    name: "ALLOWED_AZP",
    absent: Absent::Means("any `azp`"),
    kind: List,
    doc: "Android/iOS client ids accepted as the ID token's `azp`",
};
pub const CLIENT_SECRET_TTL_SECS: Var<Span> = Var {
    name: "CLIENT_SECRET_TTL_SECS",
    absent: Absent::Default("300"),
    kind: secs(0),
    doc: "how long the client secret is cached (a rotation is picked up after this)",
};
pub const HTTP_TIMEOUT_MS: Var<Span> = Var {
    name: "HTTP_TIMEOUT_MS",
    absent: Absent::Default("5000"),
    kind: millis(1),
    doc: "total time of one call to Google",
};
pub const AWS_ATTEMPT_TIMEOUT_MS: Var<Span> = Var {
    name: "AWS_ATTEMPT_TIMEOUT_MS",
    absent: Absent::Default("2000"),
    kind: millis(10),
    doc: "the longest one attempt of an AWS call may take (DynamoDB, KMS, Secrets Manager, EventBridge); the SDK \
          retries an attempt that runs out",
};
pub const AWS_CALL_TIMEOUT_MS: Var<Span> = Var {
    name: "AWS_CALL_TIMEOUT_MS",
    absent: Absent::Default("5000"),
    kind: millis(10),
    doc: "the longest one AWS call may take, its retries included; at least `AWS_ATTEMPT_TIMEOUT_MS`; the sign-in \
          and access-token functions cap it at their budget",
};
pub const DATA_KEY_MAX_AGE_SECS: Var<Span> = Var {
    name: "DATA_KEY_MAX_AGE_SECS",
    absent: Absent::Default("900"),
    kind: secs(0),
    doc: "the longest a plaintext data key is cached",
};
pub const DATA_KEY_MAX_USES: Var<Whole<u64>> = Var {
    name: "DATA_KEY_MAX_USES",
    absent: Absent::Default("100000"),
    kind: Whole::within(0, u64::MAX),
    doc: "the most tokens sealed under one data key",
};
pub const TOMBSTONE_DAYS: Var<Span> = Var {
    name: "TOMBSTONE_DAYS",
    absent: Absent::Default("30"),
    kind: Span {
        unit: Unit::Days,
        min: 0,
        max: 36_500,
    },
    doc: "how long the tombstone of a grant deleted at the user's request is kept (TTL on the grants table), \
          so a late retry or the job sees that it was deleted",
};
pub const GOOGLE_CONSENT_TESTING: Var<OneOf<bool>> = Var {
    name: "GOOGLE_CONSENT_TESTING",
    absent: Absent::Default("false"),
    kind: OneOf::words("true or false"),
    doc: "`true` while the OAuth consent screen is an External app in Testing status: Google ends grants with \
          more than name, email and profile seven days after consent; the job announces it (`GrantExpiring`) and \
          names it as the likely cause when it happens",
};
