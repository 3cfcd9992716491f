//! `qimg create` against `qemu-img create`: each image is made twice, by
//! each tool in its own directory under the same name, and then compared:
//! the `Formatting` line, `qemu-img check` (clean), `qemu-img info` (equal
//! but for the disk usage) and, where qemu-img's layout is deterministic,
//! the bytes of the file.

mod common;

use common::{stderr, stdout, Fixture};
use std::process::Command;

/// Runs `program args` in `dir` of the fixture.
fn run_in(fx: &Fixture, dir: &str, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(fx.path(dir))
        .output()
        .expect("run")
}

fn qimg_in(fx: &Fixture, dir: &str, args: &[&str]) -> std::process::Output {
    run_in(
        fx,
        dir,
        assert_cmd::cargo::cargo_bin("qimg").to_str().unwrap(),
        args,
    )
}

/// A fixture with directories `q` (qemu-img's) and `m` (qimg's), each
/// holding the same 64 MiB qcow2 `base.qcow2` to use as a backing file.
fn twins() -> Fixture {
    let fx = Fixture::new();
    fx.sh("mkdir q m
         qemu-img create -q -f qcow2 q/base.qcow2 64M
         cp q/base.qcow2 m/base.qcow2");
    fx
}

/// `qemu-img info` without the disk usage, and without the file length
/// unless `with_file_length` (qimg's layout may be more compact than
/// qemu-img's when it preallocates).
fn info_without_disk_usage(fx: &Fixture, dir: &str, file: &str, with_file_length: bool) -> String {
    let out = run_in(fx, dir, "qemu-img", &["info", "--output=json", "-U", file]);
    assert!(
        out.status.success(),
        "qemu-img info {dir}/{file}: {}",
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .filter(|l| !l.contains("\"actual-size\""))
        .filter(|l| with_file_length || !l.starts_with("                \"virtual-size\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates `file` with `args` by both tools and compares the results.
fn assert_creates_like_qemu(fx: &Fixture, args: &[&str], file: &str, same_bytes: bool) {
    let theirs = run_in(fx, "q", "qemu-img", args);
    let ours = qimg_in(fx, "m", args);
    assert!(
        theirs.status.success(),
        "qemu-img {args:?}: {}",
        stderr(&theirs)
    );
    assert!(ours.status.success(), "qimg {args:?}: {}", stderr(&ours));
    assert_eq!(
        stdout(&ours),
        stdout(&theirs),
        "Formatting line of {args:?}"
    );
    let check = run_in(fx, "m", "qemu-img", &["check", file]);
    let is_raw = args.windows(2).any(|w| w == ["-f", "raw"]) || !args.contains(&"-f");
    // With -u the backing file may not exist, and qemu-img check opens it.
    if !is_raw && !args.contains(&"-u") {
        assert!(
            check.status.success(),
            "qemu-img check of qimg's {args:?}: {}{}",
            stdout(&check),
            stderr(&check)
        );
    }
    assert_eq!(
        info_without_disk_usage(fx, "m", file, same_bytes),
        info_without_disk_usage(fx, "q", file, same_bytes),
        "qemu-img info of {args:?}"
    );
    // An external data file is sized as qemu-img sizes it.
    let data_file = args
        .iter()
        .flat_map(|a| a.split(','))
        .find_map(|o| o.strip_prefix("data_file="));
    if let Some(data) = data_file {
        let len = |dir: &str| {
            std::fs::metadata(fx.path(dir).join(data))
                .map(|m| m.len())
                .ok()
        };
        assert_eq!(len("m"), len("q"), "length of {data} after {args:?}");
    }
    if same_bytes {
        let a = std::fs::read(fx.path("q").join(file)).unwrap();
        let b = std::fs::read(fx.path("m").join(file)).unwrap();
        assert!(a == b, "{args:?}: qimg's file differs from qemu-img's");
    }
}

#[test]
fn qcow2_option_matrix() {
    let fx = twins();
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("compat=0.10", true),
        ("compat=v2", true),
        ("compat=v3", true),
        ("cluster_size=512", true),
        ("cluster_size=2M", true),
        ("cluster_size=4k,refcount_bits=1", true),
        ("refcount_bits=2", true),
        ("refcount_bits=64", true),
        ("refcount_bits=8,lazy_refcounts=on", true),
        ("extended_l2=on", true),
        ("extended_l2=on,cluster_size=16k", true),
        ("compression_type=zstd", true),
        ("preallocation=off", true),
        ("preallocation=metadata", true),
        // qemu-img grows its refcount table as it goes: a longer file.
        ("preallocation=metadata,cluster_size=512", false),
        ("preallocation=metadata,extended_l2=on", true),
        ("preallocation=falloc", false),
        ("preallocation=full,cluster_size=4k", false),
        ("data_file=data.raw", true),
        ("data_file=data.raw,data_file_raw=on", true),
        ("data_file=data.raw,preallocation=off", true),
        ("data_file=data.raw,preallocation=metadata", true),
    ];
    for (opts, same_bytes) in cases {
        let mut args = vec!["create", "-f", "qcow2"];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend(["img.qcow2", "100M"]);
        assert_creates_like_qemu(&fx, &args, "img.qcow2", *same_bytes);
    }
}

#[test]
fn sizes_backing_files_and_odd_sizes() {
    let fx = twins();
    let cases: [&[&str]; 7] = [
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "img.qcow2",
        ],
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "img.qcow2",
            "1G",
        ],
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "raw",
            "img.qcow2",
        ],
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "missing.qcow2",
            "-F",
            "qcow2",
            "img.qcow2",
            "5M",
        ],
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "backing_file=base.qcow2,backing_fmt=qcow2,size=1.5M",
            "img.qcow2",
        ],
        &["create", "-f", "qcow2", "img.qcow2", "1000"],
        &["create", "-f", "qcow2", "img.qcow2", "0"],
    ];
    for args in cases {
        assert_creates_like_qemu(&fx, args, "img.qcow2", true);
    }
}

#[test]
fn qed_and_raw() {
    let fx = twins();
    let cases: [(&[&str], &str, bool); 8] = [
        (&["create", "-f", "qed", "img.qed", "1G"], "img.qed", true),
        (
            &[
                "create",
                "-f",
                "qed",
                "-o",
                "cluster_size=4k,table_size=2",
                "img.qed",
                "100M",
            ],
            "img.qed",
            true,
        ),
        (
            &[
                "create",
                "-f",
                "qed",
                "-o",
                "table_size=16",
                "img.qed",
                "1000",
            ],
            "img.qed",
            true,
        ),
        (
            &[
                "create",
                "-f",
                "qed",
                "-b",
                "base.qcow2",
                "-F",
                "qcow2",
                "img.qed",
            ],
            "img.qed",
            true,
        ),
        (
            &[
                "create",
                "-f",
                "qed",
                "-b",
                "base.qcow2",
                "-F",
                "raw",
                "img.qed",
            ],
            "img.qed",
            true,
        ),
        (&["create", "-f", "raw", "img.raw", "1000"], "img.raw", true),
        (&["create", "img.raw", "10M"], "img.raw", true),
        (
            &[
                "create",
                "-f",
                "raw",
                "-o",
                "preallocation=full",
                "img.raw",
                "1M",
            ],
            "img.raw",
            true,
        ),
    ];
    for (args, file, same) in cases {
        assert_creates_like_qemu(&fx, args, file, same);
    }
}

#[test]
fn an_existing_file_is_overwritten() {
    let fx = twins();
    fx.write("m/img.qcow2", &vec![0xaa; 1 << 20]);
    let ours = qimg_in(
        &fx,
        "m",
        &["create", "-q", "-f", "qcow2", "img.qcow2", "1M"],
    );
    assert!(ours.status.success());
    assert!(stdout(&ours).is_empty(), "-q prints nothing");
    let check = run_in(&fx, "m", "qemu-img", &["check", "img.qcow2"]);
    assert!(check.status.success(), "{}", stdout(&check));
}

/// Bad combinations get qemu-img's message (on one line) and exit 1.
#[test]
fn invalid_options_are_refused_like_qemu_img() {
    let fx = twins();
    let cases: [&[&str]; 16] = [
        &["-o", "cluster_size=3000"],
        &["-o", "cluster_size=256"],
        &["-o", "cluster_size=4M"],
        &["-o", "refcount_bits=3"],
        &["-o", "refcount_bits=128"],
        &["-o", "compat=0.10,refcount_bits=8"],
        &["-o", "compat=0.10,lazy_refcounts=on"],
        &["-o", "compat=0.10,compression_type=zstd"],
        &["-o", "compat=0.10,extended_l2=on"],
        &["-o", "extended_l2=on,cluster_size=4k"],
        &["-o", "foo=bar"],
        &["-o", "data_file_raw=on"],
        &["-o", "size=2M"],
        &["-o", "compat=1.2"],
        &["-o", "preallocation=xx"],
        &["-o", "compression_type=lz4"],
    ];
    for opts in cases {
        let mut args = vec!["create", "-f", "qcow2"];
        args.extend(opts);
        args.extend(["bad.qcow2", "1M"]);
        let theirs = run_in(&fx, "q", "qemu-img", &args);
        let ours = qimg_in(&fx, "m", &args);
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
        assert_eq!(theirs.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&ours), stdout(&theirs), "{args:?}");
        assert_eq!(
            stderr(&ours).replacen("qimg: ", "", 1),
            stderr(&theirs).replacen("qemu-img: ", "", 1),
            "{args:?}"
        );
    }
    for (args, needle) in [
        (
            &["create", "-f", "qed", "-o", "table_size=3", "bad.qed", "1M"][..],
            "QED table size",
        ),
        (
            &[
                "create",
                "-f",
                "qed",
                "-o",
                "cluster_size=1k",
                "bad.qed",
                "1M",
            ],
            "QED cluster size",
        ),
        (
            &[
                "create",
                "-f",
                "raw",
                "-o",
                "cluster_size=4k",
                "bad.raw",
                "1M",
            ],
            "Invalid parameter 'cluster_size'",
        ),
        (
            &["create", "-f", "qcow2", "bad.qcow2"],
            "Image creation needs a size parameter",
        ),
        (
            &["create", "-f", "qcow2", "-b", "base.qcow2", "bad.qcow2"],
            "without backing format (detected qcow2; add -F qcow2)",
        ),
        (
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "nothere",
                "-F",
                "qcow2",
                "bad.qcow2",
            ],
            "Could not open backing image 'nothere': No such file or directory",
        ),
        (
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "encrypt.format=luks",
                "bad.qcow2",
                "1M",
            ],
            // qemu-img's sentence for an encrypted image without its secret.
            "Parameter 'encrypt.key-secret' is required for cipher",
        ),
        (
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=512",
                "bad.qcow2",
                "1P",
            ],
            "too large for file format 'qcow2'",
        ),
    ] {
        let ours = qimg_in(&fx, "m", args);
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
        let err = stderr(&ours);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Decoding cluster 0 of a qemu-img image and encoding it again gives back
/// the same bytes: extensions in QEMU's order, the feature table when QEMU
/// writes one, the backing name after the end marker.
#[test]
fn header_encoding_reproduces_qemu_img() {
    use qimg::format::qcow2::header::Header;
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-img create -q -f qcow2 a.qcow2 1M
         qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 b.qcow2
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 c.qcow2
         qemu-img create -q -f qcow2 -o cluster_size=4k,compression_type=zstd -b base.qcow2 -F raw d.qcow2
         qemu-img create -q -f qcow2 -o data_file=d.raw,data_file_raw=on,extended_l2=on e.qcow2 1M
         qemu-img create -q -f qcow2 -o cluster_size=512 f.qcow2 1M
         qemu-img create -q -f qcow2 g.qcow2 1M
         qemu-img snapshot -c s g.qcow2
         qemu-img bitmap --add g.qcow2 bm",
    );
    for name in [
        "a.qcow2", "b.qcow2", "c.qcow2", "d.qcow2", "e.qcow2", "f.qcow2", "g.qcow2",
    ] {
        let bytes = fx.read(name);
        let header = Header::parse(&bytes).expect("parses");
        let cluster0 = &bytes[..header.cluster_size() as usize];
        let encoded = header.encode().expect("encodes");
        assert!(
            encoded == cluster0,
            "{name}: encoding differs from qemu-img's cluster 0"
        );
    }
}
