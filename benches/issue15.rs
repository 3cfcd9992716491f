//! The speed and memory goals of issue 15, measured against qemu-img in one
//! run, with a PASS/MISS verdict per row.
//!
//! Disks are generated (every 64 KiB cluster a hole, zeros, random bytes or
//! text, in proportions 3:1:3:3, deterministic) as raw, and converted to
//! qcow2 (and to a zlib-compressed qcow2) by qemu-img. For each timed case
//! the tools alternate (qemu-img, qimg, qimg, qemu-img, ...), every run
//! starts from fresh inputs with the page cache warm and no dirty data
//! (`sync` before each run, not timed), and the table shows medians. The
//! ratio is qemu-img's time over qimg's: above 1, qimg is faster.
//!
//! Each plain copy's throughput (data bytes of the disk per second) is also
//! given as a fraction of the disk's direct-write rate, measured in the
//! same run with `dd if=/dev/zero bs=2M oflag=direct` between the runs.
//!
//! Peak RSS (of both tools, one run each, by GNU time) is measured for `info`, `map`,
//! `check` and `convert` of a 16-deep chain of 64 GiB qcow2 images (256
//! scattered 64 KiB writes per layer) and of a 512 GiB image made by
//! `qemu-img create -o preallocation=metadata`. A run that takes longer
//! than `QIMG_BENCH_RSS_LIMIT` seconds (default 30) is killed and reported
//! as a MISS, with the RSS it had reached.
//!
//! Run with `cargo bench --bench issue15`. Environment:
//! `QIMG_BENCH_GIB` the disk sizes in GiB, comma-separated (default `1`;
//! `1,4` adds the 4 GiB set, about four times as long; empty: only the
//! peak-RSS set), `QIMG_BENCH_RUNS`
//! runs per tool and case (default 5), `QIMG_BENCH_DIR` where the images go
//! (default a temporary directory under /tmp; it must be a disk, not tmpfs).

mod common;

use common::{generate_disk, measure, median, peak_rss, require, sh, GNU_TIME};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Peak RSS goal for every command, in KiB.
const RSS_GOAL_KIB: i64 = 64 << 10;

/// One timed comparison.
struct Case {
    name: &'static str,
    /// The goal for qemu-img time / qimg time (None: shown, not graded).
    goal: Option<f64>,
    qemu: Vec<String>,
    qimg: Vec<String>,
    /// Shell run (untimed) before every run: fresh inputs, no outputs.
    prep: &'static str,
    /// A plain copy: its throughput is compared with the direct-write rate.
    copy: bool,
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// A case where both tools take the same arguments.
fn same(name: &'static str, goal: Option<f64>, a: &str, copy: bool) -> Case {
    Case {
        name,
        goal,
        qemu: args(a),
        qimg: args(a),
        prep: "rm -f out.*",
        copy,
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    require("qemu-img");
    require("qemu-io");
    require(GNU_TIME);
    let qimg = env!("CARGO_BIN_EXE_qimg");
    let runs: usize = env_or("QIMG_BENCH_RUNS", "5")
        .parse()
        .expect("QIMG_BENCH_RUNS: a number");
    assert!(runs >= 1, "QIMG_BENCH_RUNS must be at least 1");
    let sizes: Vec<u64> = env_or("QIMG_BENCH_GIB", "1")
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("QIMG_BENCH_GIB: GiB, comma-separated")
        })
        .collect();
    let rss_limit = Duration::from_secs(
        env_or("QIMG_BENCH_RSS_LIMIT", "30")
            .parse()
            .expect("QIMG_BENCH_RSS_LIMIT: seconds"),
    );
    let tmp = match std::env::var_os("QIMG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let dir = tmp.path();
    eprintln!(
        "issue15 bench: {runs} runs per tool and case, images in {}",
        dir.display()
    );

    let mut report = String::new();
    for gib in sizes {
        timed_set(qimg, dir, gib, runs, &mut report);
    }
    // A run of chosen cases (QIMG_BENCH_ONLY) leaves the peak-RSS set out.
    if std::env::var_os("QIMG_BENCH_ONLY").is_none() {
        rss_set(qimg, dir, rss_limit, &mut report);
    }
    println!("{report}");
}

/// Generates the `gib` GiB disk and its derived images, then runs every
/// timed case on them.
fn timed_set(qimg: &str, dir: &Path, gib: u64, runs: usize, report: &mut String) {
    eprintln!("generating the {gib} GiB disk");
    sh(dir, "rm -rf ./*");
    generate_disk(&dir.join("disk.raw"), gib << 30);
    // The chain for stream and commit: the disk under an overlay holding
    // 64 KiB of new data every 512 KiB (1/8 of the disk).
    sh(
        dir,
        &format!(
            "qemu-img convert -O qcow2 disk.raw disk.qcow2
             qemu-img convert -c -W -m 16 -O qcow2 disk.raw zlib.qcow2
             mkdir pristine
             cp disk.qcow2 pristine/base.qcow2
             qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 pristine/top.qcow2
             for i in $(seq 0 $(({gib} * 2048 - 1))); do echo \"write -P 0x33 $((i * 512))k 64k\"; done \
                 | qemu-io pristine/top.qcow2 >/dev/null"
        ),
    );
    let payload = data_bytes(dir, "disk.qcow2");
    let fast = "-m 16 -W -t unsafe";
    let chain_prep = "rm -f out.* && cp pristine/*.qcow2 .";
    let zstd = "-c -O qcow2 -o compression_type=zstd disk.qcow2 out.qcow2";
    let cases = vec![
        same(
            "convert qcow2→qcow2, defaults",
            Some(1.3),
            "convert -O qcow2 disk.qcow2 out.qcow2",
            true,
        ),
        same(
            "convert qcow2→raw, defaults",
            Some(1.3),
            "convert -O raw disk.qcow2 out.raw",
            true,
        ),
        same(
            "convert raw→qcow2, defaults",
            Some(1.3),
            "convert -O qcow2 disk.raw out.qcow2",
            true,
        ),
        same(
            "convert qcow2→qcow2, -m 16 -W -t unsafe",
            Some(1.5),
            &format!("convert {fast} -O qcow2 disk.qcow2 out.qcow2"),
            true,
        ),
        same(
            "convert qcow2→raw, -m 16 -W -t unsafe",
            Some(1.5),
            &format!("convert {fast} -O raw disk.qcow2 out.raw"),
            true,
        ),
        same(
            "convert raw→qcow2, -m 16 -W -t unsafe",
            Some(1.5),
            &format!("convert {fast} -O qcow2 disk.raw out.qcow2"),
            true,
        ),
        same(
            "convert zlib qcow2→raw, defaults",
            Some(3.0),
            "convert -O raw zlib.qcow2 out.raw",
            false,
        ),
        same(
            "convert -c zstd, defaults",
            Some(2.5),
            &format!("convert {zstd}"),
            false,
        ),
        Case {
            name: "convert -c zstd, qemu-img -W",
            goal: Some(2.5),
            qemu: args(&format!("convert -W {zstd}")),
            qimg: args(&format!("convert {zstd}")),
            prep: "rm -f out.*",
            copy: false,
        },
        same(
            "convert -c zlib, defaults",
            Some(5.0),
            "convert -c -O qcow2 disk.qcow2 out.qcow2",
            false,
        ),
        Case {
            name: "convert -c zlib, qemu-img -W",
            goal: Some(5.0),
            qemu: args("convert -W -c -O qcow2 disk.qcow2 out.qcow2"),
            qimg: args("convert -c -O qcow2 disk.qcow2 out.qcow2"),
            prep: "rm -f out.*",
            copy: false,
        },
        same(
            "convert qcow2→qcow2, -C -m 16 -W -t unsafe",
            None,
            &format!("convert -C {fast} -O qcow2 disk.qcow2 out.qcow2"),
            true,
        ),
        same(
            "convert qcow2→raw, -C -m 16 -W -t unsafe",
            None,
            &format!("convert -C {fast} -O raw disk.qcow2 out.raw"),
            true,
        ),
        same(
            "convert raw→qcow2, -C -m 16 -W -t unsafe",
            None,
            &format!("convert -C {fast} -O qcow2 disk.raw out.qcow2"),
            true,
        ),
        same(
            "convert qcow2→raw, -C, defaults",
            None,
            "convert -C -O raw disk.qcow2 out.raw",
            true,
        ),
        Case {
            name: "stream vs rebase -b '' (2 layers)",
            goal: Some(2.5),
            qemu: vec![
                "rebase".into(),
                "-b".into(),
                String::new(),
                "top.qcow2".into(),
            ],
            qimg: args("stream top.qcow2"),
            prep: chain_prep,
            copy: false,
        },
        Case {
            name: "commit (2 layers)",
            goal: Some(2.0),
            qemu: args("commit top.qcow2"),
            qimg: args("commit top.qcow2"),
            prep: chain_prep,
            copy: false,
        },
    ];

    // QIMG_BENCH_ONLY=TEXT runs only the cases whose name contains TEXT.
    let only = std::env::var("QIMG_BENCH_ONLY").unwrap_or_default();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| c.name.contains(only.as_str()))
        .collect();
    let chunks = (payload >> 21).max(1);
    let dd = format!("dd if=/dev/zero of=dd.out bs=2M count={chunks} oflag=direct status=none");
    let mut dd_times = Vec::new();
    let mut rows = Vec::new();
    // Each tool's fastest and slowest run per case, to show the noise.
    let mut spreads = Vec::new();
    for case in &cases {
        eprintln!("{gib} GiB: {}", case.name);
        sh(
            dir,
            "cat disk.raw disk.qcow2 zlib.qcow2 pristine/* >/dev/null",
        );
        let (mut q, mut m) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate which tool goes first: qemu-img, qimg, qimg, qemu-img, ...
            for first_qemu in [run % 2 == 0, run % 2 != 0] {
                sh(dir, &format!("{}; sync", case.prep));
                if first_qemu {
                    q.push(timed(dir, "qemu-img", &case.qemu));
                } else {
                    m.push(timed(dir, qimg, &case.qimg));
                }
            }
            if case.copy {
                sh(dir, "rm -f out.* dd.out; sync");
                let (t, _) = measure("bash", &["-c", &dd], dir);
                dd_times.push(t);
                sh(dir, "rm -f dd.out");
            }
        }
        let spread = |v: &[Duration]| {
            let secs = |d: &Duration| d.as_secs_f64();
            let lo = v.iter().map(secs).fold(f64::INFINITY, f64::min);
            let hi = v.iter().map(secs).fold(0.0, f64::max);
            format!("{lo:.2}–{hi:.2} s")
        };
        spreads.push((spread(&q), spread(&m)));
        rows.push((case, median(q), median(m)));
    }
    let dd_rate = (chunks << 21) as f64 / median(dd_times).as_secs_f64();

    let _ = writeln!(
        report,
        "\n## {gib} GiB disk ({} MiB of data), medians of {runs}\n",
        payload >> 20
    );
    let _ = writeln!(
        report,
        "| case | qemu-img | qimg | ratio | goal | verdict | qemu-img runs | qimg runs |\n|---|---|---|---|---|---|---|---|"
    );
    for ((case, q, m), (q_spread, m_spread)) in rows.iter().zip(&spreads) {
        let ratio = q.as_secs_f64() / m.as_secs_f64();
        let (goal, verdict) = match case.goal {
            Some(g) => (format!("≥ {g}"), pass(ratio >= g)),
            None => ("–".into(), "–"),
        };
        let _ = writeln!(
            report,
            "| {} | {:.2} s | {:.2} s | {:.2} | {goal} | {verdict} | {q_spread} | {m_spread} |",
            case.name,
            q.as_secs_f64(),
            m.as_secs_f64(),
            ratio
        );
    }
    let _ = writeln!(
        report,
        "\nDirect-write rate of the disk (`dd bs=2M oflag=direct`, {} MiB, median): {:.0} MiB/s\n",
        chunks * 2,
        dd_rate / f64::from(1 << 20)
    );
    let _ = writeln!(
        report,
        "| plain copy | qemu-img MiB/s | fraction | qimg MiB/s | fraction |\n|---|---|---|---|---|"
    );
    for (case, q, m) in rows.iter().filter(|(c, _, _)| c.copy) {
        let rate = |t: &Duration| payload as f64 / t.as_secs_f64();
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} |",
            case.name,
            rate(q) / f64::from(1 << 20),
            rate(q) / dd_rate,
            rate(m) / f64::from(1 << 20),
            rate(m) / dd_rate
        );
    }
}

/// The wall time of one run.
fn timed(dir: &Path, program: &str, args: &[String]) -> Duration {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    measure(program, &a, dir).0
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "**MISS**"
    }
}

/// Bytes of `image` that hold data, by qemu-img's map.
fn data_bytes(dir: &Path, image: &str) -> u64 {
    let out = std::process::Command::new("qemu-img")
        .args(["map", "--output=json", image])
        .current_dir(dir)
        .output()
        .expect("qemu-img map");
    assert!(out.status.success(), "qemu-img map {image} failed");
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).expect("map JSON");
    map.as_array()
        .expect("map list")
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["length"].as_u64().expect("length"))
        .sum()
}

/// Peak RSS of both tools for the metadata-heavy commands on big images.
fn rss_set(qimg: &str, dir: &Path, limit: Duration, report: &mut String) {
    eprintln!("generating the 16-deep chain and the 512 GiB preallocated image");
    sh(
        dir,
        "rm -rf ./*
         qemu-img create -q -f qcow2 l0.qcow2 64G
         for i in $(seq 1 15); do
             qemu-img create -q -f qcow2 -b l$((i - 1)).qcow2 -F qcow2 l$i.qcow2
         done
         for i in $(seq 0 15); do
             for j in $(seq 0 255); do
                 echo \"write -P $i $(( (j * 251 + i * 37) % 1024 * 64 + i ))M 64k\"
             done | qemu-io l$i.qcow2 >/dev/null
         done
         qemu-img create -q -f qcow2 -o preallocation=metadata big.qcow2 512G",
    );
    let commands = [
        ("info, 16-deep chain", "info --backing-chain l15.qcow2"),
        ("map, 16-deep chain", "map --output=json l15.qcow2"),
        ("check, 16-deep chain (top)", "check l15.qcow2"),
        (
            "convert, 16-deep chain",
            "convert -O qcow2 l15.qcow2 out.qcow2",
        ),
        ("info, 512 GiB preallocated", "info big.qcow2"),
        ("map, 512 GiB preallocated", "map --output=json big.qcow2"),
        ("check, 512 GiB preallocated", "check big.qcow2"),
        (
            "convert, 512 GiB preallocated",
            "convert -O qcow2 big.qcow2 out.qcow2",
        ),
    ];
    let _ = writeln!(
        report,
        "\n## Peak RSS (one run each; goal ≤ {} MiB for qimg)\n",
        RSS_GOAL_KIB >> 10
    );
    let _ = writeln!(
        report,
        "| command | qemu-img | qimg | qimg time | verdict |\n|---|---|---|---|---|"
    );
    for (name, command) in commands {
        eprintln!("peak RSS: {name}");
        let a: Vec<&str> = command.split_whitespace().collect();
        sh(dir, "rm -f out.*");
        let (qt, q) = peak_rss("qemu-img", &a, dir, limit);
        sh(dir, "rm -f out.*");
        let (mt, m) = peak_rss(qimg, &a, dir, limit);
        let show = |t: Option<Duration>| match t {
            Some(t) => format!("{:.2} s", t.as_secs_f64()),
            None => format!("killed after {} s", limit.as_secs()),
        };
        let _ = writeln!(
            report,
            "| {name} | {:.1} MiB{} | {:.1} MiB | {} | {} |",
            q as f64 / 1024.0,
            if qt.is_none() { " (killed)" } else { "" },
            m as f64 / 1024.0,
            show(mt),
            pass(mt.is_some() && m <= RSS_GOAL_KIB)
        );
    }
}
