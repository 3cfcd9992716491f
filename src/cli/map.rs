//! `qimg map`.

use super::args::{parse_max_length, parse_start_offset, FormatArg, FormatParser, OutputArg};
use clap::Args;
use qimg::chain::Chain;
use qimg::error::{Error, Result};
use qimg::ops::map::map;
use qimg::output::map::{human_unmappable, write_human_entry, write_json_entry, HUMAN_HEADER};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg map`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg map top.qcow2\n  qimg map --output=json disk.qcow2 | jq -c '.[] | select(.data)'\n  qimg map --start-offset 1G --max-length 64M --output=json disk.qcow2"
)]
pub struct MapArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// First guest offset to map.
    #[arg(short = 's', long = "start-offset", value_name = "OFFSET", value_parser = parse_start_offset, default_value = "0")]
    start_offset: u64,
    /// Map at most this many bytes.
    #[arg(short = 'l', long = "max-length", value_name = "LENGTH", value_parser = parse_max_length)]
    max_length: Option<u64>,
    /// Open the image in shared mode (it may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl MapArgs {
    /// Runs `map`.
    pub fn run(mut self) -> Result<ExitCode> {
        self.file = self.spec.name(&self.file, self.format.is_some())?;
        let storage = self.spec.trust.apply(
            super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let chain = Chain::open_with(&self.file, self.format.map(|f| f.0), &storage)?;
        let view = chain.view();
        let stdout = std::io::stdout();
        let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
        let w = |e| Error::io("could not write output", e);
        let result = match self.output {
            OutputArg::Json => {
                out.write_all(b"[").map_err(w)?;
                map(&view, self.start_offset, self.max_length, |e, more| {
                    write_json_entry(&mut out, e, more).map_err(w)
                })
            }
            OutputArg::Human => {
                out.write_all(HUMAN_HEADER.as_bytes()).map_err(w)?;
                map(&view, self.start_offset, self.max_length, |e, _| {
                    if human_unmappable(e) {
                        return Err(Error::unsupported(
                            "File contains external, encrypted or compressed clusters.",
                        )
                        .with_path(&self.file));
                    }
                    write_human_entry(&mut out, e).map_err(w)
                })
            }
        };
        out.flush().map_err(w)?;
        result.map(|()| ExitCode::SUCCESS)
    }
}
