//! What the benchmarks share: timing helpers and running the Python programs they
//! measure ours against on the same stand-ins.

use std::time::Duration;

/// CPU time (user + system) of the calling thread, from /proc (clock ticks of 10 ms).
pub fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of the stat line; index 11 and 12 after the command name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The `p` quantile (0.0–1.0) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `benches/<script>` with the project's Python on a JSON `plan` (and `args`), and
/// returns the one JSON line it prints. Awaited, so the runtime that serves the emulator
/// keeps running meanwhile.
pub async fn run_python(script: &str, plan: &serde_json::Value, args: &[&str]) -> serde_json::Value {
    run_python_with(script, plan, args, &[]).await
}

/// [`run_python`] with `env` set for the program (an `AWS_ENDPOINT_URL` through a proxy
/// that adds latency, say).
pub async fn run_python_with(
    script: &str,
    plan: &serde_json::Value,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let path = std::env::temp_dir().join(format!("{script}-{}.json", std::process::id()));
    std::fs::write(&path, plan.to_string()).expect("write plan");
    let root = crate::ROOT;
    let out = tokio::process::Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/benches/{script}"))
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the Python program (make venv installs it)");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}
