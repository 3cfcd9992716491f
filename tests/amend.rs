//! `qimg amend` against `qemu-img amend` on copies of the same images:
//! exit codes, messages, `-o help`, the resulting `info` (format-specific
//! section and size), guest content and every snapshot's, and `qemu-img
//! check`; plus crash injection at every write of a downgrade, an upgrade,
//! a refcount width change and a lazy-refcounts switch.

mod common;

use common::{
    first_snapshot_l1, replace_snapshot_table, snapshot_entry, stderr, stdout, Daemon, Fixture,
};
use qimg::format::qcow2::Qcow2;
use qimg::format::{Amend, AmendOptions};
use qimg::io::FaultStorage;
use std::process::Output;
use std::sync::Arc;

/// Runs `amend ARGS... FILE` with both tools on their own copies of
/// `image`; returns their outputs and the copies' names.
fn both(fx: &Fixture, image: &str, args: &[&str]) -> (Output, Output, String, String) {
    common::on_copies(fx, image, &[&["amend"], args].concat(), &[])
}

/// The error lines of an output, without the program prefix and probing
/// warnings, with the program's own name in hints made neutral.
fn sentences(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| {
            !l.starts_with("WARNING: Image format was not specified") && !l.starts_with("         ")
        })
        .map(|l| {
            l.trim_start_matches("qemu-img: ")
                .trim_start_matches("qimg: ")
                .to_string()
        })
        .collect()
}

/// `info --output=json` of `file` (by qemu-img): what amend may change.
fn amended_facts(fx: &Fixture, file: &str) -> serde_json::Value {
    let out = fx.qemu_img(&["info", "--output=json", file]);
    assert!(out.status.success(), "info {file}: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    let snapshots: Vec<_> = v["snapshots"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|s| {
                    (
                        s["id"].clone(),
                        s["name"].clone(),
                        s["vm-state-size"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "format-specific": v["format-specific"],
        "virtual-size": v["virtual-size"],
        "backing": v["backing-filename"],
        "snapshots": snapshots,
    })
}

/// The names of the internal snapshots of `file`.
fn snapshot_names(fx: &Fixture, file: &str) -> Vec<String> {
    let out = fx.qemu_img(&["info", "--output=json", file]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    v["snapshots"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The guest content of `file` (or of its snapshot `snap`), as qemu-img reads it.
fn guest(fx: &Fixture, file: &str, snap: Option<&str>) -> Vec<u8> {
    let mut args = vec!["convert", "-O", "raw"];
    let spec;
    if let Some(s) = snap {
        spec = format!("snapshot.name={s}");
        args.extend(["-l", &spec]);
    }
    args.extend([file, "guest.raw"]);
    let out = fx.qemu_img(&args);
    assert!(out.status.success(), "convert {file}: {}", stderr(&out));
    fx.read("guest.raw")
}

/// Asserts both tools did the same to `image` with `args`. The guest
/// content and every snapshot's are compared with the image before the
/// amend (qemu-img's own downgrade can damage snapshots: see
/// `downgrade_keeps_snapshots_that_share_zero_clusters`).
fn assert_amends_like_qemu(fx: &Fixture, image: &str, args: &[&str]) {
    let (q, m, theirs, ours) = both(fx, image, args);
    let what = format!("amend {args:?} {image}");
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{what}: exit\nqemu-img: {}qimg: {}",
        stderr(&q),
        stderr(&m)
    );
    assert_eq!(stdout(&m), stdout(&q), "{what}: stdout");
    let (qs, ms) = (sentences(&q), sentences(&m));
    if !q.status.success() {
        assert_eq!(
            ms.first(),
            qs.first(),
            "{what}: qemu-img said {qs:?}, qimg {ms:?}"
        );
        assert_eq!(ms.len(), qs.len(), "{what}: {qs:?} / {ms:?}");
        if fx.path(image).exists() {
            assert_eq!(
                fx.read(image),
                fx.read(&ours),
                "{what}: a refused amend changed the image"
            );
        }
        return;
    }
    assert_eq!(
        amended_facts(fx, &ours),
        amended_facts(fx, &theirs),
        "{what}: info"
    );
    fx.assert_clean(&ours);
    fx.assert_same(&theirs, &ours);
    let facts = |f: &str| amended_facts(fx, f)["virtual-size"].clone();
    if facts(image) == facts(&ours) {
        fx.assert_same(image, &ours);
    }
    for snap in snapshot_names(fx, image) {
        // Read at the image's current size: compare what both sizes cover.
        let (now, was) = (guest(fx, &ours, Some(&snap)), guest(fx, image, Some(&snap)));
        let n = now.len().min(was.len());
        assert!(
            now[..n] == was[..n] && now[n..].iter().all(|&b| b == 0),
            "{what}: snapshot {snap} changed"
        );
    }
}

/// Images with what amend has to care about: zero clusters (unallocated
/// and preallocated), a backing file, snapshots, bitmaps, compressed
/// clusters, extended L2, an external data file, other refcount widths.
fn images(fx: &Fixture) -> Vec<&'static str> {
    fx.sh("qemu-img create -q -f qcow2 plain.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -z 2M 1M' -c 'write -P 0x12 3M 64k' -c 'write -z 3M 32k' plain.qcow2 >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x21 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 over.qcow2 4M
         qemu-io -c 'write -P 0x22 0 1M' -c 'write -z 0 256k' -c 'write -z 2M 512k' over.qcow2 >/dev/null
         qemu-img create -q -f qcow2 snap.qcow2 4M
         qemu-io -c 'write -P 0x31 0 2M' -c 'write -z 2M 1M' snap.qcow2 >/dev/null
         qemu-img snapshot -c one snap.qcow2
         qemu-io -c 'write -P 0x32 1M 64k' -c 'write -z 0 128k' snap.qcow2 >/dev/null
         qemu-img snapshot -c two snap.qcow2
         qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
         qemu-io -c 'write -P 0x41 0 1M' v2.qcow2 >/dev/null
         qemu-img snapshot -c old v2.qcow2
         qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 4M
         qemu-io -c 'write -P 0x51 0 1M' lazy.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on ext.qcow2 4M
         qemu-io -c 'write -P 0x61 0 1M' ext.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compression_type=zstd zstd.qcow2 4M
         qemu-io -c 'write -P 0x71 0 1M' zstd.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compression_type=zstd zstdc.qcow2 4M
         qemu-io -c 'write -c -P 0x72 0 64k' zstdc.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compression_type=zlib zlibc.qcow2 4M
         qemu-io -c 'write -c -P 0x73 0 64k' zlibc.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 4M
         qemu-img create -q -f qcow2 -o data_file=data.raw ext-data.qcow2 4M
         qemu-img create -q -f qcow2 bm.qcow2 4M
         qemu-img bitmap --add bm.qcow2 b0
         qemu-img create -q -f qed q.qed 4M
         qemu-img create -q -f raw r.raw 4M");
    vec![
        "plain.qcow2",
        "over.qcow2",
        "snap.qcow2",
        "v2.qcow2",
        "lazy.qcow2",
        "ext.qcow2",
        "zstd.qcow2",
        "zstdc.qcow2",
        "zlibc.qcow2",
        "r8.qcow2",
        "ext-data.qcow2",
    ]
}

#[test]
fn amends_like_qemu_img() {
    let fx = Fixture::new();
    for image in images(&fx) {
        for opts in [
            "compat=0.10",
            "compat=v2",
            "compat=1.1",
            "compat=v3",
            "lazy_refcounts=on",
            "lazy_refcounts=off",
            "lazy_refcounts",
            "compat=1.1,lazy_refcounts=on",
            "compat=0.10,lazy_refcounts=off",
            "size=8M",
            "size=2M",
            "size=0",
            "compat=0.10,size=8M",
            "refcount_bits=16",
            "refcount_bits=1",
            "refcount_bits=8",
            "refcount_bits=64",
            "compat=1.1,refcount_bits=32",
        ] {
            if image == "ext-data.qcow2" && opts == "size=2M" {
                continue; // resize cannot shrink with a data file yet (see README)
            }
            assert_amends_like_qemu(&fx, image, &["-o", opts]);
        }
        // Several -o lists add up; -q prints nothing.
        assert_amends_like_qemu(
            &fx,
            image,
            &["-q", "-o", "compat=1.1", "-o", "lazy_refcounts=on"],
        );
        assert_amends_like_qemu(&fx, image, &["-f", "qcow2", "--force", "-o", "compat=0.10"]);
        assert_amends_like_qemu(&fx, image, &["-t", "writeback", "-o", "compat=1.1"]);
    }
    // Back and forth: a downgraded image upgrades to what qemu-img makes.
    assert_amends_like_qemu(&fx, "plain.qcow2", &["-o", "compat=0.10"]);
    fx.sh("cp m-plain.qcow2 down.qcow2");
    assert_amends_like_qemu(&fx, "down.qcow2", &["-o", "compat=1.1"]);
}

#[test]
fn refuses_like_qemu_img() {
    let fx = Fixture::new();
    images(&fx);
    for (image, args) in [
        ("plain.qcow2", &["-o", "cluster_size=4k"][..]),
        ("plain.qcow2", &["-o", "preallocation=full"]),
        ("plain.qcow2", &["-o", "extended_l2=on"]),
        ("plain.qcow2", &["-o", "compression_type=zstd"]),
        ("plain.qcow2", &["-o", "encryption=on"]),
        ("plain.qcow2", &["-o", "bogus=1"]),
        ("plain.qcow2", &["-o", "backing_file=base.qcow2"]),
        ("over.qcow2", &["-o", "backing_fmt=raw"]),
        ("plain.qcow2", &["-o", "lazy_refcounts=maybe"]),
        ("plain.qcow2", &["-o", "compat=2"]),
        ("plain.qcow2", &["-o", "refcount_bits=3"]),
        ("plain.qcow2", &["-o", "refcount_bits=128"]),
        ("plain.qcow2", &["-o", "refcount_bits=x"]),
        ("plain.qcow2", &["-o", "compat=0.10,refcount_bits=8"]),
        ("v2.qcow2", &["-o", "refcount_bits=8"]),
        ("v2.qcow2", &["-o", "lazy_refcounts=on"]),
        ("plain.qcow2", &["-o", "compat=0.10,lazy_refcounts=on"]),
        (
            "plain.qcow2",
            &["-o", "compat=0.10", "-o", "lazy_refcounts=on"],
        ),
        ("plain.qcow2", &["-o", "data_file=x.raw"]),
        ("plain.qcow2", &["-o", "data_file_raw=on"]),
        ("plain.qcow2", &["-o", "encrypt.new-secret=sec0"]),
        ("plain.qcow2", &["-o", "size=1000"]),
        ("plain.qcow2", &["-o", "size=abc"]),
        ("plain.qcow2", &["-o", ","]),
        ("plain.qcow2", &[]),
        ("ext.qcow2", &["-o", "compat=0.10"]),
        ("zstdc.qcow2", &["-o", "compat=0.10"]),
        ("r8.qcow2", &["-o", "compat=0.10"]),
        ("ext-data.qcow2", &["-o", "compat=0.10"]),
        ("ext-data.qcow2", &["-o", "data_file_raw=on"]),
        ("q.qed", &["-o", "compat=0.10"]),
        ("q.qed", &["-o", "help"]),
        ("r.raw", &["-f", "raw", "-o", "compat=0.10"]),
        ("r.raw", &["-o", "help"]),
    ] {
        assert_amends_like_qemu(&fx, image, args);
    }
    // qemu-img downgrades an image with bitmaps and leaves them behind,
    // inconsistent and leaked; qimg refuses and changes nothing.
    let before = fx.read("bm.qcow2");
    let out = fx.qimg(&["amend", "-o", "compat=0.10", "bm.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("persistent bitmaps"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fx.read("bm.qcow2"), before);
    // Other changes keep the bitmaps, as with qemu-img.
    assert_amends_like_qemu(&fx, "bm.qcow2", &["-o", "lazy_refcounts=on"]);
    // No file at all.
    let (q, m) = (
        fx.qemu_img(&["amend", "-o", "help"]),
        fx.qimg(&["amend", "-o", "help"]),
    );
    assert_eq!(m.status.code(), q.status.code());
    assert_eq!(sentences(&m), sentences(&q));
}

/// `-o help` lists the options qemu-img's does, with the same names and
/// types, under the same header, on stdout (qimg opens no encrypted
/// image, so qemu-img's `encrypt.*` lines are not listed).
#[test]
fn help_lists_qemu_img_options() {
    let fx = Fixture::new();
    images(&fx);
    let heads = |o: &Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| !l.trim_start().starts_with("encrypt."))
            .map(|l| l.split(" - ").next().unwrap().trim_end().to_string())
            .collect()
    };
    for args in [
        &["amend", "-o", "help", "plain.qcow2"][..],
        &["amend", "-f", "qcow2", "-o", "help"],
        &["amend", "-o", "compat=1.1,help", "plain.qcow2"],
        &["amend", "-o", "?", "plain.qcow2"],
    ] {
        let (q, m) = (fx.qemu_img(args), fx.qimg(args));
        assert_eq!(m.status.code(), Some(0), "{args:?}: {}", stderr(&m));
        assert_eq!(q.status.code(), Some(0), "{args:?}");
        assert_eq!(heads(&m), heads(&q), "{args:?}");
        assert!(
            stdout(&m).starts_with("Amend options for 'qcow2':\n"),
            "{args:?}"
        );
    }
}

/// `-p` off a terminal writes qemu-img's percentage lines on stdout: one
/// per step its driver reports (each L1 table of a downgrade, the two
/// steps of an upgrade), also when the amend fails; `-q` silences them.
#[test]
fn progress_lines_as_qemu_img() {
    let fx = Fixture::new();
    images(&fx);
    for (image, opts) in [
        ("snap.qcow2", "compat=0.10"),
        ("plain.qcow2", "compat=0.10"),
        ("v2.qcow2", "compat=1.1"),
        ("plain.qcow2", "lazy_refcounts=on"),
        ("plain.qcow2", "size=8M"),
        ("snap.qcow2", "compat=0.10,size=8M"),
        ("ext.qcow2", "compat=0.10"),
    ] {
        for quiet in [&[][..], &["-q"]] {
            let args = [quiet, &["-p", "-o", opts]].concat();
            let (q, m, _, ours) = both(&fx, image, &args);
            assert_eq!(
                m.status.code(),
                q.status.code(),
                "{image} {args:?}: {}",
                stderr(&m)
            );
            assert_eq!(stdout(&m), stdout(&q), "{image} {args:?}");
            if m.status.success() {
                fx.assert_clean(&ours);
            }
        }
    }
}

/// `-p` with a refcount width change: qemu-img's lines step by about one
/// point per line (its steps differ from qimg's, so the lines in between
/// are not the same), from 0% to a final 100% line.
#[test]
fn refcount_width_progress() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o cluster_size=512 w.qcow2 8M
         qemu-io -c 'write -P 0xa1 0 5M' w.qcow2 >/dev/null");
    let (q, m, theirs, ours) = both(&fx, "w.qcow2", &["-p", "-o", "refcount_bits=64"]);
    assert!(m.status.success(), "{}", stderr(&m));
    assert!(q.status.success(), "{}", stderr(&q));
    let percents = |o: &Output| -> Vec<f64> {
        stdout(o)
            .split('\r')
            .filter_map(|l| {
                l.trim()
                    .strip_prefix('(')?
                    .strip_suffix("/100%)")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let p = percents(&m);
    assert!(p.len() > 10, "{p:?}");
    assert_eq!(&p[..2], [0.0, 0.0]);
    assert_eq!(&p[p.len() - 2..], [100.0, 100.0]);
    assert!(p.windows(2).all(|w| w[1] >= w[0]), "{p:?}");
    assert!(stdout(&m).ends_with("\r\n"));
    assert_eq!(amended_facts(&fx, &ours), amended_facts(&fx, &theirs));
    fx.assert_clean(&ours);
    fx.assert_same("w.qcow2", &ours);
}

/// A dirty image (a writer with lazy refcounts died) has its refcounts
/// rebuilt before it is amended, as qemu-img does when it opens it (it
/// prints the repair on stderr; qimg repairs silently).
#[test]
fn dirty_image_is_repaired_first() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on d.qcow2 4M
         (qemu-io -c 'write -P 0xb1 0 1M' -c 'write -z 2M 64k' -c abort d.qcow2 >/dev/null 2>&1 || true)
         cp d.qcow2 dirty.qcow2");
    let check = fx.qemu_img(&["check", "dirty.qcow2"]);
    assert_eq!(check.status.code(), Some(2), "the fixture is not dirty");
    for opts in ["lazy_refcounts=off", "compat=0.10", "refcount_bits=8"] {
        let (q, m, theirs, ours) = both(&fx, "dirty.qcow2", &["-o", opts]);
        assert_eq!(m.status.code(), q.status.code(), "{opts}: {}", stderr(&m));
        assert!(m.status.success(), "{opts}: {}", stderr(&m));
        assert_eq!(
            amended_facts(&fx, &ours),
            amended_facts(&fx, &theirs),
            "{opts}"
        );
        fx.assert_clean(&ours);
        fx.assert_same(&theirs, &ours);
    }
}

/// A preallocated zero cluster that a snapshot shares: the snapshot must
/// keep its data through a downgrade. (qemu-img 10.0.2 writes zeros into
/// the shared cluster, so the snapshot reads zeros afterwards and `check`
/// reports OFLAG_COPIED errors; qimg gives the active layer a new cluster.)
#[test]
fn downgrade_keeps_snapshots_that_share_zero_clusters() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x81 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 o.qcow2
         qemu-io -c 'write -P 0x82 0 1M' o.qcow2 >/dev/null
         qemu-img snapshot -c s o.qcow2
         qemu-io -c 'write -z 256k 128k' -c 'write -z 2M 64k' o.qcow2 >/dev/null");
    let before = guest(&fx, "o.qcow2", Some("s"));
    let out = fx.qimg(&["amend", "-o", "compat=0.10", "o.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("o.qcow2");
    assert!(
        guest(&fx, "o.qcow2", Some("s")) == before,
        "snapshot changed"
    );
    let v = amended_facts(&fx, "o.qcow2");
    assert_eq!(v["format-specific"]["data"]["compat"], "0.10");
    let now = guest(&fx, "o.qcow2", None);
    assert!(now[256 << 10..384 << 10].iter().all(|&b| b == 0));
    assert!(now[2 << 20..(2 << 20) + (64 << 10)].iter().all(|&b| b == 0));
    assert!(now[(3 << 20)..].iter().all(|&b| b == 0x81));
}

/// The header version of an image file.
fn version(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[4..8].try_into().unwrap())
}

/// Crash safety: an amend cut after any of its writes (with any of the
/// unflushed ones kept) leaves an image that checks clean (leaks at
/// most), has the old or the new version, and shows the guest and every
/// snapshot the same data as before.
#[test]
fn crash_while_amending() {
    let fx = Fixture::new();
    images(&fx);
    fx.sh(
        "qemu-img create -q -f qcow2 -o cluster_size=4k many.qcow2 4M
         qemu-io -c 'write -P 0x91 0 4M' many.qcow2 >/dev/null
         qemu-img snapshot -c s many.qcow2
         qemu-io -c 'write -z 0 3M' many.qcow2 >/dev/null",
    );
    let down = AmendOptions {
        version: Some(2),
        ..Default::default()
    };
    let up = AmendOptions {
        version: Some(3),
        lazy_refcounts: Some(true),
        ..Default::default()
    };
    let lazy_off = AmendOptions {
        lazy_refcounts: Some(false),
        ..Default::default()
    };
    let narrow = AmendOptions {
        refcount_bits: Some(2),
        ..Default::default()
    };
    let wide = AmendOptions {
        refcount_bits: Some(64),
        ..Default::default()
    };
    let cases = [
        ("snap.qcow2", &narrow),
        ("many.qcow2", &wide),
        ("plain.qcow2", &down),
        ("over.qcow2", &down),
        ("snap.qcow2", &down),
        ("many.qcow2", &down),
        ("v2.qcow2", &up),
        ("lazy.qcow2", &lazy_off),
    ];
    for (image, opts) in cases {
        let bytes = fx.read(image);
        let before = guest(&fx, image, None);
        let snaps: Vec<(String, Vec<u8>)> = snapshot_names(&fx, image)
            .into_iter()
            .map(|s| {
                let g = guest(&fx, image, Some(&s));
                (s, g)
            })
            .collect();
        let amend = |crash_after: u64| {
            let fault = Arc::new(FaultStorage::new(
                fx.path(image),
                bytes.clone(),
                crash_after,
            ));
            let img = Qcow2::open_writable(Box::new(fault.clone()), &fx.path(image)).expect("open");
            let result = img.amend(opts, &mut |_, _| {});
            drop(img);
            (fault, result)
        };
        let (fault, result) = amend(u64::MAX);
        result.unwrap_or_else(|e| panic!("{image} {opts:?}: {e}"));
        let total = fault.writes();
        assert!(total >= 1, "{image}: no write");
        let done = fault.after_crash(|_| true);
        let want = opts.version.unwrap_or(version(&bytes));
        assert_eq!(version(&done), want, "{image}: version after the amend");
        for n in 0..total {
            let (fault, _) = amend(n);
            for (pattern, cut) in fault.crash_states(n).into_iter().enumerate() {
                // Keeps the backing file name resolving.
                let name = format!("cut-{image}");
                fx.write(&name, &cut);
                let what =
                    format!("{image} {opts:?}, cut after write {n}/{total} (pattern {pattern})");
                let check = fx.qemu_img(&["check", &name]);
                assert!(
                    matches!(check.status.code(), Some(0) | Some(3)),
                    "{what}: check {:?}\n{}",
                    check.status.code(),
                    stdout(&check)
                );
                let v = version(&cut);
                assert!(v == version(&bytes) || v == want, "{what}: version {v}");
                assert!(
                    guest(&fx, &name, None) == before,
                    "{what}: guest data changed"
                );
                for (s, content) in &snaps {
                    assert!(
                        guest(&fx, &name, Some(s)) == *content,
                        "{what}: snapshot {s} changed"
                    );
                }
            }
        }
    }
}

#[test]
fn an_image_in_use_is_refused() {
    let fx = Fixture::new();
    fx.sh("mkdir d && cd d && qemu-img create -q -f qcow2 top.qcow2 1M");
    let _daemon = Daemon::start(&fx, "d", "top.qcow2");
    let before = fx.read("d/top.qcow2");
    for opts in ["compat=0.10", "lazy_refcounts=on", "refcount_bits=8"] {
        let args = ["amend", "-o", opts, "d/top.qcow2"];
        let (q, m) = (fx.qemu_img(&args), fx.qimg(&args));
        assert_eq!(m.status.code(), q.status.code(), "{opts}");
        // qemu-img's words for the lock, which scripts match.
        let words = "Failed to get \"write\" lock";
        assert!(
            stderr(&q).contains(words),
            "{opts}: qemu-img said {}",
            stderr(&q)
        );
        assert!(stderr(&m).contains(words), "{opts}: {}", stderr(&m));
    }
    assert!(fx.read("d/top.qcow2") == before, "a refused amend wrote");
}

/// oVirt vdsm (oVirt/vdsm, lib/vdsm/storage/qemuimg.py, amend) runs
/// `qemu-img amend -o compat=COMPAT IMAGE` in the image's directory, to
/// upgrade the volumes of an old storage domain (compat 0.10 to 1.1):
/// overlays whose backing names are relative to that directory. It reads
/// nothing but the exit code; vdsm's `info` then expects compat 1.1.
#[test]
fn vdsm_command_line() {
    let fx = Fixture::new();
    fx.sh("mkdir dom && cd dom
         qemu-img create -q -f qcow2 -o compat=0.10 base 4M
         qemu-io -c 'write -P 0xc1 0 4M' base >/dev/null
         qemu-img create -q -f qcow2 -o compat=0.10 -b base -F qcow2 top
         qemu-io -c 'write -P 0xc2 1M 1M' top >/dev/null
         qemu-img convert -O raw top ../before.raw
         cp top top-q");
    let m = fx.run_in("dom", "qimg", &["amend", "-o", "compat=1.1", "top"]);
    let q = fx.run_in("dom", "qemu-img", &["amend", "-o", "compat=1.1", "top-q"]);
    assert_eq!(m.status.code(), q.status.code(), "{}", stderr(&m));
    assert!(m.status.success(), "{}", stderr(&m));
    fx.assert_clean("dom/top");
    assert_eq!(
        amended_facts(&fx, "dom/top"),
        amended_facts(&fx, "dom/top-q")
    );
    assert_eq!(
        amended_facts(&fx, "dom/top")["format-specific"]["data"]["compat"],
        "1.1"
    );
    fx.assert_same("before.raw", "dom/top");
    // And back, as vdsm's compat 0.10 domains need.
    let m = fx.run_in("dom", "qimg", &["amend", "-o", "compat=0.10", "top"]);
    assert!(m.status.success(), "{}", stderr(&m));
    fx.assert_clean("dom/top");
    fx.assert_same("before.raw", "dom/top");
}

/// A version 2 snapshot written without extra data (as old QEMU wrote
/// them): the upgrade rewrites the snapshot table with the VM state size
/// and disk size version 3 requires, in the header write that switches
/// the version; qemu-img's upgrade gives the same `info`. Cut after every
/// write, the image keeps its data and its snapshot.
#[test]
fn upgrade_completes_old_snapshot_entries() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o compat=0.10 old.qcow2 4M
         qemu-io -c 'write -P 0xd1 0 2M' old.qcow2 >/dev/null
         qemu-img snapshot -c s old.qcow2
         qemu-io -c 'write -P 0xd2 1M 64k' old.qcow2 >/dev/null");
    let (l1, l1_size) = first_snapshot_l1(&fx, "old.qcow2");
    replace_snapshot_table(
        &fx,
        "old.qcow2",
        &[snapshot_entry(l1, l1_size, &[], "1", 1)],
    );
    fx.assert_clean("old.qcow2");
    assert_amends_like_qemu(&fx, "old.qcow2", &["-o", "compat=1.1"]);
    let before = guest(&fx, "old.qcow2", None);
    let snap = guest(&fx, "old.qcow2", Some("n"));
    let bytes = fx.read("old.qcow2");
    let up = AmendOptions {
        version: Some(3),
        ..Default::default()
    };
    let amend = |crash_after: u64| {
        let fault = Arc::new(FaultStorage::new(
            fx.path("old.qcow2"),
            bytes.clone(),
            crash_after,
        ));
        let img =
            Qcow2::open_writable(Box::new(fault.clone()), &fx.path("old.qcow2")).expect("open");
        let result = img.amend(&up, &mut |_, _| {});
        drop(img);
        (fault, result)
    };
    let (fault, result) = amend(u64::MAX);
    result.expect("amend");
    let total = fault.writes();
    assert!(total >= 2, "{total} writes: the table was not rewritten");
    for n in 0..total {
        let (fault, _) = amend(n);
        for keep in [true, false] {
            fx.write("cut.qcow2", &fault.after_crash(|_| keep));
            let check = fx.qemu_img(&["check", "cut.qcow2"]);
            assert!(
                matches!(check.status.code(), Some(0) | Some(3)),
                "cut after {n}/{total}: check {:?}\n{}",
                check.status.code(),
                stdout(&check)
            );
            assert!(
                guest(&fx, "cut.qcow2", None) == before,
                "cut after {n}: guest"
            );
            assert!(
                guest(&fx, "cut.qcow2", Some("n")) == snap,
                "cut after {n}: snapshot"
            );
        }
    }
}

/// `--image-opts` names the image by an option string, as qemu-img takes it.
#[test]
fn image_opts() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 4M
         qemu-io -c 'write -P 0xe1 0 1M' -c 'write -z 1M 1M' a.qcow2 >/dev/null
         cp a.qcow2 b.qcow2");
    let args = |f: &str| {
        vec![
            "amend".to_string(),
            "--image-opts".into(),
            "-o".into(),
            "compat=0.10".into(),
            format!("driver=qcow2,file.filename={f}"),
        ]
    };
    let run = |qemu: bool, f: &str| {
        let a = args(f);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        if qemu {
            fx.qemu_img(&a)
        } else {
            fx.qimg(&a)
        }
    };
    let (q, m) = (run(true, "a.qcow2"), run(false, "b.qcow2"));
    assert!(q.status.success() && m.status.success(), "{}", stderr(&m));
    assert_eq!(amended_facts(&fx, "b.qcow2"), amended_facts(&fx, "a.qcow2"));
    fx.assert_clean("b.qcow2");
    fx.assert_same("a.qcow2", "b.qcow2");
}
