//! What one format offers the rest of the program: a [`FormatDriver`],
//! registered once in [`super::registry`]. Generic code (operations,
//! chains, the command line) reaches a format only through its driver and
//! the [`super::Format`] trait: it asks [`Caps`], calls the driver's
//! functions, and never compares format names.

use super::{AmendOption, BackingSpec, Format, Preallocation};
use crate::error::{Error, Result};
use crate::io::{Storage, StorageOptions};
use crate::size::parse_size;
use std::fmt;
use std::path::Path;

/// One image format: its name, how to recognise, open and create it, and
/// what it can do.
pub struct FormatDriver {
    /// The name as qemu-img spells it (`-f`, `-O`, `fmt=` and `info`).
    pub name: &'static str,
    /// Recognises the format from the first (up to 512) bytes of a file.
    pub probe: fn(&[u8]) -> Option<Confidence>,
    /// Recognises the format from the last [`TAIL_LEN`] bytes of a file
    /// of the given length, for formats whose only mark is a trailer (a
    /// fixed VHD's footer). Tried only when no driver's magic claims the
    /// head; what it finds is a guess a guest could have made true, so
    /// it never names a backing file's format.
    pub probe_tail: Option<TailProbe>,
    /// The magic an image given explicitly as this format must start with,
    /// and qemu-img's refusal when it does not (`None`: any bytes do).
    pub magic: Option<Magic>,
    /// Opens an image held by `storage`, known as `path`, as `how` says.
    /// Callers check [`Caps`] first (a writable open of a read-only format,
    /// a snapshot view of a format without snapshots).
    pub open: OpenFn,
    /// Reads the checked `-o` values of `create` into a new image to write.
    pub create: fn(&CreateParams<'_>) -> Result<Box<dyn NewImage>>,
    /// The `-o` options `create` takes (also what `-o help` lists).
    pub create_options: &'static [CreateOption],
    /// The fields of qemu-img's `Formatting '...', fmt=NAME ...` line, in
    /// its order.
    pub formatting: &'static [FormattingField],
    /// The options `amend` takes, in `-o help` order (empty: no amend).
    pub amend_options: &'static [AmendOption],
    /// `measure` for a target of this format; `None`: qemu-img's refusal.
    pub measure: Option<fn(&MeasureInput<'_>) -> Result<Measurement>>,
    /// The options a `json:`/`--image-opts` node of this format takes.
    pub node_options: NodeOptions,
    /// What the format can do.
    pub caps: Caps,
}

impl fmt::Debug for FormatDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormatDriver")
            .field("name", &self.name)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// A driver's open: the storage, the name it was opened by (to resolve
/// the files an image names), how, and the options other files the image
/// names are opened with.
pub type OpenFn =
    fn(Box<dyn Storage>, &Path, &OpenHow<'_>, &StorageOptions) -> Result<Box<dyn Format>>;

/// A probe of a file's last [`TAIL_LEN`] bytes, given the file's length.
pub type TailProbe = fn(&[u8], u64) -> Option<Confidence>;

/// How many bytes at the end of a file [`FormatDriver::probe_tail`] sees.
pub const TAIL_LEN: usize = 512;

/// How sure a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    /// Any file would do: the format a probe falls back to (raw). Opening a
    /// backing file by such a guess is unsafe (a guest wrote its bytes).
    Fallback,
    /// The file ends with the format's trailer (no magic at its start): a
    /// better guess than the fallback, unsafe for a backing file all the same.
    Trailer,
    /// The file carries the format's magic.
    Magic,
}

/// A format's magic and qemu-img's sentence for a file that lacks it.
#[derive(Debug, Clone, Copy)]
pub struct Magic {
    /// The first bytes of every image of the format.
    pub bytes: &'static [u8],
    /// qemu-img's refusal (scripts match it, e.g. Proxmox retries a
    /// listing as raw on `Image is not in \S+ format$`).
    pub refusal: &'static str,
}

/// What a format can do; generic code asks these instead of names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Images can be written (`write`, `write_zeroes`, `flush`).
    pub writable: bool,
    /// An image can name a backing file (`-b`, rebase, commit, stream).
    pub backing: bool,
    /// Internal snapshots ([`super::Format::snapshots`]).
    pub snapshots: bool,
    /// Compressed clusters (`-c`).
    pub compression: bool,
    /// Persistent dirty bitmaps.
    pub bitmaps: bool,
    /// A metadata check (`check`).
    pub check: bool,
    /// `resize`.
    pub resize: bool,
    /// `amend` (its options are [`FormatDriver::amend_options`]).
    pub amend: bool,
    /// Guest data in an external data file.
    pub external_data: bool,
    /// `preallocation=metadata` on create.
    pub preallocate_metadata: bool,
    /// A writable open first repairs an image left dirty by a crashed
    /// lazy-refcount writer.
    pub repair_dirty_on_open: bool,
    /// Host offsets are the file's own offsets (the image is the file), so
    /// `map` names the file at the bottom of any windows below it.
    pub host_is_file: bool,
    /// A probe falls back to this format; a protocol node is read as it.
    pub fallback: bool,
    /// A node may carry an `offset`/`size` window onto its file.
    pub window: bool,
}

/// How to open an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenHow<'a> {
    /// Read-only.
    ReadOnly,
    /// For writing (the storage is writable).
    Writable,
    /// For `check -r` (the storage is writable): damage a normal open
    /// refuses but a repair fixes is tolerated.
    Repair,
    /// Read-only, showing the internal snapshot with this ID or name.
    Snapshot(&'a str),
}

/// One `-o` option of `create`.
#[derive(Debug, Clone, Copy)]
pub struct CreateOption {
    /// Its name (`cluster_size`).
    pub name: &'static str,
    /// qemu-img's type word: `str`, `size`, `num` or `bool (on/off)`.
    pub kind: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// An option of the file itself (qemu's protocol level) rather than of
    /// the format: qemu-img lists these only when a file name is given.
    pub of_file: bool,
    /// Known (so `amend` can say it is for creation only) but not listed
    /// by `-o help` (encryption, which qimg refuses).
    pub hidden: bool,
}

impl CreateOption {
    /// A format option.
    pub const fn format(name: &'static str, kind: &'static str, about: &'static str) -> Self {
        CreateOption {
            name,
            kind,
            about,
            of_file: false,
            hidden: false,
        }
    }

    /// A file (protocol level) option.
    pub const fn file(name: &'static str, kind: &'static str, about: &'static str) -> Self {
        CreateOption {
            of_file: true,
            ..Self::format(name, kind, about)
        }
    }

    /// An option known but not listed.
    pub const fn hidden(name: &'static str) -> Self {
        CreateOption {
            hidden: true,
            ..Self::format(name, "", "")
        }
    }
}

/// Options several formats share.
pub mod common_options {
    use super::CreateOption;
    /// `backing_file`.
    pub const BACKING_FILE: CreateOption =
        CreateOption::format("backing_file", "str", "Backing file of the new image");
    /// `backing_fmt`.
    pub const BACKING_FMT: CreateOption =
        CreateOption::format("backing_fmt", "str", "Format of the backing file");
    /// `size`.
    pub const SIZE: CreateOption = CreateOption::format("size", "size", "Virtual size of the disk");
    /// `nocow`.
    pub const NOCOW: CreateOption = CreateOption::file(
        "nocow",
        "bool (on/off)",
        "Disable copy-on-write of the file (btrfs only)",
    );
    /// `extent_size_hint`.
    pub const EXTENT_SIZE_HINT: CreateOption = CreateOption::file(
        "extent_size_hint",
        "size",
        "Extent size hint given to the file system (0: none)",
    );
    /// `preallocation` of the file (off, falloc, full).
    pub const FILE_PREALLOCATION: CreateOption = CreateOption::file(
        "preallocation",
        "str",
        "Preallocation of the file: off, falloc or full",
    );
}

/// One field of the `Formatting ...` line.
#[derive(Debug, Clone, Copy)]
pub struct FormattingField {
    /// The option it shows.
    pub key: &'static str,
    /// When and how it is shown.
    pub shown: Shown,
}

impl FormattingField {
    /// Shown as given, only when given.
    pub const fn given(key: &'static str) -> Self {
        FormattingField {
            key,
            shown: Shown::Given,
        }
    }

    /// Shown always, `default` when not given.
    pub const fn or(key: &'static str, default: &'static str) -> Self {
        FormattingField {
            key,
            shown: Shown::Or(default),
        }
    }

    /// A size, shown in bytes when given (and valid).
    pub const fn size(key: &'static str) -> Self {
        FormattingField {
            key,
            shown: Shown::Size(None),
        }
    }

    /// A size, shown in bytes, `default` when not given (or invalid).
    pub const fn size_or(key: &'static str, default: &'static str) -> Self {
        FormattingField {
            key,
            shown: Shown::Size(Some(default)),
        }
    }
}

/// See [`FormattingField`].
#[derive(Debug, Clone, Copy)]
pub enum Shown {
    /// The value as given, when given.
    Given,
    /// The value as given, else this default.
    Or(&'static str),
    /// The value as a byte count, else the default if any.
    Size(Option<&'static str>),
}

/// The `-o` values of a `create` (or `measure`), checked against the
/// format's option names; a later value of a name wins.
#[derive(Debug, Default, Clone)]
pub struct OptionValues {
    values: Vec<(String, String)>,
}

impl OptionValues {
    /// Sets `key` to `value` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) {
        self.values.retain(|(k, _)| k != key);
        self.values.push((key.to_string(), value.to_string()));
    }

    /// The value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as a size with qemu-img's suffixes, with its message when it
    /// is not one.
    pub fn size(&self, key: &str) -> Result<Option<u64>> {
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

    /// `key` as on/off (false when not given).
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("on" | "yes" | "true") => Ok(true),
            Some("off" | "no" | "false") => Ok(false),
            Some(v) => Err(Error::argument(format!(
                "Parameter '{key}' expects 'on' or 'off', not '{v}'"
            ))),
        }
    }

    /// `preallocation`, with qemu-img's refusal of an unknown mode.
    pub fn preallocation(&self) -> Result<Preallocation> {
        match self.get("preallocation") {
            Some(p) => Preallocation::parse(p).map_err(|_| {
                Error::argument(format!(
                    "Parameter 'preallocation' does not accept value '{p}'"
                ))
            }),
            None => Ok(Preallocation::Off),
        }
    }
}

/// What a format's [`FormatDriver::create`] reads.
#[derive(Debug)]
pub struct CreateParams<'a> {
    /// The `-o` values (`size` included).
    pub options: &'a OptionValues,
    /// The virtual size.
    pub size: u64,
    /// The preallocation mode (already refused when the format cannot).
    pub preallocation: Preallocation,
    /// The backing file to record.
    pub backing: Option<BackingSpec>,
}

/// A new image, planned from its options, not yet written.
pub trait NewImage: fmt::Debug + Send + Sync {
    /// Checks the option values (qemu-img checks them after printing the
    /// formatting line).
    fn validate(&self) -> Result<()>;
    /// Writes the image into `file` (created or truncated), and the other
    /// files it names (an external data file), and makes it durable.
    /// Returns the storage of `file`, still open (and locked) for writing,
    /// so a caller that goes on writing need not open it again.
    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>>;
}

/// What `measure` knows about the source.
pub struct MeasureInput<'a> {
    /// The `-o` values for the target.
    pub options: &'a OptionValues,
    /// The source's virtual size (or `--size`).
    pub size: u64,
    /// Whether there is a source image (else `--size` was given).
    pub from_image: bool,
    /// Bytes of the source that hold data, counted in whole units of the
    /// given size (a target cluster); 0 without a source image.
    pub data_bytes: &'a dyn Fn(u64) -> Result<u64>,
    /// The source's persistent bitmaps (`None`: its format keeps none).
    pub bitmaps: Option<&'a [super::BitmapInfo]>,
}

/// The answer of `measure`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// What the converted image needs.
    pub required: u64,
    /// What it needs with every cluster allocated.
    pub fully_allocated: u64,
    /// What the source's persistent bitmaps would take (`None` when the
    /// target or the source keeps none).
    pub bitmaps: Option<u64>,
}

/// The options a `json:` node of a format takes besides `file` (and
/// `backing`, when the format has backing files).
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    /// The option names accepted (and ignored: they tune QEMU's caches).
    pub accepted: &'static [&'static str],
    /// Options refused with a sentence of their own.
    pub refused: &'static [(&'static str, &'static str)],
    /// An `encrypt` dictionary is accepted (`encrypt.key-secret`).
    pub encrypt: bool,
    /// The option naming the secret that unlocks the image (luks:
    /// `key-secret`; qcow2 has `encrypt.key-secret` through `encrypt`).
    pub secret: Option<&'static str>,
}

impl NodeOptions {
    /// No options besides `file`/`backing`.
    pub const NONE: NodeOptions = NodeOptions {
        accepted: &[],
        refused: &[],
        encrypt: false,
        secret: None,
    };
}
