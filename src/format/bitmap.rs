//! Persistent dirty bitmaps as the rest of the program sees them: what a
//! bitmap is ([`BitmapEntry`]), what it marks dirty ([`DirtyBits`]), the
//! changes `bitmap` and `convert --bitmaps` ask for ([`BitmapChange`]), and
//! the capability a format offers when it stores bitmaps ([`BitmapStore`]).
//! The sentences of the errors are QEMU's, so scripts that match them work.

use crate::error::{Error, Result};

/// Largest bitmap (in bytes of bits) QEMU keeps: larger ones are refused.
pub const MAX_BITMAP_BYTES: u64 = 0x2000_0000;

/// Smallest granularity the block layer accepts.
pub const MIN_GRANULARITY: u64 = 512;

/// One persistent bitmap as the format's directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapEntry {
    /// Its name.
    pub name: String,
    /// Guest bytes per bit.
    pub granularity: u64,
    /// It records writes (qcow2's `auto` flag).
    pub enabled: bool,
    /// It may be stale (qcow2's `in_use` flag): a program that tracked
    /// writes in it did not close the image. QEMU calls it inconsistent:
    /// it can only be removed.
    pub in_use: bool,
}

/// What one bitmap marks dirty over a disk of `size` bytes: bit `i` covers
/// guest bytes `i * granularity .. (i + 1) * granularity`. The bits are
/// packed least significant first, as qcow2 stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBits {
    size: u64,
    granularity: u64,
    bits: Vec<u8>,
}

impl DirtyBits {
    /// A clean bitmap. `granularity` must be a power of two and the bits
    /// must fit in [`MAX_BITMAP_BYTES`] (the caller checks both).
    pub fn new(size: u64, granularity: u64) -> Self {
        let bytes = Self::bytes_needed(size, granularity);
        DirtyBits {
            size,
            granularity,
            bits: vec![0u8; bytes as usize],
        }
    }

    /// The bytes of bits a disk of `size` bytes needs at `granularity`.
    pub fn bytes_needed(size: u64, granularity: u64) -> u64 {
        size.div_ceil(granularity).div_ceil(8)
    }

    /// A bitmap made of stored `bits` (shorter input reads as clean; bits
    /// past the disk are dropped).
    pub fn from_bytes(size: u64, granularity: u64, mut bits: Vec<u8>) -> Self {
        let mut out = Self::new(size, granularity);
        bits.resize(out.bits.len(), 0);
        out.bits = bits;
        out.clear_tail();
        out
    }

    /// Clears the bits past the end of the disk (a stored cluster may hold any).
    fn clear_tail(&mut self) {
        let count = self.size.div_ceil(self.granularity);
        let full = (count / 8) as usize;
        if full < self.bits.len() {
            let keep = (count % 8) as u32;
            self.bits[full] &= ((1u16 << keep) - 1) as u8;
            for b in &mut self.bits[full + 1..] {
                *b = 0;
            }
        }
    }

    /// The disk size the bitmap covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Guest bytes per bit.
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// The packed bits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Whether no bit is set.
    pub fn is_clean(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// Marks the guest bytes `start..end` dirty (every bit that covers one of them).
    pub fn mark(&mut self, start: u64, end: u64) {
        let end = end.min(self.size);
        if start >= end {
            return;
        }
        let (first, last) = (start / self.granularity, (end - 1) / self.granularity);
        let mut i = first;
        while i <= last {
            if i % 8 == 0 && i + 8 <= last + 1 {
                let run = ((last + 1 - i) / 8) as usize;
                let at = (i / 8) as usize;
                self.bits[at..at + run].fill(0xff);
                i += run as u64 * 8;
            } else {
                self.bits[(i / 8) as usize] |= 1 << (i % 8);
                i += 1;
            }
        }
    }

    /// The dirty guest ranges, in order, as (start, end) byte offsets
    /// (the last one ends at the disk size at most).
    pub fn dirty_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let g = self.granularity;
        for (byte_index, &byte) in self.bits.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            for bit in 0..8u64 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let i = byte_index as u64 * 8 + bit;
                let (start, end) = (i * g, ((i + 1) * g).min(self.size));
                match out.last_mut() {
                    Some(last) if last.1 == start => last.1 = end,
                    _ => out.push((start, end)),
                }
            }
        }
        out
    }

    /// Adds every range `other` marks dirty, as QEMU merges bitmaps of
    /// different granularities: a bit here is set when any byte it covers
    /// is dirty there. The sizes must be equal (QEMU's sentence otherwise).
    pub fn merge(&mut self, other: &DirtyBits) -> Result<()> {
        if other.size != self.size {
            return Err(Error::argument(format!(
                "Bitmaps are of different sizes (destination size is {}, source size is {}) and can't be merged",
                self.size, other.size
            )));
        }
        if other.granularity == self.granularity {
            for (a, b) in self.bits.iter_mut().zip(&other.bits) {
                *a |= b;
            }
            return Ok(());
        }
        for (start, end) in other.dirty_ranges() {
            self.mark(start, end);
        }
        Ok(())
    }
}

/// One change to an image's bitmaps; a list of them is applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitmapChange {
    /// A new clean bitmap. `granularity` `None` takes the format's default;
    /// `Some` is checked as QEMU checks it (a power of two, at least 512).
    Add {
        /// Its name.
        name: String,
        /// Guest bytes per bit.
        granularity: Option<u64>,
        /// Whether it records writes.
        enabled: bool,
    },
    /// Delete a bitmap (an inconsistent one too).
    Remove(String),
    /// Mark every bit of a bitmap clean.
    Clear(String),
    /// Make a bitmap record writes.
    Enable(String),
    /// Stop a bitmap recording writes.
    Disable(String),
    /// Add the dirty ranges of `source` (read before, from this image or another) to `target`.
    Merge {
        /// The bitmap that gains the ranges.
        target: String,
        /// What to add.
        source: MergeSource,
    },
}

/// What a merge adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeSource {
    /// These bits (of the same disk size).
    Bits(DirtyBits),
    /// The target itself: nothing changes, but the target is still checked.
    Itself,
    /// A source that could not be read, with the sentence why. The target
    /// is checked first (QEMU's order), then this is the refusal.
    Unreadable(String),
}

impl BitmapChange {
    /// qemu-img's word for the change (`Operation WORD on bitmap ...`).
    pub fn verb(&self) -> &'static str {
        match self {
            BitmapChange::Add { .. } => "add",
            BitmapChange::Remove(_) => "remove",
            BitmapChange::Clear(_) => "clear",
            BitmapChange::Enable(_) => "enable",
            BitmapChange::Disable(_) => "disable",
            BitmapChange::Merge { .. } => "merge",
        }
    }

    /// The bitmap the change is about.
    pub fn name(&self) -> &str {
        match self {
            BitmapChange::Add { name, .. } => name,
            BitmapChange::Remove(n)
            | BitmapChange::Clear(n)
            | BitmapChange::Enable(n)
            | BitmapChange::Disable(n) => n,
            BitmapChange::Merge { target, .. } => target,
        }
    }
}

/// Why [`BitmapStore::change`] stopped: the change at `index` was refused
/// (the ones before it are stored), or (`index` `None`) storing failed.
#[derive(Debug)]
pub struct ChangeFailed {
    /// The refused change, if one was.
    pub index: Option<usize>,
    /// What went wrong.
    pub error: Error,
}

impl From<Error> for ChangeFailed {
    fn from(error: Error) -> Self {
        ChangeFailed { index: None, error }
    }
}

/// A format that stores persistent dirty bitmaps.
pub trait BitmapStore {
    /// Whether the image can store bitmaps at all (qcow2 version 3; a
    /// version 2 image lists none and refuses new ones).
    fn persistent(&self) -> bool;
    /// The bitmaps, in the order the image stores them (with the flags as
    /// they are on disk now).
    fn list(&self) -> Result<Vec<BitmapEntry>>;
    /// What bitmap `name` marks dirty. A missing bitmap and an
    /// inconsistent one are refused with QEMU's sentences.
    fn read_bits(&self, name: &str) -> Result<DirtyBits>;
    /// Applies `changes` in order, as qemu-img does: the first refused one
    /// stops the list, and the ones before it are stored all the same. All
    /// that is stored goes in one crash-safe step: at every instant the
    /// image shows the old set of bitmaps or the new one, and a crash
    /// leaves leaked clusters at most. The image must not be used for
    /// writing afterwards (open it again).
    fn change(&self, changes: &[BitmapChange]) -> std::result::Result<(), ChangeFailed>;
}

/// QEMU's sentence for a bitmap that does not exist.
pub fn not_found(name: &str) -> Error {
    Error::argument(format!("Dirty bitmap '{name}' not found"))
}

/// QEMU's sentence for an inconsistent (in use) bitmap asked to do
/// anything but go away.
pub fn inconsistent(name: &str) -> Error {
    Error::argument(format!(
        "Bitmap '{name}' is inconsistent and cannot be used\n\
         Try block-dirty-bitmap-remove to delete this bitmap from disk"
    ))
}

/// Checks a name and an explicit granularity as QEMU's block layer does
/// before any format sees them.
pub fn check_new(name: &str, granularity: Option<u64>) -> Result<()> {
    if name.is_empty() {
        return Err(Error::argument("Bitmap name cannot be empty"));
    }
    if let Some(g) = granularity {
        if g < MIN_GRANULARITY || !g.is_power_of_two() {
            return Err(Error::argument(
                "Granularity must be power of 2 and at least 512",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DirtyBits;

    #[test]
    fn marks_cover_every_touched_bit_and_read_back_as_ranges() {
        let mut b = DirtyBits::new(10 << 20, 65536);
        b.mark(0, 1);
        b.mark(1 << 20, (1 << 20) + 4096);
        b.mark(3 << 20, 5 << 20);
        assert_eq!(
            b.dirty_ranges(),
            vec![(0, 65536), (1 << 20, (1 << 20) + 65536), (3 << 20, 5 << 20)]
        );
        assert_eq!(b.as_bytes()[0], 1);
        assert_eq!(b.as_bytes()[2], 1);
    }

    #[test]
    fn merging_scales_between_granularities() {
        let mut fine = DirtyBits::new(1 << 20, 1024);
        fine.mark(65536 + 10, 65536 + 20);
        let mut coarse = DirtyBits::new(1 << 20, 65536);
        coarse.merge(&fine).unwrap();
        assert_eq!(coarse.dirty_ranges(), vec![(65536, 131072)]);
        let mut back = DirtyBits::new(1 << 20, 1024);
        back.merge(&coarse).unwrap();
        assert_eq!(back.dirty_ranges(), vec![(65536, 131072)]);
        let other = DirtyBits::new(2 << 20, 1024);
        assert!(back
            .merge(&other)
            .unwrap_err()
            .message()
            .contains("different sizes"));
    }

    #[test]
    fn the_last_bit_ends_at_the_disk_size_and_stray_bits_are_dropped() {
        let b = DirtyBits::from_bytes(1000, 512, vec![0xff, 0xff]);
        assert_eq!(b.dirty_ranges(), vec![(0, 1000)]);
        assert_eq!(b.as_bytes(), &[0b11]);
    }
}
