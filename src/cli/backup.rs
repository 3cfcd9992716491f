//! `qimg backup --attach`: a point-in-time copy of a running VM's disk.
//! The VMM copies the disk as it was when the job started (the guest's
//! later writes wait for the old data to be copied first), in full or
//! only what a dirty bitmap marks.

use super::args::{FormatArg, FormatParser};
use super::attached::{self, JobTarget};
use clap::{Args, ValueEnum};
use qimg::attach::jobs::OnReady;
use qimg::error::{Error, Result};
use serde_json::json;
use std::process::ExitCode;

/// What a backup copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackupSync {
    /// The whole chain's content.
    Full,
    /// The active layer only (allocated clusters of the top image).
    Top,
    /// What BITMAP marks dirty, with --bitmap-mode saying what becomes of
    /// the bitmap.
    Bitmap,
    /// What BITMAP marks dirty; the bitmap is cleared when the backup
    /// succeeds (an incremental backup).
    Incremental,
    /// Nothing but the old content of what the guest writes meanwhile.
    None,
}

impl BackupSync {
    fn name(self) -> &'static str {
        match self {
            BackupSync::Full => "full",
            BackupSync::Top => "top",
            BackupSync::Bitmap => "bitmap",
            BackupSync::Incremental => "incremental",
            BackupSync::None => "none",
        }
    }
}

/// What becomes of the bitmap after a backup that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BitmapMode {
    /// Cleared of what was copied, if the backup succeeds.
    OnSuccess,
    /// Cleared of what was copied, whatever the outcome.
    Always,
    /// Left as it was.
    Never,
}

impl BitmapMode {
    fn name(self) -> &'static str {
        match self {
            BitmapMode::OnSuccess => "on-success",
            BitmapMode::Always => "always",
            BitmapMode::Never => "never",
        }
    }
}

/// Arguments of `qimg backup`.
#[derive(Debug, Args)]
#[command(
    after_help = "The target is created by the VMM (as FMT, default the source's format) unless --existing says it is there already; a relative TARGET is taken from the current directory. An incremental backup is a sparse image holding what changed: put it over the previous backup with `qimg rebase -u -b PREVIOUS -F FMT TARGET`.\n\nExit status: 0 backed up, 1 error, 130/143 interrupted (the backup is cancelled and TARGET incomplete).\n\nExamples:\n  qimg bitmap --attach /run/vm/qmp.sock --device drive0 --add nightly\n  qimg backup --attach /run/vm/qmp.sock --device drive0 -p /backup/full.qcow2\n  qimg backup --attach /run/vm/qmp.sock --device drive0 --sync incremental --bitmap nightly /backup/inc1.qcow2"
)]
pub struct BackupArgs {
    /// The job's VMM and device.
    #[command(flatten)]
    job: JobTarget,
    /// Format of TARGET (default: the source's).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// What to copy.
    #[arg(long, value_enum, default_value_t = BackupSync::Full, value_name = "full|top|bitmap|incremental|none")]
    sync: BackupSync,
    /// The dirty bitmap of the device that --sync bitmap|incremental copies
    /// (with --sync full: the bitmap synchronised by the backup).
    #[arg(long, value_name = "NAME")]
    bitmap: Option<String>,
    /// What becomes of --bitmap (default for --sync incremental: on-success).
    #[arg(
        long = "bitmap-mode",
        value_enum,
        value_name = "on-success|always|never",
        requires = "bitmap"
    )]
    bitmap_mode: Option<BitmapMode>,
    /// Compress the target's clusters (a qcow2 target).
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// TARGET exists already (of the source's size); it is opened, not created.
    #[arg(long)]
    existing: bool,
    /// The backup image.
    #[arg(value_name = "TARGET")]
    target: std::path::PathBuf,
}

impl BackupArgs {
    /// Starts `drive-backup` and follows it to its end.
    pub fn run(self) -> Result<ExitCode> {
        if matches!(self.sync, BackupSync::Bitmap | BackupSync::Incremental)
            && self.bitmap.is_none()
        {
            return Err(Error::argument(format!(
                "--sync {} needs --bitmap NAME (create one with `qimg bitmap --attach SOCKET --device {} --add NAME`)",
                self.sync.name(),
                self.job.device
            )));
        }
        if self.sync == BackupSync::Bitmap && self.bitmap_mode.is_none() {
            return Err(Error::argument(
                "--sync bitmap needs --bitmap-mode on-success|always|never",
            ));
        }
        let mut qmp = attached::connect(&self.job.attach)?;
        let mut args = json!({
            "job-id": self.job.job_id("backup"),
            "device": self.job.device,
            "target": attached::path_for_vmm(&self.target)?,
            "sync": self.sync.name(),
            "mode": if self.existing { "existing" } else { "absolute-paths" },
        });
        if let Some(f) = &self.format {
            args["format"] = json!(f.0.name());
        }
        if let Some(b) = &self.bitmap {
            args["bitmap"] = json!(b);
        }
        if let Some(m) = self.bitmap_mode {
            args["bitmap-mode"] = json!(m.name());
        }
        if self.compress {
            args["compress"] = json!(true);
        }
        if let Some(rate) = self.job.rate {
            args["speed"] = json!(rate);
        }
        let code = attached::run_job(
            &mut qmp,
            "backup",
            "drive-backup",
            args,
            self.job.detach,
            &self.job.following(OnReady::Complete)?,
        )?;
        if code == ExitCode::SUCCESS && !self.job.detach && !self.job.quiet {
            println!("Backup complete.");
        }
        Ok(code)
    }
}
