//! `qimg check`.

use super::args::{check_source_cache, FormatArg, FormatParser, OutputArg, RepairArg};
use super::exit;
use super::program::Program;
use clap::Args;
use qimg::error::{Error, Result};
use qimg::format::check::Repair;
use qimg::ops::check::{check_image, repair_image, CheckOutcome};
use qimg::output::check::{render_human, render_json, render_repaired};
use qimg::output::info::render_refusals;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 no problem found, 1 the check could not run, 2 corruptions, 3 leaked clusters only, 4 not safe to accept (--safety), 63 the format has no check (raw).\n\nExamples:\n  qimg check disk.qcow2\n  qimg check --safety --output=json upload.img\n  qimg check -r leaks disk.qcow2\n  qimg check --output=json disk.qcow2 | jq .leaks"
)]
pub struct CheckArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Repair leaks, or everything.
    #[arg(short = 'r', long = "repair", value_enum, value_name = "leaks|all")]
    repair: Option<RepairArg>,
    /// Instead of the metadata check, decide whether the image is safe to
    /// accept from a stranger (an upload): one format, nothing it names
    /// (backing, data or extent files), no hidden second format, as
    /// OpenStack's format inspector decides. Exit 0 safe, 4 not safe.
    #[arg(long, conflicts_with = "repair")]
    safety: bool,
    /// Print nothing; the exit code tells the verdict.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Cache mode (none, writeback, unsafe, directsync, writethrough):
    /// checked as qemu-img checks it; qimg reads through the page cache.
    #[arg(short = 'T', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Open the image in shared mode (read-only checks only).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The image file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

impl CheckArgs {
    /// Runs `check`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        check_source_cache(self.cache.as_deref())?;
        if self.repair.is_some() && self.force_share {
            return Err(
                Error::argument("force-share=on can only be used with read-only images")
                    .with_path(&self.file),
            );
        }
        let storage = qimg::io::StorageOptions {
            trust: self.spec.trust.trust(true),
            ..super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?)
        };
        let name = self.spec.name(&self.file, self.format.is_some())?;
        let format = self.format.map(|f| f.0);
        if self.safety {
            return self.run_safety(&name, format, &storage);
        }
        let mut log = |line: String| eprintln!("{line}");
        let mut fixed = None;
        let outcome = if let Some(mode) = self.repair {
            let mode = match mode {
                RepairArg::Leaks => Repair::Leaks,
                RepairArg::All => Repair::All,
            };
            let Some(repaired) = repair_image(&name, format, mode, &storage, &mut log)? else {
                return Ok(self.not_supported(program));
            };
            let first = &repaired.report;
            if first.check_errors > 0 {
                return Err(Error::corrupt(
                    "Check failed: the refcount structures must be rebuilt, which only -r all does",
                )
                .with_path(&self.file));
            }
            if first.leaks_fixed + first.corruptions_fixed > 0 {
                if !self.quiet && self.output == OutputArg::Human {
                    print!("{}", render_repaired(first));
                }
                fixed = Some((first.leaks_fixed, first.corruptions_fixed));
            }
            // The verdict after the repair, from the same open.
            repaired.check(&mut log)?
        } else {
            check_image(&name, format, &storage, &mut log)?
        };
        let CheckOutcome::Checked { format, mut report } = outcome else {
            return Ok(self.not_supported(program));
        };
        if let Some((leaks, corruptions)) = fixed {
            report.leaks_fixed = leaks;
            report.corruptions_fixed = corruptions;
        }
        if !self.quiet {
            let refused = storage
                .trust
                .is_untrusted()
                .then(|| storage.trust.refusals());
            let text = match self.output {
                OutputArg::Json => render_json(
                    &self.file.display().to_string(),
                    format,
                    &report,
                    refused.as_deref(),
                ),
                OutputArg::Human => {
                    render_human(&report) + &render_refusals(refused.as_deref().unwrap_or_default())
                }
            };
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error::io("could not write output", e))?;
        }
        if report.check_errors > 0 {
            eprintln!("{}{}: Check failed", program.prefix(), self.file.display());
        }
        Ok(ExitCode::from(report.exit_code()))
    }

    /// `check --safety`: the verdict on stdout, the status says it.
    fn run_safety(
        &self,
        name: &std::path::Path,
        format: Option<qimg::format::FormatKind>,
        storage: &qimg::io::StorageOptions,
    ) -> Result<ExitCode> {
        use qimg::output::safety;
        let verdict = qimg::ops::safety::safety_check(name, format, storage)?;
        if !self.quiet {
            let text = match self.output {
                OutputArg::Json => safety::render_json(&verdict),
                OutputArg::Human => safety::render_human(&verdict),
            };
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error::io("could not write output", e))?;
        }
        Ok(ExitCode::from(if verdict.safe() {
            exit::SUCCESS
        } else {
            exit::CHECK_UNSAFE
        }))
    }

    /// qemu-img's exact line for a format without a check (scripts match
    /// it whole); as `qimg`, the file name follows it in parentheses.
    fn not_supported(&self, program: Program) -> ExitCode {
        let sentence = "This image format does not support checks";
        match program {
            Program::QemuImg => eprintln!("{}{sentence}", program.prefix()),
            Program::Qimg => eprintln!("{}{sentence} ({})", program.prefix(), self.file.display()),
        }
        ExitCode::from(exit::CHECK_UNSUPPORTED)
    }
}
