//! `stream`, `commit` and `rebase` against what users run with qemu-img
//! today, on the same generated chains: a 1 GiB base (about 70% allocated:
//! zeros, random data and text, deterministic) under an overlay holding
//! 64 KiB every 512 KiB (and a second base differing from the first in
//! about 10% of its clusters, for rebase). Every run starts from fresh
//! copies of the images (not timed); the tools run alternately with a warm
//! page cache. The bench prints medians, the ratio qemu-img/qimg and
//! qimg's peak RSS. Run with `cargo bench --bench chain`.
//!
//! | case | qemu-img command |
//! |---|---|
//! | `stream top` | `rebase -b '' top` (offline flattening, what users run today) |
//! | `commit top` | `commit top` |
//! | `rebase -b base2` | `rebase -b base2 -F qcow2 top` (safe mode) |

mod common;

use common::{generate_disk, measure, median, refs, sh};

const SIZE: u64 = 1 << 30;
const RUNS: usize = 3;

fn main() {
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path();
    eprintln!("generating a 1 GiB chain in {}", dir.display());
    generate_disk(&dir.join("disk.raw"), SIZE);
    sh(
        dir,
        "mkdir pristine
         qemu-img convert -O qcow2 disk.raw pristine/base.qcow2
         cp pristine/base.qcow2 pristine/base2.qcow2
         for i in $(seq 0 10 1023); do echo \"write -P 0x77 ${i}M 1M\"; done \
             | qemu-io pristine/base2.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 pristine/top.qcow2
         for i in $(seq 0 2047); do echo \"write -P 0x33 $((i * 512))k 64k\"; done \
             | qemu-io pristine/top.qcow2 >/dev/null
         rm disk.raw",
    );
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "stream top",
            &["stream", "top.qcow2"],
            &["rebase", "-b", "", "top.qcow2"],
        ),
        (
            "commit top",
            &["commit", "top.qcow2"],
            &["commit", "top.qcow2"],
        ),
        (
            "rebase -b base2",
            &["rebase", "-b", "base2.qcow2", "-F", "qcow2", "top.qcow2"],
            &["rebase", "-b", "base2.qcow2", "-F", "qcow2", "top.qcow2"],
        ),
    ];
    println!(
        "{:<18} {:>10} {:>10} {:>9} {:>12}",
        "case", "qemu-img", "qimg", "ratio", "qimg RSS"
    );
    let fresh = || sh(dir, "cp pristine/*.qcow2 .");
    for (name, ours, theirs) in cases {
        let (ours, theirs): (Vec<String>, Vec<String>) = (
            ours.iter().map(|s| s.to_string()).collect(),
            theirs.iter().map(|s| s.to_string()).collect(),
        );
        let (mut q, mut m, mut rss) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            fresh();
            q.push(measure("qemu-img", &refs(&theirs), dir).0);
            fresh();
            let (t, r) = measure(qimg, &refs(&ours), dir);
            m.push(t);
            rss = rss.max(r);
        }
        let (q, m) = (median(q), median(m));
        println!(
            "{:<18} {:>9.2}s {:>9.2}s {:>8.2}x {:>8} KiB",
            name,
            q.as_secs_f64(),
            m.as_secs_f64(),
            q.as_secs_f64() / m.as_secs_f64(),
            rss
        );
    }
}
