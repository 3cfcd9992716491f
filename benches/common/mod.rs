//! Timing helpers shared by the benches: run a command, measure wall time
//! and peak RSS, take medians.

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
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

/// Cluster size of the generated disks.
const CLUSTER: u64 = 64 << 10;

/// What a generated cluster holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Nothing: a hole in the file.
    Hole,
    /// Written zeros.
    Zeros,
    /// Random bytes (incompressible).
    Random,
    /// A rotated copy of a text (compressible).
    Text,
}

/// Writes a raw test disk of `size` bytes: every 64 KiB cluster is a hole, zeros, random
/// bytes or text, chosen by a fixed generator (30%, 10%, 30%, 30%).
pub fn generate_disk(path: &Path, size: u64) {
    generate_disk_mix(
        path,
        size,
        0x9e37_79b9_7f4a_7c15,
        &[
            (Fill::Hole, 3),
            (Fill::Zeros, 1),
            (Fill::Random, 3),
            (Fill::Text, 3),
        ],
        "qimg is a fast and safe toolkit for virtual disk images. ",
    );
}

/// Writes a raw test disk of `size` bytes whose 64 KiB clusters are
/// chosen among `mix` (each kind with its weight) by a xorshift generator
/// started at `seed`; text clusters repeat `text`, rotated.
pub fn generate_disk_mix(path: &Path, size: u64, seed: u64, mix: &[(Fill, u64)], text: &str) {
    let file = std::fs::File::create(path).expect("create disk");
    file.set_len(size).expect("size disk");
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let text: Vec<u8> = text.bytes().cycle().take(CLUSTER as usize).collect();
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    assert!(total > 0, "an empty mix");
    let mut buf = vec![0u8; CLUSTER as usize];
    for c in 0..size / CLUSTER {
        let mut pick = next() % total;
        let fill = mix
            .iter()
            .find(|(_, w)| {
                let here = pick < *w;
                pick = pick.saturating_sub(*w);
                here
            })
            .map(|(f, _)| *f)
            .expect("a pick below the total weight");
        match fill {
            Fill::Hole => continue,
            Fill::Zeros => buf.fill(0),
            Fill::Random => buf
                .chunks_exact_mut(8)
                .for_each(|w| w.copy_from_slice(&next().to_le_bytes())),
            Fill::Text => {
                let shift = (next() % 64) as usize;
                buf.copy_from_slice(&text);
                buf.rotate_left(shift);
            }
        }
        file.write_all_at(&buf, c * CLUSTER).expect("write disk");
    }
}

/// A temporary directory holding the generated disk of `size` bytes as
/// `disk.raw` and, converted by qemu-img, `disk.qcow2`.
pub fn disk_dir(size: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temporary directory");
    eprintln!(
        "generating a {} MiB disk in {}",
        size >> 20,
        tmp.path().display()
    );
    generate_disk(&tmp.path().join("disk.raw"), size);
    sh(tmp.path(), "qemu-img convert -O qcow2 disk.raw disk.qcow2");
    tmp
}

/// Borrows a list of strings as `&str`s.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Panics with a clear message unless `tool` runs (`tool --version`).
pub fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} not found or not runnable: the benches need it (Debian packages: qemu-utils for qemu-img and qemu-io, time for /usr/bin/time)"
    );
}

/// GNU time, which [`peak_rss`] runs commands under.
pub const GNU_TIME: &str = "/usr/bin/time";

/// Wall time and peak RSS (KiB) of one run of a command, which is killed
/// after `limit`: then the time is `None` and the RSS is the peak it had
/// reached. The RSS comes from GNU time (`/usr/bin/time`, Debian package
/// `time`; see [`require`]), not from our own wait4: a child spawned from
/// this process inherits this process's RSS high-water mark when it execs
/// (about 15 MiB), which would hide the small peaks.
// The child is reaped by wait4 below.
#[allow(clippy::zombie_processes)]
pub fn peak_rss(
    program: &str,
    args: &[&str],
    dir: &Path,
    limit: Duration,
) -> (Option<Duration>, i64) {
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let errors = dir.join("stderr.txt");
    let rss_file = dir.join("rss.txt");
    let _ = std::fs::remove_file(&rss_file);
    let child = Command::new(GNU_TIME)
        .arg("-o")
        .arg(&rss_file)
        .args(["-f", "%M", program])
        .args(args)
        .current_dir(dir)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {GNU_TIME} {program}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    loop {
        // SAFETY: wait4 on our own child; no rusage wanted.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
        assert!(r >= 0, "wait4 failed");
        if r > 0 {
            break;
        }
        if start.elapsed() > limit {
            let reached = grandchild_hwm(pid);
            // SAFETY: signalling the process group we made for the child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            // SAFETY: reaping our own child.
            unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
            return (None, reached);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    assert!(
        status.success(),
        "{program} {args:?} failed: {status}: {}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    let rss = std::fs::read_to_string(&rss_file).expect("GNU time's output");
    let rss = rss.lines().last().unwrap_or("").trim();
    (
        Some(elapsed),
        rss.parse()
            .unwrap_or_else(|_| panic!("GNU time printed {rss:?}, not a size in KiB")),
    )
}

/// VmHWM (KiB) of the child of process `pid` (the command GNU time runs).
fn grandchild_hwm(pid: libc::pid_t) -> i64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let Some(child) = children.split_whitespace().next() else {
        return 0;
    };
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
