//! `qimg commit` (arguments only until the chain-operations issue lands).

use super::args::{parse_format, parse_size, FormatArg, ProgressArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg commit`.
#[derive(Debug, Args)]
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
        not_implemented("commit")
    }
}
