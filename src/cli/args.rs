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
fn parse_format_name(s: &str) -> Result<FormatArg, String> {
    s.parse::<FormatKind>()
        .map(FormatArg)
        .map_err(|e| e.message().to_string())
}

/// The value parser of `-f`/`-O`/`-F`: qimg's own message for an unknown
/// format, and the format names for shell completions.
#[derive(Debug, Clone, Copy)]
pub struct FormatParser;

impl clap::builder::TypedValueParser for FormatParser {
    type Value = FormatArg;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<FormatArg, clap::Error> {
        let by_name = parse_format_name as fn(&str) -> Result<FormatArg, String>;
        by_name.parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            qimg::format::registry::DRIVERS
                .iter()
                .map(|d| clap::builder::PossibleValue::new(d.name)),
        ))
    }
}

/// The value parser of `-o`: takes the text as given (the format checks
/// it), and offers every format's option names (`cluster_size=`, ...) to
/// shell completions.
#[derive(Debug, Clone, Copy)]
pub struct OptionsParser;

impl clap::builder::TypedValueParser for OptionsParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let mut names: Vec<&str> = qimg::format::registry::DRIVERS
            .iter()
            .flat_map(|d| qimg::ops::create::option_names(FormatKind::of(d)))
            .collect();
        names.sort_unstable();
        names.dedup();
        Some(Box::new(
            names
                .into_iter()
                .map(|n| clap::builder::PossibleValue::new(format!("{n}="))),
        ))
    }
}

/// Parses a size with qemu-img's suffixes for clap.
pub fn parse_size(s: &str) -> Result<u64, String> {
    qimg::size::parse_size(s).map_err(|e| e.message().to_string())
}

/// A size whose refusal carries qemu-img's sentence for `what` ("rate
/// limit", "start offset", ...): `Invalid WHAT specified: 'TEXT'.`
fn size_named(what: &str, s: &str) -> Result<u64, String> {
    qimg::size::parse_size(s).map_err(|_| format!("Invalid {what} specified: '{s}'."))
}

/// `-r RATE`, with qemu-img's message for a bad value.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    size_named("rate limit", s)
}

/// `map --start-offset`, with qemu-img's message for a bad value.
pub fn parse_start_offset(s: &str) -> Result<u64, String> {
    size_named("start offset", s)
}

/// `map --max-length`, with qemu-img's message for a bad value.
pub fn parse_max_length(s: &str) -> Result<u64, String> {
    size_named("max length", s)
}

/// `convert -S`, with qemu-img's message for a bad value.
pub fn parse_sparse_size(s: &str) -> Result<u64, String> {
    size_named("buffer size for sparse output", s)
}

/// The positional SIZE of `create`, with qemu-img's messages: a bad
/// number, or one out of range.
pub fn parse_image_size(s: &str) -> Result<u64, String> {
    qimg::size::parse_size(s).map_err(|e| {
        if e.message().contains("Must be between") {
            "Invalid image size specified. Must be between 0 and 9223372036854775807.".to_string()
        } else {
            format!("Invalid image size specified: '{s}'.")
        }
    })
}

/// Checks a source cache mode (`-T`): qemu-img's modes, its message
/// otherwise. qimg reads through the page cache whatever the mode; the
/// mode only changes how qemu-img reads, never what is read.
pub fn check_source_cache(mode: Option<&str>) -> qimg::error::Result<()> {
    match mode {
        Some(m) if qimg::io::CacheMode::parse(m).is_err() => Err(qimg::error::Error::argument(
            format!("Invalid source cache option: {m}"),
        )),
        _ => Ok(()),
    }
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

/// `--object OBJECTDEF`: qemu-img's user-creatable objects: `secret`
/// objects, the keys of encrypted images (LUKS).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ObjectArgs {
    /// Define an object: a secret that unlocks an encrypted image, e.g.
    /// secret,id=sec0,file=key.txt (or data=..., format=base64), named by
    /// key-secret=sec0 or encrypt.key-secret=sec0.
    #[arg(long = "object", value_name = "OBJECTDEF")]
    pub object: Vec<String>,
}

impl ObjectArgs {
    /// Checks every definition.
    pub fn check(&self) -> qimg::error::Result<()> {
        qimg::chain::spec::Object::parse_all(&self.object).map(|_| ())
    }

    /// The secrets the definitions hold, by id.
    pub fn secrets(&self) -> qimg::error::Result<qimg::io::Secrets> {
        qimg::chain::spec::Object::secrets(&self.object)
    }
}

/// `--image-opts` and `--object`, for the commands that open an image.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpecArgs {
    /// FILE is an option string (driver=qcow2,file.filename=disk.qcow2)
    /// instead of a file name.
    #[arg(long = "image-opts")]
    pub image_opts: bool,
    /// Objects (--object).
    #[command(flatten)]
    pub objects: ObjectArgs,
    /// --untrusted.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `--untrusted`, for the commands that open images.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustArgs {
    /// Read images as data only, as for an upload from a stranger: refuse
    /// the backing files, external data files and extent files they name
    /// (paths, URLs, json: names alike) and QED images, opening none of
    /// them. `info` and `check` describe the image and list what they
    /// refused. Also set by QIMG_UNTRUSTED=1.
    #[arg(
        long,
        env = "QIMG_UNTRUSTED",
        value_parser = clap::builder::FalseyValueParser::new(),
        hide_env_values = true
    )]
    pub untrusted: bool,
}

impl TrustArgs {
    /// The trust opens extend to the files images name: none with
    /// `--untrusted`; a `reporting` command (info, check) then goes on
    /// without them and lists them.
    pub fn trust(&self, reporting: bool) -> qimg::io::Trust {
        use qimg::io::{Refusals, Trust};
        match (self.untrusted, reporting) {
            (false, _) => Trust::Trusted,
            (true, false) => Trust::Untrusted,
            (true, true) => Trust::Reporting(Refusals::default()),
        }
    }

    /// `options` with this trust (not reporting).
    pub fn apply(&self, options: qimg::io::StorageOptions) -> qimg::io::StorageOptions {
        qimg::io::StorageOptions {
            trust: self.trust(false),
            ..options
        }
    }
}

impl SpecArgs {
    /// Checks the objects and gives the name `file` stands for (`format_given`:
    /// `-f` was given, which qemu-img refuses beside `--image-opts`).
    pub fn name(
        &self,
        file: &std::path::Path,
        format_given: bool,
    ) -> qimg::error::Result<std::path::PathBuf> {
        self.objects.check()?;
        qimg::chain::spec::ImageSpec::argument_name(file, self.image_opts, format_given)
    }
}

/// The storage options of a command: its `-t` cache mode (qimg's default
/// when absent) and its `-U`.
pub fn storage_options(
    cache: Option<&str>,
    force_share: bool,
) -> qimg::error::Result<qimg::io::StorageOptions> {
    Ok(qimg::io::StorageOptions {
        cache: cache
            .map(qimg::io::CacheMode::parse)
            .transpose()?
            .unwrap_or_default(),
        force_share,
        // A VMDK descriptor naming extents outside its directory is
        // opened only when the user says so.
        outside_extents: std::env::var_os("QIMG_ALLOW_OUTSIDE_EXTENTS").is_some_and(|v| v == "1"),
        ..Default::default()
    })
}

/// The host I/O pressure gate `--when-idle[=PCT]` asks for: PSI's `some
/// avg10` from /proc/pressure/io, or from the file `QIMG_PSI_PATH` names.
/// Reading it fails now, before any work, when PSI is missing.
pub fn idle_gate(
    pct: Option<u32>,
) -> qimg::error::Result<Option<qimg::engine::idle::IoPressureGate>> {
    use qimg::engine::idle::{IoPressureGate, DEFAULT_PSI_PATH};
    pct.map(|pct| {
        let path = std::env::var_os("QIMG_PSI_PATH")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_PSI_PATH));
        IoPressureGate::new(&path, pct as f64)
    })
    .transpose()
}
