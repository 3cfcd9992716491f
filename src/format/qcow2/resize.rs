//! Changing how much of the guest disk the active layer covers: growing the
//! virtual size, and emptying the active L1 table (what `commit` does to
//! the image it committed).

use super::entry::{L2Entry, OFFSET_MASK};
use super::header::AUTOCLEAR_DATA_FILE_RAW;
use super::meta::read_l2_table;
use super::Qcow2;
use crate::error::{Error, Result};

/// Refcount drops queued while emptying before they are written: bounds
/// memory on images with millions of clusters.
const FREES_PER_FLUSH: usize = 1 << 18;

impl Qcow2 {
    /// Grows the virtual size to `new_size` (never shrinks). The new range
    /// reads as zeros when the image has no backing file; a caller that
    /// grows an image whose backing file is longer must know that range
    /// now shows the backing file. The L1 table grows in place when its
    /// clusters have room, else moves: the new table is written and made
    /// durable before one header write points at it, and the old table is
    /// freed after that. Consumes the image: reopen it to use the new size.
    pub(super) fn grow_to(self, new_size: u64) -> Result<()> {
        let cs = self.geo.cluster_size();
        if new_size <= self.header.size {
            return Ok(());
        }
        if !self.bitmaps.is_empty() {
            return Err(Error::unsupported(
                "cannot grow an image with persistent bitmaps",
            ));
        }
        if self.header.version < 3 && !self.snapshots.is_empty() {
            return Err(Error::unsupported(
                "cannot grow a version 2 image that has snapshots",
            ));
        }
        let per_l1 = cs * self.geo.l2_entries();
        let needed = new_size.div_ceil(per_l1);
        if needed * 8 > super::header::MAX_L1_BYTES {
            return Err(Error::argument(format!(
                "virtual size {new_size} is too large for {cs}-byte clusters"
            )));
        }
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let storage = self.storage.as_ref();
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let mut header = meta.header.clone();
        let old_entries = header.l1_size as u64;
        if needed > old_entries {
            let room = (old_entries * 8).div_ceil(cs) * cs / 8;
            let mut table = meta.l1.clone();
            table.resize(needed as usize, 0);
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
            if old_entries > 0 && needed <= room {
                // The new entries lie in the table's own clusters: zero them.
                storage.write_at(
                    &bytes[old_entries as usize * 8..],
                    header.l1_table_offset + old_entries * 8,
                )?;
            } else {
                let clusters = (needed * 8).div_ceil(cs);
                let at = meta.refcounts(storage)?.alloc(storage, clusters)?;
                let mut padded = bytes;
                padded.resize((clusters * cs) as usize, 0);
                storage.write_at(&padded, at)?;
                // The refcounts of the new table reach the disk first.
                meta.flush(storage, self.data_storage_ref(), &self.geo)?;
                if old_entries > 0 {
                    meta.frees
                        .push((header.l1_table_offset, (old_entries * 8).div_ceil(cs) * cs));
                }
                header.l1_table_offset = at;
            }
            storage.flush()?;
            header.l1_size = needed as u32;
            meta.l1 = table;
        }
        if header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0 {
            // A raw data file must stay a valid raw image of the guest.
            let data = self.data_storage_ref();
            if data.len()? < new_size {
                data.set_len(new_size)?;
                data.flush()?;
            }
        }
        header.size = new_size;
        self.write_header(&header)?;
        meta.header = header;
        // The old table is freed once the header no longer points at it.
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }

    /// Drops every mapping of the active L1 table, so the image reads its
    /// backing file everywhere. L1 entries are cleared (made durable)
    /// before the refcounts of what they held drop, so a crash at any
    /// point leaves the image consistent, with leaks at most. L2 tables
    /// shared with snapshots only lose the active table's reference.
    /// Afterwards the file is cut after its last cluster in use.
    pub(super) fn empty_active_layer(&self) -> Result<()> {
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        for index in 0..meta.l1.len() {
            let table = meta.l1[index] & OFFSET_MASK;
            if table == 0 {
                continue;
            }
            let refcount = meta.refcounts(storage)?.get(storage, table / cs)?;
            if refcount <= 1 {
                let entries: Vec<L2Entry> = read_l2_table(storage, &self.geo, table)?;
                for e in entries {
                    self.release(&mut meta, e);
                }
            }
            meta.frees.push((table, cs));
            meta.l1[index] = 0;
            meta.l1_dirty.insert(index);
            if meta.frees.len() >= FREES_PER_FLUSH {
                meta.l2.clear();
                meta.flush(storage, self.data_storage_ref(), &self.geo)?;
            }
        }
        // Cached tables are no longer referenced: nothing of them may be written back.
        meta.l2.clear();
        meta.compressed_cursor = None;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let end = meta.refcounts(storage)?.end_of_use(storage)?;
        if end > 0 && storage.len()? > end {
            storage.set_len(end)?;
            storage.flush()?;
        }
        Ok(())
    }
}
