//! Keys of a LUKS area: unlocking a key slot with a passphrase (PBKDF2,
//! key material decrypted and AF-merged, the master key checked against
//! its digest), and making a new area for `create`.

use super::crypto::{af_merge, af_split, random, CipherSpec, Hash, SectorCipher, SECTOR};
use super::header::{
    material_len, slot_sectors, Header, KeySlot, DIGEST_LEN, MAX_ITERATIONS, SALT_LEN, SLOTS,
    STRIPES,
};
use crate::error::{Error, Result};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// qemu-img's words for a passphrase that opens no slot.
pub const WRONG_PASSWORD: &str = "Invalid password, cannot unlock any keyslot";

/// Finds the master key with `password`: each active slot in turn, its
/// key material read by `read(offset, buf)` (offsets from the area start).
/// Returns the payload cipher keyed with it.
pub fn unlock(
    header: &Header,
    password: &[u8],
    read: &dyn Fn(u64, &mut [u8]) -> Result<()>,
) -> Result<SectorCipher> {
    let key_bytes = header.key_bytes as usize;
    let material_bytes = material_len(header.key_bytes) as usize;
    for slot in header.slots.iter().filter(|s| s.active) {
        let mut slot_key = Zeroizing::new(vec![0u8; key_bytes]);
        header
            .hash
            .pbkdf2(password, &slot.salt, slot.iterations, &mut slot_key);
        let mut material = Zeroizing::new(vec![0u8; material_bytes]);
        read(slot.key_offset as u64 * SECTOR as u64, &mut material)?;
        SectorCipher::new(&header.cipher, &slot_key)?.decrypt(&mut material, 0);
        let master = af_merge(header.hash, &material, key_bytes, STRIPES as usize);
        let mut digest = [0u8; DIGEST_LEN];
        header
            .hash
            .pbkdf2(&master, &header.mk_salt, header.mk_iterations, &mut digest);
        if digest == header.mk_digest {
            return SectorCipher::new(&header.cipher, &master);
        }
    }
    Err(Error::new(
        crate::error::ErrorKind::InvalidArgument,
        WRONG_PASSWORD,
    ))
}

/// The choices of a new LUKS area (qemu-img's `-o` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewArea {
    /// The payload cipher.
    pub cipher: CipherSpec,
    /// The PBKDF2 and AF hash.
    pub hash: Hash,
    /// Milliseconds PBKDF2 should take to open slot 0 (`iter-time`).
    pub iter_time_ms: u64,
}

/// A new LUKS area: the header and the bytes of the whole area up to
/// the payload (header, then slot 0's key material), and the cipher.
pub struct MadeArea {
    /// The header.
    pub header: Header,
    /// The area's bytes up to the payload offset.
    pub bytes: Zeroizing<Vec<u8>>,
    /// The payload cipher, keyed.
    pub cipher: SectorCipher,
}

/// PBKDF2 iterations per second of `hash` here, for a `len`-byte output.
fn pbkdf2_rate(hash: Hash, len: usize) -> u64 {
    let mut out = vec![0u8; len];
    let mut iterations: u32 = 1 << 10;
    loop {
        let start = Instant::now();
        hash.pbkdf2(b"benchmark", &[0u8; SALT_LEN], iterations, &mut out);
        let took = start.elapsed();
        if took >= Duration::from_millis(50) || iterations >= 1 << 24 {
            let ns = took.as_nanos().max(1);
            return (iterations as u128 * 1_000_000_000 / ns) as u64;
        }
        iterations *= 2;
    }
}

/// The iterations that take `ms` at `rate` per second, divided by
/// `divisor`, at least 1000 (QEMU's floor) and at most qimg's bound.
fn iterations(rate: u64, ms: u64, divisor: u64) -> u32 {
    let n = rate.saturating_mul(ms) / 1000 / divisor;
    n.clamp(1000, MAX_ITERATIONS as u64) as u32
}

/// A random version 4 UUID, as text.
fn new_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    ))
}

/// Makes a new area as QEMU lays it out: a random master key kept in
/// slot 0 under `password`, slots 1-7 disabled, each slot's material at
/// 4 KiB steps after the header, the payload after the last slot.
pub fn make_area(choice: &NewArea, password: &[u8]) -> Result<MadeArea> {
    let key_bytes = choice.cipher.key_bytes() as u32;
    let mut master = Zeroizing::new(vec![0u8; key_bytes as usize]);
    random(&mut master)?;
    let mut mk_salt = [0u8; SALT_LEN];
    random(&mut mk_salt)?;
    let mut slot_salt = [0u8; SALT_LEN];
    random(&mut slot_salt)?;
    let hash = choice.hash;
    // One benchmark: the rate for a one-block output, the slot key takes
    // as many blocks as it is longer than a digest.
    let rate = pbkdf2_rate(hash, DIGEST_LEN.min(hash.digest_len()));
    let blocks = (key_bytes as usize).div_ceil(hash.digest_len()) as u64;
    let slot_iterations = iterations(rate / blocks.max(1), choice.iter_time_ms, 1);
    let mk_iterations = iterations(rate, choice.iter_time_ms, 8);
    let mut mk_digest = [0u8; DIGEST_LEN];
    hash.pbkdf2(&master, &mk_salt, mk_iterations, &mut mk_digest);
    let step = slot_sectors(key_bytes);
    let first = 8u32; // the header, rounded up to 4 KiB
    let mut slots = [KeySlot {
        active: false,
        iterations: 0,
        salt: [0; SALT_LEN],
        key_offset: 0,
        stripes: STRIPES,
    }; SLOTS];
    for (i, s) in slots.iter_mut().enumerate() {
        s.key_offset = first + i as u32 * step;
    }
    slots[0].active = true;
    slots[0].iterations = slot_iterations;
    slots[0].salt = slot_salt;
    let header = Header {
        cipher: choice.cipher,
        cipher_name: "aes".to_string(),
        hash,
        payload_offset: first + SLOTS as u32 * step,
        key_bytes,
        mk_digest,
        mk_salt,
        mk_iterations,
        uuid: new_uuid()?,
        slots,
    };
    let mut slot_key = Zeroizing::new(vec![0u8; key_bytes as usize]);
    hash.pbkdf2(password, &slot_salt, slot_iterations, &mut slot_key);
    let mut material = af_split(hash, &master, STRIPES as usize)?;
    SectorCipher::new(&choice.cipher, &slot_key)?.encrypt(&mut material, 0);
    let mut bytes = Zeroizing::new(vec![0u8; header.payload_bytes() as usize]);
    bytes[..super::header::HEADER_LEN].copy_from_slice(&header.to_bytes());
    let at = slots[0].key_offset as usize * SECTOR;
    bytes[at..at + material.len()].copy_from_slice(&material);
    let cipher = SectorCipher::new(&choice.cipher, &master)?;
    Ok(MadeArea {
        header,
        bytes,
        cipher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_area_unlocks_with_its_password_only() {
        let made = make_area(
            &NewArea {
                cipher: CipherSpec::DEFAULT,
                hash: Hash::Sha256,
                iter_time_ms: 0,
            },
            b"pw",
        )
        .unwrap();
        let bytes = made.bytes.clone();
        let parsed = Header::parse(&bytes, bytes.len() as u64, true).unwrap();
        assert_eq!(parsed, made.header);
        assert_eq!(parsed.payload_offset, 4040);
        let read = |off: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&bytes[off as usize..off as usize + buf.len()]);
            Ok(())
        };
        let cipher = unlock(&parsed, b"pw", &read).unwrap();
        let mut a = vec![1u8; 512];
        let mut b = a.clone();
        cipher.encrypt(&mut a, 3);
        made.cipher.encrypt(&mut b, 3);
        assert_eq!(a, b, "the unlocked key is the master key");
        let e = unlock(&parsed, b"px", &read).unwrap_err();
        assert_eq!(e.message(), WRONG_PASSWORD);
    }
}
