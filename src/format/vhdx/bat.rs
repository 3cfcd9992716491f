//! The block allocation table: one u64 per payload block (state in bits
//! 0-2, file offset in MiB in bits 20-63), with a sector-bitmap entry
//! after every `chunk_ratio` payload entries.

use super::header::MIB;

/// The block has never been written (reads as zeros here).
pub const NOT_PRESENT: u64 = 0;
/// The block's content is undefined (reads as zeros, as QEMU reads it).
pub const UNDEFINED: u64 = 1;
/// The block reads as zeros.
pub const ZERO: u64 = 2;
/// The block was unmapped (reads as zeros).
pub const UNMAPPED: u64 = 3;
/// The block is stored at the entry's offset.
pub const FULLY_PRESENT: u64 = 6;
/// Some sectors are stored, the rest come from the parent (differencing).
pub const PARTIALLY_PRESENT: u64 = 7;

/// The state bits of an entry.
pub fn state(entry: u64) -> u64 {
    entry & 7
}

/// The file offset an entry names.
pub fn offset(entry: u64) -> u64 {
    (entry >> 20) * MIB
}

/// An entry of `state` at the MiB-aligned `offset`.
pub fn entry(state: u64, offset: u64) -> u64 {
    (offset / MIB) << 20 | state
}

/// The shape of a BAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per payload block.
    pub block_size: u64,
    /// Payload blocks per sector-bitmap block.
    pub chunk_ratio: u64,
    /// Payload blocks that cover the virtual size.
    pub payload_blocks: u64,
    /// Entries in the table (payload and sector bitmaps).
    pub entries: u64,
}

impl Geometry {
    /// The BAT of a non-differencing disk of `size` bytes in blocks of
    /// `block_size`, sectors of `logical_sector`.
    pub fn new(size: u64, block_size: u32, logical_sector: u32) -> Geometry {
        let block_size = block_size as u64;
        let chunk_ratio = (1u64 << 23) * logical_sector as u64 / block_size;
        let payload_blocks = size.div_ceil(block_size);
        // QEMU counts in 32 bits: for an empty disk `payload - 1` wraps,
        // and its images (and its check of the BAT region's length) have
        // that many entries.
        let entries = if payload_blocks == 0 {
            u32::MAX as u64 / chunk_ratio
        } else {
            payload_blocks + (payload_blocks - 1) / chunk_ratio
        };
        Geometry {
            block_size,
            chunk_ratio,
            payload_blocks,
            entries,
        }
    }

    /// The table index of payload block `block`.
    pub fn index(&self, block: u64) -> usize {
        (block + block / self.chunk_ratio) as usize
    }

    /// Whether table index `i` is a payload entry (not a sector bitmap).
    pub fn is_payload(&self, i: u64) -> bool {
        i % (self.chunk_ratio + 1) != self.chunk_ratio
    }

    /// Bytes of the table in the file.
    pub fn table_bytes(&self) -> u64 {
        self.entries * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_as_qemu_computes_it() {
        // 100 GiB in 16 MiB blocks: 6400 payload entries and 24 bitmaps.
        let g = Geometry::new(100 << 30, 16 << 20, 512);
        assert_eq!(
            (g.chunk_ratio, g.payload_blocks, g.entries),
            (256, 6400, 6424)
        );
        assert_eq!(g.index(256), 257);
        assert!(!g.is_payload(256));
        assert!(g.is_payload(257));
        assert_eq!(Geometry::new(5 << 20, 8 << 20, 512).entries, 1);
        assert_eq!(Geometry::new(0, 8 << 20, 512).entries, 8_388_607);
        let e = entry(FULLY_PRESENT, 8 * MIB);
        assert_eq!((state(e), offset(e)), (FULLY_PRESENT, 8 * MIB));
    }
}
