//! `convert` against `qemu-img convert` on the same generated 2 GiB disk:
//! about 30% holes, 10% zero-filled clusters, 30% random data and 30%
//! compressible text, deterministic. Both tools run alternately with a warm
//! page cache; the bench prints medians, the ratio qemu-img/qimg and qimg's
//! peak RSS. qemu-img is also measured with `-m 16 -W`, its fastest mode,
//! which qimg must not fall behind. qimg writes durably (bulk data with
//! direct I/O, a flush at the end); qemu-img's convert never flushes, so
//! qimg is also timed with `-t unsafe`, the like-for-like mode. A last case
//! converts a sparse 64 GiB disk (1 GiB of data spread over it) once, for
//! peak memory at a large virtual size. Run with `cargo bench --bench convert`.

mod common;

use common::{disk_dir, measure, median, refs, sh};

const SIZE: u64 = 2 << 30;
const RUNS: usize = 3;

fn main() {
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = disk_dir(SIZE);
    let dir = tmp.path();

    let cases: [(&str, &[&str]); 5] = [
        (
            "qcow2 -> qcow2",
            &["-O", "qcow2", "disk.qcow2", "out.qcow2"],
        ),
        ("qcow2 -> raw", &["-O", "raw", "disk.qcow2", "out.raw"]),
        ("raw -> qcow2", &["-O", "qcow2", "disk.raw", "out.qcow2"]),
        ("-c zlib", &["-c", "-O", "qcow2", "disk.qcow2", "out.qcow2"]),
        (
            "-c zstd",
            &[
                "-c",
                "-O",
                "qcow2",
                "-o",
                "compression_type=zstd",
                "disk.qcow2",
                "out.qcow2",
            ],
        ),
    ];
    println!(
        "{:<16} {:>11} {:>14} {:>11} {:>9} {:>10} {:>10} {:>13}",
        "case",
        "qemu-img",
        "qemu -m16 -W",
        "qimg",
        "ratio",
        "vs -m16 -W",
        "qimg RSS",
        "qimg -t unsafe"
    );
    for (name, args) in cases {
        let with = |extra: &[&str]| {
            let mut a = vec!["convert"];
            a.extend(extra);
            a.extend(args);
            a.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let plain = with(&[]);
        let fast = with(&["-m", "16", "-W"]);
        let unsafe_cache = with(&["-t", "unsafe"]);
        let (mut q, mut qf, mut m, mut mu, mut rss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            q.push(measure("qemu-img", &refs(&plain), dir).0);
            qf.push(measure("qemu-img", &refs(&fast), dir).0);
            let (t, r) = measure(qimg, &refs(&plain), dir);
            m.push(t);
            rss = rss.max(r);
            mu.push(measure(qimg, &refs(&unsafe_cache), dir).0);
        }
        let (q, qf, m, mu) = (median(q), median(qf), median(m), median(mu));
        println!(
            "{:<16} {:>10.2}s {:>13.2}s {:>10.2}s {:>8.2}x {:>9.2}x {:>7} KiB {:>12.2}s",
            name,
            q.as_secs_f64(),
            qf.as_secs_f64(),
            m.as_secs_f64(),
            q.as_secs_f64() / m.as_secs_f64(),
            qf.as_secs_f64() / m.as_secs_f64(),
            rss,
            mu.as_secs_f64()
        );
    }
    large(qimg, dir);
}

/// A sparse 64 GiB raw disk with 1 MiB of data every 64 MiB, converted to
/// qcow2 once by each tool: time and qimg's peak memory.
fn large(qimg: &str, dir: &std::path::Path) {
    sh(
        dir,
        "rm -f disk.raw disk.qcow2 out.*
         truncate -s 64G big.raw
         for i in $(seq 0 1023); do
             dd if=/dev/urandom of=big.raw bs=1M count=1 seek=$((i * 64)) conv=notrunc status=none
         done",
    );
    let args = ["convert", "-O", "qcow2", "big.raw", "out.qcow2"];
    let (q, _) = measure("qemu-img", &args, dir);
    let (m, rss) = measure(qimg, &args, dir);
    println!(
        "{:<16} {:>10.2}s {:>14} {:>10.2}s {:>8.2}x {:>10} {:>7} KiB",
        "64 GiB sparse",
        q.as_secs_f64(),
        "",
        m.as_secs_f64(),
        q.as_secs_f64() / m.as_secs_f64(),
        "",
        rss
    );
}
