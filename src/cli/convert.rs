//! `qimg convert` (arguments only until the copy-engine issue lands).

use super::args::{parse_format, parse_size, FormatArg, ProgressArg};
use super::not_implemented;
use clap::Args;
use qimg::error::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Source format (probed when omitted).
    #[arg(short = 'f', long = "source-format", value_name = "FMT", value_parser = parse_format)]
    source_format: Option<FormatArg>,
    /// Target format (default raw).
    #[arg(short = 'O', long = "target-format", value_name = "FMT", value_parser = parse_format)]
    target_format: Option<FormatArg>,
    /// Target creation options.
    #[arg(short = 'o', long = "target-options", value_name = "OPTS")]
    options: Vec<String>,
    /// Compress every cluster (qcow2 only).
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// Create the target with this backing file; copy only the source's top layer.
    #[arg(short = 'B', long = "backing", value_name = "BACKING")]
    backing: Option<String>,
    /// Format of the backing file.
    #[arg(short = 'F', long = "backing-format", value_name = "FMT", value_parser = parse_format)]
    backing_format: Option<FormatArg>,
    /// Write into an existing target instead of creating it.
    #[arg(short = 'n', long = "no-create")]
    no_create: bool,
    /// Assume the target reads as zeros (needs -n).
    #[arg(long = "target-is-zero")]
    target_is_zero: bool,
    /// Shortest run of zeros to leave unallocated (default 4k; 0 disables).
    #[arg(short = 'S', long = "sparse-size", value_name = "SIZE", value_parser = parse_size)]
    sparse_size: Option<u64>,
    /// Parallel workers.
    #[arg(short = 'm', long = "parallel", value_name = "N")]
    parallel: Option<usize>,
    /// Allow out-of-order writes (qimg always writes in parallel).
    #[arg(short = 'W', long = "oob-writes")]
    oob_writes: bool,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Open the sources in shared mode.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Limit the copy rate in bytes per second (e.g. 50M).
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = parse_size)]
    rate: Option<u64>,
    /// Convert this internal snapshot of the source.
    #[arg(short = 'l', long = "source-snapshot", value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Target cache mode (accepted for compatibility).
    #[arg(short = 't', long = "target-cache", value_name = "CACHE")]
    target_cache: Option<String>,
    /// Source cache mode (accepted for compatibility).
    #[arg(short = 'T', long = "source-cache", value_name = "CACHE")]
    source_cache: Option<String>,
    /// Copy offloading (accepted for compatibility).
    #[arg(short = 'C', long = "copy-range-offloading")]
    copy_range: bool,
    /// Continue past read errors, writing zeros.
    #[arg(long = "salvage")]
    salvage: bool,
    /// Copy persistent bitmaps.
    #[arg(long = "bitmaps")]
    bitmaps: bool,
    /// Skip inconsistent bitmaps when copying them.
    #[arg(long = "skip-broken-bitmaps")]
    skip_broken_bitmaps: bool,
    /// Source images (concatenated), then the target: SRC... DST.
    #[arg(value_name = "FILE", num_args = 2.., required = true)]
    files: Vec<PathBuf>,
}

impl ConvertArgs {
    /// Runs `convert`.
    pub fn run(self) -> Result<ExitCode> {
        not_implemented("convert")
    }
}
