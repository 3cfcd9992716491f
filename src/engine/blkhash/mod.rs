//! The blkhash construction (as `blksum` computes it): the guest content
//! is cut into blocks (64 KiB by default), each block is hashed, and the
//! digest is the hash of the block digests followed by the content's
//! length as a little-endian 64-bit number:
//!
//! `H(H(block 1) || ... || H(block N) || le64(length))`
//!
//! The last block may be short and is hashed as it is. A whole block of
//! zeros always hashes to the same digest, computed once, so ranges known
//! to read as zeros (holes, zero clusters) cost one outer-hash update per
//! block and are never read; data blocks are independent of each other and
//! are hashed in parallel ([`Config::prehash`]), then added in order.

pub mod algorithm;
mod ordered;

use super::zero::is_zero;
pub use algorithm::{Algorithm, Md, ALGORITHMS};
pub use ordered::{Ordered, Part};

/// blksum's block size (it changes the digest).
pub const DEFAULT_BLOCK_SIZE: usize = 64 << 10;

/// What a blkhash is built from: its algorithm and block size, and the
/// digest of a block of zeros. Shared by the threads that hash blocks.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    algorithm: Algorithm,
    block_size: usize,
    zero_md: Md,
}

impl Config {
    /// The construction with `algorithm` over blocks of `block_size` bytes
    /// (not zero).
    pub fn new(algorithm: Algorithm, block_size: usize) -> Config {
        let block_size = block_size.max(1);
        Config {
            algorithm,
            block_size,
            zero_md: algorithm.digest(&vec![0u8; block_size]),
        }
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Its block size in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Hashes the whole blocks of `data`, the content at stream position
    /// `offset` (blocks are aligned to positions, not to `data`): the bytes
    /// before the first block boundary and after the last one are kept as
    /// they are, for [`Blkhash::add`] to join with their neighbours. Whole
    /// blocks of zeros are recognised and not hashed. Runs on any thread.
    pub fn prehash(&self, offset: u64, data: &[u8]) -> Piece {
        let b = self.block_size as u64;
        let to_boundary = ((b - offset % b) % b).min(data.len() as u64) as usize;
        let (head, rest) = data.split_at(to_boundary);
        let whole = rest.len() / self.block_size * self.block_size;
        let (blocks, tail) = rest.split_at(whole);
        let mut running = self.algorithm.start();
        let digests = blocks
            .chunks(self.block_size)
            .map(|block| {
                if is_zero(block) {
                    self.zero_md
                } else {
                    running.update(block);
                    running.finish_reset()
                }
            })
            .collect();
        Piece {
            offset,
            len: data.len() as u64,
            head: head.to_vec(),
            digests,
            tail: tail.to_vec(),
        }
    }
}

/// A range of content with its whole blocks already hashed
/// ([`Config::prehash`]).
#[derive(Debug, Clone)]
pub struct Piece {
    /// Its stream position.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    head: Vec<u8>,
    digests: Vec<Md>,
    tail: Vec<u8>,
}

/// Block digests of zero blocks added to the outer hash at once.
const ZERO_BATCH: usize = 1024;

/// A blkhash being computed, fed its content in order: bytes, zero runs
/// or prehashed pieces.
pub struct Blkhash {
    config: Config,
    outer: algorithm::Running,
    block: algorithm::Running,
    /// The start of a block not yet complete.
    pending: Vec<u8>,
    /// Bytes added so far.
    length: u64,
    /// `ZERO_BATCH` copies of the zero block's digest.
    zeros: Vec<u8>,
}

impl Blkhash {
    /// An empty blkhash built as `config` says.
    pub fn new(config: Config) -> Blkhash {
        Blkhash {
            config,
            outer: config.algorithm.start(),
            block: config.algorithm.start(),
            pending: Vec::with_capacity(config.block_size),
            length: 0,
            zeros: config.zero_md.as_bytes().repeat(ZERO_BATCH),
        }
    }

    /// Its construction.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bytes added so far: the stream position of the next byte.
    pub fn position(&self) -> u64 {
        self.length
    }

    /// Adds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        let b = self.config.block_size;
        self.length += data.len() as u64;
        if !self.pending.is_empty() {
            let n = (b - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == b {
                self.flush_pending();
            }
        }
        while data.len() >= b {
            let md = if is_zero(&data[..b]) {
                self.config.zero_md
            } else {
                self.block.update(&data[..b]);
                self.block.finish_reset()
            };
            self.outer.update(md.as_bytes());
            data = &data[b..];
        }
        self.pending.extend_from_slice(data);
    }

    /// Adds `len` bytes of zeros, without hashing whole zero blocks.
    pub fn zero(&mut self, mut len: u64) {
        let b = self.config.block_size as u64;
        if !self.pending.is_empty() {
            let n = (b - self.pending.len() as u64).min(len);
            self.pending.resize(self.pending.len() + n as usize, 0);
            self.length += n;
            len -= n;
            if self.pending.len() as u64 != b {
                return;
            }
            self.flush_pending();
        }
        self.length += len / b * b;
        self.zero_blocks(len / b);
        let rest = (len % b) as usize;
        self.pending.resize(rest, 0);
        self.length += rest as u64;
    }

    /// Adds a prehashed piece; it must start at [`Self::position`].
    pub fn add(&mut self, piece: &Piece) {
        debug_assert_eq!(piece.offset, self.length, "pieces are added in order");
        self.update(&piece.head);
        debug_assert!(piece.digests.is_empty() || self.pending.is_empty());
        for md in &piece.digests {
            self.outer.update(md.as_bytes());
        }
        self.length += (piece.digests.len() * self.config.block_size) as u64;
        self.update(&piece.tail);
    }

    /// The digest.
    pub fn finish(mut self) -> Md {
        if !self.pending.is_empty() {
            let md = self.config.algorithm.digest(&self.pending);
            self.outer.update(md.as_bytes());
        }
        self.outer.update(&self.length.to_le_bytes());
        self.outer.finish_reset()
    }

    fn flush_pending(&mut self) {
        let md = if is_zero(&self.pending) {
            self.config.zero_md
        } else {
            self.block.update(&self.pending);
            self.block.finish_reset()
        };
        self.outer.update(md.as_bytes());
        self.pending.clear();
    }

    fn zero_blocks(&mut self, mut count: u64) {
        let md_len = self.config.zero_md.as_bytes().len();
        while count > 0 {
            let n = count.min(ZERO_BATCH as u64) as usize;
            self.outer.update(&self.zeros[..n * md_len]);
            count -= n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The construction written out plainly, for the others to match.
    fn plain(config: &Config, data: &[u8]) -> Md {
        let a = config.algorithm();
        let mut outer = Vec::new();
        for block in data.chunks(config.block_size()) {
            outer.extend_from_slice(a.digest(block).as_bytes());
        }
        outer.extend_from_slice(&(data.len() as u64).to_le_bytes());
        a.digest(&outer)
    }

    fn content(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..len)
            .map(|i| {
                if (i / 3000) % 3 == 0 {
                    0
                } else {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn every_way_of_feeding_gives_the_plain_construction() {
        let config = Config::new(Algorithm::Sha256, 4096);
        for len in [0, 1, 4095, 4096, 4097, 50_000] {
            let data = content(len);
            let want = plain(&config, &data);
            let mut whole = Blkhash::new(config);
            whole.update(&data);
            assert_eq!(whole.finish(), want, "update, {len}");
            for step in [1usize, 777, 4096, 10_000] {
                let mut bytes = Blkhash::new(config);
                let mut pieces = Blkhash::new(config);
                let mut mixed = Blkhash::new(config);
                for (i, c) in data.chunks(step).enumerate() {
                    bytes.update(c);
                    pieces.add(&config.prehash(pieces.position(), c));
                    if is_zero(c) && i % 2 == 0 {
                        mixed.zero(c.len() as u64);
                    } else {
                        mixed.add(&config.prehash(mixed.position(), c));
                    }
                }
                assert_eq!(bytes.finish(), want, "bytes by {step}, {len}");
                assert_eq!(pieces.finish(), want, "pieces by {step}, {len}");
                assert_eq!(mixed.finish(), want, "mixed by {step}, {len}");
            }
        }
    }

    #[test]
    fn zero_runs_equal_zero_bytes() {
        let config = Config::new(Algorithm::Blake3, 4096);
        for (before, run) in [(0usize, 0u64), (0, 5000), (100, 4096 * 3000 + 7), (4095, 1)] {
            let mut a = Blkhash::new(config);
            let mut b = Blkhash::new(config);
            a.update(&vec![1u8; before]);
            b.update(&vec![1u8; before]);
            a.zero(run);
            b.update(&vec![0u8; run as usize]);
            assert_eq!(a.finish(), b.finish(), "{before} then {run} zeros");
        }
    }
}
