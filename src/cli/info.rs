//! `qimg info`.

use super::args::{FormatArg, FormatParser, OutputArg};
use super::attached;
use clap::Args;
use qimg::attach::nodes::{chain_of, format_nodes, Node};
use qimg::error::{Error, Result};
use qimg::ops::info::{chain_info, image_info};
use qimg::output::info::{render_human, render_json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg info`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg info disk.qcow2\n  qimg info --output=json --backing-chain top.qcow2 | jq '.[].filename'\n  qimg info --attach /run/vm/qmp.sock --device drive0"
)]
pub struct InfoArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
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
    /// Show the images the VM (or qemu-storage-daemon) behind this QMP
    /// socket has open, as its block layer sees them.
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["file", "backing_chain", "format"])]
    attach: Option<String>,
    /// With --attach: only this device's (or node's) chain.
    #[arg(long, value_name = "NAME", requires = "attach")]
    device: Option<String>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image file.
    #[arg(value_name = "FILE", required_unless_present = "attach")]
    file: Option<PathBuf>,
}

impl InfoArgs {
    /// Runs `info`.
    pub fn run(self) -> Result<ExitCode> {
        if let Some(socket) = &self.attach {
            return self.run_attached(socket);
        }
        // info reads no guest data: an encrypted image needs no secret.
        let storage = qimg::io::StorageOptions {
            trust: self.spec.trust.trust(true),
            no_io: true,
            ..super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?)
        };
        let file = self
            .file
            .clone()
            .expect("clap requires FILE without --attach");
        let file = self.spec.name(&file, self.format.is_some())?;
        let format = self.format.map(|f| f.0);
        let infos = if self.backing_chain {
            chain_info(&file, format, &storage)?
        } else {
            vec![image_info(&file, format, &storage)?]
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

    /// Lists the VMM's images: one device's chain, or every format node.
    fn run_attached(&self, socket: &str) -> Result<ExitCode> {
        let mut qmp = attached::connect(socket)?;
        let nodes = match &self.device {
            Some(device) => chain_of(&mut qmp, device)?,
            None => format_nodes(&mut qmp)?,
        };
        let text = match self.output {
            OutputArg::Json => {
                let list: Vec<_> = nodes.iter().map(Node::to_json).collect();
                format!("{}\n", serde_json::to_string_pretty(&list).expect("JSON"))
            }
            OutputArg::Human => nodes
                .iter()
                .map(|n| {
                    format!(
                        "node: {}\nfile: {}\nformat: {}\n{}read-only: {}\n",
                        n.name,
                        n.file,
                        n.driver,
                        n.backing_file
                            .as_ref()
                            .map(|b| format!("backing file: {b}\n"))
                            .unwrap_or_default(),
                        if n.read_only { "yes" } else { "no" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        };
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("could not write output", e))?;
        Ok(ExitCode::SUCCESS)
    }
}
