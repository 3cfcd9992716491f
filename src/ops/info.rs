//! Gathering what `info` reports about an image (or a whole chain).

use crate::chain::Chain;
use crate::error::Result;
use crate::format::{open_image, Description, Format, FormatKind};
use crate::paths::resolve_relative_to;
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
    /// The file the image lives in.
    pub file: FileInfo,
}

impl ImageInfo {
    /// Collects the facts about an open image known by `path`.
    pub fn of(image: &dyn Format, path: &Path) -> Result<ImageInfo> {
        let storage = image.storage();
        let actual_size = storage.allocated_bytes()?;
        let backing = image.backing();
        // An export is shown by the name QEMU gives it.
        let shown = crate::io::nbd_uri(path)
            .and_then(|u| crate::io::nbd::NbdUri::parse(u).ok())
            .and_then(|u| u.canonical())
            .unwrap_or_else(|| path.display().to_string());
        Ok(ImageInfo {
            filename: shown.clone(),
            format: image.format_name(),
            virtual_size: image.virtual_size(),
            actual_size,
            backing_filename: backing.as_ref().map(|b| b.name.clone()),
            full_backing_filename: backing
                .as_ref()
                .map(|b| resolve_relative_to(path, &b.name).display().to_string()),
            backing_format: backing.and_then(|b| b.format),
            description: image.describe(),
            file: FileInfo {
                filename: shown,
                length: storage.len()?.div_ceil(512) * 512,
                actual_size,
                protocol: storage.protocol(),
            },
        })
    }
}

/// The facts about the image at `path` alone; its backing file is not opened.
pub fn image_info(path: &Path, format: Option<FormatKind>) -> Result<ImageInfo> {
    let image = open_image(path, format)?;
    ImageInfo::of(image.as_ref(), path)
}

/// The facts about every image of the chain at `path`, top first.
pub fn chain_info(path: &Path, format: Option<FormatKind>) -> Result<Vec<ImageInfo>> {
    let chain = Chain::open(path, format)?;
    chain
        .layers()
        .iter()
        .map(|l| ImageInfo::of(l.image.as_ref(), &l.path))
        .collect()
}
