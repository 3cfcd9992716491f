//! Fast detection of zero bytes in buffers.

/// Whether every byte of `buf` is zero (16 bytes at a time).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut words = buf.chunks_exact(16);
    let any = words.by_ref().fold(0u128, |acc, w| {
        acc | u128::from_ne_bytes(w.try_into().expect("16 bytes"))
    });
    any == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// A run of a buffer: data to write, or zeros to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Start within the buffer.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
    /// Whether the run is all zeros.
    pub zero: bool,
}

/// Splits `buf` (which starts at guest offset `base`) into data and zero
/// runs, looking at blocks of `granularity` bytes aligned to guest offsets,
/// as qemu-img's `-S`: only whole zero blocks become zero runs.
pub fn segments(buf: &[u8], base: u64, granularity: usize) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |start: usize, len: usize, zero: bool| match out.last_mut() {
        Some(last) if last.zero == zero && last.start + last.len == start => last.len += len,
        _ => out.push(Segment { start, len, zero }),
    };
    if granularity == 0 {
        if !buf.is_empty() {
            push(0, buf.len(), false);
        }
        return out;
    }
    let mut pos = 0usize;
    while pos < buf.len() {
        let aligned_end = ((base + pos as u64) / granularity as u64 + 1) * granularity as u64;
        let end = ((aligned_end - base) as usize).min(buf.len());
        let block = &buf[pos..end];
        let whole = end - pos == granularity;
        push(pos, end - pos, whole && is_zero(block));
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_zero_blocks_aligned_to_guest_offsets() {
        let mut buf = vec![0u8; 16384];
        buf[5000] = 1;
        let s = segments(&buf, 0, 4096);
        assert_eq!(
            s,
            vec![
                Segment {
                    start: 0,
                    len: 4096,
                    zero: true
                },
                Segment {
                    start: 4096,
                    len: 4096,
                    zero: false
                },
                Segment {
                    start: 8192,
                    len: 8192,
                    zero: true
                },
            ]
        );
        // A buffer that starts mid-block: the partial block is data.
        let s = segments(&buf[100..], 100, 4096);
        assert_eq!(
            s[0],
            Segment {
                start: 0,
                len: 3996 + 4096,
                zero: false
            }
        );
    }

    #[test]
    fn zero_granularity_means_all_data() {
        assert_eq!(
            segments(&[0u8; 100], 0, 0),
            vec![Segment {
                start: 0,
                len: 100,
                zero: false
            }]
        );
        assert!(
            is_zero(&[0u8; 33])
                && !is_zero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }
}
