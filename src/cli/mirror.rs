//! `qimg mirror --attach`: live block copy. The VMM copies the disk to a
//! target while the guest keeps writing (its writes go to both), and once
//! the target is in sync the VM switches to it.

use super::args::{parse_size, FormatArg, FormatParser};
use super::attached::{self, JobTarget};
use clap::{Args, ValueEnum};
use qimg::attach::jobs::OnReady;
use qimg::error::Result;
use serde_json::json;
use std::process::ExitCode;

/// What a mirror copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MirrorSync {
    /// The whole chain's content: the target stands alone.
    Full,
    /// The active layer only: the target gets the source's backing file.
    Top,
    /// Nothing already there: only what the guest writes from now on.
    None,
}

impl MirrorSync {
    fn name(self) -> &'static str {
        match self {
            MirrorSync::Full => "full",
            MirrorSync::Top => "top",
            MirrorSync::None => "none",
        }
    }
}

/// Arguments of `qimg mirror`.
#[derive(Debug, Args)]
#[command(
    after_help = "The target is created by the VMM (as FMT, default the source's format) unless --existing says it is there already; a relative TARGET is taken from the current directory.\n\nExit status: 0 pivoted (or ready, with --no-pivot), 1 error, 130/143 interrupted (the mirror is cancelled; the VM stays on its source).\n\nExamples:\n  qimg mirror --attach /run/vm/qmp.sock --device drive0 -p /new/disk.qcow2\n  qimg mirror --attach /run/vm/qmp.sock --device drive0 --sync top --no-pivot /new/top.qcow2\n  qimg job --attach /run/vm/qmp.sock complete qimg-mirror-1234"
)]
pub struct MirrorArgs {
    /// The job's VMM and device.
    #[command(flatten)]
    job: JobTarget,
    /// Format of TARGET (default: the source's).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// What to copy.
    #[arg(long, value_enum, default_value_t = MirrorSync::Full, value_name = "full|top|none")]
    sync: MirrorSync,
    /// TARGET exists already (of the source's size); it is opened, not created.
    #[arg(long)]
    existing: bool,
    /// Bytes per bit of the dirty bitmap that tracks the guest's writes (a
    /// power of two from 512 to 64M; default: QEMU's choice).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    granularity: Option<u64>,
    /// How much the copy keeps in flight (default: QEMU's choice).
    #[arg(long = "buf-size", value_name = "SIZE", value_parser = parse_size)]
    buf_size: Option<u64>,
    /// Stop once the target is in sync and leave the job running (the
    /// guest's writes keep reaching the target) for `qimg job complete`.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// The new image.
    #[arg(value_name = "TARGET")]
    target: std::path::PathBuf,
}

impl MirrorArgs {
    /// Starts `drive-mirror` and follows it to the pivot.
    pub fn run(self) -> Result<ExitCode> {
        let mut qmp = attached::connect(&self.job.attach)?;
        let mut args = json!({
            "job-id": self.job.job_id("mirror"),
            "device": self.job.device,
            "target": attached::path_for_vmm(&self.target)?,
            "sync": self.sync.name(),
            "mode": if self.existing { "existing" } else { "absolute-paths" },
        });
        if let Some(f) = &self.format {
            args["format"] = json!(f.0.name());
        }
        if let Some(g) = self.granularity {
            args["granularity"] = json!(g);
        }
        if let Some(b) = self.buf_size {
            args["buf-size"] = json!(b);
        }
        if let Some(rate) = self.job.rate {
            args["speed"] = json!(rate);
        }
        let on_ready = if self.no_pivot {
            OnReady::Leave
        } else {
            OnReady::Complete
        };
        let code = attached::run_job(
            &mut qmp,
            "mirror",
            "drive-mirror",
            args,
            self.job.detach,
            &self.job.following(on_ready)?,
        )?;
        if code == ExitCode::SUCCESS && !self.job.detach && !self.job.quiet && !self.no_pivot {
            println!("Mirror complete: the VM now runs on the target.");
        }
        Ok(code)
    }
}
