//! The QED header and table entries: pure parsing and encoding.

use crate::error::{Error, Result};

/// The QED magic, "QED\0".
pub const MAGIC: [u8; 4] = *b"QED\0";
/// Length of the QED header.
pub const HEADER_LEN: usize = 64;
/// Feature bit: the image has a backing file.
pub const FEATURE_BACKING_FILE: u64 = 1 << 0;
/// Feature bit: tables may be inconsistent and need a check.
pub const FEATURE_NEED_CHECK: u64 = 1 << 1;
/// Feature bit: the backing file is raw and must not be probed.
pub const FEATURE_BACKING_FORMAT_NO_PROBE: u64 = 1 << 2;
const FEATURES_KNOWN: u64 = 0x7;
/// Largest table qimg loads (the L1 is read whole).
const MAX_TABLE_BYTES: u64 = 256 << 20;

/// A parsed QED header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QedHeader {
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// L1/L2 table size in clusters.
    pub table_size: u32,
    /// Header size in clusters.
    pub header_size: u32,
    /// Feature bits.
    pub features: u64,
    /// Compatible feature bits.
    pub compat_features: u64,
    /// Autoclear feature bits.
    pub autoclear_features: u64,
    /// Offset of the L1 table.
    pub l1_table_offset: u64,
    /// Virtual size in bytes.
    pub image_size: u64,
    /// Offset of the backing file name.
    pub backing_filename_offset: u32,
    /// Length of the backing file name.
    pub backing_filename_size: u32,
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

impl QedHeader {
    /// Parses and validates the 64-byte header (pure).
    pub fn parse(buf: &[u8]) -> Result<QedHeader> {
        if buf.len() < 4 || buf[0..4] != MAGIC {
            return Err(Error::invalid("not a QED image (wrong magic)"));
        }
        if buf.len() < HEADER_LEN {
            return Err(Error::invalid(format!(
                "QED header is truncated: the file has {} bytes, the header needs {HEADER_LEN}",
                buf.len()
            )));
        }
        let h = QedHeader {
            cluster_size: le32(buf, 4),
            table_size: le32(buf, 8),
            header_size: le32(buf, 12),
            features: le64(buf, 16),
            compat_features: le64(buf, 24),
            autoclear_features: le64(buf, 32),
            l1_table_offset: le64(buf, 40),
            image_size: le64(buf, 48),
            backing_filename_offset: le32(buf, 56),
            backing_filename_size: le32(buf, 60),
        };
        let cs = h.cluster_size;
        if !cs.is_power_of_two() || !(4096..=64 << 20).contains(&cs) {
            return Err(Error::invalid(format!(
                "QED cluster size {cs} is invalid (a power of 2 from 4096 to 67108864)"
            )));
        }
        if !h.table_size.is_power_of_two() || h.table_size > 16 {
            return Err(Error::invalid(format!(
                "QED table size {} is invalid (a power of 2 from 1 to 16)",
                h.table_size
            )));
        }
        let unknown = h.features & !FEATURES_KNOWN;
        if unknown != 0 {
            return Err(Error::unsupported(format!(
                "Unsupported QED features {unknown:#x}"
            )));
        }
        if h.header_size == 0 || h.header_size > 1024 {
            return Err(Error::invalid(format!(
                "QED header size of {} clusters is invalid",
                h.header_size
            )));
        }
        if h.image_size % 512 != 0 || h.image_size > h.max_image_size() {
            return Err(Error::invalid(format!(
                "QED image size {} is invalid (a multiple of 512 up to {})",
                h.image_size,
                h.max_image_size()
            )));
        }
        if h.table_bytes() > MAX_TABLE_BYTES {
            return Err(Error::unsupported(format!(
                "QED tables of {} bytes are larger than qimg supports",
                h.table_bytes()
            )));
        }
        if h.features & FEATURE_BACKING_FILE != 0 {
            let end = h.backing_filename_offset as u64 + h.backing_filename_size as u64;
            if end > h.header_bytes() || h.backing_filename_size > 1023 {
                return Err(Error::invalid(
                    "QED backing file name lies outside the header",
                ));
            }
        }
        Ok(h)
    }

    /// Bytes per table.
    pub fn table_bytes(&self) -> u64 {
        self.table_size as u64 * self.cluster_size as u64
    }

    /// Entries per table.
    pub fn table_entries(&self) -> u64 {
        self.table_bytes() / 8
    }

    /// Bytes of the header area.
    pub fn header_bytes(&self) -> u64 {
        self.header_size as u64 * self.cluster_size as u64
    }

    /// The largest virtual size these tables can address.
    pub fn max_image_size(&self) -> u64 {
        let e = self.table_entries();
        e.saturating_mul(e).saturating_mul(self.cluster_size as u64)
    }
}

/// What one QED L2 entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QedEntry {
    /// 0: not allocated here.
    Unallocated,
    /// 1: reads as zeros.
    Zero,
    /// The data cluster's offset.
    Data(u64),
}

impl QedEntry {
    /// Decodes an entry value.
    pub fn decode(v: u64) -> Self {
        match v {
            0 => QedEntry::Unallocated,
            1 => QedEntry::Zero,
            off => QedEntry::Data(off),
        }
    }
}

impl QedHeader {
    /// Encodes the 64-byte header (pure).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.cluster_size.to_le_bytes());
        b[8..12].copy_from_slice(&self.table_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.header_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.features.to_le_bytes());
        b[24..32].copy_from_slice(&self.compat_features.to_le_bytes());
        b[32..40].copy_from_slice(&self.autoclear_features.to_le_bytes());
        b[40..48].copy_from_slice(&self.l1_table_offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.image_size.to_le_bytes());
        b[56..60].copy_from_slice(&self.backing_filename_offset.to_le_bytes());
        b[60..64].copy_from_slice(&self.backing_filename_size.to_le_bytes());
        b
    }
}
