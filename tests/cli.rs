//! The command line itself: help, exit codes, argument parsing.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn qimg() -> Command {
    Command::cargo_bin("qimg").expect("qimg binary")
}

const SUBCOMMANDS: [&str; 8] = [
    "create", "info", "map", "check", "convert", "stream", "commit", "rebase",
];

#[test]
fn help_lists_every_subcommand() {
    let out = qimg().arg("--help").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for sub in SUBCOMMANDS {
        assert!(text.contains(sub), "--help does not mention {sub}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in SUBCOMMANDS {
        qimg()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: qimg"));
    }
}

#[test]
fn qemu_img_flags_are_accepted() {
    // The flags scripts written for qemu-img pass, per subcommand.
    let help = |sub: &str| {
        let out = qimg().args([sub, "--help"]).output().expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expect = [
        ("create", &["-f", "-o", "-b", "-F", "-u", "-q"][..]),
        ("info", &["-f", "--output", "--backing-chain", "-U"]),
        (
            "map",
            &["-f", "--output", "--start-offset", "--max-length", "-U"],
        ),
        ("check", &["-f", "--output", "-r", "-q", "-T", "-U"]),
        (
            "convert",
            &[
                "-f",
                "-O",
                "-o",
                "-c",
                "-B",
                "-F",
                "-n",
                "--target-is-zero",
                "-S",
                "-m",
                "-W",
                "-p",
                "-q",
                "-U",
                "-r",
                "-l",
                "-t",
                "-T",
                "-C",
                "--salvage",
                "--bitmaps",
            ],
        ),
        ("commit", &["-f", "-t", "-b", "-d", "-p", "-q", "-r"]),
        (
            "rebase",
            &["-f", "-t", "-T", "-p", "-q", "-U", "-u", "-c", "-b", "-F"],
        ),
        (
            "stream",
            &[
                "-f",
                "--base",
                "--backing-file",
                "--offset",
                "--length",
                "-r",
                "--time-limit",
                "--deadline",
                "--when-idle",
                "-p",
                "--output",
            ],
        ),
    ];
    for (sub, flags) in expect {
        let text = help(sub);
        for flag in flags {
            let shown = text.contains(&format!("{flag},"))
                || text.contains(&format!("{flag} "))
                || text.contains(&format!("{flag}["))
                || text.contains(&format!("{flag}\n"));
            assert!(shown, "qimg {sub} --help does not list {flag}:\n{text}");
        }
    }
}

#[test]
fn bad_arguments_exit_1() {
    qimg().args(["info", "--output=xml", "x"]).assert().code(1);
    qimg()
        .args(["map", "--start-offset", "1x", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "Invalid start offset specified: '1x'.",
        ));
    qimg()
        .args(["info", "-f", "parallels", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not supported"));
    qimg()
        .args(["info", "-f", "nosuch", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("Unknown file format"));
    qimg().arg("nosuchcommand").assert().code(1);
    qimg().assert().code(1);
}

#[test]
fn sizes_take_qemu_img_suffixes() {
    let fx = common::Fixture::new();
    fx.sh("qemu-img create -q -f qcow2 img.qcow2 4M && qemu-io -c 'write -P 1 1M 1M' img.qcow2 >/dev/null");
    let ours = fx.qimg(&[
        "map",
        "--output=json",
        "--start-offset",
        "1.5M",
        "--max-length",
        "0.25M",
        "img.qcow2",
    ]);
    let theirs = fx.qemu_img(&[
        "map",
        "--output=json",
        "--start-offset",
        "1572864",
        "--max-length",
        "262144",
        "img.qcow2",
    ]);
    assert!(ours.status.success() && theirs.status.success());
    assert_eq!(common::stdout(&ours), common::stdout(&theirs));
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::os::unix::fs::FileExt;
    let fx = common::Fixture::new();
    // A raw file with data every other 4 KiB: its map is megabytes long, far
    // more than a pipe holds, so qimg is still writing when `head` exits.
    let file = std::fs::File::create(fx.path("holes.raw")).unwrap();
    file.set_len(64 << 20).unwrap();
    for i in 0..8192u64 {
        file.write_at(b"x", i * 8192).unwrap();
    }
    let bin = assert_cmd::cargo::cargo_bin("qimg");
    let cmd = format!(
        "set -o pipefail; {} map --output=json -f raw holes.raw | head -c 10 >/dev/null",
        bin.display()
    );
    let out = fx.run("bash", &["-c", &cmd]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).is_empty(), "{}", common::stderr(&out));
}
