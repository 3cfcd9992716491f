//! `qimg commit`.

use super::args::{parse_format, parse_size, FormatArg, ProgressArg};
use super::progress::Reporter;
use super::signals;
use clap::Args;
use qimg::engine::control::Control;
use qimg::engine::Outcome;
use qimg::error::Result;
use qimg::ops::commit::{commit, CommitRequest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg commit`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 committed, 1 error, 130/143 interrupted (run again to finish).\n\nExamples:\n  qimg commit overlay.qcow2               (into its backing file, then empty it)\n  qimg commit -d -p overlay.qcow2         (keep the overlay's data)\n  qimg commit -b base.qcow2 top.qcow2     (down to base through the middle layers)"
)]
pub struct CommitArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Cache mode (accepted for compatibility).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Commit down to this backing file (implies -d).
    #[arg(short = 'b', long = "base", value_name = "BASE")]
    base: Option<String>,
    /// Do not empty FILE after committing.
    #[arg(short = 'd', long = "drop")]
    drop: bool,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = parse_size)]
    rate: Option<u64>,
    /// The image whose data goes down.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl CommitArgs {
    /// Runs `commit`.
    pub fn run(self) -> Result<ExitCode> {
        let _ = &self.cache;
        let request = CommitRequest {
            file: self.file.clone(),
            format: self.format.map(|f| f.0),
            base: self.base,
            keep_file: self.drop,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        signals::install();
        let reporter = Reporter::new("commit", if self.quiet { None } else { self.progress });
        let control = {
            let r = reporter.clone();
            Control::default()
                .with_rate(self.rate)
                .with_cancel_flag(&signals::INTERRUPTED)
                .with_progress(move |p| r.update(p))
        };
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
                    "qimg: {}: interrupted; the image is unchanged and its base holds part of its \
                     data; run the same command again to finish",
                    self.file.display()
                );
                Ok(ExitCode::from(signals::exit_code()))
            }
        }
    }
}
