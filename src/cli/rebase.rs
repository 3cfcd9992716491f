//! `qimg rebase`.

use super::args::{check_source_cache, parse_rate, FormatArg, FormatParser, ProgressArg};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::engine::Outcome;
use qimg::error::Result;
use qimg::ops::rebase::{rebase, RebaseRequest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg rebase`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg rebase -b base.qcow2 -F qcow2 top.qcow2\n  qimg rebase -b '' top.qcow2            (flatten: no backing file)\n  qimg rebase -u -b moved/base.qcow2 -F qcow2 top.qcow2"
)]
pub struct RebaseArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Cache mode of the images written: none (default: bulk data bypasses
    /// the page cache), writeback, or unsafe (no flushes).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Backing cache mode: checked as qemu-img checks it; qimg reads the
    /// backing files through the page cache in every mode.
    #[arg(short = 'T', long = "backing-cache", value_name = "CACHE")]
    backing_cache: Option<String>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Open the backing files in shared mode.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Only rewrite the backing file name and format.
    #[arg(short = 'u', long = "backing-unsafe")]
    unsafe_mode: bool,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = parse_rate)]
    rate: Option<u64>,
    /// Compress the clusters written.
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// The new backing file ("" for none; left out with -u, none too).
    #[arg(short = 'b', long = "backing", value_name = "BACKING")]
    backing: Option<String>,
    /// Format of the new backing file (required unless -b "").
    #[arg(short = 'F', long = "backing-format", value_name = "FMT")]
    backing_format: Option<String>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image to rebase.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl RebaseArgs {
    /// Runs `rebase`.
    pub fn run(mut self, program: Program) -> Result<ExitCode> {
        self.file = self.spec.name(&self.file, self.format.is_some())?;
        check_source_cache(self.backing_cache.as_deref())?;
        // -U shares the backing files; the image itself is locked for writing.
        let storage = self.spec.trust.apply(
            super::args::storage_options(self.cache.as_deref(), self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        // As qemu-img: -u without -b drops the backing file.
        let backing = match (self.backing, self.unsafe_mode) {
            (Some(b), _) => b,
            (None, true) => String::new(),
            (None, false) => {
                return Err(qimg::error::Error::argument(
                    "Must specify backing file (-b) or use unsafe mode (-u)",
                ))
            }
        };
        let request = RebaseRequest {
            file: self.file.clone(),
            format: self.format.map(|f| f.0),
            backing,
            backing_format: self.backing_format,
            unsafe_mode: self.unsafe_mode,
            compress: self.compress,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let progress = if self.quiet { None } else { self.progress };
        let (reporter, control) = copy_controls("rebase", progress, self.rate);
        let control = control.with_storage_options(storage);
        let outcome = rebase(&request, &control)?;
        reporter.finish(control.progress());
        match outcome {
            Outcome::Completed => Ok(ExitCode::SUCCESS),
            Outcome::Stopped { .. } => {
                eprintln!(
                    "{}{}: interrupted; the image is consistent and keeps its old backing file",
                    program.prefix(),
                    self.file.display()
                );
                Ok(ExitCode::from(signals::exit_code()))
            }
        }
    }
}
