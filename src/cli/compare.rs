//! `qimg compare`.

use super::args::{FormatArg, FormatParser, ProgressArg};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::error::Result;
use qimg::ops::compare::{compare, CompareRequest, Verdict};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of `compare` when it could not compare (as qemu-img).
const COMPARE_ERROR: u8 = 2;

/// Arguments of `qimg compare`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 identical, 1 different, 2 error, 130/143 interrupted.\n\nExamples:\n  qimg compare disk.qcow2 disk.raw\n  qimg compare -s -q original.qcow2 copy.qcow2 && echo same\n  qimg compare -f raw -F qcow2 disk.raw disk.qcow2"
)]
pub struct CompareArgs {
    /// Format of the first image (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    first_format: Option<FormatArg>,
    /// Format of the second image (probed when omitted).
    #[arg(short = 'F', long = "second-format", value_name = "FMT", value_parser = FormatParser)]
    second_format: Option<FormatArg>,
    /// Strict mode: images of different sizes, or that allocate a range
    /// differently, are different.
    #[arg(short = 's', long = "strict")]
    strict: bool,
    /// Print nothing; only the exit status tells.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Open the images in shared mode (they may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The first image.
    #[arg(value_name = "FILE1")]
    first: PathBuf,
    /// The second image.
    #[arg(value_name = "FILE2")]
    second: PathBuf,
}

impl CompareArgs {
    /// Runs `compare`: exit 0 identical, 1 different, 2 error.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        match self.compare(program) {
            Ok(code) => Ok(code),
            Err(e) if e.is_broken_pipe() => Err(e),
            Err(e) => {
                eprintln!("{}{e}", program.prefix());
                Ok(ExitCode::from(COMPARE_ERROR))
            }
        }
    }

    fn compare(&self, program: Program) -> Result<ExitCode> {
        let storage = self.spec.trust.apply(
            super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let request = CompareRequest {
            first: self.spec.name(&self.first, self.first_format.is_some())?,
            first_format: self.first_format.map(|f| f.0),
            second: self.spec.name(&self.second, self.second_format.is_some())?,
            second_format: self.second_format.map(|f| f.0),
            strict: self.strict,
        };
        let progress = if self.quiet { None } else { self.progress };
        let (reporter, control) = copy_controls("compare", progress, None);
        let control = control.with_storage_options(storage);
        let verdict = compare(&request, &control)?;
        reporter.finish(control.progress());
        let say = |line: &str| {
            if !self.quiet {
                println!("{line}");
            }
        };
        let mismatch = |size_mismatch: bool| {
            if size_mismatch {
                say("Warning: Image size mismatch!");
            }
        };
        Ok(match verdict {
            Verdict::Identical { size_mismatch } => {
                mismatch(size_mismatch);
                say("Images are identical.");
                ExitCode::SUCCESS
            }
            Verdict::ContentMismatch {
                offset,
                size_mismatch,
            } => {
                mismatch(size_mismatch);
                say(&format!("Content mismatch at offset {offset}!"));
                ExitCode::from(1)
            }
            Verdict::StatusMismatch { offset } => {
                say(&format!(
                    "Strict mode: Offset {offset} block status mismatch!"
                ));
                ExitCode::from(1)
            }
            Verdict::SizeMismatch => {
                say("Strict mode: Image size mismatch!");
                ExitCode::from(1)
            }
            Verdict::Stopped(_) => {
                eprintln!("{}compare interrupted", program.prefix());
                ExitCode::from(signals::exit_code())
            }
        })
    }
}
