//! What `stream`, `commit` and `job` share in attach mode: connecting to
//! the VMM, and starting or following a block job with progress, signals
//! and exit codes.

use super::args::ProgressArg;
use super::progress::Reporter;
use super::signals;
use qimg::attach::jobs::{follow, start, Follow, JobEnd};
use qimg::attach::qmp::{Qmp, DEFAULT_TIMEOUT};
use qimg::engine::control::Progress;
use qimg::error::{Error, ErrorKind, Result};
use serde_json::Value;
use std::cell::Cell;
use std::process::ExitCode;

/// Connects to the VMM's monitor at `socket` (a path or `tcp:HOST:PORT`).
/// Connecting and every reply may take `QIMG_QMP_TIMEOUT` seconds
/// (default 30).
pub fn connect(socket: &str) -> Result<Qmp> {
    let timeout = std::env::var("QIMG_QMP_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(DEFAULT_TIMEOUT, std::time::Duration::from_secs_f64);
    Qmp::connect(socket, timeout)
}

/// The default job id for `op` (qemu-storage-daemon requires one).
pub fn default_job_id(op: &str) -> String {
    format!("qimg-{op}-{}", std::process::id())
}

/// Starts `command` with `arguments` (job id included) and, unless
/// `detach`, follows the job to its end: exit 0 when it completes, 1 with
/// QEMU's error when it fails, 130/143 when a signal cancelled it.
pub fn run_job(
    qmp: &mut Qmp,
    op: &'static str,
    command: &str,
    arguments: Value,
    detach: bool,
    pivot: bool,
    progress: Option<ProgressArg>,
) -> Result<ExitCode> {
    let id = arguments["job-id"]
        .as_str()
        .expect("the caller sets a job id")
        .to_string();
    start(qmp, command, arguments)?;
    if detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(qmp, op, &id, pivot, progress)
}

/// Follows job `id` to its end (see [`run_job`]).
pub fn wait_for(
    qmp: &mut Qmp,
    op: &'static str,
    id: &str,
    pivot: bool,
    progress: Option<ProgressArg>,
) -> Result<ExitCode> {
    signals::install();
    let reporter = Reporter::new(op, progress);
    let last = Cell::new(Progress { done: 0, total: 0 });
    let on_progress = |p: Progress| {
        last.set(p);
        reporter.update(p);
    };
    let how = Follow {
        pivot,
        on_progress: &on_progress,
        cancel: Some(&signals::INTERRUPTED),
    };
    let end = follow(qmp, id, &how);
    reporter.finish(last.get());
    match end? {
        JobEnd::Completed => Ok(ExitCode::SUCCESS),
        JobEnd::Failed(why) => Err(Error::new(
            ErrorKind::Io,
            format!("block job '{id}' failed: {why}"),
        )),
        JobEnd::Cancelled if signals::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => {
            eprintln!(
                "qimg: block job '{id}' cancelled; what it copied stays, run it again to continue"
            );
            Ok(ExitCode::from(signals::exit_code()))
        }
        JobEnd::Cancelled => Err(Error::new(
            ErrorKind::Io,
            format!("block job '{id}' was cancelled"),
        )),
    }
}
