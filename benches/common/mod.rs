//! Timing helpers shared by the benches: run a command, measure wall time
//! and peak RSS, take medians.

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs of each tool per case (after one warm-up run each).
pub const RUNS: usize = 7;

/// Wall time and peak RSS (KiB) of one run of a command, stdout discarded.
// The child is reaped by wait4 below, which also returns its own rusage.
#[allow(clippy::zombie_processes)]
pub fn measure(program: &str, args: &[&str], dir: &Path) -> (Duration, i64) {
    let start = Instant::now();
    let errors = dir.join("stderr.txt");
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"));
    let mut status = 0;
    // SAFETY: wait4 on our own child; rusage is plain data we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let elapsed = start.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    assert!(
        status.success(),
        "{program} {args:?} failed: {status}: {}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    (elapsed, usage.ru_maxrss)
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs a shell script in `dir`, panicking if it fails.
pub fn sh(dir: &Path, script: &str) {
    let ok = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .status()
        .expect("bash")
        .success();
    assert!(ok, "fixture script failed: {script}");
}
