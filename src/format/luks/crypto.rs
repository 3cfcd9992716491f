//! The cryptography of LUKS1, built on RustCrypto primitives (AES, XTS,
//! PBKDF2-HMAC, SHA-1/SHA-2): the sector cipher of the payload and the key
//! material, PBKDF2 by the header's hash, and the anti-forensic splitter
//! (AF split and merge with the LUKS1 hash diffusion). Nothing here is a
//! primitive of its own: only the LUKS1 arrangement of them.

use crate::error::{Error, Result};
use aes::cipher::KeyInit;
use aes::{Aes128, Aes192, Aes256};
use digest::Digest;
use xts_mode::Xts128;
use zeroize::Zeroizing;

/// Bytes in a sector of the payload and of the key material.
pub const SECTOR: usize = 512;

/// A hash the header may name (`hash-spec`, also the IV hash of essiv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// `sha1`.
    Sha1,
    /// `sha224`.
    Sha224,
    /// `sha256` (QEMU's default).
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
}

impl Hash {
    /// The hash a header names, or the one-line refusal naming it.
    pub fn parse(name: &str) -> Result<Hash> {
        Ok(match name {
            "sha1" => Hash::Sha1,
            "sha224" => Hash::Sha224,
            "sha256" => Hash::Sha256,
            "sha384" => Hash::Sha384,
            "sha512" => Hash::Sha512,
            other => {
                return Err(Error::unsupported(format!(
                    "LUKS hash algorithm '{other}' is not supported (sha1, sha224, sha256, sha384 or sha512)"
                )))
            }
        })
    }

    /// The name as the header and qemu-img spell it.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha224 => "sha224",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// PBKDF2-HMAC with this hash: `out.len()` bytes of key from
    /// `password` and `salt` after `iterations` rounds.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        match self {
            Hash::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            Hash::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, out),
            Hash::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            Hash::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, out),
            Hash::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
        }
    }

    /// The digest of `index` (big-endian) followed by `piece`, cut to
    /// `out.len()` bytes: one step of the AF diffusion.
    fn piece_digest(self, index: u32, piece: &[u8], out: &mut [u8]) {
        fn run<D: Digest>(index: u32, piece: &[u8], out: &mut [u8]) {
            let mut d = D::new();
            d.update(index.to_be_bytes());
            d.update(piece);
            let full = d.finalize();
            out.copy_from_slice(&full[..out.len()]);
        }
        match self {
            Hash::Sha1 => run::<sha1::Sha1>(index, piece, out),
            Hash::Sha224 => run::<sha2::Sha224>(index, piece, out),
            Hash::Sha256 => run::<sha2::Sha256>(index, piece, out),
            Hash::Sha384 => run::<sha2::Sha384>(index, piece, out),
            Hash::Sha512 => run::<sha2::Sha512>(index, piece, out),
        }
    }

    /// The LUKS1 diffusion of `buf`, in place: each digest-sized piece
    /// (the last one shorter) becomes the digest of its index and itself.
    fn diffuse(self, buf: &mut [u8]) {
        let n = self.digest_len();
        let mut out = Zeroizing::new(vec![0u8; n]);
        for (i, piece) in buf.chunks_mut(n).enumerate() {
            let o = &mut out[..piece.len()];
            self.piece_digest(i as u32, piece, o);
            piece.copy_from_slice(o);
        }
    }
}

/// How the IV of a sector comes from its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvGen {
    /// The sector number as a little-endian 64-bit value (QEMU's default).
    Plain64,
    /// Its low 32 bits, little-endian.
    Plain,
}

impl IvGen {
    /// The name as qemu-img spells it.
    pub fn name(self) -> &'static str {
        match self {
            IvGen::Plain64 => "plain64",
            IvGen::Plain => "plain",
        }
    }

    fn tweak(self, sector: u64) -> [u8; 16] {
        let n = match self {
            IvGen::Plain64 => sector,
            IvGen::Plain => sector & 0xffff_ffff,
        };
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&n.to_le_bytes());
        t
    }
}

/// The payload cipher of an image: AES in XTS mode with a sector IV
/// (what QEMU creates by default, `aes-256` `xts-plain64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSpec {
    /// AES key bits of each XTS half: 128, 192 or 256.
    pub aes_bits: u32,
    /// The IV generator.
    pub ivgen: IvGen,
    /// A hash stored after the mode (`xts-plain64:sha256`), kept as given.
    pub ivgen_hash: Option<Hash>,
}

impl CipherSpec {
    /// QEMU's default: aes-256, xts, plain64.
    pub const DEFAULT: CipherSpec = CipherSpec {
        aes_bits: 256,
        ivgen: IvGen::Plain64,
        ivgen_hash: None,
    };

    /// The cipher a header names (`cipher-name`, `cipher-mode`,
    /// `key-bytes`), or one line naming what qimg does not support.
    pub fn from_header(name: &str, mode: &str, key_bytes: u32) -> Result<CipherSpec> {
        if name != "aes" {
            return Err(Error::unsupported(format!(
                "LUKS cipher '{name}' is not supported (qimg reads aes in xts mode)"
            )));
        }
        let (chain, rest) = mode.split_once('-').unwrap_or((mode, ""));
        if chain != "xts" {
            return Err(Error::unsupported(format!(
                "LUKS cipher mode '{mode}' is not supported (qimg reads xts-plain64 and xts-plain)"
            )));
        }
        let (iv, hash) = match rest.split_once(':') {
            Some((iv, h)) => (iv, Some(Hash::parse(h)?)),
            None => (rest, None),
        };
        let ivgen = match iv {
            "plain64" => IvGen::Plain64,
            "plain" => IvGen::Plain,
            _ => {
                return Err(Error::unsupported(format!(
                "LUKS cipher mode '{mode}' is not supported (qimg reads xts-plain64 and xts-plain)"
            )))
            }
        };
        let aes_bits = match key_bytes {
            32 => 128,
            48 => 192,
            64 => 256,
            n => {
                return Err(Error::corrupt(format!(
                    "LUKS header has {n} key bytes, which aes in xts mode cannot use (32, 48 or 64)"
                )))
            }
        };
        Ok(CipherSpec {
            aes_bits,
            ivgen,
            ivgen_hash: hash,
        })
    }

    /// The key length in bytes (both XTS halves).
    pub fn key_bytes(&self) -> usize {
        self.aes_bits as usize / 4
    }

    /// qemu-img's `cipher-alg`: `aes-256`.
    pub fn alg_name(&self) -> String {
        format!("aes-{}", self.aes_bits)
    }

    /// The header's `cipher-mode` text: `xts-plain64[:hash]`.
    pub fn mode_text(&self) -> String {
        match self.ivgen_hash {
            Some(h) => format!("xts-{}:{}", self.ivgen.name(), h.name()),
            None => format!("xts-{}", self.ivgen.name()),
        }
    }
}

/// AES-XTS for one key length.
#[allow(clippy::large_enum_variant)] // one per image, never moved around
enum Xts {
    Aes128(Xts128<Aes128>),
    Aes192(Xts128<Aes192>),
    Aes256(Xts128<Aes256>),
}

/// A keyed sector cipher: encrypts and decrypts whole 512-byte sectors
/// given the number of the first. Shared by the workers (`&self`).
pub struct SectorCipher {
    xts: Xts,
    ivgen: IvGen,
}

impl std::fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectorCipher")
            .field("ivgen", &self.ivgen)
            .finish_non_exhaustive()
    }
}

impl SectorCipher {
    /// The cipher of `spec` keyed by `key` (`spec.key_bytes()` long).
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<SectorCipher> {
        if key.len() != spec.key_bytes() {
            return Err(Error::corrupt(format!(
                "a {}-byte key does not fit {} in xts mode",
                key.len(),
                spec.alg_name()
            )));
        }
        let (k1, k2) = key.split_at(key.len() / 2);
        let bad = |_| Error::corrupt("bad AES key length");
        let xts = match spec.aes_bits {
            128 => Xts::Aes128(Xts128::new(
                Aes128::new_from_slice(k1).map_err(bad)?,
                Aes128::new_from_slice(k2).map_err(bad)?,
            )),
            192 => Xts::Aes192(Xts128::new(
                Aes192::new_from_slice(k1).map_err(bad)?,
                Aes192::new_from_slice(k2).map_err(bad)?,
            )),
            _ => Xts::Aes256(Xts128::new(
                Aes256::new_from_slice(k1).map_err(bad)?,
                Aes256::new_from_slice(k2).map_err(bad)?,
            )),
        };
        Ok(SectorCipher {
            xts,
            ivgen: spec.ivgen,
        })
    }

    /// Encrypts `buf` (whole sectors) in place; its first sector is
    /// number `first`.
    pub fn encrypt(&self, buf: &mut [u8], first: u64) {
        debug_assert_eq!(buf.len() % SECTOR, 0);
        for (i, s) in buf.chunks_exact_mut(SECTOR).enumerate() {
            let t = self.ivgen.tweak(first + i as u64);
            match &self.xts {
                Xts::Aes128(x) => x.encrypt_sector(s, t),
                Xts::Aes192(x) => x.encrypt_sector(s, t),
                Xts::Aes256(x) => x.encrypt_sector(s, t),
            }
        }
    }

    /// Decrypts `buf` (whole sectors) in place; its first sector is
    /// number `first`.
    pub fn decrypt(&self, buf: &mut [u8], first: u64) {
        debug_assert_eq!(buf.len() % SECTOR, 0);
        for (i, s) in buf.chunks_exact_mut(SECTOR).enumerate() {
            let t = self.ivgen.tweak(first + i as u64);
            match &self.xts {
                Xts::Aes128(x) => x.decrypt_sector(s, t),
                Xts::Aes192(x) => x.decrypt_sector(s, t),
                Xts::Aes256(x) => x.decrypt_sector(s, t),
            }
        }
    }
}

/// Merges `stripes` AF stripes of `key_len` bytes each into the key they
/// hide: every stripe but the last is folded in through the diffusion,
/// and the last one XORed onto the result.
pub fn af_merge(hash: Hash, material: &[u8], key_len: usize, stripes: usize) -> Zeroizing<Vec<u8>> {
    let mut d = Zeroizing::new(vec![0u8; key_len]);
    for s in material.chunks_exact(key_len).take(stripes - 1) {
        d.iter_mut().zip(s).for_each(|(a, b)| *a ^= b);
        hash.diffuse(&mut d);
    }
    let last = &material[(stripes - 1) * key_len..stripes * key_len];
    d.iter_mut().zip(last).for_each(|(a, b)| *a ^= b);
    d
}

/// Splits `key` into `stripes` stripes (random ones and the last that
/// makes [`af_merge`] give `key` back).
pub fn af_split(hash: Hash, key: &[u8], stripes: usize) -> Result<Zeroizing<Vec<u8>>> {
    let n = key.len();
    let mut out = Zeroizing::new(vec![0u8; n * stripes]);
    random(&mut out[..n * (stripes - 1)])?;
    let mut d = Zeroizing::new(vec![0u8; n]);
    for s in out.chunks_exact(n).take(stripes - 1) {
        d.iter_mut().zip(s).for_each(|(a, b)| *a ^= b);
        hash.diffuse(&mut d);
    }
    let last = &mut out[(stripes - 1) * n..];
    for ((o, a), b) in last.iter_mut().zip(d.iter()).zip(key) {
        *o = a ^ b;
    }
    Ok(out)
}

/// Fills `buf` from the operating system's random source.
pub fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| {
        Error::io(
            "cannot read random bytes for a new key",
            std::io::Error::other(e.to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af_split_then_merge_gives_the_key_back() {
        for hash in [Hash::Sha1, Hash::Sha256, Hash::Sha512] {
            let key: Vec<u8> = (0..64u8).collect();
            let material = af_split(hash, &key, 40).unwrap();
            assert_eq!(&*af_merge(hash, &material, 64, 40), &key[..]);
        }
    }

    #[test]
    fn pbkdf2_sha256_matches_the_rfc_7914_vector() {
        // RFC 7914, section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let mut out = [0u8; 64];
        Hash::Sha256.pbkdf2(b"passwd", b"salt", 1, &mut out);
        assert_eq!(&out[..8], &[0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn sectors_round_trip_and_depend_on_their_number() {
        let key = [7u8; 64];
        let c = SectorCipher::new(&CipherSpec::DEFAULT, &key).unwrap();
        let plain = vec![0x5au8; 1024];
        let mut a = plain.clone();
        c.encrypt(&mut a, 10);
        assert_ne!(a, plain);
        assert_ne!(a[..512], a[512..], "sectors 10 and 11 differ");
        let mut b = a.clone();
        c.decrypt(&mut b, 10);
        assert_eq!(b, plain);
    }
}
