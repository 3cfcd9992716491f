//! `qimg convert`.

use super::args::{
    check_source_cache, parse_rate, parse_sparse_size, FormatArg, FormatParser, OptionsParser,
    ProgressArg,
};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::chain::spec::ImageSpec;
use qimg::engine::blkhash::{self, Algorithm, Config};
use qimg::engine::Outcome;
use qimg::error::{Error, Result};
use qimg::format::FormatKind;
use qimg::ops::convert::{convert, convert_checksummed, ConvertRequest};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg convert`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 done, 1 error, 130/143 interrupted by SIGINT/SIGTERM (the target is consistent but incomplete).\n\nExamples:\n  qimg convert -O qcow2 disk.raw disk.qcow2\n  qimg convert -p -O raw top.qcow2 flat.raw\n  qimg convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 new-top.qcow2"
)]
pub struct ConvertArgs {
    /// Source format (probed when omitted).
    #[arg(short = 'f', long = "source-format", value_name = "FMT", value_parser = FormatParser)]
    source_format: Option<FormatArg>,
    /// Target format (default raw).
    #[arg(short = 'O', long = "target-format", visible_alias = "output-format", value_name = "FMT", value_parser = FormatParser)]
    target_format: Option<FormatArg>,
    /// Target creation options.
    #[arg(short = 'o', long = "target-options", visible_alias = "options", value_name = "OPTS", value_parser = OptionsParser, hide_possible_values = true)]
    options: Vec<String>,
    /// Compress every cluster (qcow2 only).
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// Create the target with this backing file; copy only the source's top layer.
    #[arg(short = 'B', long = "backing", value_name = "BACKING")]
    backing: Option<String>,
    /// Format of the backing file.
    #[arg(short = 'F', long = "backing-format", value_name = "FMT", value_parser = FormatParser)]
    backing_format: Option<FormatArg>,
    /// Write into an existing target instead of creating it.
    #[arg(short = 'n', long = "no-create")]
    no_create: bool,
    /// Assume the target reads as zeros (needs -n).
    #[arg(long = "target-is-zero")]
    target_is_zero: bool,
    /// Shortest run of zeros to leave unallocated (default 4k; 0 disables).
    #[arg(short = 'S', long = "sparse-size", value_name = "SIZE", value_parser = parse_sparse_size)]
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
    #[arg(short = 'r', long = "rate", value_name = "RATE", value_parser = parse_rate)]
    rate: Option<u64>,
    /// Convert this internal snapshot of the source.
    #[arg(
        short = 'l',
        long = "source-snapshot",
        visible_alias = "snapshot",
        value_name = "SNAPSHOT"
    )]
    snapshot: Option<String>,
    /// Target cache mode: none (default: bulk data bypasses the page cache),
    /// writeback, or unsafe (no flushes, as qemu-img's default).
    #[arg(
        short = 't',
        long = "target-cache",
        visible_alias = "output-cache",
        value_name = "CACHE"
    )]
    target_cache: Option<String>,
    /// Source cache mode (none, writeback, unsafe, directsync, writethrough):
    /// checked as qemu-img checks it; qimg reads through the page cache in
    /// every mode.
    #[arg(short = 'T', long = "source-cache", value_name = "CACHE")]
    source_cache: Option<String>,
    /// Copy offloading: data stored plainly in the source files is copied
    /// by the kernel (copy_file_range; block clones on XFS and btrfs)
    /// without being read, so zeros in it are copied as data, as with
    /// qemu-img -C. Refused with -c, -S or --salvage; ignored with
    /// --checksum.
    #[arg(short = 'C', long = "copy-range-offloading")]
    copy_range: bool,
    /// Copy source sectors that cannot be read as zeros (one warning each)
    /// instead of failing.
    #[arg(long = "salvage")]
    salvage: bool,
    /// Copy the source's persistent bitmaps into the (qcow2) target, after the data.
    #[arg(long = "bitmaps")]
    bitmaps: bool,
    /// Skip inconsistent bitmaps when copying them (needs --bitmaps).
    #[arg(long = "skip-broken-bitmaps")]
    skip_broken_bitmaps: bool,
    /// Print the blkhash digest (as `qimg checksum` and blksum compute it)
    /// of the data copied, `DIGEST  TARGET`, at the end: hashed as it is
    /// read, no extra read. Default algorithm sha256; not with -B.
    #[arg(long = "checksum", value_name = "ALGORITHM", num_args = 0..=1, require_equals = true, default_missing_value = "sha256")]
    checksum: Option<String>,
    /// The target is an option string (driver=raw,file.filename=disk.img),
    /// as with --image-opts; needs -n.
    #[arg(long = "target-image-opts")]
    target_image_opts: bool,
    /// `--image-opts` (for the sources), `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// Source images (concatenated), then the target: SRC... DST. Options
    /// may come between them, as with qemu-img.
    #[arg(value_name = "FILE", num_args = 1, action = clap::ArgAction::Append)]
    files: Vec<PathBuf>,
}

impl ConvertArgs {
    /// `--bitmaps` and `--skip-broken-bitmaps` as qemu-img checks them
    /// before anything is written: one source that stores bitmaps, none of
    /// them inconsistent unless skipped, then a target format that stores
    /// them (qemu-img creates a raw or QED target before it refuses it;
    /// qimg refuses first). Returns the bitmaps to warn about as skipped.
    fn check_bitmaps(&self, storage: &qimg::io::StorageOptions) -> Result<Vec<String>> {
        if self.skip_broken_bitmaps && !self.bitmaps {
            return Err(Error::argument(
                "Use of --skip-broken-bitmaps requires --bitmaps",
            ));
        }
        if !self.bitmaps {
            return Ok(Vec::new());
        }
        let sources = &self.files[..self.files.len().saturating_sub(1)];
        if sources.len() > 1 {
            return Err(Error::argument(
                "Copying bitmaps only possible with single source",
            ));
        }
        let mut skipped = Vec::new();
        if let Some(source) = sources.first() {
            let name = self.spec.name(source, self.source_format.is_some())?;
            let image =
                qimg::chain::open_image_with(&name, self.source_format.map(|f| f.0), storage)?;
            skipped =
                qimg::ops::bitmap::check_convert_source(image.as_ref(), self.skip_broken_bitmaps)?;
        }
        let target = self
            .target_format
            .map_or_else(FormatKind::fallback, |f| f.0);
        if !target.caps.bitmaps {
            return Err(Error::unsupported(format!(
                "Format driver '{target}' does not support bitmaps"
            )));
        }
        Ok(skipped)
    }

    /// `-l` as qemu-img reads it: an ID or name, `snapshot.id=ID`,
    /// `snapshot.name=NAME`, or both (`snapshot.id=1,snapshot.name=s1`:
    /// the snapshot with that ID and that name), given to the format as one.
    fn snapshot_param(&self, spec: &str, storage: &qimg::io::StorageOptions) -> Result<String> {
        let pairs = qimg::ops::create::split_options(spec);
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let (Some(id), Some(name)) = (get("snapshot.id"), get("snapshot.name")) else {
            return Ok(spec.to_string());
        };
        let Some(source) = self.files.first() else {
            return Ok(spec.to_string());
        };
        let info = qimg::ops::info::image_info(source, self.source_format.map(|f| f.0), storage)?;
        if info
            .description
            .snapshots
            .iter()
            .any(|s| s.id == id && s.name == name)
        {
            Ok(format!("snapshot.id={id}"))
        } else {
            Err(Error::argument(format!(
                "Failed to load snapshot: Can't find snapshot '{spec}'"
            ))
            .with_path(source))
        }
    }

    /// Runs `convert`.
    pub fn run(self, program: Program) -> Result<ExitCode> {
        if self.options.iter().any(|o| o == "help" || o == "?") {
            let format = self
                .target_format
                .map_or_else(FormatKind::fallback, |f| f.0);
            let with_file = !self.files.is_empty();
            print!("{}", super::create::options_help(format, with_file));
            return Ok(ExitCode::SUCCESS);
        }
        // qemu-img refuses these combinations first, in this order.
        if self.copy_range {
            if self.compress {
                return Err(Error::argument(
                    "Cannot enable copy offloading when -c is used",
                ));
            }
            if self.sparse_size.is_some() {
                return Err(Error::argument(
                    "Cannot enable copy offloading when -S is used",
                ));
            }
            if self.salvage {
                return Err(Error::argument(
                    "Cannot use copy offloading in salvaging mode",
                ));
            }
        }
        if self.files.len() < 2 {
            return Err(Error::argument("Must specify image file name"));
        }
        // -W is qemu-img's hint; qimg's engine decides the write order.
        let _ = self.oob_writes;
        check_source_cache(self.source_cache.as_deref())?;
        if self.no_create && !self.options.is_empty() {
            return Err(Error::argument(
                "-o has no effect when skipping image creation",
            ));
        }
        if let Some(s) = self.sparse_size {
            if s % 512 != 0 || s > 16 << 20 {
                return Err(Error::argument(
                    "Invalid buffer size for sparse output specified. Valid sizes are multiples \
                     of 512 up to 16777216. Select 0 to disable sparse detection (fully \
                     allocates output).",
                ));
            }
        }
        // `-o backing_file=...,backing_fmt=...` mean what -B and -F mean
        // (vdsm spells them so); -B and -F win over them.
        let from_options = |key: &str| {
            self.options
                .iter()
                .flat_map(|spec| qimg::ops::create::split_options(spec))
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .next_back()
        };
        let backing = self
            .backing
            .clone()
            .or_else(|| from_options("backing_file"));
        let backing_format = self
            .backing_format
            .map(|f| f.0.name().to_string())
            .or_else(|| from_options("backing_fmt"));
        // -U shares the sources; the target is always locked for writing.
        let storage = self.spec.trust.apply(
            super::args::storage_options(self.target_cache.as_deref(), self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let skipped_bitmaps = self.check_bitmaps(&storage)?;
        let threads = match self.parallel {
            Some(n) if !(1..=16).contains(&n) => {
                return Err(Error::argument(
                    "Invalid number of coroutines specified. Must be between 1 and 16.",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let snapshot = match &self.snapshot {
            Some(spec) => Some(self.snapshot_param(spec, &storage)?),
            None => None,
        };
        let mut files = self.files;
        let target = files.pop().expect("two files at least");
        let sources = files
            .iter()
            .map(|f| self.spec.name(f, self.source_format.is_some()))
            .collect::<Result<Vec<_>>>()?;
        let (target, target_format) = if self.target_image_opts {
            if !self.no_create {
                return Err(Error::argument(
                    "--target-image-opts requires use of -n flag",
                ));
            }
            let name = ImageSpec::argument_name(&target, true, self.target_format.is_some())?;
            let format = ImageSpec::format_of(&name)?;
            (name, format)
        } else {
            (
                target,
                self.target_format
                    .map_or_else(FormatKind::fallback, |f| f.0),
            )
        };
        let checksum = self
            .checksum
            .as_deref()
            .map(|name| Algorithm::parse(name).map(|a| Config::new(a, blkhash::DEFAULT_BLOCK_SIZE)))
            .transpose()?;
        let request = ConvertRequest {
            sources,
            source_format: self.source_format.map(|f| f.0),
            target,
            target_format,
            options: self.options,
            backing,
            backing_format,
            no_create: self.no_create,
            target_is_zero: self.target_is_zero,
            sparse: self.sparse_size.unwrap_or(4096),
            threads,
            compress: self.compress,
            snapshot,
            salvage: self.salvage,
            copy_range: self.copy_range,
            bitmaps: self.bitmaps.then_some(self.skip_broken_bitmaps),
        };
        let progress = if self.quiet { None } else { self.progress };
        let (reporter, control) = copy_controls("convert", progress, self.rate);
        let control = control.with_storage_options(storage);
        // --salvage: each sector that could not be read, as qemu-img warns.
        let prefix = program.prefix();
        let control = control.with_read_errors(move |offset, reason| {
            eprintln!("{prefix}warning: error while reading offset {offset}: {reason}");
        });
        let (outcome, digest) = match &checksum {
            Some(config) => convert_checksummed(&request, &control, *config)?,
            None => (convert(&request, &control)?, None),
        };
        reporter.finish(control.progress());
        match outcome {
            Outcome::Completed => {
                if let Some(md) = digest {
                    println!("{}  {}", md.to_hex(), request.target.display());
                }
                for name in skipped_bitmaps {
                    eprintln!(
                        "{}warning: Skipping inconsistent bitmap '{name}'",
                        program.prefix()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Outcome::Stopped { resume_at, .. } => {
                eprintln!(
                    "{}{}: interrupted; the target is consistent but incomplete (copied up to offset {resume_at})",
                    program.prefix(),
                    request.target.display()
                );
                Ok(ExitCode::from(signals::exit_code()))
            }
        }
    }
}
