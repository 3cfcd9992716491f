//! `qimg measure`.

use super::args::{parse_size, FormatArg, FormatParser, OptionsParser, OutputArg};
use clap::Args;
use qimg::error::Result;
use qimg::ops::measure::{measure, MeasureRequest};
use qimg::output::qjson;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg measure`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg measure -O qcow2 disk.raw\n  qimg measure --output=json -O qcow2 -o cluster_size=2M disk.qcow2\n  qimg measure --size 100G -O qcow2"
)]
pub struct MeasureArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Format of the image to create (default raw).
    #[arg(short = 'O', long = "output-format", value_name = "FMT", value_parser = FormatParser)]
    target_format: Option<FormatArg>,
    /// Creation options of the target format (as for create).
    #[arg(short = 'o', long = "options", value_name = "OPTS", value_parser = OptionsParser, hide_possible_values = true)]
    options: Vec<String>,
    /// Measure this internal snapshot of FILE (an ID or a name).
    #[arg(short = 'l', long = "snapshot", value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Measure an image of this size instead of FILE.
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Format of FILE (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Open FILE in shared mode (it may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image whose content the new image would hold.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

impl MeasureArgs {
    /// Runs `measure`.
    pub fn run(self) -> Result<ExitCode> {
        let storage = self.spec.trust.apply(
            super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let source = self
            .file
            .as_ref()
            .map(|f| self.spec.name(f, self.format.is_some()))
            .transpose()?;
        let m = measure(&MeasureRequest {
            source,
            source_format: self.format.map(|f| f.0),
            snapshot: self.snapshot,
            size: self.size,
            target_format: self.target_format.map(|f| f.0),
            options: self.options,
            storage,
        })?;
        match self.output {
            OutputArg::Json => {
                let mut o = Map::new();
                if let Some(b) = m.bitmaps {
                    o.insert("bitmaps".into(), b.into());
                }
                o.insert("required".into(), m.required.into());
                o.insert("fully-allocated".into(), m.fully_allocated.into());
                print!("{}", qjson::to_string(&Value::Object(o)));
            }
            OutputArg::Human => {
                println!("required size: {}", m.required);
                println!("fully allocated size: {}", m.fully_allocated);
                if let Some(b) = m.bitmaps {
                    println!("bitmaps size: {b}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
