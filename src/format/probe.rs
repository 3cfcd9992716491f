//! Format names, probing by magic, and opening an image file, all through
//! the driver table ([`super::registry`]).

use super::driver::{Confidence, FormatDriver, OpenHow, TAIL_LEN};
use super::registry::{self, Probe};
use super::Format;
use crate::error::{Error, Result, ResultExt};
use crate::io::{open_read_storage_with, open_writable_storage_with, Storage, StorageOptions};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::path::Path;
use std::str::FromStr;

/// A registered format: a small copyable handle on its [`FormatDriver`]
/// (fields and capabilities are reached through `Deref`). Compared by name.
#[derive(Clone, Copy)]
pub struct FormatKind(&'static FormatDriver);

impl FormatKind {
    /// The handle on `driver`.
    pub const fn of(driver: &'static FormatDriver) -> Self {
        FormatKind(driver)
    }

    /// The registered format called `name`, if any.
    pub fn named(name: &str) -> Option<Self> {
        registry::by_name(name).map(FormatKind)
    }

    /// The format qemu-img uses when none is given and a probe falls back
    /// to (raw).
    pub fn fallback() -> Self {
        FormatKind(registry::fallback())
    }

    /// The name qemu-img uses.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The driver.
    pub fn driver(self) -> &'static FormatDriver {
        self.0
    }
}

impl Deref for FormatKind {
    type Target = FormatDriver;
    fn deref(&self) -> &FormatDriver {
        self.0
    }
}

impl PartialEq for FormatKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for FormatKind {}

impl Hash for FormatKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state)
    }
}

impl fmt::Debug for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FormatKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match FormatKind::named(s) {
            Some(k) => Ok(k),
            None if registry::is_foreign(s) => Err(Error::unsupported(format!(
                "format '{s}' is not supported (qimg reads {})",
                registry::names_sentence()
            ))),
            None => Err(Error::argument(format!(
                "Unknown file format '{s}' (qimg reads {})",
                registry::names_sentence()
            ))),
        }
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// A format qimg reads, recognised by its magic.
    Known(FormatKind),
    /// No magic at the start: a format known by its trailer alone (a
    /// fixed VHD's footer), else the fallback format (raw). A guess either
    /// way: a guest could have written those bytes.
    Guessed(FormatKind),
    /// A format qimg recognises but does not read.
    Foreign(&'static str),
}

/// Probes the first (up to 512) bytes of a file, as QEMU does.
pub fn probe(head: &[u8]) -> Probed {
    match registry::probe(head) {
        Probe::Known(d, Confidence::Magic) => Probed::Known(FormatKind(d)),
        Probe::Known(d, Confidence::Fallback | Confidence::Trailer) => {
            Probed::Guessed(FormatKind(d))
        }
        Probe::Foreign(name) => Probed::Foreign(name),
    }
}

/// Reads the head of `storage` and probes it; when no magic is found
/// there, its last bytes too (a format known only by a trailer).
pub fn probe_storage(storage: &dyn Storage) -> Result<Probed> {
    let file_len = storage.len()?;
    let len = file_len.min(512) as usize;
    let mut head = vec![0u8; len];
    storage.read_at(&mut head, 0)?;
    let probed = probe(&head);
    if !matches!(probed, Probed::Guessed(_)) || file_len < TAIL_LEN as u64 {
        return Ok(probed);
    }
    let mut tail = vec![0u8; TAIL_LEN];
    storage.read_at(&mut tail, file_len - TAIL_LEN as u64)?;
    Ok(match registry::probe_tail(&tail, file_len) {
        Some(d) => Probed::Guessed(FormatKind(d)),
        None => probed,
    })
}

/// The format of the image held by `storage` (known as `path`): `format`
/// when given, else probed. A format qimg does not read is refused.
pub fn format_of(
    storage: &dyn Storage,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<FormatKind> {
    if let Some(k) = format {
        check_magic(storage, path, k)?;
        return Ok(k);
    }
    match probe_storage(storage).path_context(path)? {
        Probed::Known(k) | Probed::Guessed(k) => Ok(k),
        Probed::Foreign(name) => Err(Error::unsupported(format!(
            "image format '{name}' is not supported (qimg reads {})",
            registry::names_sentence()
        ))
        .with_path(path)),
    }
}

/// Refuses an image that lacks the magic of the format it was given as,
/// with the format's own (qemu-img's) sentence.
fn check_magic(storage: &dyn Storage, path: &Path, format: FormatKind) -> Result<()> {
    let Some(magic) = format.magic else {
        return Ok(());
    };
    let len = storage
        .len()
        .path_context(path)?
        .min(magic.bytes.len() as u64) as usize;
    let mut head = vec![0u8; len];
    storage.read_at(&mut head, 0).path_context(path)?;
    if head != magic.bytes {
        return Err(Error::invalid(magic.refusal).with_path(path));
    }
    Ok(())
}

/// Opens the image at `path` read-only, as `format`, or probed when `None`.
pub fn open_image(path: &Path, format: Option<FormatKind>) -> Result<Box<dyn Format>> {
    open_image_with(path, format, &StorageOptions::default())
}

/// As [`open_image`], with `options` for its storage.
pub fn open_image_with(
    path: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    open_as_with(
        open_read_storage_with(path, options)?,
        path,
        format,
        &OpenHow::ReadOnly,
        options,
    )
}

/// Opens an image held by `storage` (known as `path`), as `format`, or
/// probed when `None`.
pub fn open_storage(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<Box<dyn Format>> {
    open_as(storage, path, format, &OpenHow::ReadOnly)
}

/// Opens an image held by `storage` (known as `path`) as `how` says, as
/// `format`, or probed when `None`.
pub fn open_as(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
    how: &OpenHow<'_>,
) -> Result<Box<dyn Format>> {
    open_as_with(storage, path, format, how, &StorageOptions::default())
}

/// As [`open_as`], with `options` for the other files the image names
/// (a VMDK's extents).
pub fn open_as_with(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
    how: &OpenHow<'_>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    let kind = format_of(storage.as_ref(), path, format)?;
    if let OpenHow::Snapshot(_) = how {
        if !kind.caps.snapshots {
            return Err(
                Error::unsupported(format!("{kind} images have no internal snapshots"))
                    .with_path(path),
            );
        }
    }
    (kind.open)(storage, path, how, options).path_context(path)
}

/// As [`open_storage`], for `check -r` (`storage` writable): damage that a
/// normal open refuses but the repair fixes is tolerated.
pub fn open_storage_for_repair(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<Box<dyn Format>> {
    open_as(storage, path, format, &OpenHow::Repair)
}

/// Opens the image at `path` for writing, as `format`, or probed when `None`.
pub fn open_image_writable(path: &Path, format: Option<FormatKind>) -> Result<Box<dyn Format>> {
    open_image_writable_with(path, format, &StorageOptions::default())
}

/// As [`open_image_writable`], with `options` for its storage.
pub fn open_image_writable_with(
    path: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    open_as_with(
        open_writable_storage_with(path, options)?,
        path,
        format,
        &OpenHow::Writable,
        options,
    )
}
