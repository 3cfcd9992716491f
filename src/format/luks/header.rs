//! The LUKS1 header: 592 big-endian bytes at the start of the LUKS area
//! (the file of a `luks` image, or the area a qcow2 header extension
//! names), with its eight key slots. Parsing checks every field a hostile
//! header could use to demand memory, CPU or reads past the area.

use super::crypto::{CipherSpec, Hash, SECTOR};
use crate::error::{Error, Result};

/// The magic of a LUKS header.
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// The bytes of a header.
pub const HEADER_LEN: usize = 592;
/// Key slots in a header.
pub const SLOTS: usize = 8;
/// The anti-forensic stripes of a key slot (QEMU accepts no other count).
pub const STRIPES: u32 = 4000;
/// A key slot in use.
const SLOT_ACTIVE: u32 = 0x00AC_71F3;
/// A key slot not in use.
const SLOT_DISABLED: u32 = 0x0000_DEAD;
/// Bytes of the master key digest.
pub const DIGEST_LEN: usize = 20;
/// Bytes of a salt.
pub const SALT_LEN: usize = 32;
/// The most PBKDF2 iterations one key slot (or the master key digest) may
/// ask for: over three times what QEMU's default iteration time (2 s)
/// gives here (4.7 million), and a bound on the CPU a hostile header can
/// demand.
pub const MAX_ITERATIONS: u32 = 1 << 24;
/// The most PBKDF2 iterations a wrong passphrase may cost over all the
/// active slots (each slot's and the digest's), so eight hostile slots
/// cannot demand eight times [`MAX_ITERATIONS`].
pub const MAX_TOTAL_ITERATIONS: u64 = 1 << 25;

/// One key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot {
    /// In use.
    pub active: bool,
    /// PBKDF2 iterations of the slot key.
    pub iterations: u32,
    /// PBKDF2 salt of the slot key.
    pub salt: [u8; SALT_LEN],
    /// Where the key material starts, in sectors from the area start.
    pub key_offset: u32,
    /// AF stripes of the key material.
    pub stripes: u32,
}

/// A parsed LUKS1 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The payload cipher.
    pub cipher: CipherSpec,
    /// `cipher-name` as stored (for messages).
    pub cipher_name: String,
    /// The hash of PBKDF2 and of the AF diffusion.
    pub hash: Hash,
    /// Where the payload starts, in sectors.
    pub payload_offset: u32,
    /// Bytes of the master key.
    pub key_bytes: u32,
    /// PBKDF2 of the master key, to know it when found.
    pub mk_digest: [u8; DIGEST_LEN],
    /// Its salt.
    pub mk_salt: [u8; SALT_LEN],
    /// Its iterations.
    pub mk_iterations: u32,
    /// The UUID text.
    pub uuid: String,
    /// The key slots.
    pub slots: [KeySlot; SLOTS],
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A NUL-padded text field, which must be printable ASCII.
fn text(b: &[u8], what: &str) -> Result<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = &b[..end];
    if !s.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Error::corrupt(format!(
            "LUKS header field {what} is not printable text"
        )));
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

fn put_text(out: &mut [u8], s: &str) {
    out[..s.len()].copy_from_slice(s.as_bytes());
}

/// Bytes of one slot's key material.
pub fn material_len(key_bytes: u32) -> u64 {
    key_bytes as u64 * STRIPES as u64
}

/// Sectors QEMU gives each slot's key material: the material rounded up
/// to whole 4 KiB.
pub fn slot_sectors(key_bytes: u32) -> u32 {
    let sectors = material_len(key_bytes).div_ceil(SECTOR as u64) as u32;
    sectors.div_ceil(8) * 8
}

impl Header {
    /// Whether `head` starts with a LUKS version 1 header.
    pub fn probe(head: &[u8]) -> bool {
        head.len() >= 8 && &head[..6] == MAGIC && head[6..8] == [0, 1]
    }

    /// Parses and checks a header whose LUKS area is `area_len` bytes
    /// long (the payload must start inside it when `payload_inside`; a
    /// qcow2 image keeps its payload elsewhere).
    pub fn parse(b: &[u8], area_len: u64, payload_inside: bool) -> Result<Header> {
        if b.len() < HEADER_LEN {
            return Err(Error::corrupt(format!(
                "LUKS header is truncated ({} of {HEADER_LEN} bytes)",
                b.len()
            )));
        }
        if &b[..6] != MAGIC {
            return Err(Error::invalid("Volume is not in LUKS format"));
        }
        let version = u16::from_be_bytes([b[6], b[7]]);
        if version != 1 {
            return Err(Error::unsupported(format!(
                "LUKS version {version} is not supported (qimg reads LUKS version 1)"
            )));
        }
        let cipher_name = text(&b[8..40], "cipher-name")?;
        let cipher_mode = text(&b[40..72], "cipher-mode")?;
        let hash_spec = text(&b[72..104], "hash-spec")?;
        let payload_offset = be32(b, 104);
        let key_bytes = be32(b, 108);
        let cipher = CipherSpec::from_header(&cipher_name, &cipher_mode, key_bytes)?;
        let hash = Hash::parse(&hash_spec)?;
        let mut mk_digest = [0u8; DIGEST_LEN];
        mk_digest.copy_from_slice(&b[112..132]);
        let mut mk_salt = [0u8; SALT_LEN];
        mk_salt.copy_from_slice(&b[132..164]);
        let mk_iterations = be32(b, 164);
        let uuid = text(&b[168..208], "uuid")?;
        let mut slots = [KeySlot {
            active: false,
            iterations: 0,
            salt: [0; SALT_LEN],
            key_offset: 0,
            stripes: 0,
        }; SLOTS];
        for (i, slot) in slots.iter_mut().enumerate() {
            let s = &b[208 + i * 48..208 + (i + 1) * 48];
            slot.active = match be32(s, 0) {
                SLOT_ACTIVE => true,
                SLOT_DISABLED => false,
                other => {
                    return Err(Error::corrupt(format!(
                        "LUKS key slot {i} has an unknown state {other:#x}"
                    )))
                }
            };
            slot.iterations = be32(s, 4);
            slot.salt.copy_from_slice(&s[8..40]);
            slot.key_offset = be32(s, 40);
            slot.stripes = be32(s, 44);
        }
        let h = Header {
            cipher,
            cipher_name,
            hash,
            payload_offset,
            key_bytes,
            mk_digest,
            mk_salt,
            mk_iterations,
            uuid,
            slots,
        };
        h.check(area_len, payload_inside)?;
        Ok(h)
    }

    /// The checks QEMU makes on open, and the bounds qimg adds.
    fn check(&self, area_len: u64, payload_inside: bool) -> Result<()> {
        if self.mk_iterations == 0 || self.mk_iterations > MAX_ITERATIONS {
            return Err(Error::corrupt(format!(
                "LUKS master key digest asks for {} PBKDF2 iterations (1 to {MAX_ITERATIONS} are accepted)",
                self.mk_iterations
            )));
        }
        let material = material_len(self.key_bytes);
        let payload = self.payload_offset as u64 * SECTOR as u64;
        let header_sectors = (HEADER_LEN as u64).div_ceil(SECTOR as u64);
        for (i, s) in self.slots.iter().enumerate() {
            if s.stripes != STRIPES {
                return Err(Error::corrupt(format!(
                    "Keyslot {i} is corrupted (stripes {} != {STRIPES})",
                    s.stripes
                )));
            }
            if (s.key_offset as u64) < header_sectors {
                return Err(Error::corrupt(format!(
                    "Keyslot {i} is overlapping with the LUKS header"
                )));
            }
            let start = s.key_offset as u64 * SECTOR as u64;
            let end = start + material;
            if end > payload {
                return Err(Error::corrupt(format!(
                    "Keyslot {i} is overlapping with the encrypted payload"
                )));
            }
            if !s.active {
                continue;
            }
            if s.iterations == 0 || s.iterations > MAX_ITERATIONS {
                return Err(Error::corrupt(format!(
                    "LUKS key slot {i} asks for {} PBKDF2 iterations (1 to {MAX_ITERATIONS} are accepted)",
                    s.iterations
                )));
            }
            if end > area_len {
                return Err(Error::corrupt(format!(
                    "LUKS key slot {i} material ({material} bytes at {start}) lies past the end of the LUKS area ({area_len} bytes)"
                )));
            }
        }
        if !self.slots.iter().any(|s| s.active) {
            return Err(Error::corrupt("LUKS header has no active key slot"));
        }
        let total: u64 = self
            .slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.iterations as u64 + self.mk_iterations as u64)
            .sum();
        if total > MAX_TOTAL_ITERATIONS {
            return Err(Error::corrupt(format!(
                "LUKS key slots ask for {total} PBKDF2 iterations in all (at most {MAX_TOTAL_ITERATIONS} are accepted)"
            )));
        }
        if payload_inside && payload > area_len {
            return Err(Error::corrupt(format!(
                "LUKS payload offset {payload} lies past the end of the file ({area_len} bytes)"
            )));
        }
        Ok(())
    }

    /// The header's 592 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..6].copy_from_slice(MAGIC);
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        put_text(&mut b[8..40], &self.cipher_name);
        put_text(&mut b[40..72], &self.cipher.mode_text());
        put_text(&mut b[72..104], self.hash.name());
        b[104..108].copy_from_slice(&self.payload_offset.to_be_bytes());
        b[108..112].copy_from_slice(&self.key_bytes.to_be_bytes());
        b[112..132].copy_from_slice(&self.mk_digest);
        b[132..164].copy_from_slice(&self.mk_salt);
        b[164..168].copy_from_slice(&self.mk_iterations.to_be_bytes());
        put_text(&mut b[168..208], &self.uuid);
        for (i, s) in self.slots.iter().enumerate() {
            let o = &mut b[208 + i * 48..208 + (i + 1) * 48];
            let state = if s.active { SLOT_ACTIVE } else { SLOT_DISABLED };
            o[0..4].copy_from_slice(&state.to_be_bytes());
            o[4..8].copy_from_slice(&s.iterations.to_be_bytes());
            o[8..40].copy_from_slice(&s.salt);
            o[40..44].copy_from_slice(&s.key_offset.to_be_bytes());
            o[44..48].copy_from_slice(&s.stripes.to_be_bytes());
        }
        b
    }

    /// The payload offset in bytes.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_offset as u64 * SECTOR as u64
    }
}
