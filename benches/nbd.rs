//! Copies out of an NBD export: qimg against `qemu-img convert` and
//! against `nbdcopy` (libnbd's copy tool), reading the generated 2 GiB
//! disk (see the convert bench: about a third holes, a tenth zeros) from
//! two servers started as people start them: qemu-nbd with its defaults
//! (`--persistent --read-only`, one client at a time) serving the qcow2,
//! and nbdkit's `file` plugin (which advertises multi-conn) serving the
//! raw file; both on unix sockets. Targets: a new local qcow2 and a raw
//! file (nbdcopy writes only raw). The tools run interleaved, three runs
//! each, medians. Run with `cargo bench --bench nbd`.

mod common;

use common::{disk_dir, measure, median};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: u64 = 2 << 30;
const RUNS: usize = 3;

/// Starts a server that forks once it listens and writes `pidfile`.
fn start(dir: &Path, program: &str, args: &[String], pidfile: &Path) -> i32 {
    let ok = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
        .success();
    assert!(ok, "{program} did not start");
    let begin = Instant::now();
    loop {
        if let Ok(pid) = std::fs::read_to_string(pidfile)
            .unwrap_or_default()
            .trim()
            .parse()
        {
            return pid;
        }
        assert!(
            begin.elapsed() < Duration::from_secs(10),
            "{program}: no pid"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = disk_dir(SIZE);
    let dir = tmp.path();
    let s = |name: &str| dir.join(name).display().to_string();
    let qemu_nbd = start(
        dir,
        "qemu-nbd",
        &[
            "--fork".into(),
            format!("--pid-file={}", s("qemu-nbd.pid")),
            "--persistent".into(),
            "--read-only".into(),
            "--format=qcow2".into(),
            format!("--socket={}", s("qemu-nbd.sock")),
            s("disk.qcow2"),
        ],
        &dir.join("qemu-nbd.pid"),
    );
    let nbdkit = start(
        dir,
        "nbdkit",
        &[
            "-r".into(),
            "-P".into(),
            s("nbdkit.pid"),
            "-U".into(),
            s("nbdkit.sock"),
            "file".into(),
            format!("file={}", s("disk.raw")),
        ],
        &dir.join("nbdkit.pid"),
    );
    let servers = [
        (
            "qemu-nbd (defaults)",
            format!("nbd+unix:///?socket={}", s("qemu-nbd.sock")),
        ),
        (
            "nbdkit file",
            format!("nbd+unix:///?socket={}", s("nbdkit.sock")),
        ),
    ];
    println!(
        "{:<20} {:<6} {:>9} {:>9} {:>9} {:>12} {:>12} {:>10}",
        "server", "target", "qemu-img", "nbdcopy", "qimg", "vs qemu-img", "vs nbdcopy", "qimg RSS"
    );
    for (name, uri) in &servers {
        for target in ["qcow2", "raw"] {
            let out = format!("out.{target}");
            let convert = ["convert", "-O", target, uri.as_str(), out.as_str()];
            let copy = [uri.as_str(), out.as_str()];
            let (mut q, mut n, mut m, mut rss) = (Vec::new(), Vec::new(), Vec::new(), 0);
            for _ in 0..RUNS {
                let _ = std::fs::remove_file(dir.join(&out));
                q.push(measure("qemu-img", &convert, dir).0);
                if target == "raw" {
                    let _ = std::fs::remove_file(dir.join(&out));
                    n.push(measure("nbdcopy", &copy, dir).0);
                }
                let _ = std::fs::remove_file(dir.join(&out));
                let (t, r) = measure(qimg, &convert, dir);
                m.push(t);
                rss = rss.max(r);
            }
            let (q, m) = (median(q).as_secs_f64(), median(m).as_secs_f64());
            let (n_text, vs_n) = if n.is_empty() {
                ("-".to_string(), "-".to_string())
            } else {
                let n = median(n).as_secs_f64();
                (format!("{n:.2}s"), format!("{:.2}x", n / m))
            };
            println!(
                "{:<20} {:<6} {:>8.2}s {:>9} {:>8.2}s {:>11.2}x {:>12} {:>6} KiB",
                name,
                target,
                q,
                n_text,
                m,
                q / m,
                vs_n,
                rss
            );
        }
    }
    for pid in [qemu_nbd, nbdkit] {
        // SAFETY: kill(2) on a server this bench started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
