//! QED: a little-endian header, two levels of tables, no refcounts.

mod check;
mod create;
mod driver;
mod header;
mod resize;
mod write;

pub use create::{create, QedCreateOptions};
pub use driver::DRIVER;
pub use header::{
    QedEntry, QedHeader, FEATURE_BACKING_FILE, FEATURE_BACKING_FORMAT_NO_PROBE, FEATURE_NEED_CHECK,
    HEADER_LEN, MAGIC,
};

use super::check::CheckReport;
use super::table_cache::{CacheBudget, TableCache};
use super::{
    clip_request, read_layer, Backing, BackingSpec, Description, Extent, Format, FormatKind,
    GuestRead, Status,
};
use crate::error::{Error, Result};
use crate::io::Storage;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use write::QedMeta;

/// Memory the L2 cache may use.
const L2_CACHE_BYTES: u64 = 16 << 20;

/// An open QED image.
#[derive(Debug)]
pub struct Qed {
    storage: Box<dyn Storage>,
    /// The header as opened (size and geometry never change while open).
    header: QedHeader,
    /// Metadata: readers of cached tables share it, changes take it alone.
    meta: RwLock<QedMeta>,
    backing: Backing,
    writable: bool,
}

impl Drop for Qed {
    fn drop(&mut self) {
        // Best effort, as for qcow2: unflushed metadata is written in order.
        let _ = self.flush_all();
    }
}

impl Qed {
    /// Opens a QED image read-only from `storage`.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, false)
    }

    /// Opens a QED image for writing (`storage` must be writable). An image
    /// with need-check set is checked first and its invalid table entries
    /// zeroed, as QEMU does; one with worse damage is refused.
    pub fn open_writable(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, true)
    }

    fn open_with(storage: Box<dyn Storage>, writable: bool) -> Result<Self> {
        let file_len = storage.len()?;
        let mut head = vec![0u8; file_len.min(HEADER_LEN as u64) as usize];
        storage.read_at(&mut head, 0)?;
        let header = QedHeader::parse(&head)?;
        let table = header.table_bytes();
        let l1_off = header.l1_table_offset;
        if l1_off % header.cluster_size as u64 != 0
            || l1_off < header.header_bytes()
            || l1_off.saturating_add(table) > file_len
        {
            return Err(Error::corrupt(format!(
                "QED L1 table at {l1_off:#x} ({table} bytes) does not lie inside the file ({file_len} bytes)"
            ))
            .at_offset(l1_off));
        }
        let l1 = read_table(storage.as_ref(), l1_off, table)?;
        let backing = if header.features & FEATURE_BACKING_FILE != 0 {
            let mut name = vec![0u8; header.backing_filename_size as usize];
            storage.read_at(&mut name, header.backing_filename_offset as u64)?;
            Some(BackingSpec {
                name: String::from_utf8_lossy(&name).into_owned(),
                format: (header.features & FEATURE_BACKING_FORMAT_NO_PROBE != 0)
                    .then(|| "raw".to_string()),
            })
        } else {
            None
        };
        let capacity = (L2_CACHE_BYTES / table).max(2) as usize;
        let meta = QedMeta {
            header: header.clone(),
            l1,
            l1_dirty: Default::default(),
            tables: TableCache::new(capacity).with_budget(CacheBudget::new(L2_CACHE_BYTES), table),
            file_len,
        };
        let mut qed = Qed {
            storage,
            meta: RwLock::new(meta),
            backing: Backing::new(backing),
            // Writable only once checked: a refused image is dropped
            // without its metadata being flushed.
            writable: false,
            header,
        };
        if writable && qed.header.features & FEATURE_NEED_CHECK != 0 {
            qed.check_before_writing()?;
        }
        qed.writable = writable;
        Ok(qed)
    }

    /// The metadata, to change it (or to fill its cache).
    fn lock_meta(&self) -> RwLockWriteGuard<'_, QedMeta> {
        // Every change under the lock leaves the metadata consistent.
        self.meta.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The metadata, to read it beside other readers.
    fn read_meta(&self) -> RwLockReadGuard<'_, QedMeta> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the L2 table of L1 entry `l1_index` (`None` when it has
    /// none), with the file length its entries are checked against. A
    /// cached table is used under the shared lock, so readers do not queue
    /// behind each other; a missing one is read from the disk with no lock
    /// held, then cached, unless a writer changed what the cache knows
    /// meanwhile (then the lookup starts again).
    fn with_l2_table<R>(
        &self,
        l1_index: u64,
        mut f: impl FnMut(Option<&[u64]>, u64) -> Result<R>,
    ) -> Result<R> {
        loop {
            let (l2_offset, file_len, generation) = {
                let meta = self.read_meta();
                let l2_offset = meta.l1.get(l1_index as usize).copied().unwrap_or(0);
                if l2_offset == 0 {
                    return f(None, meta.file_len);
                }
                if let Some(table) = meta.tables.peek(l2_offset) {
                    return f(Some(table), meta.file_len);
                }
                (l2_offset, meta.file_len, meta.tables.generation())
            };
            let table = self.read_l2_table(l1_index, l2_offset, file_len)?;
            let mut meta = self.lock_meta();
            let still = meta.l1.get(l1_index as usize).copied() == Some(l2_offset);
            if still && meta.tables.insert_read(l2_offset, table, generation) {
                let file_len = meta.file_len;
                return f(meta.tables.peek(l2_offset), file_len);
            }
        }
    }

    /// The parsed header.
    pub fn header(&self) -> &QedHeader {
        &self.header
    }

    /// Whether `off` may hold a cluster of a file of `file_len` bytes:
    /// aligned, after the header, before the end.
    fn valid_cluster_offset(&self, off: u64, file_len: u64) -> bool {
        let cs = self.header.cluster_size as u64;
        let end = file_len - file_len % cs;
        off % cs == 0 && off >= self.header.header_bytes() && off < end
    }

    /// Reads the L2 table at `offset` (L1 entry `l1_index`), which must lie
    /// in a file of `file_len` bytes.
    fn read_l2_table(&self, l1_index: u64, offset: u64, file_len: u64) -> Result<Vec<u64>> {
        let table = self.header.table_bytes();
        if !self.valid_cluster_offset(offset, file_len) || offset + table > file_len {
            return Err(Error::corrupt(format!(
                "QED L2 table offset {offset:#x} (L1 index {l1_index}) does not lie inside the file"
            ))
            .at_offset(offset));
        }
        read_table(self.storage.as_ref(), offset, table)
    }

    /// The L2 table at `offset`, named by L1 entry `l1_index`.
    fn l2_table<'m>(&self, meta: &'m mut QedMeta, l1_index: u64, offset: u64) -> Result<&'m [u64]> {
        let file_len = meta.file_len;
        meta.tables
            .get(offset, || self.read_l2_table(l1_index, offset, file_len))
    }

    /// The L2 table at `offset` for changing (it becomes dirty).
    fn l2_table_mut<'m>(
        &self,
        meta: &'m mut QedMeta,
        l1_index: u64,
        offset: u64,
    ) -> Result<&'m mut [u64]> {
        let file_len = meta.file_len;
        meta.tables
            .get_mut(offset, || self.read_l2_table(l1_index, offset, file_len))
    }

    fn status_of(&self, entry: u64, guest: u64, file_len: u64) -> Result<Status> {
        let cs = self.header.cluster_size as u64;
        Ok(match QedEntry::decode(entry) {
            QedEntry::Unallocated => Status::Unallocated { host: None },
            QedEntry::Zero => Status::Zero { host: None },
            QedEntry::Data(off) => {
                if !self.valid_cluster_offset(off, file_len) {
                    return Err(Error::corrupt(format!(
                        "QED L2 entry {off:#x} for guest offset {:#x} is not a valid cluster offset",
                        guest - guest % cs
                    )));
                }
                Status::Data {
                    host: Some(super::HostOffset(off + guest % cs)),
                    compressed: false,
                }
            }
        })
    }
}

fn read_table(storage: &dyn Storage, offset: u64, len: u64) -> Result<Vec<u64>> {
    let mut raw = vec![0u8; len as usize];
    storage.read_at(&mut raw, offset)?;
    Ok(raw
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

impl Format for Qed {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.header.image_size
    }

    fn granularity(&self) -> u64 {
        self.header.cluster_size as u64
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.header.image_size)?;
        let cs = self.header.cluster_size as u64;
        let span = cs * self.header.table_entries();
        let l1_index = offset / span;
        let span_end = (offset + len).min((l1_index + 1) * span);
        self.with_l2_table(l1_index, |table, file_len| {
            let Some(table) = table else {
                return Ok(Extent {
                    len: span_end - offset,
                    status: Status::Unallocated { host: None },
                });
            };
            let index = |g: u64| ((g % span) / cs) as usize;
            let first = self.status_of(table[index(offset)], offset, file_len)?;
            let mut run_end = ((offset / cs + 1) * cs).min(span_end);
            while run_end < span_end {
                let next = self.status_of(table[index(run_end)], run_end, file_len)?;
                if next != first.advanced(run_end - offset) {
                    break;
                }
                run_end = (run_end + cs).min(span_end);
            }
            Ok(Extent {
                len: run_end - offset,
                status: first,
            })
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_layer(self, offset, buf, |_, _| {
            Err(Error::corrupt("QED images have no compressed clusters"))
        })
    }

    fn backing(&self) -> Option<BackingSpec> {
        self.backing.spec()
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn check(&self, _log: &mut dyn FnMut(String)) -> Result<Option<CheckReport>> {
        self.flush_all()?;
        self.check_tables().map(Some)
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_guest(offset, buf)
    }

    fn share_cache_budget(&self, budget: &Arc<CacheBudget>) {
        self.lock_meta().tables.move_to_budget(budget);
    }

    fn plan_write(&self, guest: super::GuestOffset, len: u64) -> Result<Vec<super::Placement>> {
        self.plan_guest(guest.0, len)
    }

    fn publish(&self, placed: &[super::Placement]) -> Result<()> {
        self.publish_guest(placed)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        self.write_zeroes_guest(offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn set_backing(&self, backing: Option<BackingSpec>) -> Result<()> {
        self.set_backing_file(backing)
    }

    fn make_empty(&self) -> Result<()> {
        self.empty_active_layer()
    }

    fn resize(&self, new_size: u64, prealloc: super::Preallocation) -> Result<()> {
        if new_size < self.header.image_size {
            return Err(Error::unsupported(
                "Shrinking images is currently not supported",
            ));
        }
        if prealloc != super::Preallocation::Off {
            return Err(Error::unsupported(format!(
                "Unsupported preallocation mode '{}'",
                prealloc.name()
            )));
        }
        // QED cannot make the grown range read zeros over a longer
        // backing file (nor can qemu-img, with these words).
        if self.backing.reaches_past(self.header.image_size)? {
            return Err(Error::unsupported(
                "Block driver does not support requested flags",
            ));
        }
        self.grow_to(new_size)
    }

    fn attach_backing(&self, backing: Arc<dyn GuestRead>) {
        self.backing.attach(backing);
    }

    fn repair(
        &self,
        mode: super::check::Repair,
        _log: &mut dyn FnMut(String),
    ) -> Result<Option<CheckReport>> {
        self.flush_all()?;
        self.repair_tables(mode).map(Some)
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: Some(self.header.cluster_size as u64),
            dirty: false,
            need_check: self.header.features & FEATURE_NEED_CHECK != 0,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: None,
            encrypted: false,
        }
    }
}
