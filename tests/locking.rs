//! QEMU's image locks, against real QEMU peers: qimg refuses to write an
//! image qemu-storage-daemon is using (and reads it only with -U), QEMU
//! cannot open for writing an image qimg is streaming, and the locks go
//! away when qimg exits or is killed.

mod common;

use common::{require_tool, stderr, stdout, Daemon, Fixture};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chain(fx: &Fixture, dir: &str, size: &str) {
    fx.sh(&format!(
        "mkdir -p {dir} && cd {dir}
         qemu-img create -q -f qcow2 base.qcow2 {size}
         qemu-io -c 'write -P 0x11 0 {size}' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x22 0 64k' top.qcow2 >/dev/null
         qemu-img create -q -f qcow2 other.qcow2 {size}"
    ));
}

#[test]
fn an_image_a_daemon_writes_is_refused_for_writing_and_read_only_with_u() {
    let fx = Fixture::new();
    chain(&fx, "d", "4M");
    let _daemon = Daemon::start(&fx, "d", "top.qcow2");
    let before = fx.read("d/top.qcow2");
    for args in [
        &["stream", "d/top.qcow2"][..],
        &["commit", "d/top.qcow2"],
        &["rebase", "-b", "", "d/top.qcow2"],
        &[
            "convert",
            "-n",
            "-O",
            "qcow2",
            "d/other.qcow2",
            "d/top.qcow2",
        ],
        &["create", "-f", "qcow2", "d/top.qcow2", "1M"],
        &["check", "-r", "leaks", "d/top.qcow2"],
        &["resize", "d/top.qcow2", "8M"],
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("d/top.qcow2: Failed to get \"write\" lock")
                && err.contains("Is another process using the image [d/top.qcow2]?")
                && err.contains("--attach SOCKET"),
            "{args:?}: {err}"
        );
    }
    assert!(fx.read("d/top.qcow2") == before, "a refused command wrote");
    // Reading needs -U, as with qemu-img.
    let out = fx.qimg(&["info", "d/top.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("use -U to read it anyway"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["info", "-U", "d/top.qcow2"][..],
        &["map", "-U", "d/top.qcow2"],
        &["check", "-U", "d/top.qcow2"],
        &["convert", "-U", "-O", "raw", "d/top.qcow2", "d/copy.raw"],
    ] {
        let out = fx.qimg(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // The daemon's backing file is only read: reading it is fine.
    assert!(fx.qimg(&["info", "d/base.qcow2"]).status.success());
}

/// Waits until `qimg` has the image open (its progress line appears).
fn wait_for_start(fx: &Fixture) {
    let start = Instant::now();
    while !fx.path("s/progress").exists()
        || std::fs::read_to_string(fx.path("s/progress"))
            .unwrap()
            .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stream never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn qemu_cannot_write_an_image_qimg_streams_until_qimg_is_gone() {
    require_tool("qemu-storage-daemon");
    let fx = Fixture::new();
    chain(&fx, "s", "32M");
    for kill in [false, true] {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
            .args(["stream", "-r", "4M", "--progress=json", "top.qcow2"])
            .current_dir(fx.path("s"))
            .stderr(std::fs::File::create(fx.path("s/progress")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_start(&fx);
        let io = fx.run_in("s", "qemu-io", &["-c", "write 0 4k", "top.qcow2"]);
        assert!(!io.status.success(), "qemu-io wrote during the stream");
        assert!(
            stderr(&io).contains("Failed to get \"write\" lock"),
            "{}",
            stderr(&io)
        );
        // A daemon cannot take it for writing either.
        let daemon = Command::new("qemu-storage-daemon")
            .args([
                "--blockdev",
                "{\"driver\":\"qcow2\",\"node-name\":\"top\",\"file\":{\"driver\":\"file\",\"filename\":\"top.qcow2\"}}",
            ])
            .current_dir(fx.path("s"))
            .output()
            .unwrap();
        assert!(!daemon.status.success(), "the daemon opened it");
        assert!(stderr(&daemon).contains("lock"), "{}", stderr(&daemon));
        // Reading with -U is fine.
        assert!(fx
            .run_in("s", "qemu-img", &["info", "-U", "top.qcow2"])
            .status
            .success());
        if kill {
            child.kill().unwrap();
        } else {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        child.wait().unwrap();
        // qimg is gone: QEMU can write again.
        let io = fx.run_in("s", "qemu-io", &["-c", "write -P 0x22 0 4k", "top.qcow2"]);
        assert!(io.status.success(), "after qimg exited: {}", stderr(&io));
        let check = fx.run_in("s", "qemu-img", &["check", "top.qcow2"]);
        assert!(
            matches!(check.status.code(), Some(0) | Some(3)),
            "{}",
            stdout(&check)
        );
    }
}

/// The first stderr line of `out`.
fn first_line(out: &std::process::Output) -> String {
    stderr(out).lines().next().unwrap_or_default().to_string()
}

/// qemu-img's words for `args` on an image held by another process, and
/// qimg's: the same sentences (Packer retries on them, scripts grep them),
/// then qimg's hint and the holder `pid`/`comm` where qemu-img has none.
fn assert_lock_words(
    fx: &Fixture,
    dir: &str,
    (args, image): (&[&str], &str),
    words: &str,
    pid: u32,
    comm: &str,
) {
    let q = fx.run_in(dir, "qemu-img", args);
    let i = fx.run_in(dir, "qimg", args);
    let image = image.to_string();
    assert_eq!(q.status.code(), Some(1), "{args:?}: {}", stderr(&q));
    assert_eq!(i.status.code(), Some(1), "{args:?}: {}", stderr(&i));
    let asking = format!("Is another process using the image [{image}]?");
    for text in [stderr(&q), first_line(&i)] {
        assert!(text.contains(words), "{args:?}: {text}");
        assert!(text.contains(&asking), "{args:?}: {text}");
    }
    let line = first_line(&i);
    assert!(
        line.contains(&format!("Process {pid} ({comm}) holds it")),
        "{args:?}: the holder is not named: {line}"
    );
    let hint = if words.contains("shared") {
        "use -U to read it anyway"
    } else {
        "use --attach SOCKET"
    };
    assert!(line.contains(hint), "{args:?}: {line}");
}

#[test]
fn the_lock_error_carries_qemu_img_s_words_and_names_the_holder() {
    let fx = Fixture::new();
    chain(&fx, "d", "4M");
    // Held by qemu-storage-daemon (read-write, as a VM holds its disk).
    let daemon = Daemon::start(&fx, "d", "top.qcow2");
    let held = |args: (&[&str], &str), words: &str| {
        assert_lock_words(&fx, "d", args, words, daemon.pid(), "qemu-storage-da")
    };
    held(
        (&["info", "top.qcow2"], "top.qcow2"),
        r#"Failed to get shared "write" lock"#,
    );
    held(
        (&["check", "top.qcow2"], "top.qcow2"),
        r#"Failed to get shared "write" lock"#,
    );
    held(
        (
            &["convert", "-O", "raw", "top.qcow2", "copy.raw"],
            "top.qcow2",
        ),
        r#"Failed to get shared "write" lock"#,
    );
    held(
        (&["check", "-r", "all", "top.qcow2"], "top.qcow2"),
        r#"Failed to get "write" lock"#,
    );
    held(
        (&["rebase", "-u", "-b", "", "top.qcow2"], "top.qcow2"),
        r#"Failed to get "write" lock"#,
    );
    held(
        (&["commit", "-d", "top.qcow2"], "top.qcow2"),
        r#"Failed to get "write" lock"#,
    );
    drop(daemon);
    // Held by qemu-io, sleeping on the open image for up to a minute.
    let mut io = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "sleep 60000", "other.qcow2"])
        .current_dir(fx.path("d"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(fx.path("qemu-io.err")).unwrap())
        .spawn()
        .expect("start qemu-io");
    // Wait until qemu-io holds its locks. Asking with a command that takes a
    // lock itself (qemu-img info) races with qemu-io's own open, which then
    // fails: look at qemu-io's open files instead.
    let holds_locks = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
            .map(|dir| {
                dir.flatten()
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("lock:")))
            })
            .unwrap_or(false)
    };
    let start = Instant::now();
    while !holds_locks(io.id()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "qemu-io never locked the image: {}",
            std::fs::read_to_string(fx.path("qemu-io.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = io.id();
    let held = |args: (&[&str], &str), words: &str| {
        assert_lock_words(&fx, "d", args, words, pid, "qemu-io")
    };
    held(
        (&["map", "other.qcow2"], "other.qcow2"),
        r#"Failed to get shared "write" lock"#,
    );
    held(
        (
            &["convert", "-n", "-O", "qcow2", "base.qcow2", "other.qcow2"],
            "other.qcow2",
        ),
        r#"Failed to get "write" lock"#,
    );
    held(
        (
            &["create", "-q", "-f", "qcow2", "other.qcow2", "1M"],
            "other.qcow2",
        ),
        r#"Failed to get "write" lock"#,
    );
    let _ = io.kill();
    let _ = io.wait();
}
