//! The metadata region: a table (signature `metadata`, up to 2047
//! entries of 32 bytes) naming items by GUID, and the items themselves
//! (block size and flags, virtual size, page 83 id, sector sizes).

use super::header::{guid, guid_at, le16, le32, le64, Guid};
use crate::error::{Error, Result};

/// The file parameters item (block size, flags).
pub const FILE_PARAMETERS: Guid = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
/// The virtual disk size item.
pub const VIRTUAL_DISK_SIZE: Guid = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
/// The page 83 (SCSI unique id) item.
pub const PAGE83: Guid = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
/// The logical sector size item.
pub const LOGICAL_SECTOR: Guid = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
/// The physical sector size item.
pub const PHYSICAL_SECTOR: Guid = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
/// The parent locator item (differencing images).
pub const PARENT_LOCATOR: Guid = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);

/// Bytes of the table at the start of the region.
pub const TABLE_LEN: usize = 64 << 10;
/// The largest virtual size (64 TiB).
pub const MAX_SIZE: u64 = 64 << 40;
/// The smallest and the largest block size.
pub const MIN_BLOCK: u32 = 1 << 20;
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: u32 = 256 << 20;

/// What the metadata says about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Bytes per payload block (a power of two, 1 MiB to 256 MiB).
    pub block_size: u32,
    /// LeaveBlockAllocated: blocks must stay allocated (fixed disks).
    pub leave_blocks_allocated: bool,
    /// The guest-visible size.
    pub virtual_size: u64,
    /// The SCSI page 83 id.
    pub page83: Guid,
    /// Bytes per logical sector (512 or 4096).
    pub logical_sector: u32,
    /// Bytes per physical sector (512 or 4096).
    pub physical_sector: u32,
}

fn item<'a>(region: &'a [u8], offset: u32, len: u32, want: usize, name: &str) -> Result<&'a [u8]> {
    let (o, l) = (offset as usize, len as usize);
    if l < want || o < TABLE_LEN || o.checked_add(l).is_none_or(|end| end > region.len()) {
        return Err(Error::invalid(format!(
            "the VHDX {name} metadata item ({len} bytes at {offset:#x}) does not lie inside the metadata region"
        )));
    }
    Ok(&region[o..o + want])
}

impl Metadata {
    /// Parses the whole metadata region `region`.
    pub fn parse(region: &[u8]) -> Result<Metadata> {
        if region.len() < TABLE_LEN || &region[..8] != b"metadata" {
            return Err(Error::invalid(
                "the VHDX metadata region has no 'metadata' signature",
            ));
        }
        let count = le16(region, 10) as usize;
        if count > 2047 {
            return Err(Error::invalid(format!(
                "the VHDX metadata table claims {count} entries (at most 2047)"
            )));
        }
        let mut found: [Option<&[u8]>; 5] = [None; 5];
        let names = [
            (FILE_PARAMETERS, "file parameters", 8),
            (VIRTUAL_DISK_SIZE, "virtual disk size", 8),
            (PAGE83, "page 83", 16),
            (LOGICAL_SECTOR, "logical sector size", 4),
            (PHYSICAL_SECTOR, "physical sector size", 4),
        ];
        for i in 0..count {
            let e = &region[32 + i * 32..64 + i * 32];
            let id = guid_at(e, 0);
            let (offset, len, flags) = (le32(e, 16), le32(e, 20), le32(e, 24));
            let is_user = flags & 1 != 0;
            let required = flags & 4 != 0;
            match names.iter().position(|(g, _, _)| *g == id && !is_user) {
                Some(k) => {
                    let (_, name, want) = names[k];
                    if found[k].is_some() {
                        return Err(Error::invalid(format!(
                            "the VHDX {name} metadata item is named twice"
                        )));
                    }
                    found[k] = Some(item(region, offset, len, want, name)?);
                }
                None if id == PARENT_LOCATOR && !is_user => {
                    return Err(Error::unsupported("differencing VHDX is not supported"))
                }
                None if required => {
                    return Err(Error::unsupported(format!(
                        "the VHDX metadata item {} is required and unknown",
                        show_guid(&id)
                    )))
                }
                None => {}
            }
        }
        let get = |k: usize| {
            found[k].ok_or_else(|| {
                Error::invalid(format!("the VHDX metadata has no {} item", names[k].1))
            })
        };
        let fp = get(0)?;
        let flags = le32(fp, 4);
        if flags & 2 != 0 {
            return Err(Error::unsupported("differencing VHDX is not supported"));
        }
        let m = Metadata {
            block_size: le32(fp, 0),
            leave_blocks_allocated: flags & 1 != 0,
            virtual_size: le64(get(1)?, 0),
            page83: guid_at(get(2)?, 0),
            logical_sector: le32(get(3)?, 0),
            physical_sector: le32(get(4)?, 0),
        };
        if !m.block_size.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&m.block_size) {
            return Err(Error::invalid(format!(
                "the VHDX block size {} is not a power of two between 1 MiB and 256 MiB",
                m.block_size
            )));
        }
        if m.logical_sector != 512 && m.logical_sector != 4096 {
            return Err(Error::invalid(format!(
                "the VHDX logical sector size {} is neither 512 nor 4096",
                m.logical_sector
            )));
        }
        if m.logical_sector != 512 {
            return Err(Error::unsupported(
                "VHDX images with 4096-byte logical sectors are not supported",
            ));
        }
        if m.physical_sector != 512 && m.physical_sector != 4096 {
            return Err(Error::invalid(format!(
                "the VHDX physical sector size {} is neither 512 nor 4096",
                m.physical_sector
            )));
        }
        if m.virtual_size > MAX_SIZE || m.virtual_size % m.logical_sector as u64 != 0 {
            return Err(Error::invalid(format!(
                "the VHDX virtual size {} is not a multiple of the sector size up to 64 TiB",
                m.virtual_size
            )));
        }
        Ok(m)
    }

    /// The table and items as QEMU lays them out (the items at 64 KiB).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; TABLE_LEN + 64];
        b[..8].copy_from_slice(b"metadata");
        b[10..12].copy_from_slice(&5u16.to_le_bytes());
        let items: [(Guid, u32, u32, u32); 5] = [
            (FILE_PARAMETERS, 0, 8, 4),
            (VIRTUAL_DISK_SIZE, 8, 8, 6),
            (PAGE83, 16, 16, 6),
            (LOGICAL_SECTOR, 32, 4, 6),
            (PHYSICAL_SECTOR, 36, 4, 6),
        ];
        for (i, (id, off, len, flags)) in items.iter().enumerate() {
            let at = 32 + i * 32;
            b[at..at + 16].copy_from_slice(id);
            b[at + 16..at + 20].copy_from_slice(&(TABLE_LEN as u32 + off).to_le_bytes());
            b[at + 20..at + 24].copy_from_slice(&len.to_le_bytes());
            b[at + 24..at + 28].copy_from_slice(&flags.to_le_bytes());
        }
        let d = TABLE_LEN;
        b[d..d + 4].copy_from_slice(&self.block_size.to_le_bytes());
        b[d + 4..d + 8].copy_from_slice(&(self.leave_blocks_allocated as u32).to_le_bytes());
        b[d + 8..d + 16].copy_from_slice(&self.virtual_size.to_le_bytes());
        b[d + 16..d + 32].copy_from_slice(&self.page83);
        b[d + 32..d + 36].copy_from_slice(&self.logical_sector.to_le_bytes());
        b[d + 36..d + 40].copy_from_slice(&self.physical_sector.to_le_bytes());
        b
    }
}

/// A GUID in its usual text form.
pub fn show_guid(g: &Guid) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        le32(g, 0),
        le16(g, 4),
        le16(g, 6),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            block_size: 8 << 20,
            leave_blocks_allocated: false,
            virtual_size: 5 << 20,
            page83: [7; 16],
            logical_sector: 512,
            physical_sector: 512,
        }
    }

    #[test]
    fn round_trip_and_guid_text() {
        let mut region = sample().encode();
        region.resize(1 << 20, 0);
        assert_eq!(Metadata::parse(&region).expect("parse"), sample());
        assert_eq!(
            show_guid(&FILE_PARAMETERS),
            "CAA16737-FA36-4D43-B3B6-33F0AA44E76B"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for (at, v, what) in [
            (TABLE_LEN, 3 << 20, "block size"),
            (TABLE_LEN + 4, 2, "differencing"),
            (TABLE_LEN + 32, 4096, "4096-byte"),
        ] {
            let mut region = sample().encode();
            region.resize(1 << 20, 0);
            region[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
            let e = Metadata::parse(&region).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }
}
