//! `qimg checksum`.

use super::args::{parse_size, FormatArg, FormatParser, OutputArg, ProgressArg};
use super::program::Program;
use super::progress::copy_controls;
use super::signals;
use clap::Args;
use qimg::engine::blkhash::{Algorithm, Config, DEFAULT_BLOCK_SIZE};
use qimg::error::{Error, Result};
use qimg::ops::checksum::{checksum, ChecksumOutcome, ChecksumRequest};
use qimg::output::checksum::{human_line, json_list, Entry};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `qimg checksum`.
#[derive(Debug, Args)]
#[command(
    long_about = "Print the blkhash digest of each image's guest content: the same digest \
as blksum (github nirs/blkhash) prints for the same content, whatever the format, \
compression, allocation or backing chain that stores it. Holes and zero clusters are \
hashed from block status without being read; data is read and hashed in parallel.",
    after_help = "Exit status: 0 every image hashed, 1 an image could not be hashed, 130/143 interrupted.\n\nExamples:\n  qimg checksum disk.qcow2\n  qimg checksum a.qcow2 b.raw   # the same digest: the same guest content\n  qimg checksum -a blake3 --output=json disk.qcow2\n  ssh host2 qimg checksum /images/copy.qcow2   # compare images on different hosts"
)]
pub struct ChecksumArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f', long = "format", value_name = "FMT", value_parser = FormatParser)]
    format: Option<FormatArg>,
    /// Digest algorithm, as blksum names it: sha256 (the default), sha224,
    /// sha384, sha512, sha512-224, sha512-256, sha1, sha3-224, sha3-256,
    /// sha3-384, sha3-512, shake128, shake256, blake2b512, blake2s256,
    /// blake3, sm3, ripemd160, md5, md5-sha1.
    #[arg(
        short = 'a',
        long = "algorithm",
        visible_alias = "digest",
        value_name = "ALGORITHM",
        default_value = "sha256"
    )]
    algorithm: String,
    /// Block size of the construction (it changes the digest; blksum's
    /// default is 64 KiB).
    #[arg(long = "block-size", value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_BLOCK_SIZE as u64)]
    block_size: u64,
    /// Threads that read and hash data (the digest does not depend on it;
    /// default: the number of cores).
    #[arg(
        short = 'm',
        long = "parallel",
        visible_alias = "threads",
        value_name = "N"
    )]
    parallel: Option<usize>,
    /// Output format: `DIGEST  FILE` lines (blksum's and sha256sum's), or JSON.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, value_name = "human|json")]
    output: OutputArg,
    /// Show progress (-p), or JSON Lines records with --progress=json.
    #[arg(short = 'p', long = "progress", value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    progress: Option<ProgressArg>,
    /// Open the images in shared mode (they may be in use by a VM).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// `--image-opts`, `--object`.
    #[command(flatten)]
    spec: super::args::SpecArgs,
    /// The images.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
}

/// The most threads asked for that are taken.
const MAX_THREADS: usize = 128;

impl ChecksumArgs {
    /// The construction asked for.
    fn config(&self) -> Result<Config> {
        let algorithm = Algorithm::parse(&self.algorithm)?;
        if self.block_size == 0 || self.block_size > 64 << 20 || self.block_size % 2 != 0 {
            return Err(Error::argument(format!(
                "invalid block size {}: an even number of bytes from 2 to 64 MiB",
                self.block_size
            )));
        }
        Ok(Config::new(algorithm, self.block_size as usize))
    }

    /// Runs `checksum`: one line per image; an image that cannot be hashed
    /// gets an error line and the others are still hashed (as sha256sum).
    pub fn run(self, program: Program) -> Result<ExitCode> {
        let config = self.config()?;
        let threads = match self.parallel {
            Some(n) if !(1..=MAX_THREADS).contains(&n) => {
                return Err(Error::argument(format!(
                    "invalid number of threads {n}: must be between 1 and {MAX_THREADS}"
                )))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let storage = self.spec.trust.apply(
            super::args::storage_options(None, self.force_share)?
                .with_secrets(self.spec.objects.secrets()?),
        );
        let mut entries = Vec::new();
        let mut failed = false;
        for file in &self.files {
            let request = ChecksumRequest {
                file: self.spec.name(file, self.format.is_some())?,
                format: self.format.map(|f| f.0),
                config,
                threads,
            };
            let (reporter, control) = copy_controls("checksum", self.progress, None);
            let control = control.with_storage_options(storage.clone());
            let outcome = checksum(&request, &control);
            reporter.finish(control.progress());
            match outcome {
                Ok(ChecksumOutcome::Digest(md)) => {
                    let entry = Entry {
                        file: file.display().to_string(),
                        algorithm: config.algorithm(),
                        block_size: config.block_size() as u64,
                        digest: md,
                    };
                    if self.output == OutputArg::Human {
                        println!("{}", human_line(&entry));
                    }
                    entries.push(entry);
                }
                Ok(ChecksumOutcome::Stopped(_)) => {
                    eprintln!("{}checksum interrupted", program.prefix());
                    return Ok(ExitCode::from(signals::exit_code()));
                }
                Err(e) if e.is_broken_pipe() => return Err(e),
                Err(e) => {
                    eprintln!("{}{e}", program.prefix());
                    failed = true;
                }
            }
        }
        if self.output == OutputArg::Json {
            println!("{}", json_list(&entries));
        }
        Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
