//! `qimg resize` against `qemu-img resize` on copies of the same images:
//! exit codes, output, resulting size, guest content (and every
//! snapshot's), and `qemu-img check`; plus crash injection at every write
//! of a grow and a shrink.

mod common;

use common::{stderr, stdout, Fixture};
use qimg::chain::Chain;
use qimg::format::qcow2::Qcow2;
use qimg::format::qed::Qed;
use qimg::format::{Format, FormatKind, Preallocation};
use qimg::io::FaultStorage;
use std::process::Output;
use std::sync::Arc;

/// Runs `resize ARGS... FILE SIZE` with both tools on their own copies of
/// `image`; returns their outputs and the copies' names.
fn both(fx: &Fixture, image: &str, args: &[&str], size: &str) -> (Output, Output, String, String) {
    common::on_copies(fx, image, &[&["resize"], args].concat(), &[size])
}

/// The error sentences of an output, without the program prefix.
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

fn virtual_size(fx: &Fixture, file: &str) -> u64 {
    let out = fx.qemu_img(&["info", "--output=json", file]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    v["virtual-size"].as_u64().unwrap()
}

/// Asserts both tools did the same to `image`.
fn assert_resizes_like_qemu(fx: &Fixture, image: &str, args: &[&str], size: &str) {
    let (q, m, theirs, ours) = both(fx, image, args, size);
    let what = format!("resize {args:?} {image} {size}");
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{what}: exit\n{}",
        stderr(&m)
    );
    assert_eq!(stdout(&m), stdout(&q), "{what}: stdout");
    if !q.status.success() {
        let (qs, ms) = (sentences(&q), sentences(&m));
        assert!(
            qs.iter().all(|s| ms.iter().any(|m| m.contains(s.as_str()))),
            "{what}: qemu-img said {qs:?}, qimg {ms:?}"
        );
        assert_eq!(
            fx.read(image),
            fx.read(&ours),
            "{what}: a refused resize changed the image"
        );
        return;
    }
    assert_eq!(
        virtual_size(fx, &ours),
        virtual_size(fx, &theirs),
        "{what}: size"
    );
    if !image.ends_with(".raw") {
        fx.assert_clean(&ours);
    }
    fx.assert_same(&theirs, &ours);
}

fn images(fx: &Fixture) -> Vec<&'static str> {
    fx.sh("qemu-img create -q -f qcow2 plain.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x12 3M 1M' plain.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 1M
         qemu-io -c 'write -P 0x21 0 64k' -c 'write -P 0x22 900k 100k' small.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k ext.qcow2 2M
         qemu-io -c 'write -P 0x31 4k 8k' -c 'write -P 0x32 1M 1M' ext.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 2M
         qemu-io -c 'write -P 0x41 0 2M' v2.qcow2 >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x51 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 2M
         qemu-io -c 'write -P 0x52 1M 64k' overlay.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 odd.qcow2 1001k
         qemu-io -c 'write -P 0x53 996k 5k' odd.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 v2o.qcow2 2M
         qemu-img create -q -f qed -b base.qcow2 -F qcow2 qo.qed 2M
         qemu-img create -q -f qed q.qed 2M
         qemu-io -c 'write -P 0x61 0 1M' q.qed >/dev/null
         qemu-img create -q -f raw r.raw 2M
         qemu-io -f raw -c 'write -P 0x71 0 1M' r.raw >/dev/null");
    vec![
        "plain.qcow2",
        "small.qcow2",
        "ext.qcow2",
        "v2.qcow2",
        "overlay.qcow2",
        "odd.qcow2",
        "v2o.qcow2",
        "qo.qed",
        "q.qed",
        "r.raw",
    ]
}

#[test]
fn grows_and_shrinks_like_qemu_img() {
    let fx = Fixture::new();
    for image in images(&fx) {
        let raw: &[&str] = if image.ends_with(".raw") {
            &["-f", "raw"]
        } else {
            &[]
        };
        let with = |more: &[&'static str]| [raw, more].concat();
        assert_resizes_like_qemu(&fx, image, &with(&[]), "8M");
        assert_resizes_like_qemu(&fx, image, &with(&[]), "+3M");
        assert_resizes_like_qemu(&fx, image, &with(&["-q"]), "+64k");
        // Growing by a 300 MiB step moves small-cluster L1 tables.
        assert_resizes_like_qemu(&fx, image, &with(&[]), "300M");
        // Shrinking: refused without --shrink, done with it (QED cannot).
        assert_resizes_like_qemu(&fx, image, &with(&[]), "1M");
        assert_resizes_like_qemu(&fx, image, &with(&["--shrink"]), "1M");
        assert_resizes_like_qemu(&fx, image, &with(&["--shrink"]), "-512k");
        assert_resizes_like_qemu(&fx, image, &with(&["--shrink"]), "1000k");
        // Errors.
        assert_resizes_like_qemu(&fx, image, &with(&["--shrink"]), "-100M");
        assert_resizes_like_qemu(&fx, image, &with(&[]), "0");
        assert_resizes_like_qemu(&fx, image, &with(&["--preallocation=bogus"]), "8M");
    }
}

#[test]
fn raw_preallocation_modes() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw r.raw 1M");
    for mode in ["off", "falloc", "full", "metadata"] {
        let arg = format!("--preallocation={mode}");
        assert_resizes_like_qemu(&fx, "r.raw", &["-f", "raw", &arg], "64M");
        let (_, m, theirs, ours) = both(&fx, "r.raw", &["-f", "raw", &arg], "64M");
        if m.status.success() {
            let used = |f: &str| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(fx.path(f)).unwrap().blocks() * 512
            };
            // Allocated on the host exactly when qemu-img allocates.
            assert_eq!(used(&ours) > 32 << 20, used(&theirs) > 32 << 20, "{mode}");
        }
    }
    // kubevirt CDI grows raw volumes with a size in bytes
    // (kubevirt/containerized-data-importer, pkg/image/qemu.go, Resize:
    // "qemu-img", "resize", "-f", "raw", image, size).
    assert_resizes_like_qemu(&fx, "r.raw", &["-f", "raw"], "134217728");
    // QED has no preallocation.
    fx.sh("qemu-img create -q -f qed q.qed 1M");
    assert_resizes_like_qemu(&fx, "q.qed", &["--preallocation=full"], "8M");
}

#[test]
fn snapshots_survive_a_resize() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 s.qcow2 4M
         qemu-io -c 'write -P 0x81 0 4M' s.qcow2 >/dev/null
         qemu-img snapshot -c before s.qcow2
         qemu-io -c 'write -P 0x82 2M 2M' s.qcow2 >/dev/null
         qemu-img convert -O raw -l before s.qcow2 before.raw
         qemu-img create -q -f qcow2 -o compat=0.10 s2.qcow2 4M
         qemu-img snapshot -c before s2.qcow2");
    // A v2 image with snapshots cannot be resized; v3 can, both ways.
    assert_resizes_like_qemu(&fx, "s2.qcow2", &[], "8M");
    for (args, size) in [(&[][..], "16M"), (&["--shrink"][..], "1M")] {
        assert_resizes_like_qemu(&fx, "s.qcow2", args, size);
        // Applied again (by qemu-img), the snapshot gives back its disk,
        // at its own size.
        fx.sh("qemu-img snapshot -a before m-s.qcow2 && qemu-img check -q m-s.qcow2");
        fx.assert_same("before.raw", "m-s.qcow2");
    }
}

/// Crash safety: a resize cut after any of its writes (with any of the
/// unflushed ones kept) leaves an image that checks clean (leaks at
/// most), has the old or the new size, and shows the guest data below the
/// smaller size intact (and zeros above it, when growing).
#[test]
fn crash_while_resizing() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 1M
         qemu-io -c 'write -P 0x91 0 64k' -c 'write -P 0x92 700k 300k' g.qcow2 >/dev/null
         qemu-img snapshot -c snap g.qcow2
         qemu-io -c 'write -P 0x93 900k 100k' g.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k e.qcow2 4M
         qemu-io -c 'write -P 0x94 0 4M' e.qcow2 >/dev/null
         qemu-img create -q -f qed g.qed 1M
         qemu-io -c 'write -P 0x95 0 1M' g.qed >/dev/null
         qemu-img create -q -f raw base.raw 4M
         qemu-io -f raw -c 'write -P 0x96 0 4M' base.raw >/dev/null
         qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw o.qcow2 1001k
         qemu-io -c 'write -P 0x97 500k 100k' o.qcow2 >/dev/null");
    // Growing the overlay past the old end of its longer backing file:
    // the grown range (from inside the last cluster) must read zeros.
    let base = Chain::open(&fx.path("base.raw"), FormatKind::named("raw")).expect("base");
    let below = base.reader_from(0);
    let off = Preallocation::Off;
    let cases: [(&str, u64, Preallocation); 9] = [
        ("o.qcow2", 8 << 20, off),
        ("o.qcow2", 8 << 20, Preallocation::Metadata),
        ("g.qcow2", 300 << 20, off),
        ("g.qcow2", 300 << 10, off),
        ("e.qcow2", 1000 << 10, off),
        ("e.qcow2", 64 << 20, off),
        ("e.qcow2", 12 << 20, Preallocation::Full),
        ("g.qcow2", 2 << 20, Preallocation::Falloc),
        ("g.qed", 64 << 20, off),
    ];
    for (image, new_size, prealloc) in cases {
        let bytes = fx.read(image);
        let guest = |file: &str| {
            let out = fx.qemu_img(&["convert", "-O", "raw", file, "guest.raw"]);
            assert!(out.status.success(), "{}", stderr(&out));
            fx.read("guest.raw")
        };
        let before = guest(image);
        let old_size = before.len() as u64;
        let resize = |crash_after: u64| {
            let fault = Arc::new(FaultStorage::new(
                fx.path(image),
                bytes.clone(),
                crash_after,
            ));
            let img: Box<dyn Format> = if image.ends_with(".qed") {
                Box::new(Qed::open_writable(Box::new(fault.clone())).expect("open"))
            } else {
                Box::new(
                    Qcow2::open_writable(Box::new(fault.clone()), &fx.path(image)).expect("open"),
                )
            };
            if image == "o.qcow2" {
                img.attach_backing(below.clone());
            }
            let result = img.resize(new_size, prealloc);
            drop(img);
            (fault, result)
        };
        let (fault, result) = resize(u64::MAX);
        result.unwrap_or_else(|e| panic!("{image} -> {new_size}: {e}"));
        let total = fault.writes();
        assert!(total >= 2, "{image}: only {total} writes");
        for n in 0..total {
            let (fault, _) = resize(n);
            for (pattern, cut) in fault.crash_states(n).into_iter().enumerate() {
                let name = format!("cut.{}", image.rsplit('.').next().unwrap());
                fx.write(&name, &cut);
                let what = format!(
                    "{image} -> {new_size}, cut after write {n}/{total} (pattern {pattern})"
                );
                let check = fx.qemu_img(&["check", &name]);
                assert!(
                    matches!(check.status.code(), Some(0) | Some(3)),
                    "{what}: check {:?}\n{}",
                    check.status.code(),
                    stdout(&check)
                );
                let now = guest(&name);
                let size = now.len() as u64;
                assert!(size == old_size || size == new_size, "{what}: size {size}");
                let keep = old_size.min(new_size) as usize;
                assert!(now[..keep] == before[..keep], "{what}: guest data changed");
                if size > old_size {
                    assert!(
                        now[keep..].iter().all(|&b| b == 0),
                        "{what}: grown range not zero"
                    );
                }
            }
        }
    }
}

/// The callers' own resize command lines, with qemu-img and with qimg on
/// copies of the same image.
#[test]
fn client_command_lines() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 vol.qcow2 8M
         qemu-io -c 'write -P 0x21 0 4M' vol.qcow2 >/dev/null");
    // libvirt grows and shrinks volumes with the capacity in bytes rounded
    // up to 512, and --shrink only when the capacity goes down
    // (libvirt/libvirt, src/storage/storage_util.c,
    // storageBackendResizeQemuImg: qemu-img resize [--shrink] PATH SIZE).
    assert_resizes_like_qemu(&fx, "vol.qcow2", &[], "16777216");
    assert_resizes_like_qemu(&fx, "vol.qcow2", &["--shrink"], "4194304");
    // lima reads the format with info --force-share, then resizes with it
    // (lima-vm/lima, pkg/imgutil/qemuimgutil, ResizeDisk and resizeDisk:
    // qemu-img resize -f FORMAT DISK SIZE).
    let info = fx.qimg(&["info", "--output=json", "--force-share", "vol.qcow2"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let format = v["format"].as_str().unwrap().to_string();
    assert_eq!(format, "qcow2");
    assert_resizes_like_qemu(&fx, "vol.qcow2", &["-f", &format], "107374182400");
    // Packer's QEMU builder grows the disk image it boots from, with its
    // disk_size as the user wrote it, a suffix included
    // (hashicorp/packer-plugin-qemu, builder/qemu/step_resize_disk.go,
    // buildResizeCommand: resize -f FORMAT [resize args] PATH DISK_SIZE).
    assert_resizes_like_qemu(&fx, "vol.qcow2", &["-f", "qcow2"], "40960M");
    // OpenStack cinder extends volumes in whole GiB, with the format when
    // it knows it (openstack/cinder, cinder/image/image_utils.py,
    // resize_image: qemu-img resize [-f FMT] SOURCE NG).
    assert_resizes_like_qemu(&fx, "vol.qcow2", &["-f", "qcow2"], "2G");
    assert_resizes_like_qemu(&fx, "vol.qcow2", &[], "3G");
}

/// `--preallocation=metadata|falloc|full` on qcow2, against qemu-img on
/// copies: the same size, content and allocation map (a preallocated
/// cluster over a sparse file reads as zero data, as qemu-img maps it),
/// and host space allocated exactly when qemu-img allocates it.
#[test]
fn qcow2_preallocation_modes() {
    let fx = Fixture::new();
    images(&fx);
    for image in [
        "plain.qcow2",
        "small.qcow2",
        "ext.qcow2",
        "overlay.qcow2",
        "odd.qcow2",
    ] {
        for mode in ["metadata", "falloc", "full"] {
            let arg = format!("--preallocation={mode}");
            assert_resizes_like_qemu(&fx, image, &[&arg], "+3M");
            let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
            // Where a preallocated cluster's host bytes are a hole of the
            // file decides its `zero` flag: that follows the file's block
            // layout, not the image, so only the rest is compared.
            let layout = |f: &str| {
                let mut runs: Vec<(u64, u64, u64, bool, bool)> = Vec::new();
                for (start, len, depth, present, _, data) in common::allocation(&fx, f) {
                    match runs.last_mut() {
                        Some(l) if (l.2, l.3, l.4) == (depth, present, data) => l.1 += len,
                        _ => runs.push((start, len, depth, present, data)),
                    }
                }
                runs
            };
            assert_eq!(layout(&ours), layout(&theirs), "{image} {arg}: allocation");
            let used = |f: &str| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(fx.path(f)).unwrap().blocks() * 512
            };
            let grew = |f: &str| used(f) >= used(image) + (3 << 20);
            assert_eq!(grew(&ours), grew(&theirs), "{image} {arg}: host allocation");
        }
    }
}
