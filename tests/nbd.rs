//! NBD exports wherever a file name goes, against a real qemu-nbd on a
//! unix socket and on a 127.0.0.1 TCP port: info, map and convert compared
//! with qemu-img on the same export, the post-copy workflow end to end,
//! and a server killed mid-stream.

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
        let mut args: Vec<String> = vec![
            "-t".into(),
            "-e".into(),
            "8".into(),
            "-x".into(),
            "exp".into(),
        ];
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
            "-e",
            "8",
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
