//! `cargo xtask bench-peers`: builds and runs the `bench-peers` crate (its own workspace,
//! so `cargo test --workspace` never builds candle) in release, passing flags through.

use std::path::Path;
use std::process::{Command, ExitCode};

/// Runs `cargo run --release --manifest-path bench-peers/Cargo.toml -- ARGS`, with the
/// JSON written under the workspace's `target/bench-peers` unless `--out` is given.
pub fn run(args: &[String]) -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("run")
        .arg("--release")
        .arg("--manifest-path")
        .arg(root.join("bench-peers/Cargo.toml"))
        .arg("--");
    if !args.iter().any(|a| a == "--out" || a == "-h" || a == "--help") {
        cmd.arg("--out").arg(root.join("target/bench-peers"));
    }
    cmd.args(args);
    match cmd.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: could not start cargo for bench-peers: {e}");
            ExitCode::FAILURE
        }
    }
}
