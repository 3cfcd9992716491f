//! `convert` into and out of the formats beyond qcow2 and raw (VHD, VMDK), against
//! `qemu-img convert` on the same generated disk (1 GiB by default,
//! `QIMG_BENCH_GIB` to change it): per 64 KiB cluster 30% holes, 10%
//! zeros, 30% random bytes, 30% text. The tools alternate (qemu-img,
//! qimg, qimg, qemu-img, ...), `QIMG_BENCH_RUNS` runs each (default 5),
//! each after a `sync`, sources warm in the page cache; the bench prints
//! medians and the ratio qemu-img/qimg, at both tools' defaults and with
//! qemu-img at its fastest (`-m 16 -W`). qimg's default target writes are
//! durable (direct I/O, a flush at the end); qemu-img's convert never
//! flushes. Run with `cargo bench --bench formats` (`QIMG_BENCH_ONLY=vpc`
//! for the cases whose name contains `vpc`).

mod common;

use common::{disk_dir, measure, median, refs, require, sh};
use std::time::Duration;

fn main() {
    require("qemu-img");
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let gib: u64 = std::env::var("QIMG_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runs: usize = std::env::var("QIMG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let tmp = disk_dir(gib << 30);
    let dir = tmp.path();
    // The VHD and VMDK sources, made by qemu-img.
    sh(
        dir,
        "qemu-img convert -O vpc disk.raw disk.vhd
         qemu-img convert -O vpc -o subformat=fixed disk.raw fixed.vhd
         qemu-img convert -O vmdk disk.raw disk.vmdk
         qemu-img convert -O vmdk -o subformat=streamOptimized disk.raw stream.vmdk",
    );
    let cases: &[(&str, &str)] = &[
        ("raw → vpc (dynamic)", "-O vpc disk.raw out.vhd"),
        (
            "raw → vpc (fixed)",
            "-O vpc -o subformat=fixed disk.raw out.vhd",
        ),
        ("qcow2 → vpc (dynamic)", "-O vpc disk.qcow2 out.vhd"),
        ("vpc (dynamic) → raw", "-f vpc -O raw disk.vhd out.raw"),
        (
            "vpc (dynamic) → qcow2",
            "-f vpc -O qcow2 disk.vhd out.qcow2",
        ),
        ("vpc (fixed) → qcow2", "-f vpc -O qcow2 fixed.vhd out.qcow2"),
        ("raw → vmdk (monolithicSparse)", "-O vmdk disk.raw out.vmdk"),
        (
            "raw → vmdk (streamOptimized)",
            "-O vmdk -o subformat=streamOptimized disk.raw out.vmdk",
        ),
        (
            "vmdk (monolithicSparse) → raw",
            "-f vmdk -O raw disk.vmdk out.raw",
        ),
        (
            "vmdk (monolithicSparse) → qcow2",
            "-f vmdk -O qcow2 disk.vmdk out.qcow2",
        ),
        (
            "vmdk (streamOptimized) → qcow2",
            "-f vmdk -O qcow2 stream.vmdk out.qcow2",
        ),
    ];
    println!(
        "{} GiB disk, medians of {runs}; ratio = qemu-img time / qimg time",
        gib
    );
    println!(
        "| case | qemu-img | qemu-img -m 16 -W | qimg | ratio | ratio vs -m 16 -W |\n|---|---|---|---|---|---|"
    );
    // QIMG_BENCH_ONLY=TEXT runs only the cases whose name contains TEXT.
    let only = std::env::var("QIMG_BENCH_ONLY").unwrap_or_default();
    for (name, args) in cases
        .iter()
        .filter(|(name, _)| name.contains(only.as_str()))
    {
        let plain: Vec<String> = std::iter::once("convert")
            .chain(args.split_whitespace())
            .map(String::from)
            .collect();
        let mut fast = plain.clone();
        fast.splice(1..1, ["-m", "16", "-W"].map(String::from));
        let (mut q, mut qf, mut m) = (Vec::new(), Vec::new(), Vec::new());
        let run = |program: &str, args: &[String]| -> Duration {
            sh(dir, "rm -f out.* && sync");
            measure(program, &refs(args), dir).0
        };
        for i in 0..runs {
            // Alternate which tool goes first, so neither always meets the
            // page cache the other left.
            if i % 2 == 0 {
                q.push(run("qemu-img", &plain));
                qf.push(run("qemu-img", &fast));
                m.push(run(qimg, &plain));
            } else {
                m.push(run(qimg, &plain));
                qf.push(run("qemu-img", &fast));
                q.push(run("qemu-img", &plain));
            }
        }
        let (q, qf, m) = (median(q), median(qf), median(m));
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} |",
            q.as_secs_f64(),
            qf.as_secs_f64(),
            m.as_secs_f64(),
            q.as_secs_f64() / m.as_secs_f64(),
            qf.as_secs_f64() / m.as_secs_f64()
        );
    }
}
