//! `bitmap`: add, remove, clear, enable, disable and merge an image's
//! persistent dirty bitmaps, as `qemu-img bitmap`: the actions run in the
//! order given, the first refused one stops the list (those before it are
//! kept), and errors carry qemu-img's sentence (`Operation add on bitmap
//! NAME failed: ...`).

use crate::chain::{open_image, open_image_writable};
use crate::error::{Error, Result};
use crate::format::bitmap::{
    check_new, not_found, BitmapChange, BitmapStore, ChangeFailed, DirtyBits, MergeSource,
};
use crate::format::{Format, FormatKind};
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

/// `convert --bitmaps`'s checks of its (single) source `image`, in
/// qemu-img's order and with its sentences: the format must store
/// bitmaps, and an inconsistent bitmap is refused unless `skip_broken`.
/// Returns the names of the bitmaps that will be skipped, in the order
/// qemu-img warns about them.
pub fn check_convert_source(image: &dyn Format, skip_broken: bool) -> Result<Vec<String>> {
    let store = image
        .bitmaps()
        .filter(|s| s.persistent())
        .ok_or_else(|| Error::unsupported("Source lacks bitmap support"))?;
    // QEMU meets the bitmaps last first.
    let broken: Vec<String> = store
        .list()?
        .into_iter()
        .rev()
        .filter(|b| b.in_use)
        .map(|b| b.name)
        .collect();
    match broken.first() {
        Some(name) if !skip_broken => Err(Error::argument(format!(
            "Cannot copy inconsistent bitmap '{name}'\n\
             Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it"
        ))),
        _ => Ok(broken),
    }
}

/// `convert --bitmaps`'s refusal of a target that cannot store bitmaps.
pub fn check_convert_target(image: &dyn Format) -> Result<()> {
    match image.bitmaps() {
        Some(s) if s.persistent() => Ok(()),
        _ => Err(Error::unsupported(format!(
            "Format driver '{}' does not support bitmaps",
            image.format_name()
        ))),
    }
}

/// Copies the consistent bitmaps of `source` into `target` (after the
/// data, so the copy does not dirty them): each keeps its name,
/// granularity, enabled state and dirty bits, and they follow the
/// target's own bitmaps in the source's order. QEMU creates them last
/// first and stops at the first that fails (a name the target already
/// has: `Failed to create bitmap NAME: ...`; a disk of another size:
/// `Failed to populate bitmap NAME: ...`), keeping those made before;
/// qimg keeps the same ones, in one crash-safe step.
pub fn copy_bitmaps(source: &dyn Format, target: &dyn Format) -> Result<()> {
    let (Some(from), Some(into)) = (source.bitmaps(), target.bitmaps()) else {
        return Ok(());
    };
    let wanted: Vec<_> = from.list()?.into_iter().filter(|b| !b.in_use).collect();
    let present: Vec<String> = into.list()?.into_iter().map(|b| b.name).collect();
    // The one QEMU would stop at: met last first, so the last in order
    // that fails. Those after it are made, then its error is reported.
    let size = target.virtual_size();
    let mut stop = None;
    for (i, b) in wanted.iter().enumerate().rev() {
        if present.contains(&b.name) {
            stop = Some((
                i,
                format!(
                    "Failed to create bitmap {}: Bitmap already exists: {}",
                    b.name, b.name
                ),
            ));
            break;
        }
        if source.virtual_size() != size {
            stop = Some((
                i,
                format!(
                    "Failed to populate bitmap {}: Bitmaps are of different sizes (destination size is {size}, source size is {}) and can't be merged",
                    b.name,
                    source.virtual_size()
                ),
            ));
            break;
        }
    }
    let first = stop.as_ref().map_or(0, |(i, _)| i + 1);
    let mut changes = Vec::new();
    for b in &wanted[first..] {
        changes.push(BitmapChange::Add {
            name: b.name.clone(),
            granularity: Some(b.granularity),
            enabled: b.enabled,
        });
        changes.push(BitmapChange::Merge {
            target: b.name.clone(),
            source: MergeSource::Bits(from.read_bits(&b.name)?),
        });
    }
    if !changes.is_empty() {
        if let Err(f) = into.change(&changes) {
            let message = match f.index {
                Some(i) => {
                    let name = changes[i].name();
                    let stage = if i % 2 == 0 { "create" } else { "populate" };
                    format!("Failed to {stage} bitmap {name}: {}", f.error.detail())
                }
                None => f.error.detail(),
            };
            return Err(Error::new(f.error.kind(), message));
        }
    }
    match stop {
        Some((_, message)) => Err(Error::argument(message)),
        None => Ok(()),
    }
}
