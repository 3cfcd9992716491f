//! VDI (VirtualBox's format, as QEMU's `vdi` driver reads and writes it):
//! a 512-byte header, a block map of one little-endian u32 per 1 MiB
//! block, and a data area where blocks lie by their index. Dynamic images
//! append blocks in write order; static images map block N to index N.
//!
//! qimg opens what QEMU opens (version 1.1, 1 MiB blocks, no parent), and
//! in addition refuses a block map outside the file and regions that
//! overlap, so memory stays bounded by the file's real size.

mod check;
mod create;
mod driver;
pub mod header;
mod plan;
mod write;

pub use create::{create, VdiCreateOptions};
pub use driver::DRIVER;

use super::{clip_request, BackingSpec, Description, Extent, Format, FormatKind, Status};
use crate::error::{Error, Result};
use crate::io::Storage;
use header::{Header, BLOCK_SIZE, DISCARDED, HEADER_LEN};
use std::sync::{Mutex, MutexGuard};

/// An open VDI image.
#[derive(Debug)]
pub struct Vdi {
    storage: Box<dyn Storage>,
    size: u64,
    is_static: bool,
    meta: Mutex<Meta>,
    writable: bool,
}

/// The mutable state: the header and the block map.
#[derive(Debug)]
struct Meta {
    header: Header,
    /// One entry per block: an index into the data area, or
    /// unallocated/discarded.
    bmap: Vec<u32>,
    /// The index the next new block gets: the header's count, or past the
    /// highest index in use if that is higher (a map written before its
    /// count), so no two blocks ever share an index.
    next_index: u32,
    /// The range of map entries (first, last) changed in memory and not
    /// yet written: new blocks the file does not point at yet.
    unpublished: Option<(u32, u32)>,
    /// Blocks given an index by a two-phase write and not yet in the map.
    planned: std::collections::BTreeMap<usize, plan::Planned>,
    /// The file's length at open: new blocks below it may hold bytes of
    /// an unreferenced tail, which must not show through.
    stale_end: u64,
}

/// Whether a block map entry names a block in the data area.
pub(crate) fn is_allocated(entry: u32) -> bool {
    entry < DISCARDED
}

impl Drop for Vdi {
    fn drop(&mut self) {
        // Best effort, as for the other formats: blocks written since the
        // last flush get their map entries.
        if self.writable {
            let _ = self.flush_all();
        }
    }
}

impl Vdi {
    /// Opens a VDI read-only.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, false)
    }

    /// Opens a VDI for writing (`storage` must be writable).
    pub fn open_writable(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, true)
    }

    fn open_with(storage: Box<dyn Storage>, writable: bool) -> Result<Self> {
        let file_len = storage.len()?;
        let mut raw = vec![0u8; HEADER_LEN];
        storage.read_at(&mut raw, 0)?;
        let header = Header::parse(&raw, file_len)?;
        // Header::parse has checked that the map lies inside the file.
        let mut raw = vec![0u8; header.blocks_in_image as usize * 4];
        storage.read_at(&mut raw, header.offset_bmap)?;
        let bmap: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let past_highest = bmap
            .iter()
            .filter(|&&e| is_allocated(e))
            .map(|&e| e + 1)
            .max()
            .unwrap_or(0);
        Ok(Vdi {
            storage,
            size: header.disk_size,
            is_static: header.is_static(),
            meta: Mutex::new(Meta {
                next_index: header.blocks_allocated.max(past_highest),
                header,
                bmap,
                unpublished: None,
                planned: Default::default(),
                stale_end: file_len,
            }),
            writable,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Meta> {
        // Every change under the lock leaves the map consistent.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The header's allocated count and the block map, as the file holds
    /// them after the last flush (or in memory, for changes not flushed).
    pub fn block_map(&self) -> (u32, Vec<u32>) {
        let meta = self.lock();
        (meta.header.blocks_allocated, meta.bmap.clone())
    }
}

impl Format for Vdi {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn granularity(&self) -> u64 {
        BLOCK_SIZE
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.size)?;
        let end = offset + len;
        let meta = self.lock();
        let host_of = |g: u64| -> Option<u64> {
            let e = meta.bmap[(g / BLOCK_SIZE) as usize];
            is_allocated(e).then(|| meta.header.block_host(e) + g % BLOCK_SIZE)
        };
        let first = host_of(offset);
        let mut run_end = ((offset / BLOCK_SIZE + 1) * BLOCK_SIZE).min(end);
        while run_end < end {
            let same = match (first, host_of(run_end)) {
                (None, None) => true,
                (Some(a), Some(b)) => b == a + (run_end - offset),
                _ => false,
            };
            if !same {
                break;
            }
            run_end = (run_end + BLOCK_SIZE).min(end);
        }
        Ok(Extent {
            len: run_end - offset,
            status: match first {
                Some(h) => Status::Data {
                    host: Some(crate::format::HostOffset(h)),
                    compressed: false,
                },
                None => Status::Zero { host: None },
            },
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        super::read_layer(self, offset, buf, |_, _| {
            Err(Error::corrupt("VDI images have no compressed clusters"))
        })
    }

    fn backing(&self) -> Option<BackingSpec> {
        None
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn data_may_be_host_holes(&self) -> Result<bool> {
        // As QEMU: a static image's data area is a sparse file whose holes
        // read as zeros; a dynamic image's blocks are written whole.
        Ok(self.is_static)
    }

    fn check(&self, log: &mut dyn FnMut(String)) -> Result<Option<super::check::CheckReport>> {
        let meta = self.lock();
        Ok(Some(check::check_map(
            &meta.bmap,
            meta.header.blocks_allocated,
            log,
        )))
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_guest(offset, buf)
    }

    fn plan_write(&self, guest: super::GuestOffset, len: u64) -> Result<Vec<super::Placement>> {
        self.plan_guest(guest, len)
    }

    fn publish(&self, placed: &[super::Placement]) -> Result<()> {
        self.publish_guest(placed)
    }

    fn abandon(&self, placed: &[super::Placement]) -> Result<()> {
        self.abandon_guest(placed)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        self.zero_guest(offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn resize(&self, _new_size: u64, _prealloc: super::Preallocation) -> Result<()> {
        Err(Error::unsupported(
            "Image format driver does not support resize",
        ))
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: Some(BLOCK_SIZE),
            dirty: false,
            need_check: false,
            encrypted: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: None,
        }
    }
}
