//! Internal snapshots: taking one (`snapshot -c`), making one the active
//! layer (`-a`) and deleting one (`-d`), each in an order that leaves the
//! image consistent after a crash at any write.
//!
//! Refcounts count paths: every L1 table (the active one and each
//! snapshot's) that reaches an L2 table adds one to it, and every L2 entry
//! of such a table adds one to the data cluster it names (a compressed
//! cluster to each host cluster its bytes touch). So a snapshot adds one to
//! everything its L1 reaches, and deleting it takes that one away again.
//!
//! The COPIED flag of an active L1 or L2 entry says "refcount is exactly
//! 1: write in place". Set on a cluster a snapshot also uses, it is
//! corruption: a write would change the snapshot. Missing on a cluster with
//! refcount 1 it only costs one needless copy on write (qemu-img check
//! still reports it as an OFLAG_COPIED error and `check -r all` sets it).
//! A flag and a refcount live in different clusters, so no order changes
//! both at once; the orders below make sure that a crash can only ever
//! leave the harmless kind: flags are cleared before refcounts rise, and
//! set only after refcounts dropped to 1 durably.

use super::entry::{CompressedDescriptor, COPIED, OFFSET_MASK};
use super::header::{check_table, MAX_L1_BYTES, MAX_SNAPSHOTS};
use super::meta::{read_l2_table, Meta};
use super::refcount::refcount_max;
use super::snapshot::{Snapshot, MAX_SNAPSHOT_TABLE};
use super::{read_be_table, Qcow2};
use crate::error::{Error, Result};
use crate::format::NewSnapshot;
use std::collections::HashMap;

impl Qcow2 {
    /// Refuses what qimg does not take snapshots of: images with an
    /// external data file (as QEMU), and snapshot tables that need a repair.
    fn snapshots_writable(&self) -> Result<()> {
        if self.geo.external_data {
            return Err(Error::unsupported("Operation not supported"));
        }
        if let Some(d) = self.snapshot_defects.first() {
            return Err(Error::corrupt(d.message()));
        }
        Ok(())
    }

    /// The index of the snapshot `spec` names: an ID first, then a name
    /// (the first of equal names), as QEMU looks them up.
    fn find_snapshot(&self, spec: &str) -> Option<usize> {
        self.snapshots
            .iter()
            .position(|s| s.id == spec)
            .or_else(|| self.snapshots.iter().position(|s| s.name == spec))
    }

    /// The L1 table of snapshot `s`, checked to lie in the file.
    pub(super) fn snapshot_l1(&self, s: &Snapshot) -> Result<Vec<u64>> {
        let len = s.l1_size as u64 * 8;
        if len > MAX_L1_BYTES {
            return Err(Error::corrupt(format!(
                "snapshot '{}' has an L1 table too large",
                s.name
            )));
        }
        if s.l1_size > 0 {
            check_table(
                "snapshot L1 table",
                s.l1_table_offset,
                len,
                self.geo.cluster_size(),
                self.storage.len()?,
            )?;
        }
        read_be_table(self.storage.as_ref(), s.l1_table_offset, s.l1_size as u64)
    }

    /// Adds `delta` (+1 or -1) to the refcount of cluster number `cluster`.
    fn add_ref(&self, meta: &mut Meta, cluster: u64, delta: i64) -> Result<()> {
        let storage = self.storage.as_ref();
        let r = meta.refcounts(storage)?;
        let n = r.get(storage, cluster)?;
        let next = if delta > 0 {
            n.checked_add(1)
        } else {
            n.checked_sub(1)
        }
        .ok_or_else(|| {
            Error::corrupt(format!(
                "refcount of cluster {cluster} is already 0 (the image needs 'qimg check -r all')"
            ))
        })?;
        r.set(storage, cluster, next)
    }

    /// Adds `delta` (+1 or -1) to every path that the L1 table `l1`
    /// reaches: each L2 table it names and each cluster their entries name.
    /// Refcount blocks are written when many are dirty (nothing else may be
    /// dirty then, so only refcounts reach the disk).
    fn adjust_tree(&self, meta: &mut Meta, l1: &[u64], delta: i64) -> Result<()> {
        let cs = self.geo.cluster_size();
        for (i, &word) in l1.iter().enumerate() {
            let table = word & OFFSET_MASK;
            if table == 0 {
                continue;
            }
            let entries = self.l2_entries(meta, i as u64, table)?.to_vec();
            for e in entries {
                if e.is_compressed() {
                    let d = CompressedDescriptor::decode(e.word, self.geo.cluster_bits);
                    for c in d.offset / cs..=(d.offset + d.read_len() - 1) / cs {
                        self.add_ref(meta, c, delta)?;
                    }
                } else if let Some(h) = e.host_cluster(&self.geo) {
                    self.add_ref(meta, h / cs, delta)?;
                }
            }
            self.add_ref(meta, table / cs, delta)?;
            self.flush_if_full(meta)?;
        }
        Ok(())
    }

    /// Refuses, before anything is written, a reference more to every path
    /// of `l1` that a refcount could not hold (narrow refcounts: with 1-bit
    /// refcounts no cluster can be shared at all). QEMU's word for it is
    /// "Invalid argument".
    fn check_room_for_references(&self, meta: &mut Meta, l1: &[u64]) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let max = refcount_max(meta.header.refcount_order);
        // Compressed clusters share host clusters: count their references.
        let mut compressed: HashMap<u64, u64> = HashMap::new();
        let check = |meta: &mut Meta, cluster: u64, more: u64| -> Result<()> {
            let n = meta.refcounts(storage)?.get(storage, cluster)?;
            if n.saturating_add(more) > max {
                return Err(Error::argument(format!(
                    "Invalid argument (the refcount of cluster {cluster} cannot grow past {max})"
                )));
            }
            Ok(())
        };
        for (i, &word) in l1.iter().enumerate() {
            let table = word & OFFSET_MASK;
            if table == 0 {
                continue;
            }
            check(meta, table / cs, 1)?;
            let entries = self.l2_entries(meta, i as u64, table)?.to_vec();
            for e in entries {
                if e.is_compressed() {
                    let d = CompressedDescriptor::decode(e.word, self.geo.cluster_bits);
                    for c in d.offset / cs..=(d.offset + d.read_len() - 1) / cs {
                        *compressed.entry(c).or_default() += 1;
                    }
                } else if let Some(h) = e.host_cluster(&self.geo) {
                    check(meta, h / cs, 1)?;
                }
            }
        }
        for (c, more) in compressed {
            check(meta, c, more)?;
        }
        Ok(())
    }

    /// Clears COPIED in every L2 table that `l1` reaches (and, when
    /// `active`, in the active L1 entries themselves), leaving the changes
    /// cached and dirty for the next flush.
    fn clear_copied(&self, meta: &mut Meta, l1: &[u64], active: bool) -> Result<()> {
        let (storage, geo) = (self.storage.as_ref(), &self.geo);
        for (i, &word) in l1.iter().enumerate() {
            let table = word & OFFSET_MASK;
            if table == 0 {
                continue;
            }
            let flagged = self
                .l2_entries(meta, i as u64, table)?
                .iter()
                .any(|e| e.word & COPIED != 0);
            if flagged {
                for e in meta
                    .l2
                    .get_mut(table, || read_l2_table(storage, geo, table))?
                    .iter_mut()
                {
                    e.word &= !COPIED;
                }
            }
            if active && word & COPIED != 0 {
                meta.l1[i] = word & !COPIED;
                meta.l1_dirty.insert(i);
            }
            self.flush_if_full(meta)?;
        }
        Ok(())
    }

    /// Sets COPIED on the active L1 and L2 entries whose cluster the active
    /// layer is now the only user of (refcount 1), as QEMU keeps them. The
    /// refcounts must be durable first.
    fn restore_copied(&self, meta: &mut Meta) -> Result<()> {
        let storage = self.storage.as_ref();
        let (cs, geo) = (self.geo.cluster_size(), self.geo);
        let l1 = meta.l1.clone();
        for (i, &word) in l1.iter().enumerate() {
            let table = word & OFFSET_MASK;
            if table == 0 || meta.refcounts(storage)?.get(storage, table / cs)? != 1 {
                // A table another L1 also reaches: all it names is shared.
                continue;
            }
            if word & COPIED == 0 {
                meta.l1[i] = word | COPIED;
                meta.l1_dirty.insert(i);
            }
            let entries = self.l2_entries(meta, i as u64, table)?.to_vec();
            let mut sole = Vec::new();
            for (j, e) in entries.iter().enumerate() {
                if e.is_compressed() || e.word & COPIED != 0 {
                    continue;
                }
                if let Some(h) = e.host_cluster(&geo) {
                    if meta.refcounts(storage)?.get(storage, h / cs)? == 1 {
                        sole.push(j);
                    }
                }
            }
            if !sole.is_empty() {
                let t = meta
                    .l2
                    .get_mut(table, || read_l2_table(storage, &geo, table))?;
                for j in sole {
                    t[j].word |= COPIED;
                }
            }
            self.flush_if_full(meta)?;
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }

    /// Writes `l1` as a new table in fresh clusters (refcount 1, not yet
    /// durable) and returns its offset (0 for an empty table).
    fn write_new_l1(&self, meta: &mut Meta, l1: &[u64]) -> Result<u64> {
        if l1.is_empty() {
            return Ok(0);
        }
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let clusters = (l1.len() as u64 * 8).div_ceil(cs);
        let at = meta.refcounts(storage)?.alloc(storage, clusters)?;
        let mut bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        bytes.resize((clusters * cs) as usize, 0);
        storage.write_at(&bytes, at)?;
        Ok(at)
    }

    /// Replaces the snapshot table with `list`: the new table goes to fresh
    /// clusters and is durable with its refcounts before one header write
    /// (count and offset) makes it current; the old table is freed after.
    fn switch_snapshot_table(&self, meta: &mut Meta, list: &[Snapshot]) -> Result<()> {
        self.switch_snapshot_table_with(meta, list, |_| {})
    }

    /// As [`Qcow2::switch_snapshot_table`], with `change` applied to the
    /// header of that one write (amend's version switch rides on it).
    pub(super) fn switch_snapshot_table_with(
        &self,
        meta: &mut Meta,
        list: &[Snapshot],
        change: impl FnOnce(&mut super::header::Header),
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let table: Vec<u8> = list.iter().flat_map(|s| s.encode()).collect();
        if table.len() as u64 > MAX_SNAPSHOT_TABLE {
            return Err(Error::unsupported("File too large"));
        }
        let offset = if table.is_empty() {
            0
        } else {
            let clusters = (table.len() as u64).div_ceil(cs);
            let at = meta.refcounts(storage)?.alloc(storage, clusters)?;
            let mut padded = table;
            padded.resize((clusters * cs) as usize, 0);
            storage.write_at(&padded, at)?;
            at
        };
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let old_offset = meta.header.snapshots_offset;
        let old_len: u64 = self.snapshots.iter().map(|s| s.entry_len).sum();
        let mut header = meta.header.clone();
        header.nb_snapshots = list.len() as u32;
        header.snapshots_offset = offset;
        change(&mut header);
        self.write_header(&header)?;
        meta.header = header;
        if old_len > 0 {
            meta.frees.push((old_offset, old_len));
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }

    /// Takes snapshot `new` of the active layer (`qemu-img snapshot -c`).
    ///
    /// Order: (1) COPIED is cleared in the active L1 and L2 tables and
    /// made durable — a crash here leaves flags missing on clusters of
    /// refcount 1, the harmless kind; (2) the active L1 is copied to new
    /// clusters and every path it reaches gains a reference, made durable —
    /// a crash here leaves only leaks, since no snapshot names the copy;
    /// (3) the new snapshot table goes to new clusters, durable; (4) one
    /// header write makes it current; (5) the old table is freed (a leak if
    /// cut short). QEMU raises the refcounts before it clears the flags,
    /// so a crash between the two leaves COPIED set on clusters of refcount
    /// 2; the extra reference is a leak then, but qimg keeps the rule that
    /// a set flag always means refcount 1, on disk, at every instant.
    pub(super) fn create_snapshot_now(&self, new: &NewSnapshot) -> Result<()> {
        self.snapshots_writable()?;
        if self.snapshots.len() >= MAX_SNAPSHOTS as usize {
            return Err(Error::unsupported("File too large"));
        }
        if new.name.len() > u16::MAX as usize {
            return Err(Error::argument("Invalid argument"));
        }
        // QEMU's new ID: one more than the largest numeric ID.
        let id = self
            .snapshots
            .iter()
            .map(|s| leading_number(&s.id))
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let storage = self.storage.as_ref();
        let mut meta = self.lock_meta();
        self.prepare_with(&mut meta, false)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let active = meta.l1.clone();
        self.check_room_for_references(&mut meta, &active)?;
        self.clear_copied(&mut meta, &active, true)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let l1 = meta.l1.clone();
        let l1_offset = self.write_new_l1(&mut meta, &l1)?;
        self.adjust_tree(&mut meta, &l1, 1)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let size = meta.header.size;
        // The extra data QEMU writes: a 64-bit VM state size, the disk
        // size, and the instruction count (0 from qemu-img).
        let mut extra = 0u64.to_be_bytes().to_vec();
        extra.extend(size.to_be_bytes());
        extra.extend(0u64.to_be_bytes());
        let id = id.to_string();
        let mut snap = Snapshot {
            l1_table_offset: l1_offset,
            l1_size: l1.len() as u32,
            id_bytes: id.clone().into_bytes(),
            id,
            name_bytes: new.name.clone().into_bytes(),
            name: new.name.clone(),
            date_sec: new.date_sec,
            date_nsec: new.date_nsec,
            vm_clock_nsec: 0,
            vm_state_size: 0,
            disk_size: Some(size),
            icount: Some(0),
            entry_len: 0,
            extra,
        };
        snap.entry_len = snap.encode().len() as u64;
        let mut list = self.snapshots.clone();
        list.push(snap);
        self.switch_snapshot_table(&mut meta, &list)
    }

    /// Makes snapshot `spec` the active layer (`qemu-img snapshot -a`).
    ///
    /// Order: (1) COPIED is cleared in the snapshot's L2 tables, which the
    /// active layer is about to share; (2) every path the snapshot's L1
    /// reaches gains a reference and its entries (flags cleared) are
    /// written as a new active L1 in new clusters, all durable — a crash
    /// leaves leaks; (3) one header write switches the L1 table, its size
    /// and the virtual size together, so the guest sees the old disk or
    /// the snapshot, never a mix (QEMU overwrites the active L1 in place
    /// instead); (4) the old active tree and L1 lose their references.
    /// Everything the new active layer reaches is then shared with the
    /// snapshot, so no COPIED flag is due.
    pub(super) fn apply_snapshot_now(&self, spec: &str) -> Result<()> {
        self.snapshots_writable()?;
        let Some(index) = self.find_snapshot(spec) else {
            return Err(Error::argument(
                "Failed to load snapshot: No such file or directory",
            ));
        };
        // Bitmaps track changes to the active disk, which this replaces:
        // QEMU refuses, and so does qimg.
        if !self.bitmaps.is_empty() {
            return Err(Error::unsupported("Device has active dirty bitmaps"));
        }
        let snap = self.snapshots[index].clone();
        let size = snap.disk_size.unwrap_or(self.header.size);
        let span = self.geo.cluster_size() * self.geo.l2_entries();
        let sn_l1 = self.snapshot_l1(&snap)?;
        let len = sn_l1.len().max(size.div_ceil(span) as usize);
        if len as u64 * 8 > MAX_L1_BYTES {
            return Err(Error::corrupt(format!(
                "snapshot '{}' has a disk size too large for its clusters",
                snap.name
            )));
        }
        let storage = self.storage.as_ref();
        let mut meta = self.lock_meta();
        self.prepare_with(&mut meta, false)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        self.check_room_for_references(&mut meta, &sn_l1)?;
        self.clear_copied(&mut meta, &sn_l1, false)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let mut l1: Vec<u64> = sn_l1.iter().map(|e| e & !COPIED).collect();
        l1.resize(len, 0);
        let at = self.write_new_l1(&mut meta, &l1)?;
        self.adjust_tree(&mut meta, &sn_l1, 1)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let old_l1 = std::mem::replace(&mut meta.l1, l1);
        let (old_offset, old_len) = (meta.header.l1_table_offset, meta.header.l1_size);
        let mut header = meta.header.clone();
        header.l1_table_offset = at;
        header.l1_size = len as u32;
        header.size = size;
        self.write_header(&header)?;
        meta.header = header;
        self.adjust_tree(&mut meta, &old_l1, -1)?;
        if old_len > 0 {
            meta.frees.push((old_offset, old_len as u64 * 8));
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        meta.l2.clear();
        meta.compressed_cursor = None;
        Ok(())
    }

    /// Deletes the first snapshot named `spec` (`qemu-img snapshot -d`).
    ///
    /// Order: (1) the table without it is written and made current by one
    /// header write (see [`Qcow2::switch_snapshot_table`]); (2) every path
    /// its L1 reaches, and its L1 itself, lose a reference, durably — a
    /// crash before leaves leaks; (3) only then do active entries whose
    /// cluster now has refcount 1 get COPIED back (a crash before leaves
    /// them missing, the harmless kind).
    pub(super) fn delete_snapshot_now(&self, spec: &str) -> Result<()> {
        self.snapshots_writable()?;
        // qemu-img looks the snapshot to delete up by name only.
        let Some(index) = self.snapshots.iter().position(|s| s.name == spec) else {
            return Err(Error::argument("snapshot not found"));
        };
        let snap = self.snapshots[index].clone();
        let sn_l1 = self.snapshot_l1(&snap)?;
        let storage = self.storage.as_ref();
        let mut meta = self.lock_meta();
        self.prepare_with(&mut meta, false)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let mut list = self.snapshots.clone();
        list.remove(index);
        self.switch_snapshot_table(&mut meta, &list)?;
        self.adjust_tree(&mut meta, &sn_l1, -1)?;
        if snap.l1_size > 0 {
            meta.frees
                .push((snap.l1_table_offset, snap.l1_size as u64 * 8));
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        self.restore_copied(&mut meta)
    }
}

/// The number an ID starts with, as C's `strtoul` reads it (0 when none).
fn leading_number(id: &str) -> u64 {
    let digits: String = id
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty() {
        0
    } else {
        digits.parse().unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::leading_number;

    #[test]
    fn ids_are_read_as_strtoul_reads_them() {
        assert_eq!(leading_number("7"), 7);
        assert_eq!(leading_number("12abc"), 12);
        assert_eq!(leading_number("abc"), 0);
        assert_eq!(leading_number(""), 0);
    }
}
