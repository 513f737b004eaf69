//! The application core: what one process shares, built once by one builder, and the use
//! cases built over it.
//!
//! [`App`] holds one HTTP client (one connection pool for every Google call), the grants
//! store, the key provider with one data-key cache per purpose, and one client-secret
//! cache. Each use case is made from it ([`App::http_api`], [`App::access_tokens`],
//! [`App::offline_job`], ...) and shares those parts, so the `auth-code` function's three
//! routes use one pool, one secret cache, one ID-token key cache and one data-key cache,
//! all warmed at init ([`HttpApi::warm_up`]).
//!
//! Every function's main, the CLI, the test harness and the benchmarks build through
//! [`AppBuilder`]; a test swaps only what it must (a key provider that counts or refuses
//! calls, a DynamoDB client that logs its requests, a clock it moves), so what tests run
//! cannot silently differ from what `main` runs. Building an App makes no network call.

use crate::access_token::{AccessSettings, AccessTokens, HeldOff};
use crate::clock::SystemClock;
use crate::config::{AccessTokenConfig, AwsTimeouts, CommonConfig, EventsConfig, JobConfig, SignInConfig};
use crate::crypto::{KeyCacheLimits, KeyProvider, KmsKeyProvider, Sealable, TokenCipher};
use crate::deletion::{DeleteGrant, DeletionSettings};
use crate::domain::{AccessToken, RefreshToken};
use crate::events::{BatchSettings, EventBridgePublisher, FailureQueue};
use crate::google::risc::SetVerifier;
use crate::google::{
    CachedClientSecret, ClientSecrets, GoogleIdTokenVerifier, HttpDrive, HttpJwksFetcher, HttpTokenEndpoint,
    SecretsManagerSource,
};
use crate::job::{JobSettings, OfflineJob, Pacer};
use crate::ports::{AnyClock, AnyJobStore, AnyKeys, Aws, IdTokens, Ports, Secrets};
use crate::risc::{RiscReceiver, RiscSettings};
use crate::sign_in::parked::ParkingQueue;
use crate::sign_in::{SignIn, SignInSettings};
use crate::store::DynamoStore;
use crate::upstream::RetryPolicy;

/// What one process shares. Cheap to clone: every part is a handle on shared state.
#[derive(Debug, Clone)]
pub struct App<K = KmsKeyProvider, C = SystemClock> {
    pub common: CommonConfig,
    /// One hardened HTTP client (timeouts, no redirects): one pool for every Google call.
    pub http: reqwest::Client,
    pub store: DynamoStore,
    pub keys: K,
    /// Seals and opens refresh tokens; one data-key cache, whoever uses it.
    pub refresh_cipher: TokenCipher<K, RefreshToken>,
    /// Seals and opens cached access tokens, under their own purpose.
    pub access_cipher: TokenCipher<K, AccessToken>,
    pub secrets: Secrets<C>,
    /// What the process's caches (the client secret, Google's keys) age by.
    pub cache_clock: C,
    /// SQS: where a sign-in parks what it cannot store (`SIGN_IN_PARKING_QUEUE_URL`).
    pub sqs: aws_sdk_sqs::Client,
}

/// Builds an [`App`]: `AppBuilder::new(..).build()` is production.
#[derive(Debug)]
pub struct AppBuilder<K, C> {
    common: CommonConfig,
    aws: aws_config::SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    keys: K,
    cache_clock: C,
}

impl AppBuilder<KmsKeyProvider, SystemClock> {
    /// Production: the loaded AWS config honours `AWS_ENDPOINT_URL`, so the same code runs
    /// against the local stack.
    pub fn new(common: &CommonConfig, aws: &aws_config::SdkConfig) -> Self {
        let aws = &with_timeouts(aws, common.aws_timeouts);
        Self {
            common: common.clone(),
            aws: aws.clone(),
            dynamodb: aws_sdk_dynamodb::Client::new(aws),
            keys: kms_keys(common, aws_sdk_kms::Client::new(aws)),
            cache_clock: SystemClock,
        }
    }
}

impl<K: AnyKeys, C: AnyClock> AppBuilder<K, C> {
    /// Another key provider (tests count or refuse KMS calls).
    pub fn keys<K2: AnyKeys>(self, keys: K2) -> AppBuilder<K2, C> {
        AppBuilder {
            common: self.common,
            aws: self.aws,
            dynamodb: self.dynamodb,
            keys,
            cache_clock: self.cache_clock,
        }
    }

    /// Another clock for the process's caches, the client secret's and Google's keys'
    /// (tests move it past a TTL or a max-age).
    pub fn cache_clock<C2: AnyClock>(self, clock: C2) -> AppBuilder<K, C2> {
        AppBuilder {
            common: self.common,
            aws: self.aws,
            dynamodb: self.dynamodb,
            keys: self.keys,
            cache_clock: clock,
        }
    }

    /// Another DynamoDB client (tests and benchmarks count or log its requests).
    pub fn dynamodb(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.dynamodb = client;
        self
    }

    pub fn build(self) -> Result<App<K, C>, reqwest::Error> {
        let common = self.common;
        Ok(App {
            http: crate::http_client::build(common.http_timeout)?,
            sqs: aws_sdk_sqs::Client::new(&self.aws),
            store: store(&common, self.dynamodb),
            refresh_cipher: cipher(&common, self.keys.clone()),
            access_cipher: cipher(&common, self.keys.clone()),
            keys: self.keys,
            secrets: CachedClientSecret::new(
                SecretsManagerSource::new(
                    aws_sdk_secretsmanager::Client::new(&self.aws),
                    common.client_secret_id.clone(),
                ),
                self.cache_clock.clone(),
                common.client_secret_ttl,
            ),
            cache_clock: self.cache_clock,
            common,
        })
    }
}

/// The HTTP API's three routes, built over one App: one ID-token key cache, one secret
/// cache, one data-key cache, one connection pool.
#[derive(Debug)]
pub struct HttpApi<P: Ports = Aws> {
    pub sign_in: SignIn<P>,
    pub deletion: DeleteGrant<P>,
    pub risc: RiscReceiver<P>,
}

impl<P: Ports> HttpApi<P> {
    /// Loads the client secret and Google's ID-token keys during init, so the first
    /// request of any route waits for neither.
    pub async fn warm_up(&self) {
        self.sign_in.warm_up().await;
    }
}

impl<K: AnyKeys, C: AnyClock> App<K, C> {
    pub fn token_endpoint(&self) -> HttpTokenEndpoint {
        HttpTokenEndpoint::new(self.http.clone())
    }

    /// Google ID-token verification as sign-in and deletion both do it (DESIGN §6).
    fn id_tokens(&self, config: &SignInConfig) -> IdTokens<C> {
        GoogleIdTokenVerifier::new(
            HttpJwksFetcher::new(self.http.clone(), self.common.certs_uri.clone()),
            self.cache_clock.clone(),
            self.common.allowed_azp.clone(),
            config.id_token_leeway,
            config.jwks_min_refetch,
        )
    }

    /// The sign-in use case (`POST /authcode`).
    pub fn sign_in(&self, config: &SignInConfig) -> SignIn<Aws<K, C>> {
        self.sign_in_with(config, self.id_tokens(config))
    }

    fn sign_in_with(&self, config: &SignInConfig, verifier: IdTokens<C>) -> SignIn<Aws<K, C>> {
        let common = &self.common;
        SignIn {
            token_endpoint: self.token_endpoint(),
            verifier,
            store: self.store.clone(),
            cipher: self.refresh_cipher.clone(),
            secrets: self.secrets.clone(),
            clock: SystemClock,
            settings: SignInSettings {
                token_uri_override: common.token_uri.clone(),
                token_binding: common.token_binding.clone(),
                idempotency_window: config.idempotency_window,
                claim_lease: config.claim_lease,
                duplicate_wait: config.duplicate_wait,
                budget: config.budget,
                call_timeout: common.http_timeout,
                aws_call_timeout: config.common.aws_timeouts.call,
                aws_attempt_timeout: config.common.aws_timeouts.attempt,
                allowed_redirect_uris: config.allowed_redirect_uris.clone(),
                tokeninfo_uri: config.tokeninfo_uri.clone(),
                required_scopes: config.required_scopes.clone(),
            },
            parking: config
                .parking_queue_url
                .clone()
                .map(|url| ParkingQueue::new(self.sqs.clone(), url)),
        }
    }

    /// The whole HTTP API: sign-in, deletion (`DELETE /grants/me`) and Google's security
    /// events (`POST /risc`), sharing this App's parts and one ID-token verifier.
    pub fn http_api(&self, config: &SignInConfig) -> HttpApi<Aws<K, C>> {
        let common = &self.common;
        let verifier = self.id_tokens(config);
        HttpApi {
            deletion: self.deletion_with(verifier.clone()),
            risc: RiscReceiver {
                verifier: SetVerifier::new(
                    self.http.clone(),
                    config.risc_config_uri.clone(),
                    SystemClock,
                    config.id_token_leeway,
                    config.jwks_min_refetch,
                ),
                store: self.store.clone(),
                secrets: self.secrets.clone(),
                clock: SystemClock,
                settings: RiscSettings {
                    other_client_ids: common.allowed_azp.clone(),
                    event_retention: config.risc_event_retention,
                },
            },
            sign_in: self.sign_in_with(config, verifier),
        }
    }

    /// Deletion at the user's request (`DELETE /grants/me`; the operator's `grants
    /// delete`).
    pub fn deletion(&self, config: &SignInConfig) -> DeleteGrant<Aws<K, C>> {
        self.deletion_with(self.id_tokens(config))
    }

    fn deletion_with(&self, verifier: IdTokens<C>) -> DeleteGrant<Aws<K, C>> {
        let common = &self.common;
        DeleteGrant {
            token_endpoint: self.token_endpoint(),
            verifier,
            store: self.store.clone(),
            cipher: self.refresh_cipher.clone(),
            secrets: self.secrets.clone(),
            clock: SystemClock,
            settings: DeletionSettings {
                token_binding: common.token_binding.clone(),
                revoke_uri: common.revoke_uri.clone(),
                tombstone_ttl: common.tombstone_ttl,
            },
        }
    }

    /// The access-token use case.
    pub fn access_tokens(&self, config: &AccessTokenConfig) -> AccessTokens<Aws<K, C>> {
        let common = &self.common;
        AccessTokens {
            token_endpoint: self.token_endpoint(),
            store: self.store.clone(),
            refresh_cipher: self.refresh_cipher.clone(),
            access_cipher: self.access_cipher.clone(),
            secrets: self.secrets.clone(),
            clock: SystemClock,
            settings: AccessSettings {
                token_binding: common.token_binding.clone(),
                token_uri_override: common.token_uri.clone(),
                force_refresh_floor: config.force_refresh_floor,
                lease: config.lease,
                budget: config.budget,
                consent_testing: common.consent_testing,
            },
            held_off: HeldOff::default(),
        }
    }

    /// The offline job on this App's store and the system clock.
    pub fn offline_job(&self, config: &JobConfig) -> OfflineJob<Aws<K, C>> {
        self.offline_job_on(config, self.store.clone(), SystemClock)
    }

    /// The offline job on another store (benchmarks measure the job itself on an
    /// in-memory one) and another clock (tests turn the quota day over).
    pub fn offline_job_on<S: AnyJobStore, Ck: AnyClock>(
        &self,
        config: &JobConfig,
        store: S,
        clock: Ck,
    ) -> OfflineJob<Aws<K, C, S, Ck>> {
        let common = &self.common;
        OfflineJob {
            token_endpoint: self.token_endpoint(),
            drive: HttpDrive::new(
                self.http.clone(),
                common.drive_api.clone(),
                config.drive_max_pages,
                config.drive_max_page_bytes,
            ),
            store,
            cipher: self.refresh_cipher.clone(),
            access_cipher: self.access_cipher.clone(),
            secrets: self.secrets.clone(),
            clock,
            settings: JobSettings {
                token_binding: common.token_binding.clone(),
                token_uri_override: common.token_uri.clone(),
                segments: config.segments,
                concurrency: config.concurrency,
                lease: config.lease,
                aws_call_timeout: config.common.aws_timeouts.call,
                page_size: config.page_size,
                retry: RetryPolicy {
                    max_attempts: config.retry_max_attempts,
                    base: config.retry_base,
                    cap: config.retry_cap,
                },
                defer_base: config.defer_base,
                defer_max: config.defer_max,
                expiry_notice: config.expiry_notice,
                consent_testing: config.common.consent_testing,
                // Drive is due once its last call is older than (N - 1/2) cycles: a grant
                // met a little early or late in its cycle keeps the cadence. N = 1 is
                // every cycle, however close together (an operator's extra run too).
                drive_probe_after: match config.drive_probe_every {
                    0 | 1 => std::time::Duration::ZERO,
                    n => config.cycle.mul_f64(f64::from(n) - 0.5),
                },
                state_ttl: config.state_ttl,
                open_failure_limit: config.open_failure_limit,
                revoke_uri: common.revoke_uri.clone(),
                tombstone_ttl: common.tombstone_ttl,
                drive_sync: config.drive_sync,
                quota_costs: config.quota_costs,
                daily_unit_budget: config.daily_unit_budget,
                quota_day_zone: config.quota_day_zone.clone(),
                // A thousandth of the day's budget, or ten seconds of the per-minute one
                // if more (at least 1,000 units): one write to the state table a block.
                budget_block: (config.quota_units_per_min / 6)
                    .max(config.daily_unit_budget / 1_000)
                    .max(1_000),
            },
            pacer: Pacer::units_per_minute(config.quota_units_per_min, config.quota_costs.largest()),
        }
    }

    /// Loads the client secret during init, so the first request does not wait for it.
    pub async fn warm_up(&self) {
        if let Err(e) = self.secrets.current().await {
            tracing::warn!(error = %e, "client secret not loaded during init");
        }
    }
}

impl App {
    /// Production: the App for `common` on the AWS config of the environment.
    pub fn production(common: &CommonConfig, aws: &aws_config::SdkConfig) -> Result<Self, reqwest::Error> {
        AppBuilder::new(common, aws).build()
    }
}

/// Loads the AWS config the SDK way: region, credentials and `AWS_ENDPOINT_URL` from the
/// environment. Every client built for a function gets its timeouts ([`with_timeouts`]).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// `aws` with the function's AWS timeouts: an attempt that outlives `attempt` is given up
/// (and retried by the SDK while `call` allows), so no AWS call outlives its function's
/// budget. The SDK's other defaults (the connect timeout) stay.
pub fn with_timeouts(aws: &aws_config::SdkConfig, timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    let config = aws
        .timeout_config()
        .map_or_else(aws_config::timeout::TimeoutConfig::builder, |t| t.to_builder())
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.call)
        .build();
    aws.to_builder().timeout_config(config).build()
}

/// The grants and state tables.
pub fn store(common: &CommonConfig, client: aws_sdk_dynamodb::Client) -> DynamoStore {
    DynamoStore::new(client, common.grants_table.clone(), common.state_table.clone())
}

/// KMS under the configured key, with the encryption context of `TOKEN_BINDING`.
pub fn kms_keys(common: &CommonConfig, client: aws_sdk_kms::Client) -> KmsKeyProvider {
    KmsKeyProvider::new(client, common.token_key_id.clone(), &common.token_binding)
        .with_previous_keys(common.previous_token_key_ids.clone())
}

/// Envelope encryption of one kind of token, with the configured cache bounds.
fn cipher<K: KeyProvider, T: Sealable>(common: &CommonConfig, keys: K) -> TokenCipher<K, T> {
    TokenCipher::new(
        keys,
        KeyCacheLimits {
            max_age: common.data_key_max_age,
            max_uses: common.data_key_max_uses,
            ..KeyCacheLimits::default()
        },
    )
}

/// The stack's EventBridge bus, for the `events` function: all it needs (no App).
pub fn event_publisher(config: &EventsConfig, aws: &aws_config::SdkConfig) -> EventBridgePublisher {
    EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&with_timeouts(aws, config.aws_timeouts)),
        config.event_bus_name.clone(),
    )
}

/// The stack's `EventsFailures` queue, where the `events` function keeps what it gives up.
pub fn event_keeper(config: &EventsConfig, aws: &aws_config::SdkConfig) -> FailureQueue {
    FailureQueue::new(
        aws_sdk_sqs::Client::new(&with_timeouts(aws, config.aws_timeouts)),
        config.failure_queue_url.clone(),
    )
}

/// How the `events` function publishes a batch.
pub fn batch_settings(config: &EventsConfig) -> BatchSettings {
    BatchSettings {
        required_scopes: config.required_scopes.iter().cloned().collect(),
        give_up_after: config.give_up_after,
    }
}
