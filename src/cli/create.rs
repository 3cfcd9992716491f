//! `qimg create`.

use super::args::{parse_size, FormatArg, FormatParser, OptionsParser};
use clap::Args;
use qimg::error::Result;
use qimg::format::FormatKind;
use qimg::ops::create::{option_names, plan, CreateRequest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg create`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg create -f qcow2 disk.qcow2 20G\n  qimg create -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2\n  qimg create -f qcow2 -o cluster_size=2M,preallocation=metadata big.qcow2 1T\n  qimg create -f qcow2 -o help"
)]
pub struct CreateArgs {
    /// Format of the new image (default raw).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Format options, comma separated (e.g. cluster_size=64k,compat=v3).
    #[arg(short = 'o', long = "options", value_name = "OPTS", value_parser = OptionsParser, hide_possible_values = true)]
    options: Vec<String>,
    /// Backing file of the new image.
    #[arg(short = 'b', long = "backing", value_name = "BACKING")]
    backing: Option<String>,
    /// Format of the backing file (required with -b).
    #[arg(short = 'F', long = "backing-format", value_name = "FMT")]
    backing_format: Option<String>,
    /// Do not open or check the backing file.
    #[arg(short = 'u', long = "backing-unsafe")]
    backing_unsafe: bool,
    /// Print nothing on success.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// `--object`.
    #[command(flatten)]
    objects: super::args::ObjectArgs,
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
        self.objects.check()?;
        let format = self.format.map(|f| f.0);
        if self.options.iter().any(|o| o == "help" || o == "?") {
            let format = format.unwrap_or(FormatKind::Raw);
            println!("Supported options for {format}:");
            for name in option_names(format) {
                println!("  {name}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let plan = plan(&CreateRequest {
            file: self.file,
            format,
            options: self.options,
            backing: self.backing,
            backing_format: self.backing_format,
            backing_unsafe: self.backing_unsafe,
            size: self.size,
        })?;
        if !self.quiet {
            println!("{}", plan.formatting_line());
        }
        plan.execute()?;
        Ok(ExitCode::SUCCESS)
    }
}
