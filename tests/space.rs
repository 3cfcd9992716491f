//! Chain commands on hostile file systems: a disk that fills up mid-job,
//! and an image on a read-only file system. Each is one clear error line,
//! exit 1, a consistent image with the guest's data intact, and (for the
//! full disk) a rerun that finishes once there is room.
//!
//! The small and read-only file systems are tmpfs mounts, which need root
//! with CAP_SYS_ADMIN (as CI has). Without it, the full disk is simulated
//! with the fault injector and a read-only file with `chmod` (non-root).

mod common;

use common::{stderr, stdout, Fixture};
use qimg::io::FaultSession;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory of the fixture, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(fx: &Fixture, name: &str, size: &str) -> Option<Mount> {
        let dir = fx.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(Mount(dir))
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount: {}", stderr(&out));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A 16 MiB base of data in the fixture's directory and, in `dir`, an
/// overlay `top.qcow2` over it (absolute backing name) holding one cluster.
fn overlay_in(fx: &Fixture, dir: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 base.qcow2 16M
         qemu-io -c 'write -P 0x11 0 16M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b \"$PWD/base.qcow2\" -F qcow2 {dir}/top.qcow2
         qemu-io -c 'write -P 0x22 1M 64k' {dir}/top.qcow2 >/dev/null
         qemu-img convert -O raw {dir}/top.qcow2 before.raw"
    ));
}

fn assert_whole(fx: &Fixture, image: &str, when: &str) {
    let check = fx.qemu_img(&["check", image]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{when}: qemu-img check {image}:\n{}",
        stdout(&check)
    );
    fx.assert_same("before.raw", image);
}

fn assert_one_error_line(out: &std::process::Output, needles: &[&str], when: &str) {
    assert_eq!(out.status.code(), Some(1), "{when}: {}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{when}: {err}");
    for n in needles {
        assert!(err.contains(n), "{when}: no '{n}' in: {err}");
    }
}

#[test]
fn a_full_disk_stops_the_job_cleanly_and_a_rerun_finishes() {
    let fx = Fixture::new();
    let Some(mount) = Mount::new(&fx, "small", "3M") else {
        eprintln!("no tmpfs mount here (needs CAP_SYS_ADMIN): simulating the full disk");
        return full_disk_simulated(&fx);
    };
    for args in [
        &["stream", "small/top.qcow2"][..],
        &["rebase", "-b", "", "small/top.qcow2"],
    ] {
        overlay_in(&fx, "small");
        let out = fx.qimg(args);
        let when = format!("{args:?} on a full disk");
        assert_one_error_line(&out, &["small/top.qcow2", "No space left on device"], &when);
        assert_whole(&fx, "small/top.qcow2", &when);
        assert!(stdout(&fx.qemu_img(&["info", "small/top.qcow2"])).contains("backing file:"));
        mount.remount("size=64M");
        let out = fx.qimg(args);
        assert!(out.status.success(), "{when}, rerun: {}", stderr(&out));
        assert_whole(&fx, "small/top.qcow2", &format!("{when}, rerun"));
        assert!(!stdout(&fx.qemu_img(&["info", "small/top.qcow2"])).contains("backing file:"));
        std::fs::remove_file(fx.path("small/top.qcow2")).unwrap();
        mount.remount("size=3M");
    }
}

/// Without a mount: the fault injector fails the writes, as a full disk does.
fn full_disk_simulated(fx: &Fixture) {
    std::fs::create_dir_all(fx.path("small")).unwrap();
    overlay_in(fx, "small");
    let session = FaultSession::start(6);
    let request = qimg::ops::stream::StreamRequest {
        file: fx.path("small/top.qcow2"),
        threads: 2,
        ..Default::default()
    };
    let control = qimg::engine::control::Control::default().with_storage_options(session.options());
    let result = qimg::ops::stream::stream(&request, &control);
    assert!(result.is_err(), "{result:?}");
    session.write_back(|_, _| true).unwrap();
    drop(session);
    let check = fx.qemu_img(&["check", "small/top.qcow2"]).status.code();
    assert!(check == Some(0) || check == Some(3), "check exit {check:?}");
    fx.assert_same("before.raw", "small/top.qcow2");
    let out = fx.qimg(&["stream", "small/top.qcow2"]);
    assert!(out.status.success(), "rerun: {}", stderr(&out));
    fx.assert_same("before.raw", "small/top.qcow2");
}

/// Makes `path` unwritable: a read-only remount of `mount`, or `chmod`
/// for a user that is not root.
fn make_read_only(mount: Option<&Mount>, path: &Path) {
    match mount {
        Some(m) => m.remount("ro"),
        None if unsafe { libc::geteuid() } != 0 => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        None => panic!(
            "cannot make a read-only image here: root without CAP_SYS_ADMIN can neither \
             mount a read-only tmpfs nor be refused by file permissions"
        ),
    }
}

#[test]
fn a_read_only_image_is_refused_untouched() {
    let fx = Fixture::new();
    let mount = Mount::new(&fx, "ro", "16M");
    overlay_in(&fx, "ro");
    make_read_only(mount.as_ref(), &fx.path("ro/top.qcow2"));
    let before = fx.read("ro/top.qcow2");
    for args in [
        &["stream", "ro/top.qcow2"][..],
        &["rebase", "-b", "", "ro/top.qcow2"],
        &["commit", "ro/top.qcow2"],
    ] {
        let out = fx.qimg(args);
        assert_one_error_line(&out, &["ro/top.qcow2"], &format!("{args:?}"));
        assert!(
            fx.read("ro/top.qcow2") == before,
            "{args:?} changed the image"
        );
    }
    assert_whole(&fx, "ro/top.qcow2", "after the refusals");
}

#[test]
fn a_commit_into_a_full_base_keeps_the_top_and_a_rerun_finishes() {
    let fx = Fixture::new();
    let mount = Mount::new(&fx, "small", "3M");
    fx.sh("qemu-img create -q -f qcow2 small/base.qcow2 16M
         qemu-io -c 'write -P 0x11 0 1M' small/base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b \"$PWD/small/base.qcow2\" -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x22 0 8M' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw");
    let top_before = fx.read("top.qcow2");
    match &mount {
        Some(_) => {
            let out = fx.qimg(&["commit", "top.qcow2"]);
            assert_one_error_line(
                &out,
                &["small/base.qcow2", "No space left on device"],
                "commit",
            );
        }
        None => {
            eprintln!("no tmpfs mount here (needs CAP_SYS_ADMIN): simulating the full disk");
            let session = FaultSession::start(20);
            let request = qimg::ops::commit::CommitRequest {
                file: fx.path("top.qcow2"),
                threads: 2,
                ..Default::default()
            };
            let control =
                qimg::engine::control::Control::default().with_storage_options(session.options());
            let result = qimg::ops::commit::commit(&request, &control);
            assert!(result.is_err(), "{result:?}");
            session.write_back(|_, _| true).unwrap();
        }
    }
    // The top was not emptied: the guest still sees everything.
    assert!(fx.read("top.qcow2") == top_before, "the top changed");
    assert_whole(&fx, "top.qcow2", "commit on a full disk");
    let check = fx.qemu_img(&["check", "small/base.qcow2"]).status.code();
    assert!(
        matches!(check, Some(0) | Some(3)),
        "base check exit {check:?}"
    );
    if let Some(m) = &mount {
        m.remount("size=64M");
    }
    let out = fx.qimg(&["commit", "top.qcow2"]);
    assert!(out.status.success(), "rerun: {}", stderr(&out));
    assert_whole(&fx, "top.qcow2", "commit rerun");
    fx.assert_same("before.raw", "small/base.qcow2");
}
