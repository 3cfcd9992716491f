//! How large a qcow2 image of a given geometry gets, as `qemu-img measure`
//! computes it: the metadata a fully allocated image needs (header, L2 and
//! L1 tables, refcount table and blocks) and the bitmaps' share.

/// Bytes of one L1 entry and of one refcount table entry.
const TABLE_ENTRY: u64 = 8;

/// The refcount table and blocks that count `clusters` clusters and
/// themselves: the fixed point where adding them needs no more of them.
fn refcount_metadata_size(clusters: u64, cluster_size: u64, refcount_order: u32) -> u64 {
    let per_block = cluster_size * 8 / (1 << refcount_order);
    let per_table_cluster = cluster_size / TABLE_ENTRY;
    let (mut blocks, mut table) = (0u64, 0u64);
    loop {
        let next_blocks = (clusters + table + blocks).div_ceil(per_block);
        let next_table = next_blocks.div_ceil(per_table_cluster);
        if (next_blocks, next_table) == (blocks, table) {
            return (blocks + table) * cluster_size;
        }
        (blocks, table) = (next_blocks, next_table);
    }
}

/// The size of a fully allocated image of `virtual_size` bytes (rounded up
/// to whole clusters): its data plus every table it needs.
pub fn fully_allocated_size(
    virtual_size: u64,
    cluster_size: u64,
    refcount_order: u32,
    extended_l2: bool,
) -> u64 {
    let data = virtual_size.div_ceil(cluster_size) * cluster_size;
    let l2_entry = if extended_l2 { 16 } else { 8 };
    // The header cluster.
    let mut meta = cluster_size;
    // Whole L2 tables for every data cluster.
    let l2_entries =
        (data / cluster_size).div_ceil(cluster_size / l2_entry) * (cluster_size / l2_entry);
    meta += l2_entries * l2_entry;
    // Whole clusters of L1 entries, one per L2 table.
    let l1_entries = (l2_entries * l2_entry / cluster_size).div_ceil(cluster_size / TABLE_ENTRY)
        * (cluster_size / TABLE_ENTRY);
    meta += l1_entries * TABLE_ENTRY;
    meta += refcount_metadata_size((meta + data) / cluster_size, cluster_size, refcount_order);
    meta + data
}

/// What persistent bitmaps of these granularities, with these name
/// lengths, take in an image of `virtual_size` bytes: every bitmap wholly
/// allocated, its table, and the bitmap directory, in whole clusters.
pub fn bitmaps_size(
    virtual_size: u64,
    cluster_size: u64,
    bitmaps: impl IntoIterator<Item = (u64, usize)>,
) -> u64 {
    let (mut size, mut directory) = (0u64, 0u64);
    for (granularity, name_len) in bitmaps {
        let bytes = virtual_size.div_ceil(granularity.max(1)).div_ceil(8);
        let clusters = bytes.div_ceil(cluster_size);
        size += clusters * cluster_size;
        size += (clusters * TABLE_ENTRY).div_ceil(cluster_size) * cluster_size;
        // A directory entry: 24 bytes and the name, padded to 8.
        directory += (24 + name_len as u64).div_ceil(8) * 8;
    }
    size + directory.div_ceil(cluster_size) * cluster_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_qemu_img_reports() {
        // qemu-img measure --size 1G -O qcow2 (default geometry).
        assert_eq!(
            fully_allocated_size(1 << 30, 65536, 4, false),
            1_074_135_040
        );
        // qemu-img measure -O qcow2 -o cluster_size=512,refcount_bits=1 --size 1G.
        assert_eq!(fully_allocated_size(1 << 30, 512, 0, false), 1_091_053_056);
        // A 64 MiB image: 320 KiB of metadata.
        assert_eq!(fully_allocated_size(64 << 20, 65536, 4, false), 67_436_544);
    }
}
