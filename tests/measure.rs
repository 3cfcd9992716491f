//! `qimg measure` against `qemu-img measure` on a matrix of sources and
//! target options: the same JSON and human output, exit codes and errors.

mod common;

use common::{stderr, Fixture};

/// Runs `measure ARGS` with both tools and asserts the same exit code and
/// stdout (and, for errors, qemu-img's sentence in qimg's line).
fn assert_measures_like_qemu(fx: &Fixture, args: &[&str]) {
    let (q, m) = common::assert_same_answer(fx, &[&["measure"], args].concat());
    if !q.status.success() {
        let theirs = stderr(&q);
        let sentence = theirs
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("qemu-img: ");
        assert!(
            stderr(&m).contains(sentence),
            "{args:?}: qemu-img said {theirs:?}, qimg {:?}",
            stderr(&m)
        );
    }
}

fn sources(fx: &Fixture) -> Vec<&'static str> {
    fx.sh(
        "qemu-img create -q -f qcow2 empty.qcow2 64M
         qemu-img create -q -f qcow2 half.qcow2 64M
         qemu-io -c 'write -P 1 0 32M' -c 'write -z 40M 1M' -c 'write -P 2 50M 100k' half.qcow2 >/dev/null
         qemu-img create -q -f qcow2 full.qcow2 64M
         qemu-io -c 'write -P 3 0 64M' full.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k odd.qcow2 10000k
         qemu-io -c 'write -P 4 4k 4k' -c 'write -P 5 9000k 512' odd.qcow2 >/dev/null
         qemu-img create -q -f qcow2 snap.qcow2 64M
         qemu-io -c 'write -P 6 0 8M' snap.qcow2 >/dev/null
         qemu-img snapshot -c s1 snap.qcow2
         qemu-io -c 'write -P 7 8M 8M' snap.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b half.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 8 60M 1M' top.qcow2 >/dev/null
         qemu-img convert -O raw half.qcow2 half.raw
         qemu-img convert -O qed half.qcow2 half.qed",
    );
    vec![
        "empty.qcow2",
        "half.qcow2",
        "full.qcow2",
        "odd.qcow2",
        "snap.qcow2",
        "top.qcow2",
        "half.raw",
        "half.qed",
    ]
}

#[test]
fn measure_matrix_matches_qemu_img() {
    let fx = Fixture::new();
    let targets: &[&[&str]] = &[
        &["-O", "qcow2"],
        &["-O", "qcow2", "-o", "cluster_size=512"],
        &["-O", "qcow2", "-o", "cluster_size=2M"],
        &["-O", "qcow2", "-o", "refcount_bits=1"],
        &["-O", "qcow2", "-o", "refcount_bits=64"],
        &["-O", "qcow2", "-o", "extended_l2=on"],
        &["-O", "qcow2", "-o", "extended_l2=on,cluster_size=32k"],
        &["-O", "qcow2", "-o", "preallocation=metadata"],
        &["-O", "qcow2", "-o", "preallocation=full"],
        &["-O", "qcow2", "-o", "compat=0.10"],
        &["-O", "raw"],
        &[],
    ];
    for source in sources(&fx) {
        for target in targets {
            for output in ["--output=json", "--output=human"] {
                let mut args = vec![output];
                args.extend(*target);
                args.push(source);
                assert_measures_like_qemu(&fx, &args);
            }
        }
    }
    // A snapshot with -l.
    assert_measures_like_qemu(
        &fx,
        &["--output=json", "-O", "qcow2", "-l", "s1", "snap.qcow2"],
    );
    // --size alone.
    for size in ["1G", "100G", "1000k", "0"] {
        for target in targets {
            let mut args = vec!["--output=json", "--size", size];
            args.extend(*target);
            assert_measures_like_qemu(&fx, &args);
        }
    }
}

#[test]
fn measure_errors_match_qemu_img() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 1M");
    for args in [
        &["--size", "1G", "a.qcow2"][..],
        &["-O", "qcow2"],
        &["-O", "qed", "a.qcow2"],
        &["-O", "qcow2", "-o", "cluster_size=3k", "a.qcow2"],
        &["-O", "qcow2", "-o", "foo=1", "a.qcow2"],
        &["-O", "qcow2", "-o", "refcount_bits=3", "--size", "1G"],
    ] {
        assert_measures_like_qemu(&fx, args);
    }
}
