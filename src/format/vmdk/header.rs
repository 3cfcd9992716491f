//! The sparse extent header (`KDMV`, 512 bytes, little endian) and the
//! stream markers of streamOptimized extents.

use crate::error::{Error, Result};

/// The magic of a hosted sparse extent.
pub const MAGIC: &[u8; 4] = b"KDMV";
/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// `gdOffset` of a stream whose grain directory follows the grains (the
/// footer holds the real header).
pub const GD_AT_END: u64 = u64::MAX;
/// Flag: the newline test bytes are valid.
pub const FLAG_NEWLINE: u32 = 1;
/// Flag: a redundant grain directory is kept.
pub const FLAG_RGD: u32 = 1 << 1;
/// Flag: a grain table entry of 1 means a zeroed grain.
pub const FLAG_ZEROED_GRAIN: u32 = 1 << 2;
/// Flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: grains and metadata are preceded by markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compressAlgorithm` deflate.
pub const COMPRESS_DEFLATE: u16 = 1;
/// Marker type: end of stream.
pub const MARKER_EOS: u32 = 0;
/// Marker type: a grain table follows.
pub const MARKER_GT: u32 = 1;
/// Marker type: the grain directory follows.
pub const MARKER_GD: u32 = 2;
/// Marker type: the footer follows.
pub const MARKER_FOOTER: u32 = 3;
/// The largest grain qimg accepts, in sectors: 16 MiB (QEMU takes up to
/// 1 GiB; real images use 64 KiB), so a grain buffer stays small.
pub const MAX_GRAIN_SECTORS: u64 = 0x8000;
/// The most grain table entries per table (as QEMU).
pub const MAX_GTES: u32 = 512;

/// A parsed sparse extent header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseHeader {
    /// Format version (1, 2 with zeroed grains, 3 stream).
    pub version: u32,
    /// The `FLAG_*` bits.
    pub flags: u32,
    /// Sectors of guest data the extent holds.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_sectors: u64,
    /// Sector of the embedded descriptor (0: none).
    pub desc_offset: u64,
    /// Sectors of the embedded descriptor area.
    pub desc_sectors: u64,
    /// Entries per grain table.
    pub num_gtes: u32,
    /// Sector of the redundant grain directory.
    pub rgd_offset: u64,
    /// Sector of the grain directory, or [`GD_AT_END`].
    pub gd_offset: u64,
    /// Sectors of metadata before the first grain.
    pub overhead: u64,
    /// The unclean-shutdown byte.
    pub unclean: bool,
    /// `compressAlgorithm`.
    pub compress: u16,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl SparseHeader {
    /// Whether `b` starts with the sparse magic.
    pub fn has_magic(b: &[u8]) -> bool {
        b.starts_with(MAGIC)
    }

    /// Parses a 512-byte header; only the magic is checked here.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < SECTOR as usize || !Self::has_magic(b) {
            return Err(Error::invalid("not a VMDK sparse extent (no KDMV magic)"));
        }
        Ok(SparseHeader {
            version: u32_at(b, 4),
            flags: u32_at(b, 8),
            capacity: u64_at(b, 12),
            grain_sectors: u64_at(b, 20),
            desc_offset: u64_at(b, 28),
            desc_sectors: u64_at(b, 36),
            num_gtes: u32_at(b, 44),
            rgd_offset: u64_at(b, 48),
            gd_offset: u64_at(b, 56),
            overhead: u64_at(b, 64),
            unclean: b[72] != 0,
            compress: u16::from_le_bytes([b[77], b[78]]),
        })
    }

    /// The 512 bytes of the header.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_sectors.to_le_bytes());
        b[28..36].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.desc_sectors.to_le_bytes());
        b[44..48].copy_from_slice(&self.num_gtes.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[72] = self.unclean as u8;
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress.to_le_bytes());
        b
    }

    /// Whether grains are stored compressed.
    pub fn compressed(&self) -> bool {
        self.compress == COMPRESS_DEFLATE || self.flags & FLAG_COMPRESSED != 0
    }

    /// Whether compressed grains carry markers.
    pub fn markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }

    /// Guest bytes per grain.
    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Guest bytes one grain table covers.
    pub fn gt_coverage(&self) -> u64 {
        self.num_gtes as u64 * self.grain_bytes()
    }

    /// Grain directory entries.
    pub fn gd_entries(&self) -> u64 {
        (self.capacity * SECTOR).div_ceil(self.gt_coverage())
    }

    /// Checks the fields a reader relies on, with QEMU's words where it
    /// has them; `file_len` bounds what the header may point at.
    pub fn validate(&self, file_len: u64, writable: bool) -> Result<()> {
        if self.version > 3 {
            return Err(Error::unsupported(format!(
                "Unsupported VMDK version {}",
                self.version
            )));
        }
        if self.version == 3 && !self.compressed() && writable {
            return Err(Error::unsupported("VMDK version 3 must be read only"));
        }
        if self.num_gtes == 0 || self.grain_sectors == 0 {
            return Err(Error::invalid("L1 entry size is invalid"));
        }
        if self.num_gtes > MAX_GTES {
            return Err(Error::invalid("L2 table size too big"));
        }
        if self.grain_sectors > MAX_GRAIN_SECTORS {
            return Err(Error::invalid(format!(
                "Invalid granularity {} sectors, image may be corrupt",
                self.grain_sectors
            )));
        }
        if self.capacity > (1u64 << 44) / SECTOR {
            return Err(Error::invalid(format!(
                "the extent's capacity of {} sectors is too large (at most 16 TiB)",
                self.capacity
            )));
        }
        if self.compressed() && self.compress != COMPRESS_DEFLATE {
            return Err(Error::unsupported(format!(
                "VMDK compression algorithm {} is not supported",
                self.compress
            )));
        }
        if self.compressed() && !self.markers() {
            return Err(Error::unsupported(
                "compressed VMDK extents without grain markers are not supported",
            ));
        }
        let overhead = self.overhead.saturating_mul(SECTOR);
        if file_len < overhead {
            return Err(Error::corrupt(format!(
                "File truncated, expecting at least {overhead} bytes"
            )));
        }
        if self.gd_offset != GD_AT_END {
            let gd_bytes = self.gd_entries() * 4;
            let gd = self.gd_offset.saturating_mul(SECTOR);
            if self.gd_offset == 0 || gd.saturating_add(gd_bytes) > file_len {
                return Err(Error::corrupt(format!(
                    "the grain directory at sector {} ({gd_bytes} bytes) lies outside the file ({file_len} bytes)",
                    self.gd_offset
                ))
                .at_offset(gd));
            }
        }
        Ok(())
    }
}

/// A grain marker's fields: the guest sector and the compressed length.
pub fn grain_marker(b: &[u8]) -> (u64, u32) {
    (u64_at(b, 0), u32_at(b, 8))
}

/// A metadata marker sector: `sectors` of metadata of `kind` follow.
pub fn metadata_marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..8].copy_from_slice(&sectors.to_le_bytes());
    b[12..16].copy_from_slice(&kind.to_le_bytes());
    b
}

/// Whether `b` (a sector) is a metadata marker of `kind` (size field 0).
pub fn is_metadata_marker(b: &[u8], kind: u32) -> bool {
    u32_at(b, 8) == 0 && u32_at(b, 12) == kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = SparseHeader {
            version: 1,
            flags: FLAG_NEWLINE | FLAG_RGD,
            capacity: 10240,
            grain_sectors: 128,
            desc_offset: 1,
            desc_sectors: 20,
            num_gtes: 512,
            rgd_offset: 21,
            gd_offset: 26,
            overhead: 128,
            unclean: false,
            compress: 0,
        };
        let b = h.encode();
        assert_eq!(&b[73..77], b"\n \r\n");
        assert_eq!(SparseHeader::parse(&b).unwrap(), h);
        assert_eq!(h.gd_entries(), 1);
        h.validate(65536, true).unwrap();
        assert!(h.validate(1000, false).is_err());
    }

    #[test]
    fn absurd_fields_are_refused() {
        let mut h = SparseHeader::parse(&{
            let mut b = [0u8; 512];
            b[..4].copy_from_slice(MAGIC);
            b
        })
        .unwrap();
        assert!(h.validate(1 << 20, false).is_err());
        h.num_gtes = 4096;
        h.grain_sectors = 128;
        assert!(h.validate(1 << 20, false).is_err());
        h.num_gtes = 512;
        h.grain_sectors = 1 << 40;
        assert!(h.validate(1 << 20, false).is_err());
    }
}
