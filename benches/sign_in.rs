//! Sign-in benchmark against the local stack (moto + the Google emulator), run by
//! `make bench`. It prints, for the README:
//!
//! - the handler's own time per sign-in: CPU time of the thread that runs the handler,
//!   so waiting on Google and AWS round trips is excluded (the emulator runs on another
//!   thread, moto in another process);
//! - wall time per sign-in (p50, p95) against the local stack, for context;
//! - KMS calls per 100 sign-ins (the data-key cache's effect);
//! - the release binary's size and its init time (process start → first poll of the
//!   Runtime API, including the warm-up fetch of the secret and the JWKS).

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark binary: it prints and may panic"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use google_emulator::CodeSpec;
use offline_access::crypto::{DataKey, KeyError, KeyProvider, KmsKeyProvider, TokenCipher};
use offline_access::signin::SignIn;
use secrecy::SecretBox;

const SIGN_INS: usize = 400;

/// Counts KMS calls on their way through.
struct CountingKeys {
    inner: KmsKeyProvider,
    calls: Arc<AtomicU64>,
}

impl KeyProvider for CountingKeys {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key().await
    }
    async fn decrypt_data_key(&self, wrapped: &[u8]) -> Result<SecretBox<[u8; 32]>, KeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.decrypt_data_key(wrapped).await
    }
}

/// CPU time (user + system) of the calling thread, from /proc (clock ticks of 10 ms).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of the stat line; index 11 and 12 after the command name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // The handler runs on this thread; the emulator's server on its own runtime.
    let emulator_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stack = {
        let _enter = emulator_rt.enter();
        rt.block_on(common::spawn_stack())
    };
    let kms_calls = Arc::new(AtomicU64::new(0));
    let base = common::build_service(&stack.config, &stack.aws, stack.secret_clock.clone());
    let service = SignIn {
        token_endpoint: base.token_endpoint,
        verifier: base.verifier,
        store: base.store,
        cipher: TokenCipher::new(
            CountingKeys {
                inner: KmsKeyProvider::new(
                    aws_sdk_kms::Client::new(&stack.aws),
                    stack.config.common.token_key_id.clone(),
                    &stack.config.common.grants_table,
                ),
                calls: Arc::clone(&kms_calls),
            },
            offline_access::crypto::KeyCacheLimits::default(),
        ),
        secrets: base.secrets,
        clock: base.clock,
        settings: base.settings,
    };

    let events: Vec<String> = (0..SIGN_INS + 20)
        .map(|_| common::android_form_event(&stack.mint(CodeSpec::default()).code))
        .collect();
    // Warm up connections, the secret and the JWKS. KMS calls are counted from the cold
    // start on: generating the first data key is part of the figure.
    for event in &events[SIGN_INS..] {
        assert_eq!(rt.block_on(common::invoke_service(&service, event)).status, 200);
    }

    let mut walls = Vec::with_capacity(SIGN_INS);
    let cpu_before = thread_cpu();
    let started = Instant::now();
    for event in &events[..SIGN_INS] {
        let t = Instant::now();
        let answer = rt.block_on(common::invoke_service(&service, event));
        walls.push(t.elapsed());
        assert_eq!(answer.status, 200);
    }
    let total = started.elapsed();
    let cpu = thread_cpu() - cpu_before;
    walls.sort();
    let kms = kms_calls.load(Ordering::SeqCst);
    let all = SIGN_INS + 20;

    println!("sign-in benchmark: {SIGN_INS} sign-ins, sequential, against moto + the Google emulator");
    println!(
        "  handler CPU time per sign-in (excl. round trips): {:.0} µs",
        cpu.as_secs_f64() * 1e6 / SIGN_INS as f64
    );
    println!(
        "  wall time per sign-in: p50 {:.1} ms, p95 {:.1} ms, mean {:.1} ms",
        percentile(&walls, 0.5).as_secs_f64() * 1e3,
        percentile(&walls, 0.95).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / SIGN_INS as f64
    );
    println!(
        "  KMS calls per 100 sign-ins, from a cold cache: {:.2} ({kms} in {all})",
        kms as f64 * 100.0 / all as f64
    );

    let binary = common::runtime_api::binary("auth-code");
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!("  binary {}: {:.1} MiB", binary.display(), size as f64 / 1_048_576.0);
    let mut inits: Vec<Duration> = (0..7)
        .map(|_| {
            rt.block_on(async {
                let function = common::runtime_api::Function::start(binary.clone(), &stack.env).await;
                function.init_duration().await
            })
        })
        .collect();
    inits.sort();
    println!(
        "  init (process start → ready for the first event, incl. secret + JWKS prefetch): median {:.1} ms, max {:.1} ms",
        percentile(&inits, 0.5).as_secs_f64() * 1e3,
        inits.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    drop(emulator_rt);
}
