//! The variables the offline job (`refresher`) reads.

use super::super::var::{Absent, OneOf, PosixZone, Retired, Span, Unit, Var, Whole};
use super::{millis, secs};
use crate::job::DriveSync;

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
pub const EXPIRY_NOTICE_SECS: Var<Span> = Var {
    name: "EXPIRY_NOTICE_SECS",
    absent: Absent::Default("259200"),
    kind: secs(0),
    doc: "`GrantExpiring` is published once for a grant whose predicted end (time-based access; seven days after \
          consent with `GOOGLE_CONSENT_TESTING`) is this near",
};
pub const DRIVE_PROBE_EVERY: Var<Whole<u32>> = Var {
    name: "DRIVE_PROBE_EVERY",
    absent: Absent::Default("1"),
    kind: Whole::within(1, 1_000),
    doc: "a grant's Drive call is made every this many cycles (when its last one is older than (N - 1/2) cycles); \
          its refresh, every cycle",
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
