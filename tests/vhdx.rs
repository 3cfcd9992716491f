//! VHDX: interop both ways with qemu-img (dynamic and fixed images, several
//! block and log sizes), log replay of an image left by a killed qemu-io,
//! crash safety of writes at every change, and a malformed corpus.

mod common;

use common::slots::{apply_slots, assert_old_or_new, slot_ops};

use common::{stderr, stdout, Fixture};
use qimg::format::vhdx::header::{seal, Header};
use qimg::format::vhdx::Vhdx;
use qimg::io::FaultStorage;
use std::process::{Command, Output};

/// The guest content of `image` as qemu-img reads it.
fn guest_by_qemu(fx: &Fixture, image: &str) -> Vec<u8> {
    let out = fx.qemu_img(&["convert", "-f", "vhdx", "-O", "raw", image, "guest-q.raw"]);
    assert!(
        out.status.success(),
        "qemu-img convert {image}: {}",
        stderr(&out)
    );
    fx.read("guest-q.raw")
}

/// The guest content of `image` as qimg reads it.
fn guest_by_qimg(fx: &Fixture, image: &str) -> Vec<u8> {
    let out = fx.qimg(&["convert", "-f", "vhdx", "-O", "raw", image, "guest-i.raw"]);
    assert!(
        out.status.success(),
        "qimg convert {image}: {}",
        stderr(&out)
    );
    fx.read("guest-i.raw")
}

/// The stdout of `tool args`, which must succeed.
fn ok(fx: &Fixture, tool: &str, args: &[&str]) -> String {
    let out = if tool == "qimg" {
        fx.qimg(args)
    } else {
        fx.qemu_img(args)
    };
    assert!(out.status.success(), "{tool} {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Asserts that qimg reads `image` exactly as qemu-img does: `info`
/// (JSON and human) and `map` JSON, probed and with `-f vhdx`, and the
/// guest content.
fn assert_reads_like_qemu(fx: &Fixture, image: &str) {
    for args in [
        vec!["info", "--output=json", image],
        vec!["info", image],
        vec!["map", "--output=json", image],
        vec!["map", "--output=json", "-f", "vhdx", image],
    ] {
        assert_eq!(ok(fx, "qimg", &args), ok(fx, "qemu-img", &args), "{args:?}");
    }
    assert!(
        guest_by_qimg(fx, image) == guest_by_qemu(fx, image),
        "content of {image}"
    );
}

const PATTERN: &str = "qemu-io -f vhdx -c 'write -P 0x11 0 64k' -c 'write -P 0x22 3M 4k' \
                       -c 'write -z 4M 64k' -c 'write -P 0x33 9000k 1000'";

const SHAPES: [&str; 6] = [
    "",
    "-o subformat=fixed",
    "-o subformat=fixed,block_state_zero=off",
    "-o block_size=1M",
    "-o block_size=32M,log_size=2M",
    "-o subformat=fixed,block_state_zero=off,block_size=2M",
];

#[test]
fn images_made_by_qemu_img_read_identically() {
    let fx = Fixture::new();
    for (i, opts) in SHAPES.iter().enumerate() {
        fx.sh(&format!(
            "qemu-img create -q -f vhdx {opts} e{i}.vhdx 10M && qemu-img create -q -f vhdx {opts} w{i}.vhdx 10M && {PATTERN} w{i}.vhdx >/dev/null"
        ));
        assert_reads_like_qemu(&fx, &format!("e{i}.vhdx"));
        assert_reads_like_qemu(&fx, &format!("w{i}.vhdx"));
        let c = fx.qemu_img(&[
            "compare",
            "-f",
            "vhdx",
            "-F",
            "raw",
            &format!("w{i}.vhdx"),
            "guest-i.raw",
        ]);
        assert_eq!(c.status.code(), Some(0), "{}", stdout(&c));
    }
    // The human map fails as qemu-img's: no offsets to show.
    let (q, m) = (
        fx.qemu_img(&["map", "w0.vhdx"]),
        fx.qimg(&["map", "w0.vhdx"]),
    );
    assert_eq!((q.status.code(), m.status.code()), (Some(1), Some(1)));
    assert!(stderr(&m).contains("File contains external, encrypted or compressed clusters."));
    // check: clean, and the same JSON.
    for args in [
        ["check", "w0.vhdx", ""],
        ["check", "--output=json", "w0.vhdx"],
    ] {
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        common::assert_same_answer(&fx, &args);
    }
}

/// A 12 MiB raw source with data in several blocks, zeros between.
fn source_raw(fx: &Fixture) {
    fx.sh("qemu-img create -q -f raw src.raw 12M && qemu-io -f raw -c 'write -P 0x41 0 1M' \
           -c 'write -P 0x42 2500k 300k' -c 'write -P 0x43 9M 64k' -c 'write -P 0x44 12224k 64k' src.raw >/dev/null");
}

/// The fields of `qemu-img info --output=json` that describe the image
/// itself (not the file's name or its allocation on this file system).
fn shape(fx: &Fixture, image: &str) -> serde_json::Value {
    let out = fx.qemu_img(&["info", "--output=json", image]);
    assert!(
        out.status.success(),
        "qemu-img info {image}: {}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    serde_json::json!({
        "format": v["format"],
        "virtual-size": v["virtual-size"],
        "cluster-size": v["cluster-size"],
        "format-specific": v["format-specific"],
        "file-length": v["children"][0]["info"]["virtual-size"],
    })
}

#[test]
fn images_made_by_qimg_pass_qemu_img_check_and_compare() {
    let fx = Fixture::new();
    source_raw(&fx);
    for (i, opts) in SHAPES.iter().enumerate() {
        let o: Vec<&str> = opts.split_whitespace().collect();
        // create: the same Formatting line and the same image as qemu-img's.
        let (a, b) = (format!("qa{i}.vhdx"), format!("qb{i}.vhdx"));
        let mut args = vec!["create", "-f", "vhdx"];
        args.extend(&o);
        let q = ok(&fx, "qemu-img", &[&args[..], &[&a, "10M"]].concat());
        let m = ok(&fx, "qimg", &[&args[..], &[&b, "10M"]].concat());
        assert_eq!(m.replace(&b, &a), q, "{opts}");
        fx.assert_clean(&b);
        assert_eq!(shape(&fx, &b), shape(&fx, &a), "create {opts}");
        fx.assert_same(&a, &b);
        // convert: the same layout as qemu-img's convert, clean and equal.
        let (a, b) = (format!("ca{i}.vhdx"), format!("cb{i}.vhdx"));
        let mut args = vec!["convert", "-f", "raw", "-O", "vhdx"];
        args.extend(&o);
        ok(&fx, "qemu-img", &[&args[..], &["src.raw", &a]].concat());
        ok(&fx, "qimg", &[&args[..], &["src.raw", &b]].concat());
        fx.assert_clean(&b);
        fx.assert_same("src.raw", &b);
        assert_eq!(shape(&fx, &b), shape(&fx, &a), "convert {opts}");
        assert_reads_like_qemu(&fx, &b);
        // qemu-io writes into qimg's image, qimg into qemu-img's.
        fx.sh(&format!(
            "{PATTERN} {b} >/dev/null && {PATTERN} {a} >/dev/null"
        ));
        fx.assert_clean(&b);
        fx.assert_same(&a, &b);
        let (c, d) = (format!("cc{i}.vhdx"), format!("cd{i}.vhdx"));
        fx.sh(&format!(
            "qemu-img create -q -f vhdx {opts} {c} 12M && qemu-img create -q -f vhdx {opts} {d} 12M"
        ));
        ok(
            &fx,
            "qimg",
            &["convert", "-n", "-f", "raw", "-O", "vhdx", "src.raw", &c],
        );
        ok(
            &fx,
            "qemu-img",
            &["convert", "-n", "-f", "raw", "-O", "vhdx", "src.raw", &d],
        );
        fx.assert_clean(&c);
        fx.assert_same("src.raw", &c);
        // qemu-img's -n also writes the zero ranges, and a zero write
        // allocates a block in QEMU's driver; qimg leaves blocks that read
        // as zeros alone, so only the file length differs.
        let (mut sc, mut sd) = (shape(&fx, &c), shape(&fx, &d));
        assert!(sc["file-length"].as_u64() <= sd["file-length"].as_u64());
        sc["file-length"] = serde_json::Value::Null;
        sd["file-length"] = serde_json::Value::Null;
        assert_eq!(sc, sd, "convert -n {opts}");
    }
    // Out of VHDX into qcow2: sparse where the source reads zeros.
    ok(
        &fx,
        "qimg",
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "qcow2",
            "cc0.vhdx",
            "back.qcow2",
        ],
    );
    fx.assert_same("src.raw", "back.qcow2");
    let q = ok(&fx, "qemu-img", &["map", "--output=json", "back.qcow2"]);
    assert!(q.contains("\"data\": false"), "{q}");
}

#[test]
fn create_options_and_refusals_match_qemu_img() {
    let fx = Fixture::new();
    let cases: [&[&str]; 15] = [
        &["-o", "size=1000"],
        &["-o", "size=0"],
        &["-o", "log_size=0"],
        &["-o", "block_size=100k"],
        &["-o", "block_size=1500k,log_size=1500k"],
        &["-o", "block_size=512M"],
        &["-o", "block_size=3M"],
        &["-o", "subformat=foo"],
        &["-o", "preallocation=metadata"],
        &["-o", "block_state_zero=off,subformat=dynamic"],
        &["-o", "nocow=on,preallocation=falloc,extent_size_hint=1M"],
        &["-b", "base.qcow2", "-F", "qcow2"],
        &["-o", "size=70T"],
        &["-o", "size=1025M"],
        &["-o", "size=101G"],
    ];
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 1M");
    for (i, extra) in cases.iter().enumerate() {
        let file = format!("o{i}.vhdx");
        let mut args = vec!["create", "-f", "vhdx"];
        args.extend(extra.iter());
        args.push(&file);
        if !extra.iter().any(|a| a.starts_with("size=")) {
            args.push("5M");
        }
        let (q, m) = common::assert_same_answer(&fx, &args);
        let (qe, me) = (stderr(&q), stderr(&m));
        assert_eq!(
            me.replace("qimg: ", ""),
            qe.replace("qemu-img: ", ""),
            "{args:?}"
        );
        if q.status.success() {
            assert_eq!(shape(&fx, &file), {
                // Same options, made by qemu-img.
                let mut qargs = args.clone();
                let f = format!("r{i}.vhdx");
                let pos = qargs.iter().position(|a| *a == file).unwrap();
                qargs[pos] = &f;
                ok(&fx, "qemu-img", &qargs);
                shape(&fx, &f)
            });
        }
    }
    let out = fx.qimg(&["measure", "-O", "vhdx", "--size", "1G"]);
    let q = fx.qemu_img(&["measure", "-O", "vhdx", "--size", "1G"]);
    assert_eq!((out.status.code(), q.status.code()), (Some(1), Some(1)));
    assert!(
        stderr(&out).contains("does not support size measurement"),
        "{}",
        stderr(&out)
    );
}

/// Reads the current header of the VHDX bytes `b`.
fn header(b: &[u8]) -> Header {
    let h: Vec<Header> = [0x10000, 0x20000]
        .iter()
        .filter_map(|&at| Header::parse(&b[at..at + 4096]))
        .collect();
    *h.iter().max_by_key(|h| h.sequence).expect("a valid header")
}

/// Makes `log.vhdx`, an image whose headers name a non-empty log, by
/// SIGKILLing qemu-io while it allocates blocks (each allocation goes
/// through QEMU's log; the kill lands between the log write and the
/// header that clears it often enough that a few tries always do), with
/// a valid entry in the log.
fn killed_mid_write(fx: &Fixture) -> Vec<u8> {
    let cmds: String = (0..400)
        .map(|i| format!(" -c 'write -P {} {i}M 4k'", i % 250 + 1))
        .collect();
    for attempt in 0..40 {
        fx.sh(&format!(
            "rm -f log.vhdx && qemu-img create -q -f vhdx -o block_size=1M log.vhdx 512M && \
             (qemu-io -f vhdx{cmds} log.vhdx >/dev/null 2>&1 & pid=$!; sleep 0.{}; kill -9 $pid; wait $pid || true)",
            1 + attempt % 5
        ));
        let b = fx.read("log.vhdx");
        let guid = header(&b).log_guid;
        // The GUID is set before the entry is written: a kill between the
        // two leaves nothing to replay, so try again.
        if guid != [0; 16]
            && qimg::format::vhdx::log::find(&b[1 << 20..2 << 20], &guid)
                .expect("log")
                .is_some()
        {
            return b;
        }
    }
    panic!("no kill of qemu-io left a non-empty log in 40 tries");
}

#[test]
fn a_log_left_by_a_killed_qemu_io_is_replayed_as_qemu_img_replays_it() {
    let fx = Fixture::new();
    let killed = killed_mid_write(&fx);
    // A copy whose BAT sectors the log rewrites are zeroed, so the replay
    // decides what reads back (the log holds the BAT sector as QEMU was
    // about to write it; qemu-io may have written it already).
    let replay =
        qimg::format::vhdx::log::find(&killed[1 << 20..2 << 20], &header(&killed).log_guid)
            .expect("log")
            .expect("a sequence");
    let mut lost = killed.clone();
    for op in &replay.ops {
        let (o, l) = op.range();
        lost[o as usize..(o + l) as usize].fill(0);
    }
    fx.write("lost.vhdx", &lost);
    for name in ["log.vhdx", "lost.vhdx"] {
        let before = fx.read(name);
        // qemu-img refuses to read it read-only; qimg replays in memory.
        let q = fx.qemu_img(&["info", name]);
        assert_eq!(q.status.code(), Some(1));
        assert!(stderr(&q).contains("contains a log that needs to be replayed"));
        let ours = guest_by_qimg(&fx, name);
        let m = ok(&fx, "qimg", &["map", "--output=json", name]);
        assert!(fx.read(name) == before, "a read-only open changed {name}");
        // qemu-img's replay (check -r all) and qimg's give the same answer
        // and the same image.
        fx.write("q.vhdx", &before);
        fx.write("m.vhdx", &before);
        let q = fx.qemu_img(&["check", "-r", "all", "q.vhdx"]);
        let r = fx.qimg(&["check", "-r", "all", "m.vhdx"]);
        assert_eq!(q.status.code(), Some(0), "{}", stderr(&q));
        assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
        assert_eq!(stdout(&r).replace("m.vhdx", "q.vhdx"), stdout(&q));
        assert!(ours == guest_by_qemu(&fx, "q.vhdx"), "{name}: content");
        fx.assert_clean("m.vhdx");
        assert!(
            guest_by_qemu(&fx, "m.vhdx") == ours,
            "{name}: replayed file"
        );
        assert_eq!(m, ok(&fx, "qemu-img", &["map", "--output=json", "q.vhdx"]));
        assert_eq!(header(&fx.read("m.vhdx")).log_guid, [0; 16]);
    }
    // Without the replay the zeroed copy would have lost blocks: the log
    // is what brings them back.
    let q = guest_by_qemu(&fx, "q.vhdx");
    assert!(q.iter().any(|&b| b != 0));
}

#[test]
fn a_hand_made_log_with_two_entries_is_replayed_in_order() {
    // Two entries, the second rewriting the same BAT sector again; the
    // file is one block short of the newest entry's LastFileOffset. Built
    // from a qemu-img image by the entry layout QEMU writes (fact sheet
    // 4.6), since QEMU itself never leaves more than one entry.
    use qimg::format::vhdx::log::encode_entry;
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f vhdx -o block_size=1M two.vhdx 4M && \
           qemu-io -f vhdx -c 'write -P 0x61 0 1M' -c 'write -P 0x62 2M 1M' two.vhdx >/dev/null",
    );
    let want = guest_by_qemu(&fx, "two.vhdx");
    let mut b = fx.read("two.vhdx");
    let bat_sector = b[2 << 20..(2 << 20) + 4096].to_vec();
    let mut first = bat_sector.clone();
    first[16..24].fill(0); // block 2 not yet allocated
    let guid = [0x42; 16];
    let len = b.len() as u64;
    let e1 = encode_entry(&guid, 10, 0, len - (1 << 20), &[(2 << 20, &first)]);
    let e2 = encode_entry(&guid, 11, 0, len, &[(2 << 20, &bat_sector)]);
    let log = 1 << 20;
    b[log..log + e1.len()].copy_from_slice(&e1);
    b[log + e1.len()..log + e1.len() + e2.len()].copy_from_slice(&e2);
    b[2 << 20..(2 << 20) + 4096].fill(0);
    for at in [0x10000, 0x20000] {
        b[at + 48..at + 64].copy_from_slice(&guid);
        seal(&mut b[at..at + 4096], 4);
    }
    fx.write("two.vhdx", &b);
    assert!(guest_by_qimg(&fx, "two.vhdx") == want);
    ok(&fx, "qemu-img", &["check", "-r", "all", "two.vhdx"]);
    assert!(guest_by_qemu(&fx, "two.vhdx") == want);
}

/// Opens `bytes` as a writable VHDX that crashes after `n` changes.
fn faulty(fx: &Fixture, bytes: &[u8], n: u64) -> (std::sync::Arc<FaultStorage>, Option<Vhdx>) {
    let fault = std::sync::Arc::new(FaultStorage::new(fx.path("c.vhdx"), bytes.to_vec(), n));
    let image = Vhdx::open_writable(Box::new(fault.clone())).ok();
    (fault, image)
}

#[test]
fn a_crash_at_any_write_leaves_a_clean_vhdx_with_old_or_new_data() {
    let fx = Fixture::new();
    // Dynamic (blocks appended) and fixed with present blocks (in place).
    for opts in [
        "-o block_size=1M",
        "-o subformat=fixed,block_state_zero=off,block_size=1M",
    ] {
        fx.sh(&format!(
            "rm -f c0.vhdx && qemu-img create -q -f vhdx {opts} c0.vhdx 6M && \
             qemu-io -f vhdx -c 'write -P 0x77 0 1M' -c 'write -P 0x66 4M 64k' c0.vhdx >/dev/null"
        ));
        let bytes = fx.read("c0.vhdx");
        let initial = guest_by_qemu(&fx, "c0.vhdx");
        let slot = 64u64 << 10;
        let ops = slot_ops(11, initial.len() as u64 / slot, 16, 3);
        let total = {
            let (fault, image) = faulty(&fx, &bytes, u64::MAX);
            apply_slots(&image.expect("open"), &ops, slot);
            fault.writes()
        };
        assert!(total > 10, "only {total} writes");
        for n in 0..=total {
            let (fault, image) = faulty(&fx, &bytes, n);
            let flushed = image.map_or(0, |image| apply_slots(&image, &ops, slot));
            for (k, state) in fault.crash_states(n).into_iter().enumerate() {
                let what = format!("{opts}: crash after {n}/{total} (state {k})");
                fx.write("crash.vhdx", &state);
                let check = fx.qemu_img(&["check", "crash.vhdx"]);
                assert_eq!(check.status.code(), Some(0), "{what}: {}", stdout(&check));
                let got = guest_by_qemu(&fx, "crash.vhdx");
                assert!(
                    got == guest_by_qimg(&fx, "crash.vhdx"),
                    "{what}: qimg reads otherwise"
                );
                assert_old_or_new(&got, &initial, &ops, slot, slot, flushed, &what);
            }
        }
    }
}

#[test]
fn a_convert_into_a_vhdx_cut_after_any_change_is_clean() {
    let fx = Fixture::new();
    source_raw(&fx);
    fx.sh("qemu-img create -q -f vhdx -o block_size=1M dst.vhdx 12M");
    let empty = fx.read("dst.vhdx");
    let src = fx.read("src.raw");
    let total = common::uncut_convert_with(&fx, "dst.vhdx", "vhdx", |o| o);
    fx.assert_same("src.raw", "dst.vhdx");
    assert!(total >= 6, "only {total} changes");
    for n in 0..total {
        let reset = ("dst.vhdx", empty.as_slice());
        let cut = common::cut_convert_with(&fx, "dst.vhdx", "vhdx", reset, n, total, |o| o);
        assert!(cut.crashed, "no crash at {n}/{total}");
        fx.assert_clean("dst.vhdx");
        let got = guest_by_qemu(&fx, "dst.vhdx");
        // Every 64 KiB reads as the source or as zeros.
        for (a, b) in got.chunks(64 << 10).zip(src.chunks(64 << 10)) {
            assert!(a == b || a.iter().all(|&x| x == 0), "cut after {n}/{total}");
        }
        assert!(guest_by_qimg(&fx, "dst.vhdx") == got);
    }
}

/// Runs qimg with its address space limited to 256 MiB.
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

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reseals both headers and both region tables of `b`.
fn reseal(b: &mut [u8]) {
    for at in [0x10000, 0x20000] {
        seal(&mut b[at..at + 4096], 4);
    }
    for at in [0x30000, 0x40000] {
        seal(&mut b[at..at + 0x10000], 4);
    }
}

/// Sets the log GUID of both headers.
fn name_log(b: &mut [u8], guid: [u8; 16]) {
    for at in [0x10000, 0x20000] {
        b[at + 48..at + 64].copy_from_slice(&guid);
    }
}

type Patch = fn(&mut Vec<u8>);

/// The metadata region of `good.vhdx` (at 3 MiB; its items at +64 KiB).
const MD: usize = 3 << 20;

#[test]
fn malformed_images_fail_with_one_clear_line() {
    use qimg::format::vhdx::log::encode_entry;
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f vhdx -o block_size=1M good.vhdx 4M && \
           qemu-io -f vhdx -c 'write -P 1 0 64k' good.vhdx >/dev/null",
    );
    let good = fx.read("good.vhdx");
    let cases: Vec<(&str, &str, Patch)> = vec![
        ("short.vhdx", "too short", |b| b.truncate(0x30000)),
        ("headers.vhdx", "No valid VHDX header found", |b| {
            b[0x10000 + 200] ^= 1;
            b[0x20000 + 200] ^= 1;
        }),
        ("region.vhdx", "region table's checksum", |b| {
            b[0x30000 + 100] ^= 1
        }),
        ("overlap.vhdx", "overlaps", |b| {
            put64(b, 0x30000 + 16 + 32 + 16, 2 << 20);
            reseal(b);
        }),
        ("overlog.vhdx", "overlaps the log", |b| {
            put64(b, 0x30000 + 16 + 16, 1 << 20);
            reseal(b);
        }),
        ("regions.vhdx", "claims", |b| {
            put32(b, 0x30000 + 8, 100_000);
            reseal(b);
        }),
        ("required.vhdx", "required and unknown", |b| {
            put32(b, 0x30000 + 8, 3);
            let e = 0x30000 + 16 + 64;
            b[e..e + 16].copy_from_slice(&[0xab; 16]);
            put64(b, e + 16, 5 << 20);
            put32(b, e + 24, 1 << 20);
            put32(b, e + 28, 1);
            reseal(b);
        }),
        ("batpast.vhdx", "points after end of file", |b| {
            put64(b, 2 << 20, (64 << 20) | 6);
        }),
        ("batregion.vhdx", "past the end of the file", |b| {
            put64(b, 0x30000 + 16 + 16, 1 << 40);
            reseal(b);
        }),
        ("blocksize.vhdx", "block size", |b| {
            put32(b, MD + 0x10000, 3 << 20)
        }),
        ("hugesize.vhdx", "virtual size", |b| {
            put64(b, MD + 0x10008, 1 << 62)
        }),
        ("parent.vhdx", "differencing VHDX is not supported", |b| {
            put32(b, MD + 0x10004, 2)
        }),
        ("item.vhdx", "required and unknown", |b| {
            put32(b, MD + 32 + 24, 6);
            b[MD + 32 + 4] ^= 0xff;
        }),
        ("itemoff.vhdx", "metadata item", |b| {
            put32(b, MD + 32 + 16, 1 << 30)
        }),
        ("state.vhdx", "invalid state 5", |b| put64(b, 2 << 20, 5)),
        ("logpast.vhdx", "log", |b| {
            for at in [0x10000, 0x20000] {
                put32(b, at + 68, 1 << 30);
            }
            name_log(b, [7; 16]);
            reseal(b);
        }),
        ("logflushed.vhdx", "shorter than its log", |b| {
            let e = encode_entry(&[7; 16], 1, 0, 1 << 40, &[]);
            b[1 << 20..(1 << 20) + e.len()].copy_from_slice(&e);
            name_log(b, [7; 16]);
            reseal(b);
        }),
        ("logheaders.vhdx", "over the headers", |b| {
            let e = encode_entry(&[7; 16], 1, 0, 8 << 20, &[(0x10000, &[0u8; 4096])]);
            b[1 << 20..(1 << 20) + e.len()].copy_from_slice(&e);
            name_log(b, [7; 16]);
            reseal(b);
        }),
    ];
    for (name, needle, patch) in cases {
        let mut b = good.clone();
        patch(&mut b);
        fx.write(name, &b);
        for args in [
            vec!["info", name],
            vec!["map", "--output=json", name],
            vec!["convert", "-O", "raw", name, "out.raw"],
            vec!["check", name],
        ] {
            let out = qimg_limited(&fx, &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.contains(name) && err.contains(needle),
                "{args:?}: {err}"
            );
        }
        assert!(fx.read(name) == b, "{name} changed");
    }
    // A log whose entries name each other as tails in a loop, and one that
    // fills a whole huge log with entries, are refused or ignored, bounded.
    let mut b = good.clone();
    let e1 = encode_entry(&[7; 16], 3, 4096, 8 << 20, &[]);
    let e2 = encode_entry(&[7; 16], 9, 0, 8 << 20, &[]);
    b[1 << 20..(1 << 20) + 4096].copy_from_slice(&e1);
    b[(1 << 20) + 4096..(1 << 20) + 8192].copy_from_slice(&e2);
    name_log(&mut b, [7; 16]);
    reseal(&mut b);
    fx.write("loop.vhdx", &b);
    assert_eq!(
        guest_by_qimg(&fx, "loop.vhdx"),
        guest_by_qemu(&fx, "good.vhdx")
    );
    let out = qimg_limited(&fx, &["info", "loop.vhdx"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn one_broken_header_is_outvoted_and_rewritten_by_the_next_write() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f vhdx -o block_size=1M h.vhdx 10M && {PATTERN} h.vhdx >/dev/null"
    ));
    for broken in [0x10000usize, 0x20000] {
        let mut b = fx.read("h.vhdx");
        b[broken + 300] ^= 0xff;
        fx.write("b.vhdx", &b);
        assert_reads_like_qemu(&fx, "b.vhdx");
        ok(
            &fx,
            "qimg",
            &[
                "convert",
                "-n",
                "-f",
                "raw",
                "-O",
                "vhdx",
                "guest-q.raw",
                "b.vhdx",
            ],
        );
        let after = fx.read("b.vhdx");
        for at in [0x10000, 0x20000] {
            assert!(
                Header::parse(&after[at..at + 4096]).is_some(),
                "header at {at:#x}"
            );
        }
        fx.assert_clean("b.vhdx");
        fx.assert_same("h.vhdx", "b.vhdx");
    }
}
