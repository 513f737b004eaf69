//! Typed configuration, read once from environment variables at init.
//!
//! Each variable is declared once, in `vars/` (name, default, range, what it does), and
//! read only through [`Var::read`] (`var.rs`); the structs here are what each function
//! reads, and the README's configuration table is generated from the declarations. A bad
//! or missing variable fails init with a message naming it (never its value, which may be
//! an ARN an operator would rather not see echoed, but is never a secret: secrets live in
//! Secrets Manager).

mod var;
pub mod vars;

use std::time::Duration;

pub use var::{Absent, ConfigError, Declared, Env, ProcessEnv, Var};
use vars::*;

use crate::job::{DriveSync, QuotaCosts};

/// Configuration shared by every function but `events`. Each field names the variable it
/// is read from; what the variable does, its default and range are its declaration's.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `GRANTS_TABLE`.
    pub grants_table: String,
    /// `STATE_TABLE`.
    pub state_table: String,
    /// `CLIENT_SECRET_ID`.
    pub client_secret_id: String,
    /// `TOKEN_KEY_ID`.
    pub token_key_id: String,
    /// `PREVIOUS_TOKEN_KEY_IDS`.
    pub previous_token_key_ids: Vec<String>,
    /// `TOKEN_BINDING`, else the value of `GRANTS_TABLE`.
    pub token_binding: String,
    /// `GOOGLE_TOKEN_URI`.
    pub token_uri: Option<String>,
    /// `GOOGLE_CERTS_URI`.
    pub certs_uri: String,
    /// `GOOGLE_REVOKE_URI`.
    pub revoke_uri: String,
    /// `GOOGLE_DRIVE_API`.
    pub drive_api: String,
    /// `ALLOWED_AZP`.
    pub allowed_azp: Vec<String>,
    /// `CLIENT_SECRET_TTL_SECS`.
    pub client_secret_ttl: Duration,
    /// `HTTP_TIMEOUT_MS`.
    pub http_timeout: Duration,
    /// `DATA_KEY_MAX_AGE_SECS`.
    pub data_key_max_age: Duration,
    /// `DATA_KEY_MAX_USES`.
    pub data_key_max_uses: u64,
    /// `TOMBSTONE_DAYS`.
    pub tombstone_ttl: Duration,
    /// `GOOGLE_CONSENT_TESTING`: the consent screen is in Testing (grants end seven days
    /// after consent).
    pub consent_testing: bool,
    /// `AWS_ATTEMPT_TIMEOUT_MS`, `AWS_CALL_TIMEOUT_MS`.
    pub aws_timeouts: AwsTimeouts,
}

/// The timeouts every AWS client of a function gets (`AWS_ATTEMPT_TIMEOUT_MS`,
/// `AWS_CALL_TIMEOUT_MS`): no AWS call outlives its function's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One attempt.
    pub attempt: Duration,
    /// The whole call, the SDK's retries included.
    pub call: Duration,
}

impl AwsTimeouts {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let timeouts = Self {
            attempt: AWS_ATTEMPT_TIMEOUT_MS.read(env)?,
            call: AWS_CALL_TIMEOUT_MS.read(env)?,
        };
        if timeouts.call < timeouts.attempt {
            return Err(ConfigError::Invalid {
                name: AWS_CALL_TIMEOUT_MS.name,
                why: "must be at least AWS_ATTEMPT_TIMEOUT_MS".into(),
            });
        }
        Ok(timeouts)
    }

    /// Within `budget`: a function whose budget is shorter than the call timeout gives an
    /// AWS call no more than its budget (and an attempt no more than that).
    fn fit(&mut self, budget: Duration) {
        self.call = self.call.min(budget);
        self.attempt = self.attempt.min(self.call);
    }
}

/// Configuration of the sign-in function.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    pub common: CommonConfig,
    /// `IDEMPOTENCY_WINDOW_SECS`.
    pub idempotency_window: Duration,
    /// `ID_TOKEN_LEEWAY_SECS`.
    pub id_token_leeway: Duration,
    /// `JWKS_MIN_REFETCH_SECS`.
    pub jwks_min_refetch: Duration,
    /// `SIGN_IN_CLAIM_LEASE_SECS`.
    pub claim_lease: Duration,
    /// `DUPLICATE_WAIT_MS`.
    pub duplicate_wait: Duration,
    /// `SIGN_IN_BUDGET_MS`.
    pub budget: Duration,
    /// `GOOGLE_RISC_CONFIG_URI`.
    pub risc_config_uri: String,
    /// `RISC_EVENT_RETENTION_DAYS`.
    pub risc_event_retention: Duration,
    /// `SIGN_IN_PARKING_QUEUE_URL`; `None`: nothing is parked.
    pub parking_queue_url: Option<String>,
    /// `ALLOWED_REDIRECT_URIS`, each a valid redirect URI.
    pub allowed_redirect_uris: Vec<String>,
    /// `GOOGLE_TOKENINFO_URI`.
    pub tokeninfo_uri: String,
    /// `REQUIRED_SCOPES`.
    pub required_scopes: Vec<String>,
}

/// Configuration of the offline job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub common: CommonConfig,
    /// `REFRESH_SEGMENTS`.
    pub segments: u32,
    /// `REFRESH_CONCURRENCY`.
    pub concurrency: usize,
    /// `GOOGLE_QUOTA_UNITS_PER_MIN`.
    pub quota_units_per_min: u64,
    /// `GOOGLE_DAILY_UNIT_BUDGET`.
    pub daily_unit_budget: u64,
    /// `GOOGLE_QUOTA_DAY_TZ`.
    pub quota_day_zone: jiff::tz::TimeZone,
    /// `DRIVE_SYNC`.
    pub drive_sync: DriveSync,
    /// `GOOGLE_UNITS_*`.
    pub quota_costs: QuotaCosts,
    /// `LEASE_SECS`.
    pub lease: Duration,
    /// `DEADLINE_MARGIN_MS`.
    pub deadline_margin: Duration,
    /// `RETRY_MAX_ATTEMPTS`.
    pub retry_max_attempts: u32,
    /// `RETRY_BASE_MS`.
    pub retry_base: Duration,
    /// `RETRY_CAP_MS`.
    pub retry_cap: Duration,
    /// `DEFER_BASE_SECS`.
    pub defer_base: Duration,
    /// `DEFER_MAX_SECS`.
    pub defer_max: Duration,
    /// `EXPIRY_NOTICE_SECS`.
    pub expiry_notice: Duration,
    /// `DRIVE_PROBE_EVERY`.
    pub drive_probe_every: u32,
    /// `SCAN_PAGE_SIZE`.
    pub page_size: i32,
    /// `CYCLE_MINUTES`.
    pub cycle: Duration,
    /// `DRIVE_MAX_PAGES`.
    pub drive_max_pages: u64,
    /// `DRIVE_MAX_PAGE_BYTES`.
    pub drive_max_page_bytes: usize,
    /// `OPEN_FAILURE_LIMIT`.
    pub open_failure_limit: u64,
    /// `JOB_STATE_TTL_SECS`.
    pub state_ttl: Duration,
}

/// Configuration of the access-token function.
#[derive(Debug, Clone)]
pub struct AccessTokenConfig {
    pub common: CommonConfig,
    /// `FORCE_REFRESH_MIN_SECS`.
    pub force_refresh_floor: Duration,
    /// `ACCESS_TOKEN_LEASE_SECS`.
    pub lease: Duration,
    /// `ACCESS_TOKEN_BUDGET_MS`.
    pub budget: Duration,
}

impl CommonConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let grants_table = GRANTS_TABLE.read(env)?;
        Ok(Self {
            state_table: STATE_TABLE.read(env)?,
            client_secret_id: CLIENT_SECRET_ID.read(env)?,
            token_key_id: TOKEN_KEY_ID.read(env)?,
            previous_token_key_ids: PREVIOUS_TOKEN_KEY_IDS.read(env)?,
            token_binding: TOKEN_BINDING
                .read_optional(env)?
                .unwrap_or_else(|| grants_table.clone()),
            grants_table,
            token_uri: GOOGLE_TOKEN_URI.read_optional(env)?,
            certs_uri: GOOGLE_CERTS_URI.read(env)?,
            revoke_uri: GOOGLE_REVOKE_URI.read(env)?,
            drive_api: GOOGLE_DRIVE_API.read(env)?.trim_end_matches('/').to_owned(),
            allowed_azp: ALLOWED_AZP.read_optional(env)?.unwrap_or_default(),
            client_secret_ttl: CLIENT_SECRET_TTL_SECS.read(env)?,
            http_timeout: HTTP_TIMEOUT_MS.read(env)?,
            data_key_max_age: DATA_KEY_MAX_AGE_SECS.read(env)?,
            data_key_max_uses: DATA_KEY_MAX_USES.read(env)?,
            tombstone_ttl: TOMBSTONE_DAYS.read(env)?,
            consent_testing: GOOGLE_CONSENT_TESTING.read(env)?,
            aws_timeouts: AwsTimeouts::from_env(env)?,
        })
    }
}

impl SignInConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let mut config = Self {
            common: CommonConfig::from_env(env)?,
            idempotency_window: IDEMPOTENCY_WINDOW_SECS.read(env)?,
            id_token_leeway: ID_TOKEN_LEEWAY_SECS.read(env)?,
            jwks_min_refetch: JWKS_MIN_REFETCH_SECS.read(env)?,
            claim_lease: SIGN_IN_CLAIM_LEASE_SECS.read(env)?,
            duplicate_wait: DUPLICATE_WAIT_MS.read(env)?,
            budget: SIGN_IN_BUDGET_MS.read(env)?,
            risc_config_uri: GOOGLE_RISC_CONFIG_URI.read(env)?,
            risc_event_retention: RISC_EVENT_RETENTION_DAYS.read(env)?,
            parking_queue_url: SIGN_IN_PARKING_QUEUE_URL.read_optional(env)?,
            allowed_redirect_uris: ALLOWED_REDIRECT_URIS.read_optional(env)?.unwrap_or_default(),
            tokeninfo_uri: GOOGLE_TOKENINFO_URI.read(env)?,
            required_scopes: REQUIRED_SCOPES.read(env)?,
        };
        if let Some(bad) = config
            .allowed_redirect_uris
            .iter()
            .find_map(|uri| crate::domain::RedirectUri::parse(uri).err())
        {
            return Err(ConfigError::Invalid {
                name: ALLOWED_REDIRECT_URIS.name,
                why: format!("each entry: {bad}"),
            });
        }
        config.common.aws_timeouts.fit(config.budget);
        Ok(config)
    }
}

impl AccessTokenConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let mut config = Self {
            common: CommonConfig::from_env(env)?,
            force_refresh_floor: FORCE_REFRESH_MIN_SECS.read(env)?,
            lease: ACCESS_TOKEN_LEASE_SECS.read(env)?,
            budget: ACCESS_TOKEN_BUDGET_MS.read(env)?,
        };
        if config.lease <= config.budget {
            return Err(ConfigError::Invalid {
                name: ACCESS_TOKEN_LEASE_SECS.name,
                why: "must be longer than ACCESS_TOKEN_BUDGET_MS".into(),
            });
        }
        config.common.aws_timeouts.fit(config.budget);
        Ok(config)
    }
}

impl JobConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        GOOGLE_RATE_PER_SEC.read_optional(env)?;
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            segments: REFRESH_SEGMENTS.read(env)?,
            concurrency: REFRESH_CONCURRENCY.read(env)?,
            quota_units_per_min: GOOGLE_QUOTA_UNITS_PER_MIN.read(env)?,
            daily_unit_budget: GOOGLE_DAILY_UNIT_BUDGET.read(env)?,
            quota_day_zone: GOOGLE_QUOTA_DAY_TZ.read(env)?,
            drive_sync: DRIVE_SYNC.read(env)?,
            quota_costs: QuotaCosts {
                refresh: GOOGLE_UNITS_REFRESH.read(env)?,
                revoke: GOOGLE_UNITS_REVOKE.read(env)?,
                files_get: GOOGLE_UNITS_FILES_GET.read(env)?,
                files_list: GOOGLE_UNITS_FILES_LIST.read(env)?,
            },
            lease: LEASE_SECS.read(env)?,
            deadline_margin: DEADLINE_MARGIN_MS.read(env)?,
            retry_max_attempts: RETRY_MAX_ATTEMPTS.read(env)?,
            retry_base: RETRY_BASE_MS.read(env)?,
            retry_cap: RETRY_CAP_MS.read(env)?,
            defer_base: DEFER_BASE_SECS.read(env)?,
            defer_max: DEFER_MAX_SECS.read(env)?,
            expiry_notice: EXPIRY_NOTICE_SECS.read(env)?,
            drive_probe_every: DRIVE_PROBE_EVERY.read(env)?,
            page_size: SCAN_PAGE_SIZE.read(env)?,
            cycle: CYCLE_MINUTES.read(env)?,
            drive_max_pages: DRIVE_MAX_PAGES.read(env)?,
            drive_max_page_bytes: DRIVE_MAX_PAGE_BYTES.read(env)?,
            open_failure_limit: OPEN_FAILURE_LIMIT.read(env)?,
            state_ttl: JOB_STATE_TTL_SECS.read(env)?,
        })
    }
}

/// Configuration of the `events` function: it reads the grants table's stream (given by
/// its trigger) and writes to the bus, nothing else.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `EVENT_BUS_NAME`.
    pub event_bus_name: String,
    /// `EVENTS_FAILURE_QUEUE_URL`.
    pub failure_queue_url: String,
    /// `EVENTS_GIVE_UP_SECS`.
    pub give_up_after: Duration,
    /// `REQUIRED_SCOPES`: a grant's `scopes` health is `missing` without one.
    pub required_scopes: Vec<String>,
    /// `AWS_ATTEMPT_TIMEOUT_MS`, `AWS_CALL_TIMEOUT_MS`.
    pub aws_timeouts: AwsTimeouts,
}

impl EventsConfig {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        REFRESH_FAILING_AFTER.read_optional(env)?;
        Ok(Self {
            event_bus_name: EVENT_BUS_NAME.read(env)?,
            failure_queue_url: EVENTS_FAILURE_QUEUE_URL.read(env)?,
            give_up_after: EVENTS_GIVE_UP_SECS.read(env)?,
            required_scopes: REQUIRED_SCOPES.read(env)?,
            aws_timeouts: AwsTimeouts::from_env(env)?,
        })
    }
}

/// A deployed stack's outputs (`template.yaml`) as the variables the functions read, for
/// the operator CLI's `--stack`: output name → variable. `TOKEN_BINDING` is the template's
/// `<stack name>/grants`.
pub const STACK_OUTPUTS: [(&str, &str); 6] = [
    ("GrantsTableName", GRANTS_TABLE.name),
    ("StateTableName", STATE_TABLE.name),
    ("ClientSecretArn", CLIENT_SECRET_ID.name),
    ("TokenKeyArn", TOKEN_KEY_ID.name),
    ("EventBusName", EVENT_BUS_NAME.name),
    ("EventsFailuresQueueUrl", EVENTS_FAILURE_QUEUE_URL.name),
];

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
        assert_eq!(
            config,
            Ok((&crate::google::DEFAULT_CERTS_URI.to_owned(), Duration::from_secs(600)))
        );
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

    const EVENTS_BASE: [(&str, &str); 2] = [("EVENT_BUS_NAME", "bus"), ("EVENTS_FAILURE_QUEUE_URL", "http://q")];

    /// Records every variable a config asks for.
    struct Recording(std::cell::RefCell<Vec<String>>);

    impl Env for Recording {
        fn get(&self, name: &str) -> Option<String> {
            self.0.borrow_mut().push(name.to_owned());
            BASE.get(name).or_else(|| EVENTS_BASE.get(name))
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

    fn listed(groups: &[&vars::Group]) -> Vec<String> {
        let mut names: Vec<String> = groups.iter().flat_map(|g| g.names().map(str::to_owned)).collect();
        names.sort();
        names
    }

    #[test]
    fn the_groups_are_exactly_what_each_config_reads() {
        let sign_in = read_by(|env| {
            let _ = SignInConfig::from_env(env);
        });
        assert_eq!(sign_in, listed(&[&COMMON, &SIGN_IN, &HEALTH, &AWS_CLIENTS]));
        let job = read_by(|env| {
            let _ = JobConfig::from_env(env);
        });
        assert_eq!(job, listed(&[&COMMON, &JOB, &AWS_CLIENTS]));
        let access = read_by(|env| {
            let _ = AccessTokenConfig::from_env(env);
        });
        assert_eq!(access, listed(&[&COMMON, &ACCESS_TOKEN, &AWS_CLIENTS]));
        let events = read_by(|env| {
            let _ = EventsConfig::from_env(env);
        });
        assert_eq!(events, listed(&[&EVENTS, &HEALTH, &AWS_CLIENTS]));
    }

    #[test]
    fn every_default_is_in_its_own_range_and_every_name_is_declared_once() {
        let mut names = Vec::new();
        for group in vars::GROUPS {
            for var in group.vars {
                assert!(var.check_default().is_ok(), "{}: {:?}", var.name(), var.check_default());
                names.push(var.name());
            }
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a variable is declared in two groups");
    }

    #[test]
    fn every_aws_call_fits_in_the_budget_of_the_function_that_makes_it() {
        let [a, b, c, d] = BASE;
        let defaults = AwsTimeouts::from_env(&BASE).expect("defaults");
        assert!(defaults.attempt <= defaults.call);
        let sign_in = SignInConfig::from_env(&[a, b, c, d, ("AWS_CALL_TIMEOUT_MS", "60000")]).expect("sign-in");
        assert_eq!(sign_in.common.aws_timeouts.call, sign_in.budget, "capped at the budget");
        let access = AccessTokenConfig::from_env(&[a, b, c, d, ("ACCESS_TOKEN_BUDGET_MS", "1000")]).expect("access");
        assert_eq!(
            (access.common.aws_timeouts.attempt, access.common.aws_timeouts.call),
            (Duration::from_secs(1), Duration::from_secs(1)),
            "an attempt no longer than the call"
        );
        let attempt_longer = [
            a,
            b,
            c,
            d,
            ("AWS_ATTEMPT_TIMEOUT_MS", "3000"),
            ("AWS_CALL_TIMEOUT_MS", "2000"),
        ];
        let common = CommonConfig::from_env(&attempt_longer);
        assert!(common.is_err_and(|e| e.to_string().contains("at least AWS_ATTEMPT_TIMEOUT_MS")));
        let events = EventsConfig::from_env(&[("EVENT_BUS_NAME", "bus"), ("AWS_CALL_TIMEOUT_MS", "1")]);
        assert!(events.is_err(), "the events function reads them too");
    }

    #[test]
    fn required_scopes_are_a_space_or_comma_list_and_none_by_default() {
        let [a, b, c, d] = BASE;
        let none = SignInConfig::from_env(&[a, b, c, d]).map(|c| c.required_scopes);
        assert_eq!(none.ok(), Some(Vec::new()));
        for raw in [
            "https://www.googleapis.com/auth/drive.appdata openid",
            "https://www.googleapis.com/auth/drive.appdata, openid",
            " https://www.googleapis.com/auth/drive.appdata,openid ",
        ] {
            let read = SignInConfig::from_env(&[a, b, c, d, ("REQUIRED_SCOPES", raw)]).map(|c| c.required_scopes);
            assert_eq!(
                read.ok(),
                Some(vec![
                    "https://www.googleapis.com/auth/drive.appdata".into(),
                    "openid".into()
                ]),
                "{raw}"
            );
        }
        let bad = SignInConfig::from_env(&[a, b, c, d, ("REQUIRED_SCOPES", "openid caf\u{e9}")]);
        assert!(bad.is_err_and(|e| !e.to_string().contains("caf")));
    }

    #[test]
    fn allowed_redirect_uris_are_each_a_redirect_uri() {
        let [a, b, c, d] = BASE;
        let good = (
            "ALLOWED_REDIRECT_URIS",
            "https://app.example.com/cb, http://localhost:5173/cb",
        );
        let config = SignInConfig::from_env(&[a, b, c, d, good]).map(|c| c.allowed_redirect_uris);
        assert_eq!(
            config.ok(),
            Some(vec![
                "https://app.example.com/cb".into(),
                "http://localhost:5173/cb".into()
            ])
        );
        let bad = (
            "ALLOWED_REDIRECT_URIS",
            "https://app.example.com/cb,http://app.example.com/cb",
        );
        let error = SignInConfig::from_env(&[a, b, c, d, bad]).err().map(|e| e.to_string());
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.contains("ALLOWED_REDIRECT_URIS") && e.contains("https")),
            "{error:?}"
        );
    }

    #[test]
    fn a_value_outside_its_range_is_refused_naming_the_range() {
        let [a, b, c, d] = BASE;
        for (name, value, why) in [
            ("REFRESH_SEGMENTS", "0", "from 1 to 1000000"),
            ("RISC_EVENT_RETENTION_DAYS", "29", "from 30"),
            ("DEFER_BASE_SECS", "x", "not a whole number"),
            ("SCAN_PAGE_SIZE", "x", "not a whole number"),
        ] {
            let [e, f] = EVENTS_BASE;
            let env = [a, b, c, d, e, f, (name, value)];
            let errors = [
                JobConfig::from_env(&env).err(),
                SignInConfig::from_env(&env).err(),
                EventsConfig::from_env(&env).err(),
            ];
            let error = errors.into_iter().flatten().map(|e| e.to_string()).next();
            assert!(
                error
                    .as_ref()
                    .is_some_and(|e| e.contains(name) && e.contains(why) && !e.contains(&format!(" {value} "))),
                "{name}={value}: {error:?}"
            );
        }
    }

    #[test]
    fn a_blank_variable_reads_as_unset() {
        let [a, b, c, d] = BASE;
        let env = [a, b, c, d, ("HTTP_TIMEOUT_MS", "  "), ("TOKEN_BINDING", "")];
        let common = CommonConfig::from_env(&env).map(|c| (c.http_timeout, c.token_binding));
        assert_eq!(common.ok(), Some((Duration::from_millis(5_000), "grants".to_owned())));
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
        let [e, f] = EVENTS_BASE;
        let retired = EventsConfig::from_env(&[e, f, ("REFRESH_FAILING_AFTER", "3")]).err();
        assert!(
            retired.is_some_and(|e| e.to_string().contains("GrantHealthChanged")),
            "a retired variable fails init, saying what replaced it"
        );
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
