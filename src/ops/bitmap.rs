//! `bitmap`: add, remove, clear, enable, disable and merge an image's
//! persistent dirty bitmaps, as `qemu-img bitmap`: the actions run in the
//! order given, the first refused one stops the list (those before it are
//! kept), and errors carry qemu-img's sentence (`Operation add on bitmap
//! NAME failed: ...`).

use crate::error::{Error, Result};
use crate::format::bitmap::{
    check_new, not_found, BitmapChange, BitmapStore, ChangeFailed, DirtyBits, MergeSource,
};
use crate::format::{open_image, open_image_writable, Format, FormatKind};
use std::path::PathBuf;

/// One action on the bitmap, as the command line lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitmapAction {
    /// `--add`.
    Add,
    /// `--remove`.
    Remove,
    /// `--clear`.
    Clear,
    /// `--enable`.
    Enable,
    /// `--disable`.
    Disable,
    /// `--merge SOURCE`: the bitmap SOURCE (of the image, or of the
    /// request's source file) is merged into the bitmap.
    Merge(String),
}

impl BitmapAction {
    fn verb(&self) -> &'static str {
        match self {
            BitmapAction::Add => "add",
            BitmapAction::Remove => "remove",
            BitmapAction::Clear => "clear",
            BitmapAction::Enable => "enable",
            BitmapAction::Disable => "disable",
            BitmapAction::Merge(_) => "merge",
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct BitmapRequest {
    /// The image.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The bitmap the actions are about.
    pub bitmap: String,
    /// The actions, in order.
    pub actions: Vec<BitmapAction>,
    /// `-g`: the granularity of an added bitmap (`None`: the format's default).
    pub granularity: Option<u64>,
    /// `-b`: the image the `--merge` sources are read from (default: the image itself).
    pub source_file: Option<PathBuf>,
    /// `-F`: its format (probed when `None`).
    pub source_format: Option<FormatKind>,
}

/// Runs `req`: opens the image for writing (so an image in use is
/// refused), reads the merge sources, and applies the actions in one
/// crash-safe step.
pub fn bitmap(req: &BitmapRequest) -> Result<()> {
    let image = open_image_writable(&req.file, req.format)?;
    let source = match &req.source_file {
        Some(path) => Some(open_image(path, req.source_format)?),
        None => None,
    };
    let failed = |action: &BitmapAction, e: Error| {
        Error::new(
            e.kind(),
            format!(
                "Operation {} on bitmap {} failed: {}",
                action.verb(),
                req.bitmap,
                e.detail()
            ),
        )
        .with_path(&req.file)
    };
    let Some(store) = image.bitmaps() else {
        // A format without bitmaps: the first action is refused.
        let Some(first) = req.actions.first() else {
            return Ok(());
        };
        let why = match first {
            BitmapAction::Add => check_new(&req.bitmap, req.granularity)
                .err()
                .unwrap_or_else(|| {
                    Error::unsupported(format!(
                        "Can't store persistent bitmaps to {}: Operation not supported",
                        req.file.display()
                    ))
                }),
            _ => not_found(&req.bitmap),
        };
        return Err(failed(first, why));
    };
    let sources: &dyn Format = source.as_deref().unwrap_or(image.as_ref());
    let changes: Vec<BitmapChange> = req
        .actions
        .iter()
        .map(|a| change_for(req, a, sources))
        .collect();
    match store.change(&changes) {
        Ok(()) => {}
        Err(ChangeFailed {
            index: Some(i),
            error,
        }) => return Err(failed(&req.actions[i], error)),
        Err(ChangeFailed { error, .. }) => return Err(error.with_path(&req.file)),
    }
    image.flush()
}

/// The change an action asks for. A merge source that cannot be read
/// becomes a merge whose source reports that sentence, so the bitmap it
/// goes into is checked first, as QEMU checks it.
fn change_for(req: &BitmapRequest, action: &BitmapAction, sources: &dyn Format) -> BitmapChange {
    let name = req.bitmap.clone();
    match action {
        BitmapAction::Add => BitmapChange::Add {
            name,
            granularity: req.granularity,
            enabled: true,
        },
        BitmapAction::Remove => BitmapChange::Remove(name),
        BitmapAction::Clear => BitmapChange::Clear(name),
        BitmapAction::Enable => BitmapChange::Enable(name),
        BitmapAction::Disable => BitmapChange::Disable(name),
        BitmapAction::Merge(from) => {
            let source = if *from == name && req.source_file.is_none() {
                // A bitmap merged into itself stays as it is.
                MergeSource::Itself
            } else {
                match read_source(sources, from) {
                    Ok(bits) => MergeSource::Bits(bits),
                    Err(e) => MergeSource::Unreadable(e.detail()),
                }
            };
            BitmapChange::Merge {
                target: name,
                source,
            }
        }
    }
}

/// The bits of bitmap `name` of `image`.
fn read_source(image: &dyn Format, name: &str) -> Result<DirtyBits> {
    let store: &dyn BitmapStore = image.bitmaps().ok_or_else(|| not_found(name))?;
    store.read_bits(name)
}
