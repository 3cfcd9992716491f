//! VHD (qemu's `vpc`): interop both ways with qemu-img, the size rules of
//! the footer, a malformed corpus and crash safety of dynamic writes.

mod common;

use common::slots::{apply_slots, assert_old_or_new, slot_ops};

use common::{stderr, stdout, Fixture};
use qimg::format::vpc::Vpc;
use qimg::io::FaultStorage;

/// The guest content of `image` as qemu-img reads it (format `fmt`).
fn guest_by_qemu(fx: &Fixture, fmt: &str, image: &str) -> Vec<u8> {
    let out = fx.qemu_img(&["convert", "-f", fmt, "-O", "raw", image, "guest-q.raw"]);
    assert!(
        out.status.success(),
        "qemu-img convert {image}: {}",
        stderr(&out)
    );
    fx.read("guest-q.raw")
}

/// The JSON of `tool info|map --output=json -f vpc image`.
fn json(fx: &Fixture, tool: &str, cmd: &str, image: &str) -> String {
    let args = [cmd, "--output=json", "-f", "vpc", image];
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

/// Asserts that qimg reads the VHD `image` exactly as qemu-img does:
/// `info` and `map` JSON and the guest content.
fn assert_reads_like_qemu(fx: &Fixture, image: &str) {
    for cmd in ["info", "map"] {
        assert_eq!(
            json(fx, "qimg", cmd, image),
            json(fx, "qemu-img", cmd, image),
            "{cmd} of {image}"
        );
    }
    let out = fx.qimg(&["convert", "-f", "vpc", "-O", "raw", image, "guest-i.raw"]);
    assert!(
        out.status.success(),
        "qimg convert {image}: {}",
        stderr(&out)
    );
    assert!(
        fx.read("guest-i.raw") == guest_by_qemu(fx, "vpc", image),
        "content of {image}"
    );
}

/// Recomputes the checksum of the footer at `at`.
fn fix_footer(b: &mut [u8], at: usize) {
    b[at + 64..at + 68].fill(0);
    let sum: u32 = b[at..at + 512].iter().map(|&x| x as u32).sum();
    b[at + 64..at + 68].copy_from_slice(&(!sum).to_be_bytes());
}

/// Applies `f` to every footer of the VHD bytes `b` (the copy at 0 of a
/// dynamic disk and the one at the end), keeping the checksums right.
fn patch_footers(b: &mut [u8], f: impl Fn(&mut [u8])) {
    let end = b.len() - 512;
    let mut at = vec![end];
    if &b[..8] == b"conectix" {
        at.push(0);
    }
    for a in at {
        f(&mut b[a..a + 512]);
        fix_footer(b, a);
    }
}

const PATTERN: &str = "qemu-io -f vpc -c 'write -P 0x11 0 64k' -c 'write -P 0x22 3M 4k' \
                       -c 'write -z 4M 64k' -c 'write -P 0x33 4100k 1000'";

#[test]
fn images_made_by_qemu_img_read_identically() {
    let fx = Fixture::new();
    let cases = [
        ("d.vhd", ""),
        ("f.vhd", "-o subformat=fixed"),
        ("df.vhd", "-o force_size=on"),
        ("az.vhd", "-o subformat=fixed,force_size=on"),
    ];
    for (name, opts) in cases {
        fx.sh(&format!(
            "qemu-img create -q -f vpc {opts} e-{name} 7M && qemu-img create -q -f vpc {opts} {name} 7M && {PATTERN} {name} >/dev/null"
        ));
        assert_reads_like_qemu(&fx, &format!("e-{name}"));
        assert_reads_like_qemu(&fx, name);
    }
    // A dynamic VHD probes as vpc; its human info matches qemu-img's too.
    let (a, b) = (fx.qimg(&["info", "d.vhd"]), fx.qemu_img(&["info", "d.vhd"]));
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn the_creator_app_decides_between_chs_and_current_size() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vpc d.vhd 5M && qemu-img create -q -f vpc -o subformat=fixed f.vhd 5M");
    let apps: [&[u8; 4]; 8] = [
        b"qemu", b"vpc ", b"qem2", b"win ", b"d2v ", b"wa\0\0", b"abcd", b"tap\0",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for base in ["d.vhd", "f.vhd"] {
        for app in apps {
            let mut b = fx.read(base);
            patch_footers(&mut b, |f| {
                f[28..32].copy_from_slice(app);
                f[48..56].copy_from_slice(&5_242_880u64.to_be_bytes());
            });
            let name = format!("app-{}", base);
            fx.write(&name, &b);
            let (ours, theirs) = (
                json(&fx, "qimg", "info", &name),
                json(&fx, "qemu-img", "info", &name),
            );
            assert_eq!(ours, theirs, "creator {:?} on {base}", app);
            seen.insert(ours.contains("\"virtual-size\": 5257216"));
        }
        // The largest geometry always means current_size, also for qemu.
        let mut b = fx.read(base);
        patch_footers(&mut b, |f| {
            f[48..56].copy_from_slice(&5_242_880u64.to_be_bytes());
            f[56..60].copy_from_slice(&[0xff, 0xff, 16, 255]);
        });
        fx.write("max.vhd", &b);
        assert_eq!(
            json(&fx, "qimg", "info", "max.vhd"),
            json(&fx, "qemu-img", "info", "max.vhd")
        );
    }
    assert_eq!(seen.len(), 2, "both size rules were exercised");
}

/// Masks what differs between two VHDs made with the same options: the
/// timestamp, checksum and unique id of each footer.
fn masked(mut b: Vec<u8>) -> Vec<u8> {
    let end = b.len() - 512;
    for at in [0, end] {
        if &b[at..at + 8] == b"conectix" {
            b[at + 24..at + 28].fill(0);
            b[at + 64..at + 84].fill(0);
        }
    }
    b
}

#[test]
fn create_matches_qemu_img_byte_for_byte_but_timestamps() {
    let fx = Fixture::new();
    fx.sh("mkdir q i");
    let opts = [
        "",
        "subformat=dynamic",
        "subformat=fixed",
        "force_size=on",
        "subformat=fixed,force_size=on",
        "subformat=dynamic,force_size=off,nocow=off,preallocation=off,extent_size_hint=0",
        "subformat=fixed,preallocation=full",
    ];
    for o in opts {
        for size in ["1M", "5M", "100M", "5000000", "0"] {
            let mut args = vec!["create", "-f", "vpc"];
            if !o.is_empty() {
                args.extend(["-o", o]);
            }
            args.extend(["x.vhd", size]);
            let ours = fx.run_in("i", "qimg", &args);
            let theirs = fx.run_in("q", "qemu-img", &args);
            assert!(ours.status.success(), "{o} {size}: {}", stderr(&ours));
            assert_eq!(
                stdout(&ours),
                stdout(&theirs),
                "Formatting line, {o} {size}"
            );
            let (a, b) = (fx.read("i/x.vhd"), fx.read("q/x.vhd"));
            assert_eq!(a.len(), b.len(), "{o} {size}");
            assert!(masked(a) == masked(b), "{o} {size}: the files differ");
            let info = |dir: &str| {
                let out = fx.run_in(
                    dir,
                    "qemu-img",
                    &["info", "--output=json", "-f", "vpc", "x.vhd"],
                );
                assert!(out.status.success(), "{}", stderr(&out));
                stdout(&out).replace("actual-size", "x")
            };
            let strip = |s: String| {
                s.lines()
                    .filter(|l| !l.contains("\"x\""))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            // qemu-img cannot open its own empty fixed VHD (the lone
            // footer at offset 0 is taken for a dynamic disk's copy).
            if !(o.contains("fixed") && size == "0") {
                assert_eq!(strip(info("i")), strip(info("q")), "{o} {size}");
            }
        }
    }
    // Refusals, after the Formatting line, as qemu-img.
    for (o, size, msg) in [
        (
            "subformat=foo",
            "1M",
            "Parameter 'subformat' does not accept value 'foo'",
        ),
        (
            "preallocation=metadata",
            "1M",
            "Unsupported preallocation mode: metadata",
        ),
        (
            "",
            "2041G",
            "The image size is too large for file format 'vpc'",
        ),
        (
            "subformat=fixed,force_size=on",
            "2041G",
            "The image size is too large for file format 'vpc'",
        ),
    ] {
        let mut args = vec!["create", "-f", "vpc"];
        if !o.is_empty() {
            args.extend(["-o", o]);
        }
        args.extend(["bad.vhd", size]);
        let ours = fx.run_in("i", "qimg", &args);
        let theirs = fx.run_in("q", "qemu-img", &args);
        assert_eq!(ours.status.code(), Some(1), "{o} {size}");
        assert_eq!(stdout(&ours), stdout(&theirs), "{o} {size}");
        assert!(stderr(&ours).contains(msg), "{o} {size}: {}", stderr(&ours));
        assert!(
            stderr(&theirs).contains(msg),
            "{o} {size}: {}",
            stderr(&theirs)
        );
    }
}

/// A 9 MiB raw disk with data in some blocks, holes and a zero block.
fn source_raw(fx: &Fixture) {
    fx.sh(
        "qemu-img create -q -f raw src.raw 9M && \
         qemu-io -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1M 64k' -c 'write -P 0x33 3M 512' \
         -c 'write -P 0x44 4100k 1000' -c 'write -P 0x55 8M 1M' src.raw >/dev/null && \
         head -c 65536 /dev/urandom | dd of=src.raw bs=64k seek=100 conv=notrunc status=none",
    );
}

#[test]
fn cinder_convert_to_vpc_matches_qemu_img() {
    let fx = Fixture::new();
    source_raw(&fx);
    // openstack/cinder, cinder/image/image_utils.py, _get_qemu_convert_cmd:
    // ['qemu-img', 'convert', '-O', out_format] (+ '-f', src_format) + [src, dest],
    // with disk format 'vhd' mapped to 'vpc'.
    let ours = fx.qimg(&["convert", "-O", "vpc", "-f", "raw", "src.raw", "i.vhd"]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let theirs = fx.qemu_img(&["convert", "-O", "vpc", "-f", "raw", "src.raw", "q.vhd"]);
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    // The VHD is larger (CHS rounding): compare warns and finds them identical.
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vpc", "src.raw", "i.vhd"]);
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "{}{}",
        stdout(&cmp),
        stderr(&cmp)
    );
    assert!(stdout(&cmp).contains("Images are identical."));
    assert_eq!(
        json(&fx, "qemu-img", "map", "i.vhd"),
        json(&fx, "qemu-img", "map", "q.vhd")
    );
    let (a, b) = (fx.read("i.vhd"), fx.read("q.vhd"));
    assert_eq!(a.len(), b.len());
    assert!(
        masked(a) == masked(b),
        "qimg's VHD is laid out as qemu-img's"
    );
    assert_reads_like_qemu(&fx, "i.vhd");
    // Back to raw through qimg, from qemu-img's VHD.
    let out = fx.qimg(&["convert", "-O", "raw", "q.vhd", "back.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fx.read("back.raw") == guest_by_qemu(&fx, "vpc", "q.vhd"));
    // Fixed, both tools, same content and info.
    for (tool, name) in [("qimg", "if.vhd"), ("qemu-img", "qf.vhd")] {
        let args = [
            "convert",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed",
            "-f",
            "raw",
            "src.raw",
            name,
        ];
        let out = if tool == "qimg" {
            fx.qimg(&args)
        } else {
            fx.qemu_img(&args)
        };
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
    }
    let cmp = fx.qemu_img(&["compare", "-f", "vpc", "-F", "vpc", "if.vhd", "qf.vhd"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    assert_reads_like_qemu(&fx, "if.vhd");
}

#[test]
fn azure_fixed_vhd_keeps_the_whole_mib_size() {
    let fx = Fixture::new();
    source_raw(&fx);
    let out = fx.qimg(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        "src.raw",
        "az.vhd",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fx.read("az.vhd").len() as u64, (9 << 20) + 512);
    let info = json(&fx, "qemu-img", "info", "az.vhd");
    assert!(
        info.contains(&format!("\"virtual-size\": {},", 9u64 << 20)),
        "{info}"
    );
    // Same size and content (`-s` would also compare allocation, which
    // differs for qemu-img's own fixed VHD as well).
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vpc", "src.raw", "az.vhd"]);
    assert_eq!(
        cmp.status.code(),
        Some(0),
        "{}{}",
        stdout(&cmp),
        stderr(&cmp)
    );
    assert_eq!(stdout(&cmp), "Images are identical.\n");
    let b = fx.read("az.vhd");
    assert_eq!(&b[b.len() - 512 + 28..b.len() - 512 + 32], b"qem2");
    assert_reads_like_qemu(&fx, "az.vhd");
}

#[test]
fn malformed_vhds_fail_with_one_line_naming_the_file() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vpc d.vhd 5M && qemu-io -f vpc -c 'write -P 1 0 64k' d.vhd >/dev/null");
    let good = fx.read("d.vhd");
    let be32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let be64 = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    let mut corpus: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    corpus.push(("truncated.vhd", good[..3000].to_vec(), "truncated"));
    corpus.push(("tiny.vhd", good[..100].to_vec(), "invalid VPC image"));
    let mut b = good.clone();
    b[70] ^= 1;
    corpus.push(("checksum.vhd", b, "Incorrect header checksum"));
    let mut b = good.clone();
    be64(&mut b, 0x210, 1 << 40);
    corpus.push(("bat-past-end.vhd", b, "does not lie inside the file"));
    let mut b = good.clone();
    be32(&mut b, 0x21c, u32::MAX);
    corpus.push(("huge-bat.vhd", b, "does not lie inside the file"));
    let mut b = good.clone();
    be32(&mut b, 0x21c, 1);
    corpus.push(("small-bat.vhd", b, "Page table too small"));
    for (name, bs) in [
        ("bs-3000.vhd", 3000u32),
        ("bs-0.vhd", 0),
        ("bs-256.vhd", 256),
    ] {
        let mut b = good.clone();
        be32(&mut b, 0x220, bs);
        corpus.push((name, b, "Invalid block size"));
    }
    let mut b = good.clone();
    b[0x200] = b'X';
    corpus.push(("magic.vhd", b, "Invalid header magic"));
    let mut b = good.clone();
    be32(&mut b, 0x600, 0x7fff_ffff);
    corpus.push(("entry-past-end.vhd", b, "truncated"));
    let mut b = good.clone();
    patch_footers(&mut b, |f| {
        f[16..24].copy_from_slice(&(1u64 << 50).to_be_bytes())
    });
    corpus.push(("header-past-end.vhd", b, "past the end of the file"));
    let mut b = good.clone();
    patch_footers(&mut b, |f| {
        f[28..32].copy_from_slice(b"win ");
        f[48..56].copy_from_slice(&u64::MAX.to_be_bytes());
    });
    corpus.push(("absurd-size.vhd", b, "too large"));
    let mut b = good.clone();
    patch_footers(&mut b, |f| f[60..64].copy_from_slice(&4u32.to_be_bytes()));
    corpus.push(("differencing.vhd", b, "differencing"));
    let mut b = good.clone();
    b[0] = 0;
    corpus.push(("no-head.vhd", b, "invalid VPC image"));
    corpus.push(("zeros.vhd", vec![0u8; 4096], "invalid VPC image"));
    for (name, bytes, words) in &corpus {
        fx.write(name, bytes);
        let before = fx.read(name);
        for cmd in ["info", "map"] {
            let out = fx.qimg(&[cmd, "-f", "vpc", name]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {name}: {err}");
            assert_eq!(err.lines().count(), 1, "{cmd} {name}: {err}");
            assert!(
                err.contains(name) && err.contains(words),
                "{cmd} {name}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        // qemu-img refuses each of them too, but for the differencing
        // disk, which it reads as if it were dynamic, without its parent.
        let q = fx.qemu_img(&["info", "-f", "vpc", name]);
        assert_eq!(
            q.status.success(),
            *name == "differencing.vhd",
            "qemu-img on {name}: {}",
            stderr(&q)
        );
        assert!(fx.read(name) == *before, "{name} was changed");
    }
}

/// Opens `bytes` as a writable dynamic VHD that crashes after `n` changes.
fn faulty(fx: &Fixture, bytes: &[u8], n: u64) -> (std::sync::Arc<FaultStorage>, Vpc) {
    let fault = std::sync::Arc::new(FaultStorage::new(fx.path("c.vhd"), bytes.to_vec(), n));
    let image = Vpc::open_writable(Box::new(fault.clone())).expect("open");
    (fault, image)
}

#[test]
fn a_crash_at_any_write_leaves_a_readable_vhd_with_old_or_new_blocks() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f vpc c0.vhd 9M && \
         qemu-io -f vpc -c 'write -P 0x77 0 1M' -c 'write -P 0x66 6M 64k' c0.vhd >/dev/null");
    let bytes = fx.read("c0.vhd");
    let initial = guest_by_qemu(&fx, "vpc", "c0.vhd");
    let slot = 64 << 10;
    let ops = slot_ops(7, initial.len() as u64 / slot, 40, 4);
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
            fx.write("crash.vhd", &state);
            let info = fx.qemu_img(&["info", "-f", "vpc", "crash.vhd"]);
            assert!(
                info.status.success(),
                "{what}: qemu-img info: {}",
                stderr(&info)
            );
            let got = guest_by_qemu(&fx, "vpc", "crash.vhd");
            assert_old_or_new(&got, &initial, &ops, slot, slot, flushed, &what);
        }
    }
    // qimg itself reads the finished image as qemu-img does.
    let (fault, image) = faulty(&fx, &bytes, u64::MAX);
    apply_slots(&image, &ops, slot);
    drop(image);
    fx.write("done.vhd", &fault.after_crash(|_| true));
    assert_reads_like_qemu(&fx, "done.vhd");
}

#[test]
fn a_convert_into_a_dynamic_vhd_cut_after_any_change_leaves_old_or_new_blocks() {
    let fx = Fixture::new();
    source_raw(&fx);
    // The target's guest size (9M rounded up to CHS) holds the source.
    fx.sh("qemu-img create -q -f vpc dst.vhd 9M");
    let empty = fx.read("dst.vhd");
    let src = fx.read("src.raw");
    // The source's data runs, as qemu-img maps them.
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
    let total = common::uncut_convert_with(&fx, "dst.vhd", "vpc", |o| o);
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vpc", "src.raw", "dst.vhd"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    assert!(total >= 8, "only {total} changes");
    for n in 0..total {
        let pattern = common::cut_convert(&fx, "dst.vhd", "vpc", &empty, n, total);
        let info = fx.qemu_img(&["info", "-f", "vpc", "dst.vhd"]);
        assert!(
            info.status.success(),
            "cut after {n}/{total} (pattern {pattern}): {}",
            stderr(&info)
        );
        let got = guest_by_qemu(&fx, "vpc", "dst.vhd");
        // Each run of source data is one write: it reads old (zeros) or
        // new, whole; everything else reads zeros.
        for &(start, len) in &runs {
            let (a, b) = (start as usize, (start + len) as usize);
            let have = &got[a..b];
            assert!(
                have == &src[a..b] || have.iter().all(|&x| x == 0),
                "cut after {n}/{total} (pattern {pattern}): data at {start:#x} is neither old nor new"
            );
        }
        assert!(got[src.len()..].iter().all(|&x| x == 0), "past the source");
        // qimg reads what qemu-img reads.
        assert_reads_like_qemu(&fx, "dst.vhd");
    }
}

#[test]
fn a_parallel_convert_of_whole_blocks_cut_after_any_change_leaves_old_or_new_blocks() {
    let fx = Fixture::new();
    // Whole 2 MiB blocks (written in two phases, several at once), a
    // partial one (written serially) and a hole.
    fx.sh("qemu-img create -q -f raw src.raw 10M
         qemu-io -f raw -c 'write -P 0x61 0 2M' -c 'write -P 0x62 6M 4k' src.raw >/dev/null
         head -c 2097152 /dev/urandom | dd of=src.raw bs=1M seek=2 conv=notrunc status=none
         head -c 2097152 /dev/urandom | dd of=src.raw bs=1M seek=8 conv=notrunc status=none
         qemu-img create -q -f vpc dst.vhd 10M");
    let empty = fx.read("dst.vhd");
    let src = fx.read("src.raw");
    let block = 2usize << 20;
    let total = common::uncut_convert_with(&fx, "dst.vhd", "vpc", |o| o);
    let cmp = fx.qemu_img(&["compare", "-f", "raw", "-F", "vpc", "src.raw", "dst.vhd"]);
    assert_eq!(cmp.status.code(), Some(0), "{}", stdout(&cmp));
    // Whole blocks were placed by plan_write: they lie in the file in
    // guest order, each right after its bitmap.
    let map = fx.qemu_img(&["map", "--output=json", "dst.vhd"]);
    let map: serde_json::Value = serde_json::from_slice(&map.stdout).expect("map JSON");
    let offsets: Vec<u64> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{map}");
    for n in 0..total {
        let pattern = common::cut_convert(&fx, "dst.vhd", "vpc", &empty, n, total);
        let got = guest_by_qemu(&fx, "vpc", "dst.vhd");
        for b in 0..src.len() / block {
            let r = b * block..(b + 1) * block;
            assert!(
                got[r.clone()] == src[r.clone()] || got[r.clone()].iter().all(|&x| x == 0),
                "cut after {n}/{total} (pattern {pattern}): block {b} is neither old nor new"
            );
        }
        assert_reads_like_qemu(&fx, "dst.vhd");
    }
}

#[test]
fn a_fixed_vhd_probes_as_vpc_by_its_footer() {
    let fx = Fixture::new();
    fx.sh(&format!(
        "qemu-img create -q -f vpc -o subformat=fixed f.vhd 7M && {} f.vhd >/dev/null && \
         qemu-img create -q -f vpc -o subformat=fixed,force_size=on az.vhd 7M && {} az.vhd >/dev/null",
        PATTERN, PATTERN
    ));
    for image in ["f.vhd", "az.vhd"] {
        // qemu-img probes it as raw (its footer is not at the start); qimg
        // reads it without -f as qemu-img reads it with -f vpc.
        let probed = fx.qemu_img(&["info", "--output=json", image]);
        assert!(stdout(&probed).contains("\"format\": \"raw\""));
        for cmd in ["info", "map"] {
            let ours = fx.qimg(&[cmd, "--output=json", image]);
            assert!(ours.status.success(), "{}", stderr(&ours));
            assert_eq!(
                stdout(&ours),
                json(&fx, "qemu-img", cmd, image),
                "{cmd} {image}"
            );
        }
        let out = fx.qimg(&["convert", "-O", "raw", image, "probed.raw"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(fx.read("probed.raw") == guest_by_qemu(&fx, "vpc", image));
    }
    // What does not make a fixed VHD stays raw, as with qemu-img: a bad
    // checksum, a dynamic disk's footer, data shorter than the footer says.
    let good = fx.read("f.vhd");
    let end = good.len() - 512;
    let mut bad_sum = good.clone();
    bad_sum[end + 70] ^= 1;
    let mut dynamic = good.clone();
    patch_footers(&mut dynamic, |f| {
        f[60..64].copy_from_slice(&3u32.to_be_bytes())
    });
    let short = good[1 << 20..].to_vec();
    for (name, bytes) in [
        ("sum.img", bad_sum),
        ("dyn.img", dynamic),
        ("short.img", short),
    ] {
        fx.write(name, &bytes);
        let out = fx.qimg(&["info", "--output=json", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("\"format\": \"raw\""),
            "{name}: {}",
            stdout(&out)
        );
    }
    // A footer is a guess a guest could make true: it never names the
    // format of a backing file that does not record one.
    fx.sh("qemu-img create -q -f qcow2 -b f.vhd -F vpc over.qcow2");
    let mut b = fx.read("over.qcow2");
    let pos = b
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("backing format extension");
    b[pos..pos + 4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    fx.write("over.qcow2", &b);
    let out = fx.qimg(&["map", "over.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("probing it would guess vpc"),
        "{}",
        stderr(&out)
    );
}
