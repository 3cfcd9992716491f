//! Opening what a spec names: the storage under the format node (a file
//! or an NBD export, seen through raw windows), then the image.

use super::{FileNode, ImageSpec};
use crate::error::{Error, Result};
use crate::format::OpenHow;
use crate::format::{self, Format, FormatKind};
use crate::io::http::HttpStorage;
use crate::io::nbd::NbdStorage;
use crate::io::{open_read_storage_with, open_writable_storage_with, StorageOptions};
use crate::io::{Storage, WindowStorage};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Refuses a `host_device` node whose file is not a device, as QEMU does.
fn check_device(filename: &Path) -> Result<()> {
    let is_device = std::fs::metadata(filename)
        .map(|m| m.file_type().is_block_device() || m.file_type().is_char_device())
        .unwrap_or(true); // a missing file is reported when it is opened
    if is_device {
        Ok(())
    } else {
        Err(Error::argument(format!(
            "'host_device' driver requires '{}' to be either a character or block device",
            filename.display()
        )))
    }
}

/// The storage of one node below the format node.
fn node_storage(
    node: &FileNode,
    writable: bool,
    options: &StorageOptions,
) -> Result<Box<dyn Storage>> {
    match node {
        FileNode::File {
            filename,
            host_device,
        } => {
            if *host_device {
                check_device(filename)?;
            }
            if writable {
                open_writable_storage_with(filename, options)
            } else {
                open_read_storage_with(filename, options)
            }
        }
        FileNode::Nbd(n) => Ok(Box::new(NbdStorage::open_with(
            &n.open_uri(),
            writable,
            &options.nbd(),
        )?)),
        FileNode::Http(_) if writable => {
            Err(crate::io::http::read_only(Path::new(&node.display())))
        }
        FileNode::Http(n) => Ok(Box::new(
            HttpStorage::open(&n.url, &n.http_options(options)?)?
                .named(PathBuf::from(node.display())),
        )),
        FileNode::Window { window, file } => Ok(Box::new(WindowStorage::new(
            node_storage(file, writable, options)?,
            window.offset,
            window.size,
            PathBuf::from(node.display()),
        )?)),
    }
}

/// The storage the top format node reads: its file node's, through its
/// own window when it is a raw node with one.
fn top_storage(
    spec: &ImageSpec,
    writable: bool,
    options: &StorageOptions,
) -> Result<Box<dyn Storage>> {
    let below = node_storage(spec.file(), writable, options)?;
    match spec {
        ImageSpec::Format(f) => match f.window {
            Some(w) => Ok(Box::new(WindowStorage::new(
                below,
                w.offset,
                w.size,
                PathBuf::from(spec.filename(FormatKind::fallback().name())),
            )?)),
            None => Ok(below),
        },
        ImageSpec::Protocol(_) => Ok(below),
    }
}

/// The storage the image `name` stands for lives in (for `check -r`,
/// which opens the file itself for writing).
pub fn open_storage(name: &Path, writable: bool) -> Result<Box<dyn Storage>> {
    open_storage_with(name, writable, &StorageOptions::default())
}

/// As [`open_storage`], with `options`.
pub fn open_storage_with(
    name: &Path,
    writable: bool,
    options: &StorageOptions,
) -> Result<Box<dyn Storage>> {
    let spec = ImageSpec::parse_path(name)?;
    top_storage(&spec, writable, options).map_err(|e| e.with_path(name))
}

/// The name the format layer knows the image by: its local file, or the
/// URI of its export.
fn format_path(spec: &ImageSpec) -> PathBuf {
    match spec.file().protocol() {
        FileNode::File { filename, .. } => filename.clone(),
        FileNode::Nbd(n) => PathBuf::from(n.open_uri()),
        FileNode::Http(n) => PathBuf::from(&n.url),
        FileNode::Window { .. } => unreachable!("protocol() is never a window"),
    }
}

/// The format to open `spec` as: `format` (`-f`) wins, then the spec's
/// driver; a protocol node is read as raw; `None` probes.
fn kind(spec: &ImageSpec, format: Option<FormatKind>) -> Option<FormatKind> {
    format.or(spec.driver()).or(match spec {
        ImageSpec::Protocol(_) => Some(FormatKind::fallback()),
        ImageSpec::Format(_) => None,
    })
}

/// Whether the spec is opened by its file name alone (no window anywhere).
fn by_name(spec: &ImageSpec) -> bool {
    let top_window = matches!(spec, ImageSpec::Format(f) if f.window.is_some());
    let http_options = matches!(spec.file().protocol(), FileNode::Http(n) if !n.is_plain());
    !top_window && !http_options && !matches!(spec.file(), FileNode::Window { .. })
}

/// The spec `name` stands for and the name the format layer knows it by,
/// with a `host_device` node's file checked to be a device.
fn parse_for_open(name: &Path) -> Result<(ImageSpec, PathBuf)> {
    let spec = ImageSpec::parse_path(name)?;
    let path = format_path(&spec);
    if let FileNode::File {
        filename,
        host_device: true,
    } = spec.file().protocol()
    {
        check_device(filename).map_err(|e| e.with_path(name))?;
    }
    Ok((spec, path))
}

/// The options to open the image of `spec` with: `options`, with the
/// secret its node names (an image named by its file keeps the options'
/// own, a `-o key-secret` of the command).
fn keyed(spec: &ImageSpec, options: &StorageOptions) -> StorageOptions {
    match spec {
        ImageSpec::Format(f) => match f.key_secret() {
            Some(id) => options.with_key_secret(Some(id)),
            None => options.clone(),
        },
        ImageSpec::Protocol(_) => options.with_key_secret(None),
    }
}

/// Opens the image `name` stands for, read-only, as `format` (or as the
/// spec says, or probed).
pub fn open_image(name: &Path, format: Option<FormatKind>) -> Result<Box<dyn Format>> {
    open_image_with(name, format, &StorageOptions::default())
}

/// As [`open_image`], with `options` for the storage.
pub fn open_image_with(
    name: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    let (spec, path) = parse_for_open(name)?;
    let options = &keyed(&spec, options);
    if by_name(&spec) {
        return format::open_image_with(&path, kind(&spec, format), options);
    }
    let storage = top_storage(&spec, false, options).map_err(|e| e.with_path(name))?;
    format::open_as_with(
        storage,
        &path,
        kind(&spec, format),
        &OpenHow::ReadOnly,
        options,
    )
}

/// Opens the image `name` stands for, for writing.
pub fn open_image_writable(name: &Path, format: Option<FormatKind>) -> Result<Box<dyn Format>> {
    open_image_writable_with(name, format, &StorageOptions::default())
}

/// As [`open_image_writable`], with `options` for the storage.
pub fn open_image_writable_with(
    name: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    let (spec, path) = parse_for_open(name)?;
    let options = &keyed(&spec, options);
    if by_name(&spec) {
        return format::open_image_writable_with(&path, kind(&spec, format), options);
    }
    format::open_as_with(
        top_storage(&spec, true, options).map_err(|e| e.with_path(name))?,
        &path,
        kind(&spec, format),
        &OpenHow::Writable,
        options,
    )
}
