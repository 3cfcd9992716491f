//! VDI: interop both ways with qemu-img (dynamic and static images),
//! `check` on damaged block maps, a malformed corpus under a memory limit,
//! and crash safety of writes and converts into dynamic images.
//!
//! VirtualBox's own tools (VBoxManage) are not packaged in Debian's main
//! archive, so qemu-img 10.0.2 is the only peer: no VirtualBox-made image
//! is faked here.

mod common;

use common::slots::{apply_slots, assert_old_or_new, slot_ops};

use common::{assert_same_answer, stderr, stdout, Fixture};
use qimg::format::vdi::Vdi;
use qimg::io::FaultStorage;
use std::process::{Command, Output};

/// The guest content of `image` as qemu-img reads it.
fn guest_by_qemu(fx: &Fixture, image: &str) -> Vec<u8> {
    let out = fx.qemu_img(&["convert", "-f", "vdi", "-O", "raw", image, "guest-q.raw"]);
    assert!(
        out.status.success(),
        "qemu-img convert {image}: {}",
        stderr(&out)
    );
    fx.read("guest-q.raw")
}

/// The JSON of `tool info|map --output=json image` (probed).
fn json(fx: &Fixture, tool: &str, cmd: &str, image: &str) -> String {
    let args = [cmd, "--output=json", image];
    let out = if tool == "qimg" {
        fx.qimg(&args)
    } else {
        fx.qemu_img(&args)
    };
    assert!(
        out.status.success(),
        "{tool} {cmd} {image}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts that qimg reads `image` exactly as qemu-img does: `info` and
/// `map` JSON, human `info`, and the guest content.
fn assert_reads_like_qemu(fx: &Fixture, image: &str) {
    for cmd in ["info", "map"] {
        assert_eq!(
            json(fx, "qimg", cmd, image),
            json(fx, "qemu-img", cmd, image),
            "{cmd} of {image}"
        );
    }
    assert_same_answer(fx, &["info", image]);
    assert_same_answer(fx, &["map", image]);
    let out = fx.qimg(&["convert", "-O", "raw", image, "guest-i.raw"]);
    assert!(
        out.status.success(),
        "qimg convert {image}: {}",
        stderr(&out)
    );
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vdi", "guest-i.raw", image]);
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "content of {image}: {}",
        stdout(&cmp)
    );
}

/// Masks the two random UUIDs of a VDI header.
fn masked(mut b: Vec<u8>) -> Vec<u8> {
    b[0x188..0x1a8].fill(0);
    b
}

const PATTERN: &str = "qemu-io -f vdi -c 'write -P 0x11 3M 64k' -c 'write -P 0x22 0 4k' \
                       -c 'write -z 4M 64k' -c 'write -P 0x33 4100k 1000' -c 'write -P 0x44 6M 1M'";

#[test]
fn images_made_by_qemu_img_read_identically() {
    let fx = Fixture::new();
    for (name, opts, size) in [
        ("d.vdi", "", "7M"),
        ("s.vdi", "-o static=on", "7M"),
        ("odd.vdi", "", "7340000"),
        ("odd-s.vdi", "-o static=on", "7340000"),
    ] {
        fx.sh(&format!(
            "qemu-img create -q -f vdi {opts} e-{name} {size} && qemu-img create -q -f vdi {opts} {name} {size} && {PATTERN} {name} >/dev/null"
        ));
        assert_reads_like_qemu(&fx, &format!("e-{name}"));
        assert_reads_like_qemu(&fx, name);
    }
    // A discarded entry (0xfffffffe) reads and maps as an unallocated one.
    let mut b = fx.read("d.vdi");
    b[0x200..0x204].copy_from_slice(&0xffff_fffeu32.to_le_bytes());
    fx.write("discarded.vdi", &b);
    assert_reads_like_qemu(&fx, "discarded.vdi");
    // A recorded size that is not whole sectors rounds up, as in QEMU.
    let mut b = fx.read("d.vdi");
    b[0x170..0x178].copy_from_slice(&7_339_000u64.to_le_bytes());
    fx.write("odd-recorded.vdi", &b);
    assert_reads_like_qemu(&fx, "odd-recorded.vdi");
    // A header with the text overwritten still probes as VDI.
    let mut b = fx.read("d.vdi");
    b[..0x40].fill(b'x');
    fx.write("text.vdi", &b);
    assert_reads_like_qemu(&fx, "text.vdi");
}

#[test]
fn create_matches_qemu_img_byte_for_byte_but_uuids() {
    let fx = Fixture::new();
    fx.sh("mkdir q i");
    let opts = [
        "",
        "static=on",
        "preallocation=full",
        "static=on,preallocation=falloc",
        "nocow=off,extent_size_hint=1M,preallocation=off,static=off",
    ];
    for o in opts {
        for size in ["5M", "1G", "1000", "0"] {
            let mut args = vec!["create", "-f", "vdi"];
            if !o.is_empty() {
                args.extend(["-o", o]);
            }
            args.extend(["x.vdi", size]);
            let ours = fx.run_in("i", "qimg", &args);
            let theirs = fx.run_in("q", "qemu-img", &args);
            assert!(ours.status.success(), "{o} {size}: {}", stderr(&ours));
            assert_eq!(
                stdout(&ours),
                stdout(&theirs),
                "Formatting line, {o} {size}"
            );
            let (a, b) = (fx.read("i/x.vdi"), fx.read("q/x.vdi"));
            assert_eq!(a.len(), b.len(), "{o} {size}");
            assert!(masked(a) == masked(b), "{o} {size}: the files differ");
            fx.assert_clean("i/x.vdi");
        }
    }
    // The UUIDs are random version 4, stored as GUIDs (version nibble in
    // byte 7), and differ between images.
    let a = fx.read("i/x.vdi");
    assert_eq!(a[0x188 + 7] >> 4, 4);
    assert_ne!(a[0x188..0x198], a[0x198..0x1a8]);
    // Refusals, after the Formatting line, as qemu-img.
    for (args, msg) in [
        (
            &["-o", "preallocation=metadata", "bad.vdi", "1M"][..],
            "Unsupported preallocation mode: metadata",
        ),
        (
            &["bad.vdi", "600T"][..],
            "Unsupported VDI image size (size is 0x2580000000000, max supported is 0x1fffff8000000)",
        ),
        (
            &["-b", "x.vdi", "-F", "vdi", "bad.vdi"][..],
            "Backing file not supported for file format 'vdi'",
        ),
        (
            &["-o", "static=maybe", "bad.vdi", "1M"][..],
            "static",
        ),
    ] {
        let mut full = vec!["create", "-f", "vdi"];
        full.extend(args);
        let ours = fx.run_in("i", "qimg", &full);
        let theirs = fx.run_in("q", "qemu-img", &full);
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
        assert_eq!(theirs.status.code(), Some(1), "{args:?}");
        assert!(stderr(&ours).contains(msg), "{args:?}: {}", stderr(&ours));
        assert!(stderr(&theirs).contains(msg), "{args:?}: {}", stderr(&theirs));
        assert_eq!(stderr(&ours).lines().count(), 1, "{}", stderr(&ours));
    }
    // -o help lists the options qemu-img lists, in its order.
    let names = |o: &Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter_map(|l| l.trim_start().split_once('=').map(|(n, _)| n.to_string()))
            .collect()
    };
    for args in [
        &["create", "-f", "vdi", "-o", "help"][..],
        &["create", "-f", "vdi", "-o", "help", "x.vdi"][..],
    ] {
        let (a, b) = (
            fx.run_in("i", "qimg", args),
            fx.run_in("q", "qemu-img", args),
        );
        assert_eq!(names(&a), names(&b), "{args:?}");
        assert!(!names(&a).is_empty());
    }
}

/// A 9 MiB raw disk with data in some blocks, holes and a zero block.
fn source_raw(fx: &Fixture) {
    fx.sh(
        "qemu-img create -q -f raw src.raw 9M && \
         qemu-io -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1M 64k' -c 'write -P 0x33 3M 512' \
         -c 'write -P 0x44 4100k 1000' -c 'write -P 0x55 8M 1M' -c 'write -z 6M 1M' src.raw >/dev/null && \
         head -c 65536 /dev/urandom | dd of=src.raw bs=64k seek=100 conv=notrunc status=none",
    );
}

#[test]
fn convert_to_and_from_vdi_matches_qemu_img() {
    let fx = Fixture::new();
    source_raw(&fx);
    for opts in ["static=off", "static=on"] {
        let (i, q) = (format!("i-{opts}.vdi"), format!("q-{opts}.vdi"));
        let args = |target: &str| {
            [
                "convert", "-f", "raw", "-O", "vdi", "-o", opts, "src.raw", target,
            ]
            .map(str::to_string)
        };
        let ours = fx.qimg(&args(&i).each_ref().map(String::as_str));
        assert!(ours.status.success(), "{}", stderr(&ours));
        let theirs = fx.qemu_img(&args(&q).each_ref().map(String::as_str));
        assert!(theirs.status.success(), "{}", stderr(&theirs));
        fx.assert_clean(&i);
        let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vdi", "src.raw", &i]);
        assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
        // Laid out as qemu-img lays it out: blocks in guest order.
        let (a, b) = (fx.read(&i), fx.read(&q));
        assert_eq!(a.len(), b.len(), "{opts}");
        assert!(
            masked(a) == masked(b),
            "{opts}: qimg's VDI differs from qemu-img's"
        );
        assert_eq!(
            json(&fx, "qemu-img", "map", &i),
            json(&fx, "qemu-img", "map", &q)
        );
        assert_reads_like_qemu(&fx, &i);
        // Back from qemu-img's VDI through qimg, to raw and to qcow2.
        for (fmt, out) in [("raw", "back.raw"), ("qcow2", "back.qcow2")] {
            let r = fx.qimg(&["convert", "-O", fmt, &q, out]);
            assert!(r.status.success(), "{}", stderr(&r));
            fx.assert_same("src.raw", out);
        }
    }
    // Into existing images made by qemu-img (convert -n): a static one is
    // written in place, a dynamic one that holds blocks grows after them.
    fx.sh(&format!(
        "qemu-img create -q -f vdi -o static=on n-s.vdi 9M && qemu-img create -q -f vdi n-d.vdi 9M && {PATTERN} n-d.vdi >/dev/null"
    ));
    for image in ["n-s.vdi", "n-d.vdi"] {
        let r = fx.qimg(&["convert", "-n", "-f", "raw", "-O", "vdi", "src.raw", image]);
        assert!(r.status.success(), "{}", stderr(&r));
        fx.assert_clean(image);
        fx.assert_same("src.raw", image);
        assert_reads_like_qemu(&fx, image);
    }
    // A qcow2 source into a VDI and back: the copy engine needs nothing
    // of the format.
    fx.sh("qemu-img convert -q -f raw -O qcow2 src.raw src.qcow2");
    let r = fx.qimg(&["convert", "-O", "vdi", "src.qcow2", "from-qcow2.vdi"]);
    assert!(r.status.success(), "{}", stderr(&r));
    fx.assert_clean("from-qcow2.vdi");
    fx.assert_same("src.qcow2", "from-qcow2.vdi");
    // A compressed VDI, a resize and a measure are refused as qemu-img
    // refuses them.
    for (args, msg) in [
        (
            &["convert", "-c", "-O", "vdi", "src.raw", "c.vdi"][..],
            "Compression not supported for this file format",
        ),
        (
            &["resize", "-f", "vdi", "from-qcow2.vdi", "20M"][..],
            "Image format driver does not support resize",
        ),
        (
            &["measure", "-O", "vdi", "--size", "5M"][..],
            "Block driver 'vdi' does not support size measurement",
        ),
    ] {
        let (q, m) = assert_same_answer(&fx, args);
        assert_eq!(q.status.code(), Some(1), "{args:?}");
        assert!(stderr(&q).contains(msg), "{}", stderr(&q));
        assert!(stderr(&m).contains(msg), "{}", stderr(&m));
    }
    fx.assert_clean("from-qcow2.vdi");
}

#[test]
fn check_on_damaged_block_maps_agrees_with_qemu_img() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f vdi d.vdi 7M && {PATTERN} d.vdi >/dev/null && qemu-img create -q -f vdi -o static=on s.vdi 3M"
    ));
    let good = fx.read("d.vdi");
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let entry = |block: usize| 0x200 + 4 * block;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![("clean.vdi", good.clone())];
    let mut b = good.clone();
    put(&mut b, entry(1), 9);
    cases.push(("too-large.vdi", b));
    let mut b = good.clone();
    put(&mut b, entry(1), 0);
    cases.push(("duplicate.vdi", b));
    let mut b = good.clone();
    put(&mut b, 0x184, 9);
    cases.push(("count-high.vdi", b));
    let mut b = good.clone();
    put(&mut b, 0x184, 1);
    cases.push(("count-low.vdi", b));
    let mut b = good.clone();
    put(&mut b, entry(5), 0);
    put(&mut b, entry(2), 200);
    put(&mut b, entry(6), 0xffff_fffe);
    cases.push(("several.vdi", b));
    let mut b = fx.read("s.vdi");
    put(&mut b, entry(2), 1);
    cases.push(("static-dup.vdi", b));
    let mut codes = std::collections::BTreeSet::new();
    for (name, bytes) in &cases {
        fx.write(name, bytes);
        for output in ["human", "json"] {
            let args = ["check", "--output", output, name];
            let (q, m) = assert_same_answer(&fx, &args);
            assert_eq!(stderr(&m), stderr(&q), "{args:?}: stderr");
            codes.insert(q.status.code());
        }
        // There is no repair: exit 63 with qemu-img's sentence.
        let (q, m) = assert_same_answer(&fx, &["check", "-r", "leaks", name]);
        assert_eq!(q.status.code(), Some(63));
        assert!(stderr(&m).contains("This image format does not support checks"));
        assert!(fx.read(name) == *bytes, "{name} changed");
    }
    assert_eq!(codes.len(), 2, "clean and corrupt verdicts: {codes:?}");
}

/// Runs qimg in `fx`'s directory with its address space limited to 256 MiB.
fn qimg_limited(fx: &Fixture, args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    Command::new("bash")
        .arg("-c")
        .arg("ulimit -v 262144; exec timeout 20 \"$@\"")
        .arg("qimg")
        .arg(bin)
        .args(args)
        .current_dir(fx.dir())
        .output()
        .expect("run qimg")
}

#[test]
fn malformed_vdis_fail_with_one_line_naming_the_file() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vdi d.vdi 5M && qemu-io -f vdi -c 'write -P 1 0 64k' d.vdi >/dev/null");
    let good = fx.read("d.vdi");
    let put = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    // (file, bytes, words of the error, whether qemu-img refuses it too)
    let corpus: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "signature.vdi",
            put(0x40, &le32(0xbeda_1000)),
            "bad signature beda1000",
            true,
        ),
        (
            "version.vdi",
            put(0x44, &le32(0x0001_0000)),
            "unsupported VDI image (version 1.0)",
            true,
        ),
        (
            "version2.vdi",
            put(0x44, &le32(0x0002_0001)),
            "(version 2.1)",
            true,
        ),
        (
            "block-size.vdi",
            put(0x178, &le32(2 << 20)),
            "block size 2097152 is not 1048576",
            true,
        ),
        (
            "sector-size.vdi",
            put(0x168, &le32(4096)),
            "sector size 4096 is not 512",
            true,
        ),
        (
            "huge-size.vdi",
            put(0x170, &(1u64 << 62).to_le_bytes()),
            "Unsupported VDI image size",
            true,
        ),
        (
            "too-many-blocks.vdi",
            put(0x180, &le32(u32::MAX)),
            "too many blocks",
            true,
        ),
        (
            "small-map.vdi",
            put(0x180, &le32(2)),
            "image bitmap has room for 2097152",
            true,
        ),
        (
            "map-past-eof.vdi",
            put(0x180, &le32(0x1fff_ff80))
                .into_iter()
                .enumerate()
                .map(|(i, x)| if (0x170..0x178).contains(&i) { 0 } else { x })
                .collect(),
            "lies past the end of the file",
            false,
        ),
        (
            "map-offset-past-eof.vdi",
            put(0x154, &le32(0x1000_0000)),
            "lies past the end of the file",
            false,
        ),
        (
            "map-unaligned.vdi",
            put(0x154, &le32(0x201)),
            "unaligned block map offset 0x201",
            true,
        ),
        (
            "data-unaligned.vdi",
            put(0x158, &le32(0x401)),
            "unaligned data offset 0x401",
            true,
        ),
        (
            "data-over-map.vdi",
            put(0x158, &le32(0x200)),
            "overlaps the block map",
            false,
        ),
        (
            "map-over-header.vdi",
            put(0x154, &le32(0)),
            "overlaps the 512-byte header",
            false,
        ),
        ("parent.vdi", put(0x1b8, &[1]), "non-NULL parent UUID", true),
        ("link.vdi", put(0x1a8, &[1]), "non-NULL link UUID", true),
        (
            "tiny.vdi",
            good[..100].to_vec(),
            "less than a 512-byte header",
            true,
        ),
        ("zeros.vdi", vec![0u8; 4096], "bad signature 00000000", true),
    ];
    for (name, bytes, words, qemu_refuses) in &corpus {
        fx.write(name, bytes);
        for cmd in ["info", "map", "check"] {
            let out = qimg_limited(&fx, &[cmd, "-f", "vdi", name]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {name}: {err}");
            assert_eq!(err.lines().count(), 1, "{cmd} {name}: {err}");
            assert!(err.starts_with("qimg: "), "{cmd} {name}: {err}");
            assert!(
                err.contains(name) && err.contains(words),
                "{cmd} {name}: {err}"
            );
        }
        // Where qimg is stricter than qemu-img (a map outside the file or
        // over other regions, which QEMU reads as zeros or as data), it
        // says so here; everything else qemu-img refuses too.
        let q = fx.qemu_img(&["info", "-f", "vdi", name]);
        assert_eq!(
            !q.status.success(),
            *qemu_refuses,
            "qemu-img on {name}: {}",
            stderr(&q)
        );
        if *qemu_refuses && *name != "tiny.vdi" {
            assert!(stderr(&q).contains(words), "{name}: {}", stderr(&q));
        }
        assert!(fx.read(name) == *bytes, "{name} was changed");
    }
    // Bad signature and no -f: probed as raw, as qemu-img does.
    let (q, _) = assert_same_answer(&fx, &["info", "--output=json", "signature.vdi"]);
    assert!(stdout(&q).contains("\"format\": \"raw\""));
}

/// Opens `bytes` as a writable VDI that crashes after `n` changes.
fn faulty(fx: &Fixture, bytes: &[u8], n: u64) -> (std::sync::Arc<FaultStorage>, Vdi) {
    let fault = std::sync::Arc::new(FaultStorage::new(fx.path("c.vdi"), bytes.to_vec(), n));
    let image = Vdi::open_writable(Box::new(fault.clone())).expect("open");
    (fault, image)
}

#[test]
fn a_crash_at_any_write_leaves_a_checked_vdi_with_old_or_new_slots() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vdi c0.vdi 9M && \
         qemu-io -f vdi -c 'write -P 0x77 1M 1M' -c 'write -P 0x66 6M 64k' c0.vdi >/dev/null");
    let bytes = fx.read("c0.vdi");
    let initial = guest_by_qemu(&fx, "c0.vdi");
    // Slots of 384 KiB: some share a 1 MiB block, some straddle two, and
    // each part inside one block must read old or new whole.
    let slot = 384 << 10;
    let ops = slot_ops(11, initial.len() as u64 / slot, 14, 3);
    let total = {
        let (fault, image) = faulty(&fx, &bytes, u64::MAX);
        apply_slots(&image, &ops, slot);
        drop(image);
        fault.writes()
    };
    assert!(total > 20, "only {total} writes");
    for n in 0..=total {
        let (fault, image) = faulty(&fx, &bytes, n);
        let flushed = apply_slots(&image, &ops, slot);
        drop(image);
        for (k, state) in fault.crash_states(n).into_iter().enumerate() {
            let what = format!("crash after {n}/{total} (state {k})");
            fx.write("crash.vdi", &state);
            let check = fx.qemu_img(&["check", "crash.vdi"]);
            assert_eq!(
                check.status.code(),
                Some(0),
                "{what}: qemu-img check: {}{}",
                stdout(&check),
                stderr(&check)
            );
            let got = guest_by_qemu(&fx, "crash.vdi");
            assert_old_or_new(&got, &initial, &ops, slot, 1 << 20, flushed, &what);
        }
    }
    let (fault, image) = faulty(&fx, &bytes, u64::MAX);
    apply_slots(&image, &ops, slot);
    drop(image);
    fx.write("done.vdi", &fault.after_crash(|_| true));
    fx.assert_clean("done.vdi");
    assert_reads_like_qemu(&fx, "done.vdi");
}

#[test]
fn a_convert_into_a_dynamic_vdi_cut_after_any_change_leaves_old_or_new_data() {
    let fx = Fixture::new();
    source_raw(&fx);
    fx.sh("qemu-img create -q -f vdi dst.vdi 9M");
    let empty = fx.read("dst.vdi");
    let src = fx.read("src.raw");
    let map = fx.qemu_img(&["map", "--output=json", "-f", "raw", "src.raw"]);
    let map: serde_json::Value = serde_json::from_slice(&map.stdout).expect("map JSON");
    let runs: Vec<(u64, u64)> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect();
    assert!(runs.len() >= 4, "{runs:?}");
    let total = common::uncut_convert_with(&fx, "dst.vdi", "vdi", |o| o);
    fx.assert_clean("dst.vdi");
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vdi", "src.raw", "dst.vdi"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    assert!(total >= 8, "only {total} changes");
    for n in 0..total {
        let pattern = common::cut_convert(&fx, "dst.vdi", "vdi", &empty, n, total);
        let check = fx.qemu_img(&["check", "dst.vdi"]);
        assert_eq!(
            check.status.code(),
            Some(0),
            "cut after {n}/{total} (pattern {pattern}): {}{}",
            stdout(&check),
            stderr(&check)
        );
        let got = guest_by_qemu(&fx, "dst.vdi");
        // Each 1 MiB block of source data reads old (zeros) or new, whole.
        for &(start, len) in &runs {
            let mut a = start as usize;
            let end = (start + len) as usize;
            while a < end {
                let b = ((a / (1 << 20) + 1) << 20).min(end);
                let have = &got[a..b];
                assert!(
                    have == &src[a..b] || have.iter().all(|&x| x == 0),
                    "cut after {n}/{total} (pattern {pattern}): data at {a:#x} is neither old nor new"
                );
                a = b;
            }
        }
        assert_reads_like_qemu(&fx, "dst.vdi");
    }
}
