//! The fixed part of a VHDX file: the file type identifier at 0, the two
//! 4 KiB headers at 64 KiB and 128 KiB (CRC-32C, the larger valid
//! sequence number wins) and the region table at 192 KiB (a copy at
//! 256 KiB), all little-endian.

use crate::error::{Error, Result};

/// One mebibyte: the alignment of every region and payload block.
pub const MIB: u64 = 1 << 20;
/// The file type identifier's signature.
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// Where the two headers lie.
pub const HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
/// Bytes of one header.
pub const HEADER_LEN: usize = 4096;
/// Where the two region tables lie.
pub const REGION_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
/// Bytes of one region table.
pub const REGION_LEN: usize = 64 << 10;
/// The most region table entries the format allows.
const MAX_REGIONS: u32 = 2047;

/// A GUID as stored on disk (the first three fields little-endian).
pub type Guid = [u8; 16];

/// The all-zero GUID (an empty log).
pub const ZERO_GUID: Guid = [0; 16];

/// The on-disk bytes of the GUID written `a-b-c-d`, with `d` the last 8 bytes.
pub const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// The BAT region (2DC27766-F623-4200-9D64-115E9BFD4A08).
pub const BAT_REGION: Guid = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
/// The metadata region (8B7CA206-4790-4B9A-B8FE-575F050F886E).
pub const METADATA_REGION: Guid = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);

/// A random GUID (version 4) from the system's random source, or the
/// clock and process id when it cannot be read.
pub fn random_guid() -> Guid {
    use std::io::Read;
    let mut u = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut u));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        u.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    u[7] = (u[7] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(super) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(super) fn guid_at(b: &[u8], at: usize) -> Guid {
    b[at..at + 16].try_into().expect("16 bytes")
}

/// The CRC-32C of `b` with its 4-byte checksum field at `at` taken as zero.
pub fn checksum(b: &[u8], at: usize) -> u32 {
    let c = crc32c::crc32c(&b[..at]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &b[at + 4..])
}

/// Stores the checksum of `b` in its field at `at`.
pub fn seal(b: &mut [u8], at: usize) {
    let sum = checksum(b, at);
    b[at..at + 4].copy_from_slice(&sum.to_le_bytes());
}

/// One VHDX header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Larger is newer.
    pub sequence: u64,
    /// Changed on the first write of each session that opens the file.
    pub file_write_guid: Guid,
    /// Changed before the first guest data write of a session.
    pub data_write_guid: Guid,
    /// The log to replay (zero: the log is empty).
    pub log_guid: Guid,
    /// The log format version (0).
    pub log_version: u16,
    /// The format version (1).
    pub version: u16,
    /// Bytes of the log.
    pub log_length: u32,
    /// Where the log lies.
    pub log_offset: u64,
}

impl Header {
    /// Parses a header; `None` when its signature or checksum is wrong.
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN || &b[..4] != b"head" {
            return None;
        }
        let b = &b[..HEADER_LEN];
        if checksum(b, 4) != le32(b, 4) {
            return None;
        }
        Some(Header {
            sequence: le64(b, 8),
            file_write_guid: guid_at(b, 16),
            data_write_guid: guid_at(b, 32),
            log_guid: guid_at(b, 48),
            log_version: le16(b, 64),
            version: le16(b, 66),
            log_length: le32(b, 68),
            log_offset: le64(b, 72),
        })
    }

    /// The header's 4 KiB, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[..4].copy_from_slice(b"head");
        b[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        b[16..32].copy_from_slice(&self.file_write_guid);
        b[32..48].copy_from_slice(&self.data_write_guid);
        b[48..64].copy_from_slice(&self.log_guid);
        b[64..66].copy_from_slice(&self.log_version.to_le_bytes());
        b[66..68].copy_from_slice(&self.version.to_le_bytes());
        b[68..72].copy_from_slice(&self.log_length.to_le_bytes());
        b[72..80].copy_from_slice(&self.log_offset.to_le_bytes());
        seal(&mut b, 4);
        b
    }
}

/// Picks the current header of the two slots: the valid one with the
/// larger sequence number. Returns it and its slot (0 or 1).
pub fn current(slots: [Option<Header>; 2]) -> Result<(Header, usize)> {
    match slots {
        [Some(a), Some(b)] if b.sequence > a.sequence => Ok((b, 1)),
        [Some(a), _] => Ok((a, 0)),
        [None, Some(b)] => Ok((b, 1)),
        [None, None] => Err(Error::invalid("No valid VHDX header found")),
    }
}

/// One region table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// What the region holds.
    pub guid: Guid,
    /// Where it starts (1 MiB aligned).
    pub offset: u64,
    /// Its length (a multiple of 1 MiB).
    pub length: u32,
    /// The reader must know the region to open the file.
    pub required: bool,
}

impl Region {
    /// The end of the region.
    pub fn end(&self) -> u64 {
        self.offset + self.length as u64
    }
}

/// The BAT and metadata regions named by a region table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    /// The block allocation table.
    pub bat: Region,
    /// The metadata region.
    pub metadata: Region,
}

/// Parses a region table: its signature, checksum and entries (each 1 MiB
/// aligned, not overlapping another or the first MiB, none unknown and
/// required, the BAT and metadata present once each).
pub fn parse_regions(b: &[u8]) -> Result<Regions> {
    if b.len() < REGION_LEN || &b[..4] != b"regi" {
        return Err(Error::invalid(
            "the VHDX region table has no 'regi' signature",
        ));
    }
    let b = &b[..REGION_LEN];
    if checksum(b, 4) != le32(b, 4) {
        return Err(Error::invalid("the VHDX region table's checksum is wrong"));
    }
    let count = le32(b, 8);
    if count > MAX_REGIONS {
        return Err(Error::invalid(format!(
            "the VHDX region table claims {count} entries (at most {MAX_REGIONS})"
        )));
    }
    let mut seen: Vec<Region> = Vec::new();
    let (mut bat, mut metadata) = (None, None);
    for i in 0..count as usize {
        let e = &b[16 + i * 32..16 + (i + 1) * 32];
        let r = Region {
            guid: guid_at(e, 0),
            offset: le64(e, 16),
            length: le32(e, 24),
            required: le32(e, 28) & 1 != 0,
        };
        if r.offset % MIB != 0 || r.length as u64 % MIB != 0 || r.length == 0 {
            return Err(Error::invalid(format!(
                "VHDX region {i} at {:#x} ({} bytes) is not a whole number of MiB on a MiB boundary",
                r.offset, r.length
            )));
        }
        if r.offset < MIB || r.offset.checked_add(r.length as u64).is_none() {
            return Err(Error::invalid(format!(
                "VHDX region {i} at {:#x} overlaps the headers",
                r.offset
            )));
        }
        if let Some(o) = seen
            .iter()
            .find(|o| r.offset < o.end() && o.offset < r.end())
        {
            return Err(Error::invalid(format!(
                "VHDX region {i} at {:#x} overlaps the region at {:#x}",
                r.offset, o.offset
            )));
        }
        let slot = if r.guid == BAT_REGION {
            &mut bat
        } else if r.guid == METADATA_REGION {
            &mut metadata
        } else if r.required {
            return Err(Error::unsupported(format!(
                "VHDX region {i} at {:#x} is required and unknown",
                r.offset
            )));
        } else {
            seen.push(r);
            continue;
        };
        if slot.replace(r).is_some() {
            return Err(Error::invalid(
                "a VHDX region is named twice in the region table",
            ));
        }
        seen.push(r);
    }
    match (bat, metadata) {
        (Some(bat), Some(metadata)) => Ok(Regions { bat, metadata }),
        (None, _) => Err(Error::invalid("the VHDX region table names no BAT")),
        (_, None) => Err(Error::invalid(
            "the VHDX region table names no metadata region",
        )),
    }
}

/// A region table naming the BAT and metadata regions (not required, as
/// QEMU writes them).
pub fn encode_regions(r: &Regions) -> Vec<u8> {
    let mut b = vec![0u8; REGION_LEN];
    b[..4].copy_from_slice(b"regi");
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    for (i, e) in [r.bat, r.metadata].iter().enumerate() {
        let at = 16 + i * 32;
        b[at..at + 16].copy_from_slice(&e.guid);
        b[at + 16..at + 24].copy_from_slice(&e.offset.to_le_bytes());
        b[at + 24..at + 28].copy_from_slice(&e.length.to_le_bytes());
        b[at + 28..at + 32].copy_from_slice(&(e.required as u32).to_le_bytes());
    }
    seal(&mut b, 4);
    b
}

/// The file type identifier: the signature and the creator in UTF-16LE.
pub fn encode_identifier(creator: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 << 10];
    b[..8].copy_from_slice(FILE_SIGNATURE);
    for (i, u) in creator.encode_utf16().take(256).enumerate() {
        b[8 + i * 2..10 + i * 2].copy_from_slice(&u.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn headers_round_trip_and_the_newer_wins() {
        let h = Header {
            sequence: 7,
            file_write_guid: random_guid(),
            data_write_guid: random_guid(),
            log_guid: ZERO_GUID,
            log_version: 0,
            version: 1,
            log_length: MIB as u32,
            log_offset: MIB,
        };
        let raw = h.encode();
        assert_eq!(Header::parse(&raw), Some(h));
        let mut bad = raw.clone();
        bad[100] ^= 1;
        assert_eq!(Header::parse(&bad), None);
        let newer = Header { sequence: 8, ..h };
        assert_eq!(current([Some(h), Some(newer)]).expect("one"), (newer, 1));
        assert_eq!(current([Some(newer), Some(h)]).expect("one"), (newer, 0));
        assert!(current([None, None]).is_err());
    }

    #[test]
    fn region_tables_round_trip_and_overlaps_are_refused() {
        let r = Regions {
            bat: Region {
                guid: BAT_REGION,
                offset: 2 * MIB,
                length: MIB as u32,
                required: false,
            },
            metadata: Region {
                guid: METADATA_REGION,
                offset: 3 * MIB,
                length: MIB as u32,
                required: false,
            },
        };
        assert_eq!(parse_regions(&encode_regions(&r)).expect("parse"), r);
        let mut o = r;
        o.metadata.offset = 2 * MIB;
        let e = parse_regions(&encode_regions(&o)).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
    }
}
