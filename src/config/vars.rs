//! Every environment variable the functions read, declared once: name, what its absence
//! means, what it accepts, what it does. The configs in `mod.rs` read these and nothing
//! else; the README's configuration table is [`markdown_table`] (a test compares them and
//! prints the table to paste when they differ); the template test checks what
//! `template.yaml` sets against [`Group`]s.

use super::var::{Absent, Declared, List, OneOf, PosixZone, Retired, Span, Text, Unit, Url, Var, Whole};
use crate::google::{DEFAULT_CERTS_URI, DEFAULT_DRIVE_API, DEFAULT_REVOKE_URI};
use crate::job::DriveSync;

const fn secs(min: u64) -> Span {
    Span {
        unit: Unit::Secs,
        min,
        max: u64::MAX,
    }
}

const fn millis(min: u64) -> Span {
    Span {
        unit: Unit::Millis,
        min,
        max: u64::MAX,
    }
}

// Every function but `events`.

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
          see [Operating the stack](#operating-the-stack)",
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

// The offline job (`refresher`).

pub const REFRESH_SEGMENTS: Var<Whole<u32>> = Var {
    name: "REFRESH_SEGMENTS",
    absent: Absent::Default("4"),
    kind: Whole::within(1, 1_000_000),
    doc: "parallel scan segments",
};
pub const REFRESH_CONCURRENCY: Var<Whole<usize>> = Var {
    name: "REFRESH_CONCURRENCY",
    absent: Absent::Default("64"),
    kind: Whole::within(1, 100_000),
    doc: "grants in flight at once",
};
pub const GOOGLE_QUOTA_UNITS_PER_MIN: Var<Whole<u64>> = Var {
    name: "GOOGLE_QUOTA_UNITS_PER_MIN",
    absent: Absent::Default("200000"),
    kind: Whole::within(0, u64::MAX),
    doc: "Google quota units the run may spend per minute, each call paced by its units (0 = no limit); a \
          fifth of a new project's Drive quota, the rest is the app's",
};
pub const GOOGLE_DAILY_UNIT_BUDGET: Var<Whole<u64>> = Var {
    name: "GOOGLE_DAILY_UNIT_BUDGET",
    absent: Absent::Default("200000000"),
    kind: Whole::within(0, u64::MAX),
    doc: "units per quota day, counted across invocations; when spent the run stops (checkpointed) and the \
          cycle resumes the next day (0 = none); half of Google's daily threshold past which it bills",
};
pub const GOOGLE_QUOTA_DAY_TZ: Var<PosixZone> = Var {
    name: "GOOGLE_QUOTA_DAY_TZ",
    absent: Absent::Default("PST8PDT,M3.2.0,M11.1.0"),
    kind: PosixZone,
    doc: "the time zone whose midnight starts a quota day (Google's is Pacific time; `UTC0` for UTC)",
};
pub const DRIVE_SYNC: Var<OneOf<DriveSync>> = Var {
    name: "DRIVE_SYNC",
    absent: Absent::Default("get"),
    kind: OneOf::words("get, list or off"),
    doc: "the Drive work a grant with `drive.appdata` gets per cycle: `get` (`files.get` of the \
          `appDataFolder`), `list` (every page) or `off`",
};
pub const GOOGLE_UNITS_REFRESH: Var<Whole<u32>> = Var {
    name: "GOOGLE_UNITS_REFRESH",
    absent: Absent::Default("1"),
    kind: Whole::within(0, 1_000_000),
    doc: "quota units one refresh costs",
};
pub const GOOGLE_UNITS_REVOKE: Var<Whole<u32>> = Var {
    name: "GOOGLE_UNITS_REVOKE",
    absent: Absent::Default("1"),
    kind: Whole::within(0, 1_000_000),
    doc: "quota units one revocation costs",
};
pub const GOOGLE_UNITS_FILES_GET: Var<Whole<u32>> = Var {
    name: "GOOGLE_UNITS_FILES_GET",
    absent: Absent::Default("5"),
    kind: Whole::within(0, 1_000_000),
    doc: "quota units one Drive `files.get` costs",
};
pub const GOOGLE_UNITS_FILES_LIST: Var<Whole<u32>> = Var {
    name: "GOOGLE_UNITS_FILES_LIST",
    absent: Absent::Default("100"),
    kind: Whole::within(0, 1_000_000),
    doc: "quota units one Drive `files.list` page costs",
};
pub const LEASE_SECS: Var<Span> = Var {
    name: "LEASE_SECS",
    absent: Absent::Default("120"),
    kind: secs(1),
    doc: "how long one invocation holds a grant",
};
pub const DEADLINE_MARGIN_MS: Var<Span> = Var {
    name: "DEADLINE_MARGIN_MS",
    absent: Absent::Default("10000"),
    kind: millis(0),
    doc: "stop taking work this long before the Lambda deadline",
};
pub const RETRY_MAX_ATTEMPTS: Var<Whole<u32>> = Var {
    name: "RETRY_MAX_ATTEMPTS",
    absent: Absent::Default("4"),
    kind: Whole::within(1, 100),
    doc: "attempts of one Google call (capped exponential backoff, full jitter)",
};
pub const RETRY_BASE_MS: Var<Span> = Var {
    name: "RETRY_BASE_MS",
    absent: Absent::Default("200"),
    kind: millis(0),
    doc: "the retry backoff's base",
};
pub const RETRY_CAP_MS: Var<Span> = Var {
    name: "RETRY_CAP_MS",
    absent: Absent::Default("5000"),
    kind: millis(0),
    doc: "the retry backoff's cap",
};
pub const DEFER_BASE_SECS: Var<Span> = Var {
    name: "DEFER_BASE_SECS",
    absent: Absent::Default("300"),
    kind: secs(0),
    doc: "how long a deferred grant first waits (doubling per failure)",
};
pub const DEFER_MAX_SECS: Var<Span> = Var {
    name: "DEFER_MAX_SECS",
    absent: Absent::Default("21600"),
    kind: secs(0),
    doc: "the longest a deferred grant waits",
};
pub const SCAN_PAGE_SIZE: Var<Whole<i32>> = Var {
    name: "SCAN_PAGE_SIZE",
    absent: Absent::Default("100"),
    kind: Whole::within(1, 10_000),
    doc: "items read per scan request",
};
pub const CYCLE_MINUTES: Var<Span> = Var {
    name: "CYCLE_MINUTES",
    absent: Absent::Default("360"),
    kind: Span {
        unit: Unit::Minutes,
        min: 1,
        max: 525_600,
    },
    doc: "every grant is refreshed once per cycle of this length; invocations within a cycle resume it",
};
pub const DRIVE_MAX_PAGES: Var<Whole<u64>> = Var {
    name: "DRIVE_MAX_PAGES",
    absent: Absent::Default("10"),
    kind: Whole::within(1, u64::MAX),
    doc: "the most `files.list` pages (100 files each) one grant's listing reads; a longer listing, or one \
          whose page tokens repeat, is recorded as truncated",
};
pub const DRIVE_MAX_PAGE_BYTES: Var<Whole<usize>> = Var {
    name: "DRIVE_MAX_PAGE_BYTES",
    absent: Absent::Default("1048576"),
    kind: Whole::within(1, 1 << 30),
    doc: "the largest Drive page read; a larger one ends the listing as truncated, unread (token and key-set \
          answers are capped at 64 KiB)",
};
pub const OPEN_FAILURE_LIMIT: Var<Whole<u64>> = Var {
    name: "OPEN_FAILURE_LIMIT",
    absent: Absent::Default("10"),
    kind: Whole::within(1, u64::MAX),
    doc: "stored tokens that may fail to open in one run (while more fail than open) before it stops as \
          misconfigured (a wrong `TOKEN_KEY_ID` or `TOKEN_BINDING`)",
};
pub const JOB_STATE_TTL_SECS: Var<Span> = Var {
    name: "JOB_STATE_TTL_SECS",
    absent: Absent::Default("604800"),
    kind: secs(1),
    doc: "how long a cycle's checkpoints and done marker are kept (DynamoDB TTL); longer than a cycle",
};
pub const GOOGLE_RATE_PER_SEC: Var<Retired> = Var {
    name: "GOOGLE_RATE_PER_SEC",
    absent: Absent::Means("nothing"),
    kind: Retired("replaced by GOOGLE_QUOTA_UNITS_PER_MIN (Google counts quota in units, not calls): remove it"),
    doc: "retired: replaced by `GOOGLE_QUOTA_UNITS_PER_MIN`; set, it fails init",
};

// The events function.

pub const EVENT_BUS_NAME: Var<Text> = Var {
    name: "EVENT_BUS_NAME",
    absent: Absent::Required,
    kind: Text,
    doc: "the stack's EventBridge bus (the template sets it)",
};
pub const REFRESH_FAILING_AFTER: Var<Whole<u32>> = Var {
    name: "REFRESH_FAILING_AFTER",
    absent: Absent::Default("3"),
    kind: Whole::within(1, 1_000),
    doc: "`RefreshFailing` is published when a grant's consecutive refresh failures reach this",
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

/// The variables one set of functions reads.
#[derive(Debug)]
pub struct Group {
    /// The functions, as `template.yaml` names their binaries.
    pub read_by: &'static str,
    pub vars: &'static [&'static dyn Declared],
}

pub const COMMON: Group = Group {
    read_by: "auth-code, refresher, access-token",
    vars: &[
        &GRANTS_TABLE,
        &STATE_TABLE,
        &CLIENT_SECRET_ID,
        &TOKEN_KEY_ID,
        &PREVIOUS_TOKEN_KEY_IDS,
        &TOKEN_BINDING,
        &GOOGLE_TOKEN_URI,
        &GOOGLE_CERTS_URI,
        &GOOGLE_REVOKE_URI,
        &GOOGLE_DRIVE_API,
        &ALLOWED_AZP,
        &CLIENT_SECRET_TTL_SECS,
        &HTTP_TIMEOUT_MS,
        &DATA_KEY_MAX_AGE_SECS,
        &DATA_KEY_MAX_USES,
        &TOMBSTONE_DAYS,
    ],
};

pub const SIGN_IN: Group = Group {
    read_by: "auth-code",
    vars: &[
        &IDEMPOTENCY_WINDOW_SECS,
        &ID_TOKEN_LEEWAY_SECS,
        &JWKS_MIN_REFETCH_SECS,
        &SIGN_IN_CLAIM_LEASE_SECS,
        &DUPLICATE_WAIT_MS,
        &SIGN_IN_BUDGET_MS,
        &GOOGLE_RISC_CONFIG_URI,
        &RISC_EVENT_RETENTION_DAYS,
    ],
};

pub const ACCESS_TOKEN: Group = Group {
    read_by: "access-token",
    vars: &[
        &FORCE_REFRESH_MIN_SECS,
        &ACCESS_TOKEN_LEASE_SECS,
        &ACCESS_TOKEN_BUDGET_MS,
    ],
};

pub const JOB: Group = Group {
    read_by: "refresher",
    vars: &[
        &REFRESH_SEGMENTS,
        &REFRESH_CONCURRENCY,
        &GOOGLE_QUOTA_UNITS_PER_MIN,
        &GOOGLE_DAILY_UNIT_BUDGET,
        &GOOGLE_QUOTA_DAY_TZ,
        &DRIVE_SYNC,
        &GOOGLE_UNITS_REFRESH,
        &GOOGLE_UNITS_REVOKE,
        &GOOGLE_UNITS_FILES_GET,
        &GOOGLE_UNITS_FILES_LIST,
        &LEASE_SECS,
        &DEADLINE_MARGIN_MS,
        &RETRY_MAX_ATTEMPTS,
        &RETRY_BASE_MS,
        &RETRY_CAP_MS,
        &DEFER_BASE_SECS,
        &DEFER_MAX_SECS,
        &SCAN_PAGE_SIZE,
        &CYCLE_MINUTES,
        &DRIVE_MAX_PAGES,
        &DRIVE_MAX_PAGE_BYTES,
        &OPEN_FAILURE_LIMIT,
        &JOB_STATE_TTL_SECS,
        &GOOGLE_RATE_PER_SEC,
    ],
};

pub const EVENTS: Group = Group {
    read_by: "events",
    vars: &[&EVENT_BUS_NAME, &REFRESH_FAILING_AFTER],
};

pub const OUTSIDE: Group = Group {
    read_by: "every function (the AWS SDK, the log set-up)",
    vars: &[&AWS_ENDPOINT_URL, &RUST_LOG],
};

/// Every group, in the README's order.
pub const GROUPS: [&Group; 6] = [&COMMON, &SIGN_IN, &ACCESS_TOKEN, &JOB, &EVENTS, &OUTSIDE];

impl Group {
    /// The names, in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.vars.iter().map(|v| v.name())
    }
}

/// The README's configuration table, generated from the declarations.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | read by | meaning | default | accepts |\n|---|---|---|---|---|\n");
    for group in GROUPS {
        for var in group.vars {
            let default = match var.absent() {
                Absent::Required => "required".to_owned(),
                Absent::Default("") => "empty".to_owned(),
                Absent::Default(value) => format!("`{value}`"),
                Absent::Means(words) => words.to_owned(),
            };
            table.push_str(&format!(
                "| `{}` | {} | {} | {default} | {} |\n",
                var.name(),
                group.read_by,
                var.doc(),
                var.accepts()
            ));
        }
    }
    table
}
