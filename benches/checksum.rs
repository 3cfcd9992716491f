//! The speed goals of issue 23: `qimg checksum` against `sha256sum` of the
//! raw file and against qemu-img converting to raw, then `sha256sum`, on a
//! 4 GiB image that is 25% allocated, an empty 1 TiB image and a fully
//! allocated 2 GiB image, with a PASS/MISS verdict per row (the ratio is
//! sha256sum's time over qimg's on the qcow2 image).
//!
//! The 25% image has random data in one 64 KiB cluster of four (chosen by
//! a fixed generator), holes elsewhere; the full one is random data
//! throughout. Each is made raw, then converted to qcow2 by qemu-img.
//!
//! qemu-img 10 cannot convert to a pipe (`convert -O raw disk.qcow2
//! /dev/stdout` fails with "Could not resize file", and with `-n` "output
//! file is smaller than input file"), so the qemu-img baseline converts to
//! a raw file and hashes that (`qemu-img convert -O raw disk.qcow2 out.raw
//! && sha256sum out.raw`), timed together.
//!
//! Hashing 1 TiB of zeros takes sha256sum over an hour here, so for the
//! empty image both baselines are timed on an empty 4 GiB image and
//! multiplied by 256 (their cost is linear in the size: every byte is
//! read and hashed); the table says so. qimg is timed on the real 1 TiB.
//!
//! Every tool runs once untimed (warm page cache), then the tools alternate
//! for `QIMG_BENCH_RUNS` runs (default 3); the table shows medians. Set
//! `QIMG_BENCH_BLKSUM` to a blksum binary to add its times on the raw
//! images. `QIMG_BENCH_DIR`: where the images go (default under /tmp; it
//! needs about 8 GiB).
//!
//! Run with `cargo bench --bench checksum`.

mod common;

use common::{measure, median, require, sh};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const CLUSTER: u64 = 64 << 10;

/// A raw image of `size` bytes where each 64 KiB cluster holds random data
/// with probability `quarters`/4 (else it is a hole).
fn generate(path: &Path, size: u64, quarters: u64) {
    let file = std::fs::File::create(path).expect("create image");
    file.set_len(size).expect("size image");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut buf = vec![0u8; 16 * CLUSTER as usize];
    let mut c = 0;
    while c < size / CLUSTER {
        // Runs of up to 16 clusters: as allocated as asked, in pieces.
        let n = (1 + next() % 16).min(size / CLUSTER - c);
        if next() % 4 < quarters {
            let part = &mut buf[..(n * CLUSTER) as usize];
            part.chunks_exact_mut(8)
                .for_each(|w| w.copy_from_slice(&next().to_le_bytes()));
            file.write_all_at(part, c * CLUSTER).expect("write image");
        }
        c += n;
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// One command line: a program and its arguments.
#[derive(Clone)]
struct Cmd {
    program: String,
    args: Vec<String>,
}

fn cmd(program: &str, args: &str) -> Cmd {
    Cmd {
        program: program.to_string(),
        args: args.split_whitespace().map(String::from).collect(),
    }
}

fn shell(script: &str) -> Cmd {
    Cmd {
        program: "bash".into(),
        args: vec!["-euo".into(), "pipefail".into(), "-c".into(), script.into()],
    }
}

/// Median wall times of `cmds`, run alternately `runs` times after one
/// warm-up run each.
fn time_all(cmds: &[Cmd], dir: &Path, runs: usize) -> Vec<Duration> {
    let run = |c: &Cmd| {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        measure(&c.program, &args, dir).0
    };
    for c in cmds {
        run(c);
    }
    let mut times = vec![Vec::new(); cmds.len()];
    for _ in 0..runs {
        for (i, c) in cmds.iter().enumerate() {
            times[i].push(run(c));
        }
    }
    times.into_iter().map(median).collect()
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 0.1 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// The digest `qimg checksum` prints for `image`.
fn digest(qimg: &str, dir: &Path, image: &str) -> String {
    let out = std::process::Command::new(qimg)
        .args(["checksum", image])
        .current_dir(dir)
        .output()
        .expect("run qimg checksum");
    assert!(out.status.success(), "qimg checksum {image} failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

struct Row {
    name: &'static str,
    /// The image's stem: NAME.raw and NAME.qcow2.
    stem: &'static str,
    /// The stem the baselines run on, and how many times larger the real
    /// image is (1: the same image).
    baseline_stem: &'static str,
    scale: u32,
    goal: f64,
}

fn main() {
    require("qemu-img");
    require("sha256sum");
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let runs: usize = env_or("QIMG_BENCH_RUNS", "3")
        .parse()
        .expect("QIMG_BENCH_RUNS: a number");
    assert!(runs >= 1, "QIMG_BENCH_RUNS must be at least 1");
    let blksum = std::env::var("QIMG_BENCH_BLKSUM").ok();
    let tmp = match std::env::var_os("QIMG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let dir = tmp.path();
    eprintln!(
        "checksum bench: {runs} runs per tool, images in {}",
        dir.display()
    );
    generate(&dir.join("sparse.raw"), 4 * GIB, 1);
    generate(&dir.join("full.raw"), 2 * GIB, 4);
    sh(
        dir,
        "qemu-img convert -f raw -O qcow2 sparse.raw sparse.qcow2
         qemu-img convert -f raw -O qcow2 full.raw full.qcow2
         qemu-img create -q -f qcow2 empty.qcow2 1T
         truncate -s 1T empty.raw
         truncate -s 4G empty4g.raw
         qemu-img convert -f raw -O qcow2 empty4g.raw empty4g.qcow2
         sync",
    );
    let rows = [
        Row {
            name: "4 GiB, 25% allocated",
            stem: "sparse",
            baseline_stem: "sparse",
            scale: 1,
            goal: 10.0,
        },
        Row {
            name: "1 TiB, empty",
            stem: "empty",
            baseline_stem: "empty4g",
            scale: 256,
            goal: 1000.0,
        },
        Row {
            name: "2 GiB, fully allocated",
            stem: "full",
            baseline_stem: "full",
            scale: 1,
            goal: 2.0,
        },
    ];
    let mut report = String::from(
        "| image | qimg checksum qcow2 | qimg checksum raw | sha256sum raw | qemu-img convert -O raw + sha256sum |",
    );
    if blksum.is_some() {
        report.push_str(" blksum raw |");
    }
    report.push_str(" sha256sum / qimg (qcow2) | goal | verdict |\n|---|---|---|---|---|");
    if blksum.is_some() {
        report.push_str("---|");
    }
    report.push_str("---|---|---|\n");
    for row in &rows {
        let (stem, base) = (row.stem, row.baseline_stem);
        let (raw, qcow2) = (format!("{stem}.raw"), format!("{stem}.qcow2"));
        assert_eq!(
            digest(qimg, dir, &raw),
            digest(qimg, dir, &qcow2),
            "{stem}: raw and qcow2 digests differ"
        );
        eprintln!("timing {}", row.name);
        let mut cmds = vec![
            cmd(qimg, &format!("checksum {qcow2}")),
            cmd(qimg, &format!("checksum {raw}")),
            cmd("sha256sum", &format!("{base}.raw")),
            shell(&format!(
                "qemu-img convert -f qcow2 -O raw {base}.qcow2 out.raw && sha256sum out.raw && rm out.raw"
            )),
        ];
        if let Some(b) = &blksum {
            cmds.push(cmd(b, &raw));
        }
        let t = time_all(&cmds, dir, runs);
        let scaled = |d: Duration| d * row.scale;
        let note = if row.scale > 1 {
            format!(" (4 GiB × {})", row.scale)
        } else {
            String::new()
        };
        let ratio = scaled(t[2]).as_secs_f64() / t[0].as_secs_f64();
        let mut line = format!(
            "| {} | {} | {} | {}{note} | {}{note} |",
            row.name,
            secs(t[0]),
            secs(t[1]),
            secs(scaled(t[2])),
            secs(scaled(t[3]))
        );
        if blksum.is_some() {
            line.push_str(&format!(" {} |", secs(t[4])));
        }
        line.push_str(&format!(
            " {ratio:.0}× | ≥ {}× | {} |\n",
            row.goal,
            if ratio >= row.goal { "PASS" } else { "MISS" }
        ));
        eprint!("{line}");
        report.push_str(&line);
    }
    println!("{report}");
}
