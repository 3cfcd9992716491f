//! The VDI header: 512 bytes, little-endian, with the signature at 0x40.
//! [`Header::parse`] refuses what QEMU's VDI driver refuses, with its
//! sentences, and then what qimg refuses on top to keep memory bounded by
//! the file (a block map that lies outside the file, regions that overlap).

use crate::error::{Error, Result};

/// Length of the header sector.
pub const HEADER_LEN: usize = 512;
/// The signature at 0x40.
pub const SIGNATURE: u32 = 0xbeda_107f;
/// Offset of the signature.
pub const SIGNATURE_AT: usize = 0x40;
/// Version 1.1, the only one QEMU (and qimg) opens.
pub const VERSION_1_1: u32 = 0x0001_0001;
/// The header size recorded by version 1.1 images (after the text,
/// signature and version).
pub const HEADER_SIZE_1_1: u32 = 0x180;
/// Bytes per block; QEMU opens no other size.
pub const BLOCK_SIZE: u64 = 1 << 20;
/// A sector.
pub const SECTOR: u64 = 512;
/// A block map entry of a block never written.
pub const UNALLOCATED: u32 = 0xffff_ffff;
/// A block map entry of a discarded block (reads as zeros, as unallocated).
pub const DISCARDED: u32 = 0xffff_fffe;
/// The most blocks QEMU opens (its block map must fit its allocator).
pub const MAX_BLOCKS: u32 = 0x1fff_ff80;
/// The largest disk size QEMU creates and opens.
pub const MAX_DISK_SIZE: u64 = MAX_BLOCKS as u64 * BLOCK_SIZE;
/// Image type of a dynamic (growing) image.
pub const TYPE_DYNAMIC: u32 = 1;
/// Image type of a static (preallocated) image.
pub const TYPE_STATIC: u32 = 2;
/// The text QEMU writes in front of the signature.
pub const TEXT: &[u8] = b"<<< QEMU VM Virtual Disk Image >>>\n";

/// Field offsets inside the header.
pub mod at {
    /// Version.
    pub const VERSION: usize = 0x44;
    /// Header size.
    pub const HEADER_SIZE: usize = 0x48;
    /// Image type.
    pub const IMAGE_TYPE: usize = 0x4c;
    /// Offset of the block map.
    pub const OFFSET_BMAP: usize = 0x154;
    /// Offset of the data area.
    pub const OFFSET_DATA: usize = 0x158;
    /// Legacy geometry: sector size.
    pub const SECTOR_SIZE: usize = 0x168;
    /// Disk size in bytes.
    pub const DISK_SIZE: usize = 0x170;
    /// Block size.
    pub const BLOCK_SIZE: usize = 0x178;
    /// Blocks in the image.
    pub const BLOCKS_IN_IMAGE: usize = 0x180;
    /// Blocks allocated.
    pub const BLOCKS_ALLOCATED: usize = 0x184;
    /// UUID of the image.
    pub const UUID_IMAGE: usize = 0x188;
    /// UUID of the last snapshot.
    pub const UUID_LAST_SNAP: usize = 0x198;
    /// UUID of the link (must be zero).
    pub const UUID_LINK: usize = 0x1a8;
    /// UUID of the parent (must be zero: no differencing images).
    pub const UUID_PARENT: usize = 0x1b8;
}

/// What the header says, and its raw bytes (rewritten whole-field when
/// the allocated count changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The 512 raw bytes, as read or built.
    pub raw: Vec<u8>,
    /// 1 dynamic, 2 static (others are read as dynamic, as QEMU does).
    pub image_type: u32,
    /// Byte offset of the block map.
    pub offset_bmap: u64,
    /// Byte offset of block index 0.
    pub offset_data: u64,
    /// The virtual size (the recorded size rounded up to a sector).
    pub disk_size: u64,
    /// Entries of the block map.
    pub blocks_in_image: u32,
    /// Blocks the header counts as allocated (the next block's index).
    pub blocks_allocated: u32,
}

/// The little-endian u32 at byte `at` of `b`.
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Whether `head` carries the VDI signature (the probe).
pub fn has_signature(head: &[u8]) -> bool {
    head.len() >= SIGNATURE_AT + 4 && le32(head, SIGNATURE_AT) == SIGNATURE
}

impl Header {
    /// Parses and checks a header of a file of `file_len` bytes.
    pub fn parse(b: &[u8], file_len: u64) -> Result<Self> {
        if b.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
            return Err(Error::invalid(format!(
                "Image not in VDI format (the file holds {file_len} bytes, less than a 512-byte header)"
            )));
        }
        let signature = le32(b, SIGNATURE_AT);
        if signature != SIGNATURE {
            return Err(Error::invalid(format!(
                "Image not in VDI format (bad signature {signature:08x})"
            ))
            .at_offset(SIGNATURE_AT as u64));
        }
        let version = le32(b, at::VERSION);
        if version != VERSION_1_1 {
            return Err(Error::unsupported(format!(
                "unsupported VDI image (version {}.{})",
                version >> 16,
                version & 0xffff
            ))
            .at_offset(at::VERSION as u64));
        }
        let offset_bmap = le32(b, at::OFFSET_BMAP) as u64;
        let offset_data = le32(b, at::OFFSET_DATA) as u64;
        let sector_size = le32(b, at::SECTOR_SIZE);
        let block_size = le32(b, at::BLOCK_SIZE);
        let blocks_in_image = le32(b, at::BLOCKS_IN_IMAGE);
        let recorded_size = le64(b, at::DISK_SIZE);
        let bad = |at: usize, msg: String| Err(Error::unsupported(msg).at_offset(at as u64));
        if recorded_size > MAX_DISK_SIZE {
            return Err(Error::unsupported(format!(
                "Unsupported VDI image size (size is {recorded_size:#x}, max supported is {MAX_DISK_SIZE:#x})"
            ))
            .at_offset(at::DISK_SIZE as u64));
        }
        // VBoxManage can record sizes that are not whole sectors; QEMU
        // rounds them up.
        let disk_size = recorded_size.div_ceil(SECTOR) * SECTOR;
        if offset_bmap % SECTOR != 0 {
            return bad(
                at::OFFSET_BMAP,
                format!("unsupported VDI image (unaligned block map offset {offset_bmap:#x})"),
            );
        }
        if offset_data % SECTOR != 0 {
            return bad(
                at::OFFSET_DATA,
                format!("unsupported VDI image (unaligned data offset {offset_data:#x})"),
            );
        }
        if sector_size as u64 != SECTOR {
            return bad(
                at::SECTOR_SIZE,
                format!("unsupported VDI image (sector size {sector_size} is not {SECTOR})"),
            );
        }
        if block_size as u64 != BLOCK_SIZE {
            return bad(
                at::BLOCK_SIZE,
                format!("unsupported VDI image (block size {block_size} is not {BLOCK_SIZE})"),
            );
        }
        let room = blocks_in_image as u64 * BLOCK_SIZE;
        if disk_size > room {
            return bad(
                at::DISK_SIZE,
                format!(
                    "unsupported VDI image (disk size {disk_size}, image bitmap has room for {room})"
                ),
            );
        }
        if b[at::UUID_LINK..at::UUID_LINK + 16].iter().any(|&x| x != 0) {
            return bad(
                at::UUID_LINK,
                "unsupported VDI image (non-NULL link UUID)".into(),
            );
        }
        if b[at::UUID_PARENT..at::UUID_PARENT + 16]
            .iter()
            .any(|&x| x != 0)
        {
            return bad(
                at::UUID_PARENT,
                "unsupported VDI image (non-NULL parent UUID)".into(),
            );
        }
        if blocks_in_image > MAX_BLOCKS {
            return bad(
                at::BLOCKS_IN_IMAGE,
                format!("unsupported VDI image (too many blocks {blocks_in_image}, max is {MAX_BLOCKS})"),
            );
        }
        // Beyond QEMU: the block map must lie inside the file (QEMU reads
        // zeros past the end, which maps every block onto index 0), and
        // the header, the map and the data area must not overlap.
        let bmap_bytes = blocks_in_image as u64 * 4;
        let bmap_end = offset_bmap + bmap_bytes;
        if bmap_end > file_len {
            return Err(Error::corrupt(format!(
                "the block map at {offset_bmap:#x} ({bmap_bytes} bytes for {blocks_in_image} blocks) lies past the end of the file ({file_len} bytes)"
            ))
            .at_offset(offset_bmap));
        }
        if offset_bmap < HEADER_LEN as u64 {
            return Err(Error::corrupt(format!(
                "the block map at {offset_bmap:#x} overlaps the 512-byte header"
            ))
            .at_offset(at::OFFSET_BMAP as u64));
        }
        if bmap_bytes > 0 && offset_data < bmap_end {
            return Err(Error::corrupt(format!(
                "the data area at {offset_data:#x} overlaps the block map at {offset_bmap:#x} ({bmap_bytes} bytes)"
            ))
            .at_offset(at::OFFSET_DATA as u64));
        }
        if offset_data < HEADER_LEN as u64 {
            return Err(Error::corrupt(format!(
                "the data area at {offset_data:#x} overlaps the 512-byte header"
            ))
            .at_offset(at::OFFSET_DATA as u64));
        }
        Ok(Header {
            raw: b[..HEADER_LEN].to_vec(),
            image_type: le32(b, at::IMAGE_TYPE),
            offset_bmap,
            offset_data,
            disk_size,
            blocks_in_image,
            blocks_allocated: le32(b, at::BLOCKS_ALLOCATED),
        })
    }

    /// Whether the image is static (its data area preallocated, sparse on
    /// the host).
    pub fn is_static(&self) -> bool {
        self.image_type == TYPE_STATIC
    }

    /// The host offset of block index `index`.
    pub fn block_host(&self, index: u32) -> u64 {
        self.offset_data + index as u64 * BLOCK_SIZE
    }

    /// Sets the allocated count in the raw bytes and the parsed field.
    pub fn set_blocks_allocated(&mut self, n: u32) {
        self.blocks_allocated = n;
        self.raw[at::BLOCKS_ALLOCATED..at::BLOCKS_ALLOCATED + 4].copy_from_slice(&n.to_le_bytes());
    }
}

/// What a new header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewHeader {
    /// Dynamic or static.
    pub image_type: u32,
    /// The disk size in bytes (a multiple of 512).
    pub disk_size: u64,
    /// Blocks in the image.
    pub blocks: u32,
    /// Blocks allocated (all of them for a static image).
    pub blocks_allocated: u32,
    /// Offset of the data area.
    pub offset_data: u64,
    /// The image's UUID, as stored (little-endian GUID layout).
    pub uuid_image: [u8; 16],
    /// The last snapshot's UUID, as stored.
    pub uuid_last_snap: [u8; 16],
}

/// Builds the 512 bytes of a new header, laid out as qemu-img lays them
/// out (block map right after the header).
pub fn build(h: &NewHeader) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[..TEXT.len()].copy_from_slice(TEXT);
    let mut put32 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put32(SIGNATURE_AT, SIGNATURE);
    put32(at::VERSION, VERSION_1_1);
    put32(at::HEADER_SIZE, HEADER_SIZE_1_1);
    put32(at::IMAGE_TYPE, h.image_type);
    put32(at::OFFSET_BMAP, HEADER_LEN as u32);
    put32(at::OFFSET_DATA, h.offset_data as u32);
    put32(at::SECTOR_SIZE, SECTOR as u32);
    put32(at::BLOCK_SIZE, BLOCK_SIZE as u32);
    put32(at::BLOCKS_IN_IMAGE, h.blocks);
    put32(at::BLOCKS_ALLOCATED, h.blocks_allocated);
    b[at::DISK_SIZE..at::DISK_SIZE + 8].copy_from_slice(&h.disk_size.to_le_bytes());
    b[at::UUID_IMAGE..at::UUID_IMAGE + 16].copy_from_slice(&h.uuid_image);
    b[at::UUID_LAST_SNAP..at::UUID_LAST_SNAP + 16].copy_from_slice(&h.uuid_last_snap);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(blocks: u32) -> Vec<u8> {
        build(&NewHeader {
            image_type: TYPE_DYNAMIC,
            disk_size: blocks as u64 * BLOCK_SIZE,
            blocks,
            blocks_allocated: 0,
            offset_data: 0x400,
            uuid_image: [1; 16],
            uuid_last_snap: [2; 16],
        })
    }

    #[test]
    fn a_built_header_parses_back() {
        let h = Header::parse(&sample(5), 1024).expect("parse");
        assert_eq!(h.disk_size, 5 << 20);
        assert_eq!(h.blocks_in_image, 5);
        assert_eq!(h.offset_bmap, 512);
        assert_eq!(h.offset_data, 0x400);
        assert!(!h.is_static());
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases: &[(usize, &[u8], &str)] = &[
            (0x40, &[0, 0x10, 0xda, 0xbe], "bad signature beda1000"),
            (0x44, &[0, 0, 1, 0], "version 1.0"),
            (0x178, &[0, 0, 0x20, 0], "block size 2097152 is not 1048576"),
            (0x180, &[0, 0, 0, 0x40], "too many blocks"),
            (0x180, &[4, 0, 0, 0], "image bitmap has room for 4194304"),
            (0x154, &[0, 0, 1, 0], "lies past the end of the file"),
            (0x158, &[0, 2, 0, 0], "overlaps the block map"),
            (0x1b8, &[1], "non-NULL parent UUID"),
        ];
        for (at, bytes, want) in cases {
            let mut b = sample(5);
            b[*at..*at + bytes.len()].copy_from_slice(bytes);
            let e = Header::parse(&b, 1024).expect_err(want);
            assert!(e.message().contains(want), "{want}: {}", e.message());
        }
    }

    #[test]
    fn an_odd_size_rounds_up_to_a_sector() {
        let mut b = sample(5);
        b[0x170..0x178].copy_from_slice(&5_242_000u64.to_le_bytes());
        assert_eq!(Header::parse(&b, 1024).expect("parse").disk_size, 5_242_368);
    }
}
