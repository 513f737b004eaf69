//! The project's own tooling, run as `make` runs it.
#![allow(clippy::expect_used, reason = "tests: a panic is a failed test")]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use test_support::ROOT;

/// A moto that starts and never answers (a hung install, a port that never opens) fails
/// `with-moto` after its wait, naming why — it never runs the tests against nothing.
#[test]
fn with_moto_fails_when_moto_never_answers() {
    let dir = std::env::temp_dir().join(format!("with-moto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let silent = dir.join("python");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 30\n").expect("script");
    std::fs::set_permissions(&silent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ran = dir.join("ran");

    let out = Command::new(format!("{ROOT}/infra/local/with-moto"))
        .args(["touch", ran.to_str().expect("path")])
        .env("WITH_MOTO_PYTHON", &silent)
        .env("WITH_MOTO_WAIT_SECS", "2")
        .output()
        .expect("with-moto runs");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it fails: {stderr}");
    assert!(stderr.contains("moto did not answer"), "{stderr}");
    assert!(!ran.exists(), "the command was not run");
    let _ = std::fs::remove_dir_all(&dir);
}
