//! `qimg compare` against `qemu-img compare` on the same pairs of images:
//! the same stdout (verdict, offset of the first difference, size warning)
//! and exit code, in normal and strict mode.

mod common;

use common::{stderr, Fixture, Rng};

/// Runs `compare ARGS` with both tools and asserts they agree.
fn assert_compares_like_qemu(fx: &Fixture, args: &[&str]) {
    common::assert_same_answer(fx, &[&["compare"], args].concat());
}

fn images(fx: &Fixture) -> Vec<&'static str> {
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 4M
         qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 64k' a.qcow2 >/dev/null
         qemu-img convert -O raw a.qcow2 a.raw
         qemu-img convert -O raw -S 0 a.qcow2 full.raw
         qemu-img convert -O qed a.qcow2 a.qed
         qemu-img convert -c -O qcow2 a.qcow2 c.qcow2
         qemu-img convert -O qcow2 -o extended_l2=on,cluster_size=16k a.qcow2 e.qcow2
         cp a.raw diff.raw
         printf 'x' | dd of=diff.raw bs=1 seek=700001 conv=notrunc status=none
         cp a.raw long.raw && truncate -s 5M long.raw
         cp long.raw longdirty.raw
         printf 'y' | dd of=longdirty.raw bs=1 seek=$((4*1024*1024+777)) conv=notrunc status=none
         qemu-img create -q -f raw short.raw 3M
         qemu-io -f raw -c 'write -P 1 0 1M' short.raw >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -z 1M 3M' top.qcow2 >/dev/null
         qemu-img create -q -f qcow2 z.qcow2 4M
         qemu-io -c 'write -z 0 1M' z.qcow2 >/dev/null
         qemu-img create -q -f raw zr.raw 4M");
    vec![
        "a.qcow2",
        "a.raw",
        "full.raw",
        "a.qed",
        "c.qcow2",
        "e.qcow2",
        "diff.raw",
        "long.raw",
        "longdirty.raw",
        "short.raw",
        "top.qcow2",
        "z.qcow2",
        "zr.raw",
    ]
}

#[test]
fn every_pair_compares_like_qemu_img() {
    let fx = Fixture::new();
    let all = images(&fx);
    for a in &all {
        for b in &all {
            assert_compares_like_qemu(&fx, &[a, b]);
            assert_compares_like_qemu(&fx, &["-s", a, b]);
        }
    }
    assert_compares_like_qemu(&fx, &["-q", "a.qcow2", "diff.raw"]);
    assert_compares_like_qemu(&fx, &["-f", "qcow2", "-F", "raw", "a.qcow2", "a.raw"]);
    // Errors exit 2.
    let out = fx.qimg(&["compare", "a.qcow2", "missing.qcow2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_compares_like_qemu(&fx, &["-f", "qed", "a.qcow2", "a.raw"]);
}

#[test]
fn the_first_difference_is_found_whatever_the_layout() {
    // Two copies of a 16 MiB disk with differences at random places: the
    // offset reported is qemu-img's (the first differing sector), though
    // qimg compares pieces in parallel.
    let fx = Fixture::new();
    let mut rng = Rng(0xc0ffee);
    let mut disk = vec![0u8; 16 << 20];
    for chunk in disk.chunks_mut(64 << 10) {
        if rng.below(3) > 0 {
            for b in chunk.iter_mut() {
                *b = rng.next() as u8;
            }
        }
    }
    fx.write("one.raw", &disk);
    fx.sh("qemu-img convert -f raw -O qcow2 one.raw one.qcow2");
    for round in 0..6 {
        let mut other = disk.clone();
        for _ in 0..=round {
            let at = rng.below(other.len() as u64) as usize;
            other[at] ^= 0x5a;
        }
        fx.write("other.raw", &other);
        fx.sh("qemu-img convert -f raw -O qcow2 -o cluster_size=4k other.raw other.qcow2");
        assert_compares_like_qemu(&fx, &["one.qcow2", "other.qcow2"]);
        assert_compares_like_qemu(&fx, &["-f", "raw", "-F", "qcow2", "one.raw", "other.qcow2"]);
    }
}
