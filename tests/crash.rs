//! Crash safety of the qcow2 write path: a run of mixed writes is cut after
//! its N-th write, for many N. The disk then holds what was flushed plus any
//! subset of the later writes. Each such image must pass `qemu-img check`
//! with at most leaks, and every byte not written since the last completed
//! flush must read as it did at that flush.

mod common;

use common::{qed_images_with_a_leak, stderr, stdout, Fixture, Rng};
use qimg::chain::Chain;
use qimg::format::qcow2::Qcow2;
use qimg::format::qed::Qed;
use qimg::format::{Format, GuestRead};
use qimg::io::FaultStorage;
use std::path::Path;
use std::sync::Arc;

/// One guest operation.
#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Zero(u64, u64, bool),
    Discard(u64, u64),
    Flush,
}

fn ops(seed: u64, size: u64, cs: u64, count: usize, discards: bool) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for _ in 0..count {
        let off = rng.below(size);
        let len = (1 + rng.below(2 * cs + 700)).min(size - off);
        out.push(match rng.below(10) {
            0..=4 => {
                let b = rng.next() as u8;
                Op::Write(off, (0..len).map(|i| b.wrapping_add(i as u8)).collect())
            }
            5 | 6 => Op::Zero(off, len, rng.below(2) == 0),
            7 if discards => Op::Discard(off, len),
            _ => Op::Flush,
        });
    }
    out.push(Op::Flush);
    out
}

/// What the guest must see after a crash: the content at the last
/// completed flush, except in the ranges written since.
struct Expectation {
    flushed: Vec<u8>,
    uncertain: Vec<(u64, u64)>,
}

fn run(image: &dyn Format, ops: &[Op], initial: &[u8], cs: u64) -> Expectation {
    let mut model = initial.to_vec();
    let mut e = Expectation {
        flushed: model.clone(),
        uncertain: Vec::new(),
    };
    for op in ops {
        let (result, range) = match op {
            Op::Write(off, data) => (image.write(*off, data), Some((*off, data.len() as u64))),
            Op::Zero(off, len, unmap) => {
                (image.write_zeroes(*off, *len, *unmap), Some((*off, *len)))
            }
            Op::Discard(off, len) => (image.discard(*off, *len), Some((*off, *len))),
            Op::Flush => (image.flush(), None),
        };
        if let Some(r) = range {
            e.uncertain.push(r);
        }
        if result.is_err() {
            break;
        }
        match op {
            Op::Write(off, data) => {
                model[*off as usize..*off as usize + data.len()].copy_from_slice(data)
            }
            Op::Zero(off, len, _) => model[*off as usize..(*off + *len) as usize].fill(0),
            Op::Discard(off, len) => {
                let (a, b) = (off.div_ceil(cs) * cs, (off + len) / cs * cs);
                if a < b {
                    model[a as usize..b as usize].fill(0);
                }
            }
            Op::Flush => {
                e.flushed = model.clone();
                e.uncertain.clear();
            }
        }
    }
    e
}

/// Opens `bytes` (the image file named `name` in `dir`) for writing on a
/// fault-injecting storage that fails after `crash_after` writes.
fn open_faulty(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    crash_after: u64,
    backing: Option<&Arc<dyn GuestRead>>,
) -> (Arc<FaultStorage>, Box<dyn Format>) {
    let fault = Arc::new(FaultStorage::new(
        dir.join(name),
        bytes.to_vec(),
        crash_after,
    ));
    let image: Box<dyn Format> = if name.ends_with(".qed") {
        Box::new(Qed::open_writable(Box::new(fault.clone())).expect("open"))
    } else {
        Box::new(Qcow2::open_writable(Box::new(fault.clone()), &dir.join(name)).expect("open"))
    };
    if let Some(b) = backing {
        image.attach_backing(b.clone());
    }
    (fault, image)
}

fn guest(fx: &Fixture, image: &str) -> Vec<u8> {
    let out = fx.qemu_img(&["convert", "-O", "raw", image, "guest.raw"]);
    assert!(out.status.success(), "qemu-img convert: {}", stderr(&out));
    fx.read("guest.raw")
}

/// Crashes a run of operations on the qcow2 `image` (made in `fx`) at many
/// points and checks every outcome.
fn crash_everywhere(fx: &Fixture, image: &str, seed: u64, count: usize, discards: bool) {
    let bytes = fx.read(image);
    let initial = guest(fx, image);
    let size = initial.len() as u64;
    let info = stdout(&fx.qemu_img(&["info", "--output=json", image]));
    let cs: u64 = info
        .split("\"cluster-size\": ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let backing = Chain::open(&fx.path(image), None)
        .unwrap()
        .layers()
        .get(1)
        .map(|_| {
            let below = Chain::open(&fx.path(image), None).unwrap();
            let path = below.layers()[1].path.clone();
            Chain::open(&path, None).unwrap().reader()
        });
    let ops = ops(seed, size, cs, count, discards);
    let total = {
        let (fault, img) = open_faulty(fx.dir(), image, &bytes, u64::MAX, backing.as_ref());
        run(img.as_ref(), &ops, &initial, cs);
        drop(img);
        fault.writes()
    };
    assert!(total > 10, "{image}: the run made only {total} writes");
    // Every crash point of the run.
    let step = 1;
    let mut keep_rng = Rng(seed ^ 0xfeed);
    for n in (0..=total).step_by(step as usize) {
        let (fault, img) = open_faulty(fx.dir(), image, &bytes, n, backing.as_ref());
        let expect = run(img.as_ref(), &ops, &initial, cs);
        drop(img);
        let pattern = n % 3;
        let crashed = fault.after_crash(|_| match pattern {
            0 => true,
            1 => false,
            _ => keep_rng.below(2) == 0,
        });
        let name = format!("crash-{image}");
        fx.write(&name, &crashed);
        let check = fx.qemu_img(&["check", &name]);
        let code = check.status.code();
        assert!(
            code == Some(0) || code == Some(3),
            "{image}: crash after write {n}/{total} (pattern {pattern}): qemu-img check exit {code:?}\n{}{}",
            stdout(&check),
            stderr(&check)
        );
        let got = guest(fx, &name);
        let mut want = expect.flushed.clone();
        for &(off, len) in &expect.uncertain {
            want[off as usize..(off + len) as usize]
                .copy_from_slice(&got[off as usize..(off + len) as usize]);
        }
        if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
            panic!("{image}: crash after write {n}/{total} (pattern {pattern}): flushed data lost at guest offset {i}");
        }
        if n % (5 * step) == 0 {
            let repair = fx.qimg(&["check", "-r", "all", &name]);
            assert_eq!(
                repair.status.code(),
                Some(0),
                "{image}: qimg check -r all after crash {n}: {}",
                stderr(&repair)
            );
            fx.assert_clean(&name);
        }
    }
}

#[test]
fn crash_plain_v3() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 2M && qemu-io -c 'write -P 1 0 300k' a.qcow2 >/dev/null");
    crash_everywhere(&fx, "a.qcow2", 1, 40, true);
}

#[test]
fn crash_with_refcount_table_growth() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 g.qcow2 3M");
    crash_everywhere(&fx, "g.qcow2", 2, 30, true);
}

#[test]
fn crash_extended_l2_and_v2() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k x.qcow2 2M
         qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 1M",
    );
    crash_everywhere(&fx, "x.qcow2", 3, 40, true);
    crash_everywhere(&fx, "v2.qcow2", 4, 40, true);
}

#[test]
fn crash_over_snapshot_and_compressed_clusters() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o cluster_size=4k s.qcow2 1M
         qemu-io -c 'write -P 3 0 1M' s.qcow2 >/dev/null
         qemu-img snapshot -c snap s.qcow2
         qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 0x41 0 1M' src.raw >/dev/null
         qemu-img convert -c -O qcow2 -o cluster_size=4k src.raw c.qcow2");
    crash_everywhere(&fx, "s.qcow2", 5, 30, true);
    crash_everywhere(&fx, "c.qcow2", 6, 30, true);
}

#[test]
fn crash_overlay_with_backing_file() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 top.qcow2");
    crash_everywhere(&fx, "top.qcow2", 7, 40, true);
}

#[test]
fn crash_qed() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qed -o cluster_size=4k,table_size=2 a.qed 2M
         qemu-img create -q -f qcow2 base.qcow2 1M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qed -o cluster_size=4k -b base.qcow2 -F qcow2 top.qed",
    );
    crash_everywhere(&fx, "a.qed", 8, 40, false);
    crash_everywhere(&fx, "top.qed", 9, 40, false);
}

#[test]
fn crash_lazy_refcounts() {
    // qimg writes lazy-refcount images in the eager order: just as safe.
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k l.qcow2 1M");
    crash_everywhere(&fx, "l.qcow2", 10, 40, true);
}

/// The copy engine writing into a target on a failing storage: every crash
/// leaves a target that qemu-img checks without corruption.
#[test]
fn crash_under_the_copy_engine() {
    use qimg::engine::control::Control;
    use qimg::engine::{copy, CopyOptions};
    use qimg::ops::convert::plan;
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 src.qcow2 2M
         qemu-io -c 'write -P 0x41 0 700k' -c 'write -z 800k 100k' -c 'write -P 7 1M 300k' src.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k t.qcow2 2M",
    );
    let source = Chain::open(&fx.path("src.qcow2"), None).unwrap();
    let view = source.view();
    let steps = plan(&view, 0, false, 4096).unwrap();
    let bytes = fx.read("t.qcow2");
    for compress in [false, true] {
        let options = CopyOptions {
            chunk_size: 64 << 10,
            compress_cluster: compress.then_some(4096),
            target_is_zero: true,
            ..Default::default()
        };
        let total = {
            let (fault, img) = open_faulty(fx.dir(), "t.qcow2", &bytes, u64::MAX, None);
            copy(&view, img.as_ref(), &steps, &options, &Control::default()).unwrap();
            drop(img);
            fault.writes()
        };
        for n in 0..=total {
            let (fault, img) = open_faulty(fx.dir(), "t.qcow2", &bytes, n, None);
            let result = copy(&view, img.as_ref(), &steps, &options, &Control::default());
            drop(img);
            let crashed = fault.after_crash(|i| (i as u64 + n) % 2 == 0);
            fx.write("cut.qcow2", &crashed);
            let code = fx.qemu_img(&["check", "cut.qcow2"]).status.code();
            assert!(
                code == Some(0) || code == Some(3),
                "compress={compress}: crash at {n}/{total}: check {code:?}"
            );
            if result.is_ok() && n >= total {
                fx.assert_same("src.qcow2", "cut.qcow2");
            }
        }
    }
}

/// The copy engine's parallel write path: several writer threads have
/// data writes in flight while the planner allocates clusters and
/// publishes L2 entries, into an overlay (fresh clusters) and into an
/// image whose clusters it owns (rewritten in place), qcow2 and QED. The source's runs
/// start and end inside the targets' 16 KiB clusters, so whole clusters
/// (written by the writer threads) alternate with partial ones (written in
/// order by the planner). Cut after any write,
/// with all, none or every other unflushed write kept, the image checks
/// with leaks at most and every 4 KiB cluster reads either what it read
/// before (the backing file's 0x55, or the old data) or the source's bytes:
/// an L2 entry published before its data would read zeros or garbage.
/// The same again with the data copied by the kernel (`-C`).
#[test]
fn crash_with_parallel_writers_in_flight() {
    use qimg::engine::control::Control;
    use qimg::engine::{copy, CopyOptions};
    use qimg::ops::convert::plan;
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 src.qcow2 2M
         for i in $(seq 0 40); do echo \"write -P $((i + 1)) $((i * 48 + 5))k 30k\"; done | qemu-io src.qcow2 >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 2M
         qemu-io -c 'write -P 0x55 0 2M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=16k -b base.qcow2 -F qcow2 overlay.qcow2
         qemu-img create -q -f qcow2 -o cluster_size=16k owned.qcow2 2M
         qemu-io -c 'write -P 0x66 0 2M' owned.qcow2 >/dev/null
         qemu-img create -q -f qed -o cluster_size=16k -b base.qcow2 -F qcow2 overlay.qed
         qemu-img create -q -f qed -o cluster_size=16k owned.qed 2M
         qemu-io -c 'write -P 0x66 0 2M' owned.qed >/dev/null",
    );
    let source = Chain::open(&fx.path("src.qcow2"), None).unwrap();
    let view = source.view();
    let want = guest(&fx, "src.qcow2");
    let steps = plan(&view, 0, false, 4096).unwrap();
    let images = [
        ("overlay.qcow2", 0x55u8),
        ("owned.qcow2", 0x66u8),
        ("overlay.qed", 0x55u8),
        ("owned.qed", 0x66u8),
    ];
    // With `offload`, the data goes by kernel copies (`-C`), which the
    // fault injector makes of the writes they stand for.
    let cases = [false, true]
        .into_iter()
        .flat_map(|offload| images.into_iter().map(move |i| (offload, i)));
    for (offload, (image, old)) in cases {
        let options = CopyOptions {
            chunk_size: 32 << 10,
            threads: 3,
            offload,
            ..Default::default()
        };
        let mode = if offload { " with -C" } else { "" };
        let bytes = fx.read(image);
        let overlay = image.starts_with("overlay");
        let cut = if image.ends_with(".qed") {
            "cut.qed"
        } else {
            "cut.qcow2"
        };
        let backing: Option<Arc<dyn GuestRead>> =
            overlay.then(|| Chain::open(&fx.path("base.qcow2"), None).unwrap().reader());
        let total = {
            let (fault, img) = open_faulty(fx.dir(), image, &bytes, u64::MAX, backing.as_ref());
            copy(&view, img.as_ref(), &steps, &options, &Control::default()).unwrap();
            drop(img);
            fault.writes()
        };
        assert!(total > 20, "{image}{mode}: only {total} writes");
        for n in 0..=total {
            let (fault, img) = open_faulty(fx.dir(), image, &bytes, n, backing.as_ref());
            let result = copy(&view, img.as_ref(), &steps, &options, &Control::default());
            drop(img);
            for (k, state) in fault.crash_states(n).into_iter().enumerate() {
                fx.write(cut, &state);
                if overlay {
                    fx.sh(&format!(
                        "qemu-img rebase -q -u -b base.qcow2 -F qcow2 {cut}"
                    ));
                }
                let code = fx.qemu_img(&["check", cut]).status.code();
                assert!(
                    code == Some(0) || code == Some(3),
                    "{image}{mode}: crash at {n}/{total}, state {k}: check {code:?}"
                );
                let got = guest(&fx, cut);
                for (c, (g, w)) in got.chunks(4096).zip(want.chunks(4096)).enumerate() {
                    assert!(
                        g == w || g.iter().all(|&b| b == old),
                        "{image}{mode}: crash at {n}/{total}, state {k}: cluster {c} reads neither \
                         the old content nor the source's (first byte {:#x})",
                        g[0]
                    );
                }
                if result.is_ok() && k == 0 {
                    assert_eq!(got, want, "{image}{mode}: completed copy differs");
                }
            }
        }
    }
}

/// Reclaiming QED leaks (`check -r`) moves data clusters and L2 tables down
/// the file and truncates it. Cut after any of its writes, with any of the
/// unflushed writes kept, the image must check with leaks at most and keep
/// its guest content.
#[test]
fn crash_while_reclaiming_qed_leaks() {
    use qimg::format::check::Repair;
    let fx = Fixture::new();
    for image in qed_images_with_a_leak(&fx) {
        let bytes = fx.read(image);
        let want = guest(&fx, image);
        let reclaim = |crash_after: u64| {
            let fault = Arc::new(FaultStorage::new(
                fx.path(image),
                bytes.clone(),
                crash_after,
            ));
            let qed = Qed::open(Box::new(fault.clone())).expect("open");
            let result = qed.repair(Repair::Leaks, &mut |_| {});
            drop(qed);
            (fault, result)
        };
        let (fault, result) = reclaim(u64::MAX);
        let report = result.expect("repair").expect("QED has a check");
        assert_eq!(report.leaks_fixed, 1, "{image}: {report:?}");
        let total = fault.writes();
        assert!(total >= 4, "{image}: only {total} writes");
        for n in 0..=total {
            let (fault, _) = reclaim(n);
            for (pattern, crashed) in fault.crash_states(n).into_iter().enumerate() {
                fx.write("cut.qed", &crashed);
                let check = fx.qemu_img(&["check", "cut.qed"]);
                let code = check.status.code();
                assert!(
                    code == Some(0) || code == Some(3),
                    "{image}: cut after write {n}/{total} (pattern {pattern}): check exit {code:?}\n{}",
                    stdout(&check)
                );
                assert!(
                    guest(&fx, "cut.qed") == want,
                    "{image}: cut after write {n}/{total} (pattern {pattern}): guest content changed"
                );
            }
        }
    }
}

/// qcow2 images that `check -r all` repairs in different ways: a
/// preallocated zero cluster whose offset is not aligned (standard and
/// extended L2 entries), a leak, and a refcount block entry that must be
/// rebuilt. Returns their names.
fn qcow2_images_to_repair(fx: &Fixture) -> [&'static str; 6] {
    common::misaligned_zero_clusters(fx);
    fx.sh("qemu-img create -q -f qcow2 leak.qcow2 1M
         qemu-io -c 'write -P 9 0 192k' leak.qcow2 >/dev/null
         qemu-img create -q -f qcow2 rebuild.qcow2 1M
         qemu-io -c 'write -P 9 0 128k' rebuild.qcow2 >/dev/null
         # The refcount table's only entry names nothing: refcounts must be rebuilt.
         dd if=/dev/zero of=rebuild.qcow2 bs=1 seek=$((0x10000)) count=8 conv=notrunc status=none");
    // The leak: a cluster past the end of the file gets a refcount of 1.
    let mut leak = fx.read("leak.qcow2");
    let be = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let block = be(&leak, be(&leak, 48)) & !0x1ff;
    let cluster = leak.len() / 65536;
    leak[block + 2 * cluster + 1] = 1;
    leak.resize(leak.len() + 65536, 0);
    fx.write("leak.qcow2", &leak);
    // Snapshot tables the repair rewrites: an entry without the extra data
    // v3 needs, and one with more than 1 KiB of it.
    for (name, extra) in [("short.qcow2", 0usize), ("fat.qcow2", 2048)] {
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 {name} 1M
             qemu-io -c 'write -P 0x3c 0 128k' {name} >/dev/null
             qemu-img snapshot -c snap1 {name}
             qemu-io -c 'write -P 0x4d 64k 64k' {name} >/dev/null"
        ));
        let (l1, size) = common::first_snapshot_l1(fx, name);
        let entry = common::snapshot_entry(l1, size, &vec![0u8; extra], "1", 5);
        common::replace_snapshot_table(fx, name, &[entry]);
    }
    [
        "ext.qcow2",
        "std.qcow2",
        "leak.qcow2",
        "rebuild.qcow2",
        "short.qcow2",
        "fat.qcow2",
    ]
}

/// The number of corruptions `qemu-img check` reports (leaks ignored), or
/// `None` when it cannot check the image at all (a snapshot table it
/// refuses to read).
fn corruptions(fx: &Fixture, image: &str) -> Option<u64> {
    let out = fx.qemu_img(&["check", "--output=json", image]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(report["corruptions"].as_u64().unwrap_or(0))
}

/// `check -r all` on qcow2, cut after any of its writes with any of the
/// unflushed ones kept: the image is never worse than before (no new
/// corruption), and a second `check -r all` then leaves it clean with the
/// guest content a whole repair gives.
#[test]
fn crash_while_repairing_qcow2() {
    use qimg::format::check::Repair;
    let fx = Fixture::new();
    for image in qcow2_images_to_repair(&fx) {
        let bytes = fx.read(image);
        let before = corruptions(&fx, image);
        let repair = |crash_after: u64| {
            let fault = Arc::new(FaultStorage::new(
                fx.path(image),
                bytes.clone(),
                crash_after,
            ));
            let qcow2 =
                Qcow2::open_for_repair(Box::new(fault.clone()), &fx.path(image)).expect("open");
            let result = qcow2.repair(Repair::All, &mut |_| {});
            drop(qcow2);
            (fault, result)
        };
        let (fault, result) = repair(u64::MAX);
        let report = result.expect("repair").expect("qcow2 has a check");
        assert!(
            report.corruptions_fixed + report.leaks_fixed > 0,
            "{image}: nothing to repair: {report:?}"
        );
        fx.write("whole.qcow2", &fault.after_crash(|_| true));
        fx.assert_clean("whole.qcow2");
        let want = guest(&fx, "whole.qcow2");
        let total = fault.writes();
        for n in 0..total {
            let (fault, _) = repair(n);
            for (pattern, crashed) in fault.crash_states(n).into_iter().enumerate() {
                fx.write("cut.qcow2", &crashed);
                let now = corruptions(&fx, "cut.qcow2");
                assert!(
                    now.is_none_or(|now| now <= before.unwrap_or(0)) && (now.is_some() || before.is_none()),
                    "{image}: cut after write {n}/{total} (pattern {pattern}): {now:?} corruptions, {before:?} before"
                );
                let again = fx.qimg(&["check", "-r", "all", "cut.qcow2"]);
                assert_eq!(
                    again.status.code(),
                    Some(0),
                    "{image}: cut after write {n}/{total} (pattern {pattern}), repaired again: {}{}",
                    stdout(&again),
                    stderr(&again)
                );
                fx.assert_clean("cut.qcow2");
                assert!(
                    guest(&fx, "cut.qcow2") == want,
                    "{image}: cut after write {n}/{total} (pattern {pattern}): guest content differs"
                );
            }
        }
    }
}
