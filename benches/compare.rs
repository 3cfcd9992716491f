//! Compares qimg with qemu-img on the same generated images, in one run.
//!
//! Each case runs both tools alternately (warm page cache, at least five runs
//! each) and prints the median wall time of each, the ratio qemu-img/qimg
//! (above 1 means qimg is faster) and qimg's peak RSS. Run with
//! `cargo bench --bench compare`.

mod common;

use common::{measure, median, sh, RUNS};
use std::process::Command;

fn main() {
    for tool in ["qemu-img", "qemu-io"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} not found: install qemu-utils"
        );
    }
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path();
    eprintln!("generating images in {}", dir.display());
    // 10001 scattered 4 KiB writes into an 8 GiB image: a long map.
    sh(
        dir,
        "qemu-img create -q -f qcow2 frag.qcow2 8G
         for i in $(seq 0 2 20000); do echo \"write -P 1 $((i*64))k 4k\"; done | qemu-io frag.qcow2 >/dev/null",
    );
    // 1 TiB virtual, every L2 entry populated (metadata preallocation).
    sh(
        dir,
        "qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=2M prealloc.qcow2 1T",
    );
    // The same with 64 KiB clusters: 16 Mi data clusters, 512 MiB of L2 tables.
    sh(
        dir,
        "qemu-img create -q -f qcow2 -o preallocation=metadata full.qcow2 1T",
    );
    // A three-layer chain with interleaved data.
    sh(
        dir,
        "qemu-img create -q -f qcow2 base.qcow2 4G
         for i in $(seq 0 4 8000); do echo \"write -P 1 $((i*256))k 64k\"; done | qemu-io base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         for i in $(seq 1 4 8000); do echo \"write -P 2 $((i*256))k 64k\"; done | qemu-io mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         for i in $(seq 2 4 8000); do echo \"write -z $((i*256))k 64k\"; done | qemu-io top.qcow2 >/dev/null",
    );

    let cases: [(&str, &[&str]); 7] = [
        ("check, 1 TiB, 16 Mi clusters", &["check", "full.qcow2"]),
        ("check, 8 GiB, 10k extents", &["check", "frag.qcow2"]),
        (
            "map json, 10k extents",
            &["map", "--output=json", "frag.qcow2"],
        ),
        ("map human, 10k extents", &["map", "frag.qcow2"]),
        (
            "map json, 1 TiB prealloc",
            &["map", "--output=json", "prealloc.qcow2"],
        ),
        (
            "map json, 3-layer chain",
            &["map", "--output=json", "top.qcow2"],
        ),
        (
            "info json --backing-chain",
            &["info", "--output=json", "--backing-chain", "top.qcow2"],
        ),
    ];
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>12}",
        "case", "qemu-img", "qimg", "ratio", "qimg RSS"
    );
    for (name, args) in cases {
        let (mut theirs, mut ours, mut rss) = (Vec::new(), Vec::new(), 0);
        // One warm-up run each, then alternate.
        measure("qemu-img", args, dir);
        measure(qimg, args, dir);
        for _ in 0..RUNS {
            theirs.push(measure("qemu-img", args, dir).0);
            let (t, r) = measure(qimg, args, dir);
            ours.push(t);
            rss = rss.max(r);
        }
        let (q, m) = (median(theirs), median(ours));
        println!(
            "{:<28} {:>10.1}ms {:>10.1}ms {:>7.2}x {:>9} KiB",
            name,
            q.as_secs_f64() * 1e3,
            m.as_secs_f64() * 1e3,
            q.as_secs_f64() / m.as_secs_f64(),
            rss
        );
    }
}
