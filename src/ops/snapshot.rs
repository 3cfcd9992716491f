//! `snapshot`: list, take, apply and delete internal snapshots, as
//! `qemu-img snapshot`.

use crate::error::{Error, Result};
use crate::format::SnapshotInfo as Snapshot;
use crate::format::{open_image_with, open_image_writable_with, FormatKind, NewSnapshot};
use crate::io::StorageOptions;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// What to do with the image's snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotAction {
    /// List them (`-l`, and qemu-img's default).
    List,
    /// Take a new one with this name (`-c`).
    Create(String),
    /// Make this one (ID or name) the active layer (`-a`).
    Apply(String),
    /// Delete the first one with this name (`-d`).
    Delete(String),
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The image.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The action.
    pub action: SnapshotAction,
    /// How files are opened (cache mode, `-U`, a test's fault injector).
    pub storage: StorageOptions,
}

/// Runs `req`. Listing opens the image read-only and returns its
/// snapshots (none for formats without); the other actions open it for
/// writing (so an image in use is refused) and return an empty list. Errors
/// of the action carry qemu-img's sentence ("Could not create snapshot
/// 'NAME': ...").
pub fn snapshot(req: &SnapshotRequest) -> Result<Vec<Snapshot>> {
    if req.action == SnapshotAction::List {
        let image = open_image_with(&req.file, req.format, &req.storage)?;
        return Ok(image.describe().snapshots);
    }
    let image = open_image_writable_with(&req.file, req.format, &req.storage)?;
    let (verb, name, result) = match &req.action {
        SnapshotAction::Create(name) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let new = NewSnapshot {
                name: name.clone(),
                date_sec: now.as_secs() as u32,
                // Microseconds, as QEMU's clock gives them.
                date_nsec: now.subsec_micros() * 1000,
            };
            let result = match image.snapshots() {
                Some(s) => s.create_snapshot(&new),
                None => Err(Error::unsupported("Operation not supported")),
            };
            ("create", name, result)
        }
        SnapshotAction::Apply(name) => {
            let result = match image.snapshots() {
                Some(s) => s.apply_snapshot(name),
                None => Err(Error::unsupported(
                    "Block driver does not support snapshots",
                )),
            };
            ("apply", name, result)
        }
        SnapshotAction::Delete(name) => {
            let result = match image.snapshots() {
                Some(s) => s.delete_snapshot(name),
                None => Err(Error::argument("snapshot not found")),
            };
            ("delete", name, result)
        }
        SnapshotAction::List => unreachable!("handled above"),
    };
    result.map_err(|e| {
        Error::new(
            e.kind(),
            format!("Could not {verb} snapshot '{name}': {}", e.detail()),
        )
        .with_path(&req.file)
    })?;
    image.flush()?;
    Ok(Vec::new())
}
