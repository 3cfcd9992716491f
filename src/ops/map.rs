//! The allocation map of an image through its chain, merged the way
//! qemu-img merges it.

use crate::chain::View;
use crate::error::Result;
use crate::format::Format;

/// One run of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// Guest offset.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Layers below the top that decided the run.
    pub depth: usize,
    /// Some layer allocates it.
    pub present: bool,
    /// Reads as zeros.
    pub zero: bool,
    /// Data is stored.
    pub data: bool,
    /// Compressed data.
    pub compressed: bool,
    /// Host offset in `file`, when known.
    pub offset: Option<u64>,
    /// The file holding the data, when the offset is known.
    pub file: Option<String>,
}

impl MapEntry {
    fn empty(start: u64) -> Self {
        MapEntry {
            start,
            length: 0,
            depth: 0,
            present: false,
            zero: false,
            data: false,
            compressed: false,
            offset: None,
            file: None,
        }
    }

    fn can_absorb(&self, next: &MapEntry) -> bool {
        self.length > 0
            && self.depth == next.depth
            && self.present == next.present
            && self.zero == next.zero
            && self.data == next.data
            && self.compressed == next.compressed
            && self.offset.is_some() == next.offset.is_some()
            && self.file == next.file
            && self
                .offset
                .is_none_or(|o| Some(o + self.length) == next.offset)
    }
}

/// The file and offset qemu-img names for host offset `host` of `image`:
/// a raw image passes its ranges down through the raw windows below it to
/// the file at the bottom; other formats name the node they store data in.
fn host_location(image: &dyn Format, host: u64) -> (String, u64) {
    if let Some((path, offset)) = image.host_file(crate::format::HostOffset(host)) {
        return (path.display().to_string(), offset);
    }
    let storage = image.data_storage();
    let (path, offset) = if image.driver().caps.host_is_file {
        crate::io::locate(storage, host)
    } else {
        (storage.path(), host)
    };
    (path.display().to_string(), offset)
}

/// qemu-img asks for block status in steps of at most this many bytes.
const STEP: u64 = 1 << 30;

/// Walks `[start, start + max_len)` (clipped to the image) and calls `emit`
/// with each merged entry, in order. `emit` also gets whether another entry
/// follows. An empty range yields one zero-length entry at `start`, as
/// qemu-img prints it.
pub fn map(
    view: &View<'_>,
    start: u64,
    max_len: Option<u64>,
    mut emit: impl FnMut(&MapEntry, bool) -> Result<()>,
) -> Result<()> {
    let size = view.virtual_size();
    let end = match max_len {
        Some(l) => start.saturating_add(l).min(size),
        None => size,
    };
    let mut current = MapEntry::empty(start);
    let mut offset = start;
    while offset < end {
        let st = view.block_status(offset, (end - offset).min(STEP))?;
        let layer = &view.layers()[st.depth];
        let next = MapEntry {
            start: offset,
            length: st.len,
            depth: st.depth,
            present: st.present,
            zero: st.zero,
            data: st.data,
            compressed: st.compressed,
            offset: st.host.map(|h| host_location(layer.image.as_ref(), h.0).1),
            file: st.host.map(|h| host_location(layer.image.as_ref(), h.0).0),
        };
        offset += st.len;
        if current.can_absorb(&next) {
            current.length += next.length;
            continue;
        }
        if current.length > 0 {
            emit(&current, true)?;
        }
        current = next;
    }
    emit(&current, false)
}
