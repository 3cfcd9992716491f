//! Memory that does not grow with chain depth or image size: commands on
//! a 16-deep chain of 64 GiB images whose every layer has an L2 table for
//! every 512 MiB (without a budget shared by the chain, each layer's cache
//! would hold all of its tables: 16 MiB a layer) keep their peak resident
//! memory under 64 MiB. The peak is the child's own (`wait4`'s maxrss).

mod common;

use common::Fixture;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Runs qimg with `args` in `fx`'s directory; returns its exit code and
/// its peak resident memory in KiB.
// The child is reaped by wait4 (which also reports its peak), not by
// Child::wait.
#[allow(clippy::zombie_processes)]
fn qimg_peak_kib(fx: &Fixture, args: &[&str]) -> (Option<i32>, i64) {
    let child = Command::new(env!("CARGO_BIN_EXE_qimg"))
        .args(args)
        .current_dir(fx.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run qimg");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let status = std::process::ExitStatus::from_raw(status);
    (status.code(), usage.ru_maxrss)
}

/// Sixteen 64 GiB layers, `l0.qcow2` (base) to `l15.qcow2` (top), each
/// with one 64 KiB cluster written in every 512 MiB of the disk.
fn deep_chain(fx: &Fixture) {
    fx.sh("qemu-img create -q -f qcow2 l0.qcow2 64G
         for i in $(seq 1 15); do
             qemu-img create -q -f qcow2 -b l$((i - 1)).qcow2 -F qcow2 l$i.qcow2 64G
         done
         for i in $(seq 0 15); do
             for r in $(seq 0 127); do
                 echo \"write -P $((i + 1)) $((r * 512 + i * 4))M 64k\"
             done | qemu-io l$i.qcow2 >/dev/null
         done");
}

#[test]
fn commands_on_a_deep_chain_stay_within_64_mib() {
    let fx = Fixture::new();
    deep_chain(&fx);
    let cases: [&[&str]; 4] = [
        &["map", "--output=json", "l15.qcow2"],
        &["info", "--backing-chain", "l15.qcow2"],
        &["compare", "l15.qcow2", "l15.qcow2"],
        &["convert", "-O", "qcow2", "l15.qcow2", "flat.qcow2"],
    ];
    for args in cases {
        let (code, peak) = qimg_peak_kib(&fx, args);
        assert_eq!(code, Some(0), "qimg {args:?}");
        assert!(
            peak < 64 << 10,
            "qimg {args:?} on a 16-deep chain of 64 GiB images peaked at {peak} KiB"
        );
    }
    fx.assert_same("l15.qcow2", "flat.qcow2");
}
