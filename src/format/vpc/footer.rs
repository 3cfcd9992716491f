//! The VHD footer (512 bytes, big-endian): the last sector of every VHD,
//! with a copy in sector 0 of dynamic disks; and the CHS geometry rules
//! that decide a VHD's size.

use crate::error::{Error, Result};

/// Length of the footer.
pub const FOOTER_LEN: usize = 512;
/// The footer's cookie.
pub const COOKIE: &[u8; 8] = b"conectix";
/// Disk type of a fixed VHD (data first, footer last).
pub const DISK_FIXED: u32 = 2;
/// Disk type of a dynamic (sparse) VHD.
pub const DISK_DYNAMIC: u32 = 3;
/// Disk type of a differencing VHD (not supported, as in QEMU).
pub const DISK_DIFFERENCING: u32 = 4;
/// The largest geometry a footer can hold: 65535 cylinders, 16 heads, 255
/// sectors per track. A footer with it gives its size in `current_size`.
pub const MAX_GEOMETRY: Geometry = Geometry {
    cylinders: 65535,
    heads: 16,
    sectors: 255,
};
/// The largest size QEMU creates or opens, in sectors (2040 GiB).
pub const MAX_SECTORS: u64 = 0xff00_0000;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH: u64 = 946_684_800;

/// A cylinders/heads/sectors-per-track triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

impl Geometry {
    /// The number of sectors the geometry addresses.
    pub fn total_sectors(self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64
    }

    /// The geometry the VHD specification's appendix assigns to a disk of
    /// `sectors` sectors (clamped to the largest geometry).
    pub fn for_sectors(sectors: u64) -> Geometry {
        let ts = sectors.min(MAX_GEOMETRY.total_sectors());
        let (spt, heads, cth);
        if ts >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = ts / spt;
        } else {
            let mut s = 17;
            let mut c = ts / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = ts / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = ts / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        Geometry {
            cylinders: (cth / heads) as u16,
            heads: heads as u8,
            sectors: spt as u8,
        }
    }
}

/// A parsed footer; `raw` keeps its bytes so that a moved footer is
/// written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// The 512 bytes as read (or as built).
    pub raw: [u8; FOOTER_LEN],
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The VHD checksum: the one's complement of the byte sum, with the four
/// bytes of the checksum field at `field` counted as zero.
pub fn checksum(bytes: &[u8], field: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(b as u32));
    !sum
}

impl Footer {
    /// Whether `b` starts with the footer cookie.
    pub fn has_cookie(b: &[u8]) -> bool {
        b.len() >= 8 && &b[..8] == COOKIE
    }

    /// Parses a footer (cookie and checksum checked).
    pub fn parse(b: &[u8]) -> Result<Footer> {
        if b.len() < FOOTER_LEN || !Self::has_cookie(b) {
            return Err(Error::invalid("invalid VPC image"));
        }
        let mut raw = [0u8; FOOTER_LEN];
        raw.copy_from_slice(&b[..FOOTER_LEN]);
        let f = Footer { raw };
        if checksum(&f.raw, 64) != be32(&f.raw, 64) {
            return Err(Error::corrupt("Incorrect header checksum"));
        }
        Ok(f)
    }

    /// The byte offset of the dynamic header (all ones for fixed disks).
    pub fn data_offset(&self) -> u64 {
        be64(&self.raw, 16)
    }

    /// The creator application, four bytes (`qemu`, `qem2`, `win `, ...).
    pub fn creator_app(&self) -> [u8; 4] {
        self.raw[28..32].try_into().expect("4 bytes")
    }

    /// The size field (bytes).
    pub fn current_size(&self) -> u64 {
        be64(&self.raw, 48)
    }

    /// The CHS geometry field.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            cylinders: u16::from_be_bytes([self.raw[56], self.raw[57]]),
            heads: self.raw[58],
            sectors: self.raw[59],
        }
    }

    /// The disk type (fixed, dynamic, differencing).
    pub fn disk_type(&self) -> u32 {
        be32(&self.raw, 60)
    }

    /// The virtual size QEMU gives the disk: the CHS geometry for images
    /// made by Virtual PC (`vpc `) or a CHS-rounding qemu-img (`qemu`),
    /// unless the geometry is the largest one; `current_size` otherwise
    /// (Hyper-V `win `, disk2vhd `d2v `, qemu-img with `force_size` `qem2`,
    /// Azure and every other creator).
    pub fn virtual_size(&self) -> u64 {
        let g = self.geometry();
        let by_chs = matches!(&self.creator_app(), b"vpc " | b"qemu") && g != MAX_GEOMETRY;
        if by_chs {
            g.total_sectors() * 512
        } else {
            self.current_size()
        }
    }

    /// Builds a footer as qemu-img writes it.
    pub fn build(new: &NewFooter) -> Footer {
        let mut raw = [0u8; FOOTER_LEN];
        raw[..8].copy_from_slice(COOKIE);
        raw[8..12].copy_from_slice(&2u32.to_be_bytes());
        raw[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        raw[16..24].copy_from_slice(&new.data_offset.to_be_bytes());
        raw[24..28].copy_from_slice(&new.timestamp.to_be_bytes());
        raw[28..32].copy_from_slice(new.creator_app);
        raw[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
        raw[36..40].copy_from_slice(b"Wi2k");
        raw[40..48].copy_from_slice(&new.size.to_be_bytes());
        raw[48..56].copy_from_slice(&new.size.to_be_bytes());
        raw[56..58].copy_from_slice(&new.geometry.cylinders.to_be_bytes());
        raw[58] = new.geometry.heads;
        raw[59] = new.geometry.sectors;
        raw[60..64].copy_from_slice(&new.disk_type.to_be_bytes());
        raw[68..84].copy_from_slice(&new.uuid);
        let sum = checksum(&raw, 64);
        raw[64..68].copy_from_slice(&sum.to_be_bytes());
        Footer { raw }
    }
}

/// The fields of a new footer.
#[derive(Debug, Clone)]
pub struct NewFooter {
    /// The dynamic header's offset, or all ones (fixed).
    pub data_offset: u64,
    /// Seconds since the VHD epoch.
    pub timestamp: u32,
    /// The creator application.
    pub creator_app: &'static [u8; 4],
    /// Original and current size, bytes.
    pub size: u64,
    /// The geometry.
    pub geometry: Geometry,
    /// Fixed or dynamic.
    pub disk_type: u32,
    /// The unique id.
    pub uuid: [u8; 16],
}

/// The size and geometry qemu-img gives a new disk of `request` bytes:
/// with `force_size`, the request rounded up to a sector and the largest
/// geometry; otherwise the smallest geometry that holds the request, whose
/// size becomes the disk's (so it usually grows), or the request itself
/// once the geometry is the largest. `None`: too large for a VHD.
pub fn size_for(request: u64, force_size: bool) -> Option<(u64, Geometry)> {
    let sectors = request.div_ceil(512);
    if sectors > MAX_SECTORS {
        return None;
    }
    if force_size {
        return Some((sectors * 512, MAX_GEOMETRY));
    }
    if sectors == 0 {
        // Nothing to hold: qemu-img leaves the geometry all zeros.
        let none = Geometry {
            cylinders: 0,
            heads: 0,
            sectors: 0,
        };
        return Some((0, none));
    }
    let mut i = 0;
    loop {
        let g = Geometry::for_sectors(sectors + i);
        if g == MAX_GEOMETRY {
            return Some((sectors * 512, g));
        }
        if g.total_sectors() >= sectors {
            return Some((g.total_sectors() * 512, g));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sizes_follow_the_chs_rounding() {
        let cases: &[(u64, u64, (u16, u8, u8))] = &[
            (1 << 20, 1079296, (31, 4, 17)),
            (5 << 20, 5257216, (151, 4, 17)),
            (100 << 20, 104865792, (1004, 12, 17)),
            (1 << 30, 1073995776, (2081, 16, 63)),
            (32 << 30, 34361303040, (16449, 16, 255)),
            (127 << 30, 136365219840, (65279, 16, 255)),
            (130 << 30, 130 << 30, (65535, 16, 255)),
        ];
        for &(req, size, (c, h, s)) in cases {
            let (got, g) = size_for(req, false).expect("fits");
            assert_eq!(
                (got, g.cylinders, g.heads, g.sectors),
                (size, c, h, s),
                "{req}"
            );
        }
        assert_eq!(size_for(5_000_000, true).map(|x| x.0), Some(5_000_192));
        assert!(size_for(2041 << 30, false).is_none());
        assert_eq!(size_for(0, false).map(|x| x.1.total_sectors()), Some(0));
        assert!(size_for(2040 << 30, true).is_some());
    }

    #[test]
    fn a_built_footer_parses_and_a_flipped_bit_fails_the_checksum() {
        let f = Footer::build(&NewFooter {
            data_offset: 512,
            timestamp: 7,
            creator_app: b"qemu",
            size: 5257216,
            geometry: Geometry::for_sectors(10268),
            disk_type: DISK_DYNAMIC,
            uuid: [3; 16],
        });
        let back = Footer::parse(&f.raw).expect("parse");
        assert_eq!(back.virtual_size(), 5257216);
        let mut bad = f.raw;
        bad[100] ^= 1;
        assert!(Footer::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }
}
