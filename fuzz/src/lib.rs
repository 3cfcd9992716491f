//! What every fuzz target does with its input: open it the way a command
//! would, then walk it the way `map`, `convert` and `check` walk an image.
//! Errors are the expected outcome for almost every input; a panic, a hang
//! or an allocation past libFuzzer's RSS limit is a finding.

use qimg::format::Format;
use qimg::format::{open_storage, FormatKind};
use qimg::io::MemStorage;
use std::path::Path;

/// How many block-status extents one input may walk: enough to reach
/// every table of a seed image, bounded so a claimed 2^63-byte disk of
/// one-byte extents cannot stall the fuzzer.
const MAX_EXTENTS: usize = 512;

/// The most bytes read at each extent.
const MAX_READ: u64 = 64 << 10;

/// Opens `data` as an image file named `fuzz.img`, as `format` or probed,
/// and exercises the result.
pub fn image(data: &[u8], format: Option<&str>) {
    let kind = format.map(|f| FormatKind::named(f).expect("a registered format"));
    let storage = Box::new(MemStorage::new("fuzz.img", data.to_vec()));
    if let Ok(image) = open_storage(storage, Path::new("fuzz.img"), kind) {
        walk(image.as_ref());
    }
}

/// Walks `image` as the read-only commands do: block status from the start,
/// a bounded read at every extent, the description `info` prints (with
/// the snapshot table), the bitmap directory, and the format's own check.
pub fn walk(image: &dyn Format) {
    let size = image.virtual_size();
    let mut offset = 0;
    let mut buf = Vec::new();
    for _ in 0..MAX_EXTENTS {
        if offset >= size {
            break;
        }
        let Ok(extent) = image.block_status(offset, size - offset) else {
            break;
        };
        let n = extent.len.min(MAX_READ).min(size - offset);
        buf.resize(n as usize, 0);
        let _ = image.read(offset, &mut buf);
        // A zero-length extent would be a bug of its own; step on anyway.
        offset = offset.saturating_add(extent.len.max(1));
    }
    // The last bytes too, where tables for the end of the disk live.
    if size > 0 {
        let n = size.min(MAX_READ);
        buf.resize(n as usize, 0);
        let _ = image.read(size - n, &mut buf);
    }
    let _ = image.describe();
    if let Some(bitmaps) = image.bitmaps() {
        let _ = bitmaps.list();
    }
    let _ = image.check(&mut |_| {});
}
