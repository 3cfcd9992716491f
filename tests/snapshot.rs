//! `qimg snapshot` against `qemu-img snapshot` on copies of the same
//! images: exit codes, output (the -l table byte for byte, dates aside),
//! error sentences, `qemu-img check`, the guest data of the active layer
//! and of every snapshot; snapshots made by one tool applied by the other;
//! crash injection at every write of -c, -a and -d; lima's command lines.

mod common;

use common::{stderr, stdout, Daemon, Fixture};
use qimg::format::qcow2::Qcow2;
use qimg::format::{InternalSnapshots, NewSnapshot};
use qimg::io::FaultStorage;
use std::process::Output;
use std::sync::Arc;

/// Replaces every `YYYY-MM-DD HH:MM:SS` in `text` with `DATE`.
fn mask_dates(text: &str) -> String {
    let pattern = b"dddd-dd-dd dd:dd:dd";
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let here = bytes.len() - i >= pattern.len()
            && pattern.iter().zip(&bytes[i..]).all(|(p, b)| match p {
                b'd' => b.is_ascii_digit(),
                other => other == b,
            });
        if here {
            out.push_str("DATE");
            i += pattern.len();
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// The error sentences of an output, without the program prefix and the
/// file name qimg puts first.
fn sentences(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| !l.starts_with("WARNING: Image format") && !l.starts_with("         "))
        .map(|l| {
            l.trim_start_matches("qemu-img: ")
                .trim_start_matches("qimg: ")
                .to_string()
        })
        .collect()
}

/// The snapshot IDs of an image, from qemu-img's JSON.
fn snapshot_ids(fx: &Fixture, image: &str) -> Vec<(String, String)> {
    let out = fx.qemu_img(&["info", "--output=json", "-U", image]);
    assert!(out.status.success(), "info {image}: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    v["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap().to_string(),
                        s["name"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The guest bytes of `image`, or of its snapshot `id`, through qemu-img.
fn guest(fx: &Fixture, image: &str, id: Option<&str>) -> Vec<u8> {
    let mut args = vec!["convert", "-U", "-O", "raw"];
    let spec;
    if let Some(id) = id {
        spec = format!("snapshot.id={id}");
        args.extend(["-l", &spec]);
    }
    args.extend([image, "guest.raw"]);
    let out = fx.qemu_img(&args);
    assert!(
        out.status.success(),
        "convert {image} {id:?}: {}",
        stderr(&out)
    );
    fx.read("guest.raw")
}

/// The fields of every snapshot table entry of `file` that both tools
/// must write alike (all but the L1 table's place and size and the date):
/// ID, name, VM clock, 32-bit VM state size and the extra data.
fn table_entries(fx: &Fixture, file: &str) -> Vec<(String, String, u64, u32, Vec<u8>)> {
    let b = fx.read(file);
    let be32 = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    let be64 = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
    let (count, mut at) = (be32(60) as usize, be64(64) as usize);
    let mut out = Vec::new();
    for _ in 0..count {
        let id_len = u16::from_be_bytes([b[at + 12], b[at + 13]]) as usize;
        let name_len = u16::from_be_bytes([b[at + 14], b[at + 15]]) as usize;
        let extra_len = be32(at + 36) as usize;
        let extra = b[at + 40..at + 40 + extra_len].to_vec();
        let id_at = at + 40 + extra_len;
        let text =
            |from: usize, len: usize| String::from_utf8_lossy(&b[from..from + len]).into_owned();
        out.push((
            text(id_at, id_len),
            text(id_at + id_len, name_len),
            be64(at + 24),
            be32(at + 32),
            extra,
        ));
        at += (40 + extra_len + id_len + name_len).div_ceil(8) * 8;
    }
    out
}

/// Asserts that qemu-img sees the same in `ours` as in `theirs`: a clean
/// check of ours, the same `snapshot -l` table (dates masked), qimg's
/// `snapshot -l` equal to qemu-img's on the same file byte for byte, the
/// same active disk and the same disk in every snapshot.
fn assert_same_state(fx: &Fixture, theirs: &str, ours: &str, what: &str) {
    fx.assert_clean(ours);
    let list = |file: &str| {
        let out = fx.qemu_img(&["snapshot", "-l", file]);
        assert!(out.status.success(), "{what}: -l {file}: {}", stderr(&out));
        stdout(&out)
    };
    let mine = fx.qimg(&["snapshot", "-l", ours]);
    assert!(mine.status.success(), "{what}: {}", stderr(&mine));
    assert_eq!(stdout(&mine), list(ours), "{what}: qimg -l differs");
    assert_eq!(
        mask_dates(&list(ours)),
        mask_dates(&list(theirs)),
        "{what}: snapshot tables differ"
    );
    assert_eq!(
        table_entries(fx, ours),
        table_entries(fx, theirs),
        "{what}: snapshot table entries differ"
    );
    // info's JSON snapshot list is qemu-img's.
    let json = |out: Output| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
        v["snapshots"].clone()
    };
    assert_eq!(
        json(fx.qimg(&["info", "--output=json", ours])),
        json(fx.qemu_img(&["info", "--output=json", ours])),
        "{what}: info --output=json snapshots"
    );
    // info's snapshot list agrees with -l.
    let info = stdout(&fx.qimg(&["info", ours]));
    assert!(info.contains(&list(ours)), "{what}: info shows\n{info}");
    assert!(
        guest(fx, ours, None) == guest(fx, theirs, None),
        "{what}: active disks differ"
    );
    for (id, _) in snapshot_ids(fx, theirs) {
        assert!(
            guest(fx, ours, Some(&id)) == guest(fx, theirs, Some(&id)),
            "{what}: snapshot {id} differs"
        );
    }
}

/// Runs `snapshot ARGS FILE` with qemu-img on `theirs` and qimg on `ours`
/// and asserts the same outcome.
fn step(fx: &Fixture, theirs: &str, ours: &str, args: &[&str]) {
    let q = fx.qemu_img(&[&["snapshot"][..], args, &[theirs]].concat());
    let m = fx.qimg(&[&["snapshot"][..], args, &[ours]].concat());
    let what = format!("snapshot {args:?} on {ours}");
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{what}: exit\nqemu-img: {}\nqimg: {}",
        stderr(&q),
        stderr(&m)
    );
    assert_eq!(
        mask_dates(&stdout(&m)),
        mask_dates(&stdout(&q)),
        "{what}: stdout"
    );
    if !q.status.success() {
        let qs: Vec<String> = sentences(&q)
            .into_iter()
            .map(|s| s.replace(theirs, ours))
            .collect();
        let ms = sentences(&m);
        assert!(
            qs.iter().all(|s| ms.iter().any(|m| m.contains(s.as_str()))),
            "{what}: qemu-img said {qs:?}, qimg {ms:?}"
        );
    }
    assert_same_state(fx, theirs, ours, &what);
}

/// Writes the same bytes into both copies with qemu-io.
fn write_both(fx: &Fixture, theirs: &str, ours: &str, cmd: &str) {
    for f in [theirs, ours] {
        fx.sh(&format!("qemu-io -c '{cmd}' {f} >/dev/null"));
    }
}

/// Images of every kind the brief names; returns their names.
fn images(fx: &Fixture) -> Vec<&'static str> {
    fx.sh("qemu-img create -q -f qcow2 plain.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x12 3M 64k' plain.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k ext.qcow2 2M
         qemu-io -c 'write -P 0x21 4k 8k' -c 'write -P 0x22 1M 512k' ext.qcow2 >/dev/null
         qemu-img create -q -f raw src.raw 2M
         qemu-io -f raw -c 'write -P 0x31 0 2M' src.raw >/dev/null
         qemu-img convert -c -f raw -O qcow2 src.raw comp.qcow2
         qemu-img create -q -f qcow2 -o cluster_size=512 small.qcow2 1M
         qemu-io -c 'write -P 0x41 0 64k' -c 'write -P 0x42 900k 100k' small.qcow2 >/dev/null
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x51 0 4M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 4M
         qemu-io -c 'write -P 0x52 1M 64k' overlay.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 2M
         qemu-io -c 'write -P 0x61 0 1M' v2.qcow2 >/dev/null");
    vec![
        "plain.qcow2",
        "ext.qcow2",
        "comp.qcow2",
        "small.qcow2",
        "overlay.qcow2",
        "v2.qcow2",
    ]
}

#[test]
fn create_apply_delete_like_qemu_img() {
    let fx = Fixture::new();
    for image in images(&fx) {
        let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
        std::fs::copy(fx.path(image), fx.path(&theirs)).unwrap();
        std::fs::copy(fx.path(image), fx.path(&ours)).unwrap();
        let (t, o) = (theirs.as_str(), ours.as_str());
        let run = |args: &[&str]| step(&fx, t, o, args);
        run(&["-l"]);
        run(&["-c", "first"]);
        // Writes after a snapshot copy on write; the snapshot keeps its data.
        write_both(&fx, t, o, "write -P 0x71 0 96k");
        // A compressed write, where the image has no cluster yet.
        let unallocated = match image {
            "ext.qcow2" => Some("1600k"),
            "small.qcow2" => Some("512k"),
            "v2.qcow2" => Some("1536k"),
            "comp.qcow2" => None,
            _ => Some("2M"),
        };
        if let Some(at) = unallocated {
            write_both(&fx, t, o, &format!("write -c -P 0x72 {at} 64k"));
        }
        run(&["-c", "second"]);
        // Names need not be unique; -q prints nothing.
        run(&["-q", "-c", "first"]);
        run(&[]);
        write_both(&fx, t, o, "write -z 0 32k");
        run(&["-a", "first"]);
        write_both(&fx, t, o, "write -P 0x73 64k 64k");
        // By ID.
        run(&["-a", "2"]);
        // -d takes names only: ID 3 is not found, the first "first" goes.
        run(&["-d", "3"]);
        run(&["-d", "first"]);
        run(&["-a", "nope"]);
        run(&["-d", "nope"]);
        run(&["-c", "third"]);
        run(&["-l"]);
        run(&["-q", "-l"]);
        // qemu-img applies and deletes what qimg made.
        let cross = format!("x-{image}");
        std::fs::copy(fx.path(o), fx.path(&cross)).unwrap();
        let want = guest(&fx, o, Some("2"));
        let out = fx.qemu_img(&["snapshot", "-a", "second", &cross]);
        assert!(out.status.success(), "{image}: {}", stderr(&out));
        fx.assert_clean(&cross);
        assert!(guest(&fx, &cross, None) == want, "{image}: qemu-img -a");
        let out = fx.qemu_img(&["snapshot", "-d", "second", &cross]);
        assert!(out.status.success(), "{image}: {}", stderr(&out));
        fx.assert_clean(&cross);
        // qimg applies and deletes what qemu-img made.
        std::fs::copy(fx.path(t), fx.path(&cross)).unwrap();
        let want = guest(&fx, t, Some("2"));
        let out = fx.qimg(&["snapshot", "-a", "second", &cross]);
        assert!(out.status.success(), "{image}: {}", stderr(&out));
        fx.assert_clean(&cross);
        assert!(guest(&fx, &cross, None) == want, "{image}: qimg -a");
        for id in ["second", "first", "third"] {
            let out = fx.qimg(&["snapshot", "-d", id, &cross]);
            assert!(out.status.success(), "{image}: {}", stderr(&out));
            fx.assert_clean(&cross);
        }
        assert!(snapshot_ids(&fx, &cross).is_empty());
        // Nothing is left referenced: every cluster a deleted snapshot
        // alone used is free again (the check above found no leak).
        assert!(guest(&fx, &cross, None) == want, "{image}: after -d");
    }
}

#[test]
fn apply_restores_the_snapshot_size() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o cluster_size=512 s.qcow2 1M
         qemu-io -c 'write -P 0x81 0 1M' s.qcow2 >/dev/null
         cp s.qcow2 q-s.qcow2 && cp s.qcow2 m-s.qcow2");
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-c", "small"]);
    // Growing by 300 MiB moves the 512-byte-cluster L1 table.
    for f in ["q-s.qcow2", "m-s.qcow2"] {
        fx.sh(&format!(
            "qemu-img resize -q {f} 300M && qemu-io -c 'write -P 0x82 200M 64k' {f} >/dev/null"
        ));
    }
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-c", "big"]);
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-a", "small"]);
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-a", "big"]);
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-d", "small"]);
    step(&fx, "q-s.qcow2", "m-s.qcow2", &["-a", "big"]);
}

#[test]
fn errors_like_qemu_img() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 a.qcow2 1M
         qemu-img create -q -f raw r.raw 1M
         qemu-img create -q -f qed e.qed 1M");
    let both = |args: &[&str]| {
        let q = fx.qemu_img(&[&["snapshot"][..], args].concat());
        let m = fx.qimg(&[&["snapshot"][..], args].concat());
        let what = format!("snapshot {args:?}");
        assert_eq!(m.status.code(), q.status.code(), "{what}: {}", stderr(&m));
        assert_eq!(stdout(&m), stdout(&q), "{what}: stdout");
        (sentences(&q), sentences(&m))
    };
    for args in [
        &["-a", "x", "a.qcow2"][..],
        &["-d", "x", "a.qcow2"],
        &["-U", "-c", "x", "a.qcow2"],
        &["-U", "-d", "x", "a.qcow2"],
        &["-f", "raw", "-c", "x", "r.raw"],
        &["-f", "raw", "-a", "x", "r.raw"],
        &["-f", "raw", "-d", "x", "r.raw"],
        &["-f", "raw", "-l", "r.raw"],
        &["-c", "x", "e.qed"],
        &["-a", "x", "e.qed"],
        &["-d", "x", "e.qed"],
        &["-l", "e.qed"],
        &["-U", "-l", "a.qcow2"],
    ] {
        let (qs, ms) = both(args);
        assert!(
            qs.iter().all(|s| ms.iter().any(|m| m.contains(s.as_str()))),
            "{args:?}: qemu-img said {qs:?}, qimg {ms:?}"
        );
    }
    // 1-bit refcounts cannot count a second reference: refused before
    // anything is written (qemu-img leaks a cluster; qimg leaves none).
    fx.sh("qemu-img create -q -f qcow2 -o refcount_bits=1 one.qcow2 1M
         qemu-io -c 'write 0 64k' one.qcow2 >/dev/null
         cp one.qcow2 q-one.qcow2");
    let q = fx.qemu_img(&["snapshot", "-c", "x", "q-one.qcow2"]);
    let m = fx.qimg(&["snapshot", "-c", "x", "one.qcow2"]);
    assert_eq!(m.status.code(), q.status.code());
    let qs = sentences(&q);
    assert!(
        qs.iter()
            .all(|s| sentences(&m).iter().any(|m| m.contains(s.as_str()))),
        "qemu-img said {qs:?}, qimg {:?}",
        sentences(&m)
    );
    fx.assert_clean("one.qcow2");
    // Persistent bitmaps: -c and -d keep them as they are (not in use),
    // -a is refused, as qemu-img.
    fx.sh("qemu-img create -q -f qcow2 bm.qcow2 1M
         qemu-img bitmap --add bm.qcow2 b0
         cp bm.qcow2 q-bm.qcow2");
    let bitmaps = |f: &str| {
        let out = fx.qemu_img(&["info", "--output=json", f]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["format-specific"]["data"]["bitmaps"].clone()
    };
    for action in [&["-c", "s"][..], &["-a", "s"], &["-d", "s"]] {
        let (q, m) = (
            fx.qemu_img(&[&["snapshot"][..], action, &["q-bm.qcow2"]].concat()),
            fx.qimg(&[&["snapshot"][..], action, &["bm.qcow2"]].concat()),
        );
        assert_eq!(
            m.status.code(),
            q.status.code(),
            "{action:?}: {}",
            stderr(&m)
        );
        let qs = sentences(&q);
        assert!(
            qs.iter()
                .all(|s| sentences(&m).iter().any(|m| m.contains(s.as_str()))),
            "{action:?}: qemu-img said {qs:?}, qimg {:?}",
            sentences(&m)
        );
        assert_eq!(bitmaps("bm.qcow2"), bitmaps("q-bm.qcow2"), "{action:?}");
        fx.assert_clean("bm.qcow2");
    }
    // Mixed actions: refused by both (the wording is each parser's own).
    let (qs, ms) = both(&["-l", "-c", "x", "a.qcow2"]);
    assert!(!qs.is_empty() && !ms.is_empty());
    let (_, ms) = both(&["-c", "x", "missing.qcow2"]);
    assert!(ms.iter().any(|m| m.contains("missing.qcow2")), "{ms:?}");
    // Nothing was written by the refusals.
    assert!(snapshot_ids(&fx, "a.qcow2").is_empty());
}

#[test]
fn an_image_in_use_is_refused_and_listed_with_u() {
    let fx = Fixture::new();
    fx.sh("mkdir d && cd d && qemu-img create -q -f qcow2 top.qcow2 1M
         qemu-img snapshot -c one top.qcow2");
    let _daemon = Daemon::start(&fx, "d", "top.qcow2");
    let before = fx.read("d/top.qcow2");
    for action in [&["-c", "two"][..], &["-a", "one"], &["-d", "one"]] {
        let args = [&["snapshot"][..], action, &["d/top.qcow2"]].concat();
        let q = fx.qemu_img(&args);
        let m = fx.qimg(&args);
        assert_eq!(m.status.code(), q.status.code(), "{args:?}");
        // qemu-img's words for the lock, which scripts match.
        let words = "Failed to get \"write\" lock";
        assert!(
            stderr(&q).contains(words),
            "{args:?}: qemu-img said {}",
            stderr(&q)
        );
        assert!(
            stderr(&m).contains(&format!("d/top.qcow2: {words}")),
            "{args:?}: {}",
            stderr(&m)
        );
    }
    assert!(fx.read("d/top.qcow2") == before, "a refused command wrote");
    let q = fx.qemu_img(&["snapshot", "-l", "-U", "d/top.qcow2"]);
    let m = fx.qimg(&["snapshot", "-l", "-U", "d/top.qcow2"]);
    assert!(m.status.success(), "{}", stderr(&m));
    assert_eq!(stdout(&m), stdout(&q));
    let m = fx.qimg(&["snapshot", "-l", "d/top.qcow2"]);
    assert_eq!(m.status.code(), Some(1));
}

/// lima (github.com/lima-vm/lima, pkg/driver/qemu/qemu.go: Save, Load,
/// Del and List run `qemu-img snapshot -c TAG DISK`, `-a TAG`, `-d TAG`
/// and `-l`, the disk path last) on its instance disk, an overlay over the
/// downloaded base image. List drops the "Snapshot list:" heading, and
/// `limactl snapshot list --quiet` (cmd/limactl/snapshot.go) requires
/// "TAG" as the second field of the first line and prints the second field
/// of every other non-empty line.
#[test]
fn lima_command_lines() {
    let fx = Fixture::new();
    fx.sh("mkdir -p inst && cd inst
         qemu-img create -q -f qcow2 basedisk 8M
         qemu-io -c 'write -P 0x91 0 8M' basedisk >/dev/null
         qemu-img create -q -f qcow2 -F qcow2 -b basedisk disk 16M
         qemu-io -c 'write -P 0x92 1M 1M' disk >/dev/null");
    let disk = fx.path("inst/disk");
    let disk = disk.to_str().unwrap();
    let lima = |args: &[&str]| {
        let out = fx.qimg(&[&["snapshot"][..], args, &[disk]].concat());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let quiet_tags = |out: &str| -> Vec<String> {
        let out = out.replacen("Snapshot list:\n", "", 1);
        let mut tags = Vec::new();
        for (i, line) in out.split('\n').enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if i == 0 {
                assert_eq!(fields.get(1), Some(&"TAG"), "unknown header: {line}");
                continue;
            }
            if !line.is_empty() {
                tags.push(fields[1].to_string());
            }
        }
        tags
    };
    let before = guest(&fx, "inst/disk", None);
    lima(&["-c", "clean"]);
    fx.sh("qemu-io -c 'write -P 0x93 0 4M' inst/disk >/dev/null");
    lima(&["-c", "dirty"]);
    assert_eq!(quiet_tags(&lima(&["-l"])), ["clean", "dirty"]);
    let dirty = guest(&fx, "inst/disk", None);
    lima(&["-a", "clean"]);
    assert!(guest(&fx, "inst/disk", None) == before, "-a clean");
    fx.assert_clean("inst/disk");
    lima(&["-a", "dirty"]);
    assert!(guest(&fx, "inst/disk", None) == dirty, "-a dirty");
    lima(&["-d", "clean"]);
    assert_eq!(quiet_tags(&lima(&["-l"])), ["dirty"]);
    lima(&["-d", "dirty"]);
    assert_eq!(lima(&["-l"]), "");
    fx.assert_clean("inst/disk");
    // qemu-img sees the same (lima may start QEMU on it next).
    let q = fx.qemu_img(&["snapshot", "-l", disk]);
    assert_eq!(stdout(&q), "");
}

/// What a crash may leave that is not corruption: a COPIED flag missing on
/// a cluster of refcount 1 (qemu-img check reports it as an OFLAG_COPIED
/// error, `check -r all` sets it; writes just copy once more). A set flag
/// on a shared cluster would be real corruption and fails here.
fn assert_consistent(fx: &Fixture, name: &str, what: &str) {
    let check = fx.qemu_img(&["check", name]);
    let report = format!("{}{}", stdout(&check), stderr(&check));
    match check.status.code() {
        Some(0) | Some(3) => {}
        Some(2) => {
            for line in report.lines().filter(|l| l.starts_with("ERROR")) {
                assert!(
                    line.starts_with("ERROR OFLAG_COPIED") && line.ends_with(" refcount=1"),
                    "{what}: {line}\n{report}"
                );
                let word = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("l2_entry=").or(w.strip_prefix("l1_entry=")))
                    .expect("entry word");
                let word = u64::from_str_radix(word, 16).unwrap();
                assert_eq!(word >> 63, 0, "{what}: a COPIED flag is set: {line}");
            }
            let fixed = fx.qemu_img(&["check", "-r", "all", name]);
            assert!(
                matches!(fixed.status.code(), Some(0)),
                "{what}: check -r all\n{}",
                stdout(&fixed)
            );
        }
        other => panic!("{what}: check {other:?}\n{report}"),
    }
}

/// Crash safety: -c, -a and -d cut after any of their writes (with any of
/// the unflushed ones kept) leave an image that is consistent (leaks at
/// most, or the missing-flag kind above), whose snapshot list is the old
/// or the new one, whose active disk is the old or the new one, and whose
/// every snapshot shows the disk it captured.
#[test]
fn crash_while_taking_applying_and_deleting_snapshots() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 256k
         qemu-io -c 'write -P 0x91 0 64k' -c 'write -P 0x92 200k 20k' g.qcow2 >/dev/null
         qemu-img snapshot -c old g.qcow2
         qemu-io -c 'write -P 0x93 32k 64k' g.qcow2 >/dev/null
         qemu-img create -q -f raw src.raw 1M
         qemu-io -f raw -c 'write -P 0x94 0 1M' src.raw >/dev/null
         qemu-img convert -c -f raw -O qcow2 -o cluster_size=4k src.raw c.qcow2
         qemu-img snapshot -c old c.qcow2
         qemu-io -c 'write -P 0x95 100k 300k' c.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k x.qcow2 1M
         qemu-io -c 'write -P 0x96 4k 40k' -c 'write -z 512k 64k' x.qcow2 >/dev/null",
    );
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Create,
        Apply,
        Delete,
    }
    let all = [Op::Create, Op::Apply, Op::Delete];
    // x.qcow2 has no snapshot yet: its first one is taken.
    for (image, ops) in [
        ("g.qcow2", &all[..]),
        ("c.qcow2", &all),
        ("x.qcow2", &all[..1]),
    ] {
        let bytes = fx.read(image);
        let active = guest(&fx, image, None);
        let had_one = image != "x.qcow2";
        let old = if had_one {
            guest(&fx, image, Some("1"))
        } else {
            Vec::new()
        };
        for &op in ops {
            let run = |crash_after: u64| {
                let fault = Arc::new(FaultStorage::new(
                    fx.path(image),
                    bytes.clone(),
                    crash_after,
                ));
                let img =
                    Qcow2::open_writable(Box::new(fault.clone()), &fx.path(image)).expect("open");
                let result = match op {
                    Op::Create => img.create_snapshot(&NewSnapshot {
                        name: "new".into(),
                        date_sec: 1,
                        date_nsec: 0,
                    }),
                    Op::Apply => img.apply_snapshot("old"),
                    Op::Delete => img.delete_snapshot("old"),
                };
                drop(img);
                (fault, result)
            };
            let (fault, result) = run(u64::MAX);
            result.unwrap_or_else(|e| panic!("{image} {op:?}: {e}"));
            let total = fault.writes();
            assert!(total >= 3, "{image} {op:?}: only {total} writes");
            let (before_list, after_list): (Vec<&str>, Vec<&str>) = match op {
                Op::Create if !had_one => (vec![], vec!["new"]),
                Op::Create => (vec!["old"], vec!["old", "new"]),
                Op::Apply => (vec!["old"], vec!["old"]),
                Op::Delete => (vec!["old"], vec![]),
            };
            for n in 0..total {
                let (fault, _) = run(n);
                for (pattern, cut) in fault.crash_states(n).into_iter().enumerate() {
                    fx.write("cut.qcow2", &cut);
                    let what = format!("{image} {op:?}, cut after write {n}/{total} ({pattern})");
                    let list = snapshot_ids(&fx, "cut.qcow2");
                    let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
                    assert!(
                        names == before_list || names == after_list,
                        "{what}: snapshots {names:?}"
                    );
                    let now = guest(&fx, "cut.qcow2", None);
                    match op {
                        Op::Apply => assert!(now == active || now == old, "{what}: active"),
                        _ => assert!(now == active, "{what}: active disk changed"),
                    }
                    for (id, name) in &list {
                        let want = if name == "old" { &old } else { &active };
                        assert!(
                            guest(&fx, "cut.qcow2", Some(id)) == *want,
                            "{what}: snapshot {name}"
                        );
                    }
                    assert_consistent(&fx, "cut.qcow2", &what);
                }
            }
        }
    }
}
