//! Format names, probing by magic, and opening an image file.

use super::{qcow2::Qcow2, qed::Qed, raw::Raw, Format};
use crate::error::{Error, Result, ResultExt};
use crate::io::{open_read_storage_with, open_writable_storage_with, Storage, StorageOptions};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The formats qimg reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatKind {
    /// qcow2, versions 2 and 3.
    Qcow2,
    /// QED.
    Qed,
    /// Raw bytes.
    Raw,
}

impl FormatKind {
    /// The name qemu-img uses.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Qcow2 => "qcow2",
            FormatKind::Qed => "qed",
            FormatKind::Raw => "raw",
        }
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats qemu-img knows that qimg does not read.
const FOREIGN_FORMATS: &[&str] = &[
    "qcow",
    "vmdk",
    "vdi",
    "vhdx",
    "vpc",
    "parallels",
    "luks",
    "cloop",
    "dmg",
    "bochs",
];

impl FromStr for FormatKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "qcow2" => Ok(FormatKind::Qcow2),
            "qed" => Ok(FormatKind::Qed),
            "raw" => Ok(FormatKind::Raw),
            other if FOREIGN_FORMATS.contains(&other) => Err(Error::unsupported(format!(
                "format '{other}' is not supported (qimg reads qcow2, qed and raw)"
            ))),
            other => Err(Error::argument(format!(
                "Unknown file format '{other}' (qimg reads qcow2, qed and raw)"
            ))),
        }
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// A format qimg reads.
    Known(FormatKind),
    /// A format qimg recognises but does not read.
    Foreign(&'static str),
}

/// Probes the first (up to 512) bytes of a file, as QEMU does: qcow2 and QED
/// by magic, a few foreign formats so they are not mistaken for raw, and raw
/// for everything else.
pub fn probe(head: &[u8]) -> Probed {
    let starts = |m: &[u8]| head.len() >= m.len() && &head[..m.len()] == m;
    if starts(b"QFI\xfb") && head.len() >= 8 {
        let version = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        return match version {
            0 => Probed::Known(FormatKind::Raw),
            1 => Probed::Foreign("qcow"),
            _ => Probed::Known(FormatKind::Qcow2),
        };
    }
    if starts(b"QED\0") {
        return Probed::Known(FormatKind::Qed);
    }
    if starts(b"KDMV") {
        return Probed::Foreign("vmdk");
    }
    if starts(b"vhdxfile") {
        return Probed::Foreign("vhdx");
    }
    if starts(b"conectix") {
        return Probed::Foreign("vpc");
    }
    if starts(b"WithouFreSpacExt") || starts(b"WithoutFreeSpace") {
        return Probed::Foreign("parallels");
    }
    if starts(b"LUKS\xba\xbe") {
        return Probed::Foreign("luks");
    }
    if head.len() >= 0x44 && head[0x40..0x44] == [0x7f, 0x10, 0xda, 0xbe] {
        return Probed::Foreign("vdi");
    }
    Probed::Known(FormatKind::Raw)
}

/// Reads the head of `storage` and probes it.
pub fn probe_storage(storage: &dyn Storage) -> Result<Probed> {
    let len = storage.len()?.min(512) as usize;
    let mut head = vec![0u8; len];
    storage.read_at(&mut head, 0)?;
    Ok(probe(&head))
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
        Probed::Known(k) => Ok(k),
        Probed::Foreign(name) => Err(Error::unsupported(format!(
            "image format '{name}' is not supported (qimg reads qcow2, qed and raw)"
        ))
        .with_path(path)),
    }
}

/// Refuses an image that lacks the magic of the format it was given as,
/// with qemu-img's sentence (scripts match it: Proxmox retries a listing as
/// raw on `Image is not in \S+ format$`).
fn check_magic(storage: &dyn Storage, path: &Path, format: FormatKind) -> Result<()> {
    let (magic, sentence): (&[u8], &str) = match format {
        FormatKind::Qcow2 => (b"QFI\xfb", "Image is not in qcow2 format"),
        FormatKind::Qed => (b"QED\0", "Image not in QED format"),
        FormatKind::Raw => return Ok(()),
    };
    let len = storage.len().path_context(path)?.min(magic.len() as u64) as usize;
    let mut head = vec![0u8; len];
    storage.read_at(&mut head, 0).path_context(path)?;
    if head != magic {
        return Err(Error::invalid(sentence).with_path(path));
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
    open_storage(open_read_storage_with(path, options)?, path, format)
}

/// Opens an image held by `storage` (known as `path`), as `format`, or
/// probed when `None`.
pub fn open_storage(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<Box<dyn Format>> {
    let image: Box<dyn Format> = match format_of(storage.as_ref(), path, format)? {
        FormatKind::Qcow2 => Box::new(Qcow2::open(storage, path).path_context(path)?),
        FormatKind::Qed => Box::new(Qed::open(storage).path_context(path)?),
        FormatKind::Raw => Box::new(Raw::open(storage).path_context(path)?),
    };
    Ok(image)
}

/// As [`open_storage`], for `check -r` (`storage` writable): damage that a
/// normal open refuses but the repair fixes (a qcow2 snapshot table QEMU
/// would not read) is tolerated.
pub fn open_storage_for_repair(
    storage: Box<dyn Storage>,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<Box<dyn Format>> {
    match format_of(storage.as_ref(), path, format)? {
        FormatKind::Qcow2 => Ok(Box::new(
            Qcow2::open_for_repair(storage, path).path_context(path)?,
        )),
        kind => open_storage(storage, path, Some(kind)),
    }
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
    open_writable_with(&|| open_writable_storage_with(path, options), path, format)
}

/// Opens an image for writing in the storage `open` opens (known as
/// `path`), as `format`, or probed when `None`. A dirty qcow2 image is
/// repaired first, through a second storage from `open`.
pub fn open_writable_with(
    open: &dyn Fn() -> Result<Box<dyn Storage>>,
    path: &Path,
    format: Option<FormatKind>,
) -> Result<Box<dyn Format>> {
    let storage = open()?;
    let kind = format_of(storage.as_ref(), path, format)?;
    if kind == FormatKind::Qcow2 {
        repair_if_dirty(open()?, path)?;
    }
    let image: Box<dyn Format> = match kind {
        FormatKind::Qcow2 => Box::new(Qcow2::open_writable(storage, path).path_context(path)?),
        FormatKind::Qed => Box::new(Qed::open_writable(storage).path_context(path)?),
        FormatKind::Raw => Box::new(Raw::open(storage).path_context(path)?),
    };
    Ok(image)
}

/// A qcow2 image left dirty by a crashed lazy-refcount writer has stale
/// refcounts: before it is written, they are rebuilt, as QEMU does.
fn repair_if_dirty(storage: Box<dyn Storage>, path: &Path) -> Result<()> {
    let image = Qcow2::open(storage, path).path_context(path)?;
    if image.header().incompatible_features & super::qcow2::header::INCOMPAT_DIRTY == 0 {
        return Ok(());
    }
    let report = image
        .repair(super::check::Repair::All, &mut |_| {})
        .path_context(path)?
        .unwrap_or_default();
    if report.corruptions > 0 || report.check_errors > 0 {
        return Err(Error::corrupt(
            "image was not closed cleanly and its refcounts could not be repaired; run 'qimg check -r all'",
        )
        .with_path(path));
    }
    Ok(())
}
