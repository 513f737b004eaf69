//! A Lambda Runtime API on loopback, to run a built function binary exactly the way
//! Lambda does: the binary polls `GET /2018-06-01/runtime/invocation/next`, handles the
//! event, and posts to `/response` or `/error`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

#[derive(Clone)]
struct Runtime {
    timeout: Duration,
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<(String, String)>>>,
    pending: Pending,
    first_poll: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
}

/// A running function binary behind our Runtime API.
pub struct Function {
    child: tokio::process::Child,
    events: mpsc::Sender<(String, String)>,
    pending: Pending,
    first_poll: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
    started: Instant,
    pub logs: Arc<Mutex<String>>,
    server: tokio::task::JoinHandle<()>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    serial: u64,
}

/// The built binary `name` in the target directory (`make test` builds it first).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::ROOT).join("target"));
    let profile = std::env::var("FUNCTION_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` (make test does)",
        path.display()
    );
    path
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// Starts `binary` with `env` against a fresh Runtime API (15 s per invocation).
    pub async fn start(binary: PathBuf, env: &HashMap<String, String>) -> Function {
        Self::start_with_timeout(binary, env, Duration::from_secs(15)).await
    }

    /// Starts `binary`; each invocation's deadline is `timeout` after it is handed out.
    pub async fn start_with_timeout(binary: PathBuf, env: &HashMap<String, String>, timeout: Duration) -> Function {
        let (events_tx, events_rx) = mpsc::channel(16);
        let runtime = Runtime {
            timeout,
            events: Arc::new(tokio::sync::Mutex::new(events_rx)),
            pending: Arc::default(),
            first_poll: Arc::new(tokio::sync::watch::Sender::new(None)),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(runtime.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "auth-code")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", super::aws_endpoint())
            // The caller's environment wins (`Stack::function_env` reaches AWS through
            // the IAM proxy, as the function's role).
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the function binary");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = Arc::clone(&logs);
            readers.push(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut all = logs.lock().expect("logs");
                    all.push_str(&line);
                    all.push('\n');
                }
            }));
        }
        Function {
            child,
            events: events_tx,
            pending: runtime.pending,
            first_poll: runtime.first_poll,
            started,
            logs,
            server,
            readers,
            serial: 0,
        }
    }

    /// Sends one event and waits for the function's answer.
    pub async fn invoke(&mut self, event: &str) -> Outcome {
        self.serial += 1;
        let id = format!("req-{}", self.serial);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id.clone(), tx);
        self.events
            .send((id, event.to_owned()))
            .await
            .expect("runtime API is up");
        tokio::time::timeout(Duration::from_secs(900), rx)
            .await
            .expect("the function answers within 15 minutes")
            .expect("answer delivered")
    }

    /// Time from process start to the first `next` poll: the function's init.
    pub async fn init_duration(&self) -> Duration {
        let mut polled = self.first_poll.subscribe();
        let at = *polled.wait_for(Option::is_some).await.expect("runtime API alive");
        at.map_or(Duration::ZERO, |at| at - self.started)
    }

    /// Waits for the process to exit (after a failed init) and for its output to drain.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the function exits within 30 s")
            .expect("exit status");
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        status
    }

    /// The process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

async fn next(State(runtime): State<Runtime>) -> impl IntoResponse {
    runtime
        .first_poll
        .send_if_modified(|first| first.is_none() && first.replace(Instant::now()).is_none());
    let Some((id, event)) = runtime.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + runtime.timeout.as_millis())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, HeaderValue::from_str(&v).expect("header"));
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:auth-code".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-6745b3c1-2c1b4d7e0f3a5b6c7d8e9f01;Parent=1;Sampled=0".into(),
    );
    (StatusCode::OK, headers, event)
}

fn deliver(runtime: &Runtime, id: &str, outcome: Outcome) -> StatusCode {
    match runtime.pending.lock().expect("pending").remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn respond(State(runtime): State<Runtime>, Path(id): Path<String>, body: String) -> StatusCode {
    deliver(
        &runtime,
        &id,
        Outcome::Response(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))),
    )
}

async fn fail(State(runtime): State<Runtime>, Path(id): Path<String>, body: String) -> StatusCode {
    deliver(
        &runtime,
        &id,
        Outcome::Error(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))),
    )
}

async fn init_error(body: String) -> StatusCode {
    eprintln!("function init failed: {body}");
    StatusCode::ACCEPTED
}
