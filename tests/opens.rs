//! Each command opens each image file once: a second open of the same file
//! (a read-only copy beside a writable one, a chain opened twice) costs
//! locks and header reads, and lets two views of one image drift apart.
//! Counted from the outside, with strace, on a three-image chain.

mod common;

use common::{require_tool, stderr, Fixture};
use std::collections::BTreeMap;

/// The chain base <- mid <- top, each layer holding one MiB of its own,
/// and a spare image.
fn chain(fx: &Fixture) {
    fx.sh("qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 1 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 2 1M 1M' mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 3 2M 1M' top.qcow2 >/dev/null");
}

/// How often qimg, run with `args`, opened each image file of the
/// directory (successful opens only).
fn opens(fx: &Fixture, args: &[&str]) -> BTreeMap<String, usize> {
    let (out, text) = common::strace_qimg(fx, "", "openat", args, &[]);
    assert!(
        out.status.success() || args[0] == "compare",
        "qimg {args:?}: {}",
        stderr(&out)
    );
    let mut count = BTreeMap::new();
    for line in text.lines().filter(|l| !l.contains("= -1")) {
        let Some(name) = line.split('"').nth(1) else {
            continue;
        };
        let file = name.rsplit('/').next().unwrap_or(name);
        if file.ends_with(".qcow2") {
            *count.entry(file.to_string()).or_insert(0) += 1;
        }
    }
    count
}

#[test]
fn every_command_opens_each_image_once() {
    require_tool("strace");
    let commands: &[&[&str]] = &[
        &["info", "--backing-chain", "top.qcow2"],
        &["check", "top.qcow2"],
        &["check", "-r", "leaks", "top.qcow2"],
        &["check", "-r", "all", "top.qcow2"],
        &["map", "top.qcow2"],
        &["measure", "-O", "qcow2", "top.qcow2"],
        &["compare", "top.qcow2", "mid.qcow2"],
        &["rebase", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
        &[
            "rebase",
            "-u",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
        &["commit", "mid.qcow2"],
        &["commit", "-b", "base.qcow2", "top.qcow2"],
        &["stream", "top.qcow2"],
        &["resize", "top.qcow2", "4M"],
        &["snapshot", "-c", "s1", "top.qcow2"],
        &["amend", "-o", "lazy_refcounts=on", "top.qcow2"],
        &["convert", "-O", "raw", "top.qcow2", "out.raw"],
        &["convert", "-O", "qcow2", "top.qcow2", "out.qcow2"],
        &["dd", "if=top.qcow2", "of=dd.qcow2", "-O", "qcow2", "bs=64k"],
    ];
    let mut twice = Vec::new();
    for args in commands {
        let fx = Fixture::new();
        chain(&fx);
        let count = opens(&fx, args);
        assert!(
            !count.is_empty(),
            "qimg {args:?}: strace saw no image opened"
        );
        for (file, n) in count {
            if n > 1 {
                twice.push(format!("qimg {}: {file} opened {n} times", args.join(" ")));
            }
        }
    }
    assert!(twice.is_empty(), "{}", twice.join("\n"));
}
