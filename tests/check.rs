//! `qimg check` against `qemu-img check` on clean and damaged images: the
//! same stdout, the same stderr lines (apart from the program name) and the
//! same exit code, in human and JSON form.

mod common;

use common::{patch_qed_l2, qed_images_with_a_leak, stderr, stdout, Fixture};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Normalized (stdout, stderr, exit code) of a check by `program`.
fn verdict(fx: &Fixture, program: &str, args: &[&str]) -> (String, String, Option<i32>) {
    let out = if program == "qimg" {
        fx.qimg(args)
    } else {
        fx.run(program, args)
    };
    let err = stderr(&out)
        .lines()
        .map(|l| {
            l.strip_prefix("qemu-img: ")
                .or(l.strip_prefix("qimg: "))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (stdout(&out), err, out.status.code())
}

fn assert_check_like_qemu(fx: &Fixture, image: &str) {
    for output in ["--output=human", "--output=json"] {
        let args = ["check", output, image];
        assert_eq!(
            verdict(fx, "qimg", &args),
            verdict(fx, "qemu-img", &args),
            "qimg check {output} {image}"
        );
    }
}

fn patch_be64(fx: &Fixture, file: &str, offset: usize, value: u64) {
    let mut b = fx.read(file);
    b[offset..offset + 8].copy_from_slice(&value.to_be_bytes());
    fx.write(file, &b);
}

fn patch_be16(fx: &Fixture, file: &str, offset: usize, value: u16) {
    let mut b = fx.read(file);
    b[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
    fx.write(file, &b);
}

/// A 1 MiB image with 256 KiB of data. Layout: refcount table 0x10000,
/// refcount block 0x20000, L1 0x30000, L2 0x40000, data 0x50000-0x8ffff.
fn damaged(fx: &Fixture, name: &str, damage: impl FnOnce(&Fixture, &str)) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 {name} 1M && qemu-io -c 'write -P 1 0 256k' {name} >/dev/null"
    ));
    damage(fx, name);
    assert_check_like_qemu(fx, name);
}

#[test]
fn clean_images() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img snapshot -c s base.qcow2
         qemu-io -c 'write -P 0x12 512k 64k' base.qcow2 >/dev/null
         qemu-img bitmap --add base.qcow2 bm
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 1M 64k' -c 'write -z 0 64k' -c 'write -z -u 2M 64k' top.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on xl.qcow2 1M
         qemu-io -c 'write -P 1 4k 4k' -c 'write -z 64k 8k' xl.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o data_file=d.raw ext.qcow2 1M
         qemu-io -c 'write -P 1 0 64k' ext.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o preallocation=metadata,refcount_bits=1 pre.qcow2 8M
         qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 3 0 512k' src.raw >/dev/null
         qemu-img convert -c -O qcow2 src.raw comp.qcow2
         qemu-img convert -c -O qcow2 -o compression_type=zstd,cluster_size=4k src.raw zcomp.qcow2
         qemu-img create -q -f qed q.qed 4M
         qemu-io -f qed -c 'write -P 1 0 1M' -c 'write -z 2M 64k' q.qed >/dev/null
         qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2.qcow2 1M
         qemu-io -c 'write -P 9 0 100k' v2.qcow2 >/dev/null",
    );
    for image in [
        "base.qcow2",
        "top.qcow2",
        "xl.qcow2",
        "ext.qcow2",
        "pre.qcow2",
        "comp.qcow2",
        "zcomp.qcow2",
        "q.qed",
        "v2.qcow2",
    ] {
        assert_check_like_qemu(&fx, image);
    }
}

#[test]
fn leaks_and_refcount_errors() {
    let fx = Fixture::new();
    damaged(&fx, "leak.qcow2", |fx, f| patch_be64(fx, f, 0x40000, 0));
    damaged(&fx, "refcount0.qcow2", |fx, f| {
        patch_be16(fx, f, 0x20000 + 2 * 6, 0)
    });
    damaged(&fx, "refcount2.qcow2", |fx, f| {
        patch_be16(fx, f, 0x20000 + 2 * 7, 2)
    });
    damaged(&fx, "into-l1.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40008, 0x8000_0000_0003_0000)
    });
    damaged(&fx, "past-eof.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40010, 0x8000_0000_1000_0000)
    });
}

#[test]
fn table_and_flag_errors() {
    let fx = Fixture::new();
    damaged(&fx, "l1-reserved.qcow2", |fx, f| {
        patch_be64(fx, f, 0x30000, 0x8000_0000_0004_0001)
    });
    damaged(&fx, "l2-reserved.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40000, 0x8000_0000_0005_0002)
    });
    damaged(&fx, "l2-unaligned.qcow2", |fx, f| {
        patch_be64(fx, f, 0x30000, 0x8000_0000_0004_0200)
    });
    damaged(&fx, "data-unaligned.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40018, 0x8000_0000_0008_0200)
    });
    damaged(&fx, "zero-unaligned.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40018, 0x8000_0000_0008_0201)
    });
    damaged(&fx, "copied-data.qcow2", |fx, f| {
        patch_be64(fx, f, 0x40000, 0x50000)
    });
    damaged(&fx, "copied-l2.qcow2", |fx, f| {
        patch_be64(fx, f, 0x30000, 0x40000)
    });
    damaged(&fx, "reftable-reserved.qcow2", |fx, f| {
        patch_be64(fx, f, 0x10000, 0x20001)
    });
    damaged(&fx, "reftable-past-eof.qcow2", |fx, f| {
        patch_be64(fx, f, 0x10000, 0x1000_0000)
    });
    damaged(&fx, "reftable-zero.qcow2", |fx, f| {
        patch_be64(fx, f, 0x10000, 0)
    });
    damaged(&fx, "corrupt-bit.qcow2", |fx, f| patch_be64(fx, f, 72, 2));
}

/// Starts `qemu-io` writing into `image` and kills it once `ready` holds
/// for the file's bytes (the writer has left its mark), as a crash would.
fn kill_writer(fx: &Fixture, format: &str, image: &str, ready: impl Fn(&[u8]) -> bool) {
    let mut child = Command::new("qemu-io")
        .args([
            "-f",
            format,
            "-c",
            "write -P 7 0 64k",
            "-c",
            "sleep 100000",
            image,
        ])
        .current_dir(fx.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-io");
    let start = Instant::now();
    while !ready(&fx.read(image)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "qemu-io never wrote {image}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().expect("kill qemu-io");
    child.wait().expect("reap qemu-io");
}

#[test]
fn killed_writers() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 1M");
    // The dirty bit is set, and the L2 table points at the new data.
    kill_writer(&fx, "qcow2", "lazy.qcow2", |b| {
        b[79] & 1 == 1 && b.len() > 0x50000
    });
    assert_check_like_qemu(&fx, "lazy.qcow2");
    fx.sh("qemu-img create -q -f qed nc.qed 1M");
    kill_writer(&fx, "qed", "nc.qed", |b| b[16] & 2 == 2);
    assert_check_like_qemu(&fx, "nc.qed");
}

#[test]
fn qed_leaks_and_corruptions() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qed leak.qed 1M && qemu-io -f qed -c 'write -P 1 0 128k' leak.qed >/dev/null
         cp leak.qed bad.qed",
    );
    let l2 = |fx: &Fixture, f: &str| {
        u64::from_le_bytes(fx.read(f)[0x10000..0x10008].try_into().unwrap()) as usize
    };
    for (file, entry, value) in [("leak.qed", 0usize, 0u64), ("bad.qed", 1, 0x10000)] {
        let mut b = fx.read(file);
        let at = l2(&fx, file) + entry * 8;
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        fx.write(file, &b);
        assert_check_like_qemu(&fx, file);
    }
}

#[test]
fn quiet_raw_and_missing_backing() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f raw disk.raw 1M
         qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2 orphan.qcow2 1M
         qemu-img create -q -f qcow2 leak.qcow2 1M && qemu-io -c 'write 0 128k' leak.qcow2 >/dev/null",
    );
    patch_be64(&fx, "leak.qcow2", 0x40000, 0);
    for args in [
        &["check", "-q", "leak.qcow2"][..],
        &["check", "disk.raw"],
        &["check", "--output=json", "disk.raw"],
    ] {
        let (out, _, code) = verdict(&fx, "qimg", args);
        let (qout, _, qcode) = verdict(&fx, "qemu-img", args);
        assert_eq!((out, code), (qout, qcode), "{args:?}");
    }
    let out = fx.qimg(&["check", "orphan.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gone.qcow2"), "{}", stderr(&out));
    let out = fx.qimg(&["check", "-r", "leaks", "-U", "leak.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("force-share=on can only be used with read-only images"));
}

/// Repairs a copy of `image` with each tool and mode: the exit codes agree,
/// qemu-img's verdict on both results agrees, and the repaired images hold
/// the same guest data. `qimg_does_better` names modes where qemu-img fails
/// and qimg repairs (then qimg's result must be clean).
fn assert_repairs_like_qemu(fx: &Fixture, image: &str, qimg_does_better: &[&str]) {
    for mode in ["leaks", "all"] {
        let (theirs, ours) = (format!("q-{mode}-{image}"), format!("m-{mode}-{image}"));
        std::fs::copy(fx.path(image), fx.path(&theirs)).unwrap();
        std::fs::copy(fx.path(image), fx.path(&ours)).unwrap();
        let q = fx.qemu_img(&["check", "-r", mode, &theirs]).status.code();
        let m = fx.qimg(&["check", "-r", mode, &ours]);
        let after = |f: &str| fx.qemu_img(&["check", f]).status.code();
        if qimg_does_better.contains(&mode) {
            assert_eq!(
                m.status.code(),
                Some(0),
                "qimg check -r {mode} {image}: {}",
                stderr(&m)
            );
            assert_eq!(after(&ours), Some(0), "{image} after qimg -r {mode}");
        } else {
            assert_eq!(
                m.status.code(),
                q,
                "check -r {mode} {image}: {}",
                stderr(&m)
            );
            assert_eq!(after(&ours), after(&theirs), "{image} after -r {mode}");
        }
        // The repaired image reads the same through qimg's own check as qemu-img's.
        assert_eq!(
            fx.qimg(&["check", &ours]).status.code(),
            after(&ours),
            "{image}: qimg's verdict on its repair"
        );
        if after(&ours) == Some(0) && after(&theirs) == Some(0) {
            let cmp = fx.qemu_img(&["compare", &theirs, &ours]);
            assert!(
                cmp.status.success(),
                "{image} -r {mode}: guest data differs: {}",
                stdout(&cmp)
            );
        }
    }
}

#[test]
fn repairs() {
    let fx = Fixture::new();
    let build = |name: &str, damage: &dyn Fn(&Fixture, &str)| {
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 {name} 1M && qemu-io -c 'write -P 1 0 256k' {name} >/dev/null"
        ));
        damage(&fx, name);
    };
    build("leak.qcow2", &|fx, f| patch_be64(fx, f, 0x40000, 0));
    build("refcount0.qcow2", &|fx, f| {
        patch_be16(fx, f, 0x20000 + 2 * 6, 0)
    });
    build("refcount2.qcow2", &|fx, f| {
        patch_be16(fx, f, 0x20000 + 2 * 7, 2)
    });
    build("into-l1.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x40008, 0x8000_0000_0003_0000)
    });
    build("past-eof.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x40010, 0x8000_0000_1000_0000)
    });
    build("copied-data.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x40000, 0x50000)
    });
    build("copied-l2.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x30000, 0x40000)
    });
    build("reftable-past-eof.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x10000, 0x1000_0000)
    });
    build("reftable-reserved.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x10000, 0x20001)
    });
    build("l2-reserved.qcow2", &|fx, f| {
        patch_be64(fx, f, 0x40000, 0x8000_0000_0005_0002)
    });
    build("corrupt-bit.qcow2", &|fx, f| patch_be64(fx, f, 72, 2));
    for image in [
        "leak.qcow2",
        "refcount0.qcow2",
        "refcount2.qcow2",
        "into-l1.qcow2",
        "past-eof.qcow2",
        "copied-data.qcow2",
        "copied-l2.qcow2",
        "reftable-past-eof.qcow2",
        "l2-reserved.qcow2",
        "corrupt-bit.qcow2",
    ] {
        assert_repairs_like_qemu(&fx, image, &[]);
    }
    // qemu-img -r all fails here ("Preventing invalid write on metadata");
    // qimg rebuilds the refcount structure elsewhere and succeeds.
    assert_repairs_like_qemu(&fx, "reftable-reserved.qcow2", &["all"]);
}

/// A preallocated zero cluster whose host offset is not cluster-aligned
/// (standard and extended L2 entries): `-r all` drops the offset as
/// qemu-img does, the data stays, and both tools print the same summary.
#[test]
fn repair_misaligned_preallocated_zero_clusters() {
    let fx = Fixture::new();
    for image in common::misaligned_zero_clusters(&fx) {
        assert_check_like_qemu(&fx, image);
        assert_repairs_like_qemu(&fx, image, &[]);
        let (theirs, ours) = (format!("q-all-{image}"), format!("m-all-{image}"));
        assert_eq!(fx.qimg(&["check", &ours]).status.code(), Some(0), "{image}");
        let repair = |program: &str, f: &str| {
            std::fs::copy(fx.path(image), fx.path(f)).unwrap();
            let out = if program == "qemu-img" {
                fx.qemu_img(&["check", "-r", "all", f])
            } else {
                fx.qimg(&["check", "-r", "all", f])
            };
            (stdout(&out), stderr(&out))
        };
        let (q, m) = (repair("qemu-img", &theirs), repair("qimg", &ours));
        assert_eq!(q.0, m.0, "{image}: summaries differ");
        assert!(m.1.contains("Repairing offset="), "{image}: {}", m.1);
    }
}

/// After a refcount rebuild, qemu-img names each cluster of the old
/// refcount structures it frees (`Repairing cluster N refcount=1
/// reference=0`); qimg prints the same lines, in the same order.
#[test]
fn rebuild_reports_the_clusters_it_frees() {
    let fx = Fixture::new();
    let build = |name: &str, offset: usize, value: u64| {
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 {name} 1M && qemu-io -c 'write -P 1 0 256k' {name} >/dev/null"
        ));
        patch_be64(&fx, name, offset, value);
    };
    // The refcount table's entry zeroed, and a data cluster's refcount
    // zeroed. (With a block past the end of the file, qemu-img first grows
    // the file to reach it; qimg does not, so their lines differ there.)
    build("no-block.qcow2", 0x10000, 0);
    build("refcount0.qcow2", 0x20000, 0x0001_0001_0001_0000);
    for image in ["no-block.qcow2", "refcount0.qcow2"] {
        let repair = |program: &str, copy: &str| {
            std::fs::copy(fx.path(image), fx.path(copy)).unwrap();
            let out = if program == "qimg" {
                fx.qimg(&["check", "-r", "all", copy])
            } else {
                fx.qemu_img(&["check", "-r", "all", copy])
            };
            assert_eq!(
                out.status.code(),
                Some(0),
                "{program} -r all {image}: {}",
                stderr(&out)
            );
            stderr(&out)
        };
        let theirs = repair("qemu-img", "q.qcow2");
        assert!(
            theirs.contains("Rebuilding refcount structure"),
            "{image}: {theirs}"
        );
        assert_eq!(repair("qimg", "m.qcow2"), theirs, "{image}");
    }
}

#[test]
fn repair_clears_the_dirty_and_corrupt_bits() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 1M");
    kill_writer(&fx, "qcow2", "lazy.qcow2", |b| {
        b[79] & 1 == 1 && b.len() > 0x50000
    });
    assert_repairs_like_qemu(&fx, "lazy.qcow2", &[]);
    let info = stdout(&fx.qemu_img(&["info", "m-all-lazy.qcow2"]));
    assert!(!info.contains("cleanly shut down: no"), "{info}");
    fx.sh("qemu-img create -q -f qcow2 c.qcow2 1M");
    patch_be64(&fx, "c.qcow2", 72, 2);
    assert!(fx
        .qimg(&["check", "-r", "leaks", "c.qcow2"])
        .status
        .success());
    assert!(stdout(&fx.qemu_img(&["info", "c.qcow2"])).contains("corrupt: false"));
}

#[test]
fn repair_output_tells_what_was_fixed() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 leak.qcow2 1M && qemu-io -c 'write 0 128k' leak.qcow2 >/dev/null");
    patch_be64(&fx, "leak.qcow2", 0x40000, 0);
    std::fs::copy(fx.path("leak.qcow2"), fx.path("q.qcow2")).unwrap();
    for output in ["--output=human", "--output=json"] {
        std::fs::copy(fx.path("q.qcow2"), fx.path("a.qcow2")).unwrap();
        std::fs::copy(fx.path("q.qcow2"), fx.path("b.qcow2")).unwrap();
        let ours = verdict(&fx, "qimg", &["check", "-r", "leaks", output, "a.qcow2"]);
        let theirs = verdict(
            &fx,
            "qemu-img",
            &["check", "-r", "leaks", output, "b.qcow2"],
        );
        assert_eq!(
            ours.0.replace("a.qcow2", "X"),
            theirs.0.replace("b.qcow2", "X"),
            "{output}"
        );
        assert_eq!(ours.2, theirs.2);
    }
}

/// qemu-img cannot reclaim QED leaks (its exit code stays 3); qimg moves
/// the clusters after a hole down, truncates, and the image is clean with
/// the same guest data.
#[test]
fn qed_leaks_are_reclaimed() {
    let fx = Fixture::new();
    for image in qed_images_with_a_leak(&fx) {
        let before = format!("before-{image}");
        std::fs::copy(fx.path(image), fx.path(&before)).unwrap();
        let q = format!("q-{image}");
        std::fs::copy(fx.path(image), fx.path(&q)).unwrap();
        assert_eq!(
            fx.qemu_img(&["check", "-r", "all", &q]).status.code(),
            Some(3)
        );
        let out = fx.qimg(&["check", "-r", "leaks", image]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{image}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("    1 leaked clusters"),
            "{}",
            stdout(&out)
        );
        fx.assert_clean(image);
        let cmp = fx.qemu_img(&["compare", &before, image]);
        assert!(
            cmp.status.success(),
            "{image}: guest data changed: {}",
            stdout(&cmp)
        );
        assert!(
            fx.read(image).len() < fx.read(&before).len(),
            "{image} was not truncated"
        );
    }
}

#[test]
fn qed_invalid_entries_and_need_check() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qed bad.qed 1M && qemu-io -f qed -c 'write -P 1 0 128k' bad.qed >/dev/null");
    patch_qed_l2(&fx, "bad.qed", 1, 0x1000_0000);
    assert_repairs_qed_like_qemu(&fx, "bad.qed");
    fx.sh("qemu-img create -q -f qed nc.qed 1M");
    kill_writer(&fx, "qed", "nc.qed", |b| b[16] & 2 == 2);
    assert_repairs_qed_like_qemu(&fx, "nc.qed");
    assert_eq!(fx.read("m-nc.qed")[16] & 2, 0, "need-check still set");
}

/// Repairs a copy with each tool: same exit code unless qemu-img is left
/// with leaks only (which qimg reclaims), same guest data.
fn assert_repairs_qed_like_qemu(fx: &Fixture, image: &str) {
    let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
    std::fs::copy(fx.path(image), fx.path(&theirs)).unwrap();
    std::fs::copy(fx.path(image), fx.path(&ours)).unwrap();
    let q = fx.qemu_img(&["check", "-r", "all", &theirs]).status.code();
    let m = fx.qimg(&["check", "-r", "all", &ours]);
    let expected = if q == Some(3) { Some(0) } else { q };
    assert_eq!(m.status.code(), expected, "{image}: {}", stderr(&m));
    let cmp = fx.qemu_img(&["compare", &theirs, &ours]);
    assert!(cmp.status.success(), "{image}: {}", stdout(&cmp));
}

/// A sparse file may claim a length far beyond what it holds: the check's
/// counters follow the clusters referenced, not the file's length. An
/// image of 256 KiB of data in an 8 TiB file (128 Mi clusters; one 32-bit
/// counter per cluster of the length would be 512 MiB) is checked under an
/// address-space limit of 192 MiB, with qemu-img's verdict.
#[test]
fn check_of_a_sparse_huge_file_needs_little_memory() {
    use std::os::unix::process::CommandExt;
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 big.qcow2 1G
         qemu-io -c 'write -P 1 0 256k' big.qcow2 >/dev/null
         truncate -s 8T big.qcow2");
    let limit = 192u64 << 20;
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("qimg"));
    cmd.args(["check", "--output=json", "big.qcow2"])
        .current_dir(fx.dir());
    // SAFETY: only setrlimit, async-signal-safe, runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ours = cmd.output().expect("run qimg");
    assert!(
        ours.status.success(),
        "qimg check under a {} MiB limit: {}",
        limit >> 20,
        stderr(&ours)
    );
    let theirs = fx.qemu_img(&["check", "--output=json", "big.qcow2"]);
    assert_eq!(stdout(&ours), stdout(&theirs));
}
