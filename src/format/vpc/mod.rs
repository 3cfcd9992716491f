//! VHD (QEMU's `vpc`): fixed disks (the data, then a footer) and dynamic
//! disks (a footer copy, a dynamic header, a block allocation table, then
//! blocks of a sector bitmap and data, and the footer last).
//!
//! As QEMU, qimg never reads the sector bitmaps: an allocated block reads
//! whole from the file, and new blocks get all-ones bitmaps.

mod create;
mod driver;
pub mod dynamic;
pub mod footer;
mod write;

pub use create::{create, VpcCreateOptions};
pub use driver::DRIVER;

use super::{
    clip_request, BackingSpec, Description, Extent, Format, FormatKind, GuestOffset, Placement,
    Status,
};
use crate::error::{Error, Result};
use crate::io::Storage;
use dynamic::{DynamicHeader, UNALLOCATED};
use footer::{Footer, DISK_DIFFERENCING, DISK_DYNAMIC, DISK_FIXED, FOOTER_LEN, MAX_SECTORS};
use std::sync::{Mutex, MutexGuard};

/// An open VHD image.
#[derive(Debug)]
pub struct Vpc {
    storage: Box<dyn Storage>,
    footer: Footer,
    size: u64,
    layout: Layout,
    writable: bool,
}

/// Where guest data lives.
#[derive(Debug)]
enum Layout {
    /// At the same offset in the file.
    Fixed,
    /// In blocks named by the BAT.
    Dynamic {
        header: DynamicHeader,
        meta: Mutex<DynamicMeta>,
    },
}

/// The mutable state of a dynamic disk.
#[derive(Debug)]
struct DynamicMeta {
    /// The BAT: each entry the sector of a block's bitmap, or unallocated.
    bat: Vec<u32>,
    /// Where the next block goes: the end of the last block (or of the
    /// BAT), where the footer lies.
    next_free: u64,
    /// The range of BAT indices (first, last) changed in memory and not
    /// yet written: new blocks the file does not point at yet.
    unpublished: Option<(u64, u64)>,
    /// Blocks [`Format::plan_write`] allocated whose data is being written:
    /// BAT index to bitmap sector. Not in the BAT (so read as before)
    /// until published.
    planned: std::collections::HashMap<u64, u32>,
}

impl Drop for Vpc {
    fn drop(&mut self) {
        // Best effort, as for the other formats: blocks written since the
        // last flush get their BAT entries, in order.
        if self.writable {
            let _ = self.flush_all();
        }
    }
}

impl Vpc {
    /// Opens a VHD read-only.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, false)
    }

    /// Opens a VHD for writing (`storage` must be writable).
    pub fn open_writable(storage: Box<dyn Storage>) -> Result<Self> {
        Self::open_with(storage, true)
    }

    fn open_with(storage: Box<dyn Storage>, writable: bool) -> Result<Self> {
        let file_len = storage.len()?;
        if file_len < FOOTER_LEN as u64 {
            return Err(Error::invalid("invalid VPC image"));
        }
        let mut head = vec![0u8; FOOTER_LEN];
        storage.read_at(&mut head, 0)?;
        if !Footer::has_cookie(&head) {
            // A fixed disk has its only footer at the end.
            storage.read_at(&mut head, file_len - FOOTER_LEN as u64)?;
            if !Footer::has_cookie(&head) || head[60..64] != DISK_FIXED.to_be_bytes() {
                return Err(Error::invalid("invalid VPC image"));
            }
        }
        let footer = Footer::parse(&head)?;
        let size = footer.virtual_size();
        if size.div_ceil(512) > MAX_SECTORS {
            return Err(Error::invalid(format!(
                "the VHD's size {size} is too large (at most {} bytes)",
                MAX_SECTORS * 512
            )));
        }
        let layout = match footer.disk_type() {
            DISK_FIXED => {
                if size > file_len - FOOTER_LEN as u64 {
                    return Err(Error::corrupt(format!(
                        "the fixed VHD holds {} data bytes, less than its size {size}: the image has been truncated",
                        file_len - FOOTER_LEN as u64
                    )));
                }
                Layout::Fixed
            }
            DISK_DYNAMIC => Self::open_dynamic(storage.as_ref(), &footer, size, file_len)?,
            DISK_DIFFERENCING => {
                return Err(Error::unsupported(
                    "differencing VHD images are not supported",
                ))
            }
            t => return Err(Error::unsupported(format!("unknown VHD disk type {t}"))),
        };
        Ok(Vpc {
            storage,
            footer,
            size,
            layout,
            writable,
        })
    }

    fn open_dynamic(
        storage: &dyn Storage,
        footer: &Footer,
        size: u64,
        file_len: u64,
    ) -> Result<Layout> {
        let at = footer.data_offset();
        if at
            .checked_add(dynamic::HEADER_LEN as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::corrupt(format!(
                "the dynamic header at {at:#x} lies past the end of the file ({file_len} bytes)"
            ))
            .at_offset(at));
        }
        let mut raw = vec![0u8; dynamic::HEADER_LEN];
        storage.read_at(&mut raw, at)?;
        let header = DynamicHeader::parse(&raw).map_err(|e| e.at_offset(at))?;
        let bs = header.block_size as u64;
        if (header.max_table_entries as u64) * bs < size {
            return Err(Error::corrupt(format!(
                "Page table too small: {} blocks of {bs} bytes do not cover the size {size}",
                header.max_table_entries
            )));
        }
        let table = header.table_bytes();
        let t = header.table_offset;
        if t % 512 != 0 || t.checked_add(table).is_none_or(|end| end > file_len) {
            return Err(Error::corrupt(format!(
                "the block allocation table at {t:#x} ({table} bytes) does not lie inside the file ({file_len} bytes)"
            ))
            .at_offset(t));
        }
        let mut raw = vec![0u8; header.max_table_entries as usize * 4];
        storage.read_at(&mut raw, t)?;
        let bat: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let block_bytes = header.bitmap_bytes() + bs;
        let mut next_free = t + table;
        for &e in bat.iter().filter(|&&e| e != UNALLOCATED) {
            next_free = next_free.max(e as u64 * 512 + block_bytes);
        }
        if next_free > file_len {
            return Err(Error::corrupt(
                "block-vpc: free_data_block_offset points after the end of file. The image has been truncated.",
            ));
        }
        Ok(Layout::Dynamic {
            header,
            meta: Mutex::new(DynamicMeta {
                bat,
                next_free,
                unpublished: None,
                planned: Default::default(),
            }),
        })
    }

    /// The footer as opened.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    fn lock(meta: &Mutex<DynamicMeta>) -> MutexGuard<'_, DynamicMeta> {
        // Every change under the lock leaves the table consistent.
        meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Format for Vpc {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn granularity(&self) -> u64 {
        match &self.layout {
            Layout::Fixed => 512,
            Layout::Dynamic { header, .. } => header.block_size as u64,
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.size)?;
        let (header, meta) = match &self.layout {
            Layout::Fixed => {
                return Ok(Extent {
                    len,
                    status: Status::Data {
                        host: Some(crate::format::HostOffset(offset)),
                        compressed: false,
                    },
                })
            }
            Layout::Dynamic { header, meta } => (header, meta),
        };
        let bs = header.block_size as u64;
        let end = offset + len;
        let meta = Self::lock(meta);
        let host_of = |g: u64| -> Option<u64> {
            let e = meta.bat[(g / bs) as usize];
            (e != UNALLOCATED).then(|| e as u64 * 512 + header.bitmap_bytes() + g % bs)
        };
        let first = host_of(offset);
        let mut run_end = ((offset / bs + 1) * bs).min(end);
        while run_end < end {
            let next = host_of(run_end);
            let same = match (first, next) {
                (None, None) => true,
                (Some(a), Some(b)) => b == a + (run_end - offset),
                _ => false,
            };
            if !same {
                break;
            }
            run_end = (run_end + bs).min(end);
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
            Err(Error::corrupt("VHD images have no compressed clusters"))
        })
    }

    fn backing(&self) -> Option<BackingSpec> {
        None
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn data_may_be_host_holes(&self) -> Result<bool> {
        // A fixed disk is a raw file with a footer: its holes read as zeros.
        Ok(matches!(self.layout, Layout::Fixed))
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_guest(offset, buf)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        self.zero_guest(offset, len)
    }

    fn plan_write(&self, guest: GuestOffset, len: u64) -> Result<Vec<Placement>> {
        self.plan_guest(guest.0, len)
    }

    fn publish(&self, placed: &[Placement]) -> Result<()> {
        self.publish_planned(placed)
    }

    fn abandon(&self, placed: &[Placement]) -> Result<()> {
        self.abandon_planned(placed)
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
            cluster_size: match &self.layout {
                Layout::Fixed => None,
                Layout::Dynamic { header, .. } => Some(header.block_size as u64),
            },
            dirty: false,
            need_check: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: None,
            encrypted: false,
        }
    }
}
