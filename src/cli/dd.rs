//! `qimg dd`.

use super::args::{FormatArg, FormatParser};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::engine::Outcome;
use qimg::error::{Error, Result};
use qimg::format::FormatKind;
use qimg::ops::dd::{check_block_size, dd, DdRequest};
use qimg::size::parse_size;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg dd`.
#[derive(Debug, Args)]
#[command(
    after_help = "Operands: bs=BLOCK_SIZE (default 512, suffixes k M G T P E), count=BLOCKS (blocks from block 0), skip=BLOCKS, if=INPUT, of=OUTPUT, and Proxmox's osize=SIZE (the output's size).\n\nExamples:\n  qimg dd if=disk.qcow2 of=disk.raw\n  qimg dd -O qcow2 bs=1M count=64 if=disk.raw of=head.qcow2\n  qimg dd -n -f raw -O raw bs=1M osize=1G if=a.raw of=b.raw   (Proxmox: into an existing image)"
)]
pub struct DdArgs {
    /// Format of the input (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Format of the output (default raw).
    #[arg(short = 'O', long = "output-format", value_name = "FMT", value_parser = FormatParser)]
    output_format: Option<FormatArg>,
    /// Open the input in shared mode (it may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Write into the existing output instead of creating it (Proxmox's
    /// extension of qemu-img dd).
    #[arg(short = 'n')]
    no_create: bool,
    /// Read this internal snapshot of the input (an ID or a name; Proxmox's
    /// extension).
    #[arg(short = 'l', value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The operands: bs=, count=, skip=, if=, of=, osize=.
    #[arg(value_name = "OPERAND")]
    operands: Vec<String>,
}

/// The operands, parsed as qemu-img parses them (a repeated one: the last wins).
#[derive(Debug, Default)]
struct Operands {
    block_size: Option<u64>,
    count: Option<u64>,
    skip: Option<u64>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    output_size: Option<u64>,
}

/// A count of blocks (`count=`, `skip=`), with qemu-img's messages.
fn blocks(name: &str, value: &str) -> Result<u64> {
    let n: i128 = value
        .parse()
        .map_err(|_| Error::argument(format!("Invalid {name} specified: '{value}'.")))?;
    if !(0..=i64::MAX as i128).contains(&n) {
        return Err(Error::argument(format!(
            "Invalid {name} specified. Must be between 0 and {}.",
            i64::MAX
        )));
    }
    Ok(n as u64)
}

fn parse_operands(operands: &[String]) -> Result<Operands> {
    let mut o = Operands::default();
    for operand in operands {
        let Some((key, value)) = operand.split_once('=') else {
            return Err(Error::argument(format!("unrecognized operand {operand}")));
        };
        match key {
            "bs" => {
                let bs = parse_size(value)
                    .map_err(|_| Error::argument(format!("Invalid bs specified: '{value}'.")))?;
                o.block_size = Some(check_block_size(bs)?);
            }
            "count" => o.count = Some(blocks("count", value)?),
            "skip" => o.skip = Some(blocks("skip", value)?),
            "if" => o.input = Some(PathBuf::from(value)),
            "of" => o.output = Some(PathBuf::from(value)),
            "osize" => o.output_size = Some(parse_size(value)?),
            _ => return Err(Error::argument(format!("unrecognized operand {key}"))),
        }
    }
    Ok(o)
}

impl DdArgs {
    /// Runs `dd`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        let storage = self.spec.trust.apply(
            super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let o = parse_operands(&self.operands)?;
        let (Some(input), Some(output)) = (o.input, o.output) else {
            return Err(Error::argument("Must specify both input and output files"));
        };
        let request = DdRequest {
            input: self.spec.name(&input, self.format.is_some())?,
            input_format: self.format.map(|f| f.0),
            output,
            output_format: self
                .output_format
                .map_or_else(FormatKind::fallback, |f| f.0),
            block_size: o.block_size.unwrap_or(512),
            count: o.count,
            skip: o.skip.unwrap_or(0),
            output_size: o.output_size,
            no_create: self.no_create,
            snapshot: self.snapshot,
        };
        let (reporter, control) = copy_controls("dd", None, None);
        let control = control.with_storage_options(storage);
        let report = dd(&request, &control)?;
        reporter.finish(control.progress());
        if report.skipped_past_end {
            // qemu-img says so and goes on with an empty output (exit 0).
            eprintln!(
                "{}{}: cannot skip to specified offset",
                program.prefix(),
                request.input.display()
            );
        }
        match report.outcome {
            Outcome::Completed => Ok(ExitCode::SUCCESS),
            Outcome::Stopped { .. } => {
                eprintln!(
                    "{}{}: interrupted; the output is consistent but incomplete",
                    program.prefix(),
                    request.output.display()
                );
                Ok(ExitCode::from(signals::exit_code()))
            }
        }
    }
}
