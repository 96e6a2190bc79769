//! Running the `engram` binary from the end-to-end tests.

use std::process::Command;

/// Runs `engram ARGS`: whether it succeeded, its stdout and its stderr.
pub fn engram(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("engram runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
