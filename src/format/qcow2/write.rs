//! Writing qcow2 images: data writes (in place, or copy-on-write into a new
//! cluster), zero writes, discards, flush and backing-file changes. Every
//! metadata change goes through `Meta` and reaches the disk in the order
//! `Meta::flush` guarantees.

use super::entry::{self, CompressedDescriptor, SubclusterType, COPIED, OFFSET_MASK, ZERO};
use super::header::{Header, AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_CORRUPT};
use super::meta::{read_l2_table, Meta};
use super::{L2Entry, Qcow2};
use crate::error::{Error, Result};
use crate::format::placement::{push_host, push_serial};
use crate::format::{check_write_range, BackingSpec, Placement};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

/// All subcluster bits of one half of an extended L2 bitmap.
pub(super) const ALL_SUBCLUSTERS: u64 = 0xffff_ffff;

/// The subcluster bits `first..=last`.
fn subcluster_mask(first: u64, last: u64) -> u64 {
    ((1u64 << (last + 1)) - 1) & !((1u64 << first) - 1)
}

impl Qcow2 {
    /// The metadata, alone: for every change, and for reads that must load.
    pub(super) fn lock_meta(&self) -> RwLockWriteGuard<'_, Meta> {
        // Metadata is only changed under this lock and every change leaves
        // it consistent, so a panic elsewhere cannot leave it half-updated.
        self.meta.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The metadata, shared with other readers: for lookups in what is cached.
    pub(super) fn read_meta(&self) -> RwLockReadGuard<'_, Meta> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    fn require_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the image is open read-only"));
        }
        Ok(())
    }

    /// Before the first change: refuse corrupt images, clear the autoclear
    /// bits qimg does not maintain, and mark bitmaps in use (qimg does not
    /// track writes in them), all in one header write.
    pub(super) fn prepare(&self, meta: &mut Meta) -> Result<()> {
        self.prepare_with(meta, true)
    }

    /// As [`Qcow2::prepare`]; `mark_bitmaps` false for changes that leave
    /// the guest data as it is (taking or deleting a snapshot), which keep
    /// the bitmaps valid.
    pub(super) fn prepare_with(&self, meta: &mut Meta, mark_bitmaps: bool) -> Result<()> {
        if meta.prepared {
            return Ok(());
        }
        self.require_writable()?;
        if meta.header.incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(Error::corrupt(
                "image is marked corrupt and is not written; repair it with 'qimg check -r all'",
            ));
        }
        let known = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;
        let mut changed = false;
        if meta.header.autoclear_features & !known != 0 {
            meta.header.autoclear_features &= known;
            changed = true;
        }
        if let (Some(ext), false, true) =
            (meta.header.bitmaps, self.bitmaps.is_empty(), mark_bitmaps)
        {
            for bm in &self.bitmaps {
                let flags = ext.directory_offset + bm.entry_offset + 12;
                let mut raw = [0u8; 4];
                self.storage.read_at(&mut raw, flags)?;
                let value = u32::from_be_bytes(raw) | 1;
                self.storage.write_at(&value.to_be_bytes(), flags)?;
            }
            self.storage.flush()?;
        }
        if changed {
            self.write_header(&meta.header)?;
        }
        // Bitmaps left unmarked must still be marked before a data write.
        meta.prepared = mark_bitmaps || self.bitmaps.is_empty();
        Ok(())
    }

    pub(super) fn write_header(&self, header: &Header) -> Result<()> {
        let bytes = header.encode()?;
        self.storage.write_at(&bytes, 0)?;
        self.storage.flush()
    }

    /// The offset of a writable (COPIED) L2 table for `l1_index`: a new
    /// table if there is none, a copy if the current one is shared.
    fn writable_l2(&self, meta: &mut Meta, l1_index: usize) -> Result<u64> {
        let cs = self.geo.cluster_size();
        let Some(&entry) = meta.l1.get(l1_index) else {
            return Err(Error::new(
                crate::error::ErrorKind::OutOfBounds,
                format!("L1 index {l1_index} is past the L1 table"),
            ));
        };
        let current = entry & OFFSET_MASK;
        if current != 0 && entry & COPIED != 0 {
            self.l2_entries(meta, l1_index as u64, current)?;
            return Ok(current);
        }
        let entries = if current != 0 {
            self.l2_entries(meta, l1_index as u64, current)?.to_vec()
        } else {
            vec![L2Entry::default(); self.geo.l2_entries() as usize]
        };
        let new = meta
            .refcounts(self.storage.as_ref())?
            .alloc(self.storage.as_ref(), 1)?;
        meta.l2.insert(new, entries, true);
        meta.l1[l1_index] = new | COPIED;
        meta.l1_dirty.insert(l1_index);
        if current != 0 {
            meta.frees.push((current, cs));
        }
        Ok(new)
    }

    /// The writable L2 table of the guest cluster at `cluster`, the entry's
    /// index in it, and the entry.
    pub(super) fn writable_entry(
        &self,
        meta: &mut Meta,
        cluster: u64,
    ) -> Result<(u64, usize, L2Entry)> {
        let cs = self.geo.cluster_size();
        let span = cs * self.geo.l2_entries();
        let table = self.writable_l2(meta, (cluster / span) as usize)?;
        let index = ((cluster % span) / cs) as usize;
        let (storage, geo) = (self.storage.as_ref(), &self.geo);
        let e = meta.l2.get(table, || read_l2_table(storage, geo, table))?[index];
        Ok((table, index, e))
    }

    pub(super) fn set_entry(
        &self,
        meta: &mut Meta,
        table: u64,
        index: usize,
        e: L2Entry,
    ) -> Result<()> {
        let (storage, geo) = (self.storage.as_ref(), &self.geo);
        meta.l2
            .get_mut(table, || read_l2_table(storage, geo, table))?[index] = e;
        Ok(())
    }

    /// Schedules the release of what entry `e` held, once nothing on disk points at it.
    pub(super) fn release(&self, meta: &mut Meta, e: L2Entry) {
        if self.geo.external_data {
            return;
        }
        if e.is_compressed() {
            let d = CompressedDescriptor::decode(e.word, self.geo.cluster_bits);
            meta.frees.push((d.offset, d.read_len()));
        } else if let Some(h) = e.host_cluster(&self.geo) {
            meta.frees.push((h, self.geo.cluster_size()));
        }
    }

    /// Fills `buf` with what subclusters `first..=last` of the guest cluster
    /// at `cluster` (entry `e`) read now: the bytes of those subclusters only.
    fn current_content(
        &self,
        e: L2Entry,
        cluster: u64,
        first: u64,
        last: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let scs = self.geo.subcluster_size();
        if e.is_compressed() {
            let whole = self.decompressed_cluster(e.word)?;
            let start = (first * scs) as usize;
            buf.copy_from_slice(&whole[start..start + buf.len()]);
            return Ok(());
        }
        for s in first..=last {
            let part = &mut buf[((s - first) * scs) as usize..((s - first + 1) * scs) as usize];
            match e.subcluster_type(&self.geo, s as u32) {
                SubclusterType::Normal(h) => self.data_storage_ref().read_at(part, h + s * scs)?,
                SubclusterType::ZeroAlloc(_) | SubclusterType::ZeroPlain => part.fill(0),
                SubclusterType::UnallocatedAlloc(_) | SubclusterType::UnallocatedPlain => {
                    self.backing.read(cluster + s * scs, part)?
                }
                SubclusterType::Compressed(_) => unreachable!("handled above"),
                SubclusterType::Invalid => {
                    return Err(Error::corrupt(format!(
                        "invalid subcluster bitmap (guest offset {cluster:#x}, L2 entry {:#018x})",
                        e.word
                    )))
                }
            }
        }
        Ok(())
    }

    /// Writes `data` at byte `at` of the guest cluster at `cluster`.
    pub(super) fn write_in_cluster(
        &self,
        meta: &mut Meta,
        cluster: u64,
        at: u64,
        data: &[u8],
    ) -> Result<()> {
        let geo = self.geo;
        let (cs, scs) = (geo.cluster_size(), geo.subcluster_size());
        let (table, index, e) = self.writable_entry(meta, cluster)?;
        let end = at + data.len() as u64;
        let (first, last) = (at / scs, (end - 1) / scs);
        if self.header.version < 3 && e.word & ZERO != 0 {
            return Err(Error::corrupt(format!(
                "zero cluster entry in a version 2 image (guest offset {cluster:#x})"
            )));
        }
        let host = e.host_cluster(&geo);
        let in_place =
            !e.is_compressed() && host.is_some() && (geo.external_data || e.word & COPIED != 0);
        let touched = if geo.extended_l2 {
            subcluster_mask(first, last)
        } else {
            0
        };
        let mut next = e;
        if let (true, Some(h)) = (in_place, host) {
            // Subclusters only partly written must first hold what they read now.
            let (lo, hi) = (first * scs, (last + 1) * scs);
            let edges_need_fill = (at != lo || end != hi)
                && [first, last].iter().any(|&s| {
                    !matches!(e.subcluster_type(&geo, s as u32), SubclusterType::Normal(_))
                });
            if edges_need_fill {
                let mut buf = vec![0u8; (hi - lo) as usize];
                self.current_content(e, cluster, first, last, &mut buf)?;
                buf[(at - lo) as usize..(end - lo) as usize].copy_from_slice(data);
                self.data_storage_ref().write_at(&buf, h + lo)?;
            } else {
                self.data_storage_ref().write_data_at(data, h + at)?;
            }
            next.word &= !ZERO;
        } else {
            let new = if geo.external_data {
                cluster
            } else {
                meta.refcounts(self.storage.as_ref())?
                    .alloc(self.storage.as_ref(), 1)?
            };
            let mut buf = vec![0u8; cs as usize];
            if at != 0 || end != cs {
                self.current_content(e, cluster, 0, geo.subclusters() as u64 - 1, &mut buf)?;
            }
            buf[at as usize..end as usize].copy_from_slice(data);
            if let Err(e) = self.data_storage_ref().write_at(&buf, new) {
                if !geo.external_data {
                    meta.refcounts(self.storage.as_ref())?.give_back(
                        self.storage.as_ref(),
                        new,
                        1,
                    )?;
                }
                return Err(e);
            }
            next.word = new | COPIED;
            if geo.extended_l2 {
                // A compressed cluster was copied whole; otherwise the
                // subclusters keep their state (allocated ones were copied).
                next.bitmap = if e.is_compressed() {
                    ALL_SUBCLUSTERS
                } else if host.is_some() {
                    e.bitmap
                } else {
                    e.bitmap & !ALL_SUBCLUSTERS
                };
            }
            if host.is_some() || e.is_compressed() {
                self.release(meta, e);
            }
        }
        if geo.extended_l2 {
            next.bitmap = (next.bitmap | touched) & !(touched << 32);
        }
        self.set_entry(meta, table, index, next)
    }

    /// Makes the whole guest cluster at `cluster` read as zeros without
    /// writing data, where the format allows it.
    fn zero_cluster(&self, meta: &mut Meta, cluster: u64, unmap: bool) -> Result<()> {
        let geo = self.geo;
        let cs = geo.cluster_size();
        let raw_data = meta.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0;
        if geo.external_data && raw_data {
            // The data file must stay a valid raw image: write real zeros.
            return self.write_in_cluster(meta, cluster, 0, &vec![0u8; cs as usize]);
        }
        if self.header.version < 3 {
            if self.backing.exists() {
                return self.write_in_cluster(meta, cluster, 0, &vec![0u8; cs as usize]);
            }
            return self.replace_entry(meta, cluster, L2Entry::default());
        }
        let (table, index, e) = self.writable_entry(meta, cluster)?;
        let keep_host = geo.external_data
            || (!unmap
                && !e.is_compressed()
                && e.host_cluster(&geo).is_some()
                && e.word & COPIED != 0);
        let word = match (keep_host, geo.external_data) {
            (_, true) => cluster | COPIED,
            (true, false) => e.word & (OFFSET_MASK | COPIED),
            (false, false) => 0,
        };
        let next = if geo.extended_l2 {
            L2Entry {
                word,
                bitmap: ALL_SUBCLUSTERS << 32,
            }
        } else {
            L2Entry {
                word: word | ZERO,
                bitmap: 0,
            }
        };
        if !keep_host {
            self.release(meta, e);
        }
        self.set_entry(meta, table, index, next)
    }

    /// Replaces the entry of a whole cluster, releasing what it held.
    pub(super) fn replace_entry(&self, meta: &mut Meta, cluster: u64, next: L2Entry) -> Result<()> {
        let (table, index, e) = self.writable_entry(meta, cluster)?;
        self.release(meta, e);
        self.set_entry(meta, table, index, next)
    }

    /// Marks whole subclusters `first..=last` of a cluster as reading zeros.
    fn zero_subclusters(&self, meta: &mut Meta, cluster: u64, first: u64, last: u64) -> Result<()> {
        let (table, index, e) = self.writable_entry(meta, cluster)?;
        if e.is_compressed() {
            let scs = self.geo.subcluster_size();
            let zeros = vec![0u8; ((last - first + 1) * scs) as usize];
            return self.write_in_cluster(meta, cluster, first * scs, &zeros);
        }
        let mask = subcluster_mask(first, last);
        let next = L2Entry {
            word: e.word,
            bitmap: (e.bitmap & !mask) | (mask << 32),
        };
        self.set_entry(meta, table, index, next)
    }

    /// Flushes once enough dirty metadata has piled up, to bound memory.
    pub(super) fn flush_if_full(&self, meta: &mut Meta) -> Result<()> {
        if meta.l2.wants_flush() || meta.refcounts.as_ref().is_some_and(|r| r.wants_flush()) {
            meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)?;
        }
        Ok(())
    }

    /// How many of the `max` whole guest clusters from `cluster` need new
    /// host clusters (no host yet, not compressed), with their L2 tables
    /// made writable first (so the new clusters can be contiguous).
    fn fresh_run(&self, meta: &mut Meta, cluster: u64, max: u64) -> Result<u64> {
        if self.geo.external_data {
            return Ok(0);
        }
        let cs = self.geo.cluster_size();
        let mut n = 0;
        while n < max {
            let (_, _, e) = self.writable_entry(meta, cluster + n * cs)?;
            if e.is_compressed() || e.host_cluster(&self.geo).is_some() {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Writes whole guest clusters that have no host cluster yet: one
    /// allocation of contiguous clusters and one write, straight from `data`.
    fn write_fresh(&self, meta: &mut Meta, cluster: u64, data: &[u8]) -> Result<()> {
        let cs = self.geo.cluster_size();
        let n = data.len() as u64 / cs;
        let host = meta
            .refcounts(self.storage.as_ref())?
            .alloc(self.storage.as_ref(), n)?;
        if let Err(e) = self.storage.write_data_at(data, host) {
            // Nothing points at the clusters yet: give them back (no leak).
            meta.refcounts(self.storage.as_ref())?
                .give_back(self.storage.as_ref(), host, n)?;
            return Err(e);
        }
        let bitmap = if self.geo.extended_l2 {
            ALL_SUBCLUSTERS
        } else {
            0
        };
        for i in 0..n {
            let (table, index, _) = self.writable_entry(meta, cluster + i * cs)?;
            let word = (host + i * cs) | COPIED;
            self.set_entry(meta, table, index, L2Entry { word, bitmap })?;
        }
        Ok(())
    }

    pub(super) fn write_guest(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let cs = self.geo.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let at = pos % cs;
            let whole = (buf.len() - done) as u64 / cs;
            if at == 0 && whole > 0 {
                let n = self.fresh_run(&mut meta, pos, whole)?;
                if n > 0 {
                    let len = (n * cs) as usize;
                    self.write_fresh(&mut meta, pos, &buf[done..done + len])?;
                    self.flush_if_full(&mut meta)?;
                    done += len;
                    continue;
                }
            }
            let n = ((cs - at) as usize).min(buf.len() - done);
            self.write_in_cluster(&mut meta, pos - at, at, &buf[done..done + n])?;
            self.flush_if_full(&mut meta)?;
            done += n;
        }
        Ok(())
    }

    /// Phase one of a two-phase write (`Format::plan_write`). Whole guest
    /// clusters are placed on the host: those without a host cluster get
    /// new ones (contiguous, in guest order; the refcounts are raised now,
    /// so a crash before the publish leaks them at most), and those whose
    /// cluster this image owns (COPIED, not compressed) are rewritten in
    /// place. Everything else (partial clusters, which must be completed
    /// from what they read now, compressed or shared clusters, zero
    /// clusters of a raw external data file) is serial. A host piece never
    /// shares a guest cluster with another piece, so parallel writers can
    /// never complete one cluster from another's half-written bytes.
    pub(super) fn plan_guest(&self, offset: u64, len: u64) -> Result<Vec<Placement>> {
        self.check_range(offset, len)?;
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let mut out = Vec::new();
        match self.place(&mut meta, offset, len, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                let _ = self.abandon_locked(&mut meta, &out);
                Err(e)
            }
        }
    }

    /// The placement loop of [`Qcow2::plan_guest`], appending to `out`.
    fn place(
        &self,
        meta: &mut Meta,
        offset: u64,
        len: u64,
        out: &mut Vec<Placement>,
    ) -> Result<()> {
        let geo = self.geo;
        let cs = geo.cluster_size();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let at = pos % cs;
            let whole = (end - pos) / cs;
            if at == 0 && whole > 0 {
                let n = self.fresh_run(meta, pos, whole)?;
                if n > 0 {
                    let host = meta
                        .refcounts(self.storage.as_ref())?
                        .alloc(self.storage.as_ref(), n)?;
                    push_host(out, pos, host, n * cs);
                    pos += n * cs;
                    continue;
                }
            }
            let n = (cs - at).min(end - pos);
            let (_, _, e) = self.writable_entry(meta, pos - at)?;
            let host = e.host_cluster(&geo);
            let owned = !e.is_compressed()
                && host.is_some()
                && (geo.external_data || e.word & COPIED != 0)
                && (self.header.version >= 3 || e.word & ZERO == 0);
            let external_fresh = geo.external_data && host.is_none() && !e.is_compressed();
            match host {
                Some(h) if n == cs && owned => push_host(out, pos, h, cs),
                None if n == cs && external_fresh => push_host(out, pos, pos, cs),
                _ => push_serial(out, pos, n),
            }
            pos += n;
        }
        self.flush_if_full(meta)
    }

    /// Phase three of a two-phase write (`Format::publish`): points the L2
    /// entries of the host pieces at the data just written. A cluster that
    /// had no host cluster gets the planned one; one rewritten in place
    /// loses its zero flag (its subclusters become allocated).
    pub(super) fn publish_guest(&self, placed: &[Placement]) -> Result<()> {
        let geo = self.geo;
        let cs = geo.cluster_size();
        let mut meta = self.lock_meta();
        for piece in placed {
            let Placement::Host { guest, host, len } = *piece else {
                continue;
            };
            for i in 0..len / cs {
                let (cluster, h) = (guest.0 + i * cs, host.0 + i * cs);
                let (table, index, e) = self.writable_entry(&mut meta, cluster)?;
                let mut next = e;
                match e.host_cluster(&geo) {
                    Some(current) if current == h => next.word &= !ZERO,
                    Some(current) => {
                        return Err(Error::corrupt(format!(
                            "guest cluster {cluster:#x} moved to host cluster {current:#x} \
                             while data was being written to {h:#x}"
                        )))
                    }
                    None => next.word = h | COPIED,
                }
                if geo.extended_l2 {
                    next.bitmap = ALL_SUBCLUSTERS;
                }
                self.set_entry(&mut meta, table, index, next)?;
            }
        }
        self.flush_if_full(&mut meta)
    }

    /// Gives back the new clusters of host pieces that were planned and
    /// will not be published (`Format::abandon`): those whose guest
    /// cluster still has no host cluster. They stay behind the allocation
    /// frontier, so they are not handed out again this session.
    pub(super) fn abandon_guest(&self, placed: &[Placement]) -> Result<()> {
        if self.geo.external_data {
            return Ok(());
        }
        let mut meta = self.lock_meta();
        self.abandon_locked(&mut meta, placed)
    }

    fn abandon_locked(&self, meta: &mut Meta, placed: &[Placement]) -> Result<()> {
        let cs = self.geo.cluster_size();
        for piece in placed {
            let Placement::Host { guest, host, len } = *piece else {
                continue;
            };
            for i in 0..len / cs {
                let (_, _, e) = self.writable_entry(meta, guest.0 + i * cs)?;
                if e.host_cluster(&self.geo) != Some(host.0 + i * cs) {
                    let storage = self.storage.as_ref();
                    meta.refcounts(storage)?
                        .give_back(storage, host.0 + i * cs, 1)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn write_zeroes_guest(&self, offset: u64, len: u64, unmap: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let (cs, scs) = (self.geo.cluster_size(), self.geo.subcluster_size());
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let cluster = pos - pos % cs;
            let (a, b) = (pos - cluster, (end - cluster).min(cs));
            // Whole subclusters (whole clusters without extended L2) become
            // zero entries; partial ones get zero bytes written.
            let (first, last_excl) = (a.div_ceil(scs), b / scs);
            if a == 0 && b == cs {
                self.zero_cluster(&mut meta, cluster, unmap)?;
            } else if self.geo.extended_l2 && first < last_excl && self.header.version >= 3 {
                if a < first * scs {
                    self.write_in_cluster(
                        &mut meta,
                        cluster,
                        a,
                        &vec![0u8; (first * scs - a) as usize],
                    )?;
                }
                self.zero_subclusters(&mut meta, cluster, first, last_excl - 1)?;
                if last_excl * scs < b {
                    self.write_in_cluster(
                        &mut meta,
                        cluster,
                        last_excl * scs,
                        &vec![0u8; (b - last_excl * scs) as usize],
                    )?;
                }
            } else {
                self.write_in_cluster(&mut meta, cluster, a, &vec![0u8; (b - a) as usize])?;
            }
            self.flush_if_full(&mut meta)?;
            pos = cluster + b;
        }
        Ok(())
    }

    pub(super) fn discard_guest(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)?;
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let cs = self.geo.cluster_size();
        let raw_data = meta.header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0;
        if raw_data || (self.header.version < 3 && self.backing.exists()) {
            return Ok(()); // Discarding is advisory; here it cannot keep the content.
        }
        // With a backing file, a discarded cluster must not show the backing data.
        let next = match (self.backing.exists(), self.geo.extended_l2) {
            (false, _) => L2Entry::default(),
            (true, false) => L2Entry {
                word: ZERO,
                bitmap: 0,
            },
            (true, true) => L2Entry {
                word: 0,
                bitmap: ALL_SUBCLUSTERS << 32,
            },
        };
        let (first, end) = (offset.div_ceil(cs) * cs, (offset + len) / cs * cs);
        let mut cluster = first;
        while cluster < end {
            self.replace_entry(&mut meta, cluster, next)?;
            self.flush_if_full(&mut meta)?;
            cluster += cs;
        }
        Ok(())
    }

    /// Stores a compressed cluster: its bytes are appended after the
    /// previous compressed cluster (sharing host clusters, each of which
    /// counts one reference per compressed cluster in it), and the L2 entry
    /// gets the compressed descriptor.
    pub(super) fn write_compressed_cluster(&self, offset: u64, data: &[u8]) -> Result<()> {
        let cs = self.geo.cluster_size();
        self.check_range(offset, 1)?;
        if offset % cs != 0 || data.is_empty() || data.len() as u64 >= cs {
            return Err(Error::argument(
                "a compressed write must be one aligned cluster that shrank",
            ));
        }
        if self.geo.external_data {
            return Err(Error::unsupported(
                "images with an external data file cannot hold compressed clusters",
            ));
        }
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        let (table, index, old) = self.writable_entry(&mut meta, offset)?;
        let len = data.len() as u64;
        let storage = self.storage.as_ref();
        let start = match meta.compressed_cursor {
            // Continue in the current host cluster, or in the clusters just
            // after it when they are the next ones the allocator hands out.
            Some(cursor) if cursor % cs != 0 => {
                let refs = meta.refcounts(storage)?;
                let first = cursor / cs;
                let last = (cursor + len - 1) / cs;
                if last == first || refs.frontier() == first + 1 {
                    let n = refs.get(storage, first)?;
                    refs.set(storage, first, n + 1)?;
                    if last > first {
                        refs.alloc(storage, last - first)?;
                    }
                    cursor
                } else {
                    refs.alloc(storage, len.div_ceil(cs))?
                }
            }
            _ => meta.refcounts(storage)?.alloc(storage, len.div_ceil(cs))?,
        };
        storage.write_at(data, start)?;
        meta.compressed_cursor = Some(start + len);
        let word = entry::CompressedDescriptor::for_data(start, len).encode(self.geo.cluster_bits);
        self.release(&mut meta, old);
        self.set_entry(&mut meta, table, index, L2Entry { word, bitmap: 0 })?;
        self.flush_if_full(&mut meta)
    }

    pub(super) fn flush_all(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut meta = self.lock_meta();
        meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)
    }

    /// Points the image at a new backing file (or none), after everything
    /// it depends on is durable, with one header write.
    pub(super) fn set_backing_file(&self, backing: Option<BackingSpec>) -> Result<()> {
        let mut meta = self.lock_meta();
        self.prepare(&mut meta)?;
        meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)?;
        let mut header = meta.header.clone();
        header.backing_file = backing.as_ref().map(|b| b.name.clone());
        header.backing_format = backing.as_ref().and_then(|b| b.format.clone());
        // Adopted only once written: a name the header cannot hold must not
        // reach a later header write.
        self.write_header(&header)?;
        meta.header = header;
        self.backing.replace(backing);
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        self.require_writable()?;
        check_write_range(offset, len, self.header.size)
    }
}
