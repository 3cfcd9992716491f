//! Changing how much of the guest disk the active layer covers: growing the
//! virtual size, and emptying the active L1 table (what `commit` does to
//! the image it committed).

use super::entry::{L2Entry, COPIED, OFFSET_MASK, ZERO};
use super::header::AUTOCLEAR_DATA_FILE_RAW;
use super::meta::{read_l2_table, Meta};
use super::write::ALL_SUBCLUSTERS;
use super::Qcow2;
use crate::error::{Error, Result};
use crate::format::Preallocation;
use crate::io::write_zeros;

/// Refcount drops queued while emptying before they are written: bounds
/// memory on images with millions of clusters.
const FREES_PER_FLUSH: usize = 1 << 18;

impl Qcow2 {
    /// Grows the virtual size to `new_size` (never shrinks). With
    /// `zero_new`, the grown range reads as zeros even where the backing
    /// file reaches into it (as `qemu-img resize` does when the backing
    /// file is longer); otherwise it shows whatever lies below.
    ///
    /// The order keeps the image consistent at every instant. The L1 table
    /// grows in place when its clusters have room, else a new one is
    /// written and made durable (its old one freed only after the header
    /// stops pointing at it). The grown range's entries are then set to
    /// zero, beyond the old size where the guest cannot see them yet, and
    /// made durable. Only then does one header write make the new size and
    /// table current. Reopen the image to use the new size.
    pub(super) fn grow_to(
        &self,
        new_size: u64,
        zero_new: bool,
        prealloc: Preallocation,
    ) -> Result<()> {
        let cs = self.geo.cluster_size();
        let old_size = self.header.size;
        if new_size <= old_size {
            return Ok(());
        }
        if !self.bitmaps.is_empty() {
            return Err(Error::unsupported(
                "cannot grow an image with persistent bitmaps",
            ));
        }
        if self.lock_meta().header.version < 3 && !self.snapshots.is_empty() {
            return Err(Error::unsupported(
                "Can't resize a v2 image which has snapshots",
            ));
        }
        if zero_new && self.lock_meta().header.version < 3 {
            // No zero clusters in version 2 (qemu-img fails the same way,
            // after changing the size; qimg refuses first).
            return Err(Error::unsupported(
                "Failed to zero out new clusters: Operation not supported",
            ));
        }
        if prealloc != Preallocation::Off && self.geo.external_data {
            return Err(Error::unsupported(
                "qimg cannot preallocate the grown range of an image with an external data file",
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
            // In memory only: L1 entries written from now on go to the new
            // table; the header on disk still names the old one.
            meta.header.l1_table_offset = header.l1_table_offset;
            meta.header.l1_size = header.l1_size;
        }
        match prealloc {
            Preallocation::Off if zero_new => {
                self.zero_grown_range(&mut meta, old_size, new_size)?
            }
            Preallocation::Off => {}
            mode => self.preallocate_grown_range(&mut meta, old_size, new_size, mode, zero_new)?,
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

    /// Preallocates the clusters of the grown range before the size grows,
    /// as `qemu-img resize --preallocation=MODE` does: every whole cluster
    /// after the old end gets a host cluster of its own (its refcount
    /// raised) and an L2 entry naming it, beyond the old size where the
    /// guest cannot see it yet, all made durable before the header write.
    /// `metadata` leaves the host clusters sparse (reused ones are zeroed
    /// first, so no old bytes show), `falloc` allocates them on the host,
    /// `full` writes their zeros. With `zero_new` (a longer backing file
    /// below), the range reads as zeros whatever the backing file holds:
    /// metadata-only entries carry the zero flag, as qemu-img writes them.
    fn preallocate_grown_range(
        &self,
        meta: &mut Meta,
        old_size: u64,
        new_size: u64,
        mode: Preallocation,
        zero_new: bool,
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let span = cs * self.geo.l2_entries();
        if zero_new {
            // The rest of the old last cluster, as for a plain growth.
            let head = old_size / cs * cs;
            if head < old_size {
                let end = (head + cs).min(new_size);
                let zeros = vec![0u8; (end - old_size) as usize];
                self.write_in_cluster(meta, head, old_size - head, &zeros)?;
            }
        }
        let file_end = storage.len()?;
        let end = new_size.div_ceil(cs) * cs;
        let mut cluster = old_size.div_ceil(cs) * cs;
        while cluster < end {
            // One contiguous run of host clusters per L2 table.
            let run_end = ((cluster / span + 1) * span).min(end);
            let n = (run_end - cluster) / cs;
            let host = meta.refcounts(storage)?.alloc(storage, n)?;
            let len = n * cs;
            match mode {
                Preallocation::Full => write_zeros(storage, host, len)?,
                Preallocation::Falloc => {
                    if host < file_end {
                        write_zeros(storage, host, len.min(file_end - host))?;
                    }
                    if storage.len()? < host + len {
                        storage.set_len(host + len)?;
                    }
                    storage.allocate(host, len)?;
                }
                _ => {
                    if host < file_end {
                        write_zeros(storage, host, len.min(file_end - host))?;
                    }
                    if storage.len()? < host + len {
                        storage.set_len(host + len)?;
                    }
                }
            }
            // Over a longer backing file, metadata-only clusters are marked
            // as reading zeros; falloc and full ones hold their zeros.
            let zero_flag = zero_new && mode == Preallocation::Metadata;
            for k in 0..n {
                let at = host + k * cs;
                let next = match (self.geo.extended_l2, zero_flag) {
                    (false, false) => L2Entry {
                        word: at | COPIED,
                        bitmap: 0,
                    },
                    (false, true) => L2Entry {
                        word: at | COPIED | ZERO,
                        bitmap: 0,
                    },
                    (true, false) => L2Entry {
                        word: at | COPIED,
                        bitmap: 0,
                    },
                    (true, true) => L2Entry {
                        word: at | COPIED,
                        bitmap: ALL_SUBCLUSTERS << 32,
                    },
                };
                self.replace_entry(meta, cluster + k * cs, next)?;
            }
            self.flush_if_full(meta)?;
            cluster = run_end;
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }

    /// Makes `[old_size, new_size)` read as zeros before the size grows:
    /// the rest of the cluster holding the old end gets zeros written into
    /// it (the cluster's own bytes before the old end are kept), and every
    /// whole cluster after it a zero entry. Everything is durable when
    /// this returns; nothing the guest sees changed.
    fn zero_grown_range(&self, meta: &mut Meta, old_size: u64, new_size: u64) -> Result<()> {
        let cs = self.geo.cluster_size();
        let head = old_size / cs * cs;
        if head < old_size {
            let end = (head + cs).min(new_size);
            let zeros = vec![0u8; (end - old_size) as usize];
            self.write_in_cluster(meta, head, old_size - head, &zeros)?;
        }
        let zero = if self.geo.extended_l2 {
            L2Entry {
                word: 0,
                bitmap: ALL_SUBCLUSTERS << 32,
            }
        } else {
            L2Entry {
                word: ZERO,
                bitmap: 0,
            }
        };
        let mut cluster = old_size.div_ceil(cs) * cs;
        while cluster < new_size {
            self.replace_entry(meta, cluster, zero)?;
            self.flush_if_full(meta)?;
            cluster += cs;
        }
        meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)
    }

    /// Shrinks the virtual size to `new_size` (a multiple of 512), as
    /// `qemu-img resize --shrink`: everything past the new end is dropped.
    /// The order keeps the image consistent at every instant: the rest of
    /// the last cluster is zeroed (so a later growth shows zeros there),
    /// then one header write makes the new size current, then the L2
    /// entries and L1 entries past the end are cleared and made durable
    /// before the clusters they held are freed (a leak at worst), and the
    /// file is cut after its last cluster in use. Snapshots keep their own
    /// tables and size. Consumes the image.
    pub(super) fn shrink_to(&self, new_size: u64) -> Result<()> {
        let old = self.header.size;
        if new_size >= old {
            return Ok(());
        }
        if !self.bitmaps.is_empty() {
            return Err(Error::unsupported(
                "cannot shrink an image with persistent bitmaps",
            ));
        }
        if self.lock_meta().header.version < 3 && !self.snapshots.is_empty() {
            return Err(Error::unsupported(
                "Can't resize a v2 image which has snapshots",
            ));
        }
        if self.geo.external_data {
            return Err(Error::unsupported(
                "qimg cannot shrink an image with an external data file yet",
            ));
        }
        let cs = self.geo.cluster_size();
        let span = cs * self.geo.l2_entries();
        let keep_end = new_size.div_ceil(cs) * cs;
        if keep_end > new_size {
            self.write_zeroes_guest(new_size, keep_end.min(old) - new_size, false)?;
        }
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let storage = self.storage.as_ref();
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let mut header = meta.header.clone();
        header.size = new_size;
        self.write_header(&header)?;
        meta.header = header;
        // The table that holds the new end keeps its first entries.
        let partial = keep_end / span;
        if keep_end % span != 0
            && meta
                .l1
                .get(partial as usize)
                .is_some_and(|e| e & OFFSET_MASK != 0)
        {
            let table_end = ((partial + 1) * span).min(old.div_ceil(cs) * cs);
            let mut cluster = keep_end;
            while cluster < table_end {
                let (table, index, e) = self.writable_entry(&mut meta, cluster)?;
                if e != L2Entry::default() {
                    self.set_entry(&mut meta, table, index, L2Entry::default())?;
                    self.release(&mut meta, e);
                }
                cluster += cs;
            }
            meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        }
        self.drop_l1_entries(&mut meta, keep_end.div_ceil(span) as usize)
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
        meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)?;
        self.drop_l1_entries(&mut meta, 0)
    }

    /// Clears the active L1 entries from `first` on, as
    /// [`Qcow2::empty_active_layer`] does for all of them, then cuts the
    /// file after its last cluster in use. Everything cached must have
    /// been flushed.
    fn drop_l1_entries(&self, meta: &mut Meta, first: usize) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        for index in first..meta.l1.len() {
            let table = meta.l1[index] & OFFSET_MASK;
            if table == 0 {
                continue;
            }
            let refcount = meta.refcounts(storage)?.get(storage, table / cs)?;
            if refcount <= 1 {
                let entries: Vec<L2Entry> = read_l2_table(storage, &self.geo, table)?;
                for e in entries {
                    self.release(meta, e);
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
