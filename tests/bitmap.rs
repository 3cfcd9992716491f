//! `qimg bitmap` and `convert --bitmaps` against qemu-img 10: the same
//! exit codes and sentences, bitmaps that `qemu-img info` lists as qemu-img
//! would have left them and `qemu-img check` finds clean, and dirty bits
//! that a real peer (qemu-nbd exporting the bitmap, read by `nbdinfo
//! --map=qemu:dirty-bitmap:NAME`) reports as qemu-img's own. Crash
//! injection at every write of add, merge and remove.

mod common;

use common::{on_copies, require_tool, stderr, stdout, Fixture};
use qimg::format::bitmap::{BitmapChange, MergeSource};
use qimg::format::qcow2::{Header, Qcow2};
use qimg::format::Format;
use qimg::io::FaultStorage;
use regex::Regex;
use serde_json::Value;
use std::process::Output;
use std::sync::Arc;

/// The `bitmaps` list `qemu-img info` shows (`Null` when there is none).
fn bitmaps(fx: &Fixture, image: &str) -> Value {
    let out = fx.qemu_img(&["info", "--output=json", "-U", image]);
    assert!(out.status.success(), "info {image}: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["format-specific"]["data"]["bitmaps"].clone()
}

/// The same from `qimg info`.
fn qimg_bitmaps(fx: &Fixture, image: &str) -> Value {
    let out = fx.qimg(&["info", "--output=json", "-U", image]);
    assert!(out.status.success(), "qimg info {image}: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["format-specific"]["data"]["bitmaps"].clone()
}

/// What a real peer reads of bitmap `name`: qemu-nbd exports `image`
/// with the bitmap (its default settings otherwise), and nbdinfo prints
/// the dirty extents of `qemu:dirty-bitmap:NAME`.
fn dirty_map(fx: &Fixture, image: &str, name: &str) -> String {
    require_tool("qemu-nbd");
    require_tool("nbdinfo");
    let sock = fx.path(&format!("{image}.sock"));
    let _ = std::fs::remove_file(&sock);
    let script = format!(
        "qemu-nbd -r -f qcow2 -B '{name}' -k '{s}' '{image}' & pid=$!\n\
         for i in $(seq 200); do [ -S '{s}' ] && break; sleep 0.05; done\n\
         timeout 20 nbdinfo --map=qemu:dirty-bitmap:'{name}' 'nbd+unix:///?socket={s}'; rc=$?\n\
         kill $pid 2>/dev/null; wait $pid 2>/dev/null; exit $rc",
        s = sock.display()
    );
    let out = fx.run("bash", &["-c", &script]);
    assert!(
        out.status.success(),
        "nbdinfo map of {image} {name}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// An error line without what differs between the tools: the program
/// prefix, qimg's file name prefix, and the image's name (qemu-img says
/// `#blockNNN`, its node name, where qimg names the file).
fn sentence(out: &Output, file: &str) -> String {
    let text = stderr(out);
    let text = text
        .strip_prefix("qemu-img: ")
        .or_else(|| text.strip_prefix("qimg: "))
        .unwrap_or(&text);
    let text = text
        .strip_prefix(&format!("{file}: "))
        .unwrap_or(text)
        .to_string();
    let node = Regex::new(r"#block\d+").unwrap();
    node.replace_all(&text, "NODE").replace(file, "NODE")
}

/// Runs `args` (with `{}` for the image) with qemu-img on `q-IMAGE` and
/// with qimg on `m-IMAGE`, and checks they answer alike: exit code, error
/// sentence, and the bitmaps `qemu-img info` then lists. qimg's copy must
/// pass `qemu-img check`, and `qimg info` must list its bitmaps as
/// `qemu-img info` does.
fn same_as_qemu_img(fx: &Fixture, image: &str, args: &[&str]) {
    let at = args.iter().position(|a| *a == "{}").expect("{} in args");
    let (before, after) = (&args[..at], &args[at + 1..]);
    // The copies carry on from the last step, so each step sees the
    // state both tools left.
    let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
    if !fx.path(&theirs).exists() {
        let (q, m, _, _) = on_copies(fx, image, before, after);
        return compare(fx, args, &q, &m, &theirs, &ours);
    }
    let with = |file: &str| -> Vec<String> {
        before
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(file.to_string()))
            .chain(after.iter().map(|s| s.to_string()))
            .collect()
    };
    let (qa, ma) = (with(&theirs), with(&ours));
    let q = fx.qemu_img(&qa.iter().map(String::as_str).collect::<Vec<_>>());
    let m = fx.qimg(&ma.iter().map(String::as_str).collect::<Vec<_>>());
    compare(fx, args, &q, &m, &theirs, &ours);
}

fn compare(fx: &Fixture, args: &[&str], q: &Output, m: &Output, theirs: &str, ours: &str) {
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{args:?}: exit (qemu-img: {}; qimg: {})",
        stderr(q),
        stderr(m)
    );
    assert_eq!(
        sentence(m, ours),
        sentence(q, theirs),
        "{args:?}: the sentences differ"
    );
    if theirs.ends_with(".qcow2") {
        assert_eq!(bitmaps(fx, ours), bitmaps(fx, theirs), "{args:?}: bitmaps");
        assert_eq!(
            qimg_bitmaps(fx, ours),
            bitmaps(fx, ours),
            "{args:?}: qimg info"
        );
        fx.assert_clean(ours);
    }
}

#[test]
fn every_action_answers_as_qemu_img_does() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 d.qcow2 10M\n\
           qemu-io -c 'write -P 7 0 64k' -c 'write -P 8 3M 4k' d.qcow2 >/dev/null");
    let long = "x".repeat(1024);
    let longest = "y".repeat(1023);
    let steps: Vec<Vec<&str>> = vec![
        vec!["bitmap", "--add", "{}", "b0"],
        vec!["bitmap", "--add", "-g", "1k", "--disable", "{}", "b1"],
        vec!["bitmap", "--add", "{}", "b0"],
        vec!["bitmap", "--add", "--add", "{}", "b2"],
        vec!["bitmap", "--remove", "--add", "{}", "b3"],
        vec!["bitmap", "--add", "--remove", "{}", "b3"],
        vec!["bitmap", "--add", "-g", "256", "{}", "b4"],
        vec!["bitmap", "--add", "-g", "1.5k", "{}", "b4"],
        vec!["bitmap", "--add", "-g", "4G", "{}", "b4"],
        vec!["bitmap", "--add", "-g", "4294967808", "{}", "b5"],
        vec!["bitmap", "--add", "-g", "0", "{}", "b6"],
        vec!["bitmap", "--add", "-g", "2G", "{}", "b7"],
        vec!["bitmap", "--add", "-g", "abc", "{}", "b8"],
        vec!["bitmap", "--add", "-g", "-1", "{}", "b8"],
        vec!["bitmap", "--add", "{}", ""],
        vec!["bitmap", "--add", "{}", &long],
        vec!["bitmap", "--add", "{}", &longest],
        vec!["bitmap", "--remove", "{}", &longest],
        vec!["bitmap", "--enable", "{}", "b1"],
        vec!["bitmap", "--disable", "{}", "b0"],
        vec!["bitmap", "--disable", "--disable", "{}", "b0"],
        vec!["bitmap", "--clear", "{}", "b2"],
        vec!["bitmap", "--merge", "b0", "{}", "b1"],
        vec!["bitmap", "--merge", "b1", "--merge", "b5", "{}", "b6"],
        vec!["bitmap", "--merge", "b6", "{}", "b6"],
        vec!["bitmap", "--merge", "nope", "{}", "b1"],
        vec!["bitmap", "--merge", "b0", "{}", "nope"],
        vec!["bitmap", "--merge", "nope", "{}", "nope"],
        vec!["bitmap", "--remove", "{}", "b2"],
        vec!["bitmap", "--remove", "{}", "nope"],
        vec!["bitmap", "--clear", "{}", "nope"],
        vec!["bitmap", "--enable", "{}", "nope"],
        vec!["bitmap", "--disable", "{}", "nope"],
        vec!["bitmap", "-g", "64k", "--remove", "{}", "b0"],
        vec!["bitmap", "-g", "64k", "{}", "b0"],
        vec!["bitmap", "-b", "d.qcow2", "--remove", "{}", "b0"],
        vec!["bitmap", "-F", "qcow2", "--merge", "b0", "{}", "b1"],
        vec!["bitmap", "--add", "{}"],
        vec!["bitmap", "--add", "{}", "b9", "extra"],
        vec!["bitmap", "--remove", "-f", "qcow2", "{}", "b0"],
    ];
    for step in &steps {
        same_as_qemu_img(&fx, "d.qcow2", step);
    }
    // What the steps left (the same in both copies, checked at each step).
    let left: Vec<String> = bitmaps(&fx, "m-d.qcow2")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| format!("{}/{}", b["name"].as_str().unwrap(), b["granularity"]))
        .collect();
    assert_eq!(left, ["b1/1024", "b5/512", "b6/65536", "b7/2147483648"]);
}

#[test]
fn images_that_cannot_store_bitmaps_are_refused_alike() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw r.raw 1M\n\
           qemu-img create -q -f qed e.qed 1M\n\
           qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M\n\
           qemu-img create -q -f qcow2 -o cluster_size=512 s.qcow2 1M\n\
           qemu-img create -q -f qcow2 -o cluster_size=2M l.qcow2 1M\n\
           qemu-img create -q -f qcow2 big.qcow2 1P");
    for step in [
        vec!["bitmap", "--add", "-f", "raw", "{}", "b0"],
        vec!["bitmap", "--remove", "-f", "raw", "{}", "b0"],
        vec!["bitmap", "--add", "-f", "raw", "{}", ""],
    ] {
        same_as_qemu_img(&fx, "r.raw", &step);
    }
    same_as_qemu_img(&fx, "e.qed", &["bitmap", "--add", "{}", "b0"]);
    same_as_qemu_img(&fx, "e.qed", &["bitmap", "--clear", "{}", "b0"]);
    for step in [
        vec!["bitmap", "--add", "{}", "b0"],
        vec!["bitmap", "--remove", "{}", "b0"],
        vec!["bitmap", "--merge", "b0", "{}", "b0"],
    ] {
        same_as_qemu_img(&fx, "v2.qcow2", &step);
    }
    // The default granularity follows the cluster size, within 4k..64k.
    same_as_qemu_img(&fx, "s.qcow2", &["bitmap", "--add", "{}", "b0"]);
    same_as_qemu_img(&fx, "l.qcow2", &["bitmap", "--add", "{}", "b0"]);
    // A bitmap of more than 512 MiB of bits is refused.
    same_as_qemu_img(&fx, "big.qcow2", &["bitmap", "--add", "{}", "b0"]);
    same_as_qemu_img(
        &fx,
        "big.qcow2",
        &["bitmap", "--add", "-g", "2M", "{}", "b1"],
    );
}

/// Sets the in_use flag of the first bitmap of `image`, as a program that
/// tracked writes in it and did not close the image leaves it.
fn mark_first_in_use(fx: &Fixture, image: &str) {
    let mut bytes = fx.read(image);
    let h = Header::parse(&bytes[..65536]).unwrap();
    let ext = h.bitmaps.expect("a bitmaps extension");
    let at = (ext.directory_offset + 12) as usize;
    bytes[at + 3] |= 1;
    fx.write(image, &bytes);
}

#[test]
fn inconsistent_bitmaps_can_only_be_removed() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 u.qcow2 10M\n\
           qemu-img bitmap --add u.qcow2 stale\n\
           qemu-img bitmap --add u.qcow2 good\n\
           qemu-io -c 'write 0 64k' u.qcow2 >/dev/null");
    mark_first_in_use(&fx, "u.qcow2");
    let list = bitmaps(&fx, "u.qcow2");
    assert_eq!(list[0]["flags"][0], "in-use", "{list}");
    for step in [
        vec!["bitmap", "--clear", "{}", "stale"],
        vec!["bitmap", "--enable", "{}", "stale"],
        vec!["bitmap", "--disable", "{}", "stale"],
        vec!["bitmap", "--merge", "good", "{}", "stale"],
        vec!["bitmap", "--merge", "stale", "{}", "good"],
        vec!["bitmap", "--add", "{}", "stale"],
        // Changing another bitmap keeps the inconsistent one as it is.
        vec!["bitmap", "--clear", "{}", "good"],
        vec!["bitmap", "--remove", "{}", "stale"],
    ] {
        same_as_qemu_img(&fx, "u.qcow2", &step);
    }
}

#[test]
fn qimg_bitmaps_hold_the_bits_qemu_reads() {
    let fx = Fixture::new();
    // QEMU makes the source bitmap and dirties it: qemu-io's writes go
    // through the block layer, which records them in enabled bitmaps.
    fx.sh("qemu-img create -q -f qcow2 s.qcow2 10M\n\
           qemu-img bitmap --add s.qcow2 src\n\
           qemu-io -c 'write 0 64k' -c 'write 3M 1k' -c 'write 9M 1M' s.qcow2 >/dev/null\n\
           qemu-img create -q -f qcow2 o.qcow2 10M\n\
           qemu-img bitmap --add -g 128k o.qcow2 other\n\
           qemu-io -c 'write 5M 8k' o.qcow2 >/dev/null");
    let src = dirty_map(&fx, "s.qcow2", "src");
    assert!(src.contains("3145728       65536    1  dirty"), "{src}");
    let steps: Vec<Vec<&str>> = vec![
        vec!["bitmap", "--add", "-g", "4k", "{}", "dst"],
        vec!["bitmap", "--merge", "src", "{}", "dst"],
        // oVirt vdsm's bitmap_merge (oVirt/vdsm, lib/vdsm/storage/qemuimg.py):
        // [qemu-img, "bitmap", "--merge", src_bitmap, "-F", src_fmt,
        //  "-b", src_image, dst_image, dst_bitmap]
        vec![
            "bitmap", "--merge", "other", "-F", "qcow2", "-b", "o.qcow2", "{}", "dst",
        ],
        vec![
            "bitmap", "--merge", "other", "-F", "raw", "-b", "o.qcow2", "{}", "dst",
        ],
        vec!["bitmap", "--add", "-g", "1M", "{}", "coarse"],
        vec!["bitmap", "--merge", "dst", "{}", "coarse"],
    ];
    for step in &steps {
        same_as_qemu_img(&fx, "s.qcow2", step);
        for name in ["src", "dst", "coarse"] {
            let names = bitmaps(&fx, "q-s.qcow2");
            if !names.to_string().contains(&format!("\"{name}\"")) {
                continue;
            }
            assert_eq!(
                dirty_map(&fx, "m-s.qcow2", name),
                dirty_map(&fx, "q-s.qcow2", name),
                "{step:?}: bitmap {name}"
            );
        }
    }
    let dst = dirty_map(&fx, "m-s.qcow2", "dst");
    assert!(dst.contains("5242880      131072    1  dirty"), "{dst}");
    // QEMU keeps recording writes in a bitmap qimg made.
    fx.sh("qemu-io -c 'write 7M 4k' m-s.qcow2 >/dev/null");
    let after = dirty_map(&fx, "m-s.qcow2", "dst");
    assert!(after.contains("7340032        4096    1  dirty"), "{after}");
    fx.assert_clean("m-s.qcow2");
    // Cleared, nothing is dirty.
    let out = fx.qimg(&["bitmap", "--clear", "m-s.qcow2", "dst"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let clear = dirty_map(&fx, "m-s.qcow2", "dst");
    assert_eq!(clear.lines().count(), 1, "{clear}");
    assert!(clear.contains("clean"), "{clear}");
}

#[test]
fn ovirt_vdsm_adds_removes_and_lists_bitmaps_as_with_qemu_img() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 -o compat=1.1 v.qcow2 1G");
    // oVirt/vdsm lib/vdsm/storage/qemuimg.py bitmap_add: [qemu-img,
    // "bitmap", "--add", "--enable"|"--disable", image, bitmap] then
    // ("-g", str(granularity)) when a granularity is given.
    same_as_qemu_img(
        &fx,
        "v.qcow2",
        &["bitmap", "--add", "--enable", "{}", "b-1"],
    );
    same_as_qemu_img(
        &fx,
        "v.qcow2",
        &["bitmap", "--add", "--disable", "{}", "b-2", "-g", "131072"],
    );
    // bitmap_remove: [qemu-img, "bitmap", "--remove", image, bitmap]
    same_as_qemu_img(&fx, "v.qcow2", &["bitmap", "--remove", "{}", "b-1"]);
    // vdsm's info() copies format-specific.data.bitmaps as qemu-img gives it.
    assert_eq!(
        qimg_bitmaps(&fx, "m-v.qcow2"),
        serde_json::json!([{"flags": [], "name": "b-2", "granularity": 131072}])
    );
    // bitmaps_supported(): vdsm looks for the bitmap command in
    // `qemu-img --help` with this pattern.
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("qemu-img");
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("qimg"), &link).unwrap();
    let help = fx.run(link.to_str().unwrap(), &["--help"]);
    let pattern = Regex::new(r"(?m)^\s+bitmap (.+) filename bitmap").unwrap();
    assert!(pattern.is_match(&stdout(&help)), "{}", stdout(&help));
}

/// Runs qemu-img and qimg on the same convert command line (`{}` is the
/// tool's tag in the target name) and checks the same exit code and
/// sentence; returns both outputs.
fn both_convert(fx: &Fixture, args: &[&str]) -> (Output, Output) {
    let with = |tag: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", tag)).collect() };
    let (qa, ma) = (with("q"), with("m"));
    let q = fx.qemu_img(&qa.iter().map(String::as_str).collect::<Vec<_>>());
    let m = fx.qimg(&ma.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{args:?}: qemu-img {} / qimg {}",
        stderr(&q),
        stderr(&m)
    );
    let target = |a: &[String]| a.last().cloned().unwrap_or_default();
    assert_eq!(
        sentence(&m, &target(&ma)),
        sentence(&q, &target(&qa)),
        "{args:?}: sentences"
    );
    (q, m)
}

#[test]
fn convert_copies_bitmaps_made_by_qemu() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 src.qcow2 20M\n\
           qemu-img bitmap --add src.qcow2 a\n\
           qemu-img bitmap --add -g 4k src.qcow2 fine\n\
           qemu-img bitmap --add -g 1M --disable src.qcow2 off\n\
           qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 5M 12k' -c 'write -P 3 19M 1M' src.qcow2 >/dev/null\n\
           qemu-img bitmap --enable src.qcow2 off\n\
           qemu-io -c 'write -P 4 10M 4k' src.qcow2 >/dev/null\n\
           qemu-img bitmap --disable src.qcow2 off");
    let names = ["a", "fine", "off"];
    let source: Vec<String> = names
        .iter()
        .map(|n| dirty_map(&fx, "src.qcow2", n))
        .collect();
    // oVirt/vdsm lib/vdsm/storage/qemuimg.py convert(..., bitmaps=True):
    // [qemu-img, "convert", "-p", "-t", "none", "-T", "none", "-f", srcFormat,
    //  "-O", dstFormat, "-o", "compat=1.1", "--bitmaps", src, dst]
    both_convert(
        &fx,
        &[
            "convert",
            "-p",
            "-t",
            "none",
            "-T",
            "none",
            "-f",
            "qcow2",
            "-O",
            "qcow2",
            "-o",
            "compat=1.1",
            "--bitmaps",
            "src.qcow2",
            "{}.qcow2",
        ],
    );
    assert_eq!(bitmaps(&fx, "m.qcow2"), bitmaps(&fx, "src.qcow2"));
    assert_eq!(bitmaps(&fx, "m.qcow2"), bitmaps(&fx, "q.qcow2"));
    assert_eq!(qimg_bitmaps(&fx, "m.qcow2"), bitmaps(&fx, "m.qcow2"));
    fx.assert_clean("m.qcow2");
    fx.assert_same("src.qcow2", "m.qcow2");
    for (name, want) in names.iter().zip(&source) {
        assert_eq!(&dirty_map(&fx, "m.qcow2", name), want, "bitmap {name}");
    }
    // vdsm with create=False: [..., "-O", dstFormat, "-n", "--bitmaps", src, dst]
    fx.sh("qemu-img create -q -f qcow2 n-q.qcow2 20M\nqemu-img create -q -f qcow2 n-m.qcow2 20M");
    both_convert(
        &fx,
        &[
            "convert",
            "-p",
            "-t",
            "none",
            "-T",
            "none",
            "-f",
            "qcow2",
            "-O",
            "qcow2",
            "-n",
            "--bitmaps",
            "src.qcow2",
            "n-{}.qcow2",
        ],
    );
    assert_eq!(bitmaps(&fx, "n-m.qcow2"), bitmaps(&fx, "src.qcow2"));
    for (name, want) in names.iter().zip(&source) {
        assert_eq!(
            &dirty_map(&fx, "n-m.qcow2", name),
            want,
            "-n: bitmap {name}"
        );
    }
    fx.assert_clean("n-m.qcow2");
    // Again into the same targets: the names exist, and both tools stop
    // at the same bitmap with the same sentence.
    both_convert(
        &fx,
        &[
            "convert",
            "-O",
            "qcow2",
            "-n",
            "--bitmaps",
            "src.qcow2",
            "n-{}.qcow2",
        ],
    );
    fx.assert_clean("n-m.qcow2");
    // A target of another size: nothing can be merged.
    fx.sh("qemu-img create -q -f qcow2 w-q.qcow2 30M\nqemu-img create -q -f qcow2 w-m.qcow2 30M");
    both_convert(
        &fx,
        &[
            "convert",
            "-O",
            "qcow2",
            "-n",
            "--bitmaps",
            "src.qcow2",
            "w-{}.qcow2",
        ],
    );
    assert_eq!(bitmaps(&fx, "w-m.qcow2"), bitmaps(&fx, "w-q.qcow2"));
    fx.assert_clean("w-m.qcow2");
}

#[test]
fn convert_refuses_what_qemu_img_refuses() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 s.qcow2 10M\n\
           qemu-img bitmap --add s.qcow2 stale\n\
           qemu-img bitmap --add s.qcow2 ok\n\
           qemu-io -c 'write 1M 64k' s.qcow2 >/dev/null\n\
           qemu-img create -q -f raw r.raw 10M\n\
           qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 10M\n\
           qemu-img create -q -f qcow2 plain.qcow2 10M");
    mark_first_in_use(&fx, "s.qcow2");
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "s.qcow2",
            "{}1.qcow2",
        ],
    );
    let (q, m) = both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "--skip-broken-bitmaps",
            "-O",
            "qcow2",
            "s.qcow2",
            "{}2.qcow2",
        ],
    );
    assert_eq!(stderr(&q).replace("qemu-img", "qimg"), stderr(&m));
    assert_eq!(bitmaps(&fx, "m2.qcow2"), bitmaps(&fx, "q2.qcow2"));
    assert_eq!(
        dirty_map(&fx, "m2.qcow2", "ok"),
        dirty_map(&fx, "q2.qcow2", "ok")
    );
    fx.assert_clean("m2.qcow2");
    both_convert(
        &fx,
        &[
            "convert",
            "--skip-broken-bitmaps",
            "-O",
            "qcow2",
            "s.qcow2",
            "{}3.qcow2",
        ],
    );
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "r.raw",
            "{}4.qcow2",
        ],
    );
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "v2.qcow2",
            "{}5.qcow2",
        ],
    );
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "plain.qcow2",
            "plain.qcow2",
            "{}6.qcow2",
        ],
    );
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "-o",
            "compat=0.10",
            "plain.qcow2",
            "{}7.qcow2",
        ],
    );
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "raw",
            "plain.qcow2",
            "{}8.raw",
        ],
    );
    // A source without bitmaps converts (and the target has none).
    both_convert(
        &fx,
        &[
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "plain.qcow2",
            "{}9.qcow2",
        ],
    );
    assert_eq!(bitmaps(&fx, "m9.qcow2"), Value::Null);
}

/// The names and flags of the bitmaps of a crashed image, as qemu-img lists them.
fn names_and_flags(fx: &Fixture, image: &str) -> String {
    bitmaps(fx, image).to_string()
}

/// Crashes `change` at every write, and checks every disk a crash could
/// leave: `qemu-img check` finds no corruption (leaks at most), and the
/// bitmaps are those before or those after, with their bits.
fn crash_everywhere(fx: &Fixture, image: &str, change: &[BitmapChange], what: &str) {
    let bytes = fx.read(image);
    let before = names_and_flags(fx, image);
    let run = |crash_after: u64| {
        let fault = Arc::new(FaultStorage::new(
            fx.path(image),
            bytes.clone(),
            crash_after,
        ));
        let img = Qcow2::open_writable(Box::new(fault.clone()), &fx.path(image)).expect("open");
        let result = img.bitmaps().expect("qcow2 stores bitmaps").change(change);
        drop(img);
        (fault, result)
    };
    let (fault, result) = run(u64::MAX);
    result.unwrap_or_else(|e| panic!("{what}: {}", e.error));
    let total = fault.writes();
    assert!(total >= 3, "{what}: only {total} writes");
    fx.write("after.qcow2", &fault.after_crash(|_| true));
    fx.assert_clean("after.qcow2");
    let after = names_and_flags(fx, "after.qcow2");
    let maps = |file: &str| -> Vec<String> {
        let list = bitmaps(fx, file);
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|b| b["name"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .iter()
            .map(|n| format!("{n}:\n{}", dirty_map(fx, file, n)))
            .collect()
    };
    fx.write("before.qcow2", &bytes);
    let (old_bits, new_bits) = (maps("before.qcow2"), maps("after.qcow2"));
    assert!(
        after != before || new_bits != old_bits,
        "{what}: nothing changed"
    );
    for n in 0..total {
        let (fault, _) = run(n);
        for (pattern, cut) in fault.crash_states(n).into_iter().enumerate() {
            let at = format!("{what}, cut after write {n}/{total} ({pattern})");
            fx.write("cut.qcow2", &cut);
            let check = fx.qemu_img(&["check", "cut.qcow2"]);
            assert!(
                matches!(check.status.code(), Some(0) | Some(3)),
                "{at}: check {:?}\n{}{}",
                check.status.code(),
                stdout(&check),
                stderr(&check)
            );
            let now = names_and_flags(fx, "cut.qcow2");
            assert!(now == before || now == after, "{at}: bitmaps {now}");
            let bits = maps("cut.qcow2");
            assert!(bits == old_bits || bits == new_bits, "{at}: bits {bits:?}");
        }
    }
}

#[test]
fn a_crash_at_any_write_leaves_the_old_or_the_new_bitmaps() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 c.qcow2 8M\n\
           qemu-img bitmap --add c.qcow2 keep\n\
           qemu-img bitmap --add -g 4k c.qcow2 src\n\
           qemu-io -c 'write 0 64k' -c 'write 6M 12k' c.qcow2 >/dev/null\n\
           qemu-img bitmap --add --disable c.qcow2 dst\n\
           qemu-img create -q -f qcow2 e.qcow2 8M");
    let src = {
        let img = qimg::format::open_image(&fx.path("c.qcow2"), None).unwrap();
        img.bitmaps().unwrap().read_bits("src").unwrap()
    };
    crash_everywhere(
        &fx,
        "c.qcow2",
        &[BitmapChange::Add {
            name: "new".into(),
            granularity: Some(65536),
            enabled: true,
        }],
        "add",
    );
    // The first bitmap of an image: the extension and the autoclear bit appear.
    crash_everywhere(
        &fx,
        "e.qcow2",
        &[BitmapChange::Add {
            name: "first".into(),
            granularity: None,
            enabled: false,
        }],
        "first add",
    );
    crash_everywhere(
        &fx,
        "c.qcow2",
        &[BitmapChange::Merge {
            target: "dst".into(),
            source: MergeSource::Bits(src),
        }],
        "merge",
    );
    crash_everywhere(
        &fx,
        "c.qcow2",
        &[BitmapChange::Remove("src".into())],
        "remove",
    );
    // The last bitmap goes: the extension and the autoclear bit go with it.
    fx.sh("qemu-img bitmap --add e.qcow2 only");
    crash_everywhere(
        &fx,
        "e.qcow2",
        &[BitmapChange::Remove("only".into())],
        "last remove",
    );
}

#[test]
fn image_specifications_name_the_image_and_the_source() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 s.qcow2 4M\n\
           qemu-img bitmap --add s.qcow2 a\n\
           qemu-io -c 'write 1M 64k' s.qcow2 >/dev/null");
    let out = fx.qimg(&[
        "bitmap",
        "--add",
        "--image-opts",
        "driver=qcow2,file.filename=s.qcow2",
        "b",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fx.qimg(&[
        "convert",
        "--bitmaps",
        "--image-opts",
        "-O",
        "qcow2",
        "driver=qcow2,file.filename=s.qcow2",
        "t.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(bitmaps(&fx, "t.qcow2"), bitmaps(&fx, "s.qcow2"));
    assert_eq!(
        dirty_map(&fx, "t.qcow2", "a"),
        dirty_map(&fx, "s.qcow2", "a")
    );
    fx.assert_clean("t.qcow2");
    fx.assert_clean("s.qcow2");
}
