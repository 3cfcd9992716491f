//! `qimg rebase` against `qemu-img rebase` on identical chains.

mod common;

use common::{
    assert_cancelled, assert_json_progress, cancel_after, map_without_offsets, stderr, stdout,
    three_layer_chain, Fixture,
};
use qimg::ops::rebase::{rebase, RebaseRequest};
use std::sync::atomic::AtomicBool;

#[test]
fn safe_rebase_matches_qemu_img() {
    let fx = Fixture::new();
    for (dir, args) in [
        ("onto-base", &["-b", "base.qcow2", "-F", "qcow2"][..]),
        ("flatten", &["-b", ""]),
    ] {
        three_layer_chain(&fx, &format!("{dir}-q"), "top.qcow2", "qcow2");
        three_layer_chain(&fx, &format!("{dir}-m"), "top.qcow2", "qcow2");
        let mut q = vec!["rebase"];
        q.extend(args);
        q.push("top.qcow2");
        let theirs = fx.run(
            "bash",
            &["-c", &format!("cd {dir}-q && qemu-img {}", shell_words(&q))],
        );
        assert!(theirs.status.success(), "{}", stderr(&theirs));
        let ours = fx.run(
            "bash",
            &[
                "-c",
                &format!(
                    "cd {dir}-m && {} {}",
                    assert_cmd::cargo::cargo_bin("qimg").display(),
                    shell_words(&q)
                ),
            ],
        );
        assert!(ours.status.success(), "{dir}: {}", stderr(&ours));
        let (m, t) = (format!("{dir}-m/top.qcow2"), format!("{dir}-q/top.qcow2"));
        fx.assert_same(&format!("{dir}-m/before.raw"), &m);
        fx.assert_clean(&m);
        assert_eq!(
            map_without_offsets(&fx, &m),
            map_without_offsets(&fx, &t),
            "{dir}: allocation"
        );
        let backing = |f: &str| {
            stdout(&fx.qemu_img(&["info", f]))
                .lines()
                .filter(|l| l.starts_with("backing file"))
                .map(|l| l.split(" (actual path").next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(backing(&m), backing(&t), "{dir}: backing pointer");
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn unsafe_rebase_and_errors() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "u", "top.qcow2", "qcow2");
    let out = fx.qimg(&[
        "rebase",
        "-u",
        "-b",
        "elsewhere.qcow2",
        "-F",
        "qcow2",
        "u/top.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = stdout(&fx.qemu_img(&["info", "u/top.qcow2"]));
    assert!(
        info.contains("backing file: elsewhere.qcow2 (actual path: u/elsewhere.qcow2)\n"),
        "{info}"
    );
    assert!(info.contains("backing file format: qcow2\n"), "{info}");
    fx.sh("qemu-img create -q -f raw disk.raw 1M");
    for (args, needle) in [
        (
            &["rebase", "-b", "u/base.qcow2", "u/mid.qcow2"][..],
            "backing format must be specified",
        ),
        (
            &["rebase", "-u", "-b", "x", "-F", "raw", "disk.raw"],
            "Operation not supported",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn partly_allocated_subclusters_keep_their_data() {
    // With extended L2 the image allocates single subclusters: rebasing
    // must copy only the unallocated ones that differ, never the whole
    // cluster over what the image itself holds.
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 old.qcow2 4M
         qemu-io -c 'write -P 0x11 0 4M' old.qcow2 >/dev/null
         qemu-img create -q -f qcow2 new.qcow2 4M
         qemu-io -c 'write -P 0x22 0 4M' new.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on -b old.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 0 8k' -c 'write -P 0x44 96k 8k' -c 'write -P 0x55 1M 2k' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw",
    );
    let out = fx.qimg(&["rebase", "-b", "new.qcow2", "-F", "qcow2", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("before.raw", "top.qcow2");
    fx.assert_clean("top.qcow2");
    assert!(stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file: new.qcow2"));
}

#[test]
fn progress_json_reports_the_rebase() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "p", "top.qcow2", "qcow2");
    let out = fx.qimg(&[
        "rebase",
        "--progress=json",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        "p/top.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_json_progress(&out, "rebase");
    fx.assert_same("p/before.raw", "p/top.qcow2");
}

/// Set by the progress callback below: stops the rebase between chunks,
/// as SIGINT/SIGTERM do through the same flag.
static STOP_REBASE: AtomicBool = AtomicBool::new(false);

#[test]
fn an_interrupted_rebase_keeps_its_old_backing_file_and_can_run_again() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 old.qcow2 8M
         qemu-io -c 'write -P 0x11 0 8M' old.qcow2 >/dev/null
         qemu-img create -q -f qcow2 new.qcow2 8M
         qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 1M 64k' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw");
    let request = RebaseRequest {
        file: fx.path("top.qcow2"),
        format: None,
        backing: "new.qcow2".into(),
        backing_format: Some("qcow2".into()),
        threads: 2,
        ..Default::default()
    };
    let control = cancel_after(&STOP_REBASE, 2 << 20);
    assert_cancelled(rebase(&request, &control).expect("rebase"));
    // Part copied, the old backing file still named, the guest view intact.
    fx.assert_clean("top.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    assert!(stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file: old.qcow2\n"));
    let out = fx.qimg(&["rebase", "-b", "new.qcow2", "-F", "qcow2", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("top.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    assert!(stdout(&fx.qemu_img(&["info", "top.qcow2"])).contains("backing file: new.qcow2\n"));
}

/// The guest ranges `qemu-img map` reports compressed, merged.
fn compressed_ranges(fx: &Fixture, image: &str) -> Vec<(u64, u64)> {
    let map: Vec<serde_json::Value> =
        serde_json::from_slice(&fx.qemu_img(&["map", "--output=json", image]).stdout).unwrap();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for e in map
        .iter()
        .filter(|e| e["compressed"] == true && e["depth"] == 0)
    {
        let (start, len) = (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        match ranges.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => ranges.push((start, len)),
        }
    }
    ranges
}

#[test]
fn compressed_rebase_matches_qemu_img() {
    let fx = Fixture::new();
    for (dir, options) in [("std", "cluster_size=64k"), ("ext", "extended_l2=on")] {
        for tool in ["q", "m"] {
            fx.sh(&format!(
                "mkdir -p {dir}-{tool} && cd {dir}-{tool}
                 qemu-img create -q -f qcow2 old.qcow2 3M
                 qemu-io -c 'write -P 0x11 0 3M' old.qcow2 >/dev/null
                 qemu-img create -q -f qcow2 -o {options} -b old.qcow2 -F qcow2 top.qcow2
                 qemu-io -c 'write -P 0x33 0 8k' -c 'write -P 0x44 1M 64k' -c 'write -z 2M 4k' top.qcow2 >/dev/null
                 qemu-img convert -O raw top.qcow2 before.raw"
            ));
        }
        let args = ["rebase", "-c", "-b", "", "top.qcow2"];
        let ours = fx.run_in(&format!("{dir}-m"), "qimg", &args);
        assert!(ours.status.success(), "{dir}: {}", stderr(&ours));
        let m = format!("{dir}-m/top.qcow2");
        fx.assert_clean(&m);
        fx.assert_same(&format!("{dir}-m/before.raw"), &m);
        let ranges = compressed_ranges(&fx, &m);
        if dir == "std" {
            let theirs = fx.run_in(&format!("{dir}-q"), "qemu-img", &args);
            assert!(theirs.status.success(), "{dir}: {}", stderr(&theirs));
            let q = format!("{dir}-q/top.qcow2");
            assert_eq!(
                ranges,
                compressed_ranges(&fx, &q),
                "{dir}: compressed ranges"
            );
        } else {
            // qemu-img 10.0 aborts on an assertion here (a cluster the
            // image partly holds), so the expectation is spelled out: the
            // clusters at 0 (8 KiB held) and at 2M (4 KiB zeroed) keep
            // their subclusters, the one at 1M is the image's own, and
            // every other cluster is compressed.
            assert_eq!(
                ranges,
                [(65536, 983040), (1114112, 983040), (2162688, 983040)],
                "{dir}"
            );
        }
    }
    fx.sh("qemu-img create -q -f qcow2 b.qcow2 1M
         qemu-img create -q -f qed -b b.qcow2 -F qcow2 t.qed");
    let out = fx.qimg(&["rebase", "-c", "-b", "", "t.qed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Compression not supported for this file format"),
        "{}",
        stderr(&out)
    );
}
