//! The digest algorithms a blkhash can be built on, named as `blksum`
//! names them (OpenSSL's names), and one running digest of any of them.

use crate::error::{Error, Result};
use digest::DynDigest;

/// A digest algorithm: the one that hashes each block and, again, the
/// list of block digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-1 (160 bits; kept for matching old records, not for security).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256: blksum's default.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA-512/224.
    Sha512_224,
    /// SHA-512/256.
    Sha512_256,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// BLAKE2b with a 512-bit digest.
    Blake2b512,
    /// BLAKE2s with a 256-bit digest.
    Blake2s256,
    /// BLAKE3 with its default 256-bit digest (blksum has it when built
    /// with libblake3).
    Blake3,
    /// MD5 (128 bits; for matching old records only).
    Md5,
    /// OpenSSL's MD5 and SHA-1 side by side (36 bytes).
    Md5Sha1,
    /// RIPEMD-160.
    Ripemd160,
    /// SM3 (the Chinese national standard hash).
    Sm3,
    /// SHAKE128 with OpenSSL's default output of 16 bytes.
    Shake128,
    /// SHAKE256 with OpenSSL's default output of 32 bytes.
    Shake256,
}

/// Every algorithm with the name blksum (`blksum -l`) gives it, sorted.
pub const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("blake2b512", Algorithm::Blake2b512),
    ("blake2s256", Algorithm::Blake2s256),
    ("blake3", Algorithm::Blake3),
    ("md5", Algorithm::Md5),
    ("md5-sha1", Algorithm::Md5Sha1),
    ("ripemd160", Algorithm::Ripemd160),
    ("sha1", Algorithm::Sha1),
    ("sha224", Algorithm::Sha224),
    ("sha256", Algorithm::Sha256),
    ("sha3-224", Algorithm::Sha3_224),
    ("sha3-256", Algorithm::Sha3_256),
    ("sha3-384", Algorithm::Sha3_384),
    ("sha3-512", Algorithm::Sha3_512),
    ("sha384", Algorithm::Sha384),
    ("sha512", Algorithm::Sha512),
    ("sha512-224", Algorithm::Sha512_224),
    ("sha512-256", Algorithm::Sha512_256),
    ("shake128", Algorithm::Shake128),
    ("shake256", Algorithm::Shake256),
    ("sm3", Algorithm::Sm3),
];

impl Algorithm {
    /// The algorithm called `name` (as blksum names it, any case).
    pub fn parse(name: &str) -> Result<Algorithm> {
        ALGORITHMS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, a)| a)
            .ok_or_else(|| {
                let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
                Error::argument(format!(
                    "unsupported checksum algorithm '{name}' (supported: {})",
                    names.join(", ")
                ))
            })
    }

    /// Its blksum name.
    pub fn name(self) -> &'static str {
        ALGORITHMS
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("sha256")
    }

    /// A fresh running digest.
    pub fn start(self) -> Running {
        use Algorithm::*;
        let d: Box<dyn DynDigest + Send> = match self {
            Sha1 => Box::new(sha1::Sha1::default()),
            Sha224 => Box::new(sha2::Sha224::default()),
            Sha256 => Box::new(sha2::Sha256::default()),
            Sha384 => Box::new(sha2::Sha384::default()),
            Sha512 => Box::new(sha2::Sha512::default()),
            Sha512_224 => Box::new(sha2::Sha512_224::default()),
            Sha512_256 => Box::new(sha2::Sha512_256::default()),
            Sha3_224 => Box::new(sha3::Sha3_224::default()),
            Sha3_256 => Box::new(sha3::Sha3_256::default()),
            Sha3_384 => Box::new(sha3::Sha3_384::default()),
            Sha3_512 => Box::new(sha3::Sha3_512::default()),
            Blake2b512 => Box::new(blake2::Blake2b512::default()),
            Blake2s256 => Box::new(blake2::Blake2s256::default()),
            Md5 => Box::new(md5::Md5::default()),
            Ripemd160 => Box::new(ripemd::Ripemd160::default()),
            Sm3 => Box::new(sm3::Sm3::default()),
            Blake3 => return Running(Inner::Blake3(Box::default())),
            Md5Sha1 => return Running(Inner::Md5Sha1(Box::default())),
            Shake128 => return Running(Inner::Shake128(Box::default())),
            Shake256 => return Running(Inner::Shake256(Box::default())),
        };
        Running(Inner::Dyn(d))
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Md {
        let mut r = self.start();
        r.update(data);
        r.finish_reset()
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A digest value (at most 64 bytes: SHA-512's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Md {
    bytes: [u8; 64],
    len: u8,
}

impl Md {
    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Lower-case hexadecimal, as blksum and sha256sum print digests.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.as_bytes().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl std::fmt::Debug for Md {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One digest being computed.
pub struct Running(Inner);

enum Inner {
    Dyn(Box<dyn DynDigest + Send>),
    Blake3(Box<blake3::Hasher>),
    Md5Sha1(Box<(md5::Md5, sha1::Sha1)>),
    Shake128(Box<sha3::Shake128>),
    Shake256(Box<sha3::Shake256>),
}

impl Running {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Dyn(d) => d.update(data),
            Inner::Blake3(h) => {
                h.update(data);
            }
            Inner::Md5Sha1(pair) => {
                digest::Update::update(&mut pair.0, data);
                digest::Update::update(&mut pair.1, data);
            }
            Inner::Shake128(x) => digest::Update::update(x.as_mut(), data),
            Inner::Shake256(x) => digest::Update::update(x.as_mut(), data),
        }
    }

    /// The digest of what was added; the state starts over.
    pub fn finish_reset(&mut self) -> Md {
        let mut md = Md {
            bytes: [0; 64],
            len: 0,
        };
        match &mut self.0 {
            Inner::Dyn(d) => {
                let n = d.output_size();
                // Every algorithm above fits in 64 bytes.
                d.finalize_into_reset(&mut md.bytes[..n])
                    .expect("digest output fits");
                md.len = n as u8;
            }
            Inner::Blake3(h) => {
                md.bytes[..32].copy_from_slice(h.finalize().as_bytes());
                h.reset();
                md.len = 32;
            }
            Inner::Md5Sha1(pair) => {
                use digest::FixedOutputReset;
                md.bytes[..16].copy_from_slice(&pair.0.finalize_fixed_reset());
                md.bytes[16..36].copy_from_slice(&pair.1.finalize_fixed_reset());
                md.len = 36;
            }
            Inner::Shake128(x) => {
                digest::ExtendableOutputReset::finalize_xof_reset_into(
                    x.as_mut(),
                    &mut md.bytes[..16],
                );
                md.len = 16;
            }
            Inner::Shake256(x) => {
                digest::ExtendableOutputReset::finalize_xof_reset_into(
                    x.as_mut(),
                    &mut md.bytes[..32],
                );
                md.len = 32;
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_of_the_empty_message() {
        // The published digests of "" (FIPS 180-4, FIPS 202, RFC 7693, BLAKE3).
        let cases = [
            (
                "sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            ("md5", "d41d8cd98f00b204e9800998ecf8427e"),
            (
                "sha3-256",
                "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a",
            ),
            (
                "blake3",
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            ),
            (
                "blake2s256",
                "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9",
            ),
        ];
        for (name, hex) in cases {
            assert_eq!(
                Algorithm::parse(name).unwrap().digest(b"").to_hex(),
                hex,
                "{name}"
            );
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for &(name, a) in ALGORITHMS {
            assert_eq!(Algorithm::parse(name).unwrap(), a);
            assert_eq!(a.name(), name);
        }
        assert_eq!(Algorithm::parse("SHA256").unwrap(), Algorithm::Sha256);
        let e = Algorithm::parse("crc32").unwrap_err().to_string();
        assert!(e.contains("unsupported checksum algorithm 'crc32'"), "{e}");
    }
}
