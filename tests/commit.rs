//! `qimg commit` against `qemu-img commit` on identical chains.

mod common;

use common::{
    allocation, assert_cancelled, assert_json_progress, cancel_after, map_without_offsets, stderr,
    stdout, three_layer_chain, Fixture,
};
use qimg::ops::commit::{commit, CommitRequest};
use std::sync::atomic::AtomicBool;

/// The backing file lines of `qemu-img info` (name and format).
fn backing_lines(fx: &Fixture, image: &str) -> Vec<String> {
    stdout(&fx.qemu_img(&["info", image]))
        .lines()
        .filter(|l| l.starts_with("backing file"))
        .map(|l| l.split(" (actual path").next().unwrap().to_string())
        .collect()
}

/// Runs `commit ARGS top` with qemu-img in `DIR-q` and with qimg in
/// `DIR-m` (both made by `make`), then compares every image of the two
/// directories: guest content, allocation, backing pointers, and a clean
/// `qemu-img check` of what qimg wrote. `top_emptied_by_qemu` is false
/// where qemu-img leaves the top as it was (QED has no "make empty").
fn compare_with_qemu(
    fx: &Fixture,
    dir: &str,
    make: impl Fn(&str),
    args: &[&str],
    images: &[&str],
    top_emptied_by_qemu: bool,
) {
    let (q, m) = (format!("{dir}-q"), format!("{dir}-m"));
    make(&q);
    make(&m);
    let mut argv = vec!["commit"];
    argv.extend(args);
    argv.push(images[0]);
    let theirs = fx.run_in(&q, "qemu-img", &argv);
    assert!(
        theirs.status.success(),
        "{dir}: qemu-img: {}",
        stderr(&theirs)
    );
    let ours = fx.run_in(&m, "qimg", &argv);
    assert!(ours.status.success(), "{dir}: qimg: {}", stderr(&ours));
    assert_eq!(stdout(&ours), "Image committed.\n", "{dir}");
    fx.assert_same(&format!("{m}/before.raw"), &format!("{m}/{}", images[0]));
    for (i, image) in images.iter().enumerate() {
        let (mine, theirs) = (format!("{m}/{image}"), format!("{q}/{image}"));
        if !stdout(&fx.qemu_img(&["info", &mine])).contains("file format: raw") {
            fx.assert_clean(&mine);
        }
        fx.assert_same(&mine, &theirs);
        assert_eq!(
            backing_lines(fx, &mine),
            backing_lines(fx, &theirs),
            "{dir}: {image}: backing pointer"
        );
        if i > 0 || top_emptied_by_qemu {
            assert_eq!(
                allocation(fx, &mine),
                allocation(fx, &theirs),
                "{dir}: {image}: allocation"
            );
        }
    }
}

#[test]
fn commit_matches_qemu_img() {
    let fx = Fixture::new();
    let chain = |top: &'static str, format: &'static str| {
        let fx = &fx;
        move |dir: &str| three_layer_chain(fx, dir, top, format)
    };
    let layers = ["top.qcow2", "mid.qcow2", "base.qcow2"];
    compare_with_qemu(
        &fx,
        "plain",
        chain("top.qcow2", "qcow2"),
        &[],
        &layers,
        true,
    );
    compare_with_qemu(
        &fx,
        "keep",
        chain("top.qcow2", "qcow2"),
        &["-d"],
        &layers,
        true,
    );
    compare_with_qemu(
        &fx,
        "deep",
        chain("top.qcow2", "qcow2"),
        &["-b", "base.qcow2"],
        &layers,
        true,
    );
    compare_with_qemu(
        &fx,
        "qed",
        chain("top.qed", "qed"),
        &[],
        &["top.qed", "mid.qcow2", "base.qcow2"],
        false,
    );
    // qimg empties a QED top too; it then reads everything from below.
    let map = map_without_offsets(&fx, "qed-m/top.qed");
    assert!(
        !map.contains("\"depth\": 0"),
        "the QED top still allocates:\n{map}"
    );
}

#[test]
fn a_smaller_base_grows_and_other_formats_take_the_data() {
    let fx = Fixture::new();
    // A 1 MiB base under a 5 MiB top with 4 KiB clusters: the base grows,
    // and partial clusters of the base are completed from what it held.
    let grow = |dir: &str| {
        fx.sh(&format!(
            "mkdir -p {dir} && cd {dir}
             qemu-img create -q -f qcow2 base.qcow2 1M
             qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
             qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 top.qcow2 5M
             qemu-io -c 'write -P 0x22 64k 6k' -c 'write -z 128k 64k' -c 'write -P 0x33 3M 64k' top.qcow2 >/dev/null
             qemu-img convert -O raw top.qcow2 before.raw"
        ))
    };
    compare_with_qemu(&fx, "grow", grow, &[], &["top.qcow2", "base.qcow2"], true);
    for (dir, format) in [("qedbase", "qed"), ("rawbase", "raw")] {
        let make = |d: &str| {
            fx.sh(&format!(
                "mkdir -p {d} && cd {d}
                 qemu-img create -q -f {format} base.img 2M
                 qemu-io -f {format} -c 'write -P 0x11 0 2M' base.img >/dev/null
                 qemu-img create -q -f qcow2 -b base.img -F {format} top.qcow2 2M
                 qemu-io -c 'write -P 0x22 64k 100k' -c 'write -z 1M 64k' top.qcow2 >/dev/null
                 qemu-img convert -O raw top.qcow2 before.raw"
            ))
        };
        compare_with_qemu(&fx, dir, make, &[], &["top.qcow2", "base.img"], true);
    }
}

#[test]
fn errors_name_the_problem_and_change_nothing() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "e", "top.qcow2", "qcow2");
    fx.sh("qemu-img create -q -f qcow2 alone.qcow2 1M
         qemu-img create -q -f qcow2 short.qcow2 1M
         qemu-img create -q -f qcow2 -b e/base.qcow2 -F qcow2 mid2.qcow2 1M
         qemu-img create -q -f qcow2 -b mid2.qcow2 -F qcow2 big.qcow2 4M");
    let before: Vec<Vec<u8>> = ["e/top.qcow2", "e/mid.qcow2", "e/base.qcow2", "mid2.qcow2"]
        .iter()
        .map(|f| fx.read(f))
        .collect();
    for (args, needle) in [
        (
            &["commit", "alone.qcow2"][..],
            "alone.qcow2: Image does not have a backing file",
        ),
        (
            &["commit", "-b", "nothere.qcow2", "e/top.qcow2"],
            "Did not find 'nothere.qcow2' in the backing chain of 'e/top.qcow2'",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    let after: Vec<Vec<u8>> = ["e/top.qcow2", "e/mid.qcow2", "e/base.qcow2", "mid2.qcow2"]
        .iter()
        .map(|f| fx.read(f))
        .collect();
    assert!(before == after, "a refused commit changed an image");
    // A base smaller than the top whose own backing file is longer: the
    // base grows with its new range reading zeros (not its backing file's
    // data), so the top reads as before, as with qemu-img.
    fx.sh("qemu-img convert -O raw big.qcow2 big-before.raw
         cp mid2.qcow2 q-mid2.qcow2
         qemu-img create -q -f qcow2 -b q-mid2.qcow2 -F qcow2 q-big.qcow2 4M");
    let out = fx.qimg(&["commit", "big.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("mid2.qcow2");
    fx.assert_same("big-before.raw", "big.qcow2");
    fx.assert_same("big-before.raw", "mid2.qcow2");
    let q = fx.qemu_img(&["commit", "q-big.qcow2"]);
    assert!(q.status.success(), "{}", stderr(&q));
    fx.assert_same("q-mid2.qcow2", "mid2.qcow2");
}

#[test]
fn quiet_and_progress_json() {
    let fx = Fixture::new();
    three_layer_chain(&fx, "q", "top.qcow2", "qcow2");
    let out = fx.qimg(&["commit", "-q", "q/top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    three_layer_chain(&fx, "p", "top.qcow2", "qcow2");
    let out = fx.qimg(&["commit", "--progress=json", "p/top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_json_progress(&out, "commit");
    fx.assert_same("p/before.raw", "p/top.qcow2");
}

/// Set by the progress callback below: stops the commit between chunks,
/// as SIGINT/SIGTERM do through the same flag.
static STOP_COMMIT: AtomicBool = AtomicBool::new(false);

#[test]
fn an_interrupted_commit_leaves_the_image_whole_and_can_run_again() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 8M
         qemu-io -c 'write -P 0x11 0 8M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 0 6M' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw");
    let request = CommitRequest {
        file: fx.path("top.qcow2"),
        threads: 2,
        ..Default::default()
    };
    let control = cancel_after(&STOP_COMMIT, 2 << 20);
    assert_cancelled(commit(&request, &control).expect("commit"));
    // Part of the data is in the base; the top still holds all of it.
    fx.assert_clean("top.qcow2");
    fx.assert_clean("base.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    assert!(map_without_offsets(&fx, "top.qcow2").contains("\"depth\": 0"));
    let out = fx.qimg(&["commit", "top.qcow2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_clean("top.qcow2");
    fx.assert_clean("base.qcow2");
    fx.assert_same("before.raw", "top.qcow2");
    fx.assert_same("before.raw", "base.qcow2");
    assert!(!map_without_offsets(&fx, "top.qcow2").contains("\"depth\": 0"));
}
