//! Attach mode against a real qemu-storage-daemon: stream and commit run
//! by its block layer, job control, waiting, signals, and every failure
//! path bounded and clear. Results are checked with qemu-img after the
//! daemon has stopped.

mod common;

use common::{stderr, stdout, Daemon, Fixture};
use std::process::Command;
use std::time::{Duration, Instant};

/// base (0x11 everywhere) <- mid (0x22 at 8M-16M) <- top (0x33 at 20M),
/// 64 MiB, in `dir`; the top's guest content goes to `dir/before.raw`.
fn chain(fx: &Fixture, dir: &str) {
    fx.sh(&format!(
        "mkdir -p {dir} && cd {dir}
         qemu-img create -q -f qcow2 base.qcow2 64M
         qemu-io -c 'write -P 0x11 0 64M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 0x22 8M 8M' mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 20M 1M' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw"
    ));
}

fn socket(fx: &Fixture, dir: &str) -> String {
    fx.path(dir).join("qmp.sock").display().to_string()
}

fn backing(fx: &Fixture, image: &str) -> Vec<String> {
    stdout(&fx.qemu_img(&["info", image]))
        .lines()
        .filter(|l| l.starts_with("backing file"))
        .map(|l| l.split(" (actual path").next().unwrap().to_string())
        .collect()
}

/// Runs qimg and asserts success.
fn ok(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.qimg(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn stream_whole_and_to_a_base_named_relative_to_the_caller() {
    let fx = Fixture::new();
    for (dir, base) in [("whole", None), ("based", Some("based/base.qcow2"))] {
        chain(&fx, dir);
        let mut daemon = Daemon::start(&fx, dir, "top.qcow2");
        let sock = socket(&fx, dir);
        let mut args = vec!["stream", "--attach", &sock, "--device", "top"];
        if let Some(b) = base {
            // Relative to the caller; the daemon opened it as "base.qcow2".
            args.extend(["--base", b]);
        }
        ok(&fx, &args);
        daemon.stop();
        let top = format!("{dir}/top.qcow2");
        fx.assert_same(&format!("{dir}/before.raw"), &top);
        fx.assert_clean(&top);
        match base {
            None => assert!(backing(&fx, &top).is_empty(), "{dir}"),
            Some(_) => assert_eq!(
                backing(&fx, &top),
                ["backing file: base.qcow2", "backing file format: qcow2"],
                "{dir}"
            ),
        }
    }
}

#[test]
fn commit_intermediate_then_active_with_pivot() {
    let fx = Fixture::new();
    chain(&fx, "c");
    let mut daemon = Daemon::start(&fx, "c", "top.qcow2");
    let sock = socket(&fx, "c");
    let out = ok(
        &fx,
        &[
            "commit",
            "--attach",
            &sock,
            "--device",
            "top",
            "--top",
            "c/mid.qcow2",
            "--base",
            "c/base.qcow2",
        ],
    );
    assert_eq!(out, "Image committed.\n");
    // The daemon now runs top <- base.
    let info = ok(
        &fx,
        &[
            "info",
            "--attach",
            &sock,
            "--device",
            "top",
            "--output=json",
        ],
    );
    let nodes: serde_json::Value = serde_json::from_str(&info).unwrap();
    let files: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["filename"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["top.qcow2", "base.qcow2"], "{info}");
    // Active commit: waits for READY, then pivots.
    ok(&fx, &["commit", "--attach", &sock, "--device", "top", "-q"]);
    daemon.stop();
    fx.assert_same("c/before.raw", "c/base.qcow2");
    fx.assert_same("c/before.raw", "c/top.qcow2");
    fx.assert_clean("c/base.qcow2");
    assert_eq!(
        backing(&fx, "c/top.qcow2"),
        ["backing file: base.qcow2", "backing file format: qcow2"]
    );
}

fn job_json(fx: &Fixture, sock: &str) -> serde_json::Value {
    serde_json::from_str(&ok(fx, &["job", "--attach", sock, "list", "--output=json"])).unwrap()
}

#[test]
fn job_control_pause_resume_speed_cancel_and_wait() {
    let fx = Fixture::new();
    chain(&fx, "j");
    let mut daemon = Daemon::start(&fx, "j", "top.qcow2");
    let sock = socket(&fx, "j");
    let out = ok(
        &fx,
        &[
            "stream", "--attach", &sock, "--device", "top", "-r", "1M", "--job-id", "s1",
            "--detach",
        ],
    );
    assert_eq!(out, "s1\n");
    let jobs = job_json(&fx, &sock);
    assert_eq!(jobs[0]["id"], "s1", "{jobs}");
    assert_eq!(jobs[0]["speed"], 1048576, "{jobs}");
    ok(&fx, &["job", "--attach", &sock, "pause", "s1"]);
    let start = Instant::now();
    while job_json(&fx, &sock)[0]["status"] != "paused" {
        assert!(start.elapsed() < Duration::from_secs(10), "never paused");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&fx, &["job", "--attach", &sock, "resume"]);
    assert_eq!(job_json(&fx, &sock)[0]["status"], "running");
    ok(&fx, &["job", "--attach", &sock, "set-speed", "2M"]);
    assert_eq!(job_json(&fx, &sock)[0]["speed"], 2097152);
    let table = ok(&fx, &["job", "--attach", &sock, "list"]);
    assert!(table.contains("s1") && table.contains("stream"), "{table}");
    ok(&fx, &["job", "--attach", &sock, "cancel", "s1"]);
    let start = Instant::now();
    while job_json(&fx, &sock)
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cancel never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The cancelled stream left a consistent image that still has its backing file.
    daemon.stop();
    fx.assert_clean("j/top.qcow2");
    fx.assert_same("j/before.raw", "j/top.qcow2");
    assert!(!backing(&fx, "j/top.qcow2").is_empty());
    // Resumable: start again detached, then wait for it.
    let mut daemon = Daemon::start(&fx, "j", "top.qcow2");
    ok(
        &fx,
        &[
            "stream", "--attach", &sock, "--device", "top", "--job-id", "s2", "--detach",
        ],
    );
    let out = fx.qimg(&["job", "--attach", &sock, "wait", "--progress=json", "s2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    daemon.stop();
    fx.assert_same("j/before.raw", "j/top.qcow2");
    assert!(backing(&fx, "j/top.qcow2").is_empty());
}

/// Starts `qimg stream --attach` at 1 MiB/s, following the job with JSON
/// progress into `dir/progress`, and returns once the job runs. (A QMP
/// monitor serves one client at a time, so the test cannot ask the daemon
/// itself meanwhile.)
fn follow_slow_stream(fx: &Fixture, sock: &str, dir: &str) -> std::process::Child {
    let log = fx.path(dir).join("progress");
    let child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args([
            "stream",
            "--attach",
            sock,
            "--device",
            "top",
            "-r",
            "1M",
            "--progress=json",
        ])
        .current_dir(fx.dir())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"op\":\"stream\"")
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no job started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn an_interrupt_cancels_the_job_and_exits_130() {
    let fx = Fixture::new();
    chain(&fx, "i");
    let mut daemon = Daemon::start(&fx, "i", "top.qcow2");
    let sock = socket(&fx, "i");
    let child = follow_slow_stream(&fx, &sock, "i");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut child = child;
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(fx.path("i/progress")).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(job_json(&fx, &sock), serde_json::json!([]));
    daemon.stop();
    fx.assert_clean("i/top.qcow2");
    fx.assert_same("i/before.raw", "i/top.qcow2");
}

/// Runs qimg with a bounded wait and expects one clear error line.
fn fails_clearly(fx: &Fixture, args: &[&str], needle: &str) {
    let start = Instant::now();
    let out = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(args)
        .env("QIMG_QMP_TIMEOUT", "2")
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{args:?}: took too long"
    );
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
}

#[test]
fn failures_are_clear_and_bounded() {
    let fx = Fixture::new();
    chain(&fx, "f");
    // Nobody listens.
    let dead = fx.path("f/dead.sock").display().to_string();
    fails_clearly(
        &fx,
        &["stream", "--attach", &dead, "--device", "top"],
        "cannot connect",
    );
    // Something listens but never speaks QMP.
    let silent = fx.path("f/silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let silent = silent.display().to_string();
    fails_clearly(
        &fx,
        &["job", "--attach", &silent, "list"],
        "no reply within 2 s",
    );
    let mut daemon = Daemon::start(&fx, "f", "top.qcow2");
    let sock = socket(&fx, "f");
    fails_clearly(
        &fx,
        &["stream", "--attach", &sock, "--device", "nosuch"],
        "Cannot find device='nosuch' nor node-name='nosuch'",
    );
    fails_clearly(
        &fx,
        &[
            "stream",
            "--attach",
            &sock,
            "--device",
            "top",
            "--base",
            "f/other.qcow2",
        ],
        "Can't find 'f/other.qcow2' in the backing chain",
    );
    // The daemon dies mid-job.
    let child = follow_slow_stream(&fx, &sock, "f");
    daemon.kill();
    let mut child = child;
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(fx.path("f/progress")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("the VMM closed the connection"), "{err}");
    // What the daemon wrote before it died is consistent and readable.
    let check = fx.qemu_img(&["check", "f/top.qcow2"]).status.code();
    assert!(matches!(check, Some(0) | Some(3)), "check exit {check:?}");
    fx.assert_same("f/before.raw", "f/top.qcow2");
}

#[test]
fn a_monitor_over_tcp_works_the_same() {
    let fx = Fixture::new();
    chain(&fx, "t");
    // A free port: bind to 0, read it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Daemon::start_tcp(&fx, "t", "top.qcow2", port);
    let address = format!("tcp:127.0.0.1:{port}");
    ok(&fx, &["stream", "--attach", &address, "--device", "top"]);
    let list = ok(&fx, &["job", "--attach", &address, "list", "--output=json"]);
    assert_eq!(list.trim(), "[]");
    daemon.stop();
    fx.assert_same("t/before.raw", "t/top.qcow2");
    assert!(backing(&fx, "t/top.qcow2").is_empty());
}
