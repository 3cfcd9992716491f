//! Block jobs in a VMM: start one (`block-stream`, `block-commit`,
//! `drive-mirror`, `drive-backup`), follow it to its end (progress from
//! `query-block-jobs`, the end from its events), pivot a mirror or an
//! active commit once it is ready, cancel on request, and the small
//! controls of `qimg job` (pause, resume, cancel, complete, speed).

use super::qmp::Qmp;
use crate::engine::control::Progress;
use crate::error::{Error, ErrorKind, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often progress is polled while waiting.
const POLL: Duration = Duration::from_millis(500);

/// A block job as `query-block-jobs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job id.
    pub id: String,
    /// stream, commit, mirror, ...
    pub kind: String,
    /// created, running, paused, ready, ...
    pub status: String,
    /// Bytes done.
    pub offset: u64,
    /// Bytes in all (may change while the job runs).
    pub len: u64,
    /// The rate limit in bytes/s (0: none).
    pub speed: u64,
}

impl JobInfo {
    fn from_json(v: &Value) -> Option<JobInfo> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(JobInfo {
            id: text("device")?,
            kind: text("type").unwrap_or_default(),
            status: text("status").unwrap_or_default(),
            offset: num("offset"),
            len: num("len"),
            speed: num("speed"),
        })
    }
}

/// The VMM's block jobs.
pub fn list(qmp: &mut Qmp) -> Result<Vec<JobInfo>> {
    let reply = qmp.execute("query-block-jobs", None)?;
    Ok(reply
        .as_array()
        .map(|a| a.iter().filter_map(JobInfo::from_json).collect())
        .unwrap_or_default())
}

/// The job `id`, or the only job when `id` is `None`.
pub fn pick(qmp: &mut Qmp, id: Option<&str>) -> Result<String> {
    if let Some(id) = id {
        return Ok(id.to_string());
    }
    let jobs = list(qmp)?;
    match jobs.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(Error::argument("the VMM runs no block job")),
        _ => Err(Error::argument(format!(
            "the VMM runs {} block jobs ({}); name one",
            jobs.len(),
            jobs.iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A control command for job `id`: `block-job-pause`, `-resume`,
/// `-cancel`, `-complete`, or `-set-speed` with `speed`.
pub fn control(qmp: &mut Qmp, command: &str, id: &str, speed: Option<u64>) -> Result<()> {
    let mut args = json!({ "device": id });
    if let Some(s) = speed {
        args["speed"] = json!(s);
    }
    qmp.execute(command, Some(args)).map(|_| ())
}

/// Starts a job: `command` (block-stream, block-commit) with `arguments`,
/// which must include the job id.
pub fn start(qmp: &mut Qmp, command: &str, arguments: Value) -> Result<()> {
    qmp.execute(command, Some(arguments)).map(|_| ())
}

/// How a followed job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// It finished its work (an active commit also pivoted, unless told not to).
    Completed,
    /// It was cancelled before finishing.
    Cancelled,
    /// It is ready and was left running, as asked ([`OnReady::Leave`]):
    /// a mirror keeps the target in sync until `qimg job complete`.
    Ready,
    /// The deadline came first: the job was cancelled, what it copied
    /// stays (a stream or commit started again continues from there).
    TimeUp,
    /// It failed; QEMU's error text.
    Failed(String),
}

/// What to do when a job that waits to be completed (a mirror, an active
/// commit) reports that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReady {
    /// Complete it: the VM switches to the target (a mirror) or to the
    /// base (an active commit).
    Complete,
    /// Cancel it: a ready commit then ends as completed with its data in
    /// the base, the VM still on the top.
    Cancel,
    /// Leave it running and stop following ([`JobEnd::Ready`]).
    Leave,
}

/// What to do while following a job.
pub struct Follow<'a> {
    /// What a ready job gets.
    pub on_ready: OnReady,
    /// Called with the job's progress.
    pub on_progress: &'a dyn Fn(Progress),
    /// When set, the job is cancelled (once) and followed to its end.
    pub cancel: Option<&'a AtomicBool>,
    /// Whether the host is too busy for the job now: asked at every poll;
    /// the job is paused while it says so and resumed after.
    pub busy: Option<&'a dyn Fn() -> bool>,
    /// Told of each event of the job as it happens: `ready`, `error` (an
    /// I/O error QEMU reports, the job may go on or end), `completed`,
    /// `cancelled`, and `paused`/`resumed` for [`Follow::busy`].
    pub on_event: &'a dyn Fn(&'static str),
    /// When the job is cancelled if it has not ended ([`JobEnd::TimeUp`]).
    pub deadline: Option<Instant>,
}

fn event_for<'v>(event: &'v Value, id: &str) -> Option<(&'v str, &'v Value)> {
    let name = event.get("event")?.as_str()?;
    let data = event.get("data")?;
    let who = data
        .get("device")
        .or_else(|| data.get("id"))
        .and_then(Value::as_str)?;
    (who == id).then_some((name, data))
}

/// Follows job `id` until it ends.
pub fn follow(qmp: &mut Qmp, id: &str, how: &Follow<'_>) -> Result<JobEnd> {
    let mut cancel_sent = false;
    let mut timed_out = false;
    let mut paused = false;
    let mut missing = 0;
    loop {
        // Pacing first, so a busy host pauses the job before it runs on.
        if let (Some(busy), false) = (how.busy, cancel_sent) {
            let now_busy = busy();
            if now_busy != paused {
                let command = if now_busy {
                    "block-job-pause"
                } else {
                    "block-job-resume"
                };
                control(qmp, command, id, None)?;
                paused = now_busy;
                (how.on_event)(if paused { "paused" } else { "resumed" });
            }
        }
        let late = how.deadline.is_some_and(|at| Instant::now() >= at);
        let interrupted = how.cancel.is_some_and(|flag| flag.load(Ordering::SeqCst));
        if !cancel_sent && (late || interrupted) {
            timed_out = late && !interrupted;
            if paused {
                // QEMU refuses to cancel a job the user paused.
                control(qmp, "block-job-resume", id, None)?;
                paused = false;
            }
            match qmp.try_execute("block-job-cancel", Some(json!({ "device": id })))? {
                Ok(_) => cancel_sent = true,
                Err(e) if e.class == "DeviceNotActive" => {
                    return Ok(if timed_out {
                        JobEnd::TimeUp
                    } else {
                        JobEnd::Cancelled
                    })
                }
                Err(e) => return Err(Error::new(ErrorKind::InvalidArgument, e.desc)),
            }
        }
        if let Some(event) = qmp.next_event(POLL)? {
            let Some((name, data)) = event_for(&event, id) else {
                continue;
            };
            match name {
                "BLOCK_JOB_READY" => (how.on_event)("ready"),
                "BLOCK_JOB_ERROR" => (how.on_event)("error"),
                "BLOCK_JOB_COMPLETED" => (how.on_event)("completed"),
                "BLOCK_JOB_CANCELLED" => (how.on_event)("cancelled"),
                _ => {}
            }
            match name {
                "BLOCK_JOB_READY" if !cancel_sent => match how.on_ready {
                    OnReady::Complete => control(qmp, "block-job-complete", id, None)?,
                    OnReady::Cancel => {
                        control(qmp, "block-job-cancel", id, None)?;
                        cancel_sent = true;
                    }
                    OnReady::Leave => {
                        report(how, data);
                        return Ok(JobEnd::Ready);
                    }
                },
                "BLOCK_JOB_COMPLETED" => {
                    report(how, data);
                    return Ok(match data.get("error").and_then(Value::as_str) {
                        Some(e) => JobEnd::Failed(e.to_string()),
                        None => JobEnd::Completed,
                    });
                }
                "BLOCK_JOB_CANCELLED" if timed_out => return Ok(JobEnd::TimeUp),
                "BLOCK_JOB_CANCELLED" => return Ok(JobEnd::Cancelled),
                _ => {}
            }
            continue;
        }
        match list(qmp)?.into_iter().find(|j| j.id == id) {
            Some(job) => {
                missing = 0;
                (how.on_progress)(Progress {
                    done: job.offset,
                    total: job.len,
                });
            }
            None => {
                // Its end event may be queued behind the reply: look once more.
                missing += 1;
                if missing > 2 {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("Block job '{id}' not found"),
                    ));
                }
            }
        }
    }
}

fn report(how: &Follow<'_>, data: &Value) {
    let num = |k: &str| data.get(k).and_then(Value::as_u64).unwrap_or(0);
    (how.on_progress)(Progress {
        done: num("offset"),
        total: num("len"),
    });
}
