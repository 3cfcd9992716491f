//! Creating VHDs as qemu-img does: the same size rounding, footer fields
//! and layout (a dynamic disk: footer copy, dynamic header at 512, BAT at
//! 0x600 padded with unallocated entries to a sector, footer; a fixed
//! disk: the data, sparse, then the footer).

use super::dynamic::{DynamicHeader, DEFAULT_BLOCK_SIZE, HEADER_LEN};
use super::footer::{size_for, Footer, NewFooter, DISK_DYNAMIC, DISK_FIXED, FOOTER_LEN, VHD_EPOCH};
use crate::error::{Error, Result};
use crate::format::Preallocation;
use crate::io::{write_zeros, Storage};
use std::io::Read;

/// Everything that shapes a new VHD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcCreateOptions {
    /// The requested size in bytes.
    pub size: u64,
    /// A fixed disk instead of a dynamic one.
    pub fixed: bool,
    /// Keep the requested size (rounded up to a sector) instead of the
    /// CHS-rounded one; the creator becomes `qem2`.
    pub force_size: bool,
    /// Preallocation of a fixed disk's data (`falloc`, `full`).
    pub preallocation: Preallocation,
}

impl VpcCreateOptions {
    /// The footer of the new image (timestamp now, a random unique id).
    pub fn footer(&self) -> Result<Footer> {
        let (size, geometry) = size_for(self.size, self.force_size)
            .ok_or_else(|| Error::argument("The image size is too large for file format 'vpc'"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Footer::build(&NewFooter {
            data_offset: if self.fixed { u64::MAX } else { 512 },
            timestamp: now.saturating_sub(VHD_EPOCH) as u32,
            creator_app: if self.force_size { b"qem2" } else { b"qemu" },
            size,
            geometry,
            disk_type: if self.fixed { DISK_FIXED } else { DISK_DYNAMIC },
            uuid: random_uuid(),
        }))
    }
}

/// A random RFC 4122 version 4 UUID (from the system's random source; the
/// clock and process id when it cannot be read).
fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut u));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        u.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_be_bytes());
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Writes a new VHD into the empty `storage`; the footer that makes it a
/// VHD is written last.
pub fn create(storage: &dyn Storage, o: &VpcCreateOptions) -> Result<()> {
    let footer = o.footer()?;
    let size = footer.current_size();
    if o.fixed {
        storage.set_len(size + FOOTER_LEN as u64)?;
        match o.preallocation {
            Preallocation::Falloc if size > 0 => storage.allocate(0, size)?,
            Preallocation::Full => write_zeros(storage, 0, size)?,
            _ => {}
        }
        storage.write_at(&footer.raw, size)?;
        return storage.flush();
    }
    let header = DynamicHeader {
        table_offset: (FOOTER_LEN + HEADER_LEN) as u64,
        max_table_entries: size.div_ceil(DEFAULT_BLOCK_SIZE as u64) as u32,
        block_size: DEFAULT_BLOCK_SIZE,
    };
    let table = header.table_bytes();
    let mut head = vec![0xffu8; (header.table_offset + table) as usize];
    head[..FOOTER_LEN].copy_from_slice(&footer.raw);
    head[FOOTER_LEN..FOOTER_LEN + HEADER_LEN].copy_from_slice(&header.encode());
    storage.write_at(&head, 0)?;
    storage.write_at(&footer.raw, header.table_offset + table)?;
    storage.flush()
}
