//! `qimg rebase` (arguments only until the chain-operations issue lands).

use super::args::{parse_format, FormatArg, ProgressArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg rebase`.
#[derive(Debug, Args)]
pub struct RebaseArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Cache mode (accepted for compatibility).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Backing cache mode (accepted for compatibility).
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
    /// Compress the clusters written.
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// The new backing file ("" for none).
    #[arg(short = 'b', long = "backing", value_name = "BACKING", required = true)]
    backing: String,
    /// Format of the new backing file.
    #[arg(short = 'F', long = "backing-format", value_name = "FMT", value_parser = parse_format)]
    backing_format: Option<FormatArg>,
    /// The image to rebase.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl RebaseArgs {
    /// Runs `rebase`.
    pub fn run(self) -> Result<ExitCode> {
        not_implemented("rebase")
    }
}
