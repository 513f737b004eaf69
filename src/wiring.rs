//! The one wiring path: builds the adapters once per cold start. Both mains use it, and
//! so do the tests and benchmarks, swapping only what they must through the builders'
//! overrides (a key provider that counts calls, a clock the test moves, another store),
//! so what they exercise cannot silently differ from production.

use crate::access_token::{AccessSettings, AccessTokens};
use crate::clock::{Clock, SystemClock};
use crate::config::{AccessTokenConfig, CommonConfig, EventsConfig, JobConfig, SignInConfig};
use crate::crypto::{KeyCacheLimits, KeyProvider, KmsKeyProvider, Sealable, TokenCipher};
use crate::deletion::{DeleteGrant, DeletionSettings};
use crate::events::EventBridgePublisher;
use crate::google::risc::SetVerifier;
use crate::google::{
    CachedClientSecret, GoogleIdTokenVerifier, HttpDrive, HttpJwksFetcher, HttpTokenEndpoint, SecretsManagerSource,
};
use crate::job::{JobSettings, OfflineJob, Pacer};
use crate::risc::{RiscReceiver, RiscSettings};
use crate::sign_in::{SignIn, SignInSettings};
use crate::store::{DynamoStore, JobStore};
use crate::upstream::RetryPolicy;

/// The sign-in use case with its production adapters.
pub type ProductionSignIn = SignIn<
    HttpTokenEndpoint,
    GoogleIdTokenVerifier<HttpJwksFetcher, SystemClock>,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// The offline job with its production adapters.
pub type ProductionJob = OfflineJob<
    HttpTokenEndpoint,
    HttpDrive,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// The access-token use case with its production adapters.
pub type ProductionAccessTokens = AccessTokens<
    HttpTokenEndpoint,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// Deletion at the user's request with its production adapters.
pub type ProductionDeletion = DeleteGrant<
    HttpTokenEndpoint,
    GoogleIdTokenVerifier<HttpJwksFetcher, SystemClock>,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// The RISC receiver (`POST /risc`) with its production adapters.
pub type ProductionRisc = RiscReceiver<DynamoStore, CachedClientSecret<SecretsManagerSource, SystemClock>, SystemClock>;

/// Loads the AWS config the SDK way: region, credentials and `AWS_ENDPOINT_URL` from the
/// environment.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
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

/// Google ID-token verification as sign-in and deletion both do it (DESIGN §6).
fn id_token_verifier(
    config: &SignInConfig,
    http: reqwest::Client,
) -> GoogleIdTokenVerifier<HttpJwksFetcher, SystemClock> {
    GoogleIdTokenVerifier::new(
        HttpJwksFetcher::new(http, config.common.certs_uri.clone()),
        SystemClock,
        config.common.allowed_azp.clone(),
        config.id_token_leeway,
        config.jwks_min_refetch,
    )
}

/// The client secret from Secrets Manager, cached for its TTL on `clock`.
fn secrets<C: Clock>(
    common: &CommonConfig,
    aws: &aws_config::SdkConfig,
    clock: C,
) -> CachedClientSecret<SecretsManagerSource, C> {
    CachedClientSecret::new(
        SecretsManagerSource::new(
            aws_sdk_secretsmanager::Client::new(aws),
            common.client_secret_id.clone(),
        ),
        clock,
        common.client_secret_ttl,
    )
}

/// Builds the sign-in use case: `SignInBuilder::new(..).build()` is production.
#[derive(Debug)]
pub struct SignInBuilder<K, C> {
    config: SignInConfig,
    aws: aws_config::SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    keys: K,
    secret_clock: C,
}

impl SignInBuilder<KmsKeyProvider, SystemClock> {
    /// Production: the loaded AWS config honours `AWS_ENDPOINT_URL`, so the same code
    /// runs against the local stack.
    pub fn new(config: &SignInConfig, aws: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            aws: aws.clone(),
            dynamodb: aws_sdk_dynamodb::Client::new(aws),
            keys: kms_keys(&config.common, aws_sdk_kms::Client::new(aws)),
            secret_clock: SystemClock,
        }
    }
}

impl<K: KeyProvider, C: Clock> SignInBuilder<K, C> {
    /// Another key provider (tests count KMS calls).
    pub fn keys<K2: KeyProvider>(self, keys: K2) -> SignInBuilder<K2, C> {
        SignInBuilder {
            config: self.config,
            aws: self.aws,
            dynamodb: self.dynamodb,
            keys,
            secret_clock: self.secret_clock,
        }
    }

    /// Another clock for the client-secret cache (tests move it past the TTL).
    pub fn secret_clock<C2: Clock>(self, clock: C2) -> SignInBuilder<K, C2> {
        SignInBuilder {
            config: self.config,
            aws: self.aws,
            dynamodb: self.dynamodb,
            keys: self.keys,
            secret_clock: clock,
        }
    }

    /// Another DynamoDB client (benchmarks count round trips).
    pub fn dynamodb(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.dynamodb = client;
        self
    }

    #[allow(clippy::type_complexity, reason = "the use case over its ports, spelled out once")]
    pub fn build(
        self,
    ) -> Result<
        SignIn<
            HttpTokenEndpoint,
            GoogleIdTokenVerifier<HttpJwksFetcher, SystemClock>,
            DynamoStore,
            K,
            CachedClientSecret<SecretsManagerSource, C>,
            SystemClock,
        >,
        reqwest::Error,
    > {
        let config = &self.config;
        let common = &config.common;
        // One hardened client: one connection pool for the token endpoint and the JWKS.
        let http = crate::http_client::build(common.http_timeout)?;
        Ok(SignIn {
            token_endpoint: HttpTokenEndpoint::new(http.clone()),
            verifier: id_token_verifier(config, http),
            store: store(common, self.dynamodb),
            cipher: cipher(common, self.keys),
            secrets: secrets(common, &self.aws, self.secret_clock),
            clock: SystemClock,
            settings: SignInSettings {
                token_uri_override: common.token_uri.clone(),
                token_binding: common.token_binding.clone(),
                idempotency_window: config.idempotency_window,
                claim_lease: config.claim_lease,
                duplicate_wait: config.duplicate_wait,
                budget: config.budget,
                call_timeout: common.http_timeout,
            },
        })
    }
}

/// Production sign-in.
pub fn sign_in(config: &SignInConfig, aws: &aws_config::SdkConfig) -> Result<ProductionSignIn, reqwest::Error> {
    SignInBuilder::new(config, aws).build()
}

/// The deletion use case (`DELETE /grants/me`), served by the same function as sign-in
/// and built from the same configuration, with its own clients.
pub fn delete_grant(config: &SignInConfig, aws: &aws_config::SdkConfig) -> Result<ProductionDeletion, reqwest::Error> {
    let common = &config.common;
    let http = crate::http_client::build(common.http_timeout)?;
    Ok(DeleteGrant {
        token_endpoint: HttpTokenEndpoint::new(http.clone()),
        verifier: id_token_verifier(config, http),
        store: store(common, aws_sdk_dynamodb::Client::new(aws)),
        cipher: cipher(common, kms_keys(common, aws_sdk_kms::Client::new(aws))),
        secrets: secrets(common, aws, SystemClock),
        clock: SystemClock,
        settings: DeletionSettings {
            token_binding: common.token_binding.clone(),
            revoke_uri: common.revoke_uri.clone(),
            tombstone_ttl: common.tombstone_ttl,
        },
    })
}

/// The RISC receiver (`POST /risc`), served by the same function as sign-in and built
/// from the same configuration, with its own clients.
pub fn risc_receiver(config: &SignInConfig, aws: &aws_config::SdkConfig) -> Result<ProductionRisc, reqwest::Error> {
    let common = &config.common;
    let http = crate::http_client::build(common.http_timeout)?;
    Ok(RiscReceiver {
        verifier: SetVerifier::new(
            http,
            config.risc_config_uri.clone(),
            SystemClock,
            config.id_token_leeway,
            config.jwks_min_refetch,
        ),
        store: store(common, aws_sdk_dynamodb::Client::new(aws)),
        secrets: secrets(common, aws, SystemClock),
        clock: SystemClock,
        settings: RiscSettings {
            other_client_ids: common.allowed_azp.clone(),
            event_retention: config.risc_event_retention,
        },
    })
}

/// The stack's EventBridge bus, for the `events` function.
pub fn event_publisher(config: &EventsConfig, aws: &aws_config::SdkConfig) -> EventBridgePublisher {
    EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(aws), config.event_bus_name.clone())
}

/// Builds the offline job: `JobBuilder::new(..).build()` is production.
#[derive(Debug)]
pub struct JobBuilder<S, K> {
    config: JobConfig,
    aws: aws_config::SdkConfig,
    store: S,
    keys: K,
}

impl JobBuilder<DynamoStore, KmsKeyProvider> {
    pub fn new(config: &JobConfig, aws: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            aws: aws.clone(),
            store: store(&config.common, aws_sdk_dynamodb::Client::new(aws)),
            keys: kms_keys(&config.common, aws_sdk_kms::Client::new(aws)),
        }
    }
}

impl<S: JobStore, K: KeyProvider + Clone> JobBuilder<S, K> {
    /// Another store (benchmarks use an in-memory one to measure the job itself).
    pub fn store<S2: JobStore>(self, store: S2) -> JobBuilder<S2, K> {
        JobBuilder {
            config: self.config,
            aws: self.aws,
            store,
            keys: self.keys,
        }
    }

    /// Another key provider (tests count KMS calls).
    pub fn keys<K2: KeyProvider + Clone>(self, keys: K2) -> JobBuilder<S, K2> {
        JobBuilder {
            config: self.config,
            aws: self.aws,
            store: self.store,
            keys,
        }
    }

    #[allow(clippy::type_complexity, reason = "the job over its ports, spelled out once")]
    pub fn build(
        self,
    ) -> Result<
        OfflineJob<
            HttpTokenEndpoint,
            HttpDrive,
            S,
            K,
            CachedClientSecret<SecretsManagerSource, SystemClock>,
            SystemClock,
        >,
        reqwest::Error,
    > {
        self.build_with_clock(SystemClock)
    }

    /// The job on another clock (tests turn the quota day over).
    #[allow(clippy::type_complexity, reason = "the job over its ports, spelled out once")]
    pub fn build_with_clock<C: Clock>(
        self,
        clock: C,
    ) -> Result<
        OfflineJob<HttpTokenEndpoint, HttpDrive, S, K, CachedClientSecret<SecretsManagerSource, SystemClock>, C>,
        reqwest::Error,
    > {
        let config = &self.config;
        let common = &config.common;
        // One HTTP client, and so one connection pool, serves every grant of a run.
        let http = crate::http_client::build(common.http_timeout)?;
        Ok(OfflineJob {
            token_endpoint: HttpTokenEndpoint::new(http.clone()),
            drive: HttpDrive::new(
                http,
                common.drive_api.clone(),
                config.drive_max_pages,
                config.drive_max_page_bytes,
            ),
            store: self.store,
            access_cipher: cipher(common, self.keys.clone()),
            cipher: cipher(common, self.keys),
            secrets: secrets(common, &self.aws, SystemClock),
            clock,
            settings: JobSettings {
                token_binding: common.token_binding.clone(),
                token_uri_override: common.token_uri.clone(),
                segments: config.segments,
                concurrency: config.concurrency,
                lease: config.lease,
                page_size: config.page_size,
                retry: RetryPolicy {
                    max_attempts: config.retry_max_attempts,
                    base: config.retry_base,
                    cap: config.retry_cap,
                },
                defer_base: config.defer_base,
                defer_max: config.defer_max,
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
        })
    }
}

/// The production offline job.
pub fn offline_job(config: &JobConfig, aws: &aws_config::SdkConfig) -> Result<ProductionJob, reqwest::Error> {
    JobBuilder::new(config, aws).build()
}

/// Builds the access-token use case: `AccessTokensBuilder::new(..).build()` is production.
#[derive(Debug)]
pub struct AccessTokensBuilder<K> {
    config: AccessTokenConfig,
    aws: aws_config::SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    keys: K,
}

impl AccessTokensBuilder<KmsKeyProvider> {
    pub fn new(config: &AccessTokenConfig, aws: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            aws: aws.clone(),
            dynamodb: aws_sdk_dynamodb::Client::new(aws),
            keys: kms_keys(&config.common, aws_sdk_kms::Client::new(aws)),
        }
    }
}

impl<K: KeyProvider + Clone> AccessTokensBuilder<K> {
    /// Another key provider (tests count KMS calls).
    pub fn keys<K2: KeyProvider + Clone>(self, keys: K2) -> AccessTokensBuilder<K2> {
        AccessTokensBuilder {
            config: self.config,
            aws: self.aws,
            dynamodb: self.dynamodb,
            keys,
        }
    }

    /// Another DynamoDB client (benchmarks count round trips).
    pub fn dynamodb(mut self, client: aws_sdk_dynamodb::Client) -> Self {
        self.dynamodb = client;
        self
    }

    #[allow(clippy::type_complexity, reason = "the use case over its ports, spelled out once")]
    pub fn build(
        self,
    ) -> Result<
        AccessTokens<
            HttpTokenEndpoint,
            DynamoStore,
            K,
            CachedClientSecret<SecretsManagerSource, SystemClock>,
            SystemClock,
        >,
        reqwest::Error,
    > {
        let config = &self.config;
        let common = &config.common;
        Ok(AccessTokens {
            token_endpoint: HttpTokenEndpoint::new(crate::http_client::build(common.http_timeout)?),
            store: store(common, self.dynamodb),
            refresh_cipher: cipher(common, self.keys.clone()),
            access_cipher: cipher(common, self.keys),
            secrets: secrets(common, &self.aws, SystemClock),
            clock: SystemClock,
            settings: AccessSettings {
                token_binding: common.token_binding.clone(),
                token_uri_override: common.token_uri.clone(),
                force_refresh_floor: config.force_refresh_floor,
                lease: config.lease,
                budget: config.budget,
            },
        })
    }
}

/// The production access-token use case.
pub fn access_tokens(
    config: &AccessTokenConfig,
    aws: &aws_config::SdkConfig,
) -> Result<ProductionAccessTokens, reqwest::Error> {
    AccessTokensBuilder::new(config, aws).build()
}
