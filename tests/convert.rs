//! `qimg convert` against qemu-img: every output reads back identical with
//! `qemu-img compare` and passes `qemu-img check` without errors or leaks.

mod common;

use common::{allocation, assert_json_progress, stderr, stdout, Fixture};
use std::process::Command;
use std::time::Duration;

fn assert_converts(fx: &Fixture, source: &str, target: &str, args: &[&str]) {
    let mut all = vec!["convert"];
    all.extend(args);
    all.extend([source, target]);
    let out = fx.qimg(&all);
    assert!(out.status.success(), "qimg {all:?}: {}", stderr(&out));
    let cmp = fx.qemu_img(&["compare", source, target]);
    assert!(
        cmp.status.success(),
        "qimg {all:?}: {}{}",
        stdout(&cmp),
        stderr(&cmp)
    );
    if !target.ends_with(".raw") {
        let check = fx.qemu_img(&["check", target]);
        assert!(
            check.status.success(),
            "qimg {all:?}: qemu-img check: {}{}",
            stdout(&check),
            stderr(&check)
        );
    }
    std::fs::remove_file(fx.path(target)).unwrap();
}

fn sources(fx: &Fixture) -> Vec<&'static str> {
    fx.sh(
        "qemu-img create -q -f raw disk.raw 6M
         qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 100k' -c 'write -P 0 4M 1M' disk.raw >/dev/null
         qemu-img convert -O qcow2 disk.raw v3.qcow2
         qemu-img convert -O qcow2 -o compat=0.10 disk.raw v2.qcow2
         qemu-img convert -O qcow2 -o extended_l2=on disk.raw xl.qcow2
         qemu-io -c 'write -z 3M 4k' -c 'write -P 9 5M 2k' xl.qcow2 >/dev/null
         qemu-img convert -c -O qcow2 disk.raw zlib.qcow2
         qemu-img convert -c -O qcow2 -o compression_type=zstd disk.raw zstd.qcow2
         qemu-img convert -O qed disk.raw img.qed
         qemu-img create -q -f qcow2 base.qcow2 6M
         qemu-io -c 'write -P 0x31 0 2M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 0x32 1M 1M' -c 'write -z 128k 64k' mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 1536k 1M' top.qcow2 >/dev/null",
    );
    vec![
        "disk.raw",
        "v3.qcow2",
        "v2.qcow2",
        "xl.qcow2",
        "zlib.qcow2",
        "zstd.qcow2",
        "img.qed",
        "top.qcow2",
    ]
}

#[test]
fn every_source_to_qcow2_qed_and_raw() {
    let fx = Fixture::new();
    for source in sources(&fx) {
        assert_converts(&fx, source, "out.qcow2", &["-O", "qcow2"]);
        assert_converts(&fx, source, "out.qed", &["-O", "qed"]);
        assert_converts(&fx, source, "out.raw", &["-O", "raw"]);
    }
}

#[test]
fn target_options() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    for opts in [
        "cluster_size=512",
        "cluster_size=2M",
        "extended_l2=on",
        "compat=0.10",
        "refcount_bits=1",
        "refcount_bits=64",
        "preallocation=metadata",
    ] {
        assert_converts(&fx, "top.qcow2", "out.qcow2", &["-O", "qcow2", "-o", opts]);
    }
    for opts in ["cluster_size=4k", "cluster_size=64k,table_size=2"] {
        // qemu-img's own QED output with 4 KiB clusters leaks a cluster; qimg's must not.
        assert_converts(&fx, "top.qcow2", "out.qed", &["-O", "qed", "-o", opts]);
    }
}

#[test]
fn sparseness_and_threads() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    for args in [
        &["-S", "0"][..],
        &["-S", "64k"],
        &["-m", "1"],
        &["-m", "16"],
        &["-W"],
    ] {
        let mut all = vec!["-O", "qcow2"];
        all.extend(args);
        assert_converts(&fx, "v3.qcow2", "out.qcow2", &all);
    }
    // -S 0 writes every byte: one data extent.
    fx.qimg(&[
        "convert",
        "-S",
        "0",
        "-O",
        "qcow2",
        "v3.qcow2",
        "full.qcow2",
    ]);
    let map = stdout(&fx.qemu_img(&["map", "--output=json", "full.qcow2"]));
    assert_eq!(map.lines().count(), 1, "{map}");
    // By default the zero MiB written at 4M stays unallocated: only the two
    // real data ranges are allocated.
    fx.qimg(&["convert", "-O", "qcow2", "disk.raw", "sparse.qcow2"]);
    let map = stdout(&fx.qemu_img(&["map", "--output=json", "sparse.qcow2"]));
    assert_eq!(map.matches("\"data\": true").count(), 2, "{map}");
}

/// `-S` leaves the holes qemu-img leaves: written zeros of every length,
/// alone, after data, between data and at the ends of buffers, in a
/// fully allocated raw file and in a qcow2 image, for several thresholds.
#[test]
fn sparse_threshold_leaves_the_holes_qemu_img_leaves() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 lone.qcow2 1M
         qemu-io -c 'write -P 0 64k 64k' lone.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k mixed.qcow2 4M
         qemu-io -c 'write -P 1 0 4k' -c 'write -P 0 4k 8k' -c 'write -P 2 12k 512' \
                 -c 'write -P 0 12800 200k' -c 'write -P 3 1M 4k' -c 'write -P 0 1028k 1M' \
                 -c 'write -P 4 2100k 1k' mixed.qcow2 >/dev/null
         qemu-img convert -O raw -S 0 mixed.qcow2 full.raw");
    for source in ["lone.qcow2", "mixed.qcow2", "full.raw"] {
        for sparse in ["512", "4k", "8k", "64k", "128k", "3M"] {
            let out = |program: &str, target: &str| {
                let args = ["convert", "-S", sparse, "-O", "qcow2", source, target];
                let o = if program == "qimg" {
                    fx.qimg(&args)
                } else {
                    fx.qemu_img(&args)
                };
                assert!(o.status.success(), "{program} {args:?}: {}", stderr(&o));
                allocation(&fx, target)
            };
            assert_eq!(
                out("qimg", "m.qcow2"),
                out("qemu-img", "q.qcow2"),
                "convert -S {sparse} {source}"
            );
            fx.assert_same(source, "m.qcow2");
        }
    }
}

#[test]
fn backing_file_copies_only_the_top_layer() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    let out = fx.qimg(&[
        "convert",
        "-O",
        "qcow2",
        "-B",
        "mid.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        "new.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Over mid, the new image reads exactly like top.
    fx.assert_same("top.qcow2", "new.qcow2");
    fx.assert_clean("new.qcow2");
    let theirs = fx.qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        "-B",
        "mid.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        "q.qcow2",
    ]);
    assert!(theirs.status.success());
    assert_eq!(
        stdout(&fx.qemu_img(&["map", "--output=json", "new.qcow2"])),
        stdout(&fx.qemu_img(&["map", "--output=json", "q.qcow2"])).replace("q.qcow2", "new.qcow2"),
        "same allocation as qemu-img's"
    );
}

#[test]
fn two_sources_are_concatenated() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    let out = fx.qimg(&[
        "convert",
        "-O",
        "qcow2",
        "v3.qcow2",
        "top.qcow2",
        "both.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.qemu_img(&["convert", "-O", "raw", "v3.qcow2", "top.qcow2", "both.raw"]);
    fx.assert_same("both.raw", "both.qcow2");
    fx.assert_clean("both.qcow2");
}

#[test]
fn into_an_existing_target() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    fx.sh("qemu-img create -q -f qcow2 existing.qcow2 8M && qemu-io -c 'write -P 0x66 0 8M' existing.qcow2 >/dev/null");
    let out = fx.qimg(&[
        "convert",
        "-n",
        "-O",
        "qcow2",
        "top.qcow2",
        "existing.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.sh("qemu-img convert -O raw top.qcow2 expect.raw && truncate -s 8M expect.raw && qemu-io -f raw -c 'write -P 0x66 6M 2M' expect.raw >/dev/null");
    fx.assert_same("expect.raw", "existing.qcow2");
    fx.assert_clean("existing.qcow2");
    // --target-is-zero: zero ranges are not written.
    fx.sh("qemu-img create -q -f qcow2 blank.qcow2 6M");
    let out = fx.qimg(&[
        "convert",
        "-n",
        "--target-is-zero",
        "-O",
        "qcow2",
        "top.qcow2",
        "blank.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("top.qcow2", "blank.qcow2");
    // A target smaller than the source is refused.
    fx.sh("qemu-img create -q -f qcow2 small.qcow2 1M");
    let out = fx.qimg(&["convert", "-n", "-O", "qcow2", "top.qcow2", "small.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("output file is smaller than input file"));
}

#[test]
fn bad_combinations_get_qemu_img_errors() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    for (args, needle) in [
        (
            &["convert", "--target-is-zero", "v3.qcow2", "o.raw"][..],
            "--target-is-zero requires use of -n flag",
        ),
        (
            &[
                "convert",
                "-O",
                "qcow2",
                "-B",
                "base.qcow2",
                "top.qcow2",
                "o.qcow2",
            ],
            "Use of backing file requires explicit backing format",
        ),
        (
            &["convert", "-c", "-O", "raw", "v3.qcow2", "o.raw"],
            "Compression not supported for this file format",
        ),
        (
            &["convert", "-m", "17", "v3.qcow2", "o.raw"],
            "Invalid number of coroutines specified. Must be between 1 and 16.",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{args:?}");
    }
}

#[test]
fn progress_records_grow_to_the_total() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    let out = fx.qimg(&[
        "convert",
        "--progress=json",
        "-O",
        "qcow2",
        "top.qcow2",
        "p.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_json_progress(&out, "convert");
    // -p off a terminal prints qemu-img's percentage lines, on stdout as qemu-img does.
    let out = fx.qimg(&["convert", "-p", "-O", "qcow2", "top.qcow2", "p2.qcow2"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("    (0.00/100%)\r") && text.ends_with("    (100.00/100%)\r\n"),
        "{text:?}"
    );
    // Nothing at all without -p.
    let out = fx.qimg(&["convert", "-O", "qcow2", "top.qcow2", "p3.qcow2"]);
    assert!(stdout(&out).is_empty() && stderr(&out).is_empty());
}

#[test]
fn interrupted_converts_leave_a_consistent_target() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw big.raw 64M && qemu-io -f raw -c 'write -P 0x5a 0 64M' big.raw >/dev/null");
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let target = format!("cut-{signal}.qcow2");
        let child = Command::new(&bin)
            .args(["convert", "-r", "16M", "-O", "qcow2", "big.raw", &target])
            .current_dir(fx.dir())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete"));
        fx.assert_clean(&target);
    }
}

#[test]
fn compressed_output_is_read_back_by_qemu_img() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f raw mix.raw 5000000
         qemu-io -f raw -c 'write -P 0x41 0 1M' -c 'write -P 0 1M 512k' mix.raw >/dev/null
         head -c 1048576 /dev/urandom | dd of=mix.raw bs=1M seek=2 conv=notrunc status=none
         awk 'BEGIN { for (i = 0; i < 40000; i++) print \"qimg compresses text very well\" }' > text.txt
         dd if=text.txt of=mix.raw bs=1000000 seek=3 count=1 conv=notrunc status=none",
    );
    for opts in [
        "compression_type=zlib",
        "compression_type=zstd",
        "cluster_size=4k",
        "cluster_size=2M",
        "compression_type=zstd,cluster_size=512",
    ] {
        let out = fx.qimg(&[
            "convert", "-c", "-O", "qcow2", "-o", opts, "mix.raw", "c.qcow2",
        ]);
        assert!(out.status.success(), "{opts}: {}", stderr(&out));
        fx.assert_same("mix.raw", "c.qcow2");
        let check = fx.qemu_img(&["check", "--output=json", "c.qcow2"]);
        assert!(check.status.success(), "{opts}: {}", stdout(&check));
        let report: serde_json::Value = serde_json::from_str(&stdout(&check)).unwrap();
        assert!(
            report["compressed-clusters"].as_u64().unwrap_or(0) > 0,
            "{opts}: {report}"
        );
        std::fs::remove_file(fx.path("c.qcow2")).unwrap();
    }
}

#[test]
fn internal_snapshots_with_l() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 sn.qcow2 3M
         qemu-io -c 'write -P 1 0 1M' sn.qcow2 >/dev/null
         qemu-img snapshot -c first sn.qcow2
         qemu-io -c 'write -P 2 0 3M' sn.qcow2 >/dev/null
         qemu-img convert -l first -O raw sn.qcow2 expect.raw");
    for spec in ["first", "1", "snapshot.name=first", "snapshot.id=1"] {
        let out = fx.qimg(&["convert", "-l", spec, "-O", "qcow2", "sn.qcow2", "s.qcow2"]);
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        fx.assert_same("expect.raw", "s.qcow2");
        fx.assert_clean("s.qcow2");
    }
    let out = fx.qimg(&["convert", "-l", "nope", "-O", "raw", "sn.qcow2", "x.raw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Can't find snapshot 'nope'"));
}

#[test]
fn cache_modes_write_the_same_image() {
    let fx = Fixture::new();
    let _ = sources(&fx);
    for mode in ["none", "writeback", "unsafe", "directsync", "writethrough"] {
        for (source, target) in [("v3.qcow2", "out.qcow2"), ("disk.raw", "out.raw")] {
            let format = if target.ends_with(".raw") {
                "raw"
            } else {
                "qcow2"
            };
            assert_converts(&fx, source, target, &["-t", mode, "-O", format]);
        }
    }
    let out = fx.qimg(&[
        "convert", "-t", "fast", "-O", "qcow2", "v3.qcow2", "x.qcow2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Invalid cache option: fast"),
        "{}",
        stderr(&out)
    );
    assert!(
        !fx.path("x.qcow2").exists(),
        "a refused convert created its target"
    );
}

/// oVirt vdsm copies a volume into an existing one that already has the
/// backing file (oVirt/vdsm, lib/vdsm/storage/qemuimg.py, convert() with
/// create=False: `convert -p -t none -T none -n -f FMT SRC -O FMT -B
/// BACKING DST`): only the source's own top layer is copied, its zero
/// clusters as zeros over the backing data, and the result reads as the
/// source, as with qemu-img.
#[test]
fn convert_n_with_b_copies_only_the_top_layer_into_an_existing_overlay() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 src.qcow2
         qemu-io -c 'write -P 2 1M 1M' -c 'write -z 3M 64k' src.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 q.qcow2
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 m.qcow2");
    let args = |dst: &'static str| {
        [
            "convert",
            "-p",
            "-t",
            "none",
            "-T",
            "none",
            "-n",
            "-f",
            "qcow2",
            "src.qcow2",
            "-O",
            "qcow2",
            "-B",
            "base.qcow2",
            dst,
        ]
    };
    let q = fx.qemu_img(&args("q.qcow2"));
    assert!(q.status.success(), "{}", stderr(&q));
    let m = fx.qimg(&args("m.qcow2"));
    assert!(m.status.success(), "{}", stderr(&m));
    fx.assert_clean("m.qcow2");
    fx.assert_same("src.qcow2", "m.qcow2");
    assert_eq!(allocation(&fx, "m.qcow2"), allocation(&fx, "q.qcow2"));
    // With more than one source, -B is refused with qemu-img's words.
    let out = fx.qimg(&[
        "convert",
        "-B",
        "base.qcow2",
        "-F",
        "qcow2",
        "-O",
        "qcow2",
        "src.qcow2",
        "src.qcow2",
        "x.qcow2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Having a backing file for the target makes no sense when concatenating multiple input images"),
        "{}",
        stderr(&out)
    );
}

/// `--salvage`: a source cluster that cannot be read (here a compressed
/// cluster whose bytes were overwritten) is copied as zeros, one warning
/// per 512-byte sector at the offsets qemu-img names, and the convert
/// succeeds; without it, the convert fails.
#[test]
fn salvage_copies_unreadable_sectors_as_zeros() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw r.raw 1M
         qemu-io -f raw -c 'write -P 0x33 0 1M' r.raw >/dev/null
         qemu-img convert -c -O qcow2 r.raw c.qcow2");
    // Overwrite the start of the second compressed cluster.
    let mut b = fx.read("c.qcow2");
    let be = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let l2 = (be(&b, be(&b, 40) as usize) & 0x00ff_ffff_ffff_fe00) as usize;
    let host = (be(&b, l2 + 8) & ((1 << 54) - 1)) as usize;
    b[host..host + 64].fill(0xff);
    fx.write("c.qcow2", &b);
    let offsets = |o: &std::process::Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter_map(|l| l.split("error while reading offset ").nth(1))
            .map(|rest| rest.split(':').next().unwrap().to_string())
            .collect()
    };
    let q = fx.qemu_img(&["convert", "--salvage", "-O", "raw", "c.qcow2", "q.raw"]);
    let m = fx.qimg(&["convert", "--salvage", "-O", "raw", "c.qcow2", "m.raw"]);
    assert_eq!(m.status.code(), q.status.code(), "{}", stderr(&m));
    assert_eq!(m.status.code(), Some(0));
    assert_eq!(offsets(&m), offsets(&q));
    assert_eq!(offsets(&m).len(), 128, "{}", stderr(&m));
    assert_eq!(fx.read("m.raw"), fx.read("q.raw"));
    let m = fx.qimg(&["convert", "-O", "raw", "c.qcow2", "n.raw"]);
    assert_eq!(m.status.code(), Some(1));
    assert_eq!(stderr(&m).lines().count(), 1, "{}", stderr(&m));
}
