//! Crash safety of whole commands: stream, commit and rebase are cut after
//! their N-th change to any image (for many N, with a fault-injecting
//! storage standing in for every file they write), and killed with
//! SIGKILL at random moments. After each stop, `qemu-img check` must find
//! no corruption, the guest must see the top image exactly as before, and
//! running the same command again must finish with the same images a clean
//! run makes.

mod common;

use common::{allocation, stderr, stdout, Fixture, Rng};
use qimg::engine::control::Control;
use qimg::engine::Outcome;
use qimg::io::{FaultSession, FaultSessionGuard};
use qimg::ops::commit::{commit, CommitRequest};
use qimg::ops::rebase::{rebase, RebaseRequest};
use qimg::ops::stream::{stream, StreamRequest};
use std::process::Command;
use std::time::Duration;

/// The images of every scenario, top first (the top's extension is its format).
fn layers(top: &str) -> [String; 3] {
    [top.to_string(), "mid.qcow2".into(), "base.qcow2".into()]
}

/// base (0x11 over 0-1.5M) <- mid (0x22 over 512k-2M, a zero cluster at
/// 3M when it reaches that far) <- top (0x33 scattered over 2M, a zero
/// cluster at 600k, and 0x37 at 3M), 4 MiB; base and mid are 4 MiB too,
/// or 2 MiB with `small_base` (a commit to the base then grows it, moving
/// its L1 table). The
/// top's guest content goes to `before.raw`.
fn make_chain(fx: &Fixture, top: &str, small_base: bool) {
    let format = top.rsplit('.').next().unwrap();
    // The small base has 512-byte clusters: one L1 cluster maps 2 MiB, so
    // growing it to 4 MiB moves its L1 table.
    let (below, base_opts, mid_zero) = if small_base {
        ("2M", "-o cluster_size=512", "")
    } else {
        ("4M", "", "-c 'write -z 3M 64k'")
    };
    fx.sh(&format!(
        "rm -f *.qcow2 *.qed *.raw
         qemu-img create -q -f qcow2 {base_opts} base.qcow2 {below}
         qemu-io -c 'write -P 0x11 0 1536k' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 {below}
         qemu-io -c 'write -P 0x22 512k 1536k' {mid_zero} mid.qcow2 >/dev/null
         qemu-img create -q -f {format} -b mid.qcow2 -F qcow2 {top} 4M
         qemu-io -f {format} -c 'write -P 0x33 0 64k' -c 'write -P 0x34 256k 100k' \
             -c 'write -z 600k 64k' -c 'write -P 0x35 1M 64k' -c 'write -P 0x36 1600k 200k' \
             -c 'write -P 0x37 3M 64k' {top} >/dev/null
         qemu-img convert -O raw {top} before.raw"
    ));
}

/// Runs `args` (a qimg command line) in-process, in `fx`'s directory terms.
/// Runs `args` in this process, every file it writes opened through the
/// session's fault injector.
fn run_in_process(
    fx: &Fixture,
    args: &[&str],
    session: &FaultSessionGuard,
) -> qimg::error::Result<Outcome> {
    let file = fx.path(args.last().unwrap());
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .map(|i| args[i + 1].to_string())
    };
    let control = Control::default().with_storage_options(session.options());
    match args[0] {
        "stream" => {
            let request = StreamRequest {
                file,
                base: flag("--base"),
                range: flag("--offset").map(|o| {
                    let parse = |s: String| qimg::size::parse_size(&s).unwrap();
                    (parse(o), parse(flag("--length").unwrap()))
                }),
                threads: 2,
                ..Default::default()
            };
            stream(&request, &control).map(|(outcome, _)| outcome)
        }
        "commit" => {
            let request = CommitRequest {
                file,
                base: flag("-b"),
                keep_file: args.contains(&"-d"),
                threads: 2,
                ..Default::default()
            };
            commit(&request, &control)
        }
        "rebase" => {
            let request = RebaseRequest {
                file,
                backing: flag("-b").unwrap(),
                backing_format: flag("-F"),
                threads: 2,
                ..Default::default()
            };
            rebase(&request, &control)
        }
        other => panic!("no such command {other}"),
    }
}

/// What the images look like: each one's allocation and backing lines.
fn state(fx: &Fixture, top: &str) -> Vec<String> {
    layers(top)
        .iter()
        .map(|image| {
            let backing: Vec<String> = stdout(&fx.qemu_img(&["info", image]))
                .lines()
                .filter(|l| l.starts_with("backing file"))
                .map(str::to_string)
                .collect();
            format!("{image}: {:?} {backing:?}", allocation(fx, image))
        })
        .collect()
}

/// Every image checks with leaks at most, and the top still shows the
/// guest what it showed before the command.
fn assert_consistent(fx: &Fixture, top: &str, when: &str) {
    for image in layers(top) {
        let check = fx.qemu_img(&["check", &image]);
        let code = check.status.code();
        assert!(
            code == Some(0) || code == Some(3),
            "{when}: qemu-img check {image}: exit {code:?}\n{}{}",
            stdout(&check),
            stderr(&check)
        );
    }
    let compare = fx.qemu_img(&["compare", "before.raw", top]);
    assert!(
        compare.status.success(),
        "{when}: the guest's view of {top} changed: {}",
        stdout(&compare)
    );
}

/// Runs the command again with qimg, unless the stop came after the job
/// was complete, and expects the clean run's result.
fn assert_rerun_finishes(fx: &Fixture, top: &str, args: &[&str], want: &[String], when: &str) {
    if state(fx, top) == want {
        return; // stopped after the last change that mattered
    }
    let out = fx.qimg(args);
    assert!(
        out.status.success(),
        "{when}: rerun of {args:?}: {}",
        stderr(&out)
    );
    assert_consistent(fx, top, &format!("{when}, after the rerun"));
    let got = state(fx, top);
    assert_eq!(
        got, want,
        "{when}: the rerun ended elsewhere than a clean run"
    );
}

/// Cuts `args` after each of its changes (every change when there are few,
/// else an even spread that always includes the last ones, where headers
/// are rewritten), keeping all, none, or half of the unflushed writes.
fn crash_everywhere(top: &str, args: &[&str]) {
    crash_everywhere_in(top, false, args)
}

/// As [`crash_everywhere`], on the chain `make_chain` makes with `small_base`.
fn crash_everywhere_in(top: &str, small_base: bool, args: &[&str]) {
    let fx = Fixture::new();
    make_chain(&fx, top, small_base);
    let originals: Vec<(String, Vec<u8>)> = layers(top)
        .into_iter()
        .map(|f| {
            let bytes = fx.read(&f);
            (f, bytes)
        })
        .collect();
    let restore = || {
        for (name, bytes) in &originals {
            fx.write(name, bytes);
        }
    };
    // A clean run, through the fault layer that never fires.
    let total = {
        let session = FaultSession::start(u64::MAX);
        let outcome = run_in_process(&fx, args, &session).expect("clean run");
        assert_eq!(outcome, Outcome::Completed);
        session.write_back(|_, _| true).unwrap();
        session.changes()
    };
    assert!(total >= 5, "{args:?}: only {total} changes");
    let want = state(&fx, top);
    let points: Vec<u64> = if total <= 80 {
        (0..total).collect()
    } else {
        let stride = total / 60;
        (0..total)
            .step_by(stride as usize)
            .chain(total - 10..total)
            .collect()
    };
    for n in points {
        restore();
        let session = FaultSession::start(n);
        let result = run_in_process(&fx, args, &session);
        assert!(
            session.crashed() && result.is_err(),
            "{args:?}: no crash at change {n} of {total}: {result:?}"
        );
        let pattern = n % 3;
        session
            .write_back(|file, i| match pattern {
                0 => true,
                1 => false,
                _ => (file + i) % 2 == 0,
            })
            .unwrap();
        drop(session);
        let when = format!("{args:?} cut after change {n} of {total} (pattern {pattern})");
        assert_consistent(&fx, top, &when);
        assert_rerun_finishes(&fx, top, args, &want, &when);
    }
}

#[test]
fn stream_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["stream", top]);
    }
}

#[test]
fn stream_to_a_base_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["stream", "--base", "base.qcow2", top]);
    }
}

#[test]
fn sliced_stream_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["stream", "--offset", "1M", "--length", "2M", top]);
    }
}

#[test]
fn commit_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["commit", top]);
    }
}

#[test]
fn commit_keeping_the_top_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["commit", "-d", top]);
    }
}

#[test]
fn commit_to_a_deeper_base_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["commit", "-b", "base.qcow2", top]);
    }
}

#[test]
fn commit_growing_the_base_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere_in(top, true, &["commit", "-b", "base.qcow2", top]);
    }
}

#[test]
fn rebase_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["rebase", "-b", "base.qcow2", "-F", "qcow2", top]);
    }
}

#[test]
fn flattening_rebase_survives_crashes() {
    for top in ["top.qcow2", "top.qed"] {
        crash_everywhere(top, &["rebase", "-b", "", top]);
    }
}

/// The real thing: qimg killed with SIGKILL at random moments of a bigger
/// job. Whatever it had written stays; nothing else happens.
#[test]
fn killed_commands_leave_consistent_images() {
    let fx = Fixture::new();
    let make = || {
        fx.sh("rm -f *.qcow2 *.raw
             qemu-img create -q -f qcow2 base.qcow2 64M
             qemu-io -c 'write -P 0x11 0 40M' base.qcow2 >/dev/null
             qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
             qemu-io -c 'write -P 0x22 8M 8M' mid.qcow2 >/dev/null
             qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
             qemu-io -c 'write -P 0x33 4M 24M' -c 'write -z 40M 4M' top.qcow2 >/dev/null
             qemu-img convert -O raw top.qcow2 before.raw")
    };
    let mut rng = Rng(0x5eed_cafe);
    for args in [
        &["stream", "-r", "100M", "top.qcow2"][..],
        &["commit", "-r", "100M", "top.qcow2"],
        &["rebase", "-r", "100M", "-b", "", "top.qcow2"],
    ] {
        make();
        let out = fx.qimg(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let want = state(&fx, "top.qcow2");
        for round in 0..4 {
            make();
            let mut child = Command::new(assert_cmd::cargo::cargo_bin("qimg"))
                .args(args)
                .current_dir(fx.dir())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
            child.kill().unwrap();
            child.wait().unwrap();
            let when = format!("{args:?} killed (round {round})");
            assert_consistent(&fx, "top.qcow2", &when);
            assert_rerun_finishes(&fx, "top.qcow2", args, &want, &when);
        }
    }
}
