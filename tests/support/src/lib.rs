//! The one integration-test harness (`spawn_stack()`), shared by `tests/integration`
//! and the benchmarks: a per-test local stack, and the services built by the product's
//! own application core (`offline_access::app`) with only the overrides a test needs.
//!
//! AWS is moto's server at `AWS_ENDPOINT_URL` (started once for the whole run by
//! `make test` through `infra/local/with-moto`). Each test gets its own Google emulator
//! on a free loopback port and its own tables, KMS key and secret under a unique
//! prefix, so tests run in parallel without seeing each other.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a panic here is a failed test"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use google_emulator::{CodeSpec, Emulator, MintedCode, Settings};
use offline_access::app::{App, AppBuilder};
use offline_access::clock::{Clock, ShiftedClock, SystemClock};
use offline_access::config::{AccessTokenConfig, JobConfig, SignInConfig};
use offline_access::crypto::KmsKeyProvider;
use offline_access::ports::{Aws, Ports};

pub mod bench;
pub mod iam;
pub mod memory_store;
pub mod runtime_api;

pub use iam::Role;
pub use memory_store::MemoryJobStore;

/// The repository's root (this crate lives in `tests/support`).
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The sign-in service as tests build it: production adapters, with the caches (the
/// client secret, Google's keys) on a clock the test moves.
pub type TestSignIn = offline_access::sign_in::SignIn<TestPorts>;

/// Production's ports, with the caches on a clock the test moves.
pub type TestPorts = Aws<KmsKeyProvider, ShiftedClock>;

/// The App as the sign-in function's code runs in tests: its role, its caches on a clock
/// the test moves.
pub type TestApp = App<KmsKeyProvider, ShiftedClock>;

/// A per-test stack: its emulator, AWS resources, configuration and sign-in service.
pub struct Stack {
    pub emulator: Emulator,
    /// The harness's own access to moto (set-up, and what a test reads): no IAM.
    pub aws: aws_config::SdkConfig,
    /// In front of moto: each function's requests checked against its role in the template.
    pub iam: iam::IamProxy,
    pub env: HashMap<String, String>,
    pub config: SignInConfig,
    /// The sign-in function's App (its role, its caches on `cache_clock`).
    pub app: TestApp,
    pub service: TestSignIn,
    pub cache_clock: ShiftedClock,
    seeded: AtomicU32,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the tests with `make test`, which starts moto for them")
    })
}

fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "t{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Starts a stack with default settings.
pub async fn spawn_stack() -> Stack {
    spawn_stack_with(&[]).await
}

/// Starts a stack; `extra` sets or overrides configuration variables.
pub async fn spawn_stack_with(extra: &[(&str, &str)]) -> Stack {
    let emulator = Emulator::start_default().await.expect("emulator starts");
    let aws = local_stack::local_aws_config(&aws_endpoint()).await;
    let settings = emulator.settings();
    let plan = local_stack::Plan {
        prefix: unique_prefix(),
        template: local_stack::default_template(),
        client_secret_json: google_emulator::client_secret_json(
            &settings.client_id,
            &settings.client_secret,
            &emulator.token_uri(),
        ),
    };
    let resources = local_stack::bootstrap(&aws, &plan)
        .await
        .expect("bootstrap the local AWS");
    let tables = local_stack::tables_from_template(&plan.template)
        .expect("the template's tables")
        .into_iter()
        .map(|t| (local_stack::local_table_name(&plan.prefix, &t.logical_id), t.logical_id))
        .collect();
    let iam = iam::IamProxy::start(
        &aws_endpoint(),
        iam::Names {
            tables,
            token_key_id: resources.token_key_id.clone(),
            other_token_keys: Vec::new(),
            client_secret_id: resources.client_secret_id.clone(),
            event_bus_name: resources.event_bus_name.clone(),
            events_failure_queue_url: resources.events_failure_queue_url.clone(),
            parking_queue_url: resources.parking_queue_url.clone(),
        },
    )
    .await;
    let mut env: HashMap<String, String> = resources.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.insert("GOOGLE_CERTS_URI".into(), emulator.certs_uri());
    env.insert("GOOGLE_REVOKE_URI".into(), emulator.revoke_uri());
    env.insert("GOOGLE_RISC_CONFIG_URI".into(), emulator.risc_config_uri());
    env.insert("GOOGLE_DRIVE_API".into(), emulator.drive_api());
    env.insert("GOOGLE_TOKENINFO_URI".into(), emulator.tokeninfo_uri());
    env.insert("HTTP_TIMEOUT_MS".into(), "1500".into());
    // moto serves one request at a time for every test running at once: a call can wait
    // seconds in its queue that DynamoDB would answer in milliseconds. The budgets still
    // cap these; the test of the timeouts themselves sets short ones.
    env.insert("AWS_ATTEMPT_TIMEOUT_MS".into(), "20000".into());
    env.insert("AWS_CALL_TIMEOUT_MS".into(), "60000".into());
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = SignInConfig::from_env(&env).expect("valid test config");
    let cache_clock = ShiftedClock::default();
    let app = build_app(&config, &aws_as(&aws, &iam, Role::SignIn), cache_clock.clone());
    let service = app.sign_in(&config);
    Stack {
        emulator,
        aws,
        iam,
        env,
        config,
        app,
        service,
        cache_clock,
        seeded: AtomicU32::new(0),
    }
}

/// `aws` signed as `role`, through `iam`: what that function's code runs on in tests.
fn aws_as(aws: &aws_config::SdkConfig, iam: &iam::IamProxy, role: Role) -> aws_config::SdkConfig {
    aws.to_builder()
        .endpoint_url(&iam.url)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new(role.access_key(), "test", None, None, "role"),
        ))
        .build()
}

/// The production App, with its caches on `cache_clock`.
pub fn build_app(config: &SignInConfig, aws: &aws_config::SdkConfig, cache_clock: ShiftedClock) -> TestApp {
    AppBuilder::new(&config.common, aws)
        .cache_clock(cache_clock)
        .build()
        .expect("wiring")
}

/// What the handler answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<none>")
    }
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get("retry-after")?.to_str().ok()?.parse().ok()
    }
}

/// A committed API Gateway v2 event with its body, content type and headers replaced.
pub fn apigw_event(file: &str, content_type: Option<&str>, body: &[u8], drop_headers: &[&str]) -> String {
    let path = format!("{ROOT}/tests/events/{file}");
    let raw = std::fs::read_to_string(&path).expect("committed event");
    let mut event: serde_json::Value = serde_json::from_str(&raw).expect("event JSON");
    let headers = event["headers"].as_object_mut().expect("headers");
    for name in drop_headers {
        headers.remove(*name);
    }
    match content_type {
        Some(ct) => headers.insert("content-type".into(), ct.into()),
        None => headers.remove("content-type"),
    };
    headers.insert("content-length".into(), body.len().to_string().into());
    // API Gateway base64-encodes bodies it does not treat as text.
    event["body"] = base64::engine::general_purpose::STANDARD.encode(body).into();
    event["isBase64Encoded"] = true.into();
    event.to_string()
}

/// The Android sample's form POST, as API Gateway delivers it.
pub fn android_form_event(code: &str) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("authCode", code)
        .finish();
    apigw_event(
        "apigw-authcode-form.json",
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        body.as_bytes(),
        &[],
    )
}

/// The JSON POST with a platform.
pub fn json_event(code: &str, platform: &str) -> String {
    let body = serde_json::json!({"authCode": code, "platform": platform}).to_string();
    apigw_event(
        "apigw-authcode-json.json",
        Some("application/json"),
        body.as_bytes(),
        &[],
    )
}

impl Stack {
    /// The AWS config a function's code runs on: signed as its role, every request
    /// checked against that role's policy in `template.yaml` (see [`iam`]).
    pub fn aws_as(&self, role: Role) -> aws_config::SdkConfig {
        aws_as(&self.aws, &self.iam, role)
    }

    /// A function binary's environment: this stack's, with AWS reached through the IAM
    /// proxy as `role`.
    pub fn function_env(&self, role: Role) -> HashMap<String, String> {
        let mut env = self.env.clone();
        env.insert("AWS_ENDPOINT_URL".into(), self.iam.url.clone());
        env.insert("AWS_ACCESS_KEY_ID".into(), role.access_key().into());
        env
    }

    pub fn mint(&self, spec: CodeSpec) -> MintedCode {
        self.emulator.mint_code(spec)
    }

    /// Drives the real handler with an API Gateway v2 event.
    pub async fn invoke(&self, event: &str) -> Answer {
        invoke_service(&self.service, event).await
    }

    pub fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.aws)
    }

    /// Every item of a table.
    pub async fn scan(&self, table: &str) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self.dynamo().scan().table_name(table).send().await.expect("scan");
        out.items().to_vec()
    }

    pub async fn grants(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.scan(&self.config.common.grants_table).await
    }

    /// The grant of `sub`, read through the product's own store.
    pub async fn grant(&self, sub: &str) -> Option<offline_access::store::Grant> {
        use offline_access::store::GrantStore;
        let sub = offline_access::domain::GoogleSubject::parse(sub).expect("sub");
        // The harness's own read, not the sign-in function's.
        let store = offline_access::app::store(&self.config.common, self.dynamo());
        store.load(&sub).await.expect("load grant")
    }

    /// The plaintext of `sub`'s stored refresh token, opened through the product's cipher.
    pub async fn stored_refresh_token(&self, sub: &str) -> Option<String> {
        let grant = self.grant(sub).await?;
        let sealed = grant.refresh_token?;
        let binding = offline_access::crypto::Binding {
            store: &self.config.common.token_binding,
            sub,
            client_id: &grant.client_id,
        };
        let token = self
            .service
            .cipher
            .open(&sealed, binding)
            .await
            .expect("stored token opens");
        Some(token.expose_secret().to_owned())
    }

    /// Stores a new value of the client secret in Secrets Manager (an operator's rotation).
    pub async fn put_client_secret(&self, json: &str) {
        aws_sdk_secretsmanager::Client::new(&self.aws)
            .put_secret_value()
            .secret_id(&self.config.common.client_secret_id)
            .secret_string(json)
            .send()
            .await
            .expect("put secret");
    }

    pub fn emulator_settings(&self) -> Settings {
        self.emulator.settings()
    }

    /// A Google ID token for `sub`, issued to our web client (for the Android app), signed
    /// by the emulator's key, or forged.
    pub fn id_token(&self, sub: &str, forgery: google_emulator::Forgery) -> String {
        self.emulator
            .sign_id_token(&self.id_token_claims(sub), forgery)
            .expect("signed")
    }

    /// The claims of [`Stack::id_token`]: Google's, for our web client, issued now for an
    /// hour.
    pub fn id_token_claims(&self, sub: &str) -> serde_json::Value {
        let settings = self.emulator_settings();
        let now = offline_access::clock::Clock::now_unix(&offline_access::clock::SystemClock);
        serde_json::json!({
            "iss": "https://accounts.google.com",
            "aud": settings.client_id,
            "azp": settings.android_client_id,
            "sub": sub,
            "email": "deleting.user@example.com",
            "email_verified": true,
            "iat": now,
            "exp": now + 3_600,
        })
    }

    /// `DELETE /grants/me` as `sub`, with a fresh ID token of theirs.
    pub async fn delete_as(&self, routes: &Routes, sub: &str) -> Answer {
        let token = self.id_token(sub, google_emulator::Forgery::None);
        self.invoke_api(routes, &delete_event(Some(&token), &[])).await
    }
}

pub async fn invoke_service<P: Ports>(service: &offline_access::sign_in::SignIn<P>, event: &str) -> Answer {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway v2 event");
    let response = offline_access::lambda::http::handle(service, &request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = serde_json::from_str(response.body()).expect("every answer is JSON");
    Answer { status, headers, json }
}

/// `DELETE /grants/me` as API Gateway delivers it (the committed event), with the user's
/// ID token as its bearer token (`None`: no Authorization header) and `drop_headers`
/// removed.
pub fn delete_event(id_token: Option<&str>, drop_headers: &[&str]) -> String {
    let raw =
        std::fs::read_to_string(format!("{ROOT}/tests/events/apigw-grants-me-delete.json")).expect("committed event");
    let mut event: serde_json::Value = serde_json::from_str(&raw).expect("event JSON");
    let headers = event["headers"].as_object_mut().expect("headers");
    match id_token {
        Some(token) => headers.insert("authorization".into(), format!("Bearer {token}").into()),
        None => headers.remove("authorization"),
    };
    for name in drop_headers {
        headers.remove(*name);
    }
    event.to_string()
}

/// The HTTP API's routes, as the auth-code function builds them.
pub type Routes = offline_access::app::HttpApi<TestPorts>;

/// `POST /risc` as API Gateway delivers it (the committed event), carrying `body` with
/// `content_type`.
pub fn risc_event(body: &str, content_type: &str) -> String {
    let raw = std::fs::read_to_string(format!("{ROOT}/tests/events/apigw-risc.json")).expect("committed event");
    let mut event: serde_json::Value = serde_json::from_str(&raw).expect("event JSON");
    event["headers"]["content-type"] = content_type.into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["body"] = body.into();
    event.to_string()
}

/// The `ParkedSignIns` queue's messages as Lambda's SQS event source delivers them (the
/// committed event), one record per `(message id, body)`.
pub fn sqs_event(messages: &[(String, String)]) -> String {
    let raw = std::fs::read_to_string(format!("{ROOT}/tests/events/sqs-parked-sign-in.json")).expect("committed event");
    let mut event: serde_json::Value = serde_json::from_str(&raw).expect("event JSON");
    let template = event["Records"][0].clone();
    event["Records"] = messages
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = id.as_str().into();
            record["body"] = body.as_str().into();
            record
        })
        .collect();
    event.to_string()
}

/// A sign-in's variables for the fault tests that hang a call: each AWS call gets one
/// 2 s attempt (no SDK retry inside it, and room for a loaded moto), within a budget of
/// `budget_ms`, with `extra` set too.
pub fn one_attempt_sign_in(
    budget_ms: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![
        ("SIGN_IN_BUDGET_MS", budget_ms),
        ("AWS_ATTEMPT_TIMEOUT_MS", "2000"),
        ("AWS_CALL_TIMEOUT_MS", "2000"),
    ];
    vars.extend_from_slice(extra);
    vars
}

/// Hands `messages` to the parked sign-in consumer as Lambda's SQS event source would
/// (the committed event); the ids it asks to have delivered again.
pub async fn deliver_parked<P: Ports>(
    consumer: &offline_access::sign_in::SignIn<P>,
    messages: &[(String, String)],
) -> Vec<String> {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&sqs_event(messages)).expect("an SQS event");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    offline_access::lambda::queue::handle(&event, consumer, deadline)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// The sign-in use case as `role`'s function builds it (the sign-in's, or the parked
/// sign-in consumer's), with `vars` set over the stack's environment.
pub fn sign_in_as(stack: &Stack, role: Role, vars: &[(&str, &str)]) -> TestSignIn {
    let mut env = stack.env.clone();
    env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let config = SignInConfig::from_env(&env).expect("config");
    build_app(&config, &stack.aws_as(role), stack.cache_clock.clone()).sign_in(&config)
}

impl Stack {
    /// Takes what waits in the `ParkedSignIns` queue, as `(message id, body)`: each
    /// message is deleted, as Lambda's poller does once the function has answered.
    pub async fn take_parked(&self) -> Vec<(String, String)> {
        let sqs = aws_sdk_sqs::Client::new(&self.aws);
        let url = &self.env["SIGN_IN_PARKING_QUEUE_URL"];
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive parked sign-ins");
        let mut taken = Vec::new();
        for message in received.messages() {
            if let Some(receipt) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .expect("delete a parked sign-in");
            }
            taken.push((
                message.message_id().unwrap_or_default().to_owned(),
                message.body().unwrap_or_default().to_owned(),
            ));
        }
        taken
    }

    /// The HTTP API's use cases as the auth-code function builds them.
    pub fn routes(&self) -> Routes {
        self.app.http_api(&self.config)
    }

    /// Drives the whole HTTP API (sign-in, deletion, RISC) with an API Gateway v2 event.
    pub async fn invoke_api(&self, routes: &Routes, event: &str) -> Answer {
        let request = lambda_http::request::from_str(event).expect("a valid API Gateway v2 event");
        let response = offline_access::lambda::http::serve(routes, &request).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let json = if response.body().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(response.body()).expect("every answer with a body is JSON")
        };
        Answer { status, headers, json }
    }
}

/// Counts the requests an AWS SDK client sends: one per round trip. Install it with
/// `config::Builder::interceptor` (any SDK client; the trait is the same).
#[derive(Debug, Clone, Default)]
pub struct CountRequests(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CountRequests {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// A DynamoDB client on `aws` whose requests are counted here.
    pub fn dynamodb(&self, aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(aws)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// A KMS client on `aws` whose requests are counted here.
    pub fn kms(&self, aws: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(aws)
                .interceptor(self.clone())
                .build(),
        )
    }
}

impl aws_sdk_dynamodb::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Logs every DynamoDB request (operation, table, key) on its way out: the write-unit
/// figures and tests count a grant's writes (and its round trips) with it.
#[derive(Debug, Clone, Default)]
pub struct WriteLog(pub std::sync::Arc<std::sync::Mutex<Vec<Write>>>);

/// One request: `PutItem`, `UpdateItem`, `GetItem`, `Scan`, ...; the table; the item's key
/// (empty for a scan or query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub operation: String,
    pub table: String,
    pub key: String,
}

impl Write {
    pub fn is_write(&self) -> bool {
        [
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
        ]
        .contains(&self.operation.as_str())
    }
}

impl WriteLog {
    /// A DynamoDB client on `aws` whose writes are logged here.
    pub fn dynamodb(&self, aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(aws)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// Takes the writes logged so far (and forgets the reads).
    pub fn take(&self) -> Vec<Write> {
        self.take_all().into_iter().filter(Write::is_write).collect()
    }

    /// Takes every request logged so far.
    pub fn take_all(&self) -> Vec<Write> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl aws_sdk_dynamodb::config::Intercept for WriteLog {
    fn name(&self) -> &'static str {
        "WriteLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let body: serde_json::Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let key = body.get("Key").or_else(|| body.get("Item"));
        let key = ["sub", "pk"]
            .iter()
            .find_map(|k| key.and_then(|key| key[*k]["S"].as_str()))
            .unwrap_or_default()
            .to_owned();
        let table = body["TableName"].as_str().unwrap_or_default().to_owned();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Write { operation, table, key });
        Ok(())
    }
}

/// An item's size as DynamoDB bills it: each attribute's name plus its value (strings and
/// binaries their bytes, numbers about one byte per two digits plus one, booleans one,
/// sets the sum of their members, lists and maps three bytes plus a byte and the size of
/// each element).
pub fn item_size(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    fn value(v: &V) -> usize {
        match v {
            V::S(s) => s.len(),
            V::N(n) => {
                let digits = n.trim_start_matches('-').replace('.', "");
                let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
                significant.div_ceil(2) + 1
            }
            V::B(b) => b.as_ref().len(),
            V::Ss(ss) => ss.iter().map(String::len).sum(),
            V::Ns(ns) => ns.iter().map(|n| value(&V::N(n.clone()))).sum(),
            V::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
            V::L(list) => 3 + list.iter().map(|v| 1 + value(v)).sum::<usize>(),
            V::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(name, v)| name.len() + value(v)).sum()
}

/// Counts KMS calls on their way through (tests and benchmarks), and refuses them once
/// a test says so; clones share the counts.
#[derive(Debug, Clone)]
pub struct CountingKeys {
    pub inner: offline_access::crypto::KmsKeyProvider,
    pub generated: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub decrypted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Every call, by purpose, refused or not.
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<offline_access::crypto::Purpose>>>,
    /// How many more calls KMS answers; after that it refuses (`AccessDeniedException`).
    allowed: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Past `allowed`, KMS is unreachable (transient) rather than refusing.
    unreachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CountingKeys {
    /// KMS as `role` calls it.
    pub fn new(stack: &Stack, role: Role) -> Self {
        Self {
            inner: offline_access::app::kms_keys(&stack.config.common, aws_sdk_kms::Client::new(&stack.aws_as(role))),
            generated: std::sync::Arc::default(),
            decrypted: std::sync::Arc::default(),
            calls: std::sync::Arc::default(),
            allowed: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX)),
            unreachable: std::sync::Arc::default(),
        }
    }

    /// KMS answers `calls` more calls, then refuses every one.
    pub fn refuse_after(&self, calls: i64) {
        self.allowed.store(calls, Ordering::SeqCst);
    }

    /// After `calls` more calls, KMS cannot be reached (a failure that may pass).
    pub fn unreachable_after(&self, calls: i64) {
        self.unreachable.store(true, Ordering::SeqCst);
        self.refuse_after(calls);
    }

    /// The calls made for `purpose` so far.
    pub fn calls_for(&self, purpose: offline_access::crypto::Purpose) -> usize {
        let calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        calls.iter().filter(|p| **p == purpose).count()
    }

    fn admit(&self, purpose: offline_access::crypto::Purpose) -> Result<(), offline_access::crypto::KeyError> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(purpose);
        if self.allowed.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(offline_access::crypto::KeyError::Upstream(
                if self.unreachable.load(Ordering::SeqCst) {
                    offline_access::upstream::Upstream::unavailable("kms", "unreachable")
                } else {
                    offline_access::upstream::Upstream::misconfigured("kms", "AccessDeniedException")
                },
            ));
        }
        Ok(())
    }
}

impl offline_access::crypto::KeyProvider for CountingKeys {
    async fn generate_data_key(
        &self,
        purpose: offline_access::crypto::Purpose,
    ) -> Result<offline_access::crypto::DataKey, offline_access::crypto::KeyError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.admit(purpose)?;
        self.inner.generate_data_key(purpose).await
    }
    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        purpose: offline_access::crypto::Purpose,
    ) -> Result<secrecy::SecretBox<[u8; 32]>, offline_access::crypto::KeyError> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        self.admit(purpose)?;
        self.inner.decrypt_data_key(wrapped, purpose).await
    }
}

/// The offline job as the tests build it: production adapters, any KMS key provider.
pub type TestJob<K> = offline_access::job::OfflineJob<Aws<K>>;

/// A seeded grant: the user, the refresh token Google issued, and the grant as stored.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub sub: String,
    pub token: String,
    pub grant: offline_access::store::Grant,
}

impl Stack {
    /// The access-token function's config: this stack's resources plus `extra`.
    pub fn access_config(&self, extra: &[(&str, &str)]) -> AccessTokenConfig {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        AccessTokenConfig::from_env(&env).expect("valid access-token config")
    }

    /// The production access-token use case for this stack: one per simulated Lambda
    /// instance (each has its own caches, as separate instances do).
    pub fn access_tokens(&self, extra: &[(&str, &str)]) -> offline_access::access_token::AccessTokens {
        let config = self.access_config(extra);
        App::production(&config.common, &self.aws_as(Role::AccessToken))
            .expect("app")
            .access_tokens(&config)
    }

    /// The offline job's config: this stack's resources plus `extra`.
    pub fn job_config(&self, extra: &[(&str, &str)]) -> JobConfig {
        let mut env = self.env.clone();
        env.insert("GOOGLE_QUOTA_UNITS_PER_MIN".into(), "0".into());
        env.insert("RETRY_BASE_MS".into(), "20".into());
        env.insert("RETRY_CAP_MS".into(), "200".into());
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        JobConfig::from_env(&env).expect("valid job config")
    }

    /// The production offline job for this stack.
    pub fn job(&self, extra: &[(&str, &str)]) -> offline_access::job::OfflineJob {
        let config = self.job_config(extra);
        App::production(&config.common, &self.aws_as(Role::Job))
            .expect("app")
            .offline_job(&config)
    }

    /// The production offline job with its KMS calls counted.
    pub fn counting_job(&self, extra: &[(&str, &str)]) -> (TestJob<CountingKeys>, CountingKeys) {
        let keys = CountingKeys::new(self, Role::Job);
        let config = self.job_config(extra);
        let job = AppBuilder::new(&config.common, &self.aws_as(Role::Job))
            .keys(keys.clone())
            .build()
            .expect("app")
            .offline_job(&config);
        (job, keys)
    }

    /// Seeds `count` users who consented earlier: Google holds their refresh tokens, and
    /// the grants table holds them sealed by the product's own cipher.
    pub async fn seed_grants(&self, count: usize, scopes: &str, drive_files: usize) -> Vec<Seeded> {
        use offline_access::store::GrantStore;
        let client_id = self.emulator_settings().client_id;
        let mut seeded = Vec::with_capacity(count);
        // Every stack has its own table and emulator, so ids need only be unique here.
        let first = self
            .seeded
            .fetch_add(u32::try_from(count).expect("count"), Ordering::SeqCst);
        let subs: Vec<String> = (first..first + count as u32).map(|i| format!("9{i:020}")).collect();
        let store = &offline_access::app::store(&self.config.common, self.dynamo());
        for chunk in subs.chunks(64) {
            let writes = chunk.iter().map(|sub| {
                let token = self.emulator.seed_grant(sub, scopes, drive_files);
                let client_id = client_id.clone();
                async move {
                    let binding = offline_access::crypto::Binding {
                        store: &self.config.common.token_binding,
                        sub,
                        client_id: &client_id,
                    };
                    let refresh = offline_access::domain::RefreshToken::new(token.clone());
                    let sealed = self.service.cipher.seal_new(&refresh, binding).await.expect("seal");
                    let grant = offline_access::store::Grant::new_active(
                        offline_access::domain::GoogleSubject::parse(sub).expect("sub"),
                        client_id.clone(),
                        offline_access::domain::Scopes::from_space_delimited(scopes),
                        sealed,
                        offline_access::domain::Profile::default(),
                        false,
                        SystemClock.now_unix(),
                    );
                    // Set-up, not a function's call: the harness's own access.
                    store.insert(&grant).await.expect("insert grant");
                    Seeded {
                        sub: sub.clone(),
                        token,
                        grant,
                    }
                }
            });
            seeded.extend(futures_util::future::join_all(writes).await);
        }
        seeded
    }

    /// Sets (`Some`) or removes (`None`) attributes of `sub`'s grant item directly, as
    /// time passing or another writer would.
    pub async fn set_grant_attributes(
        &self,
        sub: &str,
        attrs: &[(&str, Option<aws_sdk_dynamodb::types::AttributeValue>)],
    ) {
        let key = ("sub", sub.to_owned());
        self.set_attributes(&self.config.common.grants_table, key, attrs).await;
    }

    /// The same for `sub`'s cached access token (its state-table item).
    pub async fn set_cached_token_attributes(
        &self,
        sub: &str,
        attrs: &[(&str, Option<aws_sdk_dynamodb::types::AttributeValue>)],
    ) {
        let key = ("pk", format!("access#{sub}"));
        self.set_attributes(&self.config.common.state_table, key, attrs).await;
    }

    async fn set_attributes(
        &self,
        table: &str,
        key: (&str, String),
        attrs: &[(&str, Option<aws_sdk_dynamodb::types::AttributeValue>)],
    ) {
        let (mut sets, mut removes) = (Vec::new(), Vec::new());
        let mut update = self
            .dynamo()
            .update_item()
            .table_name(table)
            .key(key.0, aws_sdk_dynamodb::types::AttributeValue::S(key.1));
        for (i, (name, value)) in attrs.iter().enumerate() {
            update = update.expression_attribute_names(format!("#a{i}"), *name);
            match value {
                Some(v) => {
                    sets.push(format!("#a{i} = :v{i}"));
                    update = update.expression_attribute_values(format!(":v{i}"), v.clone());
                }
                None => removes.push(format!("#a{i}")),
            }
        }
        let mut expression = String::new();
        if !sets.is_empty() {
            expression = format!("SET {}", sets.join(", "));
        }
        if !removes.is_empty() {
            expression = format!("{expression} REMOVE {}", removes.join(", "));
        }
        update
            .update_expression(expression.trim())
            .send()
            .await
            .expect("set attributes");
    }

    /// The `state` of the last RISC verification event the receiver kept.
    pub async fn risc_verification_state(&self) -> Option<String> {
        let items = self.scan(&self.config.common.state_table).await;
        items
            .iter()
            .find(|i| i.get("pk") == Some(&aws_sdk_dynamodb::types::AttributeValue::S("risc-verification".into())))
            .and_then(|i| i.get("verification_state"))
            .and_then(|v| v.as_s().ok().cloned())
    }

    /// A raw attribute of a grant item (for fields the product's `Grant` does not carry).
    pub async fn grant_attribute(&self, sub: &str, name: &str) -> Option<aws_sdk_dynamodb::types::AttributeValue> {
        let out = self
            .dynamo()
            .get_item()
            .table_name(&self.config.common.grants_table)
            .key("sub", aws_sdk_dynamodb::types::AttributeValue::S(sub.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item");
        out.item().and_then(|i| i.get(name)).cloned()
    }

    /// Whether someone holds `sub`'s lease now: the grant names an owner whose lease has
    /// not run out, and the cached token's item does not name that lease as ended (a
    /// routine refresh ends its lease there, as the product's readers take it).
    pub async fn lease_held(&self, sub: &str) -> bool {
        let owner = self.grant_attribute(sub, "lease_owner").await;
        let until = self
            .grant_attribute(sub, "lease_until")
            .await
            .and_then(|v| v.as_n().ok().and_then(|n| n.parse::<u64>().ok()));
        let Some(owner) = owner.and_then(|o| o.as_s().ok().cloned()) else {
            return false;
        };
        if until.is_none_or(|until| until < SystemClock.now_unix()) {
            return false;
        }
        let released = self
            .cached_token_item(sub)
            .await
            .and_then(|i| i.get("released_lease").cloned())
            .and_then(|v| v.as_s().ok().cloned());
        released.as_deref() != Some(owner.as_str())
    }

    /// `sub`'s cached-token item in the state table, raw.
    pub async fn cached_token_item(
        &self,
        sub: &str,
    ) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .dynamo()
            .get_item()
            .table_name(&self.config.common.state_table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("access#{sub}")),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("get item");
        out.item().cloned()
    }

    /// A number attribute of a state-table item (`pk`).
    pub async fn state_number(&self, pk: &str, name: &str) -> Option<u64> {
        let out = self
            .dynamo()
            .get_item()
            .table_name(&self.config.common.state_table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item");
        out.item()
            .and_then(|i| i.get(name))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
    }
}

/// Invokes the access-token handler with `payload`, as the function's runtime loop does.
pub async fn ask_for_token<P: Ports>(
    service: &offline_access::access_token::AccessTokens<P>,
    payload: &serde_json::Value,
) -> serde_json::Value {
    let bytes = serde_json::to_vec(payload).expect("payload");
    offline_access::lambda::invoke::handle(service, &bytes).await
}

/// A stop time far enough away that a test run is never cut short.
pub fn no_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(300)
}
