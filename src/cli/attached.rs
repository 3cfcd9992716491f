//! What `stream`, `commit` and `job` share in attach mode: connecting to
//! the VMM, and starting or following a block job with progress, signals
//! and exit codes.

use super::args::ProgressArg;
use super::progress::Reporter;
use super::signals;
use qimg::attach::jobs::{follow, start, Follow, JobEnd, OnReady};
use qimg::attach::nodes::node_in_chain;
use qimg::attach::qmp::{Qmp, DEFAULT_TIMEOUT};
use qimg::engine::control::Progress;
use qimg::engine::idle::IoPressureGate;
use qimg::error::{Error, ErrorKind, Result};
use serde_json::Value;
use std::cell::Cell;
use std::process::ExitCode;
use std::time::Instant;

/// The attach-mode options `stream` and `commit` share (flattened into
/// each; what they exclude is declared on the excluded options).
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Run the job in the VM (or qemu-storage-daemon) behind this QMP
    /// socket (a path, or tcp:HOST:PORT) instead of touching the files.
    #[arg(
        long,
        value_name = "SOCKET",
        requires = "device",
        conflicts_with = "file"
    )]
    pub attach: Option<String>,
    /// With --attach: the device or node name of the image (the active layer).
    #[arg(long, value_name = "NAME", requires = "attach")]
    pub device: Option<String>,
    /// With --attach: the base by node name (instead of a file name).
    #[arg(
        long = "base-node",
        value_name = "NODE",
        requires = "attach",
        conflicts_with = "base"
    )]
    pub base_node: Option<String>,
    /// With --attach: the block job's id (default: qimg-OP-PID).
    #[arg(long = "job-id", value_name = "ID", requires = "attach")]
    pub job_id: Option<String>,
    /// With --attach: start the job, print its id and return at once.
    #[arg(long, requires = "attach")]
    pub detach: bool,
}

impl AttachArgs {
    /// The job id to send: the one given, or `qimg-OP-PID`.
    pub fn job_id(&self, op: &str) -> String {
        self.job_id.clone().unwrap_or_else(|| default_job_id(op))
    }
}

/// Where a job of its own kind (`mirror`, `backup`) runs and how it is
/// followed: attach mode is the only mode of those commands, so the
/// socket and device are required.
#[derive(Debug, clap::Args)]
pub struct JobTarget {
    /// The QMP socket of the VM (or qemu-storage-daemon) that runs the job
    /// (a path, or tcp:HOST:PORT).
    #[arg(long, value_name = "SOCKET")]
    pub attach: String,
    /// The device or node name of the disk (its active layer).
    #[arg(long, value_name = "NAME")]
    pub device: String,
    /// The block job's id (default: qimg-OP-PID).
    #[arg(long = "job-id", value_name = "ID")]
    pub job_id: Option<String>,
    /// Start the job, print its id and return at once.
    #[arg(long)]
    pub detach: bool,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = super::args::parse_size)]
    pub rate: Option<u64>,
    /// Pause the VMM's job while host I/O pressure (PSI "some avg10" in
    /// /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT
    /// percent (default 10), and resume it when the host is quiet again.
    #[arg(long = "when-idle", value_name = "PCT", num_args = 0..=1, require_equals = true, default_missing_value = "10")]
    pub when_idle: Option<u32>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    pub progress: Option<ProgressArg>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

impl JobTarget {
    /// How to follow the job: `on_ready`, the progress asked for (none
    /// with -q), and pausing by host pressure.
    pub fn following(&self, on_ready: OnReady) -> Result<Following> {
        Ok(Following {
            on_ready,
            progress: if self.quiet { None } else { self.progress },
            pacing: Pacing {
                idle_gate: super::args::idle_gate(self.when_idle)?,
                deadline: None,
            },
        })
    }

    /// The job id to send: the one given, or `qimg-OP-PID`.
    pub fn job_id(&self, op: &str) -> String {
        self.job_id.clone().unwrap_or_else(|| default_job_id(op))
    }
}

/// `path` as the VMM must be given it: the VMM runs in a directory of its
/// own, so a file name relative to the caller's directory is made
/// absolute. QEMU's other names (`json:{...}`, `nbd://...`, `nbd:...`,
/// `file:...`) go as they are.
pub fn path_for_vmm(path: &std::path::Path) -> Result<String> {
    if let Some(name) = path.to_str() {
        let spelled_for_qemu = ["json:", "nbd:", "file:"]
            .iter()
            .any(|p| name.starts_with(p))
            || name.contains("://");
        if spelled_for_qemu {
            return Ok(name.to_string());
        }
    }
    let absolute = std::path::absolute(path)
        .map_err(|e| Error::io("could not resolve the path", e).with_path(path))?;
    absolute
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::argument("the VMM takes file names in UTF-8 only").with_path(path))
}

/// The node to name in a job for an image given by `node` name or by
/// `file` name (resolved in `device`'s chain), if either was given.
pub fn node_for(
    qmp: &mut Qmp,
    device: &str,
    node: &Option<String>,
    file: &Option<String>,
) -> Result<Option<String>> {
    match (node, file) {
        (Some(n), _) => Ok(Some(n.clone())),
        (None, Some(f)) => node_in_chain(qmp, device, f).map(Some),
        (None, None) => Ok(None),
    }
}

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

/// How a followed job is paced: paused while the host is busy (its I/O
/// pressure above `--when-idle`'s threshold), cancelled at a deadline
/// (`--time-limit`, `--deadline`).
#[derive(Debug, Default)]
pub struct Pacing {
    /// The host's I/O pressure gate, if the job yields to the host.
    pub idle_gate: Option<IoPressureGate>,
    /// When the job is cancelled if still running (exit 75).
    pub deadline: Option<Instant>,
}

/// How qimg follows a job it started or waits for.
#[derive(Debug)]
pub struct Following {
    /// What a ready job gets (a mirror or an active commit).
    pub on_ready: OnReady,
    /// The progress display asked for (`None`: none).
    pub progress: Option<ProgressArg>,
    /// Pausing by host pressure and the deadline.
    pub pacing: Pacing,
}

/// Starts `command` with `arguments` (job id included) and, unless
/// `detach`, follows the job to its end as `following` says: exit 0 when
/// it completes, 1 with QEMU's error when it fails, 130/143 when a signal
/// cancelled it, 75 when the deadline did.
pub fn run_job(
    qmp: &mut Qmp,
    op: &'static str,
    command: &str,
    arguments: Value,
    detach: bool,
    following: &Following,
) -> Result<ExitCode> {
    let id = arguments["job-id"]
        .as_str()
        .expect("the caller sets a job id")
        .to_string();
    let pacing = &following.pacing;
    if detach && (pacing.idle_gate.is_some() || pacing.deadline.is_some()) {
        return Err(Error::argument(
            "--when-idle, --time-limit and --deadline need qimg to follow the job; \
             they cannot be used with --detach",
        ));
    }
    start(qmp, command, arguments)?;
    if detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    wait_for(qmp, op, &id, following)
}

/// Follows job `id` to its end (see [`run_job`]).
pub fn wait_for(
    qmp: &mut Qmp,
    op: &'static str,
    id: &str,
    following: &Following,
) -> Result<ExitCode> {
    let (on_ready, progress, pacing) = (following.on_ready, following.progress, &following.pacing);
    signals::install();
    let reporter = Reporter::new(op, progress);
    let last = Cell::new(Progress { done: 0, total: 0 });
    let on_progress = |p: Progress| {
        last.set(p);
        reporter.update(p);
    };
    let busy = || pacing.idle_gate.as_ref().is_some_and(|g| g.busy());
    let on_event = |event: &'static str| reporter.event(event, last.get());
    let how = Follow {
        on_ready,
        on_progress: &on_progress,
        cancel: Some(&signals::INTERRUPTED),
        busy: pacing
            .idle_gate
            .as_ref()
            .map(|_| &busy as &dyn Fn() -> bool),
        on_event: &on_event,
        deadline: pacing.deadline,
    };
    let end = follow(qmp, id, &how);
    reporter.finish(last.get());
    match end? {
        JobEnd::Completed => Ok(ExitCode::SUCCESS),
        JobEnd::TimeUp => {
            eprintln!(
                "qimg: block job '{id}' stopped at its time limit; what it copied stays, run it again to continue"
            );
            Ok(ExitCode::from(super::exit::STOPPED_EARLY))
        }
        JobEnd::Ready => {
            eprintln!(
                "qimg: block job '{id}' is ready and keeps running; finish it with \
                 `qimg job --attach SOCKET complete {id}` (or cancel it)"
            );
            Ok(ExitCode::SUCCESS)
        }
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
