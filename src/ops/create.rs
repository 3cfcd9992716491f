//! `create`: parse qemu-img's `-o` options for a format, check the backing
//! file, print the `Formatting ...` line and write the new image.

use crate::chain::open_image;
use crate::chain::spec::creation_path;
use crate::error::{Error, Result};
use crate::format::qcow2::create::CreateOptions as Qcow2Options;
use crate::format::qcow2::CompressionType;
use crate::format::qed::QedCreateOptions;
use crate::format::{qcow2, qed, raw, BackingSpec, FormatKind, Preallocation};
use crate::io::{FileStorage, Storage};
use crate::paths::resolve_relative_to;
use crate::size::parse_size;
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The file to create.
    pub file: PathBuf,
    /// The format (raw when `None`, as qemu-img).
    pub format: Option<FormatKind>,
    /// `-o` strings, in order (later values win).
    pub options: Vec<String>,
    /// `-b`.
    pub backing: Option<String>,
    /// `-F`.
    pub backing_format: Option<String>,
    /// `-u`: do not open the backing file.
    pub backing_unsafe: bool,
    /// The positional size.
    pub size: Option<u64>,
}

/// The option names each format takes (qemu-img's, in its `-o help` order).
pub fn option_names(format: FormatKind) -> &'static [&'static str] {
    match format {
        FormatKind::Qcow2 => &[
            "compat",
            "backing_file",
            "backing_fmt",
            "data_file",
            "data_file_raw",
            "encryption",
            "cluster_size",
            "extended_l2",
            "preallocation",
            "lazy_refcounts",
            "refcount_bits",
            "compression_type",
            "nocow",
            "extent_size_hint",
            "size",
        ],
        FormatKind::Qed => &[
            "backing_file",
            "backing_fmt",
            "cluster_size",
            "table_size",
            "preallocation",
            "nocow",
            "extent_size_hint",
            "size",
        ],
        FormatKind::Raw => &["preallocation", "nocow", "extent_size_hint", "size"],
    }
}

/// One creation option as `-o help` lists it.
#[derive(Debug, Clone, Copy)]
pub struct OptionHelp {
    /// The option name (`cluster_size`).
    pub name: &'static str,
    /// qemu-img's type word: `str`, `size`, `num` or `bool (on/off)`.
    pub kind: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// An option of the file itself (qemu's protocol level) rather than of
    /// the format: qemu-img lists these only when a file name is given.
    pub of_file: bool,
}

const fn opt(name: &'static str, kind: &'static str, about: &'static str) -> OptionHelp {
    OptionHelp {
        name,
        kind,
        about,
        of_file: false,
    }
}

const fn file_opt(name: &'static str, kind: &'static str, about: &'static str) -> OptionHelp {
    OptionHelp {
        name,
        kind,
        about,
        of_file: true,
    }
}

const BACKING_FILE: OptionHelp = opt("backing_file", "str", "Backing file of the new image");
const BACKING_FMT: OptionHelp = opt("backing_fmt", "str", "Format of the backing file");
const SIZE: OptionHelp = opt("size", "size", "Virtual size of the disk");
const NOCOW: OptionHelp = file_opt(
    "nocow",
    "bool (on/off)",
    "Disable copy-on-write of the file (btrfs only)",
);
const EXTENT_SIZE_HINT: OptionHelp = file_opt(
    "extent_size_hint",
    "size",
    "Extent size hint given to the file system (0: none)",
);

/// The options `-o help` lists for `format`, sorted by name as qemu-img
/// sorts them (encryption, which qimg refuses, is not listed).
pub fn option_help(format: FormatKind) -> Vec<OptionHelp> {
    let mut list = match format {
        FormatKind::Qcow2 => vec![
            BACKING_FILE,
            BACKING_FMT,
            opt(
                "cluster_size",
                "size",
                "Cluster size in bytes (512 to 2M, a power of two)",
            ),
            opt(
                "compat",
                "str",
                "Version of the format: v2 (0.10) or v3 (1.1)",
            ),
            opt(
                "compression_type",
                "str",
                "Compression of compressed clusters: zlib or zstd",
            ),
            opt("data_file", "str", "External file holding the guest data"),
            opt(
                "data_file_raw",
                "bool (on/off)",
                "Keep the external data file a valid raw image",
            ),
            opt(
                "extended_l2",
                "bool (on/off)",
                "L2 entries with 32 subclusters",
            ),
            opt(
                "lazy_refcounts",
                "bool (on/off)",
                "Update refcounts lazily (needs a check after a crash)",
            ),
            opt(
                "preallocation",
                "str",
                "Preallocation: off, metadata, falloc or full",
            ),
            opt(
                "refcount_bits",
                "num",
                "Bits of one refcount entry (1 to 64, a power of two)",
            ),
            SIZE,
            NOCOW,
            EXTENT_SIZE_HINT,
        ],
        FormatKind::Qed => vec![
            BACKING_FILE,
            BACKING_FMT,
            opt("cluster_size", "size", "Cluster size in bytes"),
            SIZE,
            opt(
                "table_size",
                "size",
                "Size of the L1 and L2 tables, in clusters",
            ),
            file_opt(
                "preallocation",
                "str",
                "Preallocation of the file: off, falloc or full",
            ),
            NOCOW,
            EXTENT_SIZE_HINT,
        ],
        FormatKind::Raw => vec![
            SIZE,
            file_opt(
                "preallocation",
                "str",
                "Preallocation of the file: off, falloc or full",
            ),
            NOCOW,
            EXTENT_SIZE_HINT,
        ],
    };
    list.sort_by_key(|o| o.name);
    list
}

/// Splits one `-o` text into (name, value) pairs as qemu-img does: items
/// are separated by `,`, a doubled `,,` stands for a comma inside a value,
/// and a name without `=` means `name=on`.
///
/// ```
/// use qimg::ops::create::split_options;
/// let pairs = split_options("backing_file=a,,b.qcow2,lazy_refcounts");
/// assert_eq!(pairs, [("backing_file".into(), "a,b.qcow2".into()), ("lazy_refcounts".into(), "on".into())]);
/// ```
pub fn split_options(spec: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                items.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    items.push(current);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item, "on".to_string()),
        })
        .collect()
}

/// A parsed `-o` list: values as given, in the order they last appeared.
#[derive(Debug, Default)]
struct Options {
    values: Vec<(String, String)>,
}

impl Options {
    fn parse(format: FormatKind, specs: &[String]) -> Result<Options> {
        let mut o = Options::default();
        let allowed = option_names(format);
        for spec in specs {
            for (key, value) in split_options(spec) {
                let (key, value) = (key.as_str(), value.as_str());
                if key.starts_with("encrypt") {
                    return Err(Error::unsupported(
                        "qimg does not create encrypted images (encryption options are not supported)",
                    ));
                }
                if !allowed.contains(&key) {
                    return Err(Error::argument(format!("Invalid parameter '{key}'")));
                }
                o.set(key, value);
            }
        }
        Ok(o)
    }

    fn set(&mut self, key: &str, value: &str) {
        self.values.retain(|(k, _)| k != key);
        self.values.push((key.to_string(), value.to_string()));
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                parse_size(v).map_err(|_| {
                    Error::argument(format!(
                        "Parameter '{key}' expects a non-negative number below 2^64 \
                         (a byte count, hexadecimal 0x..., or a number with a suffix k, M, G, \
                         T, P or E; not '{v}')"
                    ))
                })
            })
            .transpose()
    }

    fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("on" | "yes" | "true") => Ok(true),
            Some("off" | "no" | "false") => Ok(false),
            Some(v) => Err(Error::argument(format!(
                "Parameter '{key}' expects 'on' or 'off', not '{v}'"
            ))),
        }
    }
}

/// A checked request, ready to write.
#[derive(Debug)]
pub struct CreatePlan {
    file: PathBuf,
    /// The target, or the error its option values gave: like qemu-img, the
    /// formatting line is printed before bad values are reported.
    target: Result<Target>,
    formatting: String,
}

/// The image to write, per format.
#[derive(Debug)]
pub enum Target {
    /// A qcow2 image.
    Qcow2(Qcow2Options),
    /// A QED image.
    Qed(QedCreateOptions),
    /// A raw image.
    Raw {
        /// Virtual size.
        size: u64,
        /// What to allocate.
        preallocation: Preallocation,
    },
}

impl CreatePlan {
    /// The line qemu-img prints before creating: `Formatting 'f', fmt=...`.
    pub fn formatting_line(&self) -> &str {
        &self.formatting
    }

    /// Checks the options of the target format (qemu-img checks them after
    /// printing the formatting line).
    pub fn validate(&self) -> Result<&Target> {
        let target = self
            .target
            .as_ref()
            .map_err(|e| Error::new(e.kind(), e.message()).with_path(&self.file))?;
        match target {
            Target::Qcow2(o) => o.validate(),
            Target::Qed(o) => o.header().map(|_| ()),
            Target::Raw { .. } => Ok(()),
        }
        .map_err(|e| e.with_path(&self.file))?;
        Ok(target)
    }

    /// Writes the new image (overwriting an existing file).
    pub fn execute(&self) -> Result<()> {
        let target = self.validate()?;
        let storage = FileStorage::create(&self.file)?;
        let result = match target {
            Target::Qcow2(o) => {
                let data = match &o.data_file {
                    Some(name) => {
                        Some(FileStorage::create(&resolve_relative_to(&self.file, name))?)
                    }
                    None => None,
                };
                qcow2::create::create(&storage, data.as_ref().map(|d| d as &dyn Storage), o)
            }
            Target::Qed(o) => qed::create(&storage, o),
            Target::Raw {
                size,
                preallocation,
            } => raw::create(&storage, *size, *preallocation),
        };
        result.map_err(|e| e.with_path(&self.file))
    }
}

/// Parses and checks a request: options, backing file, size.
pub fn plan(req: &CreateRequest) -> Result<CreatePlan> {
    let format = req.format.unwrap_or(FormatKind::Raw);
    let at_file = |e: Error| e.with_path(&req.file);
    if crate::io::nbd_uri(&req.file).is_some() {
        return Err(at_file(Error::unsupported(
            "Protocol driver 'nbd' does not support image creation \
             (write into an existing export with convert -n)",
        )));
    }
    let mut o = Options::parse(format, &req.options).map_err(at_file)?;
    if req.backing.is_some() && format == FormatKind::Raw {
        return Err(at_file(Error::argument(
            "Backing file not supported for file format 'raw'",
        )));
    }
    if let Some(b) = &req.backing {
        o.set("backing_file", b);
    }
    if let Some(f) = &req.backing_format {
        o.set("backing_fmt", f);
    }
    // A bad size value is reported before a second size, as qemu-img does.
    o.size("size").map_err(at_file)?;
    if req.size.is_some() && o.get("size").is_some() {
        return Err(at_file(Error::argument(
            "The image size must be specified only once",
        )));
    }
    // A `file:` prefix names the file; a `json:` name cannot be created.
    let file = creation_path(&req.file)?;
    let backing = backing_spec(&file, &o).map_err(at_file)?;
    // Without -u the backing file must open; its size is the default size.
    let backing_virtual_size = match &backing {
        Some(b) if !req.backing_unsafe => Some(backing_size(&file, b)?),
        _ => None,
    };
    let size = req
        .size
        .or(o.size("size").map_err(at_file)?)
        .or(backing_virtual_size)
        .ok_or_else(|| at_file(Error::argument("Image creation needs a size parameter")))?;
    o.set("size", &size.to_string());
    let target = target(format, &o, size, backing);
    Ok(CreatePlan {
        formatting: formatting_line(&req.file, format, &o),
        file,
        target,
    })
}

/// The qcow2 geometry `-o` options describe (for `measure`), checked as
/// `create` checks them, for an image of `size` bytes.
pub fn qcow2_geometry(specs: &[String], size: u64) -> Result<Qcow2Options> {
    let o = Options::parse(FormatKind::Qcow2, specs)?;
    match target(FormatKind::Qcow2, &o, size, None)? {
        Target::Qcow2(options) => {
            options.validate()?;
            Ok(options)
        }
        _ => unreachable!("qcow2 options for a qcow2 target"),
    }
}

/// Checks `-o` options for `format` as `create` does (for `measure`).
pub fn check_options(format: FormatKind, specs: &[String]) -> Result<()> {
    Options::parse(format, specs).map(|_| ())
}

/// The format-specific options, from the values given.
fn target(
    format: FormatKind,
    o: &Options,
    size: u64,
    backing: Option<BackingSpec>,
) -> Result<Target> {
    let preallocation = match o.get("preallocation") {
        Some(p) => Preallocation::parse(p).map_err(|_| {
            Error::argument(format!(
                "Parameter 'preallocation' does not accept value '{p}'"
            ))
        })?,
        None => Preallocation::Off,
    };
    // qcow2 alone reserves metadata; for the others qemu-img refuses it.
    if preallocation == Preallocation::Metadata && format != FormatKind::Qcow2 {
        return Err(Error::argument("Unsupported preallocation mode: metadata"));
    }
    Ok(match format {
        FormatKind::Qcow2 => Target::Qcow2(qcow2_options(o, size, preallocation, backing)?),
        FormatKind::Qed => Target::Qed(QedCreateOptions {
            size,
            cluster_size: o
                .size("cluster_size")?
                .map_or(65536, |v| v.min(u32::MAX as u64) as u32),
            table_size: o
                .get("table_size")
                .map(|v| v.parse::<u32>().unwrap_or(u32::MAX))
                .unwrap_or(4),
            backing,
        }),
        FormatKind::Raw => Target::Raw {
            size,
            preallocation,
        },
    })
}

fn backing_spec(file: &Path, o: &Options) -> Result<Option<BackingSpec>> {
    let Some(name) = o.get("backing_file") else {
        return Ok(None);
    };
    let format = match o.get("backing_fmt") {
        Some(f) => f.parse::<FormatKind>()?.name().to_string(),
        None => {
            let detected = open_image(&resolve_relative_to(file, name), None)
                .map(|i| format!(" (detected {0}; add -F {0})", i.format_name()))
                .unwrap_or_default();
            return Err(Error::argument(format!(
                "Backing file specified without backing format{detected}"
            )));
        }
    };
    Ok(Some(BackingSpec {
        name: name.to_string(),
        format: Some(format),
    }))
}

/// Opens the backing file (relative to the new image) and returns its size.
fn backing_size(file: &Path, b: &BackingSpec) -> Result<u64> {
    let format = b
        .format
        .as_deref()
        .map(str::parse::<FormatKind>)
        .transpose()?;
    let path = resolve_relative_to(file, &b.name);
    let image = open_image(&path, format).map_err(|e| {
        Error::argument(format!(
            "Could not open backing image '{}': {}",
            b.name,
            e.reason()
        ))
        .with_path(file)
    })?;
    Ok(image.virtual_size())
}

fn qcow2_options(
    o: &Options,
    size: u64,
    preallocation: Preallocation,
    backing: Option<BackingSpec>,
) -> Result<Qcow2Options> {
    let version = match o.get("compat") {
        None | Some("1.1" | "v3") => 3,
        Some("0.10" | "v2") => 2,
        Some(v) => {
            return Err(Error::argument(format!(
                "Parameter 'version' does not accept value '{v}'"
            )))
        }
    };
    let cluster_size = o.size("cluster_size")?.unwrap_or(65536);
    let cluster_bits = if cluster_size.is_power_of_two() {
        cluster_size.trailing_zeros()
    } else {
        u32::MAX
    };
    let refcount_bits = match o.get("refcount_bits") {
        Some(v) => v.parse::<u64>().unwrap_or(0),
        None => 16,
    };
    let refcount_order = if refcount_bits.is_power_of_two() && refcount_bits <= 64 {
        refcount_bits.trailing_zeros()
    } else {
        u32::MAX
    };
    let compression = match o.get("compression_type") {
        None | Some("zlib") => CompressionType::Zlib,
        Some("zstd") => CompressionType::Zstd,
        Some(v) => {
            return Err(Error::argument(format!(
                "Parameter 'compression-type' does not accept value '{v}'"
            )))
        }
    };
    Ok(Qcow2Options {
        size,
        version,
        cluster_bits,
        refcount_order,
        extended_l2: o.flag("extended_l2")?,
        compression,
        lazy_refcounts: o.flag("lazy_refcounts")?,
        preallocation,
        backing,
        data_file: o.get("data_file").map(str::to_string),
        data_file_raw: o.flag("data_file_raw")?,
    })
}

/// The `Formatting 'FILE', fmt=...` line, with qemu-img's field order:
/// options it always shows get their defaults, the others appear when given.
fn formatting_line(file: &Path, format: FormatKind, o: &Options) -> String {
    let mut line = format!("Formatting '{}', fmt={}", file.display(), format.name());
    let size_of = |k: &str| o.size(k).ok().flatten().map(|v| v.to_string());
    let mut field = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            line.push_str(&format!(" {key}={v}"));
        }
    };
    let given = |k: &str| o.get(k).map(str::to_string);
    let or = |k: &str, d: &str| Some(o.get(k).unwrap_or(d).to_string());
    match format {
        FormatKind::Qcow2 => {
            field(
                "cluster_size",
                size_of("cluster_size").or(Some("65536".into())),
            );
            field("extended_l2", or("extended_l2", "off"));
            field("preallocation", given("preallocation"));
            field("compression_type", or("compression_type", "zlib"));
            field("size", given("size"));
            field("compat", given("compat"));
            field("backing_file", given("backing_file"));
            field("backing_fmt", given("backing_fmt"));
            field("data_file", given("data_file"));
            field("data_file_raw", given("data_file_raw"));
            field("lazy_refcounts", or("lazy_refcounts", "off"));
            field("refcount_bits", or("refcount_bits", "16"));
            field("nocow", given("nocow"));
            field("extent_size_hint", size_of("extent_size_hint"));
        }
        FormatKind::Qed => {
            field("size", given("size"));
            field("backing_file", given("backing_file"));
            field("backing_fmt", given("backing_fmt"));
            field(
                "cluster_size",
                size_of("cluster_size").or(Some("65536".into())),
            );
            field("table_size", given("table_size"));
            field("preallocation", given("preallocation"));
            field("nocow", given("nocow"));
            field("extent_size_hint", size_of("extent_size_hint"));
        }
        FormatKind::Raw => {
            field("size", given("size"));
            field("preallocation", given("preallocation"));
            field("nocow", given("nocow"));
            field("extent_size_hint", size_of("extent_size_hint"));
        }
    }
    line
}
