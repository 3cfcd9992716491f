//! `qimg amend`.

use super::args::{FormatArg, FormatParser, OptionsParser, ProgressArg};
use super::progress::Reporter;
use clap::Args;
use qimg::engine::control::Progress;
use qimg::error::{Error, Result};
use qimg::format::FormatKind;
use qimg::ops::amend::{amend, amend_option_help, not_supported, wants_help, AmendRequest};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg amend`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qimg amend -o compat=0.10 disk.qcow2\n  qimg amend -o compat=1.1,lazy_refcounts=on disk.qcow2\n  qimg amend -p -o refcount_bits=64 disk.qcow2\n  qimg amend -f qcow2 -o help"
)]
pub struct AmendArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// The options to change, comma separated (compat, refcount_bits,
    /// lazy_refcounts, size, data_file); `-o help` lists them.
    #[arg(short = 'o', long = "options", value_name = "OPTS", value_parser = OptionsParser, hide_possible_values = true)]
    options: Vec<String>,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Print nothing but errors.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Accepted as by qemu-img (it allows amending encryption keys, which
    /// qimg does not open).
    #[arg(long = "force")]
    force: bool,
    /// Cache mode of the image written: none (default: bulk data bypasses
    /// the page cache), writeback, or unsafe (no flushes).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

/// `amend -o help` in qemu-img's shape: a header naming the format, then
/// one `  name=<type>  - what` line per option.
fn help_text(format: FormatKind) -> Result<String> {
    let list = amend_option_help(format);
    if list.is_empty() {
        return Err(not_supported(format.name()));
    }
    let mut text = format!("Amend options for '{format}':\n");
    for o in list {
        let head = format!("{}=<{}>", o.name, o.kind);
        text.push_str(&format!("  {head:<22} - {}\n", o.about));
    }
    Ok(text)
}

impl AmendArgs {
    /// Runs `amend`.
    pub fn run(self) -> Result<ExitCode> {
        self.spec.objects.check()?;
        let _ = self.force;
        let storage = self.spec.trust.apply(
            super::args::storage_options(self.cache.as_deref(), false)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let file = match &self.file {
            Some(f) => Some(self.spec.name(f, self.format.is_some())?),
            None => None,
        };
        if self.options.is_empty() {
            return Err(Error::argument(
                "Must specify options (-o)\nTry 'qemu-img amend --help' for more info",
            ));
        }
        let format = self.format.map(|f| f.0);
        if wants_help(&self.options) {
            let format = match (format, &file) {
                (Some(f), _) => f,
                (None, Some(file)) => qimg::chain::spec::ImageSpec::format_of(file)?,
                (None, None) => return Err(Error::argument("Expecting one image file name")),
            };
            print!("{}", help_text(format)?);
            return Ok(ExitCode::SUCCESS);
        }
        let Some(file) = file else {
            return Err(Error::argument("Expecting one image file name"));
        };
        let progress = if self.quiet { None } else { self.progress };
        // qemu-img prints the steps the driver reports between a 0% and a
        // final 100% line, also when the amend fails; on a terminal too.
        let lines = progress == Some(ProgressArg::Human);
        let reporter = match progress {
            Some(ProgressArg::Json) => Reporter::new("amend", progress),
            _ => Reporter::None,
        };
        // As qemu-img's printer: a line when the percentage moved by more
        // than one point since the last line, or is 0 or 100.
        let last = std::cell::Cell::new(0.0f64);
        let show = |percent: f64| {
            let moved = (percent - last.get()).abs() > 1.0;
            if lines && (moved || percent == 0.0 || percent == 100.0) {
                last.set(percent);
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "    ({percent:.2}/100%)\r");
                let _ = out.flush();
            }
        };
        show(0.0);
        reporter.update(Progress { done: 0, total: 1 });
        let result = amend(
            &AmendRequest {
                file,
                format,
                options: self.options,
                storage,
            },
            &mut |done, total| {
                show(if total == 0 {
                    100.0
                } else {
                    done as f64 * 100.0 / total as f64
                });
                reporter.update(Progress { done, total });
            },
        );
        show(100.0);
        if lines {
            println!();
        }
        reporter.finish(Progress {
            done: u64::from(result.is_ok()),
            total: 1,
        });
        result?;
        Ok(ExitCode::SUCCESS)
    }
}
