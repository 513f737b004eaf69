//! IAM for the local stack. moto enforces no IAM, so a call the template's role does not
//! allow (a first sign-in's `Put` inside a transaction, once) passed every test and would
//! have been refused in AWS. Each test stack puts this proxy in front of moto: a service
//! built on `Stack::aws_as(role)` signs its requests with that role's access key, and the
//! proxy checks every request against the role's policy *in `template.yaml`* before
//! forwarding it — answering `AccessDeniedException` as AWS would when no statement allows
//! it. The harness's own calls (set-up, reads a test makes) use other keys and pass.
//!
//! What a request needs is derived from the request itself, as IAM does:
//! - DynamoDB: the operation on the table named in the body; `Query`/`Scan` with an
//!   `IndexName` act on `table/index/NAME`; a `TransactWriteItems` needs the action of
//!   each of its items (`PutItem`, `UpdateItem`, `DeleteItem`, `ConditionCheckItem`) on
//!   that item's table, and `TransactGetItems` `GetItem` on each;
//! - KMS: the operation on the stack's key, with the request's encryption-context
//!   `purpose` matched against `kms:EncryptionContext:purpose` conditions (a statement
//!   conditioned on `kms:ViaService` never matches: a function calls KMS directly);
//! - Secrets Manager, EventBridge and SQS: the operation on the named secret, bus or
//!   queue.
//!
//! KMS key states too: moto records `DisableKey` and `ScheduleKeyDeletion` but still
//! decrypts under such a key, where KMS answers `DisabledException` or
//! `KMSInvalidStateException`. The proxy watches those calls pass (send them through it:
//! [`IamProxy::admin`]) and answers later cryptographic calls on that key as KMS does.
//!
//! Slow answers too: [`IamProxy::delay`] holds the next requests of one operation before
//! forwarding them, as a DynamoDB or KMS call that takes seconds would.
//!
//! Resources are the template's logical ids (`GrantsTable`, `TokenKey`, ...), mapped from
//! the stack's local names; an unknown condition key or resource form in the template
//! fails loudly rather than allowing.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a panic here is a failed test"
)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value as Json;
use serde_yaml_ng::Value;

/// A function's execution role, as the harness signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `AuthCodeFunction`: sign-in, deletion and RISC.
    SignIn,
    /// `RefresherFunction`: the offline job.
    Job,
    /// `AccessTokenFunction`.
    AccessToken,
    /// `EventsFunction`.
    Events,
    /// `ParkedSignInFunction`: stores parked sign-ins.
    ParkedSignIn,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::SignIn,
        Role::Job,
        Role::AccessToken,
        Role::Events,
        Role::ParkedSignIn,
    ];

    /// The function's logical id in `template.yaml`.
    pub fn function(self) -> &'static str {
        match self {
            Role::SignIn => "AuthCodeFunction",
            Role::Job => "RefresherFunction",
            Role::AccessToken => "AccessTokenFunction",
            Role::Events => "EventsFunction",
            Role::ParkedSignIn => "ParkedSignInFunction",
        }
    }

    /// The access key id its requests are signed with.
    pub fn access_key(self) -> &'static str {
        match self {
            Role::SignIn => "ASIAROLEAUTHCODE",
            Role::Job => "ASIAROLEREFRESHER",
            Role::AccessToken => "ASIAROLEACCESSTOKEN",
            Role::Events => "ASIAROLEEVENTS",
            Role::ParkedSignIn => "ASIAROLEPARKEDSIGNIN",
        }
    }

    fn from_access_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.access_key() == key)
    }
}

/// The logical id a `!Ref X` or `!GetAtt X.Arn` points at, or `X/index/I` for
/// `!Sub ${X.Arn}/index/I`.
pub fn referenced(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => {
            let inner = tagged.value.as_str().expect("a simple substitution");
            let (arn, rest) = inner
                .strip_prefix("${")
                .and_then(|s| s.split_once(".Arn}"))
                .expect("${X.Arn}/...");
            format!("{arn}{rest}")
        }
        Value::Tagged(tagged) => {
            let inner = tagged.value.as_str().expect("a simple reference");
            inner.split('.').next().unwrap_or(inner).to_owned()
        }
        other => panic!("a policy resource that is not a reference: {other:?}"),
    }
}

/// A YAML value as a list (a scalar is a list of one, absent is empty).
pub fn list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// One `Allow` statement of a function's inline policies.
#[derive(Debug, Clone)]
pub struct Statement {
    pub actions: BTreeSet<String>,
    /// Logical ids (`GrantsTable`, `GrantsTable/index/by-token-hash`).
    pub resources: BTreeSet<String>,
    /// `kms:EncryptionContext:purpose` must be one of these, when set.
    pub purposes: Option<BTreeSet<String>>,
    /// Conditioned on `kms:ViaService`: matches only calls made by an AWS service.
    pub via_service: bool,
}

/// Each function's statements, as `template.yaml` declares them.
pub fn policies(template: &Value) -> HashMap<String, Vec<Statement>> {
    let mut out = HashMap::new();
    let resources = template["Resources"].as_mapping().expect("Resources");
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let mut statements = Vec::new();
        for policy in list(&resource["Properties"]["Policies"]) {
            for s in list(&policy["Statement"]) {
                assert_eq!(s["Effect"].as_str(), Some("Allow"), "only Allow statements");
                let (mut purposes, mut via_service) = (None, false);
                if let Some(condition) = s.get("Condition") {
                    for (operator, keys) in condition.as_mapping().expect("a condition map") {
                        assert_eq!(operator.as_str(), Some("StringEquals"), "teach the proxy {operator:?}");
                        for (key, values) in keys.as_mapping().expect("condition keys") {
                            match key.as_str() {
                                Some("kms:EncryptionContext:purpose") => {
                                    purposes = Some(
                                        list(values)
                                            .into_iter()
                                            .filter_map(Value::as_str)
                                            .map(str::to_owned)
                                            .collect(),
                                    );
                                }
                                Some("kms:ViaService") => via_service = true,
                                other => panic!("teach the proxy the condition key {other:?}"),
                            }
                        }
                    }
                }
                statements.push(Statement {
                    actions: list(&s["Action"])
                        .into_iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    resources: list(&s["Resource"]).into_iter().map(referenced).collect(),
                    purposes,
                    via_service,
                });
            }
        }
        out.insert(id.as_str().expect("logical id").to_owned(), statements);
    }
    out
}

/// `template.yaml` as parsed YAML.
pub fn template() -> Value {
    let path = format!("{}/template.yaml", crate::ROOT);
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("YAML")
}

/// What one request needs: an action on a resource, with the request context IAM sees.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub action: String,
    /// A logical id, or `?name` for a resource the stack does not know.
    pub resource: String,
    pub purpose: Option<String>,
}

impl Statement {
    fn allows(&self, need: &Need) -> bool {
        self.actions.contains(&need.action)
            && self.resources.contains(&need.resource)
            && !self.via_service
            && self
                .purposes
                .as_ref()
                .is_none_or(|p| need.purpose.as_ref().is_some_and(|n| p.contains(n)))
    }
}

/// A request the proxy checked: who sent it and what it needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub role: Role,
    pub needs: Vec<Need>,
    pub allowed: bool,
}

/// The stack's local names, to map requests back to the template's logical ids.
#[derive(Debug, Clone)]
pub struct Names {
    pub tables: HashMap<String, String>,
    pub token_key_id: String,
    /// Other KMS keys the roles were granted as they are `TokenKey` (a move to a new key).
    pub other_token_keys: Vec<String>,
    pub client_secret_id: String,
    pub event_bus_name: String,
    pub events_failure_queue_url: String,
    pub parking_queue_url: String,
}

impl Names {
    fn table(&self, name: &str) -> String {
        self.tables.get(name).cloned().unwrap_or_else(|| format!("?{name}"))
    }
}

/// What a request needs, from its `X-Amz-Target` and JSON body.
pub fn needs(target: &str, body: &Json, names: &Names) -> Vec<Need> {
    let (service, operation) = target.split_once('.').unwrap_or((target, ""));
    let need = |action: String, resource: String| Need {
        action,
        resource,
        purpose: None,
    };
    match service {
        s if s.starts_with("DynamoDB_") => {
            let table = |b: &Json| names.table(b["TableName"].as_str().unwrap_or_default());
            match operation {
                "TransactWriteItems" | "TransactGetItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.as_object()?.iter().next())
                    .map(|(kind, inner)| {
                        let action = match kind.as_str() {
                            "Put" => "PutItem",
                            "Update" => "UpdateItem",
                            "Delete" => "DeleteItem",
                            "ConditionCheck" => "ConditionCheckItem",
                            "Get" => "GetItem",
                            other => panic!("a transaction item the proxy does not know: {other}"),
                        };
                        need(format!("dynamodb:{action}"), table(inner))
                    })
                    .collect(),
                "BatchGetItem" | "BatchWriteItem" => body["RequestItems"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, _)| need(format!("dynamodb:{operation}"), names.table(name)))
                    .collect(),
                _ => {
                    let mut resource = table(body);
                    if let Some(index) = body["IndexName"].as_str() {
                        resource = format!("{resource}/index/{index}");
                    }
                    vec![need(format!("dynamodb:{operation}"), resource)]
                }
            }
        }
        "TrentService" => {
            let key = body["KeyId"].as_str();
            // A symmetric Decrypt names no key: the ciphertext says which, and the stack
            // has one.
            let resource = match key {
                None => "TokenKey".to_owned(),
                Some(k)
                    if std::iter::once(&names.token_key_id)
                        .chain(&names.other_token_keys)
                        .any(|id| k == id || k.ends_with(id.as_str())) =>
                {
                    "TokenKey".to_owned()
                }
                Some(k) => format!("?{k}"),
            };
            vec![Need {
                action: format!("kms:{operation}"),
                resource,
                purpose: body["EncryptionContext"]["purpose"].as_str().map(str::to_owned),
            }]
        }
        "secretsmanager" => {
            let id = body["SecretId"].as_str().unwrap_or_default();
            let resource = if id == names.client_secret_id {
                "ClientSecret".to_owned()
            } else {
                format!("?{id}")
            };
            vec![need(format!("secretsmanager:{operation}"), resource)]
        }
        "AWSEvents" => body["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let bus = e["EventBusName"].as_str().unwrap_or("default");
                let resource = if bus == names.event_bus_name {
                    "EventBus".to_owned()
                } else {
                    format!("?{bus}")
                };
                need(format!("events:{operation}"), resource)
            })
            .collect(),
        "AmazonSQS" => {
            let url = body["QueueUrl"].as_str().unwrap_or_default();
            let resource = if url == names.events_failure_queue_url {
                "EventsFailures".to_owned()
            } else if url == names.parking_queue_url {
                "ParkedSignIns".to_owned()
            } else {
                format!("?{url}")
            };
            // IAM authorizes a batch by its single-message action.
            let action = operation.strip_suffix("Batch").unwrap_or(operation);
            vec![need(format!("sqs:{action}"), resource)]
        }
        other => vec![need(format!("{other}:{operation}"), "?".to_owned())],
    }
}

/// The proxy: checks each role's request against its policy, forwards the allowed.
#[derive(Clone)]
pub struct IamProxy {
    pub url: String,
    log: Arc<Mutex<Vec<Checked>>>,
    names: Arc<Mutex<Names>>,
    delays: Delays,
    latency: Latency,
    answers: Answers,
}

/// Operations to answer with an error instead of forwarding them: the error's JSON body
/// and how many more requests get it.
type Answers = Arc<Mutex<HashMap<String, (Json, u32)>>>;

/// Added to every request, in microseconds: how far AWS is (a benchmark's production-like
/// run).
type Latency = Arc<std::sync::atomic::AtomicU64>;

/// Operations (the `X-Amz-Target` after its dot) to hold.
type Delays = Arc<Mutex<HashMap<String, Hold>>>;

/// How an operation's requests are held.
#[derive(Debug)]
struct Hold {
    /// How long; `None`: until [`IamProxy::release`] opens the gate.
    wait: Option<std::time::Duration>,
    /// For how many more requests.
    left: u32,
    /// How many were held so far.
    held: u32,
    /// Opened by [`IamProxy::release`]: every request waiting on it goes on.
    gate: tokio::sync::watch::Sender<bool>,
}

impl Hold {
    fn new(wait: Option<std::time::Duration>, left: u32) -> Self {
        Self {
            wait,
            left,
            held: 0,
            gate: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl std::fmt::Debug for IamProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamProxy")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    policies: Arc<HashMap<String, Vec<Statement>>>,
    names: Arc<Mutex<Names>>,
    log: Arc<Mutex<Vec<Checked>>>,
    /// KMS keys (by key id) that refuse cryptographic calls, with KMS's error for it.
    refusing_keys: Arc<Mutex<HashMap<String, &'static str>>>,
    delays: Delays,
    latency: Latency,
    answers: Answers,
}

/// The key id of a KMS `KeyId` (a key id, or a key's ARN).
fn key_id(key: &str) -> &str {
    key.rsplit_once(":key/").map_or(key, |(_, id)| id)
}

/// How a KMS key-state call that passed changes what the key answers; `None` for any
/// other call.
fn key_state_change(operation: &str) -> Option<Option<&'static str>> {
    match operation {
        // A key whose deletion is cancelled is left disabled, as KMS leaves it.
        "DisableKey" | "CancelKeyDeletion" => Some(Some("DisabledException")),
        "ScheduleKeyDeletion" => Some(Some("KMSInvalidStateException")),
        "EnableKey" => Some(None),
        _ => None,
    }
}

/// The aliases of the KMS key `key`, asked of moto.
async fn aliases_of(proxy: &Proxy, key: &str) -> Vec<String> {
    let answer = proxy
        .http
        .post(format!("{}/", proxy.upstream))
        .header("x-amz-target", "TrentService.ListAliases")
        // moto routes by the signature's credential scope; it checks nothing else.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/x-amz-json-1.1")
        .body(serde_json::json!({"KeyId": key}).to_string())
        .send()
        .await
        .expect("moto answers ListAliases");
    let json: Json = serde_json::from_slice(&answer.bytes().await.expect("ListAliases answer")).expect("its JSON");
    json["Aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|alias| alias["AliasName"].as_str().map(str::to_owned))
        .collect()
}

/// What KMS answers a cryptographic call on a key in a refusing state.
fn refused_by_key_state(error: &str) -> Response {
    let message = match error {
        "DisabledException" => "The key is disabled.",
        _ => "The key is pending deletion.",
    };
    Response::builder()
        .status(400)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", error)
        .body(Body::from(
            serde_json::json!({"__type": error, "message": message}).to_string(),
        ))
        .expect("response")
}

impl IamProxy {
    /// Starts a proxy to `upstream` (moto) on a free loopback port.
    pub async fn start(upstream: &str, names: Names) -> IamProxy {
        let log = Arc::new(Mutex::new(Vec::new()));
        let names = Arc::new(Mutex::new(names));
        let delays = Delays::default();
        let latency = Latency::default();
        let answers = Answers::default();
        let state = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().build().expect("HTTP client"),
            policies: Arc::new(policies(&template())),
            names: Arc::clone(&names),
            log: Arc::clone(&log),
            refusing_keys: Arc::default(),
            delays: Arc::clone(&delays),
            latency: Arc::clone(&latency),
            answers: Arc::clone(&answers),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind IAM proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IamProxy {
            url,
            log,
            names,
            delays,
            latency,
            answers,
        }
    }

    /// Answers the next `count` requests of `operation` (`TransactWriteItems`,
    /// `UpdateItem`, or `UpdateItem GrantsTable` for one table's) with the AWS error `body` (its `__type` names the error; a
    /// cancelled transaction's `CancellationReasons` go beside it), as DynamoDB does under
    /// load: HTTP 400. Every attempt counts, the SDK's own retries included.
    pub fn answer_with(&self, operation: &str, body: Json, count: u32) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(operation.to_owned(), (body, count));
    }

    /// Adds `latency` to every request from now on (zero: none), as a round trip to AWS
    /// takes in production.
    pub fn set_latency(&self, latency: std::time::Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.store(micros, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds the next `count` requests of `operation` (`PutItem`, `TransactWriteItems`,
    /// `Decrypt`, …) for `delay` before forwarding them.
    pub fn delay(&self, operation: &str, delay: std::time::Duration, count: u32) {
        self.set_hold(operation, Hold::new(Some(delay), count));
    }

    /// Holds the next `count` requests of `operation` until [`IamProxy::release`], however
    /// long that takes: a window in which a test acts, as wide on a slow machine as on a
    /// fast one.
    pub fn hold(&self, operation: &str, count: u32) {
        self.set_hold(operation, Hold::new(None, count));
    }

    /// Holds every request of `operation` for longer than any budget (the store down for
    /// it) until [`IamProxy::release`].
    pub fn hang(&self, operation: &str) {
        self.delay(operation, std::time::Duration::from_secs(30), u32::MAX);
    }

    /// Ends [`IamProxy::hold`], [`IamProxy::hang`] or [`IamProxy::delay`] for `operation`:
    /// the requests held by `hold` go on now, and its next requests go through at once.
    pub fn release(&self, operation: &str) {
        self.set_hold(operation, Hold::new(None, 0));
    }

    /// Replaces `operation`'s hold, opening the gate of the one it replaces.
    fn set_hold(&self, operation: &str, hold: Hold) {
        let replaced = self
            .delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(operation.to_owned(), hold);
        if let Some(replaced) = replaced {
            replaced.gate.send_replace(true);
        }
    }

    /// How many requests of `operation` were held since [`IamProxy::delay`] or
    /// [`IamProxy::hold`] named it: a test waits for one to be in flight before it acts.
    pub fn held(&self, operation: &str) -> u32 {
        self.delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(operation)
            .map_or(0, |hold| hold.held)
    }

    /// Waits (up to a minute, then panics: a test that never gets there is broken) until
    /// a request of `operation` is held.
    pub async fn until_held(&self, operation: &str) {
        for _ in 0..6_000 {
            if self.held(operation) > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no {operation} request was ever held");
    }

    /// The harness's own access through the proxy (no role: nothing is checked), for the
    /// calls the proxy must see pass, such as `DisableKey`.
    pub fn admin(&self, aws: &aws_config::SdkConfig) -> aws_config::SdkConfig {
        aws.to_builder().endpoint_url(&self.url).build()
    }

    /// The operator granted the roles the KMS key `key_id` wherever they have `TokenKey`
    /// (a move to another key, as `reencrypt --to-key` makes).
    pub fn grant_key_as_token_key(&self, key_id: &str) {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .other_token_keys
            .push(key_id.to_owned());
    }

    /// The operator granted the roles `table` wherever they have `logical_id` (a restored
    /// table, as the README's restore procedure says).
    pub fn grant_table_as(&self, table: &str, logical_id: &str) {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tables
            .insert(table.to_owned(), logical_id.to_owned());
    }

    /// Every request a role sent so far.
    pub fn checked(&self) -> Vec<Checked> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The access key id of a SigV4 `Authorization` header.
fn access_key(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next()
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let latency = proxy.latency.load(std::sync::atomic::Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_micros(latency)).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.expect("request body");
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let role = access_key(header("authorization")).and_then(Role::from_access_key);
    let target = header("x-amz-target").to_owned();
    let kms_operation = target.strip_prefix("TrentService.").unwrap_or_default().to_owned();
    let operation = target.rsplit('.').next().unwrap_or_default();
    let held = {
        let mut delays = proxy.delays.lock().unwrap_or_else(PoisonError::into_inner);
        match delays.get_mut(operation) {
            Some(hold) if hold.left > 0 => {
                hold.left -= 1;
                hold.held += 1;
                Some((hold.wait, hold.gate.subscribe()))
            }
            _ => None,
        }
    };
    match held {
        Some((Some(delay), _)) => tokio::time::sleep(delay).await,
        Some((None, mut gate)) => {
            let _ = gate.wait_for(|open| *open).await;
        }
        None => {}
    }
    let answer = {
        // Keyed by the operation, or by the operation and the table it writes (by the
        // template's logical id: `UpdateItem GrantsTable`).
        let table = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|json| json["TableName"].as_str().map(str::to_owned))
            .map(|name| proxy.names.lock().unwrap_or_else(PoisonError::into_inner).table(&name));
        let on_table = table.map(|t| format!("{operation} {t}"));
        let mut answers = proxy.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let key = on_table
            .filter(|k| answers.contains_key(k))
            .unwrap_or_else(|| operation.to_owned());
        match answers.get_mut(&key) {
            Some((body, left)) if *left > 0 => {
                *left -= 1;
                Some(body.clone())
            }
            _ => None,
        }
    };
    if let Some(body) = answer {
        let error = body["__type"].as_str().unwrap_or("InternalServerError").to_owned();
        return Response::builder()
            .status(400)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-errortype", error)
            .body(Body::from(body.to_string()))
            .expect("response");
    }
    let named_key = serde_json::from_slice::<Json>(&body)
        .ok()
        .and_then(|json| json["KeyId"].as_str().map(|key| key_id(key).to_owned()));
    if let (Some(key), "Decrypt" | "GenerateDataKey" | "Encrypt" | "ReEncrypt") = (&named_key, kms_operation.as_str()) {
        let refusing = proxy
            .refusing_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied();
        if let Some(error) = refusing {
            return refused_by_key_state(error);
        }
    }
    if let Some(role) = role {
        let json: Json = serde_json::from_slice(&body).unwrap_or_default();
        let needs = needs(
            &target,
            &json,
            &proxy.names.lock().unwrap_or_else(PoisonError::into_inner),
        );
        let statements = proxy
            .policies
            .get(role.function())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let refused: Vec<&Need> = needs
            .iter()
            .filter(|n| !statements.iter().any(|s| s.allows(n)))
            .collect();
        let allowed = refused.is_empty() && !needs.is_empty();
        if !allowed {
            eprintln!(
                "IAM: {} may not {target}: no statement allows {refused:?}",
                role.function()
            );
        }
        proxy.log.lock().unwrap_or_else(PoisonError::into_inner).push(Checked {
            role,
            needs: needs.clone(),
            allowed,
        });
        if !allowed {
            let message = format!(
                "User: arn:aws:sts::123456789012:assumed-role/{}/test is not authorized to perform: {} \
                 because no identity-based policy allows the action",
                role.function(),
                refused.first().map_or(target.as_str(), |n| n.action.as_str())
            );
            return Response::builder()
                .status(400)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-errortype", "AccessDeniedException")
                .body(Body::from(
                    serde_json::json!({"__type": "AccessDeniedException", "message": message}).to_string(),
                ))
                .expect("response");
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("IAM proxy: moto unreachable: {e}")))
                .expect("response");
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
            response = response.header(name, value);
        }
    }
    if let (Some(key), Some(change), true) = (
        named_key,
        key_state_change(&kms_operation),
        answer.status().is_success(),
    ) {
        // A call may name the key by an alias: the state is the key's, whatever names it.
        let mut names = aliases_of(&proxy, &key).await;
        names.push(key);
        let mut refusing = proxy.refusing_keys.lock().unwrap_or_else(PoisonError::into_inner);
        for name in names {
            match change {
                Some(error) => refusing.insert(name, error),
                None => refusing.remove(&name),
            };
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).expect("response")
}
