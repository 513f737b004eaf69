//! The variables of the sign-in, access-token and events functions, and those the AWS
//! SDK and the log set-up read.

use super::super::var::{Absent, List, Retired, ScopeList, Span, Text, Unit, Url, Var};
use super::{millis, secs};

// The sign-in function (`auth-code`: sign-in, deletion, RISC).

pub const IDEMPOTENCY_WINDOW_SECS: Var<Span> = Var {
    name: "IDEMPOTENCY_WINDOW_SECS",
    absent: Absent::Default("600"),
    kind: secs(0),
    doc: "a code POSTed again within this window gets the first answer without calling Google",
};
pub const ID_TOKEN_LEEWAY_SECS: Var<Span> = Var {
    name: "ID_TOKEN_LEEWAY_SECS",
    absent: Absent::Default("60"),
    kind: secs(0),
    doc: "clock skew allowed on `exp` / `iat`",
};
pub const JWKS_MIN_REFETCH_SECS: Var<Span> = Var {
    name: "JWKS_MIN_REFETCH_SECS",
    absent: Absent::Default("30"),
    kind: secs(0),
    doc: "at most one JWKS refetch for unknown `kid`s in this long",
};
pub const SIGN_IN_CLAIM_LEASE_SECS: Var<Span> = Var {
    name: "SIGN_IN_CLAIM_LEASE_SECS",
    absent: Absent::Default("20"),
    kind: secs(1),
    doc: "how long one invocation holds a code's claim; a crashed invocation's claim can be taken over after \
          this (longer than the secret fetch, the exchange, the JWKS and the write together)",
};
pub const DUPLICATE_WAIT_MS: Var<Span> = Var {
    name: "DUPLICATE_WAIT_MS",
    absent: Absent::Default("10000"),
    kind: millis(0),
    doc: "how long a concurrent duplicate of a code waits for the first request's answer before `503` with \
          `Retry-After`",
};
pub const SIGN_IN_BUDGET_MS: Var<Span> = Var {
    name: "SIGN_IN_BUDGET_MS",
    absent: Absent::Default("12000"),
    kind: millis(1),
    doc: "the longest one sign-in may take; steps after Google redeemed the code are tried again only within \
          it (keep it below the function's timeout and the claim lease)",
};
pub const SIGN_IN_PARKING_QUEUE_URL: Var<Text> = Var {
    name: "SIGN_IN_PARKING_QUEUE_URL",
    absent: Absent::Means("nothing is parked: a grant not stored within the budget is lost with its spent code"),
    kind: Text,
    doc: "the SQS queue where a sign-in parks, sealed, what Google answered when the grant cannot be stored within \
          `SIGN_IN_BUDGET_MS` (`ParkedSignIns`; the template sets it); the `parked-sign-in` function stores it",
};
pub const ALLOWED_REDIRECT_URIS: Var<List> = Var {
    name: "ALLOWED_REDIRECT_URIS",
    absent: Absent::Means("only `postmessage` (the GIS popup)"),
    kind: List,
    doc: "the `redirectUri`s a web app may send besides `postmessage` (its redirect flow's callback URLs, as \
          registered with Google: `https`, or `http` on a loopback host)",
};
pub const GOOGLE_TOKENINFO_URI: Var<Url> = Var {
    name: "GOOGLE_TOKENINFO_URI",
    absent: Absent::Default(crate::google::DEFAULT_TOKENINFO_URI),
    kind: Url,
    doc: "Google's tokeninfo: names the user of a code whose exchange carried no ID token (granted without an \
          identity scope)",
};
pub const REQUIRED_SCOPES: Var<ScopeList> = Var {
    name: "REQUIRED_SCOPES",
    absent: Absent::Default(""),
    kind: ScopeList,
    doc: "the scopes the product needs: a sign-in that lacks one still stores the grant, and its answer names \
          them (`missing_scopes`) with how the app asks again (`ask_again`); a grant's `scopes` health is \
          `missing` while it lacks one (`GrantHealthChanged`); the template sets the Drive scope the job uses",
};
pub const GOOGLE_RISC_CONFIG_URI: Var<Url> = Var {
    name: "GOOGLE_RISC_CONFIG_URI",
    absent: Absent::Default(crate::google::risc::DEFAULT_RISC_CONFIG_URI),
    kind: Url,
    doc: "RISC discovery document (the Security Event Tokens' issuer and keys)",
};
pub const RISC_EVENT_RETENTION_DAYS: Var<Span> = Var {
    name: "RISC_EVENT_RETENTION_DAYS",
    absent: Absent::Default("45"),
    kind: Span {
        unit: Unit::Days,
        min: 30,
        max: 36_500,
    },
    doc: "how long an applied security event's `jti` is remembered, so a redelivery is not applied twice \
          (Google may deliver an event again for 30 days)",
};

// The access-token function.

pub const FORCE_REFRESH_MIN_SECS: Var<Span> = Var {
    name: "FORCE_REFRESH_MIN_SECS",
    absent: Absent::Default("30"),
    kind: secs(0),
    doc: "the per-grant floor: a `force_refresh` sooner than this after the last refresh answers 429; after a \
          failed refresh, the next attempt waits this long (503)",
};
pub const ACCESS_TOKEN_LEASE_SECS: Var<Span> = Var {
    name: "ACCESS_TOKEN_LEASE_SECS",
    absent: Absent::Default("15"),
    kind: secs(1),
    doc: "how long one call holds a grant while it refreshes (the longest a call that died blocks others); \
          must exceed `ACCESS_TOKEN_BUDGET_MS`",
};
pub const ACCESS_TOKEN_BUDGET_MS: Var<Span> = Var {
    name: "ACCESS_TOKEN_BUDGET_MS",
    absent: Absent::Default("8000"),
    kind: millis(1),
    doc: "the longest one call takes, waiting for another's refresh included (keep it below the function's \
          10 s timeout)",
};

// The events function.

pub const EVENT_BUS_NAME: Var<Text> = Var {
    name: "EVENT_BUS_NAME",
    absent: Absent::Required,
    kind: Text,
    doc: "the stack's EventBridge bus (the template sets it)",
};
pub const EVENTS_FAILURE_QUEUE_URL: Var<Text> = Var {
    name: "EVENTS_FAILURE_QUEUE_URL",
    absent: Absent::Required,
    kind: Text,
    doc: "the SQS queue that keeps, as events, what could not be published (`EventsFailures`; the template sets it); `offline-access events replay` publishes from it",
};
pub const EVENTS_GIVE_UP_SECS: Var<Span> = Var {
    name: "EVENTS_GIVE_UP_SECS",
    absent: Absent::Default("18000"),
    kind: Span {
        unit: Unit::Secs,
        min: 0,
        max: 21_000,
    },
    doc: "a record whose events still cannot be published once it is this old has them kept in `EVENTS_FAILURE_QUEUE_URL`, and the stream moves on (below the mapping's 21,600 s record age)",
};

// Read by the AWS SDK and the log set-up, not by a config.

pub const AWS_ENDPOINT_URL: Var<Url> = Var {
    name: "AWS_ENDPOINT_URL",
    absent: Absent::Means("AWS's endpoints"),
    kind: Url,
    doc: "the AWS SDK's own override; points every AWS call at a local stack",
};
pub const RUST_LOG: Var<Text> = Var {
    name: "RUST_LOG",
    absent: Absent::Means("`info`"),
    kind: Text,
    doc: "log filter",
};
pub const REFRESH_FAILING_AFTER: Var<Retired> = Var {
    name: "REFRESH_FAILING_AFTER",
    absent: Absent::Means("nothing"),
    kind: Retired(
        "RefreshFailing is replaced by GrantHealthChanged (level refresh), published at the first cycle whose \
         retries are spent: remove it",
    ),
    doc: "retired: `RefreshFailing` is replaced by `GrantHealthChanged`; set, it fails init",
};
