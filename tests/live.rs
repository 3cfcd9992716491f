//! Live block copy, backup and external snapshots in attach mode, against
//! a real qemu-storage-daemon that exports its disk over NBD so that the
//! test can write into it (as a guest would) while the jobs run. Contents
//! are checked with qemu-img once the daemon has stopped.

mod common;

use common::{require_tool, stderr, stdout, Daemon, Fixture};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// disk.qcow2 (64 MiB, 0x11 in the first 32 MiB) over base.qcow2 (0x22 at
/// 40-48M), in `dir`; the guest content goes to `dir/t0.raw`.
fn disk(fx: &Fixture, dir: &str) {
    fx.sh(&format!(
        "mkdir -p {dir} && cd {dir}
         qemu-img create -q -f qcow2 base.qcow2 64M
         qemu-io -c 'write -P 0x22 40M 8M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 disk.qcow2
         qemu-io -c 'write -P 0x11 0 32M' disk.qcow2 >/dev/null
         qemu-img convert -O raw disk.qcow2 t0.raw"
    ));
}

/// Sends `commands` to the daemon's monitor, in order, and returns their
/// results; any error reply fails the test.
fn qmp(socket: &std::path::Path, commands: &[(&str, Value)]) -> Vec<Value> {
    let stream = UnixStream::connect(socket).expect("connect to the QMP socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a QMP reply");
        let v: Value = serde_json::from_str(&line).expect("QMP JSON");
        if v.get("event").is_none() {
            return v;
        }
    };
    reply();
    let mut results = Vec::new();
    for (command, arguments) in [("qmp_capabilities", json!({}))]
        .into_iter()
        .chain(commands.iter().map(|(c, a)| (*c, a.clone())))
    {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(writer, "{request}").unwrap();
        let r = reply();
        assert!(r.get("error").is_none(), "{command}: {r}");
        results.push(r["return"].clone());
    }
    results.remove(0);
    results
}

/// The daemon on `dir/disk.qcow2` (node `top`), with the node exported
/// writable over NBD; returns the daemon and the export's URI.
fn daemon_with_export(fx: &Fixture, dir: &str) -> (Daemon, String) {
    require_tool("qemu-io");
    let daemon = Daemon::start(fx, dir, "disk.qcow2");
    let nbd = fx.path(dir).join("nbd.sock");
    qmp(
        &daemon.socket,
        &[
            (
                "nbd-server-start",
                json!({ "addr": { "type": "unix", "data": { "path": nbd.display().to_string() } } }),
            ),
            (
                "block-export-add",
                json!({ "type": "nbd", "id": "guest", "node-name": "top", "writable": true, "name": "disk" }),
            ),
        ],
    );
    let uri = format!("nbd+unix:///disk?socket={}", nbd.display());
    (daemon, uri)
}

/// Writes `pattern` at `offset` for `len` through the export, as a guest.
fn guest_write(fx: &Fixture, uri: &str, pattern: u8, offset: &str, len: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c"])
        .arg(format!("write -P {pattern:#x} {offset} {len}"))
        .arg(uri)
        .current_dir(fx.dir())
        .output()
        .expect("run qemu-io");
    assert!(out.status.success(), "qemu-io write: {}", stderr(&out));
}

/// What the guest sees now, read through the export into `dir/NAME`.
fn guest_content(fx: &Fixture, uri: &str, name: &str) {
    let out = fx.qemu_img(&["convert", "-f", "raw", "-O", "raw", uri, name]);
    assert!(out.status.success(), "read the export: {}", stderr(&out));
}

/// The daemon's block jobs, as `qimg job list --output json` shows them.
fn jobs(fx: &Fixture, sock: &str) -> Vec<Value> {
    let text = ok(fx, &["job", "--attach", sock, "list", "--output", "json"]);
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn ok(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.qimg(args);
    assert!(out.status.success(), "qimg {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs qimg in the background.
fn spawn(fx: &Fixture, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(args)
        .current_dir(fx.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qimg")
}

/// Waits for `child` (at most a minute) and returns its output.
fn finish(child: std::process::Child) -> std::process::Output {
    let start = Instant::now();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > Duration::from_secs(60) {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("qimg did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().unwrap()
}

#[test]
fn mirror_with_guest_writes_during_the_copy_then_pivot() {
    let fx = Fixture::new();
    disk(&fx, "m");
    let (mut daemon, uri) = daemon_with_export(&fx, "m");
    let sock = daemon.socket.display().to_string();
    // Slow enough (64 MiB at 16 MiB/s) that the write lands mid-copy.
    let mirror = spawn(
        &fx,
        &[
            "mirror",
            "--attach",
            &sock,
            "--device",
            "top",
            "-r",
            "16M",
            "m/new.qcow2",
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    guest_write(&fx, &uri, 0x77, "30M", "4M");
    guest_content(&fx, &uri, "m/t1.raw");
    let out = finish(mirror);
    assert!(out.status.success(), "mirror: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Mirror complete: the VM now runs on the target.\n"
    );
    // After the pivot the guest writes into the target only.
    guest_write(&fx, &uri, 0x88, "60M", "1M");
    guest_content(&fx, &uri, "m/t2.raw");
    daemon.stop();
    fx.assert_clean("m/new.qcow2");
    fx.assert_same("m/t2.raw", "m/new.qcow2");
    fx.assert_same("m/t1.raw", "m/disk.qcow2");
    // --sync full: the target stands alone.
    let info = stdout(&fx.qemu_img(&["info", "m/new.qcow2"]));
    assert!(!info.contains("backing file"), "{info}");
}

#[test]
fn mirror_top_keeps_the_backing_file_and_no_pivot_leaves_the_job_ready() {
    let fx = Fixture::new();
    disk(&fx, "t");
    let (mut daemon, uri) = daemon_with_export(&fx, "t");
    let sock = daemon.socket.display().to_string();
    let out = fx.qimg(&[
        "mirror",
        "--attach",
        &sock,
        "--device",
        "top",
        "--sync",
        "top",
        "--no-pivot",
        "--job-id",
        "copy1",
        "t/new.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'copy1' is ready"),
        "{}",
        stderr(&out)
    );
    let listed = jobs(&fx, &sock);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "copy1", "{listed:?}");
    assert_eq!(listed[0]["status"], "ready", "{listed:?}");
    // Still mirrored while ready; then completed by hand.
    guest_write(&fx, &uri, 0x99, "1M", "1M");
    guest_content(&fx, &uri, "t/t1.raw");
    ok(&fx, &["job", "--attach", &sock, "complete", "copy1"]);
    let start = Instant::now();
    while !jobs(&fx, &sock).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
    fx.assert_clean("t/new.qcow2");
    fx.assert_same("t/t1.raw", "t/new.qcow2");
    let info = stdout(&fx.qemu_img(&["info", "t/new.qcow2"]));
    assert!(info.contains("backing file: "), "{info}");
    assert!(info.contains("base.qcow2"), "{info}");
}

#[test]
fn an_interrupted_mirror_leaves_the_vm_on_its_source() {
    let fx = Fixture::new();
    disk(&fx, "c");
    let (mut daemon, uri) = daemon_with_export(&fx, "c");
    let sock = daemon.socket.display().to_string();
    let mirror = spawn(
        &fx,
        &[
            "mirror",
            "--attach",
            &sock,
            "--device",
            "top",
            "-r",
            "1M",
            "c/new.qcow2",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(mirror.id() as i32, libc::SIGINT) };
    let out = finish(mirror);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    guest_write(&fx, &uri, 0x55, "2M", "1M");
    guest_content(&fx, &uri, "c/t1.raw");
    daemon.stop();
    fx.assert_same("c/t1.raw", "c/disk.qcow2");
    fx.assert_clean("c/disk.qcow2");
}

#[test]
fn full_then_two_incremental_backups_restore_each_point_in_time() {
    let fx = Fixture::new();
    disk(&fx, "b");
    let (mut daemon, uri) = daemon_with_export(&fx, "b");
    let sock = daemon.socket.display().to_string();
    ok(
        &fx,
        &[
            "bitmap", "--attach", &sock, "--device", "top", "--add", "nightly",
        ],
    );
    let out = ok(
        &fx,
        &[
            "backup",
            "--attach",
            &sock,
            "--device",
            "top",
            "b/full.qcow2",
        ],
    );
    assert_eq!(out, "Backup complete.\n");
    guest_write(&fx, &uri, 0xa1, "4M", "1M");
    guest_write(&fx, &uri, 0xa2, "50M", "64k");
    guest_content(&fx, &uri, "b/t1.raw");
    ok(
        &fx,
        &[
            "backup",
            "--attach",
            &sock,
            "--device",
            "top",
            "--sync",
            "incremental",
            "--bitmap",
            "nightly",
            "b/inc1.qcow2",
        ],
    );
    guest_write(&fx, &uri, 0xb1, "5M", "2M");
    guest_content(&fx, &uri, "b/t2.raw");
    ok(
        &fx,
        &[
            "backup",
            "--attach",
            &sock,
            "--device",
            "top",
            "--sync",
            "incremental",
            "--bitmap",
            "nightly",
            "-c",
            "b/inc2.qcow2",
        ],
    );
    daemon.stop();
    // An incremental backup holds only what changed since the one before.
    let allocated = |image: &str| -> u64 {
        let map: Value =
            serde_json::from_str(&stdout(&fx.qemu_img(&["map", "--output=json", image]))).unwrap();
        map.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"] == true)
            .map(|e| e["length"].as_u64().unwrap())
            .sum()
    };
    assert!(allocated("b/inc1.qcow2") <= 2 << 20, "inc1 holds too much");
    assert!(allocated("b/inc2.qcow2") <= 3 << 20, "inc2 holds too much");
    ok(
        &fx,
        &[
            "rebase",
            "-u",
            "-b",
            "full.qcow2",
            "-F",
            "qcow2",
            "b/inc1.qcow2",
        ],
    );
    ok(
        &fx,
        &[
            "rebase",
            "-u",
            "-b",
            "inc1.qcow2",
            "-F",
            "qcow2",
            "b/inc2.qcow2",
        ],
    );
    fx.assert_same("b/t0.raw", "b/full.qcow2");
    fx.assert_same("b/t1.raw", "b/inc1.qcow2");
    fx.assert_same("b/t2.raw", "b/inc2.qcow2");
    for image in [
        "b/full.qcow2",
        "b/inc1.qcow2",
        "b/inc2.qcow2",
        "b/disk.qcow2",
    ] {
        fx.assert_clean(image);
    }
    // The bitmap was stored in the disk image (persistent).
    let info = stdout(&fx.qemu_img(&["info", "b/disk.qcow2"]));
    assert!(info.contains("name: nightly"), "{info}");
}

/// The README's live-backup recipe: an external snapshot freezes the disk,
/// qimg copies the frozen image offline, and an active commit folds the
/// overlay back while the guest keeps writing.
#[test]
fn live_backup_recipe_external_snapshot_offline_copy_commit_back() {
    let fx = Fixture::new();
    disk(&fx, "r");
    let (mut daemon, uri) = daemon_with_export(&fx, "r");
    let sock = daemon.socket.display().to_string();
    ok(
        &fx,
        &[
            "snapshot",
            "--attach",
            &sock,
            "--device",
            "top",
            "--external",
            "r/overlay.qcow2",
            "--node-name",
            "overlay",
        ],
    );
    // The guest now writes into the overlay; disk.qcow2 is stable.
    guest_write(&fx, &uri, 0xc1, "8M", "1M");
    ok(
        &fx,
        &["convert", "-O", "qcow2", "r/disk.qcow2", "r/backup.qcow2"],
    );
    guest_write(&fx, &uri, 0xc2, "9M", "1M");
    guest_content(&fx, &uri, "r/t1.raw");
    // Down to disk.qcow2 (by default QEMU commits to the chain's base).
    ok(
        &fx,
        &[
            "commit",
            "--attach",
            &sock,
            "--device",
            "overlay",
            "--base",
            "r/disk.qcow2",
            "-q",
        ],
    );
    guest_write(&fx, &uri, 0xc3, "10M", "1M");
    guest_content(&fx, &uri, "r/t2.raw");
    daemon.stop();
    fx.assert_same("r/t0.raw", "r/backup.qcow2");
    fx.assert_clean("r/backup.qcow2");
    // The commit pivoted: the last write went to disk.qcow2 itself.
    fx.assert_same("r/t2.raw", "r/disk.qcow2");
    fx.assert_clean("r/disk.qcow2");
}

#[test]
fn refusals_are_one_clear_line() {
    let fx = Fixture::new();
    disk(&fx, "f");
    let (mut daemon, _uri) = daemon_with_export(&fx, "f");
    let sock = daemon.socket.display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "backup",
                "--attach",
                &sock,
                "--device",
                "top",
                "--sync",
                "incremental",
                "f/inc.qcow2",
            ],
            "needs --bitmap NAME",
        ),
        (
            &[
                "backup",
                "--attach",
                &sock,
                "--device",
                "top",
                "--sync",
                "incremental",
                "--bitmap",
                "missing",
                "f/inc.qcow2",
            ],
            "missing",
        ),
        (
            &[
                "bitmap", "--attach", &sock, "--device", "top", "--remove", "missing",
            ],
            "missing",
        ),
        (
            &[
                "mirror",
                "--attach",
                &sock,
                "--device",
                "top",
                "f/no/such/dir/new.qcow2",
            ],
            "new.qcow2",
        ),
        (
            &[
                "mirror",
                "--attach",
                &sock,
                "--device",
                "nosuch",
                "f/new.qcow2",
            ],
            "nosuch",
        ),
        (
            &[
                "snapshot",
                "--attach",
                &sock,
                "--device",
                "nosuch",
                "--external",
                "f/o.qcow2",
            ],
            "nosuch",
        ),
        (
            &[
                "stream",
                "--attach",
                &sock,
                "--device",
                "top",
                "--time-limit",
                "1m",
                "--detach",
            ],
            "cannot be used with --detach",
        ),
    ];
    for (args, needle) in cases {
        let out = fx.qimg(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Nothing was left running, and the disk is as it was.
    assert!(jobs(&fx, &sock).is_empty());
    daemon.stop();
    fx.assert_same("f/t0.raw", "f/disk.qcow2");
    fx.assert_clean("f/disk.qcow2");
}

/// Host I/O pressure as PSI shows it, with `some avg10` at `pct`.
fn psi(pct: f64) -> String {
    format!(
        "some avg10={pct:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
    )
}

#[test]
fn when_idle_pauses_the_vmm_job_while_the_host_is_busy() {
    let fx = Fixture::new();
    disk(&fx, "w");
    let mut daemon = Daemon::start(&fx, "w", "disk.qcow2");
    let sock = daemon.socket.display().to_string();
    let pressure = fx.path("w/pressure");
    std::fs::write(&pressure, psi(55.0)).unwrap();
    // 8 MiB of backing data at 2 MiB/s: four seconds of work.
    let stream = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args([
            "stream",
            "--attach",
            &sock,
            "--device",
            "top",
            "-r",
            "2M",
            "--when-idle=20",
            "--progress=json",
        ])
        .env("QIMG_PSI_PATH", &pressure)
        .current_dir(fx.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&pressure, psi(2.0)).unwrap();
    let out = finish(stream);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let at = |event: &str| {
        records
            .iter()
            .position(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event} record: {records:?}"))
    };
    let (paused, resumed) = (at("paused"), at("resumed"));
    assert!(paused < resumed, "{records:?}");
    // While paused the VMM's job made no progress.
    let done: Vec<u64> = records[paused + 1..resumed]
        .iter()
        .map(|r| r["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] == w[1]), "{done:?}");
    // The job's end is an event record too, then the final progress.
    assert!(at("completed") > resumed, "{records:?}");
    let last = records.last().unwrap();
    assert_eq!(last["done"], last["total"], "{records:?}");
    daemon.stop();
    fx.assert_same("w/t0.raw", "w/disk.qcow2");
    let info = stdout(&fx.qemu_img(&["info", "w/disk.qcow2"]));
    assert!(!info.contains("backing file"), "{info}");
}

#[test]
fn a_time_limit_stops_a_paused_attached_stream_and_a_rerun_finishes() {
    let fx = Fixture::new();
    disk(&fx, "l");
    let mut daemon = Daemon::start(&fx, "l", "disk.qcow2");
    let sock = daemon.socket.display().to_string();
    let pressure = fx.path("l/pressure");
    std::fs::write(&pressure, psi(90.0)).unwrap();
    let started = Instant::now();
    let out = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args([
            "stream",
            "--attach",
            &sock,
            "--device",
            "top",
            "-r",
            "1M",
            "--when-idle",
            "--time-limit",
            "2s",
        ])
        .env("QIMG_PSI_PATH", &pressure)
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("time limit"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(jobs(&fx, &sock).is_empty(), "the job was left behind");
    ok(&fx, &["stream", "--attach", &sock, "--device", "top"]);
    daemon.stop();
    fx.assert_same("l/t0.raw", "l/disk.qcow2");
    let info = stdout(&fx.qemu_img(&["info", "l/disk.qcow2"]));
    assert!(!info.contains("backing file"), "{info}");
}

#[test]
fn a_job_error_and_a_vmm_that_dies_are_reported_in_bounded_time() {
    let fx = Fixture::new();
    disk(&fx, "e");
    let (mut daemon, _uri) = daemon_with_export(&fx, "e");
    let sock = daemon.socket.display().to_string();
    // A target whose every write fails with ENOSPC (QEMU's blkdebug), as
    // a full disk would: the job fails with QEMU's reason.
    fx.sh("qemu-img create -q -f qcow2 e/full.qcow2 64M");
    let full = format!(
        "json:{{\"driver\":\"qcow2\",\"file\":{{\"driver\":\"blkdebug\",\"inject-error\":[{{\"event\":\"write_aio\",\"errno\":28}}],\"image\":{{\"driver\":\"file\",\"filename\":\"{}\"}}}}}}",
        fx.path("e/full.qcow2").display()
    );
    let out = fx.qimg(&[
        "mirror",
        "--attach",
        &sock,
        "--device",
        "top",
        "--existing",
        &full,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("failed") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(jobs(&fx, &sock).is_empty());
    // The daemon dies mid-mirror: one line, soon.
    let mirror = spawn(
        &fx,
        &[
            "mirror",
            "--attach",
            &sock,
            "--device",
            "top",
            "-r",
            "1M",
            "e/new.qcow2",
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    daemon.kill();
    let started = Instant::now();
    let out = finish(mirror);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    fx.assert_same("e/t0.raw", "e/disk.qcow2");
}

#[test]
fn mirror_into_an_existing_target() {
    let fx = Fixture::new();
    disk(&fx, "x");
    let (mut daemon, uri) = daemon_with_export(&fx, "x");
    let sock = daemon.socket.display().to_string();
    fx.sh("cd x && qemu-img create -q -f qcow2 there.qcow2 64M && qemu-img info there.qcow2 >/dev/null");
    let out = ok(
        &fx,
        &[
            "mirror",
            "--attach",
            &sock,
            "--device",
            "top",
            "--existing",
            "-f",
            "qcow2",
            "x/there.qcow2",
        ],
    );
    assert!(out.contains("now runs on the target"), "{out}");
    guest_write(&fx, &uri, 0x42, "12M", "1M");
    guest_content(&fx, &uri, "x/t1.raw");
    daemon.stop();
    fx.assert_same("x/t1.raw", "x/there.qcow2");
    fx.assert_clean("x/there.qcow2");
}
