//! Writing QED images. New clusters are appended to the file (data first,
//! then a new L2 table), partial clusters are completed from the backing
//! chain or zeros, and the need-check flag is set before the first
//! allocating write and cleared once a flush has made the tables durable.
//! Flush order: data, barrier, L2 tables, barrier, L1 entries, barrier.

use super::header::{
    QedEntry, QedHeader, FEATURE_BACKING_FILE, FEATURE_BACKING_FORMAT_NO_PROBE, FEATURE_NEED_CHECK,
    HEADER_LEN,
};
use super::Qed;
use crate::error::{Error, Result};
use crate::format::placement::{push_host, push_serial};
use crate::format::table_cache::TableCache;
use crate::format::{check_write_range, BackingSpec, Placement};
use std::collections::BTreeSet;

/// What writes change.
#[derive(Debug)]
pub(super) struct QedMeta {
    /// The header as it is on disk.
    pub header: QedHeader,
    pub l1: Vec<u64>,
    pub l1_dirty: BTreeSet<usize>,
    /// Cached L2 tables.
    pub tables: TableCache<u64>,
    /// The file length, including clusters appended since opening.
    pub file_len: u64,
}

impl Qed {
    pub(super) fn require_writable(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the image is open read-only"));
        }
        check_write_range(offset, len, self.header.image_size)
    }

    fn write_header(&self, meta: &QedMeta) -> Result<()> {
        self.storage.write_at(&meta.header.encode(), 0)?;
        self.storage.flush()
    }

    /// Sets need-check (durably) before tables may change, and clears the
    /// autoclear bits (none are defined).
    fn before_allocating(&self, meta: &mut QedMeta) -> Result<()> {
        if meta.header.features & FEATURE_NEED_CHECK == 0 || meta.header.autoclear_features != 0 {
            meta.header.features |= FEATURE_NEED_CHECK;
            meta.header.autoclear_features = 0;
            self.write_header(meta)?;
        }
        Ok(())
    }

    /// Appends `n` clusters at the end of the file and returns the first offset.
    fn append(&self, meta: &mut QedMeta, n: u64) -> u64 {
        let cs = self.header.cluster_size as u64;
        let at = meta.file_len.div_ceil(cs) * cs;
        meta.file_len = at + n * cs;
        at
    }

    /// Writes `data` at byte `at` of the guest cluster at `cluster`; with
    /// `zero_whole`, a whole cluster becomes a zero entry instead.
    fn write_in_cluster(
        &self,
        meta: &mut QedMeta,
        cluster: u64,
        at: u64,
        data: &[u8],
        zero_whole: bool,
    ) -> Result<()> {
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let span = cs * h.table_entries();
        let l1_index = (cluster / span) as usize;
        let index = ((cluster % span) / cs) as usize;
        let mut table_offset = meta.l1[l1_index];
        let entry = if table_offset == 0 {
            0
        } else {
            self.l2_table(meta, l1_index as u64, table_offset)?[index]
        };
        let file_len = meta.file_len;
        let decoded = QedEntry::decode(entry);
        if let QedEntry::Data(host) = decoded {
            if !self.valid_cluster_offset(host, file_len) {
                return Err(Error::corrupt(format!(
                    "QED L2 entry {host:#x} for guest offset {cluster:#x} is not a valid cluster offset"
                )));
            }
        }
        let new_entry = match decoded {
            // QED never frees a cluster: zeros go into it, the entry stays.
            QedEntry::Data(host) if zero_whole => {
                crate::io::write_zeros(self.storage.as_ref(), host, cs)?;
                return Ok(());
            }
            QedEntry::Data(host) => {
                self.storage.write_at(data, host + at)?;
                return Ok(());
            }
            QedEntry::Zero if zero_whole => return Ok(()),
            _ if zero_whole => 1,
            old => {
                self.before_allocating(meta)?;
                let mut buf = vec![0u8; cs as usize];
                if old == QedEntry::Unallocated && (at != 0 || data.len() as u64 != cs) {
                    self.backing.read(cluster, &mut buf)?;
                }
                buf[at as usize..at as usize + data.len()].copy_from_slice(data);
                let host = self.append(meta, 1);
                self.storage.write_at(&buf, host)?;
                host
            }
        };
        if table_offset == 0 {
            table_offset = self.table_for(meta, l1_index)?;
        }
        self.l2_table_mut(meta, l1_index as u64, table_offset)?[index] = new_entry;
        if meta.tables.wants_flush() {
            self.flush_meta(meta)?;
        }
        Ok(())
    }

    pub(super) fn write_guest(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.require_writable(offset, buf.len() as u64)?;
        let mut meta = self.lock_meta();
        let cs = self.header.cluster_size as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let at = pos % cs;
            let n = ((cs - at) as usize).min(buf.len() - done);
            self.write_in_cluster(&mut meta, pos - at, at, &buf[done..done + n], false)?;
            done += n;
        }
        Ok(())
    }

    /// The L2 table of L1 entry `l1_index`, created (appended, empty,
    /// after need-check is set) when there is none.
    fn table_for(&self, meta: &mut QedMeta, l1_index: usize) -> Result<u64> {
        let table_offset = meta.l1[l1_index];
        if table_offset != 0 {
            return Ok(table_offset);
        }
        self.before_allocating(meta)?;
        let h = &self.header;
        let table_offset = self.append(meta, h.table_size as u64);
        meta.tables
            .insert(table_offset, vec![0; h.table_entries() as usize], true);
        meta.l1[l1_index] = table_offset;
        meta.l1_dirty.insert(l1_index);
        Ok(table_offset)
    }

    /// Phase one of a two-phase write (`Format::plan_write`): whole guest
    /// clusters are placed on the host, in their data cluster when they
    /// have one, else in a new cluster appended now (need-check is set
    /// first; a crash before the publish leaves the cluster unreferenced).
    /// Partial clusters, which must be completed from the backing chain,
    /// are serial.
    pub(super) fn plan_guest(&self, offset: u64, len: u64) -> Result<Vec<Placement>> {
        self.require_writable(offset, len)?;
        let mut meta = self.lock_meta();
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let span = cs * h.table_entries();
        let (mut out, end) = (Vec::new(), offset + len);
        let mut pos = offset;
        while pos < end {
            let at = pos % cs;
            let n = (cs - at).min(end - pos);
            if n != cs {
                push_serial(&mut out, pos, n);
                pos += n;
                continue;
            }
            let (l1_index, index) = ((pos / span) as usize, ((pos % span) / cs) as usize);
            let table_offset = self.table_for(&mut meta, l1_index)?;
            let entry = self.l2_table(&mut meta, l1_index as u64, table_offset)?[index];
            let host = match QedEntry::decode(entry) {
                QedEntry::Data(host) if self.valid_cluster_offset(host, meta.file_len) => host,
                QedEntry::Data(host) => {
                    return Err(Error::corrupt(format!(
                        "QED L2 entry {host:#x} for guest offset {pos:#x} is not a valid cluster offset"
                    )))
                }
                QedEntry::Zero | QedEntry::Unallocated => {
                    self.before_allocating(&mut meta)?;
                    self.append(&mut meta, 1)
                }
            };
            push_host(&mut out, pos, host, cs);
            pos += cs;
        }
        Ok(out)
    }

    /// Phase three of a two-phase write (`Format::publish`): points the L2
    /// entries of the host pieces at their clusters, now written.
    pub(super) fn publish_guest(&self, placed: &[Placement]) -> Result<()> {
        let mut meta = self.lock_meta();
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let span = cs * h.table_entries();
        for piece in placed {
            let Placement::Host { guest, host, len } = *piece else {
                continue;
            };
            for i in 0..len / cs {
                let (cluster, host) = (guest.0 + i * cs, host.0 + i * cs);
                let (l1_index, index) =
                    ((cluster / span) as usize, ((cluster % span) / cs) as usize);
                let table_offset = self.table_for(&mut meta, l1_index)?;
                self.l2_table_mut(&mut meta, l1_index as u64, table_offset)?[index] = host;
            }
        }
        if meta.tables.wants_flush() {
            self.flush_meta(&mut meta)?;
        }
        Ok(())
    }

    pub(super) fn write_zeroes_guest(&self, offset: u64, len: u64) -> Result<()> {
        self.require_writable(offset, len)?;
        let mut meta = self.lock_meta();
        let cs = self.header.cluster_size as u64;
        let mut pos = offset;
        while pos < offset + len {
            let cluster = pos - pos % cs;
            let (a, b) = (pos - cluster, (offset + len - cluster).min(cs));
            let whole = a == 0 && b == cs;
            let zeros = if whole {
                Vec::new()
            } else {
                vec![0u8; (b - a) as usize]
            };
            self.write_in_cluster(&mut meta, cluster, a, &zeros, whole)?;
            pos = cluster + b;
        }
        Ok(())
    }

    /// Data, barrier, L2 tables, barrier, L1 entries, barrier; then clears
    /// need-check.
    pub(super) fn flush_meta(&self, meta: &mut QedMeta) -> Result<()> {
        let storage = self.storage.as_ref();
        storage.flush()?;
        let write_table = |offset: u64, table: &[u64]| {
            let raw: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            storage.write_at(&raw, offset)
        };
        if meta.tables.write_dirty(write_table)? {
            storage.flush()?;
        }
        if !meta.l1_dirty.is_empty() {
            for &i in &meta.l1_dirty {
                storage.write_at(
                    &meta.l1[i].to_le_bytes(),
                    meta.header.l1_table_offset + i as u64 * 8,
                )?;
            }
            meta.l1_dirty.clear();
            storage.flush()?;
        }
        if meta.header.features & FEATURE_NEED_CHECK != 0 {
            meta.header.features &= !FEATURE_NEED_CHECK;
            self.write_header(meta)?;
        }
        Ok(())
    }

    pub(super) fn flush_all(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut meta = self.lock_meta();
        self.flush_meta(&mut meta)
    }

    /// Records a new backing file (or none) after a flush, rewriting the
    /// header cluster (the name follows the header, as QEMU writes it).
    pub(super) fn set_backing_file(&self, backing: Option<BackingSpec>) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the image is open read-only"));
        }
        let mut meta = self.lock_meta();
        self.flush_meta(&mut meta)?;
        let mut h = meta.header.clone();
        h.features &= !(FEATURE_BACKING_FILE | FEATURE_BACKING_FORMAT_NO_PROBE);
        h.backing_filename_offset = 0;
        h.backing_filename_size = 0;
        let mut head = vec![0u8; h.header_bytes() as usize];
        if let Some(b) = &backing {
            if HEADER_LEN + b.name.len() > head.len() || b.name.len() > 1023 {
                return Err(Error::argument(
                    "backing file name is too long for the QED header",
                ));
            }
            h.features |= FEATURE_BACKING_FILE;
            if b.format.as_deref() == Some("raw") {
                h.features |= FEATURE_BACKING_FORMAT_NO_PROBE;
            }
            h.backing_filename_offset = HEADER_LEN as u32;
            h.backing_filename_size = b.name.len() as u32;
            head[HEADER_LEN..HEADER_LEN + b.name.len()].copy_from_slice(b.name.as_bytes());
        }
        head[..HEADER_LEN].copy_from_slice(&h.encode());
        self.storage.write_at(&head, 0)?;
        self.storage.flush()?;
        // Adopted only once written, so a refused name reaches no later write.
        meta.header = h;
        self.backing.replace(backing);
        Ok(())
    }
}
