//! Production wiring: builds the adapters once per cold start.

use crate::clock::SystemClock;
use crate::config::{CommonConfig, RefresherConfig, SignInConfig};
use crate::crypto::{KeyCacheLimits, KmsKeyProvider, TokenCipher};
use crate::google::{
    CachedClientSecret, GoogleIdTokenVerifier, HttpDrive, HttpJwksFetcher, HttpTokenEndpoint, SecretsManagerSource,
};
use crate::refresh::{JobSettings, RateLimiter, Refresher, RetryPolicy};
use crate::signin::{SignIn, SignInSettings};
use crate::store::DynamoStore;

/// The sign-in use case with its production adapters.
pub type ProductionSignIn = SignIn<
    HttpTokenEndpoint,
    GoogleIdTokenVerifier<HttpJwksFetcher, SystemClock>,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// Loads the AWS config the SDK way: region, credentials and `AWS_ENDPOINT_URL` from the
/// environment.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The grants and state tables.
fn store(common: &CommonConfig, aws: &aws_config::SdkConfig) -> DynamoStore {
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        common.grants_table.clone(),
        common.state_table.clone(),
    )
}

/// Envelope encryption under the configured KMS key, with the configured cache bounds.
fn cipher(common: &CommonConfig, aws: &aws_config::SdkConfig) -> TokenCipher<KmsKeyProvider> {
    TokenCipher::new(
        KmsKeyProvider::new(
            aws_sdk_kms::Client::new(aws),
            common.token_key_id.clone(),
            &common.grants_table,
        ),
        KeyCacheLimits {
            max_age: common.data_key_max_age,
            max_uses: common.data_key_max_uses,
            ..KeyCacheLimits::default()
        },
    )
}

/// The client secret from Secrets Manager, cached for its TTL.
fn secrets(
    common: &CommonConfig,
    aws: &aws_config::SdkConfig,
) -> CachedClientSecret<SecretsManagerSource, SystemClock> {
    CachedClientSecret::new(
        SecretsManagerSource::new(
            aws_sdk_secretsmanager::Client::new(aws),
            common.client_secret_id.clone(),
        ),
        SystemClock,
        common.client_secret_ttl,
    )
}

/// Builds the sign-in use case from its config and the loaded AWS config (which honours
/// `AWS_ENDPOINT_URL`, so the same code runs against the local stack).
pub fn sign_in(config: &SignInConfig, aws: &aws_config::SdkConfig) -> Result<ProductionSignIn, reqwest::Error> {
    let common = &config.common;
    let http = crate::http_client::build(common.http_timeout)?;
    Ok(SignIn {
        token_endpoint: HttpTokenEndpoint::new(http.clone()),
        verifier: GoogleIdTokenVerifier::new(
            HttpJwksFetcher::new(http, common.certs_uri.clone()),
            SystemClock,
            common.allowed_azp.clone(),
            config.id_token_leeway,
            config.jwks_min_refetch,
        ),
        store: store(common, aws),
        cipher: cipher(common, aws),
        secrets: secrets(common, aws),
        clock: SystemClock,
        settings: SignInSettings {
            token_uri_override: common.token_uri.clone(),
            grants_table: common.grants_table.clone(),
            idempotency_window: config.idempotency_window,
            // Long enough for the secret fetch, the exchange, the JWKS and the writes.
            in_flight_lease: common.http_timeout * 3 + std::time::Duration::from_secs(5),
            duplicate_wait: std::time::Duration::from_secs(10),
        },
    })
}

/// The offline job with its production adapters.
pub type ProductionRefresher = Refresher<
    HttpTokenEndpoint,
    HttpDrive,
    DynamoStore,
    KmsKeyProvider,
    CachedClientSecret<SecretsManagerSource, SystemClock>,
    SystemClock,
>;

/// Builds the offline job. One HTTP client, and so one connection pool, serves every
/// grant of a run.
pub fn refresher(config: &RefresherConfig, aws: &aws_config::SdkConfig) -> Result<ProductionRefresher, reqwest::Error> {
    let common = &config.common;
    let http = crate::http_client::build(common.http_timeout)?;
    Ok(Refresher {
        token_endpoint: HttpTokenEndpoint::new(http.clone()),
        drive: HttpDrive::new(http, common.drive_api.clone()),
        store: store(common, aws),
        cipher: cipher(common, aws),
        secrets: secrets(common, aws),
        clock: SystemClock,
        settings: JobSettings {
            grants_table: common.grants_table.clone(),
            token_uri_override: common.token_uri.clone(),
            segments: config.segments,
            concurrency: config.concurrency,
            google_rate_per_sec: config.google_rate_per_sec,
            lease: config.lease,
            page_size: config.page_size,
            retry: RetryPolicy {
                max_attempts: config.retry_max_attempts,
                base: config.retry_base,
                cap: config.retry_cap,
            },
            defer_base: config.defer_base,
            defer_max: config.defer_max,
            state_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
        },
        limiter: RateLimiter::per_second(config.google_rate_per_sec),
    })
}
