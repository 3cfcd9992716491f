//! `qimg info`.

use super::args::{parse_format, FormatArg, OutputArg};
use clap::Args;
use qimg::error::{Error, Result};
use qimg::ops::info::{chain_info, image_info};
use qimg::output::info::{render_human, render_json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg info`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg info disk.qcow2\n  qimg info --output=json --backing-chain top.qcow2 | jq '.[].filename'"
)]
pub struct InfoArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = parse_format)]
    format: Option<FormatArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Show every image of the backing chain.
    #[arg(short = 'b', long = "backing-chain")]
    backing_chain: bool,
    /// Open the image in shared mode (it may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl InfoArgs {
    /// Runs `info`.
    pub fn run(self) -> Result<ExitCode> {
        qimg::io::lock::set_force_share(self.force_share);
        let format = self.format.map(|f| f.0);
        let infos = if self.backing_chain {
            chain_info(&self.file, format)?
        } else {
            vec![image_info(&self.file, format)?]
        };
        let text = match self.output {
            OutputArg::Json => render_json(&infos, self.backing_chain),
            OutputArg::Human => render_human(&infos),
        };
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("could not write output", e))?;
        Ok(ExitCode::SUCCESS)
    }
}
