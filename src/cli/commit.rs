//! `qimg commit`.

use super::args::{parse_rate, FormatArg, FormatParser, ProgressArg};
use super::attached::{self, AttachArgs};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::attach::jobs::OnReady;
use qimg::engine::Outcome;
use qimg::error::Result;
use qimg::ops::commit::{commit, CommitRequest};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg commit`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 committed, 1 error, 130/143 interrupted (run again to finish).\n\nExamples:\n  qimg commit overlay.qcow2               (into its backing file, then empty it)\n  qimg commit -d -p overlay.qcow2         (keep the overlay's data)\n  qimg commit -b base.qcow2 top.qcow2     (down to base through the middle layers)\n  qimg commit --attach /run/vm/qmp.sock --device drive0   (active commit in the running VM, then pivot)"
)]
pub struct CommitArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Cache mode of the images written: none (default: bulk data bypasses
    /// the page cache), writeback, or unsafe (no flushes).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Commit down to this backing file (implies -d).
    #[arg(short = 'b', long = "base", value_name = "BASE")]
    base: Option<String>,
    /// Do not empty FILE after committing.
    #[arg(short = 'd', long = "drop", conflicts_with = "attach")]
    drop: bool,
    /// With --attach: pause the VMM's job while host I/O pressure (PSI "some avg10" in
    /// /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT
    /// percent (default 10), and resume it when the host is quiet again.
    #[arg(long = "when-idle", value_name = "PCT", num_args = 0..=1, require_equals = true, default_missing_value = "10", requires = "attach")]
    when_idle: Option<u32>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = parse_rate)]
    rate: Option<u64>,
    /// Attach mode.
    #[command(flatten)]
    vmm: AttachArgs,
    /// With --attach: the top of the commit by file name (default: the
    /// active layer, an active commit).
    #[arg(long, value_name = "FILE", requires = "attach")]
    top: Option<String>,
    /// With --attach: the top by node name.
    #[arg(
        long = "top-node",
        value_name = "NODE",
        requires = "attach",
        conflicts_with = "top"
    )]
    top_node: Option<String>,
    /// With --attach: leave an active commit unpivoted (the VM stays on
    /// the top; the data is in the base all the same).
    #[arg(long = "no-pivot", requires = "attach")]
    no_pivot: bool,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image whose data goes down.
    #[arg(value_name = "FILE", required_unless_present = "attach")]
    file: Option<PathBuf>,
}

impl CommitArgs {
    /// Runs `commit`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        let storage = self.spec.trust.apply(
            super::args::storage_options(self.cache.as_deref(), false)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        if let Some(socket) = self.vmm.attach.clone() {
            return self.run_attached(&socket);
        }
        let file = self
            .file
            .clone()
            .expect("clap requires FILE without --attach");
        let file = self.spec.name(&file, self.format.is_some())?;
        let request = CommitRequest {
            file: file.clone(),
            format: self.format.map(|f| f.0),
            base: self.base,
            keep_file: self.drop,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let progress = if self.quiet { None } else { self.progress };
        let (reporter, control) = copy_controls("commit", progress, self.rate);
        let control = control.with_storage_options(storage);
        let outcome = commit(&request, &control)?;
        reporter.finish(control.progress());
        match outcome {
            Outcome::Completed => {
                if !self.quiet {
                    println!("Image committed.");
                }
                Ok(ExitCode::SUCCESS)
            }
            Outcome::Stopped { .. } => {
                eprintln!(
                    "{}{}: interrupted; the image is unchanged and its base holds part of its \
                     data; run the same command again to finish",
                    program.prefix(),
                    file.display()
                );
                Ok(ExitCode::from(signals::exit_code()))
            }
        }
    }
}

impl CommitArgs {
    /// Starts QEMU's block-commit in the VMM and follows it.
    fn run_attached(self, socket: &str) -> Result<ExitCode> {
        let mut qmp = attached::connect(socket)?;
        let device = self.vmm.device.clone().expect("clap requires --device");
        let mut args = json!({
            "job-id": self.vmm.job_id("commit"),
            "device": device,
        });
        if let Some(top) = attached::node_for(&mut qmp, &device, &self.top_node, &self.top)? {
            args["top-node"] = json!(top);
        }
        if let Some(base) = attached::node_for(&mut qmp, &device, &self.vmm.base_node, &self.base)?
        {
            args["base-node"] = json!(base);
        }
        if let Some(rate) = self.rate {
            args["speed"] = json!(rate);
        }
        let code = attached::run_job(
            &mut qmp,
            "commit",
            "block-commit",
            args,
            self.vmm.detach,
            &attached::Following {
                on_ready: if self.no_pivot {
                    OnReady::Cancel
                } else {
                    OnReady::Complete
                },
                progress: if self.quiet { None } else { self.progress },
                pacing: attached::Pacing {
                    idle_gate: super::args::idle_gate(self.when_idle)?,
                    deadline: None,
                },
            },
        )?;
        if code == ExitCode::SUCCESS && !self.vmm.detach && !self.quiet {
            println!("Image committed.");
        }
        Ok(code)
    }
}
