//! `qimg stream` against QEMU's own block-stream (run by qemu-storage-daemon),
//! plus the incremental interface and time limits.

mod common;

use common::{
    assert_json_progress, map_without_offsets, require_tool, stderr, stdout, three_layer_chain,
    Fixture,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs QEMU's block-stream on `dir/top.img` through qemu-storage-daemon.
fn qemu_stream(fx: &Fixture, dir: &str, base: Option<&str>) {
    require_tool("qemu-storage-daemon");
    let socket = fx.path(dir).join("qmp.sock");
    let mut daemon = Command::new("qemu-storage-daemon")
        .args([
            "--blockdev",
            "{\"driver\":\"qcow2\",\"node-name\":\"top\",\"file\":{\"driver\":\"file\",\"filename\":\"top.img\"}}",
            "--chardev",
            "socket,id=m,path=qmp.sock,server=on,wait=off",
            "--monitor",
            "chardev=m",
        ])
        .current_dir(fx.path(dir))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-storage-daemon");
    let start = Instant::now();
    let conn = loop {
        if let Ok(c) = UnixStream::connect(&socket) {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no QMP socket");
        std::thread::sleep(Duration::from_millis(20));
    };
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // greeting
    let mut send = |cmd: String| writer.write_all(cmd.as_bytes()).unwrap();
    send("{\"execute\":\"qmp_capabilities\"}".into());
    let base_arg = base
        .map(|b| format!(",\"base\":\"{b}\""))
        .unwrap_or_default();
    send(format!(
        "{{\"execute\":\"block-stream\",\"arguments\":{{\"job-id\":\"j\",\"device\":\"top\"{base_arg}}}}}"
    ));
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "QMP closed");
        assert!(!line.contains("\"error\""), "QMP: {line}");
        if line.contains("BLOCK_JOB_COMPLETED") {
            break;
        }
    }
    send("{\"execute\":\"quit\"}".into());
    daemon.wait().unwrap();
}

#[test]
fn matches_qemu_block_stream() {
    let fx = Fixture::new();
    for (dir, base) in [("full", None), ("tobase", Some("base.qcow2"))] {
        three_layer_chain(&fx, &format!("{dir}-q"), "top.img", "qcow2");
        three_layer_chain(&fx, &format!("{dir}-m"), "top.img", "qcow2");
        let top = format!("{dir}-m/top.img");
        fx.qemu_img(&["convert", "-O", "raw", &top, "before.raw"]);
        qemu_stream(&fx, &format!("{dir}-q"), base);
        let mut args = vec!["stream".to_string()];
        if let Some(b) = base {
            args.extend(["--base".into(), format!("{dir}-m/{b}")]);
        }
        args.push(format!("{dir}-m/top.img"));
        let out = fx.qimg(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{dir}: {}", stderr(&out));
        let (ours, theirs) = (format!("{dir}-m/top.img"), format!("{dir}-q/top.img"));
        fx.assert_same("before.raw", &ours);
        fx.assert_clean(&ours);
        assert_eq!(
            map_without_offsets(&fx, &ours),
            map_without_offsets(&fx, &theirs),
            "{dir}: mapping"
        );
        let info = |f: &str| stdout(&fx.qemu_img(&["info", "--output=json", f]));
        let backing = |f: &str| {
            info(f)
                .lines()
                .filter(|l| l.contains("\"backing-filename"))
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(backing(&ours), backing(&theirs), "{dir}: backing pointer");
    }
}

#[test]
fn slices_out_of_order_finish_the_job() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "s", "top.img", "qcow2");
    fx.qemu_img(&["convert", "-O", "raw", "s/top.img", "before.raw"]);
    let mut last = None;
    for offset in ["3M", "0", "2M", "1M"] {
        let out = fx.qimg(&[
            "stream",
            "--offset",
            offset,
            "--length",
            "1M",
            "--output=json",
            "s/top.img",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        fx.assert_same("before.raw", "s/top.img");
        last = Some(report);
    }
    let last = last.unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(last["virtual-size"], 4194304);
    assert!(!stdout(&fx.qemu_img(&["info", "s/top.img"])).contains("backing file"));
    fx.assert_clean("s/top.img");
}

#[test]
fn time_limit_stops_and_a_rerun_completes() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 32M
         qemu-io -c 'write -P 0x5a 0 32M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-img convert -O raw top.qcow2 before.raw");
    let out = fx.qimg(&[
        "stream",
        "--time-limit",
        "1s",
        "-r",
        "4M",
        "--output=json",
        "top.qcow2",
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["done"], false);
    assert!(report["next-offset"].as_u64().unwrap() < 32 << 20);
    fx.assert_clean("top.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    let out = fx.qimg(&["stream", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("before.raw", "top.qcow2");
    assert!(!stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file"));
}

#[test]
fn qed_top_and_errors() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "q", "top.img", "qed");
    fx.qemu_img(&["convert", "-O", "raw", "q/top.img", "before.raw"]);
    let out = fx.qimg(&["stream", "--base", "q/mid.qcow2", "q/top.img"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("before.raw", "q/top.img");
    assert!(stdout(&fx.qemu_img(&["info", "q/top.img"])).contains("backing file: mid.qcow2"));
    fx.sh("qemu-img create -q -f qcow2 alone.qcow2 1M");
    for (args, needle) in [
        (
            &["stream", "--base", "x.qcow2", "alone.qcow2"][..],
            "Image does not have a backing file",
        ),
        (
            &["stream", "--base", "nothere.qcow2", "q/top.img"],
            "Did not find 'nothere.qcow2' in the backing chain",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn interrupted_stream_is_consistent_and_resumes() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 32M
         qemu-io -c 'write -P 0x5a 0 32M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-img convert -O raw top.qcow2 before.raw");
    let child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(["stream", "-r", "8M", "top.qcow2"])
        .current_dir(fx.dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the same command again"));
    // Still backed, consistent, and the guest sees the same disk.
    assert!(stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file: base.qcow2"));
    fx.assert_clean("top.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    let out = fx.qimg(&["stream", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file"));
    fx.assert_same("before.raw", "top.qcow2");
}

#[test]
fn bad_time_limits_are_refused() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "d", "top.img", "qcow2");
    for (args, needle) in [
        (
            &["stream", "--deadline", "25:00", "d/top.img"][..],
            "invalid deadline '25:00'",
        ),
        (
            &["stream", "--time-limit", "2x", "d/top.img"],
            "invalid duration '2x'",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // Nothing was streamed.
    assert!(stdout(&fx.qemu_img(&["info", "d/top.img"])).contains("backing file: mid.qcow2"));
}

#[test]
fn progress_json_reports_the_stream() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "p", "top.img", "qcow2");
    let out = fx.qimg(&["stream", "--progress=json", "p/top.img"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_json_progress(&out, "stream");
    fx.assert_same("p/before.raw", "p/top.img");
}

/// A PSI file saying the host's I/O is `pct` percent stalled.
fn fake_pressure(fx: &Fixture, pct: &str) {
    fx.write(
        "pressure",
        format!(
            "some avg10={pct} avg60=1.00 avg300=1.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        )
        .as_bytes(),
    );
}

fn overlay_of(fx: &Fixture, size: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 base.qcow2 {size}
         qemu-io -c 'write -P 0x5a 0 {size}' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-img convert -O raw top.qcow2 before.raw"
    ));
}

#[test]
fn when_idle_pauses_while_the_host_is_busy_and_resumes() {
    let fx = Fixture::new();
    overlay_of(&fx, "16M");
    fake_pressure(&fx, "55.20");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(["stream", "--when-idle=10", "top.qcow2"])
        .env("QIMG_PSI_PATH", fx.path("pressure"))
        .current_dir(fx.dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "stream did not wait");
    // Nothing was written while the host was busy (-U: qimg holds the image).
    let out = fx.qemu_img(&["map", "-U", "--output=json", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let map = stdout(&out);
    assert!(map.contains("\"depth\": 1"), "{map}");
    assert!(!map.contains("\"depth\": 0"), "copied while busy:\n{map}");
    fake_pressure(&fx, "3.00");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stream never resumed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}");
    assert!(!stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file"));
    fx.assert_same("before.raw", "top.qcow2");
    fx.assert_clean("top.qcow2");
}

#[test]
fn a_pause_ends_at_the_time_limit_and_missing_psi_is_an_error() {
    let fx = Fixture::new();
    overlay_of(&fx, "4M");
    fake_pressure(&fx, "90.00");
    let out = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(["stream", "--when-idle", "--time-limit", "2s", "top.qcow2"])
        .env("QIMG_PSI_PATH", fx.path("pressure"))
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file: base.qcow2"));
    fx.assert_same("before.raw", "top.qcow2");
    let before = fx.read("top.qcow2");
    let out = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
        .args(["stream", "--when-idle", "top.qcow2"])
        .env("QIMG_PSI_PATH", fx.path("no-such-file"))
        .current_dir(fx.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no-such-file") && err.contains("PSI") && err.lines().count() == 1,
        "{err}"
    );
    assert!(fx.read("top.qcow2") == before, "a refused stream wrote");
}

#[test]
fn rate_limit_holds_the_rate() {
    let fx = Fixture::new();
    overlay_of(&fx, "24M");
    let out = fx.qimg(&["stream", "-r", "8M", "--progress=json", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let last: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    let rate = last["done"].as_f64().unwrap() / last["elapsed"].as_f64().unwrap();
    let limit = 8.0 * 1048576.0;
    assert!(
        (0.9 * limit..=1.1 * limit).contains(&rate),
        "measured {rate:.0} B/s against a limit of {limit} B/s ({last})"
    );
    fx.assert_same("before.raw", "top.qcow2");
}

/// A nightly job runs `stream` again on an image an earlier night
/// finished (or that was stopped right after its backing pointer was
/// dropped): nothing is left to do, and that is success, so `set -e`
/// scripts go on.
#[test]
fn streaming_a_finished_image_again_succeeds() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x5a 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-img convert -O raw top.qcow2 before.raw");
    let first = fx.qimg(&["stream", "--output", "json", "top.qcow2"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let before = fx.read("top.qcow2");
    for output in ["json", "human"] {
        let again = fx.qimg(&["stream", "--output", output, "top.qcow2"]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        if output == "json" {
            let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
            assert_eq!(report["done"], true, "{report}");
            assert_eq!(report["bytes-copied"], 0, "{report}");
        } else {
            assert_eq!(
                stdout(&again).trim(),
                "top.qcow2 has no backing file: nothing to stream"
            );
        }
    }
    assert!(
        fx.read("top.qcow2") == before,
        "a stream with nothing to do wrote"
    );
    fx.assert_same("before.raw", "top.qcow2");
}
