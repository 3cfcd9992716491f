//! Refcount arithmetic shared by create, check and the write path: entry
//! widths, block capacity, the size of refcount structures that count
//! themselves, and qemu-img's test for metadata preallocation.

use super::header::Header;
use crate::error::Result;
use crate::io::Storage;

/// Offset bits of a refcount table entry.
pub const REFTABLE_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;

/// Refcounts one block holds: a cluster of `1 << order`-bit entries.
pub fn refcounts_per_block(cluster_bits: u32, order: u32) -> u64 {
    ((1u64 << cluster_bits) * 8) >> order
}

/// The largest refcount a `1 << order`-bit entry holds.
pub fn refcount_max(order: u32) -> u64 {
    u64::MAX >> (64 - (1u32 << order))
}

/// The smallest refcount table (in clusters) and number of refcount blocks
/// that, placed after the first `base` clusters of a file, cover every
/// cluster up to their own end: the blocks count the table and themselves.
pub fn refcount_structures(base: u64, cluster_bits: u32, order: u32) -> (u64, u64) {
    let per_block = refcounts_per_block(cluster_bits, order);
    let entries_per_cluster = (1u64 << cluster_bits) / 8;
    let (mut table, mut blocks) = (1u64, 1u64);
    loop {
        let need_blocks = (base + table + blocks).div_ceil(per_block);
        let need_table = need_blocks.div_ceil(entries_per_cluster);
        if need_blocks <= blocks && need_table <= table {
            return (table, blocks);
        }
        blocks = blocks.max(need_blocks);
        table = table.max(need_table);
    }
}

/// The refcount at `index` of a refcount block with `1 << order`-bit entries.
pub fn refcount_at(block: &[u8], index: usize, order: u32) -> u64 {
    let bits = 1usize << order;
    if bits >= 8 {
        let bytes = bits / 8;
        let start = index * bytes;
        block[start..start + bytes]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64)
    } else {
        let bit = index * bits;
        let byte = block[bit / 8];
        ((byte >> (bit % 8)) as u64) & ((1u64 << bits) - 1)
    }
}

/// Stores `value` at `index` of a refcount block with `1 << order`-bit entries.
/// The value must fit in the width.
pub fn set_refcount(block: &mut [u8], index: usize, order: u32, value: u64) {
    let bits = 1usize << order;
    if bits >= 8 {
        let bytes = bits / 8;
        let start = index * bytes;
        let be = value.to_be_bytes();
        block[start..start + bytes].copy_from_slice(&be[8 - bytes..]);
    } else {
        let bit = index * bits;
        let mask = (((1u16 << bits) - 1) as u8) << (bit % 8);
        let byte = &mut block[bit / 8];
        *byte = (*byte & !mask) | (((value as u8) << (bit % 8)) & mask);
    }
}

/// Whether the image looks preallocated with `preallocation=metadata`: far
/// more clusters are in use than the host file really stores. This is the
/// same test qemu-img applies before it reports holes in data clusters as zero.
pub fn looks_metadata_preallocated(
    storage: &dyn Storage,
    h: &Header,
    file_len: u64,
) -> Result<bool> {
    let cs = h.cluster_size();
    let real_clusters = storage.allocated_bytes()?.unwrap_or(file_len) / cs;
    let threshold = (real_clusters * 10 / 9).max(real_clusters + 2);
    let end_cluster = file_len.div_ceil(cs);
    let per_block = refcounts_per_block(h.cluster_bits, h.refcount_order);
    let table_len = (h.refcount_table_clusters as u64 * cs).min(file_len - h.refcount_table_offset);
    let mut table = vec![0u8; table_len as usize];
    storage.read_at(&mut table, h.refcount_table_offset)?;
    let mut used = 0u64;
    let mut block = vec![0u8; cs as usize];
    for (rt_index, e) in table.chunks_exact(8).enumerate() {
        let first = rt_index as u64 * per_block;
        if first >= end_cluster || used > threshold {
            break;
        }
        let off = u64::from_be_bytes(e.try_into().expect("8 bytes")) & REFTABLE_OFFSET_MASK;
        if off == 0 {
            continue;
        }
        if off % cs != 0 || off >= file_len {
            return Ok(false);
        }
        storage.read_at(&mut block, off)?;
        let n = per_block.min(end_cluster - first) as usize;
        for i in 0..n {
            used += (refcount_at(&block, i, h.refcount_order) != 0) as u64;
            if used > threshold {
                break;
            }
        }
    }
    Ok(used > threshold)
}

#[cfg(test)]
mod tests {
    use super::{
        refcount_at, refcount_max, refcount_structures, refcounts_per_block, set_refcount,
    };

    #[test]
    fn widths_and_structures() {
        assert_eq!(refcount_max(0), 1);
        assert_eq!(refcount_max(4), 0xffff);
        assert_eq!(refcount_max(6), u64::MAX);
        assert_eq!(refcounts_per_block(16, 4), 32768);
        // A fresh 64 KiB-cluster image: header, table, block, L1.
        assert_eq!(refcount_structures(2, 16, 4), (1, 1));
        for order in 0..=6 {
            for bits in [9, 12, 16] {
                for base in [0, 1, 63, 64, 1000, 1 << 20] {
                    let (table, blocks) = refcount_structures(base, bits, order);
                    let end = base + table + blocks;
                    assert!(blocks * refcounts_per_block(bits, order) >= end);
                    assert!(table * (1u64 << bits) / 8 >= blocks);
                    // Minimal: one block fewer would not cover its own end.
                    assert!(
                        blocks == 1 || (blocks - 1) * refcounts_per_block(bits, order) < end - 1
                    );
                }
            }
        }
    }

    #[test]
    fn sub_byte_widths_pack_lsb_first() {
        // 7 used clusters as qemu-img writes them.
        assert!((0..7).all(|i| refcount_at(&[0x7f], i, 0) == 1));
        assert_eq!(refcount_at(&[0x7f], 7, 0), 0);
        assert!((0..7).all(|i| refcount_at(&[0x55, 0x15], i, 1) == 1));
        assert_eq!(refcount_at(&[0x55, 0x15], 7, 1), 0);
        assert!((0..7).all(|i| refcount_at(&[0x11, 0x11, 0x11, 0x01], i, 2) == 1));
        assert_eq!(refcount_at(&[0x11, 0x11, 0x11, 0x01], 7, 2), 0);
    }

    #[test]
    fn set_then_get_at_every_width() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let mut block = vec![0u8; 64];
            let n = 64 * 8 / bits as usize;
            for i in 0..n {
                set_refcount(&mut block, i, order, (i as u64 * 7 + 1) & max);
            }
            for i in 0..n {
                assert_eq!(
                    refcount_at(&block, i, order),
                    (i as u64 * 7 + 1) & max,
                    "order {order} index {i}"
                );
            }
        }
    }

    #[test]
    fn wide_refcounts_are_big_endian() {
        assert_eq!(refcount_at(&[0, 1, 0, 2], 1, 4), 2);
        assert_eq!(refcount_at(&[0, 0, 0, 0, 0, 0, 1, 0], 0, 6), 256);
    }
}
