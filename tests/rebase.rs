//! `qimg rebase` against `qemu-img rebase` on identical chains.

mod common;

use common::{stderr, stdout, Fixture};

/// base (0x11 in 0-1M) <- mid (0x22 in 512k-1.5M, zeros at 3M) <- top (0x33 at 1M).
fn chain(fx: &Fixture, dir: &str) {
    fx.sh(&format!(
        "mkdir -p {dir} && cd {dir}
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 0x22 512k 1M' -c 'write -z 3M 64k' mid.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
         qemu-io -c 'write -P 0x33 1M 64k' top.qcow2 >/dev/null
         qemu-img convert -O raw top.qcow2 before.raw"
    ));
}

fn map_without_offsets(fx: &Fixture, image: &str) -> String {
    stdout(&fx.qemu_img(&["map", "--output=json", image]))
        .lines()
        .map(|l| {
            l.split(", \"offset\"")
                .next()
                .unwrap()
                .trim_end_matches('}')
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn safe_rebase_matches_qemu_img() {
    let fx = Fixture::new();
    for (dir, args) in [
        ("onto-base", &["-b", "base.qcow2", "-F", "qcow2"][..]),
        ("flatten", &["-b", ""]),
    ] {
        chain(&fx, &format!("{dir}-q"));
        chain(&fx, &format!("{dir}-m"));
        let mut q = vec!["rebase"];
        q.extend(args);
        q.push("top.qcow2");
        let theirs = fx.run(
            "bash",
            &["-c", &format!("cd {dir}-q && qemu-img {}", shell_words(&q))],
        );
        assert!(theirs.status.success(), "{}", stderr(&theirs));
        let ours = fx.run(
            "bash",
            &[
                "-c",
                &format!(
                    "cd {dir}-m && {} {}",
                    assert_cmd::cargo::cargo_bin("qimg").display(),
                    shell_words(&q)
                ),
            ],
        );
        assert!(ours.status.success(), "{dir}: {}", stderr(&ours));
        let (m, t) = (format!("{dir}-m/top.qcow2"), format!("{dir}-q/top.qcow2"));
        assert!(
            fx.qemu_img(&["compare", &format!("{dir}-m/before.raw"), &m])
                .status
                .success(),
            "{dir}: content"
        );
        assert!(fx.qemu_img(&["check", &m]).status.success(), "{dir}: check");
        assert_eq!(
            map_without_offsets(&fx, &m),
            map_without_offsets(&fx, &t),
            "{dir}: allocation"
        );
        let backing = |f: &str| {
            stdout(&fx.qemu_img(&["info", f]))
                .lines()
                .filter(|l| l.starts_with("backing file"))
                .map(|l| l.split(" (actual path").next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(backing(&m), backing(&t), "{dir}: backing pointer");
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn unsafe_rebase_and_errors() {
    let fx = Fixture::new();
    chain(&fx, "u");
    let out = fx.qimg(&[
        "rebase",
        "-u",
        "-b",
        "elsewhere.qcow2",
        "-F",
        "qcow2",
        "u/top.qcow2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = stdout(&fx.qemu_img(&["info", "u/top.qcow2"]));
    assert!(
        info.contains("backing file: elsewhere.qcow2 (actual path: u/elsewhere.qcow2)\n"),
        "{info}"
    );
    assert!(info.contains("backing file format: qcow2\n"), "{info}");
    fx.sh("qemu-img create -q -f raw disk.raw 1M");
    for (args, needle) in [
        (
            &["rebase", "-b", "u/base.qcow2", "u/mid.qcow2"][..],
            "backing format must be specified",
        ),
        (
            &["rebase", "-u", "-b", "x", "-F", "raw", "disk.raw"],
            "Operation not supported",
        ),
    ] {
        let out = fx.qimg(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}
