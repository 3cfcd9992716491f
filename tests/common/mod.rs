//! Helpers shared by the integration tests: a temporary directory per test,
//! the reference tools (qemu-img, qemu-io) and the qimg binary.

#![allow(dead_code)]

pub mod slots;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Panics with a clear message when a reference tool is missing: a test that
/// needs qemu-img must fail, never skip silently.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found on PATH: these tests compare qimg with QEMU's tools; \
         install them with `apt-get install -y qemu-utils`"
    );
}

/// A temporary directory where a test builds its images.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A new empty directory; checks that qemu-img and qemu-io exist.
    pub fn new() -> Self {
        require_tool("qemu-img");
        require_tool("qemu-io");
        Fixture {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a shell script in the directory (qemu-img/qemu-io recipes) and
    /// panics with its stderr if it fails.
    pub fn sh(&self, script: &str) {
        let out = Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "fixture script failed:\n{script}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a program in the directory.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(self.dir())
            .output()
            .unwrap_or_else(|e| panic!("could not run {program}: {e}"))
    }

    /// Runs `program` ("qimg" for this crate's binary) in the
    /// subdirectory `subdir`, so relative backing names resolve as a
    /// user in that directory would see them.
    pub fn run_in(&self, subdir: &str, program: &str, args: &[&str]) -> Output {
        let program = match program {
            "qimg" => assert_cmd::cargo::cargo_bin("qimg"),
            other => PathBuf::from(other),
        };
        Command::new(&program)
            .args(args)
            .current_dir(self.path(subdir))
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()))
    }

    /// Runs qimg in the directory.
    pub fn qimg(&self, args: &[&str]) -> Output {
        let mut cmd = assert_cmd::Command::cargo_bin("qimg").expect("qimg binary");
        cmd.args(args)
            .current_dir(self.dir())
            .timeout(std::time::Duration::from_secs(20));
        cmd.output().expect("run qimg")
    }

    /// Runs qemu-img in the directory.
    pub fn qemu_img(&self, args: &[&str]) -> Output {
        self.run("qemu-img", args)
    }

    /// Writes a file into the directory.
    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).expect("write fixture");
    }

    /// Reads a file of the directory.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read fixture")
    }

    /// Asserts that `qemu-img check` finds neither corruption nor leak in
    /// `image`, showing its report otherwise.
    pub fn assert_clean(&self, image: &str) {
        let out = self.qemu_img(&["check", image]);
        assert!(
            out.status.success(),
            "qemu-img check {image}: exit {:?}\n{}{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
    }

    /// Asserts that `qemu-img compare` finds the guest content of `a` and
    /// `b` identical (each probed, through its backing chain).
    pub fn assert_same(&self, a: &str, b: &str) {
        let out = self.qemu_img(&["compare", a, b]);
        assert!(
            out.status.success(),
            "qemu-img compare {a} {b}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// Sets entry `index` of the L2 table that L1 entry 0 points to, in a QED
/// image with 64 KiB clusters.
pub fn patch_qed_l2(fx: &Fixture, file: &str, index: usize, value: u64) {
    let mut b = fx.read(file);
    let l2 = u64::from_le_bytes(b[0x10000..0x10008].try_into().unwrap()) as usize;
    b[l2 + index * 8..l2 + index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    fx.write(file, &b);
}

/// Two QED images with one leaked cluster each, made by unhooking an L2
/// entry: `mid.qed` leaks among its data clusters, `table.qed` right before
/// its L2 table (which reclaiming must then move through the end of the
/// file). Returns their names.
pub fn qed_images_with_a_leak(fx: &Fixture) -> [&'static str; 2] {
    fx.sh(
        "qemu-img create -q -f qed mid.qed 4M
         qemu-io -f qed -c 'write -P 1 0 64k' -c 'write -P 2 64k 64k' -c 'write -P 3 1M 64k' -c 'write -P 4 3M 64k' mid.qed >/dev/null
         qemu-img create -q -f qed table.qed 4M
         qemu-io -f qed -c 'write -P 1 0 64k' table.qed >/dev/null",
    );
    patch_qed_l2(fx, "mid.qed", 0, 0);
    patch_qed_l2(fx, "table.qed", 0, 0);
    ["mid.qed", "table.qed"]
}

/// Checks `--progress=json` output: every stderr line is a record of
/// operation `op`, `done` never goes back, and the last record is complete.
pub fn assert_json_progress(out: &Output, op: &str) {
    let records: Vec<serde_json::Value> = stderr(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect();
    assert!(!records.is_empty(), "no progress records");
    assert!(records.iter().all(|r| r["op"] == op), "{records:?}");
    let done: Vec<u64> = records
        .iter()
        .map(|r| r["done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    let last = records.last().unwrap();
    assert_eq!(last["done"], last["total"], "{last}");
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small deterministic generator (xorshift64*), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A three-image chain in `dir`: base (0x11 in 0-1M) <- mid (0x22 in
/// 512k-1.5M, a zero cluster at 3M) <- the top `top` of format `format`
/// (0x33 at 1M). The top's guest content is saved as `dir/before.raw`.
pub fn three_layer_chain(fx: &Fixture, dir: &str, top: &str, format: &str) {
    fx.sh(&format!(
        "mkdir -p {dir} && cd {dir}
         qemu-img create -q -f qcow2 base.qcow2 4M
         qemu-io -c 'write -P 0x11 0 1M' base.qcow2 >/dev/null
         qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
         qemu-io -c 'write -P 0x22 512k 1M' -c 'write -z 3M 64k' mid.qcow2 >/dev/null
         qemu-img create -q -f {format} -b mid.qcow2 -F qcow2 {top}
         qemu-io -f {format} -c 'write -P 0x33 1M 64k' {top} >/dev/null
         qemu-img convert -O raw {top} before.raw"
    ));
}

/// `qemu-img map --output=json` without host offsets: where guest ranges
/// come from, whatever the layout of the file.
pub fn map_without_offsets(fx: &Fixture, image: &str) -> String {
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

/// Where `image`'s guest ranges come from, by `qemu-img map --output=json`:
/// runs of (start, length, depth, present, zero, data), neighbours with
/// the same facts merged, so that two images with the same allocation
/// compare equal whatever their host layout.
pub fn allocation(fx: &Fixture, image: &str) -> Vec<(u64, u64, u64, bool, bool, bool)> {
    let out = fx.qemu_img(&["map", "--output=json", image]);
    assert!(
        out.status.success(),
        "qemu-img map {image}: {}",
        stderr(&out)
    );
    let map: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("map JSON");
    let mut runs: Vec<(u64, u64, u64, bool, bool, bool)> = Vec::new();
    for e in map {
        let run = (
            e["start"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            e["depth"].as_u64().unwrap(),
            e["present"].as_bool().unwrap(),
            e["zero"].as_bool().unwrap(),
            e["data"].as_bool().unwrap(),
        );
        match runs.last_mut() {
            Some(last) if (last.2, last.3, last.4, last.5) == (run.2, run.3, run.4, run.5) => {
                last.1 += run.1
            }
            _ => runs.push(run),
        }
    }
    runs
}

/// A qemu-storage-daemon serving `image` (qcow2, opened with its backing
/// chain, writable) as node `top`, with a QMP monitor on `qmp.sock` in the
/// same directory. Killed when dropped.
pub struct Daemon {
    child: std::process::Child,
    /// The QMP socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts the daemon in `fx`'s directory `dir` (relative names resolve
    /// there) and waits until its monitor accepts connections.
    pub fn start(fx: &Fixture, dir: &str, image: &str) -> Daemon {
        Self::start_with_monitor(
            fx,
            dir,
            image,
            "socket,id=m,path=qmp.sock,server=on,wait=off",
        )
    }

    /// As [`Daemon::start`], with the monitor on 127.0.0.1:`port` over TCP.
    pub fn start_tcp(fx: &Fixture, dir: &str, image: &str, port: u16) -> Daemon {
        let chardev = format!("socket,id=m,host=127.0.0.1,port={port},server=on,wait=off");
        let mut daemon = Self::start_with_monitor(fx, dir, image, &chardev);
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(daemon.running(), "qemu-storage-daemon exited");
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "no QMP port"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }

    fn start_with_monitor(fx: &Fixture, dir: &str, image: &str, chardev: &str) -> Daemon {
        require_tool("qemu-storage-daemon");
        let cwd = fx.path(dir);
        let socket = cwd.join("qmp.sock");
        let _ = std::fs::remove_file(&socket);
        let tcp = chardev.contains("port=");
        let child = Command::new("qemu-storage-daemon")
            .args([
                "--blockdev",
                &format!(
                    "{{\"driver\":\"qcow2\",\"node-name\":\"top\",\"file\":{{\"driver\":\"file\",\"filename\":\"{image}\"}}}}"
                ),
                "--chardev",
                chardev,
                "--monitor",
                "chardev=m",
            ])
            .current_dir(&cwd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start qemu-storage-daemon");
        let mut daemon = Daemon { child, socket };
        let start = std::time::Instant::now();
        while !tcp && std::os::unix::net::UnixStream::connect(&daemon.socket).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("qemu-storage-daemon exited: {status}");
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "no QMP socket"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }

    /// Stops the daemon as an operator would (SIGTERM: it closes its
    /// images cleanly) and waits for it.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    /// Kills the daemon and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Controls that cancel a copy (as SIGINT does, through `flag`) once
/// `bytes` of it are done.
pub fn cancel_after(
    flag: &'static std::sync::atomic::AtomicBool,
    bytes: u64,
) -> qimg::engine::control::Control {
    qimg::engine::control::Control::default()
        .with_cancel_flag(flag)
        .with_progress(move |p| {
            if p.done >= bytes {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })
}

/// Asserts that a copy stopped because it was cancelled.
pub fn assert_cancelled(outcome: qimg::engine::Outcome) {
    assert!(
        matches!(
            outcome,
            qimg::engine::Outcome::Stopped {
                reason: qimg::engine::control::StopReason::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// One entry of a qcow2 snapshot table, as bytes (padded to 8): the
/// snapshot's L1 table (`l1_offset`, `l1_size`), `extra` bytes of extra
/// data, the ID and a name of `name_len` bytes (`n`, `nn`, ...).
pub fn snapshot_entry(
    l1_offset: u64,
    l1_size: u32,
    extra: &[u8],
    id: &str,
    name_len: usize,
) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend(l1_offset.to_be_bytes());
    e.extend(l1_size.to_be_bytes());
    e.extend((id.len() as u16).to_be_bytes());
    e.extend((name_len as u16).to_be_bytes());
    e.extend(1_700_000_000u32.to_be_bytes());
    e.extend(0u32.to_be_bytes());
    e.extend(0u64.to_be_bytes());
    e.extend(0u32.to_be_bytes());
    e.extend((extra.len() as u32).to_be_bytes());
    e.extend(extra);
    e.extend(id.as_bytes());
    e.extend(std::iter::repeat_n(b'n', name_len));
    e.resize(e.len().div_ceil(8) * 8, 0);
    e
}

/// The first snapshot's L1 table (offset, size) of a qcow2 image.
pub fn first_snapshot_l1(fx: &Fixture, image: &str) -> (u64, u32) {
    let b = fx.read(image);
    let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let table = be64(64) as usize;
    (
        be64(table),
        u32::from_be_bytes(b[table + 8..table + 12].try_into().unwrap()),
    )
}

/// Replaces the snapshot table of `image` (64 KiB clusters, 16-bit
/// refcounts, one refcount block, as qemu-img creates small images) with
/// `entries`, written after the end of the file, with the refcounts set
/// so that the image stays consistent: the new table's clusters count 1,
/// the old table's 0. Written sparsely, so large tables cost little.
pub fn replace_snapshot_table(fx: &Fixture, image: &str, entries: &[Vec<u8>]) {
    use std::os::unix::fs::FileExt;
    const CS: u64 = 65536;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.path(image))
        .expect("open image");
    let read64 = |at: u64| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, at).unwrap();
        u64::from_be_bytes(b)
    };
    let old_table = read64(64);
    let old_count = {
        let mut b = [0u8; 4];
        file.read_exact_at(&mut b, 60).unwrap();
        u32::from_be_bytes(b)
    };
    let block = read64(read64(48)) & !0x1ff;
    let set_refcount = |cluster: u64, value: u16| {
        assert!(
            cluster < CS / 2,
            "cluster {cluster} is past the first refcount block"
        );
        file.write_all_at(&value.to_be_bytes(), block + 2 * cluster)
            .unwrap();
    };
    let start = file.metadata().unwrap().len().div_ceil(CS) * CS;
    let mut at = start;
    for e in entries {
        file.write_all_at(e, at).unwrap();
        at += e.len() as u64;
    }
    let end = at.div_ceil(CS) * CS;
    file.set_len(end).unwrap();
    for c in start / CS..end / CS {
        set_refcount(c, 1);
    }
    if old_count > 0 && old_table != 0 {
        set_refcount(old_table / CS, 0);
    }
    file.write_all_at(&(entries.len() as u32).to_be_bytes(), 60)
        .unwrap();
    file.write_all_at(&start.to_be_bytes(), 64).unwrap();
}

/// Two qcow2 images, each with a preallocated zero cluster whose host
/// offset is not cluster-aligned (qemu-img check reports it, `-r all`
/// drops the offset): `ext.qcow2` (extended L2, over `base.raw`) and
/// `std.qcow2` (standard entries). Returns their names.
pub fn misaligned_zero_clusters(fx: &Fixture) -> [&'static str; 2] {
    fx.sh(
        "qemu-img create -q -f raw base.raw 128k
         qemu-img create -q -f qcow2 -o extended_l2=on -F raw -b base.raw ext.qcow2 128k
         qemu-io -c 'write -P 1 4k 2k' -c 'write -z 4k 2k' ext.qcow2 >/dev/null
         printf '\\x02' | dd of=ext.qcow2 bs=1 seek=$((0x40006)) conv=notrunc status=none
         qemu-img create -q -f qcow2 std.qcow2 1M
         qemu-io -c 'write -P 7 0 64k' -c 'write -z 0 64k' -c 'write -P 8 64k 64k' std.qcow2 >/dev/null
         printf '\\x02' | dd of=std.qcow2 bs=1 seek=$((0x40006)) conv=notrunc status=none",
    );
    ["ext.qcow2", "std.qcow2"]
}

/// Runs `before... COPY after...` with qemu-img and with qimg, each on its
/// own copy of `image` (`q-IMAGE` and `m-IMAGE`, made afresh): the way to
/// compare what both tools do to the same image. Returns (qemu-img's
/// output, qimg's output, qemu-img's copy, qimg's copy).
pub fn on_copies(
    fx: &Fixture,
    image: &str,
    before: &[&str],
    after: &[&str],
) -> (Output, Output, String, String) {
    let (theirs, ours) = (format!("q-{image}"), format!("m-{image}"));
    std::fs::copy(fx.path(image), fx.path(&theirs)).expect("copy for qemu-img");
    std::fs::copy(fx.path(image), fx.path(&ours)).expect("copy for qimg");
    let args = |file: &str| -> Vec<String> {
        before
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(file.to_string()))
            .chain(after.iter().map(|s| s.to_string()))
            .collect()
    };
    let (q, m) = (args(&theirs), args(&ours));
    let q: Vec<&str> = q.iter().map(String::as_str).collect();
    let m: Vec<&str> = m.iter().map(String::as_str).collect();
    (fx.qemu_img(&q), fx.qimg(&m), theirs, ours)
}

/// Runs `args` with qemu-img and with qimg in the fixture and asserts the
/// same exit code and stdout; returns (qemu-img's output, qimg's output)
/// for checks of their own.
pub fn assert_same_answer(fx: &Fixture, args: &[&str]) -> (Output, Output) {
    let q = fx.qemu_img(args);
    let m = fx.qimg(args);
    assert_eq!(
        m.status.code(),
        q.status.code(),
        "{args:?}: exit (qemu-img said {}{})\nqimg: {}",
        stdout(&q),
        stderr(&q),
        stderr(&m)
    );
    assert_eq!(stdout(&m), stdout(&q), "{args:?}: stdout");
    (q, m)
}

/// `qimg convert -n -f raw -O FORMAT src.raw TARGET` run in this process
/// (the fixture's `src.raw` into its existing `target`), every file it
/// writes going through `session`'s fault injector: a crash test's copy.
pub fn convert_raw_in_process(
    fx: &Fixture,
    session: &qimg::io::FaultSessionGuard,
    target: &str,
    format: &str,
) -> qimg::error::Result<qimg::engine::Outcome> {
    convert_raw_in_process_with(fx, session.options(), target, format)
}

/// As [`convert_raw_in_process`], with the storage options given (a
/// fault session's, with the secret of an encrypted target added).
pub fn convert_raw_in_process_with(
    fx: &Fixture,
    options: qimg::io::StorageOptions,
    target: &str,
    format: &str,
) -> qimg::error::Result<qimg::engine::Outcome> {
    use qimg::format::registry::by_name;
    use qimg::format::FormatKind;
    let request = qimg::ops::convert::ConvertRequest {
        sources: vec![fx.path("src.raw")],
        source_format: Some(FormatKind::of(by_name("raw").unwrap())),
        target: fx.path(target),
        target_format: FormatKind::of(by_name(format).unwrap()),
        options: Vec::new(),
        backing: None,
        backing_format: None,
        no_create: true,
        target_is_zero: false,
        sparse: 4096,
        threads: 2,
        compress: false,
        snapshot: None,
        salvage: false,
        copy_range: false,
        bitmaps: None,
    };
    let control = qimg::engine::control::Control::default().with_storage_options(options);
    qimg::ops::convert::convert(&request, &control)
}

/// Converts src.raw into `target` (reset to `empty` first) in process as
/// `format`, cut after `n` of `total` changes, and writes back what a crash
/// leaves: all the unflushed writes, none, or every other one, by `n`.
/// Returns the write-back pattern used (for messages). Writers in parallel
/// may gather pieces differently from run to run, so a late cut can come
/// after the run's last change: then the convert must have succeeded.
#[allow(dead_code)] // not every test binary cuts converts
pub fn cut_convert(
    fx: &Fixture,
    target: &str,
    format: &str,
    empty: &[u8],
    n: u64,
    total: u64,
) -> u64 {
    cut_convert_with(fx, target, format, (target, empty), n, total, |o| o).pattern
}

/// Converts src.raw into the existing `target` in process as `format`
/// through a fault session that never cuts (its options passed through
/// `options`), writes every change back, and returns how many changes the
/// convert made: the cut points a crash test then tries.
#[allow(dead_code)] // not every test binary cuts converts
pub fn uncut_convert_with(
    fx: &Fixture,
    target: &str,
    format: &str,
    options: impl FnOnce(qimg::io::StorageOptions) -> qimg::io::StorageOptions,
) -> u64 {
    let session = qimg::io::FaultSession::start(u64::MAX);
    let outcome = convert_raw_in_process_with(fx, options(session.options()), target, format)
        .expect("clean run");
    assert_eq!(outcome, qimg::engine::Outcome::Completed);
    session.write_back(|_, _| true).unwrap();
    session.changes()
}

/// How a cut convert ([`cut_convert_with`]) went.
#[allow(dead_code)] // not every test binary cuts converts
pub struct Cut {
    /// The write-back pattern used: 0 all unflushed writes kept, 1 none,
    /// 2 every other one.
    pub pattern: u64,
    /// Whether the cut came before the convert's end (it then failed).
    pub crashed: bool,
}

/// As [`cut_convert`], resetting the file `reset.0` (the target, or the
/// extent file a descriptor names) to `reset.1` first, with the fault
/// session's storage options passed through `options` (to add a secret).
#[allow(dead_code)] // not every test binary cuts converts
pub fn cut_convert_with(
    fx: &Fixture,
    target: &str,
    format: &str,
    reset: (&str, &[u8]),
    n: u64,
    total: u64,
    options: impl FnOnce(qimg::io::StorageOptions) -> qimg::io::StorageOptions,
) -> Cut {
    fx.write(reset.0, reset.1);
    let session = qimg::io::FaultSession::start(n);
    let result = convert_raw_in_process_with(fx, options(session.options()), target, format);
    let crashed = session.crashed();
    assert_eq!(crashed, result.is_err(), "cut at {n}/{total}");
    let pattern = n % 3;
    session
        .write_back(|_, i| match pattern {
            0 => true,
            1 => false,
            _ => i % 2 == 0,
        })
        .unwrap();
    Cut { pattern, crashed }
}

/// Runs qimg with `args` under `strace -f`, tracing the system calls
/// `calls` (`openat,connect`), in the fixture's subdirectory `subdir`
/// (`""` for the fixture's own) with `env` set: the output and the trace
/// (failed calls included).
#[allow(dead_code)] // not every test binary traces
pub fn strace_qimg(
    fx: &Fixture,
    subdir: &str,
    calls: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, String) {
    require_tool("strace");
    let trace = fx.path("trace");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin("qimg"))
        .args(args)
        .env_remove("QIMG_UNTRUSTED")
        .envs(env.iter().copied())
        .current_dir(fx.dir().join(subdir))
        .output()
        .expect("run strace");
    let text = std::fs::read_to_string(&trace).expect("read trace");
    (out, text)
}
