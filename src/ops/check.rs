//! `check`: open an image (and its backing chain, as qemu-img does) and
//! check the top image's metadata.

use crate::chain::spec;
use crate::chain::Chain;
use crate::error::Result;
use crate::format::check::{CheckReport, Repair};
use crate::format::Format;
use crate::format::FormatKind;
use crate::io::{Storage, StorageOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a check found, or that the format has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The verdict.
    Checked {
        /// The format name.
        format: &'static str,
        /// The counters.
        report: CheckReport,
    },
    /// The format cannot be checked (raw).
    NotSupported,
}

/// Checks the image at `path` read-only; per-problem lines go to `log`.
pub fn check_image(
    path: &Path,
    format: Option<FormatKind>,
    options: &StorageOptions,
    log: &mut dyn FnMut(String),
) -> Result<CheckOutcome> {
    let chain = Chain::open_with(path, format, options)?;
    outcome(chain.top().image.as_ref(), path, log)
}

/// An image repaired in place, still open read-write (and locked) with its
/// backing chain, so that the verdict after the repair comes from the same
/// open file.
pub struct Repaired {
    /// Holds the backing chain open and locked, as for a check.
    _chain: Chain,
    /// The image's file, shared with the repairing open.
    storage: Arc<dyn Storage>,
    path: PathBuf,
    format: Option<FormatKind>,
    options: StorageOptions,
    /// The repairing pass's verdict, with what it fixed.
    pub report: CheckReport,
}

impl Repaired {
    /// Checks the repaired image again: the verdict qemu-img prints after
    /// its repair. A repair writes around the format's caches, so the
    /// image is read afresh, through the file already open (no second open
    /// or lock). Per-problem lines go to `log`.
    pub fn check(&self, log: &mut dyn FnMut(String)) -> Result<CheckOutcome> {
        let image = crate::format::open_as_with(
            Box::new(Arc::clone(&self.storage)),
            &self.path,
            self.format,
            &crate::format::OpenHow::ReadOnly,
            &self.options,
        )?;
        outcome(image.as_ref(), &self.path, log)
    }
}

/// Checks `image` (at `path`).
fn outcome(image: &dyn Format, path: &Path, log: &mut dyn FnMut(String)) -> Result<CheckOutcome> {
    match image.check(log).map_err(|e| e.with_path(path))? {
        Some(report) => Ok(CheckOutcome::Checked {
            format: image.format_name(),
            report,
        }),
        None => Ok(CheckOutcome::NotSupported),
    }
}

/// Checks and repairs the image at `path` in place. The backing chain must
/// open (as for a check); only the image itself is opened for writing.
/// Returns the repaired image, still open, with the repairing pass's
/// verdict, or `None` when the format has no check.
pub fn repair_image(
    path: &Path,
    format: Option<FormatKind>,
    mode: Repair,
    options: &StorageOptions,
    log: &mut dyn FnMut(String),
) -> Result<Option<Repaired>> {
    // Locked for writing first: an image in use is refused as a write.
    let storage: Arc<dyn Storage> = Arc::from(spec::open_storage_with(path, true, options)?);
    let format = format.or(spec::ImageSpec::parse_path(path)?.driver());
    // A repair reads metadata only: an encrypted image is not unlocked.
    let metadata_only = StorageOptions {
        no_io: true,
        ..options.clone()
    };
    let image = crate::format::open_as_with(
        Box::new(Arc::clone(&storage)),
        path,
        format,
        &crate::format::OpenHow::Repair,
        &metadata_only,
    )?;
    // The backing chain must open, as for a check.
    let chain = Chain::with_top(path, Arc::from(image), options)?;
    let image = &chain.top().image;
    let Some(report) = image.repair(mode, log).map_err(|e| e.with_path(path))? else {
        return Ok(None);
    };
    // The repair's last writes are made durable here, where a failure is
    // reported, not when the image is dropped.
    image.flush().map_err(|e| e.with_path(path))?;
    Ok(Some(Repaired {
        _chain: chain,
        storage,
        path: path.to_path_buf(),
        format,
        options: metadata_only,
        report,
    }))
}
