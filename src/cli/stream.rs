//! `qimg stream` (arguments only until the chain-operations issue lands).

use super::args::{parse_format, parse_size, FormatArg, OutputArg, ProgressArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Stop pulling at this backing file; it becomes the new backing file.
    #[arg(long = "base", value_name = "FILE")]
    base: Option<String>,
    /// Name to record for the new backing file.
    #[arg(long = "backing-file", value_name = "NAME")]
    backing_file: Option<String>,
    /// Stream only from this guest offset (with --length).
    #[arg(long = "offset", value_name = "N", value_parser = parse_size, requires = "length")]
    offset: Option<u64>,
    /// Stream only this many bytes (with --offset).
    #[arg(long = "length", value_name = "N", value_parser = parse_size, requires = "offset")]
    length: Option<u64>,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate-limit", value_name = "RATE", value_parser = parse_size)]
    rate: Option<u64>,
    /// Stop cleanly after this long (e.g. 2h), exit 75.
    #[arg(long = "time-limit", value_name = "DUR", conflicts_with = "deadline")]
    time_limit: Option<String>,
    /// Stop cleanly at this local time (HH:MM), exit 75.
    #[arg(long = "deadline", value_name = "HH:MM")]
    deadline: Option<String>,
    /// Pause while host I/O pressure is above PCT percent (default 10).
    #[arg(long = "when-idle", value_name = "PCT", num_args = 0..=1, require_equals = true, default_missing_value = "10")]
    when_idle: Option<u32>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// The image to stream into.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl StreamArgs {
    /// Runs `stream`.
    pub fn run(self) -> Result<ExitCode> {
        not_implemented("stream")
    }
}
