//! `qimg create` (arguments only until the write-path issue lands).

use super::args::{parse_format, parse_size, FormatArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Format of the new image (default raw).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Format options, comma separated (e.g. cluster_size=64k,compat=v3).
    #[arg(short = 'o', long = "options", value_name = "OPTS")]
    options: Vec<String>,
    /// Backing file of the new image.
    #[arg(short = 'b', long = "backing", value_name = "BACKING")]
    backing: Option<String>,
    /// Format of the backing file.
    #[arg(short = 'F', long = "backing-format", value_name = "FMT", value_parser = parse_format)]
    backing_format: Option<FormatArg>,
    /// Do not open or check the backing file.
    #[arg(short = 'u', long = "backing-unsafe")]
    backing_unsafe: bool,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// The file to create (overwritten if it exists).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Virtual size, with optional suffix k, M, G, T, P, E (powers of 1024).
    #[arg(value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
}

impl CreateArgs {
    /// Runs `create`.
    pub fn run(self) -> Result<ExitCode> {
        not_implemented("create")
    }
}
