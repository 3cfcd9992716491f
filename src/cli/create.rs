//! `qimg create`.

use super::args::{parse_image_size, FormatArg, FormatParser, OptionsParser};
use clap::Args;
use qimg::error::Result;
use qimg::format::FormatKind;
use qimg::ops::create::{option_help, plan, CreateRequest};
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
    file: Option<PathBuf>,
    /// Virtual size, with optional suffix k, M, G, T, P, E (powers of 1024).
    #[arg(value_name = "SIZE", value_parser = parse_image_size)]
    size: Option<u64>,
}

/// `-o help` in qemu-img's shape: a header, one `  name=<type>  - what`
/// line per option sorted by name; with a file name the file's own options
/// too, without one the format's only and a note saying so.
pub(super) fn options_help(format: FormatKind, with_file: bool) -> String {
    let mut text = if with_file {
        "Supported options:\n".to_string()
    } else {
        format!("Supported {format} options:\n")
    };
    for o in option_help(format)
        .into_iter()
        .filter(|o| with_file || !o.of_file)
    {
        let head = format!("{}=<{}>", o.name, o.kind);
        text.push_str(&format!("  {head:<22} - {}\n", o.about));
    }
    if !with_file {
        text.push_str(
            "\nOptions of the image file itself (nocow, extent_size_hint, ...) are listed \
             too when a file name is given.\n",
        );
    }
    text
}

impl CreateArgs {
    fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Runs `create`.
    pub fn run(self) -> Result<ExitCode> {
        self.objects.check()?;
        let format = self.format.map(|f| f.0);
        if self.options.iter().any(|o| o == "help" || o == "?") {
            print!(
                "{}",
                options_help(format.unwrap_or_else(FormatKind::fallback), self.has_file())
            );
            return Ok(ExitCode::SUCCESS);
        }
        let Some(file) = self.file else {
            return Err(qimg::error::Error::argument("Expecting image file name"));
        };
        let plan = plan(&CreateRequest {
            file,
            format,
            options: self.options,
            backing: self.backing,
            backing_format: self.backing_format,
            backing_unsafe: self.backing_unsafe,
            size: self.size,
            storage: qimg::io::StorageOptions::default().with_secrets(self.objects.secrets()?),
        })?;
        if !self.quiet {
            println!("{}", plan.formatting_line());
        }
        plan.execute()?;
        Ok(ExitCode::SUCCESS)
    }
}
