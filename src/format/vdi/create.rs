//! Creating VDIs as qemu-img does: the header, the block map right after
//! it (padded to a sector), the data area after that; a static image maps
//! every block to its own index and its data area is a sparse file.

use super::header::{
    build, NewHeader, BLOCK_SIZE, HEADER_LEN, MAX_DISK_SIZE, SECTOR, TYPE_DYNAMIC, TYPE_STATIC,
    UNALLOCATED,
};
use crate::error::{Error, Result};
use crate::io::Storage;
use std::io::Read;

/// Everything that shapes a new VDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdiCreateOptions {
    /// The requested size in bytes (rounded up to a sector).
    pub size: u64,
    /// A static image (every block allocated up front) instead of a
    /// dynamic one.
    pub is_static: bool,
}

/// Map entries written per storage write, so a map of any size is built
/// in bounded memory.
const MAP_CHUNK: u64 = 1 << 18;

impl VdiCreateOptions {
    /// The disk size the image records (the size rounded up to a sector).
    pub fn disk_size(&self) -> u64 {
        self.size.div_ceil(SECTOR).saturating_mul(SECTOR)
    }

    /// Checks the size against what VDI can hold.
    pub fn validate(&self) -> Result<()> {
        let size = self.disk_size();
        if self.size > MAX_DISK_SIZE {
            return Err(Error::argument(format!(
                "Unsupported VDI image size (size is {size:#x}, max supported is {MAX_DISK_SIZE:#x})"
            )));
        }
        Ok(())
    }
}

/// A random version 4 UUID in the byte order VDI stores it (the first
/// three fields little-endian), from the system's random source (the clock
/// and process id when it cannot be read).
fn random_guid() -> [u8; 16] {
    let mut u = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut u));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        u.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    // Version and variant in RFC 4122 order, then the GUID byte swap.
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u[..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}

/// Writes a new VDI into the empty `storage`; the header that makes it a
/// VDI is written last.
pub fn create(storage: &dyn Storage, o: &VdiCreateOptions) -> Result<()> {
    o.validate()?;
    let disk_size = o.disk_size();
    let blocks = disk_size.div_ceil(BLOCK_SIZE);
    let map_bytes = (blocks * 4).div_ceil(SECTOR) * SECTOR;
    let offset_data = HEADER_LEN as u64 + map_bytes;
    if o.is_static {
        storage.set_len(offset_data + blocks * BLOCK_SIZE)?;
    }
    let mut first = 0u64;
    while first < blocks {
        let n = MAP_CHUNK.min(blocks - first);
        let bytes: Vec<u8> = (first..first + n)
            .flat_map(|i| {
                let e = if o.is_static { i as u32 } else { UNALLOCATED };
                e.to_le_bytes()
            })
            .collect();
        storage.write_at(&bytes, HEADER_LEN as u64 + first * 4)?;
        first += n;
    }
    // The sector padding after the last entry holds zeros, as qemu-img's.
    let pad = map_bytes - blocks * 4;
    if pad > 0 {
        storage.write_at(&vec![0u8; pad as usize], HEADER_LEN as u64 + blocks * 4)?;
    }
    let header = build(&NewHeader {
        image_type: if o.is_static {
            TYPE_STATIC
        } else {
            TYPE_DYNAMIC
        },
        disk_size,
        blocks: blocks as u32,
        blocks_allocated: if o.is_static { blocks as u32 } else { 0 },
        offset_data,
        uuid_image: random_guid(),
        uuid_last_snap: random_guid(),
    });
    storage.flush()?;
    storage.write_at(&header, 0)?;
    storage.flush()
}
