//! Gathering what `info` reports about an image (or a whole chain).

use crate::chain::spec::{resolve_backing, ImageSpec};
use crate::chain::{open_image_with, Chain};
use crate::error::Result;
use crate::format::{Description, Format, FormatKind};
use crate::io::{Refusal, RefusedKind, Storage, StorageOptions, Trust};
use std::path::Path;

/// The protocol-level facts about the file that holds an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file name.
    pub filename: String,
    /// The file length in bytes, rounded up to 512 as QEMU's block layer sees it.
    pub length: u64,
    /// Bytes allocated on the host.
    pub actual_size: Option<u64>,
    /// The protocol (`file`, or `nbd` for an NBD export).
    pub protocol: &'static str,
    /// When this node is a raw window onto another node (QEMU's raw
    /// driver with `offset`/`size`): that node. `length` is then the
    /// window's.
    pub window_onto: Option<Box<FileInfo>>,
}

impl FileInfo {
    /// The facts about `storage` and the storages it is a window onto.
    fn of(storage: &dyn Storage, actual_size: Option<u64>) -> Result<FileInfo> {
        Ok(FileInfo {
            filename: storage.path().display().to_string(),
            length: storage.len()?.div_ceil(512) * 512,
            actual_size,
            protocol: storage.protocol(),
            window_onto: match storage.below() {
                Some((inner, _)) => Some(Box::new(FileInfo::of(inner, actual_size)?)),
                None => None,
            },
        })
    }
}

/// Everything `info` prints about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The file name as given (or as resolved for backing files).
    pub filename: String,
    /// The format name.
    pub format: &'static str,
    /// The guest size.
    pub virtual_size: u64,
    /// Bytes allocated on the host.
    pub actual_size: Option<u64>,
    /// The backing file name as stored.
    pub backing_filename: Option<String>,
    /// The backing file name resolved against the image's directory.
    pub full_backing_filename: Option<String>,
    /// The recorded backing format.
    pub backing_format: Option<String>,
    /// Format facts (cluster size, dirty bit, snapshots, specifics).
    pub description: Description,
    /// The node the image lives in; `None` when the image is a protocol
    /// node itself (`json:{"driver":"file",...}`), as QEMU shows it.
    pub file: Option<FileInfo>,
    /// The other files that hold the image's data (a VMDK's extent
    /// files), shown as child nodes `extents.N` (last first, as QEMU
    /// lists them) before `file`.
    pub extents: Vec<FileInfo>,
    /// With `--untrusted` (`Some`): the files this image names that were
    /// refused, not opened.
    pub refused: Option<Vec<Refusal>>,
}

impl ImageInfo {
    /// Collects the facts about an open image known by `path` (any name
    /// an image goes by; `json:` names are shown as QEMU shows them).
    pub fn of(image: &dyn Format, path: &Path) -> Result<ImageInfo> {
        let storage = image.storage();
        let actual_size = storage.allocated_bytes()?;
        let mut extents = Vec::new();
        // A refused extent file was never opened: there is nothing to show.
        for s in image
            .extent_files()
            .into_iter()
            .filter(|s| s.refusal().is_none())
        {
            extents.push(FileInfo::of(s, s.allocated_bytes()?)?);
        }
        // The image's disk size counts every file it is made of.
        let total_size = actual_size.and_then(|a| {
            extents
                .iter()
                .try_fold(a, |sum, e| Some(sum + e.actual_size?))
        });
        let backing = image.backing();
        let spec = ImageSpec::parse_path(path).ok();
        // An export is shown by the name QEMU gives it, however spelled.
        let export = crate::io::nbd_uri(path)
            .and_then(|u| crate::io::nbd::NbdUri::parse(u).ok())
            .and_then(|u| u.canonical());
        let filename = match &export {
            Some(name) => name.clone(),
            None => spec
                .as_ref()
                .map(|s| s.filename(image.format_name()))
                .unwrap_or_else(|| path.display().to_string()),
        };
        let protocol_top = spec.as_ref().and_then(ImageSpec::protocol_top);
        let top_window = spec.as_ref().is_some_and(ImageSpec::has_top_window);
        let device = spec.as_ref().is_some_and(|s| {
            matches!(
                s.file().protocol(),
                crate::chain::spec::FileNode::File {
                    host_device: true,
                    ..
                }
            )
        });
        let mut file = match (protocol_top, storage.below()) {
            (Some(_), _) => None,
            // A raw image's own window is part of its node: its child
            // is the node below the window.
            (None, Some((inner, _))) if top_window => Some(FileInfo::of(inner, actual_size)?),
            (None, _) => Some(FileInfo::of(storage, actual_size)?),
        };
        if let (Some(name), Some(node)) = (&export, file.as_mut()) {
            node.filename = name.clone();
        }
        if device {
            // The same local file, opened by the driver for devices.
            let mut node = file.as_mut();
            while let Some(n) = node {
                if n.window_onto.is_none() {
                    n.protocol = "host_device";
                }
                node = n.window_onto.as_deref_mut();
            }
        }
        Ok(ImageInfo {
            filename,
            format: protocol_top.unwrap_or(image.format_name()),
            virtual_size: image.virtual_size(),
            actual_size: total_size,
            backing_filename: backing.as_ref().map(|b| b.name.clone()),
            full_backing_filename: backing
                .as_ref()
                .map(|b| resolve_backing(path, &b.name).display().to_string()),
            backing_format: backing.and_then(|b| b.format),
            description: image.describe(),
            file,
            extents,
            refused: None,
        })
    }

    /// This image's refusals among what an untrusted open with `trust`
    /// refused (nothing is set for a trusted open).
    fn with_refusals(mut self, path: &Path, trust: &Trust) -> ImageInfo {
        if trust.is_untrusted() {
            self.refused = Some(
                trust
                    .refusals()
                    .into_iter()
                    .filter(|r| r.by == path)
                    .collect(),
            );
        }
        self
    }
}

/// The facts about the image at `path` alone; its backing file is not opened.
pub fn image_info(
    path: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<ImageInfo> {
    let image = open_image_with(path, format, options)?;
    if let Some(b) = image.backing() {
        // Not opened either way; an untrusted image's report lists it as
        // what a command that reads the image would refuse.
        options
            .trust
            .admit(RefusedKind::BackingFile, &b.name, path)?;
    }
    Ok(ImageInfo::of(image.as_ref(), path)?.with_refusals(path, &options.trust))
}

/// The facts about every image of the chain at `path`, top first.
pub fn chain_info(
    path: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
) -> Result<Vec<ImageInfo>> {
    let chain = Chain::open_recorded(path, format, options)?;
    chain
        .layers()
        .iter()
        .map(|l| {
            Ok(ImageInfo::of(l.image.as_ref(), &l.path)?.with_refusals(&l.path, &options.trust))
        })
        .collect()
}
