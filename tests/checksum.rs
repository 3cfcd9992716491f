//! `qimg checksum` and `convert --checksum`: digests equal to blksum's
//! (the committed vectors in checksum_vectors.txt), the same digest for one
//! guest content in every format and layout, whatever the thread count,
//! and one clear line for bad input.

mod common;

use common::{stderr, stdout, Fixture, Rng};
use std::io::{Seek, SeekFrom, Write};

/// The reference digests made with blksum (see the file's header).
const VECTORS: &str = include_str!("checksum_vectors.txt");

/// `len` bytes from the generator seeded with `seed` (little-endian words).
fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A sparse raw file of `size` bytes holding `ranges` (offset, bytes); the
/// rest are holes.
fn sparse_raw(path: &std::path::Path, size: u64, ranges: &[(u64, Vec<u8>)]) {
    let mut f = std::fs::File::create(path).expect("create raw input");
    for (at, bytes) in ranges {
        f.seek(SeekFrom::Start(*at)).expect("seek");
        f.write_all(bytes).expect("write");
    }
    f.set_len(size).expect("set length");
}

const MIB: u64 = 1 << 20;

/// The vector inputs by name, as sparse raw files (size, ranges).
fn vector_input(name: &str) -> (u64, Vec<(u64, Vec<u8>)>) {
    match name {
        "empty" => (0, vec![]),
        "zero-1m" => (MIB, vec![]),
        "zero-1m-written" => (MIB, vec![(0, vec![0; MIB as usize])]),
        "first-byte" => (MIB, vec![(0, vec![1])]),
        "last-byte" => (MIB, vec![(MIB - 1, vec![1])]),
        "unaligned" => (200_000, vec![(0, random(1, 200_000))]),
        "half" => (
            4 * MIB,
            (0..8)
                .map(|i| (i * MIB / 2, random(2 + i, (MIB / 4) as usize)))
                .collect(),
        ),
        "random" => (3 * MIB, vec![(0, random(3, 3 * MIB as usize))]),
        other => panic!("no vector input named {other}"),
    }
}

/// The vectors: (input, algorithm, digest).
fn vectors() -> Vec<(&'static str, &'static str, &'static str)> {
    VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "a vector line is INPUT ALGORITHM DIGEST: {l}");
            (f[0], f[1], f[2])
        })
        .collect()
}

fn digest_of(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.qimg(args);
    assert!(out.status.success(), "qimg {args:?}: {}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().next().unwrap_or_default();
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The digests equal blksum's. With QIMG_VECTOR_INPUTS=DIR the inputs are
/// written to DIR (to make the vectors again with blksum).
#[test]
fn digests_equal_blksums_vectors() {
    let fx = Fixture::new();
    let dir = std::env::var_os("QIMG_VECTOR_INPUTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fx.dir().to_path_buf());
    std::fs::create_dir_all(&dir).expect("input directory");
    let vectors = vectors();
    assert!(vectors.len() >= 20, "the vectors file lost lines");
    let names: std::collections::BTreeSet<&str> = vectors.iter().map(|v| v.0).collect();
    for name in names {
        let (size, ranges) = vector_input(name);
        sparse_raw(&dir.join(format!("{name}.raw")), size, &ranges);
    }
    let mut wrong = Vec::new();
    for (name, algorithm, want) in vectors {
        let file = dir.join(format!("{name}.raw"));
        let path = file.to_str().expect("utf-8 path");
        let got = digest_of(&fx, &["checksum", "-f", "raw", "-a", algorithm, path]);
        if got != want {
            wrong.push(format!("{name} {algorithm}: got {got}, blksum {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "digests unlike blksum's:\n{}",
        wrong.join("\n")
    );
}

/// One guest content: random data at the start, a short run at an
/// unaligned offset, zeros written as data, one byte at the very end; a
/// size VHD's geometry keeps (16 MiB rounded up to whole CHS cylinders).
const SIZE: u64 = 16_781_312;

fn mixed_content(fx: &Fixture) {
    sparse_raw(
        &fx.path("src.raw"),
        SIZE,
        &[
            (0, random(10, MIB as usize)),
            (3 * MIB + 4096, random(11, 100_000)),
            (5 * MIB, vec![0; MIB as usize]),
            (SIZE - 1, vec![0xa5]),
        ],
    );
}

#[test]
fn one_content_has_one_digest_in_every_format_and_layout() {
    let fx = Fixture::new();
    mixed_content(&fx);
    let want = digest_of(&fx, &["checksum", "src.raw"]);
    // The same content made by qemu-img in every format qimg writes (and
    // qcow2 compressed both ways, and as a backing chain), then by qimg.
    fx.sh("qemu-img convert -f raw -O qcow2 src.raw plain.qcow2
         qemu-img convert -f raw -O qcow2 -c -o compression_type=zlib src.raw zlib.qcow2
         qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd src.raw zstd.qcow2
         qemu-img convert -f raw -O qed src.raw disk.qed
         qemu-img convert -f raw -O vpc src.raw dynamic.vhd
         qemu-img convert -f raw -O vpc -o subformat=fixed src.raw fixed.vhd
         qemu-img convert -f raw -O qcow2 -o cluster_size=4096 src.raw small.qcow2
         # A chain: the base lacks the unaligned run and has junk where the
         # top writes zeros; the top brings both back.
         cp src.raw base.raw
         qemu-io -f raw -c 'write -P 0 3M 2M' -c 'write -P 0x77 5M 64k' base.raw >/dev/null
         qemu-img convert -f raw -O qcow2 base.raw base.qcow2
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-img rebase -q -f qcow2 -b src.raw -F raw -u top.qcow2
         qemu-img rebase -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
    // (A fixed VHD has no header at its start: it is named, not probed.)
    let mut images = vec![
        ("plain.qcow2", "qcow2"),
        ("zlib.qcow2", "qcow2"),
        ("zstd.qcow2", "qcow2"),
        ("disk.qed", "qed"),
        ("dynamic.vhd", "vpc"),
        ("fixed.vhd", "vpc"),
        ("small.qcow2", "qcow2"),
        ("top.qcow2", "qcow2"),
    ];
    for (name, format, args) in [
        ("qimg.qcow2", "qcow2", vec![]),
        ("qimg-c.qcow2", "qcow2", vec!["-c"]),
        (
            "qimg-zstd.qcow2",
            "qcow2",
            vec!["-c", "-o", "compression_type=zstd"],
        ),
        ("qimg.qed", "qed", vec![]),
        ("qimg.vhd", "vpc", vec![]),
        ("qimg-fixed.vhd", "vpc", vec!["-o", "subformat=fixed"]),
        ("qimg-full.raw", "raw", vec!["-S", "0"]),
    ] {
        let mut a = vec!["convert", "-f", "raw", "-O", format];
        a.extend(args);
        a.extend(["src.raw", name]);
        let out = fx.qimg(&a);
        assert!(out.status.success(), "qimg {a:?}: {}", stderr(&out));
        images.push((name, format));
    }
    for (image, format) in images {
        let out = fx.qemu_img(&["compare", "-f", "raw", "-F", format, "src.raw", image]);
        assert!(
            out.status.success(),
            "qemu-img compare {image}: {}",
            stdout(&out)
        );
        let got = digest_of(&fx, &["checksum", "-f", format, image]);
        assert_eq!(got, want, "{image}");
    }
    // The top's own file differs from the chain's content: checksum reads
    // through the chain, and changing the guest content changes the digest.
    fx.sh("qemu-io -f qcow2 -c 'write -P 0x55 8M 1' top.qcow2 >/dev/null");
    assert_ne!(digest_of(&fx, &["checksum", "top.qcow2"]), want);
}

#[test]
fn thread_count_does_not_change_the_digest() {
    let fx = Fixture::new();
    mixed_content(&fx);
    fx.sh("qemu-img convert -f raw -O qcow2 -c src.raw c.qcow2");
    for image in ["src.raw", "c.qcow2"] {
        let one = digest_of(&fx, &["checksum", "-m", "1", image]);
        for n in ["2", "7"] {
            assert_eq!(
                digest_of(&fx, &["checksum", "-m", n, image]),
                one,
                "{image} -m {n}"
            );
        }
    }
    let one = digest_of(
        &fx,
        &[
            "convert",
            "-m",
            "1",
            "--checksum",
            "-O",
            "qcow2",
            "src.raw",
            "1.qcow2",
        ],
    );
    let many = digest_of(
        &fx,
        &[
            "convert",
            "-m",
            "8",
            "--checksum",
            "-O",
            "qcow2",
            "src.raw",
            "8.qcow2",
        ],
    );
    assert_eq!(one, many);
}

#[test]
fn convert_checksum_is_the_checksum_of_the_result() {
    let fx = Fixture::new();
    mixed_content(&fx);
    fx.sh("qemu-img convert -f raw -O qcow2 src.raw src.qcow2
         head -c 1000000 src.raw > short.raw
         truncate -s 1000448 short.raw");
    for (algorithm, args) in [
        ("sha256", vec!["-O", "qcow2"]),
        ("sha256", vec!["-O", "qcow2", "-c"]),
        ("blake3", vec!["-O", "raw"]),
        ("sha512", vec!["-O", "qed"]),
        ("sha256", vec!["-O", "vpc"]),
        ("sha1", vec!["-O", "qcow2", "-S", "0"]),
    ] {
        let flag = format!("--checksum={algorithm}");
        let target = format!("out-{}-{}.img", algorithm, args.len());
        let mut a = vec!["convert", flag.as_str()];
        a.extend(args.iter().copied());
        a.extend(["src.qcow2", target.as_str()]);
        let out = fx.qimg(&a);
        assert!(out.status.success(), "qimg {a:?}: {}", stderr(&out));
        let line = stdout(&out);
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        let (digest, name) = line.trim_end().split_once("  ").expect("DIGEST  FILE");
        assert_eq!(name, target);
        let of_result = digest_of(&fx, &["checksum", "-a", algorithm, &target]);
        assert_eq!(digest, of_result, "{a:?}");
        let of_source = digest_of(&fx, &["checksum", "-a", algorithm, "src.raw"]);
        assert_eq!(digest, of_source, "{a:?}");
    }
    // Concatenated sources hash as one stream (the second does not start
    // on a block boundary).
    // Compressed, the clusters the concatenation boundaries cut are copied
    // in a second pass: their parts arrive last and are added in order.
    for (target, format) in [("cat.raw", "raw"), ("cat.qcow2", "qcow2")] {
        let mut a = vec!["convert", "--checksum", "-O", format];
        if format == "qcow2" {
            a.push("-c");
        }
        a.extend(["short.raw", "src.raw", "short.raw", target]);
        let out = fx.qimg(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        let cat = digest_of(&fx, &["checksum", target]);
        assert_eq!(
            stdout(&out).split_whitespace().next(),
            Some(cat.as_str()),
            "{a:?}"
        );
    }
    fx.sh("cat short.raw src.raw short.raw > joined.raw");
    let joined = digest_of(&fx, &["checksum", "joined.raw"]);
    assert_eq!(digest_of(&fx, &["checksum", "cat.qcow2"]), joined);
    // -B copies only the top layer: refused in one line.
    let out = fx.qimg(&[
        "convert",
        "--checksum",
        "-O",
        "qcow2",
        "-B",
        "src.raw",
        "-F",
        "raw",
        "src.qcow2",
        "b.qcow2",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--checksum cannot be used with -B"), "{err}");
}

#[test]
fn output_is_blksums_lines_or_json_for_several_files() {
    let fx = Fixture::new();
    sparse_raw(&fx.path("a.raw"), MIB, &[(0, random(5, 1000))]);
    fx.sh("qemu-img convert -f raw -O qcow2 a.raw b.qcow2 && truncate -s 1M z.raw");
    let out = fx.qimg(&["checksum", "a.raw", "b.qcow2", "z.raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let re = regex::Regex::new(r"^[0-9a-f]{64}  (a\.raw|b\.qcow2|z\.raw)$").unwrap();
    for line in &lines {
        assert!(re.is_match(line), "{line}");
    }
    assert_eq!(lines[0][..64], lines[1][..64]);
    assert_ne!(lines[0][..64], lines[2][..64]);
    let out = fx.qimg(&[
        "checksum",
        "--output=json",
        "-a",
        "sha512",
        "a.raw",
        "z.raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["filename"], "a.raw");
    assert_eq!(list[0]["algorithm"], "sha512");
    assert_eq!(list[0]["block-size"], 65536);
    assert_eq!(list[0]["checksum"].as_str().map(str::len), Some(128));
    // -p reports progress on stderr, the digest stays alone on stdout.
    let out = fx.qimg(&["checksum", "--progress=json", "a.raw"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("{}\n", lines[0]));
    common::assert_json_progress(&out, "checksum");
}

#[test]
fn bad_input_is_one_clear_line() {
    let fx = Fixture::new();
    fx.sh("truncate -s 1M ok.raw && printf 'QFI\\xfb' > bad.qcow2 && truncate -s 4096 bad.qcow2");
    // A missing file: its line, and the other file is still hashed.
    let out = fx.qimg(&["checksum", "missing.qcow2", "ok.raw"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("missing.qcow2") && err.contains("No such file"),
        "{err}"
    );
    assert!(stdout(&out).ends_with("  ok.raw\n"), "{}", stdout(&out));
    // A broken image.
    let out = fx.qimg(&["checksum", "-f", "qcow2", "bad.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.qcow2"), "{err}");
    // blksum's benchmarking digest (no digest at all), and a made-up one.
    for algorithm in ["null", "crc32"] {
        let out = fx.qimg(&["checksum", "-a", algorithm, "ok.raw"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("unsupported checksum algorithm '{algorithm}'")),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
    for (flag, words) in [
        ("--block-size=3", "invalid block size 3"),
        ("--parallel=0", "invalid number of threads 0"),
        ("--checksum=nope", "unsupported checksum algorithm 'nope'"),
    ] {
        let args: Vec<&str> = if flag.starts_with("--checksum") {
            vec!["convert", flag, "-O", "raw", "ok.raw", "o.raw"]
        } else {
            vec!["checksum", flag, "ok.raw"]
        };
        let out = fx.qimg(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(words), "{err}");
    }
    assert!(
        !fx.path("o.raw").exists(),
        "a refused convert created its target"
    );
}

#[test]
fn a_cancel_stops_the_checksum_between_pieces() {
    use qimg::engine::blkhash::{Algorithm, Config};
    use qimg::ops::checksum::{checksum, ChecksumOutcome, ChecksumRequest};
    static CANCEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw big.raw 96M && qemu-io -f raw -c 'write -P 0x5a 0 96M' big.raw >/dev/null");
    let request = ChecksumRequest {
        file: fx.path("big.raw"),
        format: None,
        config: Config::new(Algorithm::Sha256, 64 << 10),
        threads: 2,
    };
    // As SIGINT does through the same flag, once 8 MiB are hashed.
    let control = common::cancel_after(&CANCEL, 8 << 20);
    let outcome = checksum(&request, &control).expect("checksum");
    assert!(
        matches!(outcome, ChecksumOutcome::Stopped(_)),
        "{outcome:?}"
    );
    assert!(
        control.progress().done < 32 << 20,
        "it went on past the cancel"
    );
    // Without the cancel, the digest is the one the command prints.
    CANCEL.store(false, std::sync::atomic::Ordering::SeqCst);
    let outcome = checksum(&request, &qimg::engine::control::Control::default()).unwrap();
    let ChecksumOutcome::Digest(md) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(md.to_hex(), digest_of(&fx, &["checksum", "big.raw"]));
}
