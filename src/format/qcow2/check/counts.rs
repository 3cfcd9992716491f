//! The check's reference counters, one per host cluster, kept sparse and
//! small: memory follows the clusters actually referenced, not the file's
//! length (a sparse file may claim terabytes it does not hold), and a
//! referenced cluster costs one byte (counts from 255 up, which no sane
//! image has many of, spill into a map).

use std::collections::HashMap;

/// log2 of the clusters per chunk of counters (32 Ki clusters, 32 KiB).
const CHUNK_BITS: u32 = 15;
const CHUNK: u64 = 1 << CHUNK_BITS;
/// A byte holding this value means "the count is in the spill map".
const SPILLED: u8 = u8::MAX;

/// Reference counts by host cluster number; every cluster starts at zero.
#[derive(Debug, Default)]
pub(super) struct ClusterCounts {
    /// Chunks of one-byte counters, by chunk number, made on first use.
    chunks: HashMap<u64, Box<[u8]>>,
    /// The chunk last written to, out of the map: the check counts mostly
    /// in host order, so this spares a lookup per reference.
    hot: Option<(u64, Box<[u8]>)>,
    /// Counts of 255 and above.
    spilled: HashMap<u64, u64>,
}

impl ClusterCounts {
    /// log2 of the clusters per chunk.
    pub fn chunk_bits(&self) -> u32 {
        CHUNK_BITS
    }

    fn chunk(&self, index: u64) -> Option<&[u8]> {
        match &self.hot {
            Some((i, c)) if *i == index => Some(c),
            _ => self.chunks.get(&index).map(|c| &c[..]),
        }
    }

    /// The count of `cluster`.
    pub fn get(&self, cluster: u64) -> u64 {
        match self.chunk(cluster >> CHUNK_BITS) {
            Some(c) if c[(cluster % CHUNK) as usize] == SPILLED => self.spilled[&cluster],
            Some(c) => c[(cluster % CHUNK) as usize] as u64,
            None => 0,
        }
    }

    /// The counter byte of `cluster`, its chunk made if missing.
    fn byte_mut(&mut self, cluster: u64) -> &mut u8 {
        let index = cluster >> CHUNK_BITS;
        if self.hot.as_ref().is_none_or(|(i, _)| *i != index) {
            if let Some((i, c)) = self.hot.take() {
                self.chunks.insert(i, c);
            }
            let chunk = self
                .chunks
                .remove(&index)
                .unwrap_or_else(|| vec![0; CHUNK as usize].into_boxed_slice());
            self.hot = Some((index, chunk));
        }
        let (_, chunk) = self.hot.as_mut().expect("just made hot");
        &mut chunk[(cluster % CHUNK) as usize]
    }

    /// Sets the count of `cluster` to `n`.
    pub fn set(&mut self, cluster: u64, n: u64) {
        if n == 0 && self.chunk_is_empty(cluster >> CHUNK_BITS) {
            return;
        }
        let byte = self.byte_mut(cluster);
        let was_spilled = *byte == SPILLED;
        if n >= SPILLED as u64 {
            *byte = SPILLED;
            self.spilled.insert(cluster, n);
        } else {
            *byte = n as u8;
            if was_spilled {
                self.spilled.remove(&cluster);
            }
        }
    }

    /// Adds one to the count of `cluster` (saturating).
    pub fn increment(&mut self, cluster: u64) {
        let byte = self.byte_mut(cluster);
        if *byte < SPILLED - 1 {
            *byte += 1;
        } else {
            let n = self.get(cluster);
            self.set(cluster, n.saturating_add(1));
        }
    }

    /// Takes one from the count of `cluster` (not below zero).
    pub fn decrement(&mut self, cluster: u64) {
        let n = self.get(cluster);
        if n > 0 {
            self.set(cluster, n - 1);
        }
    }

    /// Whether no cluster of chunk `index` (clusters `index << chunk_bits()`
    /// and on) was ever counted: then all of them are zero.
    pub fn chunk_is_empty(&self, index: u64) -> bool {
        self.chunk(index).is_none()
    }

    /// One past the highest cluster with a count above zero (0 if none).
    pub fn used_end(&self) -> u64 {
        let mut all: Vec<(u64, &[u8])> = self.chunks.iter().map(|(&i, c)| (i, &c[..])).collect();
        all.extend(self.hot.as_ref().map(|(i, c)| (*i, &c[..])));
        all.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
        all.iter()
            .find_map(|&(index, c)| {
                c.iter()
                    .rposition(|&b| b != 0)
                    .map(|at| (index << CHUNK_BITS) + at as u64 + 1)
            })
            .unwrap_or(0)
    }

    /// Bytes of counters held (the chunks; the spill map is not counted).
    #[cfg(test)]
    pub fn footprint(&self) -> u64 {
        (self.chunks.len() + self.hot.iter().count()) as u64 * CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_up_and_down_across_the_spill_threshold() {
        let mut c = ClusterCounts::default();
        for _ in 0..300 {
            c.increment(7);
        }
        assert_eq!(c.get(7), 300);
        for _ in 0..100 {
            c.decrement(7);
        }
        assert_eq!(c.get(7), 200);
        assert!(c.spilled.is_empty(), "back below the threshold");
        c.set(7, u64::MAX);
        c.increment(7);
        assert_eq!(c.get(7), u64::MAX, "saturates");
        c.set(7, 0);
        c.decrement(7);
        assert_eq!(c.get(7), 0, "never below zero");
        assert_eq!(c.get(8), 0);
    }

    #[test]
    fn memory_follows_the_referenced_clusters_not_their_spread() {
        // A sparse file claiming 2^40 clusters (64 PiB of 64 KiB clusters),
        // of which 256 are referenced, one every 2^32.
        let mut c = ClusterCounts::default();
        let chunk = 1u64 << c.chunk_bits();
        for k in 0..256u64 {
            c.increment(k << 32);
        }
        assert_eq!(c.footprint(), 256 * chunk);
        assert!(c.footprint() <= 256 << 15, "{} bytes", c.footprint());
        assert_eq!(c.used_end(), (255 << 32) + 1);
        assert!(c.chunk_is_empty(1));
        assert!(!c.chunk_is_empty(1 << (32 - c.chunk_bits())));
        c.set(3 << 32, 0);
        c.set(1 << 39, 0);
        assert_eq!(
            c.footprint(),
            256 * chunk,
            "setting a zero allocates nothing"
        );
        // Every cluster of a small, dense image costs one byte.
        let mut d = ClusterCounts::default();
        (0..1 << 23).for_each(|k| d.increment(k));
        assert_eq!(d.footprint(), 1 << 23);
    }
}
