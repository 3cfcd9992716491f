//! Damaged snapshot tables that QEMU still reads, or refuses with a way
//! out: entries of a version 3 image without the extra data v3 requires,
//! entries with more than 1 KiB of extra data, and tables larger than
//! 64 MiB. qimg opens, checks and repairs them as qemu-img does; every
//! case runs both tools on copies of the same image.

mod common;

use common::{first_snapshot_l1, replace_snapshot_table, snapshot_entry, stderr, stdout, Fixture};

/// A 1 MiB qcow2 v3 image with data and one snapshot of it (`snap1`),
/// made by qemu-img, whose snapshot table is then replaced by what
/// `entries` makes of the snapshot's L1 table.
fn image_with_table(fx: &Fixture, name: &str, entries: impl Fn(u64, u32) -> Vec<Vec<u8>>) {
    fx.sh(&format!(
        "qemu-img create -q -f qcow2 {name} 1M
         qemu-io -c 'write -P 0x3c 0 128k' {name} >/dev/null
         qemu-img snapshot -c snap1 {name}
         qemu-io -c 'write -P 0x4d 64k 64k' {name} >/dev/null"
    ));
    let (l1, size) = first_snapshot_l1(fx, name);
    replace_snapshot_table(fx, name, &entries(l1, size));
}

/// An entry for the snapshot `snap1` (ID 1) with `extra` as its extra data.
fn named_entry(l1: u64, size: u32, extra: &[u8]) -> Vec<u8> {
    let mut e = snapshot_entry(l1, size, extra, "1", 5);
    let name_at = 40 + extra.len() + 1;
    e[name_at..name_at + 5].copy_from_slice(b"snap1");
    e
}

/// Runs `args` (with the image last) through both tools on their own
/// copies of `image`; returns (qemu-img's output, qimg's output).
fn both(fx: &Fixture, image: &str, args: &[&str]) -> (std::process::Output, std::process::Output) {
    let (q, m, _, _) = common::on_copies(fx, image, args, &[]);
    (q, m)
}

/// qemu-img's `info --output=json` of a file, without its name and disk
/// usage (qemu-img also punches the old table's cluster out of the file).
fn info_json(fx: &Fixture, file: &str) -> String {
    let out = fx.qemu_img(&["info", "--output=json", file]);
    assert!(
        out.status.success(),
        "qemu-img info {file}: {}",
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .filter(|l| !l.contains("\"filename\"") && !l.contains("\"actual-size\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `check -r all` repairs `image` the same way with both tools: the same
/// exit code and summary, and images that qemu-img checks clean and
/// describes alike, with the same guest content.
fn assert_repairs_alike(fx: &Fixture, image: &str) {
    let (q, m) = both(fx, image, &["check", "-r", "all"]);
    assert_eq!(
        q.status.code(),
        Some(0),
        "qemu-img -r all {image}: {}",
        stderr(&q)
    );
    assert_eq!(
        m.status.code(),
        Some(0),
        "qimg -r all {image}: {}",
        stderr(&m)
    );
    assert_eq!(stdout(&m), stdout(&q), "{image}: summaries");
    let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
    fx.assert_clean(&ours);
    assert_eq!(
        info_json(fx, &ours),
        info_json(fx, &theirs),
        "{image}: info after repair"
    );
    fx.assert_same(&theirs, &ours);
    // The snapshot still reads as it was taken.
    for file in [&theirs, &ours] {
        fx.sh(&format!(
            "qemu-img convert -O raw -l snap1 {file} {file}.snap.raw"
        ));
    }
    fx.assert_same(&format!("{theirs}.snap.raw"), &format!("{ours}.snap.raw"));
}

#[test]
fn v3_entries_without_enough_extra_data_are_opened_checked_and_completed() {
    let fx = Fixture::new();
    for extra in [0usize, 8] {
        let name = format!("short{extra}.qcow2");
        image_with_table(&fx, &name, |l1, size| {
            vec![named_entry(l1, size, &vec![0u8; extra])]
        });
        let (q, m) = both(&fx, &name, &["info"]);
        assert!(q.status.success() && m.status.success(), "{}", stderr(&m));
        let listing = |o: &std::process::Output| {
            stdout(o)
                .lines()
                .skip_while(|l| !l.starts_with("Snapshot list:"))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(listing(&m), listing(&q), "{name}: snapshot list");
        let (q, m) = both(&fx, &name, &["check"]);
        assert_eq!(m.status.code(), q.status.code(), "{name}: check exit");
        assert_eq!(q.status.code(), Some(2));
        assert_eq!(stderr(&m), stderr(&q), "{name}: check lines");
        assert_repairs_alike(&fx, &name);
    }
}

#[test]
fn more_than_1k_of_extra_data_is_refused_until_repaired() {
    let fx = Fixture::new();
    image_with_table(&fx, "fat.qcow2", |l1, size| {
        let mut extra = vec![0u8; 2048];
        extra[8..16].copy_from_slice(&(1u64 << 20).to_be_bytes());
        extra[1500] = 0x77;
        vec![named_entry(l1, size, &extra)]
    });
    let (q, m) = both(&fx, "fat.qcow2", &["info"]);
    assert!(!q.status.success());
    assert_eq!(m.status.code(), Some(1));
    let err = stderr(&m);
    assert!(
        err.contains("Too much extra metadata in snapshot table entry 0")
            && err.contains("check -r all")
            && err.lines().count() == 1,
        "{err}"
    );
    let (q, m) = both(&fx, "fat.qcow2", &["check"]);
    assert_eq!(q.status.code(), Some(1));
    assert_eq!(m.status.code(), Some(1), "{}", stderr(&m));
    assert_repairs_alike(&fx, "fat.qcow2");
}

#[test]
fn a_snapshot_table_over_64_mib_is_refused_until_repaired() {
    let fx = Fixture::new();
    // 1100 entries of 64 KiB each (a long name): the last 77 lie past 64 MiB.
    image_with_table(&fx, "huge.qcow2", |l1, size| {
        let mut extra = vec![0u8; 24];
        extra[8..16].copy_from_slice(&(1u64 << 20).to_be_bytes());
        (0..1100)
            .map(|i| {
                let (l1, size) = if i == 0 { (l1, size) } else { (0, 0) };
                snapshot_entry(l1, size, &extra, &(i + 1).to_string(), 65535 - 8)
            })
            .collect()
    });
    let (q, m) = both(&fx, "huge.qcow2", &["info"]);
    assert!(!q.status.success());
    assert!(stderr(&q).contains("You can force-remove all 77 overhanging snapshots"));
    assert_eq!(m.status.code(), Some(1));
    let err = stderr(&m);
    assert!(
        err.contains("Snapshot table is too big")
            && err.contains("all 77 overhanging snapshots")
            && err.lines().count() == 1,
        "{err}"
    );
    let (q, m) = both(&fx, "huge.qcow2", &["check", "-r", "all"]);
    assert_eq!(q.status.code(), Some(0), "{}", stderr(&q));
    assert_eq!(m.status.code(), Some(0), "{}", stderr(&m));
    // qemu-img puts the new 64 MiB table where the old one began; qimg
    // writes it into free space first, so only the end offsets differ.
    let summary = |o: &std::process::Output| {
        stdout(o)
            .lines()
            .filter(|l| !l.starts_with("Image end offset"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(summary(&m), summary(&q));
    assert!(stderr(&m).contains("Discarding 77 overhanging snapshots (snapshot table is too big)"));
    fx.assert_clean("m-huge.qcow2");
    let count = |file: &str| u32::from_be_bytes(fx.read(file)[60..64].try_into().unwrap());
    assert_eq!(count("m-huge.qcow2"), 1023);
    assert_eq!(count("m-huge.qcow2"), count("q-huge.qcow2"));
    fx.assert_same("q-huge.qcow2", "m-huge.qcow2");
}
