//! `check`: open an image (and its backing chain, as qemu-img does) and
//! check the top image's metadata.

use crate::chain::spec;
use crate::chain::Chain;
use crate::error::Result;
use crate::format::check::{CheckReport, Repair};
use crate::format::FormatKind;
use crate::io::StorageOptions;
use std::path::Path;

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
    let top = chain.top();
    match top.image.check(log).map_err(|e| e.with_path(path))? {
        Some(report) => Ok(CheckOutcome::Checked {
            format: top.image.format_name(),
            report,
        }),
        None => Ok(CheckOutcome::NotSupported),
    }
}

/// Checks and repairs the image at `path` in place. The backing chain must
/// open (as for a check); only the image itself is opened for writing.
/// Returns the repairing pass's verdict with what it fixed, or `None` when
/// the format has no check.
pub fn repair_image(
    path: &Path,
    format: Option<FormatKind>,
    mode: Repair,
    options: &StorageOptions,
    log: &mut dyn FnMut(String),
) -> Result<Option<CheckReport>> {
    // Locked for writing first: an image in use is refused as a write.
    let storage = spec::open_storage_with(path, true, options)?;
    let format = format.or(spec::ImageSpec::parse_path(path)?.driver());
    // A repair reads metadata only: an encrypted image is not unlocked.
    let metadata_only = StorageOptions {
        no_io: true,
        ..options.clone()
    };
    let image = crate::format::open_as_with(
        storage,
        path,
        format,
        &crate::format::OpenHow::Repair,
        &metadata_only,
    )?;
    // The backing chain must open, as for a check.
    let chain = Chain::with_top(path, std::sync::Arc::from(image), options)?;
    let image = &chain.top().image;
    let report = image.repair(mode, log).map_err(|e| e.with_path(path))?;
    // The repair's last writes are made durable here, where a failure is
    // reported, not when the image is dropped.
    image.flush().map_err(|e| e.with_path(path))?;
    Ok(report)
}
