//! Argument types shared by several subcommands.

use clap::ValueEnum;
use qimg::format::FormatKind;
use qimg::output::OutputFormat;

/// `--output human|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputArg {
    /// Text for people.
    #[default]
    Human,
    /// JSON for programs (qemu-img's schema).
    Json,
}

impl From<OutputArg> for OutputFormat {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Human => OutputFormat::Human,
            OutputArg::Json => OutputFormat::Json,
        }
    }
}

/// A format name given with `-f`/`-O`/`-F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatArg(pub FormatKind);

/// Parses a format name for clap.
pub fn parse_format(s: &str) -> Result<FormatArg, String> {
    s.parse::<FormatKind>()
        .map(FormatArg)
        .map_err(|e| e.message().to_string())
}

/// Parses a size with qemu-img's suffixes for clap.
pub fn parse_size(s: &str) -> Result<u64, String> {
    qimg::size::parse_size(s).map_err(|e| e.message().to_string())
}

/// `--progress[=human|json]` (`-p` alone means human).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, qemu-img's percentage lines otherwise.
    Human,
    /// JSON Lines records on stderr.
    Json,
}

/// `-r leaks|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RepairArg {
    /// Free leaked clusters.
    Leaks,
    /// Also rebuild refcounts and clear the corrupt and dirty bits.
    All,
}
