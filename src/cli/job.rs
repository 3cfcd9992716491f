//! `qimg job`: control the block jobs of a running VMM.

use super::args::{parse_size, OutputArg, ProgressArg};
use super::attached;
use clap::{Args, Subcommand};
use qimg::attach::jobs::{control, list, pick, OnReady};
use qimg::error::{Error, Result};
use qimg::output::human::size_to_str;
use serde_json::json;
use std::process::ExitCode;

/// Arguments of `qimg job`.
#[derive(Debug, Args)]
#[command(
    after_help = "ID may be left out when the VMM runs exactly one block job.\n\nExamples:\n  qimg job --attach /run/vm/qmp.sock list\n  qimg job --attach /run/vm/qmp.sock set-speed 20M nightly-stream\n  qimg job --attach /run/vm/qmp.sock wait -p"
)]
pub struct JobArgs {
    /// The VMM's QMP socket (a path, or tcp:HOST:PORT).
    #[arg(long, value_name = "SOCKET")]
    attach: String,
    /// What to do.
    #[command(subcommand)]
    action: JobAction,
}

/// The job actions.
#[derive(Debug, Subcommand)]
enum JobAction {
    /// List the block jobs (a table, or QEMU's records with --output json).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
        output: OutputArg,
    },
    /// Pause a job.
    Pause {
        /// The job id.
        id: Option<String>,
    },
    /// Resume a paused job.
    Resume {
        /// The job id.
        id: Option<String>,
    },
    /// Cancel a job (what it copied stays; a stream can be run again).
    Cancel {
        /// The job id.
        id: Option<String>,
    },
    /// Complete a ready job (pivot an active commit).
    Complete {
        /// The job id.
        id: Option<String>,
    },
    /// Change a job's rate limit (bytes/s; 0: none).
    SetSpeed {
        /// The new rate (e.g. 20M).
        #[arg(value_parser = parse_size)]
        rate: u64,
        /// The job id.
        id: Option<String>,
    },
    /// Wait for a job to end (exit 0 when it completes, 1 when it fails or
    /// is cancelled elsewhere, 130/143 when interrupted, which cancels it).
    /// A mirror is waited for until it is ready (in sync), and left running.
    Wait {
        /// Show progress (-p), or JSON Lines records with --progress=json.
        #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
        progress: Option<ProgressArg>,
        /// The job id.
        id: Option<String>,
    },
}

impl JobArgs {
    /// Runs `job`.
    pub fn run(self) -> Result<ExitCode> {
        let mut qmp = attached::connect(&self.attach)?;
        let (command, id, speed) = match self.action {
            JobAction::List { output } => {
                let jobs = list(&mut qmp)?;
                match output {
                    OutputArg::Json => {
                        let records: Vec<_> = jobs
                            .iter()
                            .map(|j| {
                                json!({
                                    "id": j.id, "type": j.kind, "status": j.status,
                                    "offset": j.offset, "len": j.len, "speed": j.speed,
                                })
                            })
                            .collect();
                        println!("{}", serde_json::Value::Array(records));
                    }
                    OutputArg::Human => {
                        println!(
                            "{:<24} {:<8} {:<10} {:>8} {:>12}",
                            "ID", "TYPE", "STATUS", "DONE", "SPEED"
                        );
                        for j in jobs {
                            let pct = if j.len == 0 {
                                0.0
                            } else {
                                j.offset as f64 * 100.0 / j.len as f64
                            };
                            let speed = if j.speed == 0 {
                                "unlimited".to_string()
                            } else {
                                format!("{}/s", size_to_str(j.speed))
                            };
                            println!(
                                "{:<24} {:<8} {:<10} {:>7.2}% {:>12}",
                                j.id, j.kind, j.status, pct, speed
                            );
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            JobAction::Wait { progress, id } => {
                let id = pick(&mut qmp, id.as_deref())?;
                let kind = list(&mut qmp)?
                    .into_iter()
                    .find(|j| j.id == id)
                    .map(|j| j.kind)
                    .ok_or_else(|| Error::argument(format!("Block job '{id}' not found")))?;
                let op = match kind.as_str() {
                    "commit" => "commit",
                    "mirror" => "mirror",
                    "backup" => "backup",
                    _ => "stream",
                };
                // A mirror only ends when told to: waiting for it means
                // waiting until it is in sync.
                let on_ready = if kind == "mirror" {
                    OnReady::Leave
                } else {
                    OnReady::Complete
                };
                let following = attached::Following {
                    on_ready,
                    progress,
                    pacing: attached::Pacing::default(),
                };
                return attached::wait_for(&mut qmp, op, &id, &following);
            }
            JobAction::Pause { id } => ("block-job-pause", id, None),
            JobAction::Resume { id } => ("block-job-resume", id, None),
            JobAction::Cancel { id } => ("block-job-cancel", id, None),
            JobAction::Complete { id } => ("block-job-complete", id, None),
            JobAction::SetSpeed { rate, id } => ("block-job-set-speed", id, Some(rate)),
        };
        let id = pick(&mut qmp, id.as_deref())?;
        control(&mut qmp, command, &id, speed)?;
        Ok(ExitCode::SUCCESS)
    }
}
