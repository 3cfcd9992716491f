//! Creating VHDX images with qemu-img's layout: identifier, headers and
//! region tables in the first MiB, the log at 1 MiB, then the BAT, then
//! a MiB of metadata, and the payload from 5 MiB after the BAT's end.

use super::bat::{self, Geometry};
use super::header::{
    encode_identifier, encode_regions, random_guid, Header, Region, Regions, BAT_REGION,
    HEADER_OFFSETS, METADATA_REGION, MIB, REGION_OFFSETS, ZERO_GUID,
};
use super::metadata::{Metadata, MAX_BLOCK, MAX_SIZE};
use crate::error::{Error, Result};
use crate::io::Storage;

/// Everything that shapes a new VHDX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdxCreateOptions {
    /// The virtual size in bytes.
    pub size: u64,
    /// A fixed disk (every block in the file) instead of a dynamic one.
    pub fixed: bool,
    /// The block size as given (0: chosen from the size).
    pub block_size: u64,
    /// The log size as given.
    pub log_size: u64,
    /// Mark blocks ZERO instead of NOT_PRESENT (dynamic) or FULLY_PRESENT
    /// (fixed), as qemu-img does by default.
    pub block_state_zero: bool,
}

/// The layout a set of options gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The block size used.
    pub block_size: u32,
    /// The log length.
    pub log_length: u64,
    /// The BAT's and metadata's places.
    pub regions: Regions,
    /// Where payload starts.
    pub data_start: u64,
    /// The BAT's shape.
    pub geometry: Geometry,
}

impl VhdxCreateOptions {
    /// Checks the options and works out the layout, as qemu-img does
    /// (sizes round up to a MiB; a block size over 256 MiB is clamped).
    pub fn layout(&self) -> Result<Layout> {
        if self.size > MAX_SIZE {
            return Err(Error::argument("Image size too large; max of 64TB"));
        }
        let block_size = match self.block_size {
            0 => match self.size {
                s if s > 32 << 40 => 64 << 20,
                s if s > 100 << 30 => 32 << 20,
                s if s > 1 << 30 => 16 << 20,
                _ => 8 << 20,
            },
            b => b.div_ceil(MIB).saturating_mul(MIB).min(MAX_BLOCK as u64),
        };
        if !block_size.is_power_of_two() {
            return Err(Error::argument("Block size must be a power of two"));
        }
        if self.log_size == 0 {
            return Err(Error::argument("Log size must be a multiple of 1 MB"));
        }
        let log_length = self.log_size.div_ceil(MIB).saturating_mul(MIB);
        if log_length > u32::MAX as u64 - MIB + 1 {
            return Err(Error::argument("Log size must be smaller than 4 GB"));
        }
        let geometry = Geometry::new(self.disk_size(), block_size as u32, 512);
        let bat_offset = MIB + log_length;
        let bat_len = geometry.table_bytes().max(1).div_ceil(MIB) * MIB;
        if bat_len > u32::MAX as u64 {
            return Err(Error::argument("the VHDX BAT would be too large"));
        }
        let regions = Regions {
            bat: Region {
                guid: BAT_REGION,
                offset: bat_offset,
                length: bat_len as u32,
                required: false,
            },
            metadata: Region {
                guid: METADATA_REGION,
                offset: bat_offset + bat_len,
                length: MIB as u32,
                required: false,
            },
        };
        Ok(Layout {
            block_size: block_size as u32,
            log_length,
            regions,
            data_start: bat_offset + bat_len + 5 * MIB,
            geometry,
        })
    }
}

impl VhdxCreateOptions {
    /// The virtual size recorded: the requested one rounded up to a
    /// sector, as qemu-img rounds it.
    pub fn disk_size(&self) -> u64 {
        self.size.div_ceil(512) * 512
    }
}

/// Writes a new VHDX into the empty `storage`, the identifier last.
pub fn create(storage: &dyn Storage, o: &VhdxCreateOptions) -> Result<()> {
    let l = o.layout()?;
    let size = o.disk_size();
    let file_len = if o.fixed {
        l.data_start + size
    } else {
        l.data_start
    };
    storage.set_len(file_len)?;
    let seq = u64::from_le_bytes(random_guid()[..8].try_into().expect("8 bytes")) >> 1;
    let mut h = Header {
        sequence: seq,
        file_write_guid: random_guid(),
        data_write_guid: random_guid(),
        log_guid: ZERO_GUID,
        log_version: 0,
        version: 1,
        log_length: l.log_length as u32,
        log_offset: MIB,
    };
    for &at in &HEADER_OFFSETS {
        storage.write_at(&h.encode(), at)?;
        h.sequence += 1;
    }
    let regions = encode_regions(&l.regions);
    for &at in &REGION_OFFSETS {
        storage.write_at(&regions, at)?;
    }
    let meta = Metadata {
        block_size: l.block_size,
        leave_blocks_allocated: o.fixed,
        virtual_size: size,
        page83: random_guid(),
        logical_sector: 512,
        physical_sector: 512,
    };
    storage.write_at(&meta.encode(), l.regions.metadata.offset)?;
    let g = l.geometry;
    if o.block_state_zero || o.fixed {
        let mut table = vec![0u8; g.table_bytes() as usize];
        for block in 0..g.payload_blocks {
            let e = if o.block_state_zero {
                bat::entry(bat::ZERO, 0)
            } else {
                bat::entry(bat::FULLY_PRESENT, l.data_start + block * g.block_size)
            };
            let i = g.index(block);
            table[i * 8..i * 8 + 8].copy_from_slice(&e.to_le_bytes());
        }
        storage.write_at(&table, l.regions.bat.offset)?;
    }
    storage.flush()?;
    storage.write_at(
        &encode_identifier(concat!("qimg v", env!("CARGO_PKG_VERSION"))),
        0,
    )?;
    storage.flush()
}
