//! `qimg check` (arguments only until the write-path issue lands).

use super::args::{parse_format, FormatArg, OutputArg, RepairArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Repair leaks, or everything.
    #[arg(short = 'r', long = "repair", value_enum, value_name = "leaks|all")]
    repair: Option<RepairArg>,
    /// Print nothing; the exit code tells the verdict.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Cache mode (accepted for compatibility).
    #[arg(short = 'T', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Open the image in shared mode (read-only checks only).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl CheckArgs {
    /// Runs `check`.
    pub fn run(self) -> Result<ExitCode> {
        not_implemented("check")
    }
}
