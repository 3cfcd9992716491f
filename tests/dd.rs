//! `qimg dd` against `qemu-img dd` on the same operands: the same exit
//! code and messages, and outputs of the same size and content (qimg
//! leaves holes where qemu-img writes zeros); Proxmox's `-n` and `osize=`.

mod common;

use common::{stderr, Fixture};

fn sentences(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .map(|l| {
            l.trim_start_matches("qemu-img: ")
                .trim_start_matches("qimg: ")
                .to_string()
        })
        .collect()
}

/// Runs `dd ARGS... of=OUT` with both tools (each its own output) and
/// asserts they agree.
fn assert_dd_like_qemu(fx: &Fixture, args: &[&str], output_format: &str) {
    let run = |program: &str, out: &str| {
        let of = format!("of={out}");
        let mut v = vec!["dd"];
        v.extend(args);
        v.push(&of);
        let o = if program == "qimg" {
            fx.qimg(&v)
        } else {
            fx.qemu_img(&v)
        };
        let _ = std::fs::remove_file(fx.path(&format!("{out}.absent")));
        o
    };
    let (theirs, ours) = (format!("q.{output_format}"), format!("m.{output_format}"));
    let _ = std::fs::remove_file(fx.path(&theirs));
    let _ = std::fs::remove_file(fx.path(&ours));
    let q = run("qemu-img", &theirs);
    let m = run("qimg", &ours);
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "dd {args:?}: {}",
        stderr(&m)
    );
    assert_eq!(sentences(&m), sentences(&q), "dd {args:?}: messages");
    if !q.status.success() {
        return;
    }
    let size = |f: &str| {
        let out = fx.qemu_img(&["info", "--output=json", "-f", output_format, f]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["virtual-size"].as_u64().unwrap()
    };
    assert_eq!(size(&ours), size(&theirs), "dd {args:?}: size");
    let cmp = fx.qemu_img(&[
        "compare",
        "-f",
        output_format,
        "-F",
        output_format,
        &theirs,
        &ours,
    ]);
    assert!(
        cmp.status.success(),
        "dd {args:?}: {}",
        common::stdout(&cmp)
    );
    if output_format == "qcow2" {
        fx.assert_clean(&ours);
    }
}

#[test]
fn dd_like_qemu_img() {
    let fx = Fixture::new();
    fx.sh(
        "qemu-img create -q -f qcow2 in.qcow2 4M
         qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 1M 1M' -c 'write -P 3 3M 1M' -c 'write -z 3M 4k' in.qcow2 >/dev/null
         qemu-img convert -O raw in.qcow2 in.raw",
    );
    let cases: &[&[&str]] = &[
        &["if=in.qcow2"],
        &["bs=1M", "count=2", "if=in.qcow2"],
        &["bs=1M", "skip=1", "count=3", "if=in.qcow2"],
        &["bs=1M", "skip=1", "if=in.qcow2"],
        &["bs=1M", "count=10", "if=in.qcow2"],
        &["bs=512", "count=4097", "if=in.qcow2"],
        &["bs=3", "count=5000", "if=in.qcow2"],
        &["bs=64k", "skip=17", "count=40", "-f", "raw", "if=in.raw"],
        // qemu-img's quirks: count counts from block 0, and a skip past
        // what that leaves gives an empty output, a message, and exit 0.
        &["bs=1M", "skip=5", "if=in.qcow2"],
        &["bs=1k", "skip=3", "count=2", "if=in.qcow2"],
        &["bs=1k", "count=0", "if=in.qcow2"],
        // Refusals.
        &["bs=0", "if=in.qcow2"],
        &["bs=1x", "if=in.qcow2"],
        &["count=x", "if=in.qcow2"],
        &["count=-1", "if=in.qcow2"],
        &["skip=-1", "if=in.qcow2"],
        &["foo=1", "if=in.qcow2"],
        &["bs", "if=in.qcow2"],
    ];
    for args in cases {
        assert_dd_like_qemu(&fx, args, "raw");
    }
    for args in &cases[..6] {
        let mut with = vec!["-O", "qcow2"];
        with.extend(*args);
        assert_dd_like_qemu(&fx, &with, "qcow2");
    }
    let out = fx.qimg(&["dd", "if=in.qcow2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Must specify both input and output files"));
}

/// Proxmox's qemu-img dd extension, as qemu-server copies EFI disks
/// (proxmox/qemu-server, PVE/QemuServer.pm: `qemu-img dd -n -f SRC_FMT -O
/// DST_FMT [-l SNAPSHOT] bs=1M osize=SIZE if=SRC of=DST`): into an
/// existing image of the given size, with the data at its start.
#[test]
fn proxmox_dd_into_an_existing_image() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f raw a.raw 3M
         qemu-io -f raw -c 'write -P 7 0 2M' a.raw >/dev/null
         qemu-img create -q -f raw b.raw 8M
         qemu-io -f raw -c 'write -P 9 0 8M' b.raw >/dev/null");
    let out = fx.qimg(&[
        "dd", "-n", "-f", "raw", "-O", "raw", "bs=1M", "osize=8M", "if=a.raw", "of=b.raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = fx.read("b.raw");
    assert_eq!(b.len(), 8 << 20);
    assert!(b[..2 << 20].iter().all(|&x| x == 7));
    assert!(
        b[2 << 20..3 << 20].iter().all(|&x| x == 0),
        "a's zeros were written"
    );
    assert!(
        b[3 << 20..].iter().all(|&x| x == 9),
        "past a's end, b is kept"
    );
    // osize= without -n sizes a new output.
    let out = fx.qimg(&[
        "dd", "-f", "raw", "bs=1M", "osize=5M", "if=a.raw", "of=c.raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(fx.path("c.raw")).unwrap().len(), 5 << 20);
    let c = fx.read("c.raw");
    assert!(c[..2 << 20].iter().all(|&x| x == 7) && c[2 << 20..].iter().all(|&x| x == 0));
}

/// `-l` reads an internal snapshot, as Proxmox copies an EFI disk of a
/// snapshot (`dd -n ... -l SNAPSHOT`).
#[test]
fn dd_from_a_snapshot() {
    let fx = Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 s.qcow2 1M
         qemu-io -c 'write -P 4 0 1M' s.qcow2 >/dev/null
         qemu-img snapshot -c snap s.qcow2
         qemu-io -c 'write -P 5 0 1M' s.qcow2 >/dev/null
         qemu-img create -q -f raw out.raw 1M
         qemu-img convert -O raw -l snap s.qcow2 snap.raw");
    let out = fx.qimg(&[
        "dd",
        "-n",
        "-f",
        "qcow2",
        "-O",
        "raw",
        "-l",
        "snap",
        "bs=1M",
        "osize=1M",
        "if=s.qcow2",
        "of=out.raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    fx.assert_same("snap.raw", "out.raw");
}
