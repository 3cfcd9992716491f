//! The mutable metadata of an open qcow2 image: the L1 table, the cached
//! L2 tables, the refcounts and the allocator, and the flush that writes
//! them in the crash-safe order.

use super::entry::{Geometry, L2Entry};
use super::header::Header;
use super::read_be_table;
use super::refcount::{
    refcount_at, refcount_max, refcounts_per_block, set_refcount, REFTABLE_OFFSET_MASK,
};
use crate::error::{Error, Result};
use crate::format::table_cache::TableCache;
use crate::io::Storage;
use std::collections::BTreeSet;

/// Memory the refcount block cache may use (half of it dirty between flushes).
const REFCOUNT_CACHE_BYTES: u64 = 32 << 20;

/// Reads the L2 table at `offset`.
pub(super) fn read_l2_table(
    storage: &dyn Storage,
    geo: &Geometry,
    offset: u64,
) -> Result<Vec<L2Entry>> {
    let mut raw = vec![0u8; geo.cluster_size() as usize];
    storage.read_at(&mut raw, offset)?;
    Ok(raw
        .chunks_exact(geo.entry_bytes())
        .map(L2Entry::decode)
        .collect())
}

/// Writes `entries` as the L2 table at `offset`.
fn write_l2_table(
    storage: &dyn Storage,
    geo: &Geometry,
    offset: u64,
    entries: &[L2Entry],
) -> Result<()> {
    let mut raw = vec![0u8; geo.cluster_size() as usize];
    for (e, out) in entries.iter().zip(raw.chunks_exact_mut(geo.entry_bytes())) {
        e.encode(out);
    }
    storage.write_at(&raw, offset)
}

/// The refcounts and the allocator. Clusters at or beyond `frontier` are
/// all free; new clusters are taken from there, so a cluster freed in this
/// session is never reused before its free is on disk.
#[derive(Debug)]
pub(super) struct Refcounts {
    table: Vec<u64>,
    table_offset: u64,
    table_clusters: u64,
    table_dirty: bool,
    /// The table moved: the header must point at it before anything relies on it.
    table_moved: bool,
    blocks: TableCache<u8>,
    /// Old tables to free after the header stops pointing at them.
    retired: Vec<(u64, u64)>,
    frontier: u64,
    cluster_bits: u32,
    order: u32,
}

impl Refcounts {
    /// Reads the refcount table and finds the first cluster after
    /// everything in use (and after the end of the file).
    pub fn load(storage: &dyn Storage, h: &Header) -> Result<Self> {
        let cs = h.cluster_size();
        let entries = h.refcount_table_clusters as u64 * cs / 8;
        let table = read_be_table(storage, h.refcount_table_offset, entries)?;
        let mut r = Refcounts {
            table,
            table_offset: h.refcount_table_offset,
            table_clusters: h.refcount_table_clusters as u64,
            table_dirty: false,
            table_moved: false,
            blocks: TableCache::new((REFCOUNT_CACHE_BYTES >> h.cluster_bits).max(16) as usize),
            retired: Vec::new(),
            frontier: storage.len()?.div_ceil(cs),
            cluster_bits: h.cluster_bits,
            order: h.refcount_order,
        };
        if let Some(last) = r.table.iter().rposition(|&e| e & REFTABLE_OFFSET_MASK != 0) {
            let per_block = r.per_block();
            let offset = r.table[last] & REFTABLE_OFFSET_MASK;
            let block = r.block(storage, offset)?;
            if let Some(i) = (0..per_block as usize)
                .rev()
                .find(|&i| refcount_at(block, i, h.refcount_order) != 0)
            {
                r.frontier = r.frontier.max(last as u64 * per_block + i as u64 + 1);
            }
            // The blocks themselves are in use too (a corrupt table may point past the rest).
            for &e in &r.table {
                let off = e & REFTABLE_OFFSET_MASK;
                if off != 0 {
                    r.frontier = r.frontier.max((off >> r.cluster_bits) + 1);
                }
            }
        }
        Ok(r)
    }

    fn per_block(&self) -> u64 {
        refcounts_per_block(self.cluster_bits, self.order)
    }

    /// Reads a refcount block (for the cache).
    fn read_block(storage: &dyn Storage, cluster_bits: u32, offset: u64) -> Result<Vec<u8>> {
        let mut data = vec![0u8; 1 << cluster_bits];
        storage.read_at(&mut data, offset)?;
        Ok(data)
    }

    fn block(&mut self, storage: &dyn Storage, offset: u64) -> Result<&[u8]> {
        let bits = self.cluster_bits;
        self.blocks
            .get(offset, || Self::read_block(storage, bits, offset))
    }

    /// The refcount of cluster `k`.
    pub fn get(&mut self, storage: &dyn Storage, k: u64) -> Result<u64> {
        let Some(&entry) = self.table.get((k / self.per_block()) as usize) else {
            return Ok(0);
        };
        let offset = entry & REFTABLE_OFFSET_MASK;
        if offset == 0 {
            return Ok(0);
        }
        let (index, order) = ((k % self.per_block()) as usize, self.order);
        Ok(refcount_at(self.block(storage, offset)?, index, order))
    }

    /// Sets the refcount of cluster `k`, creating its refcount block (and
    /// growing the table) when needed.
    pub fn set(&mut self, storage: &dyn Storage, k: u64, value: u64) -> Result<()> {
        if value > refcount_max(self.order) {
            return Err(Error::corrupt(format!(
                "refcount of cluster {k} would overflow its {}-bit width",
                1 << self.order
            )));
        }
        let offset = self.ensure_block(storage, k / self.per_block())?;
        let (index, order, bits) = (
            (k % self.per_block()) as usize,
            self.order,
            self.cluster_bits,
        );
        let block = self
            .blocks
            .get_mut(offset, || Self::read_block(storage, bits, offset))?;
        set_refcount(block, index, order, value);
        Ok(())
    }

    /// The offset of refcount block `i`, creating it at the frontier if it
    /// does not exist. A new block covering its own cluster counts itself.
    fn ensure_block(&mut self, storage: &dyn Storage, i: u64) -> Result<u64> {
        if i as usize >= self.table.len() {
            self.grow_table(storage, i)?;
        }
        let existing = self.table[i as usize] & REFTABLE_OFFSET_MASK;
        if existing != 0 {
            return Ok(existing);
        }
        let cluster = self.frontier;
        self.frontier += 1;
        let offset = cluster << self.cluster_bits;
        self.blocks
            .insert(offset, vec![0u8; 1 << self.cluster_bits], true);
        self.table[i as usize] = offset;
        self.table_dirty = true;
        self.set(storage, cluster, 1)?;
        Ok(offset)
    }

    /// Moves the refcount table to a bigger one at the frontier. The old
    /// table is freed by the caller after the header points at the new one.
    fn grow_table(&mut self, storage: &dyn Storage, needed: u64) -> Result<()> {
        let cs = 1u64 << self.cluster_bits;
        let mut entries = (needed + 1).max(self.table.len() as u64 * 2);
        let start = self.frontier;
        let mut clusters = (entries * 8).div_ceil(cs);
        // The table and the blocks that will cover it must fit in it.
        while entries < (start + clusters) / self.per_block() + 2 {
            entries = (start + clusters) / self.per_block() + 2;
            clusters = (entries * 8).div_ceil(cs);
        }
        let old = (self.table_offset, self.table_clusters);
        self.frontier += clusters;
        self.table.resize((clusters * cs / 8) as usize, 0);
        self.table_offset = start * cs;
        self.table_clusters = clusters;
        self.table_dirty = true;
        self.table_moved = true;
        for c in start..start + clusters {
            self.set(storage, c, 1)?;
        }
        // Freed only once the header points at the new table.
        self.retired.push((old.0, old.1 * cs));
        Ok(())
    }

    /// The byte offset just past the last cluster in use (0 when no
    /// refcount is set, which no valid image has).
    pub fn end_of_use(&mut self, storage: &dyn Storage) -> Result<u64> {
        let (per_block, order) = (self.per_block(), self.order);
        for i in (0..self.table.len()).rev() {
            let offset = self.table[i] & REFTABLE_OFFSET_MASK;
            if offset == 0 {
                continue;
            }
            let block = self.block(storage, offset)?;
            if let Some(j) = (0..per_block as usize)
                .rev()
                .find(|&j| refcount_at(block, j, order) != 0)
            {
                return Ok((i as u64 * per_block + j as u64 + 1) << self.cluster_bits);
            }
        }
        Ok(0)
    }

    /// The first cluster of the free space at the end.
    pub fn frontier(&self) -> u64 {
        self.frontier
    }

    /// Reserves `n` contiguous clusters at the frontier with refcount 1 and
    /// returns the first one's offset.
    pub fn alloc(&mut self, storage: &dyn Storage, n: u64) -> Result<u64> {
        let first = self.frontier;
        self.frontier += n;
        for c in first..first + n {
            self.set(storage, c, 1)?;
        }
        Ok(first << self.cluster_bits)
    }

    /// Returns `n` clusters from `offset` that [`Refcounts::alloc`] handed
    /// out but nothing references (their data write failed). They stay
    /// behind the frontier, so they are not handed out again this session.
    pub fn give_back(&mut self, storage: &dyn Storage, offset: u64, n: u64) -> Result<()> {
        let first = offset >> self.cluster_bits;
        for c in first..first + n {
            self.set(storage, c, 0)?;
        }
        Ok(())
    }

    /// Writes dirty blocks and the table (a moved table is written whole,
    /// then made durable, then the header is pointed at it). Returns whether
    /// anything was written.
    fn write(&mut self, storage: &dyn Storage) -> Result<bool> {
        let mut wrote = self
            .blocks
            .write_dirty(|offset, block| storage.write_at(block, offset))?;
        if self.table_dirty {
            let mut raw = vec![0u8; self.table.len() * 8];
            for (e, out) in self.table.iter().zip(raw.chunks_exact_mut(8)) {
                out.copy_from_slice(&e.to_be_bytes());
            }
            storage.write_at(&raw, self.table_offset)?;
            self.table_dirty = false;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Whether the table moved and the header must now point at it (the
    /// blocks and the table must be durable first). Clears the mark.
    fn take_move(&mut self) -> bool {
        std::mem::take(&mut self.table_moved)
    }

    /// Whether so many blocks wait to be written that a flush should run
    /// (bounds memory between flushes).
    pub fn wants_flush(&self) -> bool {
        self.blocks.wants_flush()
    }

    /// The clusters (by number) the refcount table and blocks occupy.
    pub fn structure_clusters(&self) -> Vec<u64> {
        let mut list: Vec<u64> = (0..self.table_clusters)
            .map(|i| (self.table_offset >> self.cluster_bits) + i)
            .collect();
        list.extend(
            self.table
                .iter()
                .map(|e| e & REFTABLE_OFFSET_MASK)
                .filter(|&o| o != 0)
                .map(|o| o >> self.cluster_bits),
        );
        list
    }

    /// Where the table is now (for the in-memory header).
    pub fn table_location(&self) -> (u64, u32) {
        (self.table_offset, self.table_clusters as u32)
    }
}

/// Everything about an image that a write may change.
#[derive(Debug)]
pub(super) struct Meta {
    /// The header as it is on disk.
    pub header: Header,
    /// The active L1 table.
    pub l1: Vec<u64>,
    /// L1 entries changed since the last flush.
    pub l1_dirty: BTreeSet<usize>,
    /// Cached L2 tables.
    pub l2: TableCache<L2Entry>,
    /// Refcounts, loaded by the first allocation.
    pub refcounts: Option<Refcounts>,
    /// Byte ranges whose refcount drops once nothing on disk points at them.
    pub frees: Vec<(u64, u64)>,
    /// The header has been made ready for writing (autoclear bits, bitmaps).
    pub prepared: bool,
    /// Where the next compressed cluster's bytes go.
    pub compressed_cursor: Option<u64>,
}

impl Meta {
    /// The refcounts, read on first use.
    pub fn refcounts(&mut self, storage: &dyn Storage) -> Result<&mut Refcounts> {
        if self.refcounts.is_none() {
            self.refcounts = Some(Refcounts::load(storage, &self.header)?);
        }
        Ok(self.refcounts.as_mut().expect("just loaded"))
    }

    /// Writes all metadata in the crash-safe order: data and refcount
    /// increases first, then (after a barrier) L2 tables, then (after a
    /// barrier) L1 entries, then (after a barrier) the refcount decreases of
    /// what is no longer referenced. Ends with everything durable.
    pub fn flush(
        &mut self,
        storage: &dyn Storage,
        data: &dyn Storage,
        geo: &Geometry,
    ) -> Result<()> {
        if !std::ptr::addr_eq(storage, data) {
            data.flush()?;
        }
        if let Some(r) = self.refcounts.as_mut() {
            r.write(storage)?;
            if r.take_move() {
                storage.flush()?;
                let (offset, clusters) = r.table_location();
                self.header.refcount_table_offset = offset;
                self.header.refcount_table_clusters = clusters;
                storage.write_at(&self.header.encode()?, 0)?;
            }
            self.frees.append(&mut r.retired);
        }
        storage.flush()?;
        if self
            .l2
            .write_dirty(|offset, entries| write_l2_table(storage, geo, offset, entries))?
        {
            storage.flush()?;
        }
        if !self.l1_dirty.is_empty() {
            for &i in &self.l1_dirty {
                storage.write_at(
                    &self.l1[i].to_be_bytes(),
                    self.header.l1_table_offset + i as u64 * 8,
                )?;
            }
            self.l1_dirty.clear();
            storage.flush()?;
        }
        if !self.frees.is_empty() {
            let cs = geo.cluster_size();
            let frees = std::mem::take(&mut self.frees);
            let r = self.refcounts(storage)?;
            for (offset, len) in frees {
                for c in offset / cs..=(offset + len - 1) / cs {
                    let n = r.get(storage, c)?;
                    r.set(storage, c, n.saturating_sub(1))?;
                }
            }
            r.write(storage)?;
            storage.flush()?;
        }
        Ok(())
    }
}
