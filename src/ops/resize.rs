//! `resize`: change an image's virtual size, as `qemu-img resize`.

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::format::{FormatKind, Preallocation};
use crate::io::StorageOptions;
use crate::size::parse_size;
use std::path::PathBuf;

/// A size as `qemu-img resize` takes it: absolute, or relative to the
/// current size (`+1G`, `-512M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSize {
    /// This many bytes.
    Absolute(u64),
    /// The current size plus this many bytes.
    Grow(u64),
    /// The current size minus this many bytes.
    Shrink(u64),
}

impl NewSize {
    /// Parses `[+|-]SIZE` with qemu-img's suffixes.
    pub fn parse(text: &str) -> Result<NewSize> {
        Ok(match text.as_bytes().first() {
            Some(b'+') => NewSize::Grow(parse_size(&text[1..])?),
            Some(b'-') => NewSize::Shrink(parse_size(&text[1..])?),
            _ => NewSize::Absolute(parse_size(text)?),
        })
    }

    /// The size in bytes for an image of `current` bytes; qemu-img's error
    /// when that is not above zero.
    pub fn resolve(self, current: u64) -> Result<u64> {
        let size = match self {
            NewSize::Absolute(n) => Some(n),
            NewSize::Grow(n) => current.checked_add(n),
            NewSize::Shrink(n) => current.checked_sub(n),
        };
        match size {
            Some(n) if n > 0 => Ok(n),
            None if matches!(self, NewSize::Grow(_)) => Err(Error::argument(
                "Invalid size: the current size plus the increase is too large",
            )),
            _ => Err(Error::argument("New image size must be positive")),
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ResizeRequest {
    /// The image.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The new size.
    pub size: NewSize,
    /// Whether a smaller size may be set (dropping what lies past it).
    pub shrink: bool,
    /// How to preallocate a grown range.
    pub preallocation: Preallocation,
    /// How files are opened (cache mode, `-U`, a test's fault injector).
    pub storage: StorageOptions,
}

/// What a resize did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resized {
    /// The image has its new size.
    Done,
    /// The new size is smaller and `shrink` was not given: nothing changed.
    ShrinkRefused,
}

/// qemu-img's message for [`Resized::ShrinkRefused`].
pub const SHRINK_REFUSED: &str = "Use the --shrink option to perform a shrink operation.";

/// The warning qemu-img prints with [`SHRINK_REFUSED`].
pub const SHRINK_WARNING: &str = "Shrinking an image will delete all data beyond the shrunken \
image's end. Before performing such an operation, make sure there is no important data there.";

/// Resizes as `req` says. The image is opened for writing (so an image in
/// use is refused), its backing chain for reading, and it is changed
/// through its format's crash-safe resize.
pub fn resize(req: &ResizeRequest) -> Result<Resized> {
    // With its backing chain: a grown range over a longer backing file
    // must be made to read zeros.
    let chain = Chain::open_writable_with(&req.file, req.format, &req.storage)?;
    let image = chain.top().image.as_ref();
    let current = image.virtual_size();
    let new_size = req
        .size
        .resolve(current)
        .map_err(|e| e.with_path(&req.file))?;
    if new_size < current && !req.shrink {
        return Ok(Resized::ShrinkRefused);
    }
    image
        .resize(new_size, req.preallocation)
        .map_err(|e| e.with_path(&req.file))?;
    // Reported here, not lost when the image is dropped.
    image.flush().map_err(|e| e.with_path(&req.file))?;
    Ok(Resized::Done)
}
