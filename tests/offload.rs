//! `convert -C` (copy offloading): data stored plainly in a source file is
//! copied by the kernel (`copy_file_range`), not read, as qemu-img's `-C`
//! copies it. Checked against qemu-img 10's own `-C` output: the same guest
//! content, the same allocation (a zero-filled data cluster stays data,
//! since nothing is scanned), and a qcow2 target that checks clean. Data
//! the kernel cannot copy (compressed clusters, a network target) goes
//! through memory in the same copy. strace shows which way it went.

mod common;

use common::{allocation, require_tool, stderr, Fixture};
use std::process::Command;

/// Sources of every shape `-C` meets: plain qcow2 data with a zero-filled
/// data cluster, a zero cluster and partial clusters; a two-layer chain;
/// compressed clusters next to plain ones; a sparse raw file.
fn sources(fx: &Fixture) {
    fx.sh(
        "qemu-img create -q -f qcow2 plain.qcow2 64M
         qemu-io -c 'write -P 7 0 5M' -c 'write -z 8M 1M' -c 'write -P 3 20M 300k' \
                 -c 'write -P 0 30M 1M' -c 'write -P 9 63M 1M' plain.qcow2 >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 64M
         qemu-io -c 'write -P 1 0 16M' -c 'write -P 2 40M 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
         qemu-io -c 'write -P 5 4M 2M' -c 'write -z 10M 1M' -c 'write -P 6 41M 100k' overlay.qcow2 >/dev/null
         qemu-img create -q -f raw text.raw 8M
         qemu-io -f raw -c 'write -P 4 0 8M' text.raw >/dev/null
         qemu-img convert -c -O qcow2 text.raw packed.qcow2
         qemu-io -c 'write -P 8 2M 2M' packed.qcow2 >/dev/null
         qemu-img create -q -f raw sparse.raw 32M
         qemu-io -f raw -c 'write -P 11 1M 3M' -c 'write -P 12 17M 64k' -c 'write -P 0 24M 1M' sparse.raw >/dev/null",
    );
}

/// How many `copy_file_range` calls (that copied something) strace saw
/// while `qimg` ran with `args` in the fixture's directory.
fn kernel_copies(fx: &Fixture, args: &[&str]) -> usize {
    traced_copies(fx, args).1
}

/// As [`kernel_copies`], with qimg's output.
fn traced_copies(fx: &Fixture, args: &[&str]) -> (std::process::Output, usize) {
    let (out, text) = common::strace_qimg(fx, "", "copy_file_range", args, &[]);
    assert!(out.status.success(), "qimg {args:?}: {}", stderr(&out));
    let copies = text
        .lines()
        .filter(|l| l.contains("copy_file_range(") && !l.contains("= -1") && !l.ends_with("= 0"))
        .count();
    (out, copies)
}

/// Whether qemu-img's map of `image` shows data at guest `offset`.
fn data_at(fx: &Fixture, image: &str, offset: u64) -> bool {
    let map = allocation(fx, image);
    let run = map.iter().find(|r| r.0 <= offset && offset < r.0 + r.1);
    run.unwrap_or_else(|| panic!("{image}: nothing at {offset} in {map:?}"))
        .5
}

#[test]
fn convert_c_matches_qemu_img_c() {
    require_tool("strace");
    let fx = Fixture::new();
    sources(&fx);
    let cases = [
        ("plain.qcow2", "qcow2"),
        ("plain.qcow2", "raw"),
        ("overlay.qcow2", "qcow2"),
        ("overlay.qcow2", "raw"),
        ("packed.qcow2", "qcow2"),
        ("sparse.raw", "qcow2"),
        ("sparse.raw", "raw"),
    ];
    for (source, format) in cases {
        let ours = format!("ours.{format}");
        let theirs = format!("theirs.{format}");
        let copies = kernel_copies(&fx, &["convert", "-C", "-O", format, source, &ours]);
        assert!(copies > 0, "{source} -> {format}: no kernel copy was made");
        let out = fx.qemu_img(&["convert", "-C", "-O", format, source, &theirs]);
        assert!(out.status.success(), "qemu-img -C: {}", stderr(&out));
        fx.assert_same(source, &ours);
        if format == "qcow2" {
            fx.assert_clean(&ours);
        }
        assert_eq!(
            allocation(&fx, &ours),
            allocation(&fx, &theirs),
            "{source} -> {format}: allocation differs from qemu-img -C's"
        );
    }
}

#[test]
fn without_c_nothing_is_offloaded_and_zeros_are_found() {
    require_tool("strace");
    let fx = Fixture::new();
    sources(&fx);
    let copies = kernel_copies(&fx, &["convert", "-O", "qcow2", "plain.qcow2", "out.qcow2"]);
    assert_eq!(copies, 0, "convert without -C copied in the kernel");
    // The zero-filled data cluster at 30M is found by the zero scan.
    assert!(
        !data_at(&fx, "out.qcow2", 30 << 20),
        "the zero-filled cluster was written as data"
    );
    // With -C it stays data, as qemu-img -C leaves it.
    let out = fx.qimg(&["convert", "-C", "-O", "qcow2", "plain.qcow2", "c.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        data_at(&fx, "c.qcow2", 30 << 20),
        "with -C the zero-filled cluster is data"
    );
}

#[test]
fn c_with_checksum_reads_and_hashes() {
    require_tool("strace");
    let fx = Fixture::new();
    sources(&fx);
    let digest = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (with_c, copies) = traced_copies(
        &fx,
        &[
            "convert",
            "-C",
            "--checksum",
            "-O",
            "raw",
            "overlay.qcow2",
            "sum.raw",
        ],
    );
    assert_eq!(copies, 0, "--checksum must read what it hashes");
    let sum = fx.qimg(&["checksum", "overlay.qcow2"]);
    assert!(sum.status.success(), "{}", stderr(&sum));
    assert_eq!(digest(&with_c), digest(&sum));
    fx.assert_same("overlay.qcow2", "sum.raw");
}

/// Into an NBD export (qemu-nbd at its defaults), which the kernel cannot
/// copy into: the same convert goes through memory, and the content is the
/// source's.
#[test]
fn c_into_an_nbd_export_copies_through_memory() {
    require_tool("qemu-nbd");
    let fx = Fixture::new();
    sources(&fx);
    fx.sh("qemu-img create -q -f raw export.raw 64M");
    let socket = fx.path("nbd.sock");
    let mut server = Command::new("qemu-nbd")
        .args(["-f", "raw", "-k"])
        .arg(&socket)
        .arg(fx.path("export.raw"))
        .spawn()
        .expect("start qemu-nbd");
    let start = std::time::Instant::now();
    while !socket.exists() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let out = fx.qimg(&["convert", "-C", "-n", "-O", "raw", "plain.qcow2", &uri]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("plain.qcow2", "export.raw");
}

/// A scratch XFS file system (with reflinks, mkfs.xfs's default) on a
/// loop device, mounted in the fixture's directory; unmounted when dropped.
struct Xfs {
    mount: std::path::PathBuf,
}

impl Xfs {
    fn mount(fx: &Fixture) -> Xfs {
        require_tool("mkfs.xfs");
        let image = fx.path("xfs.img");
        let mount = fx.path("xfs");
        std::fs::create_dir(&mount).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(1 << 30).unwrap();
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            let out = Command::new(program).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{program} {args:?} (this test needs root and loop devices): {}",
                stderr(&out)
            );
        };
        run(
            "mkfs.xfs",
            &[
                "-q".as_ref(),
                "-m".as_ref(),
                "reflink=1".as_ref(),
                image.as_os_str(),
            ],
        );
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        );
        Xfs { mount }
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// Blocks of `file` in extents the file system shares with another file
/// (`filefrag -v`'s `shared` flag), and all its blocks.
fn shared_blocks(file: &std::path::Path) -> (u64, u64) {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "filefrag: {}", stderr(&out));
    let (mut shared, mut all) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "   3:   80..  78815:   158200..  236935:  78736:   45240: shared"
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 5 || fields[0].trim().parse::<u64>().is_err() {
            continue;
        }
        let len: u64 = fields[3].trim().parse().unwrap();
        all += len;
        if fields.last().unwrap().contains("shared") {
            shared += len;
        }
    }
    (shared, all)
}

/// On XFS the kernel's copies are block clones: the target's data shares
/// the source's blocks (qemu-img -C clones the same way), and the image
/// is a clean qcow2 with the source's content. Without -C nothing is shared.
#[test]
fn c_clones_blocks_on_xfs() {
    require_tool("filefrag");
    let fx = Fixture::new();
    let xfs = Xfs::mount(&fx);
    let dir = xfs.mount.to_str().unwrap();
    fx.sh(&format!(
        "cd {dir}
         qemu-img create -q -f qcow2 src.qcow2 64M
         qemu-io -c 'write -P 7 0 24M' -c 'write -P 8 40M 8M' src.qcow2 >/dev/null"
    ));
    let inside = |name: &str| format!("{dir}/{name}");
    for (flag, want_shared) in [(Some("-C"), true), (None, false)] {
        let target = inside("out.qcow2");
        let mut args = vec!["convert"];
        args.extend(flag);
        let source = inside("src.qcow2");
        args.extend(["-O", "qcow2", &source, &target]);
        let out = fx.qimg(&args);
        assert!(out.status.success(), "qimg {args:?}: {}", stderr(&out));
        fx.assert_clean(&target);
        fx.assert_same(&source, &target);
        let (shared, all) = shared_blocks(std::path::Path::new(&target));
        if want_shared {
            // 32 MiB of data in 4 KiB blocks; the metadata is not shared.
            assert!(
                shared >= 8192 && shared < all,
                "with -C: {shared} of {all} blocks shared"
            );
        } else {
            assert_eq!(shared, 0, "without -C: {shared} of {all} blocks shared");
        }
        std::fs::remove_file(&target).unwrap();
    }
}

/// Encrypted data is never handed to the kernel: an encrypted qcow2
/// source is decrypted and a LUKS target encrypted through memory, in the
/// same `-C` convert, and no plaintext reaches the encrypted target.
#[test]
fn c_with_encryption_goes_through_memory() {
    require_tool("strace");
    let fx = Fixture::new();
    let secret = ["--object", "secret,id=s0,data=pw"];
    fx.sh("qemu-img create -q --object secret,id=s0,data=pw -f qcow2 \
             -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 enc.qcow2 8M
         qemu-io --object secret,id=s0,data=pw --image-opts -c 'write -P 9 0 4M' \
             driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s0 >/dev/null
         qemu-img create -q -f raw plain.raw 8M
         qemu-io -f raw -c 'write -P 5 0 6M' plain.raw >/dev/null");
    let source = "driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s0";
    let mut args = vec!["convert", "-C"];
    args.extend(secret);
    args.extend(["--image-opts", source, "-O", "raw", "out.raw"]);
    assert_eq!(
        kernel_copies(&fx, &args),
        0,
        "ciphertext went to the kernel"
    );
    let same = |a: &str, b: &str| {
        let mut args = vec!["compare"];
        args.extend(secret);
        args.extend(["--image-opts", a, b]);
        let out = fx.qemu_img(&args);
        assert!(out.status.success(), "compare {a} {b}: {}", stderr(&out));
    };
    same(source, "driver=raw,file.filename=out.raw");
    let mut args = vec!["convert", "-C"];
    args.extend(secret);
    args.extend([
        "-f",
        "raw",
        "-O",
        "luks",
        "-o",
        "key-secret=s0,iter-time=10",
        "plain.raw",
        "out.luks",
    ]);
    assert_eq!(kernel_copies(&fx, &args), 0, "plaintext went to the kernel");
    same(
        "driver=raw,file.filename=plain.raw",
        "driver=luks,file.filename=out.luks,key-secret=s0",
    );
    let image = fx.read("out.luks");
    assert!(
        !image.windows(64).any(|w| w.iter().all(|&b| b == 5)),
        "plaintext in the LUKS image"
    );
}
