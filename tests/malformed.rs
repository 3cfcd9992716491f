//! Bad input is a first-class case: every malformed image gives exit 1, one
//! clear `qimg: ...` line on stderr, no panic, no large allocation (qimg runs
//! under a 256 MiB address-space limit and a 20 s wall-clock limit here),
//! and the file is left unchanged.
//!
//! The resource bounds against header claims are driven here: absurd
//! `l1_size` (beyond QEMU's limit, and within it but past the end of the
//! file), refcount table size, `nb_snapshots` and snapshot extra data, the
//! VMDK grain directory and grain table counts, compressed grain lengths.
//! The NBD client's bounds on reply lengths are driven by a fake server in
//! src/io/nbd/tests.rs, and the QMP and HTTP parsers by fuzz/.

mod common;

use common::{stderr, stdout, Fixture};
use std::process::{Command, Output};

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

/// Asserts that `args` fails cleanly, naming `needle` in a single line, and
/// that `file` is unchanged.
fn assert_clean_failure(fx: &Fixture, args: &[&str], file: &str, needle: &str) {
    let before = fx.read(file);
    let out = qimg_limited(fx, args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "`qimg {}`: exit {:?}, stderr: {err}",
        args.join(" "),
        out.status
    );
    assert!(
        !err.contains("panicked"),
        "`qimg {}` panicked: {err}",
        args.join(" ")
    );
    assert_eq!(
        err.lines().count(),
        1,
        "`qimg {}`: not one line: {err}",
        args.join(" ")
    );
    assert!(
        err.starts_with("qimg: "),
        "`qimg {}`: {err}",
        args.join(" ")
    );
    assert!(
        err.contains(needle),
        "`qimg {}`: expected {needle:?} in: {err}",
        args.join(" ")
    );
    assert!(
        fx.read(file) == before,
        "`qimg {}` changed {file}",
        args.join(" ")
    );
}

/// The three read commands must all fail on an image that cannot be opened.
fn assert_unopenable(fx: &Fixture, file: &str, needle: &str) {
    assert_clean_failure(fx, &["info", file], file, needle);
    assert_clean_failure(
        fx,
        &["info", "--output=json", "--backing-chain", file],
        file,
        needle,
    );
    assert_clean_failure(fx, &["map", "--output=json", file], file, needle);
}

/// A change made to a good image to break it.
type Patch = fn(&mut Vec<u8>);

fn be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}
fn be64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}
fn le32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn le64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A 1 MiB qcow2 v3 image with 128 KiB of data. Layout: header 0, refcount
/// table 0x10000, refcount block 0x20000, L1 0x30000, L2 0x40000, data 0x50000.
fn good_qcow2(fx: &Fixture) -> Vec<u8> {
    fx.sh("qemu-img create -q -f qcow2 good.qcow2 1M
         qemu-io -c 'write -P 1 0 128k' good.qcow2 >/dev/null");
    fx.read("good.qcow2")
}

/// Writes a patched copy of `base` and checks every read command fails on it.
fn patched_qcow2(
    fx: &Fixture,
    base: &[u8],
    name: &str,
    needle: &str,
    patch: impl FnOnce(&mut Vec<u8>),
) {
    let mut b = base.to_vec();
    patch(&mut b);
    fx.write(name, &b);
    assert_unopenable(fx, name, needle);
}

#[test]
fn qcow2_bad_headers() {
    let fx = Fixture::new();
    let good = good_qcow2(&fx);
    patched_qcow2(&fx, &good, "trunc50.qcow2", "truncated", |b| b.truncate(50));
    patched_qcow2(&fx, &good, "trunc8.qcow2", "truncated", |b| b.truncate(8));
    patched_qcow2(&fx, &good, "trunc100.qcow2", "truncated", |b| {
        b.truncate(100)
    });
    patched_qcow2(&fx, &good, "version4.qcow2", "version 4", |b| be32(b, 4, 4));
    patched_qcow2(&fx, &good, "qcow1.qcow2", "'qcow' is not supported", |b| {
        be32(b, 4, 1)
    });
    patched_qcow2(&fx, &good, "bits8.qcow2", "2^8", |b| be32(b, 20, 8));
    patched_qcow2(&fx, &good, "bits22.qcow2", "2^22", |b| be32(b, 20, 22));
    patched_qcow2(&fx, &good, "l1huge.qcow2", "L1 table too large", |b| {
        be32(b, 36, 0x7fff_ffff)
    });
    // 4 Mi entries (32 MiB) is within QEMU's limit, but a table that long
    // cannot be in this file: refused before anything is read.
    patched_qcow2(
        &fx,
        &good,
        "l1long.qcow2",
        "past the end of the file",
        |b| be32(b, 36, 4 << 20),
    );
    patched_qcow2(
        &fx,
        &good,
        "rthuge.qcow2",
        "reference count table too large",
        |b| be32(b, 56, 0x00ff_ffff),
    );
    patched_qcow2(&fx, &good, "l1small.qcow2", "L1 table is too small", |b| {
        be32(b, 36, 0)
    });
    patched_qcow2(
        &fx,
        &good,
        "l1past.qcow2",
        "past the end of the file",
        |b| be64(b, 40, 0x1000_0000),
    );
    patched_qcow2(
        &fx,
        &good,
        "l1unaligned.qcow2",
        "L1 table offset invalid",
        |b| be64(b, 40, 0x30008),
    );
    patched_qcow2(
        &fx,
        &good,
        "rtpast.qcow2",
        "past the end of the file",
        |b| be64(b, 48, 0x1000_0000),
    );
    patched_qcow2(&fx, &good, "rtnone.qcow2", "reference count table", |b| {
        be32(b, 56, 0)
    });
    patched_qcow2(&fx, &good, "hl113.qcow2", "header_length", |b| {
        be32(b, 100, 113)
    });
    patched_qcow2(&fx, &good, "hl108.qcow2", "multiple of 8", |b| {
        be32(b, 100, 108)
    });
    patched_qcow2(&fx, &good, "hlbig.qcow2", "exceeds cluster size", |b| {
        be32(b, 100, 0x20000)
    });
    patched_qcow2(&fx, &good, "rcorder.qcow2", "64 bits", |b| be32(b, 96, 7));
    patched_qcow2(&fx, &good, "backname.qcow2", "inside cluster 0", |b| {
        be64(b, 8, 65530);
        be32(b, 16, 100);
    });
    patched_qcow2(&fx, &good, "backlong.qcow2", "inside cluster 0", |b| {
        be64(b, 8, 1024);
        be32(b, 16, 2000);
    });
    patched_qcow2(&fx, &good, "incompat9.qcow2", "bit 9", |b| {
        be64(b, 72, 1 << 9)
    });
    patched_qcow2(&fx, &good, "incompat40.qcow2", "bit 40", |b| {
        be64(b, 72, 1 << 40)
    });
    patched_qcow2(&fx, &good, "ctype.qcow2", "Compression type", |b| {
        be64(b, 72, 1 << 3)
    });
    patched_qcow2(&fx, &good, "aes.qcow2", "AES", |b| be32(b, 32, 1));
    patched_qcow2(&fx, &good, "crypt7.qcow2", "encryption method 7", |b| {
        be32(b, 32, 7)
    });
    patched_qcow2(&fx, &good, "snappast.qcow2", "snapshot table", |b| {
        be32(b, 60, 1);
        be64(b, 64, 0x1000_0000);
    });
    // The snapshot table pointed at the data cluster: its bytes announce
    // 0x01010101 bytes of extra data.
    patched_qcow2(
        &fx,
        &good,
        "snapextra.qcow2",
        "Too much extra metadata",
        |b| {
            be32(b, 60, 1);
            be64(b, 64, 0x50000);
        },
    );
    patched_qcow2(&fx, &good, "snapmany.qcow2", "too many snapshots", |b| {
        be32(b, 60, 100_000);
        be64(b, 64, 0x50000);
    });
}

#[test]
fn qcow2_wrong_magic_with_explicit_format() {
    let fx = Fixture::new();
    let mut b = good_qcow2(&fx);
    b[3] = 0xfa;
    fx.write("magic.qcow2", &b);
    assert_clean_failure(
        &fx,
        &["info", "-f", "qcow2", "magic.qcow2"],
        "magic.qcow2",
        "Image is not in qcow2 format",
    );
    assert_clean_failure(
        &fx,
        &["map", "-f", "qed", "magic.qcow2"],
        "magic.qcow2",
        "Image not in QED format",
    );
}

/// Corrupt tables that `info` does not read but `map` and reads do.
#[test]
fn qcow2_bad_tables_fail_on_map() {
    let fx = Fixture::new();
    let good = good_qcow2(&fx);
    let cases: [(&str, &str, Patch); 3] = [
        ("l2past.qcow2", "past the end of the file", |b| {
            be64(b, 0x30000, 0x8000_0000_1000_0000)
        }),
        ("l2unaligned.qcow2", "unaligned host cluster", |b| {
            be64(b, 0x40000, 0x8000_0000_0005_0200)
        }),
        (
            "l2intoheader.qcow2",
            "L2 table (L1 index 0) offset invalid",
            |b| be64(b, 0x30000, 0x8000_0000_0000_0000 | 0x200),
        ),
    ];
    for (name, needle, patch) in cases {
        let mut b = good.clone();
        patch(&mut b);
        fx.write(name, &b);
        assert_clean_failure(&fx, &["map", "--output=json", name], name, needle);
        assert_clean_failure(&fx, &["map", name], name, needle);
    }
}

#[test]
fn qcow2_zero_flag_in_v2_and_invalid_subcluster_bitmap() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
         qemu-io -c 'write -P 1 0 64k' v2.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on xl.qcow2 1M
         qemu-io -c 'write -P 1 0 4k' xl.qcow2 >/dev/null");
    let mut v2 = fx.read("v2.qcow2");
    be64(&mut v2, 0x40000, 1);
    fx.write("v2.qcow2", &v2);
    assert_clean_failure(&fx, &["map", "v2.qcow2"], "v2.qcow2", "version 2 image");
    let mut xl = fx.read("xl.qcow2");
    // Subcluster 0 both allocated and zero.
    be64(&mut xl, 0x40008, 0x0000_0001_0000_0001);
    fx.write("xl.qcow2", &xl);
    assert_clean_failure(
        &fx,
        &["map", "--output=json", "xl.qcow2"],
        "xl.qcow2",
        "invalid subcluster bitmap",
    );
}

#[test]
fn an_encrypted_image_without_its_secret_is_refused_but_by_info() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 --object secret,id=s0,data=pw \
            -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 enc.qcow2 1M");
    let needle = "Parameter 'encrypt.key-secret' is required for cipher";
    assert_clean_failure(
        &fx,
        &["map", "--output=json", "enc.qcow2"],
        "enc.qcow2",
        needle,
    );
    assert_clean_failure(
        &fx,
        &["convert", "-O", "raw", "enc.qcow2", "x.raw"],
        "enc.qcow2",
        needle,
    );
    assert!(!fx.path("x.raw").exists(), "a target was created");
    let out = qimg_limited(&fx, &["info", "enc.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("encrypted: yes"), "{}", stdout(&out));
}

#[test]
fn compressed_cluster_with_garbage_is_an_error_not_a_panic() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 0x41 0 1M' src.raw >/dev/null
         qemu-img convert -c -O qcow2 src.raw c.qcow2");
    let mut b = fx.read("c.qcow2");
    // Compressed data starts in the cluster after the L2 table (0x50000).
    b[0x50000..0x50100].fill(0xff);
    fx.write("c.qcow2", &b);
    let chain = qimg::chain::Chain::open(&fx.path("c.qcow2"), None).expect("opens");
    let mut buf = vec![0u8; 65536];
    let err = chain
        .view()
        .read(0, &mut buf)
        .expect_err("garbage must not decompress");
    assert_eq!(err.kind(), qimg::error::ErrorKind::Corrupt, "{err}");
}

fn good_qed(fx: &Fixture) -> Vec<u8> {
    fx.sh("qemu-img create -q -f qed good.qed 1M && qemu-io -f qed -c 'write -P 1 0 64k' good.qed >/dev/null");
    fx.read("good.qed")
}

#[test]
fn qed_bad_headers() {
    let fx = Fixture::new();
    let good = good_qed(&fx);
    let cases: [(&str, &str, Patch); 7] = [
        ("trunc.qed", "truncated", |b| b.truncate(30)),
        ("cluster.qed", "cluster size", |b| le32(b, 4, 1000)),
        ("table.qed", "table size", |b| le32(b, 8, 3)),
        ("feature.qed", "Unsupported QED features", |b| {
            le64(b, 16, 1 << 8)
        }),
        ("l1past.qed", "does not lie inside the file", |b| {
            le64(b, 40, 0x1000_0000)
        }),
        ("size.qed", "image size", |b| le64(b, 48, u64::MAX / 2)),
        ("backname.qed", "outside the header", |b| {
            le64(b, 16, 1);
            le32(b, 56, 65000);
            le32(b, 60, 1000);
        }),
    ];
    for (name, needle, patch) in cases {
        let mut b = good.clone();
        patch(&mut b);
        fx.write(name, &b);
        assert_unopenable(&fx, name, needle);
    }
    // An L2 entry pointing past the end of the file.
    let mut b = good.clone();
    let l2 = u64::from_le_bytes(b[0x10000..0x10008].try_into().unwrap()) as usize;
    le64(&mut b, l2, 0x1000_0000);
    fx.write("l2entry.qed", &b);
    assert_clean_failure(
        &fx,
        &["map", "l2entry.qed"],
        "l2entry.qed",
        "not a valid cluster offset",
    );
}

#[test]
fn backing_loops_are_named() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -u -b b.qcow2 -F qcow2 a.qcow2 1M
         qemu-img create -q -f qcow2 -u -b a.qcow2 -F qcow2 b.qcow2 1M
         qemu-img create -q -f qcow2 -u -b abcd.qcow2 -F qcow2 self.qcow2 1M",
    );
    // qemu-img refuses to name an image its own backing file; patch the name.
    let mut b = fx.read("self.qcow2");
    let pos = b
        .windows(10)
        .position(|w| w == b"abcd.qcow2")
        .expect("backing name");
    b[pos..pos + 10].copy_from_slice(b"self.qcow2");
    fx.write("self.qcow2", &b);
    for args in [
        &["map", "a.qcow2"][..],
        &["info", "--backing-chain", "a.qcow2"],
    ] {
        assert_clean_failure(
            &fx,
            args,
            "a.qcow2",
            "backing chain loop: a.qcow2 -> b.qcow2 -> a.qcow2",
        );
    }
    assert_clean_failure(
        &fx,
        &["map", "self.qcow2"],
        "self.qcow2",
        "backing chain loop: self.qcow2 -> self.qcow2",
    );
    // info without --backing-chain does not open the backing file, as qemu-img.
    assert!(fx.qimg(&["info", "a.qcow2"]).status.success());
}

#[test]
fn chains_deeper_than_64_are_refused() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 l0.qcow2 1M
         for i in $(seq 1 70); do qemu-img create -q -f qcow2 -u -b l$((i-1)).qcow2 -F qcow2 l$i.qcow2 1M; done",
    );
    assert_clean_failure(&fx, &["map", "l70.qcow2"], "l70.qcow2", "deeper than 64");
    // 64 images in all is still fine.
    assert!(fx.qimg(&["map", "l63.qcow2"]).status.success());
}

#[test]
fn missing_files_and_raw_probing() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2 orphan.qcow2 1M
         qemu-img create -q -f raw base.raw 1M
         qemu-img create -q -f qcow2 -b base.raw -F raw noformat.qcow2",
    );
    // Remove the recorded backing format: the extension type becomes unknown.
    let mut b = fx.read("noformat.qcow2");
    let pos = b
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("extension");
    b[pos..pos + 4].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    fx.write("noformat.qcow2", &b);
    assert_clean_failure(
        &fx,
        &["map", "orphan.qcow2"],
        "orphan.qcow2",
        "could not open backing file 'gone.qcow2'",
    );
    assert_clean_failure(
        &fx,
        &["map", "noformat.qcow2"],
        "noformat.qcow2",
        "probing it would guess raw",
    );
    let out = fx.qimg(&["info", "nonexistent.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stderr(&out).contains("nonexistent.qcow2"));
    std::fs::create_dir(fx.path("dir.qcow2")).unwrap();
    let out = fx.qimg(&["map", "dir.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

/// A qcow2 v3 image whose header holds the backing-format extension twice
/// (first `qcow2`, then `raw`), the backing file name after them.
fn qcow2_with_two_backing_formats(fx: &Fixture, name: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f raw base.raw 1M
         qemu-io -f raw -c 'write -P 0x5a 0 64k' base.raw >/dev/null
         qemu-img create -q -f qcow2 -b base.raw -F raw {name}"
    ));
    let mut b = fx.read(name);
    let header_len = u32::from_be_bytes(b[100..104].try_into().unwrap()) as usize;
    let ext = |kind: u32, data: &[u8]| {
        let mut e = kind.to_be_bytes().to_vec();
        e.extend((data.len() as u32).to_be_bytes());
        e.extend(data);
        e.resize(8 + data.len().div_ceil(8) * 8, 0);
        e
    };
    let mut area = ext(0xe279_2aca, b"qcow2");
    area.extend(ext(0xe279_2aca, b"raw"));
    area.extend([0u8; 8]);
    let name_at = header_len + area.len();
    area.extend(b"base.raw");
    b[header_len..header_len + 4096 - header_len].fill(0);
    b[header_len..header_len + area.len()].copy_from_slice(&area);
    be64(&mut b, 8, name_at as u64);
    be32(&mut b, 16, 8);
    fx.write(name, &b);
}

/// qemu opens an image with a duplicated header extension (the last one
/// wins) and rewrites it cleanly; qimg refused it even in `rebase -u`.
#[test]
fn duplicated_header_extension_the_last_one_wins() {
    let fx = Fixture::new();
    qcow2_with_two_backing_formats(&fx, "dup.qcow2");
    let info = |program: &str| {
        let out = if program == "qimg" {
            fx.qimg(&["info", "--output=json", "dup.qcow2"])
        } else {
            fx.qemu_img(&["info", "--output=json", "dup.qcow2"])
        };
        assert!(out.status.success(), "{program} info: {}", stderr(&out));
        stdout(&out)
    };
    let theirs = info("qemu-img");
    assert!(
        theirs.contains(r#""backing-filename-format": "raw""#),
        "{theirs}"
    );
    assert_eq!(info("qimg"), theirs);
    let check = fx.qimg(&["check", "dup.qcow2"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    fx.assert_same("dup.qcow2", "base.raw");
    // rebase -u rewrites the header with one extension of each kind.
    let out = fx.qimg(&["rebase", "-u", "-b", "base.raw", "-F", "raw", "dup.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = fx.read("dup.qcow2");
    let count = b[..4096]
        .windows(4)
        .filter(|w| *w == 0xe279_2acau32.to_be_bytes())
        .count();
    assert_eq!(count, 1, "backing-format extensions after rebase -u");
    fx.assert_clean("dup.qcow2");
    fx.assert_same("dup.qcow2", "base.raw");
}

/// An unknown incompatible feature bit is refused with qemu-img's sentence
/// (the feature table's name for it, or the mask), then the bit number.
#[test]
fn unknown_incompatible_features_get_qemu_img_words() {
    let fx = Fixture::new();
    let mut plain = good_qcow2(&fx);
    be64(&mut plain, 72, 1 << 40);
    fx.write("unnamed.qcow2", &plain);
    // The feature table names incompatible bit 0 "dirty bit": renumber
    // that entry to bit 40.
    let mut named = plain.clone();
    let entry = named
        .windows(11)
        .position(|w| w == b"\0\0dirty bit")
        .expect("feature table entry for the dirty bit");
    named[entry + 1] = 40;
    fx.write("named.qcow2", &named);
    for image in ["unnamed.qcow2", "named.qcow2"] {
        let theirs = stderr(&fx.qemu_img(&["info", image]));
        let sentence = theirs
            .split_once("': ")
            .map(|(_, s)| s.trim_end().to_string())
            .expect("qemu-img's error");
        let ours = stderr(&fx.qimg(&["info", image]));
        assert!(
            ours.contains(&sentence) && ours.contains("(bit 40)"),
            "{image}: qemu-img says {sentence:?}, qimg {ours:?}"
        );
    }
}

/// A 5 MiB monolithicSparse VMDK with one grain written. qemu-img's
/// layout: header 0, descriptor 1-20, redundant GD 21, GD at sector 26
/// (offset 56 of the header), GT at 27, first grain at 128 (64 KiB).
fn good_vmdk(fx: &Fixture) -> Vec<u8> {
    fx.sh("qemu-img create -q -f vmdk good.vmdk 5M && qemu-io -f vmdk -c 'write -P 1 0 64k' good.vmdk >/dev/null");
    fx.read("good.vmdk")
}

#[test]
fn vmdk_bad_sparse_headers() {
    let fx = Fixture::new();
    let base = good_vmdk(&fx);
    let cases: &[(&str, &str, Patch)] = &[
        (
            "trunc.vmdk",
            "File truncated, expecting at least 65536 bytes",
            |b| b.truncate(1000),
        ),
        ("short.vmdk", "File truncated", |b| b.truncate(8)),
        ("version.vmdk", "Unsupported VMDK version 4", |b| {
            le32(b, 4, 4)
        }),
        ("grain.vmdk", "Invalid granularity", |b| {
            le64(b, 20, 1 << 40)
        }),
        ("grain0.vmdk", "L1 entry size is invalid", |b| {
            le64(b, 20, 0)
        }),
        ("gtes.vmdk", "L2 table size too big", |b| {
            le32(b, 44, 1 << 30)
        }),
        ("capacity.vmdk", "too large", |b| le64(b, 12, 1 << 62)),
        ("gd.vmdk", "grain directory", |b| le64(b, 56, 1 << 50)),
        ("gd0.vmdk", "grain directory", |b| le64(b, 56, 0)),
        ("overhead.vmdk", "File truncated", |b| {
            le64(b, 64, u64::MAX / 256)
        }),
        ("compress.vmdk", "compression algorithm 7", |b| {
            le32(b, 8, 0x30003);
            b[77] = 7;
        }),
        // Grain 1 sector, one entry per table: a directory of 2^33 entries.
        ("hugegd.vmdk", "grain directory", |b| {
            le64(b, 12, 1 << 33);
            le64(b, 20, 1);
            le32(b, 44, 1);
        }),
        ("cid.vmdk", "invalid CID", |b| {
            let at = 512 + b[512..1024].windows(4).position(|w| w == b"CID=").unwrap();
            b[at + 4] = b'z';
        }),
        ("stream.vmdk", "Invalid footer", |b| {
            // A stream whose directory is at the end, without a footer.
            le64(b, 56, u64::MAX);
            b[77] = 1;
            le32(b, 8, 0x30001);
            le32(b, 4, 3);
        }),
    ];
    for (name, needle, patch) in cases {
        let mut b = base.clone();
        patch(&mut b);
        fx.write(name, &b);
        assert_unopenable(&fx, name, needle);
    }
    // Explicitly given as vmdk, a file that is none.
    fx.write("raw.img", &[0x55; 4096]);
    assert_clean_failure(
        &fx,
        &["info", "-f", "vmdk", "raw.img"],
        "raw.img",
        "invalid VMDK image descriptor",
    );
}

#[test]
fn vmdk_bad_tables_and_grains_fail_on_read() {
    let fx = Fixture::new();
    let base = good_vmdk(&fx);
    // The GD entry of table 0 far past the end of the file.
    let mut b = base.clone();
    le32(&mut b, 26 * 512, 0x00ff_ffff);
    fx.write("gt.vmdk", &b);
    assert_clean_failure(
        &fx,
        &["map", "--output=json", "gt.vmdk"],
        "gt.vmdk",
        "grain table 0",
    );
    // A grain entry past the end: check reports it, as qemu-img does.
    let mut b = base.clone();
    le32(&mut b, 27 * 512 + 8, 0x10_0000);
    fx.write("gte.vmdk", &b);
    let out = qimg_limited(&fx, &["check", "gte.vmdk"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("ERROR: cluster offset for sector 256 points after EOF"),
        "{err}"
    );
    assert!(err.contains("Check failed"), "{err}");
    // Compressed grains with an absurd length or garbage for data.
    fx.sh("qemu-img create -q -f raw s.raw 1M && qemu-io -f raw -c 'write -P 0x41 0 1M' s.raw >/dev/null && \
           qemu-img convert -O vmdk -o subformat=streamOptimized s.raw s.vmdk");
    let stream = fx.read("s.vmdk");
    let gt = u32::from_le_bytes(stream[26 * 512..26 * 512 + 4].try_into().unwrap()) as usize;
    let grain =
        u32::from_le_bytes(stream[gt * 512..gt * 512 + 4].try_into().unwrap()) as usize * 512;
    let mut b = stream.clone();
    le32(&mut b, grain + 8, 0x7fff_ffff);
    fx.write("len.vmdk", &b);
    assert_clean_failure(
        &fx,
        &["convert", "-O", "raw", "len.vmdk", "out.raw"],
        "len.vmdk",
        "invalid compressed grain",
    );
    let mut b = stream;
    b[grain + 12..grain + 200].fill(0xff);
    fx.write("zlib.vmdk", &b);
    assert_clean_failure(
        &fx,
        &["convert", "-O", "raw", "zlib.vmdk", "out.raw"],
        "zlib.vmdk",
        "does not inflate",
    );
}

#[test]
fn vmdk_bad_descriptors() {
    let fx = Fixture::new();
    fx.sh("truncate -s 1M a.raw && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse sp.vmdk 1M");
    let head = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n";
    let many: String = (0..5000).map(|_| "RW 1 FLAT \"a.raw\" 0\n").collect();
    let big = format!(
        "version=1\ncreateType=\"monolithicFlat\"\n{}",
        "#".repeat(2 << 20)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("notype.vmdk", "RW 2048 FLAT \"a.raw\" 0\n".into(), "invalid VMDK image descriptor"),
        ("custom.vmdk", "createType=\"custom\"\n".into(), "Unsupported image type 'custom'"),
        (
            "mono.vmdk",
            "createType=\"monolithicSparse\"\n".into(),
            "Unsupported image type 'monolithicSparse'",
        ),
        (
            "nooffset.vmdk",
            "createType=\"monolithicFlat\"\nRW 2048 FLAT \"a.raw\"\n".into(),
            "Invalid extent line: RW 2048 FLAT \"a.raw\"",
        ),
        (
            "sectors.vmdk",
            "createType=\"monolithicFlat\"\nRW 99999999999999999999 FLAT \"a.raw\" 0\n".into(),
            "Invalid extent line",
        ),
        (
            "sum.vmdk",
            "createType=\"monolithicFlat\"\nRW 18014398509481983 FLAT \"a.raw\" 0\nRW 18014398509481983 FLAT \"a.raw\" 0\n".into(),
            "more than 2^63 bytes",
        ),
        (
            "unquoted.vmdk",
            "createType=\"monolithicFlat\"\nRW 2048 FLAT a.raw 0\n".into(),
            "Invalid extent line",
        ),
        (
            "kind.vmdk",
            "createType=\"monolithicFlat\"\nRW 2048 SESPARSE \"a.raw\"\n".into(),
            "SESPARSE",
        ),
        (
            "missing.vmdk",
            "createType=\"monolithicFlat\"\nRW 2048 FLAT \"missing.raw\" 0\n".into(),
            "Could not open 'missing.raw'",
        ),
        (
            "notsparse.vmdk",
            "createType=\"twoGbMaxExtentSparse\"\nRW 2048 SPARSE \"a.raw\"\n".into(),
            "not a VMDK sparse extent",
        ),
        (
            // A sparse extent that is itself a descriptor: no nesting.
            "nested.vmdk",
            "createType=\"twoGbMaxExtentSparse\"\nRW 2048 SPARSE \"sp.vmdk\"\n".into(),
            "not a VMDK sparse extent",
        ),
        (
            "outside.vmdk",
            "createType=\"monolithicFlat\"\nRW 2048 FLAT \"../a.raw\" 0\n".into(),
            "outside the directory",
        ),
        (
            "many.vmdk",
            format!("createType=\"monolithicFlat\"\n{many}"),
            "more than 4096 extents",
        ),
    ];
    for (name, body, needle) in &cases {
        fx.write(name, format!("{head}{body}").as_bytes());
        assert_unopenable(&fx, name, needle);
    }
    fx.write("big.vmdk", big.as_bytes());
    assert_unopenable(&fx, "big.vmdk", "at most 1048576 are read");
}
