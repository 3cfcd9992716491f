//! The README's cookbook, run as written: each `<!-- recipe: NAME -->`
//! block is executed by bash in a directory holding the images it names,
//! with this build's qimg first on PATH, and its result checked.

mod common;

use common::{qed_images_with_a_leak, require_tool, stderr, stdout, Fixture};
use std::collections::HashMap;
use std::process::{Command, Output};

/// The recipes of the README, by name.
fn recipes() -> HashMap<String, String> {
    let readme = include_str!("../README.md");
    let mut found = HashMap::new();
    for part in readme.split("<!-- recipe: ").skip(1) {
        let (name, rest) = part.split_once(" -->").expect("recipe marker");
        let body = rest
            .split_once("```sh\n")
            .and_then(|(_, b)| b.split_once("\n```"))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| panic!("recipe {name} has no sh block"));
        found.insert(name.to_string(), body);
    }
    found
}

/// Runs recipe `name` with bash in `fx`'s directory, `args` as `$1...`.
fn run(fx: &Fixture, name: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    run_edited(fx, name, &[], args, env)
}

/// As [`run`], with each `(from, to)` of `edits` replaced in the recipe
/// first (to run a nightly recipe against a short clock).
fn run_edited(
    fx: &Fixture,
    name: &str,
    edits: &[(&str, &str)],
    args: &[&str],
    env: &[(&str, String)],
) -> Output {
    let mut script = recipes()
        .remove(name)
        .unwrap_or_else(|| panic!("the README has no recipe {name}"));
    for (from, to) in edits {
        assert!(script.contains(from), "recipe {name} has no '{from}'");
        script = script.replace(from, to);
    }
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .arg(name)
        .args(args)
        .env("PATH", path)
        .current_dir(fx.dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bash")
}

fn overlay(fx: &Fixture, name: &str, size: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 base-of-{name} {size}
         qemu-io -c 'write -P 0x11 0 {size}' base-of-{name} >/dev/null
         qemu-img create -q -f qcow2 -b base-of-{name} -F qcow2 {name}
         qemu-io -c 'write -P 0x22 1M 64k' {name} >/dev/null
         qemu-img convert -O raw {name} before-{name}.raw"
    ));
}

fn independent(fx: &Fixture, image: &str) -> bool {
    !stdout(&fx.qemu_img(&["info", image])).contains("backing file")
}

#[test]
fn nightly_stream() {
    let fx = Fixture::new();
    overlay(&fx, "disk.qcow2", "16M");
    fx.write(
        "pressure",
        b"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    let psi = [("QIMG_PSI_PATH", fx.path("pressure").display().to_string())];
    // A night too short to finish (a 1 s limit at 4 MiB/s): exit 75, and
    // the script says it continues tomorrow.
    let short_night = [
        ("--deadline 06:00", "--time-limit 1s"),
        ("-r 200M", "-r 4M"),
    ];
    let out = run_edited(&fx, "nightly-stream", &short_night, &["disk.qcow2"], &psi);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not finished; it continues tomorrow"),
        "{}",
        stdout(&out)
    );
    assert!(!independent(&fx, "disk.qcow2"));
    fx.assert_same("before-disk.qcow2.raw", "disk.qcow2");
    // The next night, as written.
    let out = run(&fx, "nightly-stream", &["disk.qcow2"], &psi);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    if said.contains("not finished") {
        // Started exactly at 06:00: the deadline was now. Tomorrow's run:
        let again = run(&fx, "nightly-stream", &["disk.qcow2"], &psi);
        assert!(again.status.success(), "{}", stderr(&again));
    } else {
        assert!(said.contains("no longer needs its backing file"), "{said}");
    }
    assert!(independent(&fx, "disk.qcow2"));
    fx.assert_same("before-disk.qcow2.raw", "disk.qcow2");
    fx.assert_clean("disk.qcow2");
}

#[test]
fn sliced_stream() {
    require_tool("jq");
    let fx = Fixture::new();
    overlay(&fx, "vm.qcow2", "64M");
    let out = run(&fx, "sliced-stream", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "vm.qcow2 is independent\n");
    assert!(independent(&fx, "vm.qcow2"));
    fx.assert_same("before-vm.qcow2.raw", "vm.qcow2");
}

#[test]
fn ci_image() {
    require_tool("jq");
    let fx = Fixture::new();
    fx.sh(
        "mkdir build images
         qemu-img create -q -f raw build/disk.raw 32M
         qemu-io -f raw -c 'write -P 0x61 0 8M' -c 'write -P 0x62 20M 1M' build/disk.raw >/dev/null",
    );
    let out = run(&fx, "ci-image", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("33554432\n"), "{}", stdout(&out));
    fx.assert_same("build/disk.raw", "images/disk.qcow2");
    let map = stdout(&fx.qemu_img(&["map", "--output=json", "images/disk.qcow2"]));
    assert!(map.contains("\"compressed\": true"), "{map}");
}

#[test]
fn chains() {
    let fx = Fixture::new();
    common::three_layer_chain(&fx, ".", "top.qcow2", "qcow2");
    let out = run(&fx, "chains", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("before.raw", "flat.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    assert!(independent(&fx, "flat.qcow2"));
    assert!(independent(&fx, "top.qcow2"));
    for image in ["flat.qcow2", "top.qcow2", "mid.qcow2", "base.qcow2"] {
        fx.assert_clean(image);
    }
}

#[test]
fn fleet_check() {
    require_tool("jq");
    let fx = Fixture::new();
    let [leaky, _] = qed_images_with_a_leak(&fx);
    fx.sh(&format!(
        "mkdir images
         mv {leaky} images/leaky.qed
         qemu-img create -q -f qcow2 images/good.qcow2 1M"
    ));
    let out = run(&fx, "fleet-check", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "images/leaky.qed: 0 corruptions, 1 leaked clusters\n"
    );
}

#[test]
fn attach() {
    require_tool("qemu-storage-daemon");
    let fx = Fixture::new();
    // 64 MiB at the recipe's 20 MB/s: the job is still running when the
    // recipe lists it and lifts the limit, even on a loaded machine.
    overlay(&fx, "vm.qcow2", "64M");
    let mut daemon = Command::new("qemu-storage-daemon")
        .args([
            "--blockdev",
            "{\"driver\":\"qcow2\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\",\"filename\":\"vm.qcow2\"}}",
            "--chardev",
            "socket,id=m,path=qmp.sock,server=on,wait=off",
            "--monitor",
            "chardev=m",
        ])
        .current_dir(fx.dir())
        .spawn()
        .expect("qemu-storage-daemon");
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(fx.path("qmp.sock")).is_err() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sock = [("QMP_SOCKET", fx.path("qmp.sock").display().to_string())];
    let out = run(&fx, "attach", &[], &sock);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("node: drive0"), "{said}");
    assert!(
        said.contains("nightly") && said.contains("stream"),
        "{said}"
    );
    assert!(independent(&fx, "vm.qcow2"));
    fx.assert_same("before-vm.qcow2.raw", "vm.qcow2");
}

#[test]
fn nbd_deploy() {
    require_tool("qemu-nbd");
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 16M
         qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x12 9M 1M' base.qcow2 >/dev/null");
    let out = run(&fx, "nbd-deploy", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("image: vm.qcow2"), "{}", stdout(&out));
    assert!(independent(&fx, "vm.qcow2"));
    fx.assert_same("base.qcow2", "vm.qcow2");
    fx.assert_clean("vm.qcow2");
}

#[test]
fn nbd_post_copy() {
    require_tool("qemu-nbd");
    require_tool("jq");
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 disk.qcow2 40M
         qemu-io -c 'write -P 0x21 0 5M' -c 'write -P 0x22 30M 2M' disk.qcow2 >/dev/null");
    let out = run(&fx, "nbd-post-copy", &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(independent(&fx, "dest.qcow2"));
    fx.assert_same("disk.qcow2", "dest.qcow2");
    fx.assert_clean("dest.qcow2");
}

/// qemu-storage-daemon serving `disk.qcow2` as node `drive0`, with the
/// node exported over NBD as a VM's disk would be attached (a snapshot's
/// overlay needs a user to stay in the graph); returns the daemon and the
/// export's URI for the test's guest writes.
fn daemon_with_guest(fx: &Fixture) -> (std::process::Child, String) {
    require_tool("qemu-storage-daemon");
    require_tool("qemu-io");
    let daemon = Command::new("qemu-storage-daemon")
        .args([
            "--blockdev",
            "{\"driver\":\"qcow2\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\",\"filename\":\"disk.qcow2\"}}",
            "--nbd-server",
            "addr.type=unix,addr.path=guest.sock",
            "--export",
            "type=nbd,id=guest,node-name=drive0,writable=on,name=disk",
            "--chardev",
            "socket,id=m,path=qmp.sock,server=on,wait=off",
            "--monitor",
            "chardev=m",
        ])
        .current_dir(fx.dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-storage-daemon");
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(fx.path("qmp.sock")).is_err()
        || !fx.path("guest.sock").exists()
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let uri = format!(
        "nbd+unix:///disk?socket={}",
        fx.path("guest.sock").display()
    );
    (daemon, uri)
}

/// Stops the daemon with SIGTERM (it closes its images cleanly).
fn stop(mut daemon: std::process::Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait().unwrap();
}

#[test]
fn live_backup() {
    let fx = Fixture::new();
    overlay(&fx, "disk.qcow2", "32M");
    let (daemon, uri) = daemon_with_guest(&fx);
    let sock = [("QMP_SOCKET", fx.path("qmp.sock").display().to_string())];
    // The guest writes while the backup runs: a write before the recipe
    // is in the backup, one during it (into the overlay) is not.
    fx.sh(&format!(
        "qemu-io -f raw -c 'write -P 0x33 2M 1M' '{uri}' >/dev/null"
    ));
    fx.sh(&format!(
        "qemu-img convert -f raw -O raw '{uri}' at-backup.raw"
    ));
    let edited = run_edited(
        &fx,
        "live-backup",
        &[(
            "qimg convert",
            &format!("qemu-io -f raw -c 'write -P 0x44 3M 1M' '{uri}' >/dev/null\nqimg convert"),
        )],
        &[],
        &sock,
    );
    assert!(edited.status.success(), "{}", stderr(&edited));
    fx.sh(&format!(
        "qemu-io -f raw -c 'write -P 0x55 4M 1M' '{uri}' >/dev/null"
    ));
    fx.sh(&format!("qemu-img convert -f raw -O raw '{uri}' after.raw"));
    stop(daemon);
    fx.assert_same("at-backup.raw", "backup.qcow2");
    fx.assert_clean("backup.qcow2");
    // The overlay was folded back and the VM switched onto disk.qcow2.
    fx.assert_same("after.raw", "disk.qcow2");
    fx.assert_clean("disk.qcow2");
    assert!(!fx.path("overlay.qcow2").exists());
}

#[test]
fn live_copy() {
    let fx = Fixture::new();
    overlay(&fx, "disk.qcow2", "32M");
    let (daemon, uri) = daemon_with_guest(&fx);
    let sock = [("QMP_SOCKET", fx.path("qmp.sock").display().to_string())];
    let out = run(&fx, "live-copy", &[], &sock);
    assert!(out.status.success(), "{}", stderr(&out));
    // The VM now runs on the copy: a guest write lands there only.
    fx.sh(&format!(
        "qemu-io -f raw -c 'write -P 0x66 5M 1M' '{uri}' >/dev/null"
    ));
    fx.sh(&format!("qemu-img convert -f raw -O raw '{uri}' after.raw"));
    stop(daemon);
    fx.assert_same("after.raw", "new-storage/disk.qcow2");
    fx.assert_clean("new-storage/disk.qcow2");
    fx.assert_same("before-disk.qcow2.raw", "disk.qcow2");
}
