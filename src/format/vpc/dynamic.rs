//! The dynamic disk header (1024 bytes, big-endian, cookie `cxsparse`)
//! and the block layout it describes.

use super::footer::checksum;
use crate::error::{Error, Result};

/// Length of the dynamic header.
pub const HEADER_LEN: usize = 1024;
/// Its cookie.
pub const COOKIE: &[u8; 8] = b"cxsparse";
/// The block size qemu-img always uses.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// A BAT entry of an unallocated block.
pub const UNALLOCATED: u32 = u32::MAX;

/// What the dynamic header says about the block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Byte offset of the block allocation table.
    pub table_offset: u64,
    /// Entries in the table.
    pub max_table_entries: u32,
    /// Data bytes per block (a power of two, at least 512).
    pub block_size: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl DynamicHeader {
    /// Parses the header (the checksum is not checked, as QEMU does not).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER_LEN || &b[..8] != COOKIE {
            return Err(Error::invalid("Invalid header magic"));
        }
        let h = DynamicHeader {
            table_offset: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
            max_table_entries: be32(b, 28),
            block_size: be32(b, 32),
        };
        if !h.block_size.is_power_of_two() || h.block_size < 512 {
            return Err(Error::invalid(format!(
                "Invalid block size {}",
                h.block_size
            )));
        }
        Ok(h)
    }

    /// Bytes of one block's sector bitmap (one bit per sector, padded to
    /// a whole sector).
    pub fn bitmap_bytes(&self) -> u64 {
        (self.block_size as u64 / 512).div_ceil(8).div_ceil(512) * 512
    }

    /// Bytes the table takes in the file (padded to a whole sector).
    pub fn table_bytes(&self) -> u64 {
        (self.max_table_entries as u64 * 4).div_ceil(512) * 512
    }

    /// The header as qemu-img writes it.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(COOKIE);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        let sum = checksum(&b, 36);
        b[36..40].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_block_sizes() {
        let h = DynamicHeader {
            table_offset: 0x600,
            max_table_entries: 3,
            block_size: DEFAULT_BLOCK_SIZE,
        };
        assert_eq!(DynamicHeader::parse(&h.encode()).expect("parse"), h);
        assert_eq!(h.bitmap_bytes(), 512);
        assert_eq!(h.table_bytes(), 512);
        let mut bad = h.encode();
        bad[32..36].copy_from_slice(&3000u32.to_be_bytes());
        assert!(DynamicHeader::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("Invalid block size 3000"));
    }
}
