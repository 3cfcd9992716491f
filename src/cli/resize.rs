//! `qimg resize`.

use super::args::{FormatArg, FormatParser};
use super::program::Program;
use clap::Args;
use qimg::error::Result;
use qimg::format::Preallocation;
use qimg::ops::resize::{resize, NewSize, ResizeRequest, Resized, SHRINK_REFUSED, SHRINK_WARNING};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg resize`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg resize disk.qcow2 +10G\n  qimg resize -f raw --preallocation=falloc disk.raw 20G\n  qimg resize --shrink disk.qcow2 8G"
)]
pub struct ResizeArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Allow a smaller size: everything past the new end is deleted.
    #[arg(long)]
    shrink: bool,
    /// How to preallocate the grown range: off (default), falloc or full
    /// (raw), as the format supports.
    #[arg(long, value_name = "MODE", value_parser = parse_preallocation)]
    preallocation: Option<Preallocation>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// `--image-opts` and `--object` (the secret of an encrypted image).
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The new size, or +SIZE / -SIZE relative to the current one, with
    /// optional suffix k, M, G, T, P, E.
    #[arg(value_name = "SIZE", allow_hyphen_values = true)]
    size: String,
}

fn parse_preallocation(s: &str) -> std::result::Result<Preallocation, String> {
    Preallocation::parse(s).map_err(|_| format!("Invalid preallocation mode '{s}'"))
}

impl ResizeArgs {
    /// Runs `resize`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        let request = ResizeRequest {
            file: self.spec.name(&self.file, self.format.is_some())?,
            format: self.format.map(|f| f.0),
            size: NewSize::parse(&self.size)?,
            shrink: self.shrink,
            preallocation: self.preallocation.unwrap_or_default(),
            storage: self.spec.trust.apply(
                qimg::io::StorageOptions::default().with_secrets(self.spec.objects.secrets()?),
            ),
        };
        match resize(&request)? {
            Resized::ShrinkRefused => {
                let prefix = program.prefix();
                eprintln!("{prefix}{SHRINK_REFUSED}");
                eprintln!("{prefix}warning: {SHRINK_WARNING}");
                Ok(ExitCode::from(super::exit::FAILURE))
            }
            Resized::Done => {
                if !self.quiet {
                    println!("Image resized.");
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
