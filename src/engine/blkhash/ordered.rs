//! Parts of a blkhash that arrive out of order (from the copy engine's
//! readers, in any order and from any thread) are added in stream order.

use super::{Blkhash, Md, Piece};
use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// One part of the content.
#[derive(Debug, Clone)]
pub enum Part {
    /// Data whose whole blocks are hashed.
    Data(Piece),
    /// This many bytes of zeros.
    Zero(u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Data(p) => p.len,
            Part::Zero(n) => *n,
        }
    }
}

struct State {
    hash: Blkhash,
    /// Parts that came before the ones ahead of them, by stream position.
    waiting: BTreeMap<u64, Part>,
}

/// A blkhash fed in parts that may arrive in any order; each is added as
/// soon as everything before it is. Parts waiting for a gap to be filled
/// are kept (their whole blocks as digests only).
pub struct Ordered {
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ordered {
    /// Starts from `hash` (usually empty).
    pub fn new(hash: Blkhash) -> Ordered {
        Ordered {
            state: Mutex::new(State {
                hash,
                waiting: BTreeMap::new(),
            }),
        }
    }

    /// The construction it computes.
    pub fn config(&self) -> super::Config {
        *lock(&self.state).hash.config()
    }

    /// Adds the part at stream position `offset`.
    pub fn insert(&self, offset: u64, part: Part) {
        let mut s = lock(&self.state);
        s.waiting.insert(offset, part);
        loop {
            let at = s.hash.position();
            let Some(part) = s.waiting.remove(&at) else {
                break;
            };
            match &part {
                Part::Data(p) => s.hash.add(p),
                Part::Zero(n) => s.hash.zero(*n),
            }
            debug_assert_eq!(s.hash.position(), at + part.len());
        }
    }

    /// The digest of the first `len` bytes, once every part up to there
    /// has come; an error names the first gap.
    pub fn finish(self, len: u64) -> Result<Md> {
        let s = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if s.hash.position() != len || !s.waiting.is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the checksum is incomplete: nothing was hashed at offset {} of {len}",
                    s.hash.position()
                ),
            ));
        }
        Ok(s.hash.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, Config};
    use super::*;

    #[test]
    fn parts_in_any_order_give_the_digest_of_the_content() {
        let config = Config::new(Algorithm::Sha256, 1024);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut whole = Blkhash::new(config);
        whole.update(&data);
        let want = whole.finish();
        let cuts = [0usize, 100, 1024, 5000, 5001, 12_288, 20_000];
        let mut parts: Vec<(u64, Part)> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                (a as u64, Part::Data(config.prehash(a as u64, &data[a..b])))
            })
            .collect();
        parts.reverse();
        let ordered = Ordered::new(Blkhash::new(config));
        for (at, part) in parts {
            ordered.insert(at, part);
        }
        assert_eq!(ordered.finish(data.len() as u64).unwrap(), want);
    }

    #[test]
    fn a_gap_is_an_error() {
        let config = Config::new(Algorithm::Sha256, 1024);
        let ordered = Ordered::new(Blkhash::new(config));
        ordered.insert(0, Part::Zero(100));
        ordered.insert(200, Part::Zero(100));
        let e = ordered.finish(300).unwrap_err().to_string();
        assert!(e.contains("offset 100 of 300"), "{e}");
    }
}
