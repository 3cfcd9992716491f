//! NBD exports wherever a file name goes, against real servers started as
//! people start them: qemu-nbd with its defaults (one client at a time),
//! qemu-nbd --shared=2, nbdkit's file and memory plugins, and an NBD
//! export of qemu-storage-daemon. Per server: info and map compared with
//! qemu-img on the same export, convert from it, convert -n and commit
//! into it where writable, stream of an overlay backed by it. Then the
//! waits: a listener that never greets, a server that stops answering,
//! and SIGTERM/SIGINT during each wait.

mod common;

use common::{require_tool, stderr, stdout, Fixture};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A qemu-nbd serving `image` (as `format`), killed when dropped.
struct QemuNbd {
    child: Child,
    /// The URI of the export.
    uri: String,
}

impl QemuNbd {
    /// Serves `image` from `fx`'s directory on a unix socket (`tcp` false)
    /// or a free 127.0.0.1 port, as export `exp`.
    fn start(fx: &Fixture, image: &str, format: &str, tcp: bool, writable: bool) -> QemuNbd {
        require_tool("qemu-nbd");
        // --persistent because each test runs several commands; the
        // number of clients stays qemu-nbd's default (one at a time).
        let mut args: Vec<String> = vec!["-t".into(), "-x".into(), "exp".into()];
        args.extend(["-f".into(), format.into()]);
        if !writable {
            args.push("-r".into());
        }
        let uri = if tcp {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            args.extend([
                "-b".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ]);
            format!("nbd://127.0.0.1:{port}/exp")
        } else {
            let socket = fx.path(&format!("{image}.sock"));
            let _ = std::fs::remove_file(&socket);
            args.extend(["-k".into(), socket.display().to_string()]);
            format!("nbd+unix:///exp?socket={}", socket.display())
        };
        args.push(image.into());
        let child = Command::new("qemu-nbd")
            .args(&args)
            .current_dir(fx.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-nbd");
        let server = QemuNbd { child, uri };
        let start = Instant::now();
        // Ready once qemu-img can read the export's size.
        while !fx.qemu_img(&["info", &server.uri]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "qemu-nbd never served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn source(fx: &Fixture) {
    fx.sh("qemu-img create -q -f qcow2 src.qcow2 16M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 2M 1M' -c 'write -P 0x22 5M 64k' \
             -c 'write -P 0x33 9M 3M' src.qcow2 >/dev/null");
}

#[test]
fn info_map_and_convert_of_an_export_match_qemu_img() {
    let fx = Fixture::new();
    source(&fx);
    for tcp in [false, true] {
        let server = QemuNbd::start(&fx, "src.qcow2", "qcow2", tcp, false);
        let uri = server.uri.as_str();
        for args in [
            &["map", "--output=json"][..],
            &["map"],
            &["info"],
            &["info", "--output=json"],
        ] {
            let mut all = args.to_vec();
            all.push(uri);
            let ours = fx.qimg(&all);
            assert!(ours.status.success(), "{all:?}: {}", stderr(&ours));
            let theirs = fx.qemu_img(&all);
            assert_eq!(stdout(&ours), stdout(&theirs), "{all:?}");
        }
        let out = fx.qimg(&["convert", "-O", "qcow2", uri, "copy.qcow2"]);
        assert!(out.status.success(), "{}", stderr(&out));
        fx.assert_same("src.qcow2", "copy.qcow2");
        fx.assert_clean("copy.qcow2");
        std::fs::remove_file(fx.path("copy.qcow2")).unwrap();
    }
}

#[test]
fn convert_into_a_writable_export() {
    let fx = Fixture::new();
    source(&fx);
    fx.sh("qemu-img create -q -f raw target.raw 16M");
    let mut server = QemuNbd::start(&fx, "target.raw", "raw", false, true);
    let uri = server.uri.clone();
    let out = fx.qimg(&["convert", "-n", "-O", "raw", "src.qcow2", &uri]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.stop();
    fx.assert_same("src.qcow2", "target.raw");
    // A read-only export is refused for writing.
    let server = QemuNbd::start(&fx, "target.raw", "raw", false, false);
    let out = fx.qimg(&["convert", "-n", "-O", "raw", "src.qcow2", &server.uri]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
}

/// Post-copy migration: the destination's overlay is backed by the source
/// host's disk over NBD; the VM writes into the overlay; qimg streams the
/// rest in (sliced, then whole) and the server goes away.
#[test]
fn post_copy_workflow() {
    let fx = Fixture::new();
    source(&fx);
    for tcp in [false, true] {
        let mut server = QemuNbd::start(&fx, "src.qcow2", "qcow2", tcp, false);
        let out = fx.qimg(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            &server.uri,
            "-F",
            "raw",
            "dest.qcow2",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let info = stdout(&fx.qemu_img(&["info", "dest.qcow2"]));
        assert!(
            info.contains(&format!("backing file: {}", server.uri)),
            "{info}"
        );
        fx.sh(
            "qemu-io -c 'write -P 0x44 512k 64k' -c 'write -P 0x55 10M 8k' dest.qcow2 >/dev/null
             qemu-img convert -O raw dest.qcow2 want.raw",
        );
        for offset in ["8M", "0"] {
            let out = fx.qimg(&[
                "stream",
                "--offset",
                offset,
                "--length",
                "4M",
                "--output=json",
                "dest.qcow2",
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(stdout(&out).contains("\"done\":false"), "{}", stdout(&out));
        }
        let out = fx.qimg(&["stream", "dest.qcow2"]);
        assert!(out.status.success(), "{}", stderr(&out));
        server.stop();
        assert!(!stdout(&fx.qemu_img(&["info", "dest.qcow2"])).contains("backing file"));
        fx.assert_same("want.raw", "dest.qcow2");
        fx.assert_clean("dest.qcow2");
        std::fs::remove_file(fx.path("dest.qcow2")).unwrap();
    }
}

#[test]
fn a_server_killed_mid_stream_is_a_clear_error_and_a_rerun_completes() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 big.qcow2 128M
         qemu-io -c 'write -P 0x66 0 128M' big.qcow2 >/dev/null");
    let mut server = QemuNbd::start(&fx, "big.qcow2", "qcow2", false, false);
    let uri = server.uri.clone();
    let out = fx.qimg(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &uri,
        "-F",
        "raw",
        "dest.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.sh("qemu-io -c 'write -P 0x77 1M 64k' dest.qcow2 >/dev/null");
    let want = {
        fx.sh(&format!("qemu-img convert -O raw '{uri}' want.raw"));
        fx.sh("qemu-io -f raw -c 'write -P 0x77 1M 64k' want.raw >/dev/null");
        "want.raw"
    };
    let child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(["stream", "-r", "8M", "--progress=json", "dest.qcow2"])
        .current_dir(fx.dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.stop();
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "qimg hung after the server died"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("NBD"), "{err}");
    // Still backed; once the server is back the overlay checks consistent,
    // shows the guest what it showed, and a rerun finishes.
    assert!(stdout(&fx.qemu_img(&["info", "dest.qcow2"])).contains("backing file"));
    let socket = uri.split("socket=").nth(1).unwrap().to_string();
    let restarted = Command::new("qemu-nbd")
        .args([
            "-t",
            "-x",
            "exp",
            "-f",
            "qcow2",
            "-r",
            "-k",
            &socket,
            "big.qcow2",
        ])
        .current_dir(fx.dir())
        .spawn()
        .unwrap();
    let mut restarted = QemuNbd {
        child: restarted,
        uri: uri.clone(),
    };
    let start = Instant::now();
    while !fx.qemu_img(&["info", &uri]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = fx.qemu_img(&["check", "dest.qcow2"]).status.code();
    assert!(matches!(check, Some(0) | Some(3)), "check exit {check:?}");
    fx.assert_same(want, "dest.qcow2");
    let out = fx.qimg(&["stream", "dest.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    restarted.stop();
    fx.assert_same(want, "dest.qcow2");
    assert!(!stdout(&fx.qemu_img(&["info", "dest.qcow2"])).contains("backing file"));
}

/// A local overlay whose base is a writable export: commit sends the
/// overlay's data to the server and empties the overlay.
#[test]
fn commit_into_an_export() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw base.raw 8M
         qemu-io -f raw -c 'write -P 0x11 0 8M' base.raw >/dev/null");
    let mut server = QemuNbd::start(&fx, "base.raw", "raw", false, true);
    let uri = server.uri.clone();
    let out = fx.qimg(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &uri,
        "-F",
        "raw",
        "top.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.sh(
        "qemu-io -c 'write -P 0x22 1M 64k' -c 'write -z 3M 64k' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 want.raw",
    );
    let out = fx.qimg(&["commit", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("want.raw", "top.qcow2");
    fx.assert_clean("top.qcow2");
    let map = stdout(&fx.qemu_img(&["map", "--output=json", "top.qcow2"]));
    assert!(
        !map.contains("\"depth\": 0"),
        "the overlay was not emptied:\n{map}"
    );
    server.stop();
    fx.assert_same("want.raw", "base.raw");
}

#[test]
fn an_export_cannot_be_created() {
    let fx = Fixture::new();
    source(&fx);
    for args in [
        &[
            "convert",
            "-O",
            "raw",
            "src.qcow2",
            "nbd://127.0.0.1:10999/x",
        ][..],
        &[
            "create",
            "-f",
            "raw",
            "nbd+unix:///x?socket=/nonexistent.sock",
            "1M",
        ],
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("does not support image creation") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// A server that daemonizes itself once it is ready (qemu-nbd --fork,
/// nbdkit's default, qemu-storage-daemon --daemonize) and writes its pid
/// to a file: the way scripts start them. Killed when dropped.
struct Daemon {
    pid: i32,
    uri: String,
    writable: bool,
    label: &'static str,
}

impl Daemon {
    /// Runs `program args` in `fx` (it returns once the server is ready)
    /// and reads the pid from `pidfile`.
    fn spawn(
        fx: &Fixture,
        label: &'static str,
        program: &str,
        args: &[String],
        pidfile: &std::path::Path,
        uri: String,
        writable: bool,
    ) -> Daemon {
        require_tool(program);
        let out = Command::new(program)
            .args(args)
            .current_dir(fx.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        assert!(out.status.success(), "{label}: {}", stderr(&out));
        // The daemon may write its pid file just after its parent exits.
        let start = Instant::now();
        let pid = loop {
            let text = std::fs::read_to_string(pidfile).unwrap_or_default();
            if let Ok(pid) = text.trim().parse() {
                break pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{label}: no pid in {}",
                pidfile.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Daemon {
            pid,
            uri,
            writable,
            label,
        }
    }

    /// A unix socket path and pid file in `fx` for server `tag`.
    fn paths(fx: &Fixture, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let socket = fx.path(&format!("{tag}.sock"));
        let _ = std::fs::remove_file(&socket);
        (socket, fx.path(&format!("{tag}.pid")))
    }

    /// qemu-nbd serving `image` (absolute in `fx`) with `extra` options.
    fn qemu_nbd(
        fx: &Fixture,
        label: &'static str,
        image: &str,
        format: &str,
        extra: &[&str],
        writable: bool,
        tcp: bool,
    ) -> Daemon {
        let (socket, pidfile) = Self::paths(fx, &format!("qemu-nbd-{image}"));
        let mut args: Vec<String> = vec![
            "--fork".into(),
            format!("--pid-file={}", pidfile.display()),
            "--export-name=exp".into(),
            format!("--format={format}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !writable {
            args.push("--read-only".into());
        }
        let uri = if tcp {
            let port = free_port();
            args.extend(["--bind=127.0.0.1".into(), format!("--port={port}")]);
            format!("nbd://127.0.0.1:{port}/exp")
        } else {
            args.push(format!("--socket={}", socket.display()));
            format!("nbd+unix:///exp?socket={}", socket.display())
        };
        args.push(fx.path(image).display().to_string());
        Self::spawn(fx, label, "qemu-nbd", &args, &pidfile, uri, writable)
    }

    /// nbdkit (which forks once it listens) with `plugin` and its arguments.
    fn nbdkit(fx: &Fixture, label: &'static str, plugin: &[&str], writable: bool) -> Daemon {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nbdkit").is_file()));
        assert!(
            found,
            "nbdkit not found on PATH: these tests serve exports with it; \
             install it with `apt-get install -y nbdkit` (.ci/run does)"
        );
        let (socket, pidfile) = Self::paths(fx, &format!("nbdkit-{}", plugin[0]));
        let mut args: Vec<String> = vec![
            "-P".into(),
            pidfile.display().to_string(),
            "-U".into(),
            socket.display().to_string(),
        ];
        if !writable {
            args.push("-r".into());
        }
        args.extend(plugin.iter().map(|s| s.to_string()));
        let uri = format!("nbd+unix:///?socket={}", socket.display());
        Self::spawn(fx, label, "nbdkit", &args, &pidfile, uri, writable)
    }

    /// qemu-storage-daemon exporting the qcow2 `image` over NBD.
    fn storage_daemon(fx: &Fixture, image: &str) -> Daemon {
        let (socket, pidfile) = Self::paths(fx, "qsd");
        let args: Vec<String> = vec![
            "--daemonize".into(),
            "--pidfile".into(),
            pidfile.display().to_string(),
            "--blockdev".into(),
            format!(
                "driver=file,node-name=file0,filename={}",
                fx.path(image).display()
            ),
            "--blockdev".into(),
            "driver=qcow2,node-name=disk0,file=file0".into(),
            "--nbd-server".into(),
            format!("addr.type=unix,addr.path={}", socket.display()),
            "--export".into(),
            "type=nbd,id=export0,node-name=disk0,name=exp,writable=on".into(),
        ];
        let uri = format!("nbd+unix:///exp?socket={}", socket.display());
        Self::spawn(
            fx,
            "qemu-storage-daemon",
            "qemu-storage-daemon",
            &args,
            &pidfile,
            uri,
            true,
        )
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid this test started.
        unsafe { libc::kill(self.pid, signal) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        // Gone, or a zombie its new parent has not reaped yet.
        let gone = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        while !gone(self.pid) && start.elapsed() < Duration::from_secs(5) {
            if start.elapsed() > Duration::from_secs(3) {
                self.signal(libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that `cmd` succeeds.
fn ok(fx: &Fixture, label: &str, args: &[&str]) -> String {
    let out = fx.qimg(args);
    assert!(
        out.status.success(),
        "{label}: qimg {args:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts that qemu-img sees the same guest bytes in `a` (format `fa`)
/// and `b` (format `fb`).
fn same(fx: &Fixture, label: &str, fa: &str, a: &str, fb: &str, b: &str) {
    let out = fx.qemu_img(&["compare", "-f", fa, "-F", fb, a, b]);
    assert!(
        out.status.success(),
        "{label}: {a} and {b} differ: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Everything a user does with an export, against `server`, whose guest
/// content must equal `content` (a local image of format `format`):
/// convert -n into it (writable ones; `content` is then written in),
/// info and map as qemu-img prints them, convert from it, stream of an
/// overlay backed by it, and commit into it (writable ones).
fn exercise(fx: &Fixture, server: &Daemon, content: &str, format: &str) {
    let (label, uri) = (server.label, server.uri.as_str());
    if server.writable {
        ok(fx, label, &["convert", "-n", "-O", "raw", content, uri]);
        same(fx, label, format, content, "raw", uri);
    }
    for args in [
        &["info"][..],
        &["info", "--output=json"],
        &["map"],
        &["map", "--output=json"],
    ] {
        let mut all = args.to_vec();
        all.push(uri);
        let ours = ok(fx, label, &all);
        let theirs = fx.qemu_img(&all);
        assert!(theirs.status.success(), "{label}: qemu-img {all:?}");
        assert_eq!(ours, stdout(&theirs), "{label}: {all:?}");
    }
    let _ = std::fs::remove_file(fx.path("copy.qcow2"));
    ok(fx, label, &["convert", "-O", "qcow2", uri, "copy.qcow2"]);
    same(fx, label, format, content, "qcow2", "copy.qcow2");
    fx.assert_clean("copy.qcow2");

    let _ = std::fs::remove_file(fx.path("ov.qcow2"));
    ok(
        fx,
        label,
        &[
            "create", "-q", "-f", "qcow2", "-b", uri, "-F", "raw", "ov.qcow2",
        ],
    );
    fx.sh("qemu-io -c 'write -P 0x44 512k 64k' ov.qcow2 >/dev/null
         qemu-img convert -O raw ov.qcow2 want.raw");
    ok(fx, label, &["stream", "ov.qcow2"]);
    assert!(!stdout(&fx.qemu_img(&["info", "ov.qcow2"])).contains("backing file"));
    same(fx, label, "raw", "want.raw", "qcow2", "ov.qcow2");
    fx.assert_clean("ov.qcow2");

    if server.writable {
        let _ = std::fs::remove_file(fx.path("top.qcow2"));
        ok(
            fx,
            label,
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                uri,
                "-F",
                "raw",
                "top.qcow2",
            ],
        );
        fx.sh(
            "qemu-io -c 'write -P 0x55 1M 64k' -c 'write -z 9M 64k' top.qcow2 >/dev/null
             qemu-img convert -O raw top.qcow2 want.raw",
        );
        ok(fx, label, &["commit", "top.qcow2"]);
        same(fx, label, "raw", "want.raw", "raw", uri);
        fx.assert_clean("top.qcow2");
    }
}

/// The content every server serves: data, a zeroed range, holes.
fn content(fx: &Fixture) {
    source(fx);
    fx.sh("qemu-img convert -O raw src.qcow2 src.raw");
}

#[test]
fn qemu_nbd_with_its_defaults() {
    let fx = Fixture::new();
    content(&fx);
    let s = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd",
        "src.qcow2",
        "qcow2",
        &["--persistent"],
        false,
        false,
    );
    exercise(&fx, &s, "src.qcow2", "qcow2");
    drop(s);
    fx.sh("qemu-img create -q -f qcow2 target.qcow2 16M");
    let s = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd (writable)",
        "target.qcow2",
        "qcow2",
        &["--persistent"],
        true,
        false,
    );
    exercise(&fx, &s, "src.qcow2", "qcow2");
}

/// Without --persistent, qemu-nbd serves one client and exits: one
/// convert, and one stream, each over their single connection.
#[test]
fn qemu_nbd_one_client_then_gone() {
    let fx = Fixture::new();
    content(&fx);
    let s = Daemon::qemu_nbd(&fx, "qemu-nbd", "src.qcow2", "qcow2", &[], false, false);
    ok(
        &fx,
        s.label,
        &["convert", "-O", "qcow2", &s.uri, "copy.qcow2"],
    );
    fx.assert_same("src.qcow2", "copy.qcow2");
    drop(s);
    let s = Daemon::qemu_nbd(&fx, "qemu-nbd", "src.qcow2", "qcow2", &[], false, false);
    // -u: create does not open the backing file (that would be the one client).
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 -u -b '{}' -F raw ov.qcow2 16M",
        s.uri
    ));
    ok(&fx, s.label, &["stream", "ov.qcow2"]);
    fx.assert_same("src.qcow2", "ov.qcow2");
    fx.assert_clean("ov.qcow2");
}

#[test]
fn qemu_nbd_shared_2_over_tcp() {
    let fx = Fixture::new();
    content(&fx);
    let s = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd --shared=2",
        "src.qcow2",
        "qcow2",
        &["--persistent", "--shared=2"],
        false,
        true,
    );
    exercise(&fx, &s, "src.qcow2", "qcow2");
}

#[test]
fn nbdkit_file_and_memory() {
    let fx = Fixture::new();
    content(&fx);
    let src = fx.path("src.raw").display().to_string();
    let s = Daemon::nbdkit(&fx, "nbdkit file", &["file", &format!("file={src}")], false);
    exercise(&fx, &s, "src.qcow2", "qcow2");
    drop(s);
    let s = Daemon::nbdkit(&fx, "nbdkit memory", &["memory", "16M"], true);
    exercise(&fx, &s, "src.qcow2", "qcow2");
}

#[test]
fn qemu_storage_daemon_export() {
    let fx = Fixture::new();
    content(&fx);
    fx.sh("qemu-img create -q -f qcow2 target.qcow2 16M");
    let s = Daemon::storage_daemon(&fx, "target.qcow2");
    exercise(&fx, &s, "src.qcow2", "qcow2");
}

/// The legacy spellings reach the same exports.
#[test]
fn legacy_nbd_colon_syntax() {
    let fx = Fixture::new();
    content(&fx);
    let s = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd",
        "src.qcow2",
        "qcow2",
        &["--persistent"],
        false,
        false,
    );
    let socket = s.uri.split("socket=").nth(1).unwrap().to_string();
    let legacy = format!("nbd:unix:{socket}:exportname=exp");
    ok(
        &fx,
        "nbd:unix:",
        &["convert", "-O", "qcow2", &legacy, "copy.qcow2"],
    );
    fx.assert_same("src.qcow2", "copy.qcow2");
    let t = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd",
        "src.raw",
        "raw",
        &["--persistent"],
        false,
        true,
    );
    let port = t
        .uri
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let legacy = format!("nbd:127.0.0.1:{port}:exportname=exp");
    let ours = ok(&fx, "nbd:HOST:PORT", &["map", "--output=json", &legacy]);
    assert_eq!(
        ours,
        stdout(&fx.qemu_img(&["map", "--output=json", &legacy]))
    );
    // info names an export as QEMU does, however it was spelled.
    for uri in [
        legacy,
        format!("nbd://127.0.0.1:{port}/exp"),
        format!("nbd:unix:{socket}:exportname=exp"),
        format!("nbd+unix:///exp?socket={socket}"),
    ] {
        for args in [&["info", &uri][..], &["info", "--output=json", &uri]] {
            assert_eq!(
                ok(&fx, "info", args),
                stdout(&fx.qemu_img(args)),
                "{args:?}"
            );
        }
    }
}

/// A listener that accepts into its backlog and never says a word, on a
/// unix socket and on TCP: one clear error in bounded time.
#[test]
fn a_listener_that_never_greets_is_a_clear_error() {
    let fx = Fixture::new();
    let socket = fx.path("mute.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    for uri in [
        format!("nbd+unix:///exp?socket={}", socket.display()),
        format!("nbd://127.0.0.1:{port}/exp"),
    ] {
        let start = Instant::now();
        let out = assert_cmd::Command::cargo_bin("qimg")
            .unwrap()
            .args(["info", &uri])
            .env("QIMG_NBD_TIMEOUT", "1")
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&uri) && err.contains("no answer to the handshake within 1 s"),
            "{err}"
        );
    }
}

/// Spawns qimg with `args` in `fx`, stderr piped.
fn spawn_qimg(fx: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(fx.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` to `child` and waits for it: the exit code and how long
/// it took to exit.
fn signal_and_wait(child: Child, signal: i32) -> (Option<i32>, Duration, String) {
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as i32, signal) };
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), start.elapsed(), stderr(&out))
}

/// Reads `child`'s stderr until its first progress record.
fn first_progress(child: &mut Child) -> std::io::BufReader<std::process::ChildStderr> {
    use std::io::BufRead;
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("\"done\""), "{line}");
    err
}

/// SIGTERM and SIGINT end a copy waiting for a server's greeting.
#[test]
fn a_signal_ends_the_wait_for_a_greeting() {
    let fx = Fixture::new();
    let socket = fx.path("mute.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let uri = format!("nbd+unix:///exp?socket={}", socket.display());
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let child = spawn_qimg(&fx, &["convert", "-O", "qcow2", &uri, "out.qcow2"], &[]);
        std::thread::sleep(Duration::from_millis(500));
        let (got, took, err) = signal_and_wait(child, signal);
        assert_eq!(got, Some(code), "{err}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(
            err.contains("interrupted while waiting for the server's handshake"),
            "{err}"
        );
        assert!(!fx.path("out.qcow2").exists());
    }
}

/// A big export for the tests that stop its server mid-copy.
fn big_export(fx: &Fixture) -> Daemon {
    fx.sh("qemu-img create -q -f qcow2 big.qcow2 160M
         qemu-io -c 'write -P 0x66 0 160M' big.qcow2 >/dev/null");
    Daemon::qemu_nbd(fx, "qemu-nbd", "big.qcow2", "qcow2", &[], false, false)
}

/// SIGTERM while reads are pending on a server that stopped (SIGSTOP):
/// exit 143 within a second, the target consistent.
#[test]
fn sigterm_ends_pending_reads_and_leaves_the_target_consistent() {
    let fx = Fixture::new();
    let server = big_export(&fx);
    let mut child = spawn_qimg(
        &fx,
        &[
            "convert",
            "-r",
            "8M",
            "--progress=json",
            "-O",
            "qcow2",
            &server.uri,
            "out.qcow2",
        ],
        &[],
    );
    let _err = first_progress(&mut child);
    server.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    let (got, took, _) = signal_and_wait(child, libc::SIGTERM);
    assert_eq!(got, Some(143));
    assert!(took < Duration::from_millis(1200), "{took:?}");
    let check = fx.qemu_img(&["check", "out.qcow2"]).status.code();
    assert!(matches!(check, Some(0) | Some(3)), "check exit {check:?}");
}

/// A server that stops answering mid-copy: one error after the exchange
/// timeout, naming the export and the pending requests.
#[test]
fn a_server_that_stops_answering_is_one_clear_error() {
    let fx = Fixture::new();
    let server = big_export(&fx);
    let mut child = spawn_qimg(
        &fx,
        &[
            "convert",
            "-r",
            "64M",
            "--progress=json",
            "-O",
            "qcow2",
            &server.uri,
            "out.qcow2",
        ],
        &[("QIMG_NBD_TIMEOUT", "1")],
    );
    let mut err = first_progress(&mut child);
    server.signal(libc::SIGSTOP);
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    let last = rest.lines().last().unwrap_or_default();
    assert!(
        last.contains(&server.uri) && last.contains("no answer within 1 s (pending: read at"),
        "{rest}"
    );
    let check = fx.qemu_img(&["check", "out.qcow2"]).status.code();
    assert!(matches!(check, Some(0) | Some(3)), "check exit {check:?}");
}

/// SIGTERM while a TCP connect hangs (a listener whose accept queue is
/// full drops the SYNs): exit 143 within a second.
#[test]
fn sigterm_ends_a_hanging_connect() {
    use std::os::fd::AsRawFd;
    let fx = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) again on our own socket, to shrink its queue.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    let uri = format!("nbd://{addr}/exp");
    let child = spawn_qimg(&fx, &["convert", "-O", "qcow2", &uri, "out.qcow2"], &[]);
    std::thread::sleep(Duration::from_millis(600));
    let (got, took, err) = signal_and_wait(child, libc::SIGTERM);
    assert_eq!(got, Some(143), "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(err.contains("interrupted while"), "{err}");
}

/// SIGTERM while writes into an export are pending (a commit into a
/// writable qemu-nbd that stopped): exit 143 within a second, and the
/// overlay is still whole and backed by the export.
#[test]
fn sigterm_ends_pending_writes() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw base.raw 160M");
    let server = Daemon::qemu_nbd(
        &fx,
        "qemu-nbd",
        "base.raw",
        "raw",
        &["--persistent"],
        true,
        false,
    );
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 -u -b '{}' -F raw top.qcow2 160M
         qemu-io -c 'write -P 0x77 0 160M' top.qcow2 >/dev/null",
        server.uri
    ));
    let mut child = spawn_qimg(
        &fx,
        &["commit", "-r", "32M", "--progress=json", "top.qcow2"],
        &[],
    );
    let _err = first_progress(&mut child);
    server.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    let (got, took, err) = signal_and_wait(child, libc::SIGTERM);
    assert_eq!(got, Some(143), "{err}");
    assert!(took < Duration::from_millis(1200), "{took:?}");
    // qemu-img opens the backing export too: let the server go on.
    server.signal(libc::SIGCONT);
    let check = fx.qemu_img(&["check", "-U", "top.qcow2"]).status.code();
    assert!(matches!(check, Some(0) | Some(3)), "check exit {check:?}");
    assert!(stdout(&fx.qemu_img(&["info", "-U", "top.qcow2"])).contains("backing file"));
}

/// TLS is refused in one line, before any connection.
#[test]
fn nbds_is_one_clear_error() {
    let fx = Fixture::new();
    for uri in ["nbds://127.0.0.1:1/x", "nbds+unix:///x?socket=/nonexistent"] {
        let out = fx.qimg(&["info", uri]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            format!("qimg: {uri}: NBD over TLS (nbds://) is not supported by qimg\n")
        );
    }
}
