//! Typed configuration, read once from environment variables at init.
//!
//! Every variable is documented here and in the README's configuration table; a bad or
//! missing one fails init with a message naming it (never its value, which may be an ARN
//! an operator would rather not see echoed, but is never a secret: secrets live in
//! Secrets Manager).

use std::time::Duration;

use crate::google::{DEFAULT_CERTS_URI, DEFAULT_DRIVE_API, DEFAULT_REVOKE_URI};
use crate::job::{DriveSync, QuotaCosts};

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: &'static str },
}

/// Where the variables come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }
}

/// Google's quota day starts at midnight Pacific time.
pub const GOOGLE_QUOTA_DAY_TZ: &str = "PST8PDT,M3.2.0,M11.1.0";

/// Configuration shared by every function.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `GRANTS_TABLE`: the DynamoDB table of grants (partition key `sub`).
    pub grants_table: String,
    /// `STATE_TABLE`: the DynamoDB table of short-lived records (sign-in idempotency),
    /// partition key `pk`, TTL attribute `expires_at`.
    pub state_table: String,
    /// `CLIENT_SECRET_ID`: Secrets Manager id or ARN of Google's `client_secret_*.json`.
    pub client_secret_id: String,
    /// `TOKEN_KEY_ID`: KMS key id, ARN or alias for envelope encryption.
    pub token_key_id: String,
    /// `PREVIOUS_TOKEN_KEY_IDS` (comma list, empty): keys tokens were sealed under before
    /// a change of key; still opened until `offline-access reencrypt` has re-wrapped
    /// every token under `TOKEN_KEY_ID`.
    pub previous_token_key_ids: Vec<String>,
    /// `TOKEN_BINDING` (the value of `GRANTS_TABLE`): the stable name every sealed token
    /// is bound to (its AAD and KMS encryption context). Set it once and keep it: a
    /// table restored under a new name is read by pointing `GRANTS_TABLE` at it, with
    /// `TOKEN_BINDING` unchanged.
    pub token_binding: String,
    /// `GOOGLE_TOKEN_URI`: overrides the secret's `token_uri`.
    pub token_uri: Option<String>,
    /// `GOOGLE_CERTS_URI`: the JWKS of Google's ID-token signing keys.
    pub certs_uri: String,
    /// `GOOGLE_REVOKE_URI`.
    pub revoke_uri: String,
    /// `GOOGLE_DRIVE_API`: Drive v3 base URL.
    pub drive_api: String,
    /// `ALLOWED_AZP`: comma list of client ids accepted as the ID token's `azp`; empty = any.
    pub allowed_azp: Vec<String>,
    /// `CLIENT_SECRET_TTL_SECS` (300): how long the client secret is cached; a rotated
    /// secret is picked up within this time.
    pub client_secret_ttl: Duration,
    /// `HTTP_TIMEOUT_MS` (5000): total time for one call to Google.
    pub http_timeout: Duration,
    /// `DATA_KEY_MAX_AGE_SECS` (900) and `DATA_KEY_MAX_USES` (100000): bounds on one
    /// cached plaintext data key.
    pub data_key_max_age: Duration,
    pub data_key_max_uses: u64,
    /// `TOMBSTONE_DAYS` (30): how long the tombstone of a grant deleted at the user's
    /// request is kept (DynamoDB TTL on the grants table), so a late retry or the job
    /// sees that it was deleted.
    pub tombstone_ttl: Duration,
}

/// Configuration of the sign-in function.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    pub common: CommonConfig,
    /// `IDEMPOTENCY_WINDOW_SECS` (600): a code POSTed again within this window gets the
    /// first answer without calling Google.
    pub idempotency_window: Duration,
    /// `ID_TOKEN_LEEWAY_SECS` (60): clock skew allowed on `exp` and `iat`.
    pub id_token_leeway: Duration,
    /// `JWKS_MIN_REFETCH_SECS` (30): at most one refetch of the JWKS for an unknown `kid`
    /// in this long.
    pub jwks_min_refetch: Duration,
    /// `SIGN_IN_CLAIM_LEASE_SECS` (20): how long one invocation holds a code before
    /// another may take it over (a crashed invocation's claim expires after this). Longer
    /// than the secret fetch, the exchange, the JWKS and the write together.
    pub claim_lease: Duration,
    /// `DUPLICATE_WAIT_MS` (10000): how long a concurrent duplicate of a code waits for
    /// the first request's answer before answering 503 with `Retry-After`.
    pub duplicate_wait: Duration,
    /// `SIGN_IN_BUDGET_MS` (12000): the longest one sign-in may take in all; keep it below
    /// the function's timeout (the template's 15 s) and the claim lease. After Google has
    /// redeemed the code, a failing step is tried again only within it.
    pub budget: Duration,
    /// `GOOGLE_RISC_CONFIG_URI` (Google's): the RISC discovery document, which names the
    /// Security Event Tokens' issuer and keys.
    pub risc_config_uri: String,
    /// `RISC_EVENT_RETENTION_DAYS` (45, at least 30): how long an applied security
    /// event's `jti` is remembered, so a redelivery is not applied twice.
    pub risc_event_retention: Duration,
}

/// Configuration of the offline job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub common: CommonConfig,
    /// `REFRESH_SEGMENTS` (4): parallel scan segments.
    pub segments: u32,
    /// `REFRESH_CONCURRENCY` (64): grants in flight at once.
    pub concurrency: usize,
    /// `GOOGLE_QUOTA_UNITS_PER_MIN` (200000): Google quota units the run may spend per
    /// minute, every call paced by its units (0 = no limit). A fifth of a new project's
    /// Drive quota (1,000,000 a minute): the rest is the customer's app's.
    pub quota_units_per_min: u64,
    /// `GOOGLE_DAILY_UNIT_BUDGET` (200000000): units the job may spend per quota day,
    /// counted across invocations; when they are spent the run stops (checkpointed) and
    /// the cycle resumes the next day (0 = no daily budget). Half of Google's daily
    /// threshold past which it bills (400,000,000).
    pub daily_unit_budget: u64,
    /// `GOOGLE_QUOTA_DAY_TZ` (`PST8PDT,M3.2.0,M11.1.0`): the POSIX time zone whose
    /// midnight starts a quota day (Google's is Pacific time).
    pub quota_day_zone: jiff::tz::TimeZone,
    /// `DRIVE_SYNC` (`get`): the Drive work each grant with `drive.appdata` gets per
    /// cycle: `get` (`files.get` of the `appDataFolder`), `list` (every page) or `off`.
    pub drive_sync: DriveSync,
    /// `GOOGLE_UNITS_REFRESH` (1), `GOOGLE_UNITS_REVOKE` (1), `GOOGLE_UNITS_FILES_GET`
    /// (5), `GOOGLE_UNITS_FILES_LIST` (100): what each call costs.
    pub quota_costs: QuotaCosts,
    /// `LEASE_SECS` (120): how long a grant is held by one invocation.
    pub lease: Duration,
    /// `DEADLINE_MARGIN_MS` (10000): stop taking work this long before the Lambda deadline.
    pub deadline_margin: Duration,
    /// `RETRY_MAX_ATTEMPTS` (4), `RETRY_BASE_MS` (200), `RETRY_CAP_MS` (5000): retries of
    /// one Google call (capped exponential backoff, full jitter).
    pub retry_max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// `DEFER_BASE_SECS` (300), `DEFER_MAX_SECS` (21600): how long a deferred grant waits.
    pub defer_base: Duration,
    pub defer_max: Duration,
    /// `SCAN_PAGE_SIZE` (100): items read per scan request.
    pub page_size: i32,
    /// `CYCLE_MINUTES` (360): every grant is refreshed once per period of this length;
    /// invocations within a period resume its cycle.
    pub cycle: Duration,
    /// `DRIVE_MAX_PAGES` (10): the most `files.list` pages one grant's listing reads (100
    /// files a page); a longer listing, or one whose page tokens repeat, is recorded as
    /// truncated.
    pub drive_max_pages: u64,
    /// `DRIVE_MAX_PAGE_BYTES` (1048576): the largest `files.list` page read; a larger one
    /// ends the listing as truncated without being held in memory. A page of 100 files
    /// with the fields asked for is about 15 KiB.
    pub drive_max_page_bytes: usize,
    /// `OPEN_FAILURE_LIMIT` (10): when this many stored tokens in one run fail to open,
    /// and more fail than open, the run stops as misconfigured (a wrong `TOKEN_KEY_ID` or
    /// `TOKEN_BINDING`) before it touches more grants. Fewer are one user's bad row each:
    /// logged and counted, and the grant is left as it is.
    pub open_failure_limit: u64,
    /// `JOB_STATE_TTL_SECS` (604800): how long a cycle's checkpoints and done marker are
    /// kept (DynamoDB TTL); longer than a cycle.
    pub state_ttl: Duration,
}

/// Configuration of the access-token function.
#[derive(Debug, Clone)]
pub struct AccessTokenConfig {
    pub common: CommonConfig,
    /// `FORCE_REFRESH_MIN_SECS` (30): the per-grant floor. A `force_refresh` sooner than
    /// this after the grant's last refresh answers 429 `refresh_backoff`; after a refresh
    /// that failed, the next attempt waits this long (503 with `retry_after_secs`).
    pub force_refresh_floor: Duration,
    /// `ACCESS_TOKEN_LEASE_SECS` (15): how long one call holds a grant while it refreshes;
    /// a call that dies mid-refresh blocks the others no longer. Longer than the budget.
    pub lease: Duration,
    /// `ACCESS_TOKEN_BUDGET_MS` (8000): the longest one call takes, waiting for another's
    /// refresh included; below the function's timeout (the template's 10 s).
    pub budget: Duration,
}

impl AccessTokenConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let config = Self {
            common: CommonConfig::from_env(env)?,
            force_refresh_floor: seconds(env, "FORCE_REFRESH_MIN_SECS", 30)?,
            lease: seconds(env, "ACCESS_TOKEN_LEASE_SECS", 15)?,
            budget: Duration::from_millis(number(env, "ACCESS_TOKEN_BUDGET_MS", 8_000)?),
        };
        if config.lease <= config.budget {
            return Err(ConfigError::Invalid {
                name: "ACCESS_TOKEN_LEASE_SECS",
                why: "must be longer than ACCESS_TOKEN_BUDGET_MS",
            });
        }
        Ok(config)
    }
}

impl JobConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let positive = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match number(env, name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    why: "must be at least 1",
                }),
                v => Ok(v),
            }
        };
        let small = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            u32::try_from(positive(name, default)?).map_err(|_| ConfigError::Invalid { name, why: "too large" })
        };
        let units = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            u32::try_from(number(env, name, default)?).map_err(|_| ConfigError::Invalid { name, why: "too large" })
        };
        if env.get("GOOGLE_RATE_PER_SEC").is_some() {
            return Err(ConfigError::Invalid {
                name: "GOOGLE_RATE_PER_SEC",
                why: "replaced by GOOGLE_QUOTA_UNITS_PER_MIN (Google counts quota in units, not calls): remove it",
            });
        }
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            segments: small("REFRESH_SEGMENTS", 4)?,
            concurrency: usize::try_from(positive("REFRESH_CONCURRENCY", 64)?).map_err(|_| ConfigError::Invalid {
                name: "REFRESH_CONCURRENCY",
                why: "too large",
            })?,
            quota_units_per_min: number(env, "GOOGLE_QUOTA_UNITS_PER_MIN", 200_000)?,
            daily_unit_budget: number(env, "GOOGLE_DAILY_UNIT_BUDGET", 200_000_000)?,
            quota_day_zone: match env.get("GOOGLE_QUOTA_DAY_TZ") {
                Some(v) if !v.trim().is_empty() => {
                    jiff::tz::TimeZone::posix(v.trim()).map_err(|_| ConfigError::Invalid {
                        name: "GOOGLE_QUOTA_DAY_TZ",
                        why: "not a POSIX time zone such as PST8PDT,M3.2.0,M11.1.0 or UTC0",
                    })?
                }
                _ => jiff::tz::TimeZone::posix(GOOGLE_QUOTA_DAY_TZ).unwrap_or(jiff::tz::TimeZone::UTC),
            },
            drive_sync: match env.get("DRIVE_SYNC") {
                None => DriveSync::default(),
                Some(v) => v.parse().map_err(|()| ConfigError::Invalid {
                    name: "DRIVE_SYNC",
                    why: "must be get, list or off",
                })?,
            },
            quota_costs: QuotaCosts {
                refresh: units("GOOGLE_UNITS_REFRESH", 1)?,
                revoke: units("GOOGLE_UNITS_REVOKE", 1)?,
                files_get: units("GOOGLE_UNITS_FILES_GET", 5)?,
                files_list: units("GOOGLE_UNITS_FILES_LIST", 100)?,
            },
            lease: seconds(env, "LEASE_SECS", 120)?,
            deadline_margin: Duration::from_millis(number(env, "DEADLINE_MARGIN_MS", 10_000)?),
            retry_max_attempts: small("RETRY_MAX_ATTEMPTS", 4)?,
            retry_base: Duration::from_millis(number(env, "RETRY_BASE_MS", 200)?),
            retry_cap: Duration::from_millis(number(env, "RETRY_CAP_MS", 5_000)?),
            defer_base: seconds(env, "DEFER_BASE_SECS", 300)?,
            defer_max: seconds(env, "DEFER_MAX_SECS", 21_600)?,
            page_size: i32::try_from(positive("SCAN_PAGE_SIZE", 100)?).map_err(|_| ConfigError::Invalid {
                name: "SCAN_PAGE_SIZE",
                why: "too large",
            })?,
            cycle: Duration::from_secs(positive("CYCLE_MINUTES", 360)?.saturating_mul(60)),
            drive_max_pages: positive("DRIVE_MAX_PAGES", 10)?,
            drive_max_page_bytes: usize::try_from(positive("DRIVE_MAX_PAGE_BYTES", 1 << 20)?).map_err(|_| {
                ConfigError::Invalid {
                    name: "DRIVE_MAX_PAGE_BYTES",
                    why: "too large",
                }
            })?,
            open_failure_limit: positive("OPEN_FAILURE_LIMIT", 10)?,
            state_ttl: Duration::from_secs(positive("JOB_STATE_TTL_SECS", 7 * 24 * 3_600)?),
        })
    }
}

impl CommonConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            grants_table: required(env, "GRANTS_TABLE")?,
            state_table: required(env, "STATE_TABLE")?,
            client_secret_id: required(env, "CLIENT_SECRET_ID")?,
            token_key_id: required(env, "TOKEN_KEY_ID")?,
            previous_token_key_ids: list(env, "PREVIOUS_TOKEN_KEY_IDS"),
            token_binding: match env.get("TOKEN_BINDING") {
                Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
                _ => required(env, "GRANTS_TABLE")?,
            },
            token_uri: optional_url(env, "GOOGLE_TOKEN_URI")?,
            certs_uri: optional_url(env, "GOOGLE_CERTS_URI")?.unwrap_or_else(|| DEFAULT_CERTS_URI.into()),
            revoke_uri: optional_url(env, "GOOGLE_REVOKE_URI")?.unwrap_or_else(|| DEFAULT_REVOKE_URI.into()),
            drive_api: optional_url(env, "GOOGLE_DRIVE_API")?
                .unwrap_or_else(|| DEFAULT_DRIVE_API.into())
                .trim_end_matches('/')
                .to_owned(),
            allowed_azp: list(env, "ALLOWED_AZP"),
            client_secret_ttl: seconds(env, "CLIENT_SECRET_TTL_SECS", 300)?,
            http_timeout: Duration::from_millis(number(env, "HTTP_TIMEOUT_MS", 5_000)?),
            data_key_max_age: seconds(env, "DATA_KEY_MAX_AGE_SECS", 900)?,
            data_key_max_uses: number(env, "DATA_KEY_MAX_USES", 100_000)?,
            tombstone_ttl: Duration::from_secs(number(env, "TOMBSTONE_DAYS", 30)?.saturating_mul(86_400)),
        })
    }
}

impl SignInConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            idempotency_window: seconds(env, "IDEMPOTENCY_WINDOW_SECS", 600)?,
            id_token_leeway: seconds(env, "ID_TOKEN_LEEWAY_SECS", 60)?,
            jwks_min_refetch: seconds(env, "JWKS_MIN_REFETCH_SECS", 30)?,
            claim_lease: seconds(env, "SIGN_IN_CLAIM_LEASE_SECS", 20)?,
            duplicate_wait: Duration::from_millis(number(env, "DUPLICATE_WAIT_MS", 10_000)?),
            budget: Duration::from_millis(number(env, "SIGN_IN_BUDGET_MS", 12_000)?),
            risc_config_uri: optional_url(env, "GOOGLE_RISC_CONFIG_URI")?
                .unwrap_or_else(|| crate::google::risc::DEFAULT_RISC_CONFIG_URI.into()),
            risc_event_retention: match number(env, "RISC_EVENT_RETENTION_DAYS", 45)? {
                days if days >= 30 => Duration::from_secs(days.saturating_mul(86_400)),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "RISC_EVENT_RETENTION_DAYS",
                        why: "must be at least 30: Google may deliver an event again for that long",
                    });
                }
            },
        })
    }
}

/// Configuration of the `events` function: it reads the grants table's stream (given by
/// its trigger) and writes to the bus, nothing else.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `EVENT_BUS_NAME` (required): the stack's EventBridge bus.
    pub event_bus_name: String,
    /// `REFRESH_FAILING_AFTER` (3, at least 1): `RefreshFailing` is published when a
    /// grant's consecutive refresh failures reach this.
    pub refresh_failing_after: u32,
}

impl EventsConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let failing_after = number(env, "REFRESH_FAILING_AFTER", 3)?;
        Ok(Self {
            event_bus_name: required(env, "EVENT_BUS_NAME")?,
            refresh_failing_after: u32::try_from(failing_after).ok().filter(|n| *n >= 1).ok_or(
                ConfigError::Invalid {
                    name: "REFRESH_FAILING_AFTER",
                    why: "must be a whole number from 1",
                },
            )?,
        })
    }
}

/// The variables the events function reads (`EventsConfig`); it reads none of the
/// common ones.
pub const EVENTS_VARIABLES: &[&str] = &["EVENT_BUS_NAME", "REFRESH_FAILING_AFTER"];

/// A deployed stack's outputs (`template.yaml`) as the variables the functions read, for
/// the operator CLI's `--stack`: output name → variable. `TOKEN_BINDING` is the template's
/// `<stack name>/grants`.
pub const STACK_OUTPUTS: [(&str, &str); 5] = [
    ("GrantsTableName", "GRANTS_TABLE"),
    ("StateTableName", "STATE_TABLE"),
    ("ClientSecretArn", "CLIENT_SECRET_ID"),
    ("TokenKeyArn", "TOKEN_KEY_ID"),
    ("EventBusName", "EVENT_BUS_NAME"),
];

/// The variables every function reads (`CommonConfig`).
pub const COMMON_VARIABLES: &[&str] = &[
    "GRANTS_TABLE",
    "STATE_TABLE",
    "CLIENT_SECRET_ID",
    "TOKEN_KEY_ID",
    "PREVIOUS_TOKEN_KEY_IDS",
    "TOKEN_BINDING",
    "GOOGLE_TOKEN_URI",
    "GOOGLE_CERTS_URI",
    "GOOGLE_REVOKE_URI",
    "GOOGLE_DRIVE_API",
    "ALLOWED_AZP",
    "CLIENT_SECRET_TTL_SECS",
    "HTTP_TIMEOUT_MS",
    "DATA_KEY_MAX_AGE_SECS",
    "DATA_KEY_MAX_USES",
    "TOMBSTONE_DAYS",
];

/// The variables only the sign-in function reads (`SignInConfig`).
pub const SIGN_IN_VARIABLES: &[&str] = &[
    "IDEMPOTENCY_WINDOW_SECS",
    "ID_TOKEN_LEEWAY_SECS",
    "JWKS_MIN_REFETCH_SECS",
    "SIGN_IN_CLAIM_LEASE_SECS",
    "DUPLICATE_WAIT_MS",
    "SIGN_IN_BUDGET_MS",
    "GOOGLE_RISC_CONFIG_URI",
    "RISC_EVENT_RETENTION_DAYS",
];

/// The variables only the access-token function reads (`AccessTokenConfig`).
pub const ACCESS_TOKEN_VARIABLES: &[&str] = &[
    "FORCE_REFRESH_MIN_SECS",
    "ACCESS_TOKEN_LEASE_SECS",
    "ACCESS_TOKEN_BUDGET_MS",
];

/// The variables only the offline job reads (`JobConfig`).
pub const JOB_VARIABLES: &[&str] = &[
    "REFRESH_SEGMENTS",
    "REFRESH_CONCURRENCY",
    "GOOGLE_QUOTA_UNITS_PER_MIN",
    "GOOGLE_DAILY_UNIT_BUDGET",
    "GOOGLE_QUOTA_DAY_TZ",
    "DRIVE_SYNC",
    "GOOGLE_UNITS_REFRESH",
    "GOOGLE_UNITS_REVOKE",
    "GOOGLE_UNITS_FILES_GET",
    "GOOGLE_UNITS_FILES_LIST",
    "LEASE_SECS",
    "DEADLINE_MARGIN_MS",
    "RETRY_MAX_ATTEMPTS",
    "RETRY_BASE_MS",
    "RETRY_CAP_MS",
    "DEFER_BASE_SECS",
    "DEFER_MAX_SECS",
    "SCAN_PAGE_SIZE",
    "CYCLE_MINUTES",
    "DRIVE_MAX_PAGES",
    "DRIVE_MAX_PAGE_BYTES",
    "OPEN_FAILURE_LIMIT",
    "JOB_STATE_TTL_SECS",
];

/// Variables a config still reads only to refuse them, naming what replaced them.
pub const RETIRED_VARIABLES: &[&str] = &["GOOGLE_RATE_PER_SEC"];

/// A trimmed comma list; absent or empty is none.
fn list(env: &impl Env, name: &'static str) -> Vec<String> {
    env.get(name)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn required(env: &impl Env, name: &'static str) -> Result<String, ConfigError> {
    match env.get(name) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn optional_url(env: &impl Env, name: &'static str) -> Result<Option<String>, ConfigError> {
    match env.get(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => {
            let parsed = url::Url::parse(v.trim()).map_err(|_| ConfigError::Invalid { name, why: "not a URL" })?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(ConfigError::Invalid {
                    name,
                    why: "must be an http(s) URL",
                });
            }
            Ok(Some(v.trim().to_owned()))
        }
    }
}

fn number(env: &impl Env, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            why: "not a whole number",
        }),
    }
}

fn seconds(env: &impl Env, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    number(env, name, default).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 4] = [
        ("GRANTS_TABLE", "grants"),
        ("STATE_TABLE", "state"),
        ("CLIENT_SECRET_ID", "oa/client"),
        ("TOKEN_KEY_ID", "alias/oa"),
    ];

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = SignInConfig::from_env(&BASE).map_err(|e| e.to_string());
        let config = config.as_ref().map(|c| (&c.common.certs_uri, c.idempotency_window));
        assert_eq!(config, Ok((&DEFAULT_CERTS_URI.to_owned(), Duration::from_secs(600))));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let env = [("GRANTS_TABLE", "grants")];
        let err = CommonConfig::from_env(&env).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("environment variable STATE_TABLE is required but not set")
        );
    }

    #[test]
    fn a_bad_number_or_url_is_named() {
        let [a, b, c, d] = BASE;
        let bad = [a, b, c, d, ("HTTP_TIMEOUT_MS", "soon")];
        let err = CommonConfig::from_env(&bad).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("HTTP_TIMEOUT_MS")));
        let bad = [a, b, c, d, ("GOOGLE_CERTS_URI", "ftp://x")];
        let err = CommonConfig::from_env(&bad).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("GOOGLE_CERTS_URI")));
    }

    /// Records every variable a config asks for.
    struct Recording(std::cell::RefCell<Vec<String>>);

    impl Env for Recording {
        fn get(&self, name: &str) -> Option<String> {
            self.0.borrow_mut().push(name.to_owned());
            BASE.get(name)
        }
    }

    fn read_by(load: impl Fn(&Recording)) -> Vec<String> {
        let env = Recording(std::cell::RefCell::new(Vec::new()));
        load(&env);
        let mut names = env.0.into_inner();
        names.sort();
        names.dedup();
        names
    }

    fn listed(lists: &[&[&str]]) -> Vec<String> {
        let mut names: Vec<String> = lists.iter().flat_map(|l| l.iter().map(|s| (*s).to_owned())).collect();
        names.sort();
        names
    }

    #[test]
    fn the_variable_lists_are_exactly_what_each_config_reads() {
        let sign_in = read_by(|env| {
            let _ = SignInConfig::from_env(env);
        });
        assert_eq!(sign_in, listed(&[COMMON_VARIABLES, SIGN_IN_VARIABLES]));
        let job = read_by(|env| {
            let _ = JobConfig::from_env(env);
        });
        assert_eq!(job, listed(&[COMMON_VARIABLES, JOB_VARIABLES, RETIRED_VARIABLES]));
        let access = read_by(|env| {
            let _ = AccessTokenConfig::from_env(env);
        });
        assert_eq!(access, listed(&[COMMON_VARIABLES, ACCESS_TOKEN_VARIABLES]));
    }

    #[test]
    fn an_access_token_lease_shorter_than_the_budget_is_refused() {
        let [a, b, c, d] = BASE;
        let env = [a, b, c, d, ("ACCESS_TOKEN_LEASE_SECS", "5")];
        let err = AccessTokenConfig::from_env(&env).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("ACCESS_TOKEN_LEASE_SECS")));
        assert!(AccessTokenConfig::from_env(&BASE).is_ok());
    }

    #[test]
    fn the_jobs_quota_settings_are_checked() {
        let [a, b, c, d] = BASE;
        let job = JobConfig::from_env(&BASE).map_err(|e| e.to_string());
        let job = job
            .as_ref()
            .map(|j| (j.quota_units_per_min, j.daily_unit_budget, j.drive_sync));
        assert_eq!(job, Ok((200_000, 200_000_000, DriveSync::Get)));
        for (name, value) in [
            ("DRIVE_SYNC", "everything"),
            ("GOOGLE_QUOTA_DAY_TZ", "Mars/Olympus"),
            ("GOOGLE_UNITS_FILES_LIST", "-1"),
            ("GOOGLE_RATE_PER_SEC", "100"),
        ] {
            let err = JobConfig::from_env(&[a, b, c, d, (name, value)])
                .err()
                .map(|e| e.to_string());
            assert!(err.as_ref().is_some_and(|e| e.contains(name)), "{name}: {err:?}");
        }
        let utc = JobConfig::from_env(&[a, b, c, d, ("GOOGLE_QUOTA_DAY_TZ", "UTC0"), ("DRIVE_SYNC", "list")]);
        assert!(utc.is_ok_and(|j| j.drive_sync == DriveSync::List));
    }

    #[test]
    fn allowed_azp_is_a_trimmed_comma_list() {
        let [a, b, c, d] = BASE;
        let env = [a, b, c, d, ("ALLOWED_AZP", " one.apps , ,two.apps")];
        let azp = CommonConfig::from_env(&env).map(|c| c.allowed_azp).unwrap_or_default();
        assert_eq!(azp, vec!["one.apps".to_owned(), "two.apps".to_owned()]);
    }
}
