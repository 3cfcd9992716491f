//! `compare` against `qemu-img compare` on two copies of the generated
//! 2 GiB disk (about 30% holes, 10% zero clusters, 60% data), as qcow2 and
//! as raw: identical, and differing in the last data cluster. Both tools
//! run alternately with a warm page cache; the bench prints medians, the
//! ratio qemu-img/qimg (above 1: qimg is faster) and qimg's peak RSS. Run
//! with `cargo bench --bench compare_images`.

mod common;

use common::{disk_dir, measure, median, sh};

const SIZE: u64 = 2 << 30;
const RUNS: usize = 3;

fn main() {
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let tmp = disk_dir(SIZE);
    let dir = tmp.path();
    // The copy differs in one byte of the last data cluster.
    sh(
        dir,
        "cp --sparse=always disk.raw other.raw
         last=$(qemu-img map --output=json -f raw disk.raw | grep '\"data\": true' | tail -n 1 \
                | sed -E 's/.*\"start\": ([0-9]+), \"length\": ([0-9]+).*/\\1 \\2/')
         set -- $last
         printf 'Z' | dd of=other.raw bs=1 seek=$(($1 + $2 - 100)) conv=notrunc status=none
         qemu-img convert -O qcow2 other.raw other.qcow2
         qemu-img convert -O qcow2 disk.raw same.qcow2",
    );
    let cases: [(&str, [&str; 2]); 4] = [
        ("qcow2, identical", ["disk.qcow2", "same.qcow2"]),
        ("qcow2, last cluster differs", ["disk.qcow2", "other.qcow2"]),
        ("raw, identical", ["disk.raw", "disk.qcow2"]),
        ("raw, last cluster differs", ["disk.raw", "other.raw"]),
    ];
    println!(
        "{:<30} {:>10} {:>10} {:>8} {:>10}",
        "case", "qemu-img", "qimg", "ratio", "qimg RSS"
    );
    for (name, files) in cases {
        let args = ["compare", files[0], files[1]];
        let run = |program: &str| {
            // compare exits 1 for different images: only time the run.
            let (t, rss) = measure_any(program, &args, dir);
            (t, rss)
        };
        run("qemu-img");
        run(qimg);
        let (mut theirs, mut ours, mut rss) = (Vec::new(), Vec::new(), 0);
        for _ in 0..RUNS {
            theirs.push(run("qemu-img").0);
            let (t, r) = run(qimg);
            ours.push(t);
            rss = rss.max(r);
        }
        let (q, m) = (median(theirs), median(ours));
        println!(
            "{:<30} {:>9.2}s {:>9.2}s {:>7.2}x {:>7} MiB",
            name,
            q.as_secs_f64(),
            m.as_secs_f64(),
            q.as_secs_f64() / m.as_secs_f64(),
            rss / 1024
        );
    }
}

/// As `common::measure`, for a command whose exit status 1 is an answer:
/// runs it through a shell that maps 1 to success.
fn measure_any(program: &str, args: &[&str], dir: &std::path::Path) -> (std::time::Duration, i64) {
    let mut script = vec!["-c", "\"$@\"; [ $? -le 1 ]", "compare"];
    script.push(program);
    script.extend(args);
    measure("bash", &script, dir)
}
