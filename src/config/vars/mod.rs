//! Every environment variable the functions read, declared once: name, what its absence
//! means, what it accepts, what it does. The configs in `mod.rs` read these and nothing
//! else; the README's configuration table is [`markdown_table`] (a test compares them and
//! prints the table to paste when they differ); the template test checks what
//! `template.yaml` sets against [`Group`]s.

//!
//! The declarations live by who reads them: `common.rs`, `job.rs`, and `functions.rs`
//! (sign-in, access-token, events, and the SDK's own).

mod common;
mod functions;
mod job;

pub use common::*;
pub use functions::*;
pub use job::*;

use super::var::{Absent, Declared, Span, Unit};

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

/// The variables one set of functions reads.
#[derive(Debug)]
pub struct Group {
    /// The functions, as `template.yaml` names their binaries.
    pub read_by: &'static str,
    pub vars: &'static [&'static dyn Declared],
}

pub const COMMON: Group = Group {
    read_by: "auth-code, parked-sign-in, refresher, access-token",
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
        &GOOGLE_CONSENT_TESTING,
        &HTTP_TIMEOUT_MS,
        &DATA_KEY_MAX_AGE_SECS,
        &DATA_KEY_MAX_USES,
        &TOMBSTONE_DAYS,
    ],
};

pub const SIGN_IN: Group = Group {
    read_by: "auth-code, parked-sign-in",
    vars: &[
        &IDEMPOTENCY_WINDOW_SECS,
        &ID_TOKEN_LEEWAY_SECS,
        &JWKS_MIN_REFETCH_SECS,
        &SIGN_IN_CLAIM_LEASE_SECS,
        &DUPLICATE_WAIT_MS,
        &SIGN_IN_BUDGET_MS,
        &SIGN_IN_PARKING_QUEUE_URL,
        &ALLOWED_REDIRECT_URIS,
        &GOOGLE_TOKENINFO_URI,
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
        &EXPIRY_NOTICE_SECS,
        &DRIVE_PROBE_EVERY,
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
    vars: &[
        &EVENT_BUS_NAME,
        &EVENTS_FAILURE_QUEUE_URL,
        &EVENTS_GIVE_UP_SECS,
        &REFRESH_FAILING_AFTER,
    ],
};

pub const HEALTH: Group = Group {
    read_by: "auth-code, parked-sign-in, events",
    vars: &[&REQUIRED_SCOPES],
};

pub const AWS_CLIENTS: Group = Group {
    read_by: "every function",
    vars: &[&AWS_ATTEMPT_TIMEOUT_MS, &AWS_CALL_TIMEOUT_MS],
};

pub const OUTSIDE: Group = Group {
    read_by: "every function (the AWS SDK, the log set-up)",
    vars: &[&AWS_ENDPOINT_URL, &RUST_LOG],
};

/// Every group, in the README's order.
pub const GROUPS: [&Group; 8] = [
    &COMMON,
    &SIGN_IN,
    &ACCESS_TOKEN,
    &JOB,
    &EVENTS,
    &HEALTH,
    &AWS_CLIENTS,
    &OUTSIDE,
];

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
