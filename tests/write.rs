//! The write path through the library: random writes, zero writes and
//! discards against an in-memory model of the guest content. Afterwards
//! `qemu-img check` finds no error and no leak, and `qemu-img convert`
//! reads back exactly the model. Internal snapshots keep their content.

mod common;

use common::{patch_qed_l2, stderr, stdout, Fixture, Rng};
use qimg::chain::Chain;

/// How discards behave on this image, for the model.
#[derive(Clone, Copy, PartialEq)]
enum Discard {
    /// Whole clusters read as zeros afterwards.
    Zeroes,
    /// Discards are not issued (they may keep the data).
    Skip,
}

/// Guest content as qemu-img reads it.
fn guest_content(fx: &Fixture, image: &str, snapshot: Option<&str>) -> Vec<u8> {
    let mut args = vec!["convert", "-U"];
    if let Some(s) = snapshot {
        args.extend(["-l", s]);
    }
    args.extend(["-O", "raw", image, "content.raw"]);
    let out = fx.qemu_img(&args);
    assert!(
        out.status.success(),
        "qemu-img convert {image}: {}",
        stderr(&out)
    );
    let bytes = fx.read("content.raw");
    std::fs::remove_file(fx.path("content.raw")).unwrap();
    bytes
}

/// Runs `ops` random operations on `image` and checks the result.
fn exercise(fx: &Fixture, image: &str, seed: u64, ops: usize, discard: Discard) {
    let mut model = guest_content(fx, image, None);
    let size = model.len() as u64;
    let info = stdout(&fx.qemu_img(&["info", "--output=json", image]));
    let cs: u64 = info
        .split("\"cluster-size\": ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(65536);
    let mut rng = Rng(seed | 1);
    {
        let chain = Chain::open_writable(&fx.path(image), None).expect("open for writing");
        let img = chain.top().image.clone();
        for _ in 0..ops {
            let off = rng.below(size);
            let max = (size - off).min(3 * cs + 1000);
            let len = match rng.below(4) {
                0 => 1 + rng.below(600),
                1 => cs,
                _ => 1 + rng.below(max),
            }
            .min(size - off)
            .max(1);
            let range = off as usize..(off + len) as usize;
            match rng.below(10) {
                0..=5 => {
                    let byte = (rng.next() & 0xff) as u8;
                    let data: Vec<u8> = (0..len)
                        .map(|i| byte.wrapping_add((i % 251) as u8))
                        .collect();
                    img.write(off, &data).expect("write");
                    model[range].copy_from_slice(&data);
                }
                6 | 7 => {
                    img.write_zeroes(off, len, rng.below(2) == 0)
                        .expect("write_zeroes");
                    model[range].fill(0);
                }
                8 if discard == Discard::Zeroes => {
                    img.discard(off, len).expect("discard");
                    let (a, b) = (off.div_ceil(cs) * cs, (off + len) / cs * cs);
                    if a < b {
                        model[a as usize..b as usize].fill(0);
                    }
                }
                _ => img.flush().expect("flush"),
            }
        }
        img.flush().expect("final flush");
    }
    let check = fx.qemu_img(&["check", image]);
    assert!(
        check.status.success(),
        "{image} (seed {seed}): qemu-img check:\n{}{}",
        stdout(&check),
        stderr(&check)
    );
    let got = guest_content(fx, image, None);
    assert!(
        got == model,
        "{image} (seed {seed}): guest content differs from the model"
    );
    // qimg reads it back the same.
    let chain = Chain::open(&fx.path(image), None).unwrap();
    let mut buf = vec![0u8; model.len()];
    chain.view().read(0, &mut buf).unwrap();
    assert!(
        buf == model,
        "{image}: qimg reads other content than qemu-img"
    );
}

fn qcow2(fx: &Fixture, name: &str, opts: &str, size: &str) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 -o {opts} {name} {size}
         qemu-io -c 'write -P 0x5a 0 100k' -c 'write -z 200k 64k' {name} >/dev/null"
    ));
}

#[test]
fn versions_and_cluster_sizes() {
    let fx = Fixture::new();
    for (i, (opts, size)) in [
        ("compat=1.1", "4M"),
        ("compat=0.10", "4M"),
        ("cluster_size=512", "1M"),
        ("cluster_size=4k", "2M"),
        ("cluster_size=2M", "16M"),
        ("compat=0.10,cluster_size=512", "1M"),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("v{i}.qcow2");
        qcow2(&fx, &name, opts, size);
        exercise(&fx, &name, 0x1234 + i as u64, 300, Discard::Zeroes);
    }
}

#[test]
fn refcount_widths_and_table_growth() {
    let fx = Fixture::new();
    for (i, (opts, size)) in [
        ("refcount_bits=1", "4M"),
        ("refcount_bits=2", "4M"),
        ("refcount_bits=64", "4M"),
        // 64-bit refcounts in 512-byte clusters: a block covers 32 KiB, the
        // first table 2 MiB, so the refcount table must grow.
        ("refcount_bits=64,cluster_size=512", "4M"),
        ("refcount_bits=1,cluster_size=512", "2M"),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("r{i}.qcow2");
        qcow2(&fx, &name, opts, size);
        exercise(&fx, &name, 0x9876 + i as u64, 300, Discard::Zeroes);
    }
}

#[test]
fn extended_l2() {
    let fx = Fixture::new();
    for (i, opts) in [
        "extended_l2=on",
        "extended_l2=on,cluster_size=16k",
        "extended_l2=on,cluster_size=2M",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("x{i}.qcow2");
        qcow2(&fx, &name, opts, "8M");
        exercise(&fx, &name, 0x4242 + i as u64, 300, Discard::Zeroes);
    }
}

#[test]
fn snapshots_keep_their_content() {
    let fx = Fixture::new();
    for (i, opts) in [
        "compat=1.1",
        "compat=0.10",
        "extended_l2=on",
        "cluster_size=4k,refcount_bits=2",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("s{i}.qcow2");
        qcow2(&fx, &name, opts, "4M");
        fx.sh(&format!(
            "qemu-io -c 'write -P 0x77 1M 1M' {name} >/dev/null && qemu-img snapshot -c snap {name}"
        ));
        let before = guest_content(&fx, &name, None);
        exercise(&fx, &name, 0x5150 + i as u64, 200, Discard::Zeroes);
        assert!(
            guest_content(&fx, &name, Some("snap")) == before,
            "{name}: snapshot content changed"
        );
    }
}

#[test]
fn compressed_clusters_are_overwritten() {
    let fx = Fixture::new();
    for (i, opts) in [
        "compression_type=zlib",
        "compression_type=zstd,cluster_size=4k",
        "extended_l2=on",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("c{i}.qcow2");
        fx.sh(&format!(
            "qemu-img create -q -f raw src.raw 4M
             qemu-io -f raw -c 'write -P 0x41 0 3M' src.raw >/dev/null
             qemu-img convert -c -O qcow2 -o {opts} src.raw {name}"
        ));
        exercise(&fx, &name, 0xc0de + i as u64, 200, Discard::Zeroes);
    }
}

#[test]
fn overlays_copy_from_their_backing_file() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f raw short.raw 1M
         qemu-io -f raw -c 'write -P 0x22 0 1M' short.raw >/dev/null");
    for (i, opts) in [
        "compat=1.1",
        "compat=0.10",
        "extended_l2=on",
        "cluster_size=512",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("o{i}.qcow2");
        fx.sh(&format!(
            "qemu-img create -q -f qcow2 -o {opts} -b base.qcow2 -F qcow2 {name}"
        ));
        let discard = if opts.contains("0.10") {
            Discard::Skip
        } else {
            Discard::Zeroes
        };
        exercise(&fx, &name, 0xbac + i as u64, 250, discard);
    }
    // A backing file shorter than the overlay.
    fx.sh("qemu-img create -q -f qcow2 -b short.raw -F raw over-short.qcow2 4M");
    exercise(&fx, "over-short.qcow2", 0x5407, 250, Discard::Zeroes);
}

#[test]
fn external_data_files() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o data_file=d1.raw e1.qcow2 4M
         qemu-img create -q -f qcow2 -o data_file=d2.raw,data_file_raw=on e2.qcow2 4M
         qemu-img create -q -f qcow2 -o data_file=d3.raw,extended_l2=on e3.qcow2 4M");
    exercise(&fx, "e1.qcow2", 0xda7a, 250, Discard::Zeroes);
    exercise(&fx, "e2.qcow2", 0xda7b, 250, Discard::Skip);
    exercise(&fx, "e3.qcow2", 0xda7c, 250, Discard::Zeroes);
    // With data_file_raw the data file alone is the guest content.
    let raw = fx.read("d2.raw");
    assert!(
        raw == guest_content(&fx, "e2.qcow2", None),
        "d2.raw is not the guest content"
    );
}

#[test]
fn refuses_corrupt_images_and_repairs_dirty_ones() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 c.qcow2 1M && cp c.qcow2 d.qcow2");
    let mut b = fx.read("c.qcow2");
    b[79] |= 2;
    fx.write("c.qcow2", &b);
    let err = Chain::open_writable(&fx.path("c.qcow2"), None)
        .expect_err("corrupt image opened for writing");
    assert!(err.to_string().contains("qimg check -r all"), "{err}");
    // A dirty image is repaired and then opened; the dirty bit is gone.
    let mut b = fx.read("d.qcow2");
    b[79] |= 1;
    fx.write("d.qcow2", &b);
    drop(Chain::open_writable(&fx.path("d.qcow2"), None).expect("dirty image repaired and opened"));
    assert_eq!(fx.read("d.qcow2")[79] & 1, 0);
}

#[test]
fn qed_images() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qed q1.qed 8M
         qemu-io -f qed -c 'write -P 0x5a 0 100k' -c 'write -z 200k 64k' q1.qed >/dev/null
         qemu-img create -q -f qed -o cluster_size=4k,table_size=2 q2.qed 2M
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qed -b base.qcow2 -F qcow2 q3.qed
         qemu-img create -q -f raw base.raw 1M
         qemu-io -f raw -c 'write -P 0x22 0 1M' base.raw >/dev/null
         qemu-img create -q -f qed -o cluster_size=4k -b base.raw -F raw q4.qed 2M");
    for (i, name) in ["q1.qed", "q2.qed", "q3.qed", "q4.qed"].iter().enumerate() {
        exercise(&fx, name, 0x9ed + i as u64, 250, Discard::Skip);
        // The need-check flag is clear after the final flush.
        assert_eq!(fx.read(name)[16] & 2, 0, "{name}: need-check left set");
    }
}

/// A QED image left with need-check set is checked before qimg writes to
/// it, as QEMU does: an entry pointing at the end of the file is zeroed
/// (else the next appended cluster would serve two guest clusters), and
/// damage a check cannot fix refuses the image untouched.
#[test]
fn a_qed_image_needing_a_check_is_checked_before_writing() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qed a.qed 1M
         qemu-io -f qed -c 'write -P 0x55 0 64k' a.qed >/dev/null
         qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 0x77 128k 64k' src.raw >/dev/null
         cp a.qed b.qed");
    let set_need_check = |name: &str| {
        let mut b = fx.read(name);
        b[16] |= 2;
        fx.write(name, &b);
    };
    let end = fx.read("a.qed").len() as u64;
    patch_qed_l2(&fx, "a.qed", 1, end);
    set_need_check("a.qed");
    let out = fx.qimg(&["convert", "-n", "-O", "qed", "src.raw", "a.qed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("a.qed");
    fx.assert_same("src.raw", "a.qed");
    assert_eq!(fx.read("a.qed")[16] & 2, 0, "need-check left set");

    // Two entries naming one cluster: zeroing cannot fix that.
    let data = u64::from_le_bytes(fx.read("b.qed")[0x10000..0x10008].try_into().unwrap());
    let mut b = fx.read("b.qed");
    let first = u64::from_le_bytes(b[data as usize..data as usize + 8].try_into().unwrap());
    b[data as usize + 8..data as usize + 16].copy_from_slice(&first.to_le_bytes());
    fx.write("b.qed", &b);
    set_need_check("b.qed");
    let before = fx.read("b.qed");
    let out = fx.qimg(&["convert", "-n", "-O", "qed", "src.raw", "b.qed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("b.qed: image was not closed cleanly (need-check set)"),
        "{}",
        stderr(&out)
    );
    assert!(fx.read("b.qed") == before, "a refused image was changed");
}

#[test]
fn a_dirty_lazy_refcount_image_is_repaired_before_writing() {
    use std::process::{Command, Stdio};
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 1M");
    let mut writer = Command::new("qemu-io")
        .args(["-c", "write -P 7 0 64k", "-c", "sleep 100000", "lazy.qcow2"])
        .current_dir(fx.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !(fx.read("lazy.qcow2")[79] & 1 == 1 && fx.read("lazy.qcow2").len() > 0x50000) {
        assert!(start.elapsed().as_secs() < 20, "qemu-io never wrote");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(
        fx.qemu_img(&["check", "lazy.qcow2"]).status.code(),
        Some(2),
        "the crash left stale refcounts"
    );
    exercise(&fx, "lazy.qcow2", 0x1a27, 100, Discard::Zeroes);
    assert_eq!(fx.read("lazy.qcow2")[79] & 1, 0, "dirty bit still set");
}

#[test]
fn set_backing_rewrites_the_header() {
    use qimg::format::BackingSpec;
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 old.qcow2 1M
         qemu-img create -q -f raw new.raw 1M
         qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 v3.qcow2
         qemu-img create -q -f qcow2 -o compat=0.10 -b old.qcow2 -F qcow2 v2.qcow2
         qemu-img create -q -f qcow2 -o cluster_size=512 -b old.qcow2 -F qcow2 small.qcow2
         qemu-img create -q -f qed -b old.qcow2 -F qcow2 q.qed
         qemu-io -c 'write -P 9 0 64k' v3.qcow2 >/dev/null");
    for image in ["v3.qcow2", "v2.qcow2", "small.qcow2", "q.qed"] {
        let set = |spec: Option<BackingSpec>| {
            let chain = Chain::open_writable(&fx.path(image), None).expect("open");
            chain
                .top()
                .image
                .set_backing(spec.clone())
                .expect("set_backing");
            assert_eq!(chain.top().image.backing(), spec, "{image}: backing()");
        };
        set(Some(BackingSpec {
            name: "new.raw".into(),
            format: Some("raw".into()),
        }));
        let info = stdout(&fx.qemu_img(&["info", image]));
        assert!(
            info.contains("backing file: new.raw\nbacking file format: raw\n"),
            "{image}: {info}"
        );
        fx.assert_clean(image);
        set(None);
        let info = stdout(&fx.qemu_img(&["info", image]));
        assert!(!info.contains("backing file"), "{image}: {info}");
        fx.assert_clean(image);
    }
    let data = guest_content(&fx, "v3.qcow2", None);
    assert!(data[..65536].iter().all(|&b| b == 9) && data[65536..].iter().all(|&b| b == 0));
}

/// A backing file name the header cannot hold is refused, and leaves the
/// header as it was for every later write (QED rewrites its header when
/// the next allocating write sets need-check).
#[test]
fn a_refused_backing_name_changes_nothing() {
    use qimg::format::BackingSpec;
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 old.qcow2 1M
         qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 v3.qcow2
         qemu-img create -q -f qed -b old.qcow2 -F qcow2 q.qed");
    for image in ["v3.qcow2", "q.qed"] {
        let chain = Chain::open_writable(&fx.path(image), None).expect("open");
        let top = chain.top().image.as_ref();
        let refused = top.set_backing(Some(BackingSpec {
            name: "x".repeat(2000),
            format: Some("raw".into()),
        }));
        assert!(refused.is_err(), "{image}: a 2000-byte name was accepted");
        assert_eq!(top.backing().map(|b| b.name), Some("old.qcow2".into()));
        top.write(0, &[7u8; 65536]).expect("write");
        top.flush().expect("flush");
        drop(chain);
        let info = stdout(&fx.qemu_img(&["info", image]));
        assert!(
            info.contains("backing file: old.qcow2\n"),
            "{image}: {info}"
        );
        fx.assert_clean(image);
    }
}
