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

/// The sector size `-S` counts in.
const SECTOR: usize = 512;

/// Splits `buf` (which starts at guest offset `base`, sector-aligned) into
/// data and zero runs as qemu-img's `-S MIN` does (`min_sparse` bytes; 0
/// means everything is data), so both tools leave the same holes:
/// - a buffer that is all zeros is one zero run, whatever its length;
/// - a zero run at the start of what is left is a zero run, its end
///   rounded down to the alignment (the largest power of two sectors not
///   above `min_sparse`);
/// - after data, zero runs shorter than `min_sparse` (or than what is left
///   of the buffer) stay data, so a few zero sectors do not split writes;
/// - data runs end rounded up to the alignment.
pub fn segments(buf: &[u8], base: u64, min_sparse: usize) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    if buf.is_empty() {
        return out;
    }
    if min_sparse == 0 {
        out.push(Segment {
            start: 0,
            len: buf.len(),
            zero: false,
        });
        return out;
    }
    let sectors = buf.len().div_ceil(SECTOR);
    let zero: Vec<bool> = (0..sectors)
        .map(|k| is_zero(&buf[k * SECTOR..((k + 1) * SECTOR).min(buf.len())]))
        .collect();
    let min = min_sparse.div_ceil(SECTOR);
    let alignment = 1usize << (usize::BITS - 1 - min.leading_zeros());
    let first = (base / SECTOR as u64) as usize;
    let mut pos = 0;
    while pos < sectors {
        let (n, is_data) = allocated_min(&zero[pos..], first + pos, min, alignment);
        let (start, end) = (pos * SECTOR, ((pos + n) * SECTOR).min(buf.len()));
        match out.last_mut() {
            Some(last) if last.zero != is_data => last.len += end - start,
            _ => out.push(Segment {
                start,
                len: end - start,
                zero: !is_data,
            }),
        }
        pos += n;
    }
    out
}

/// The first run of `zero` (a flag per sector; the run starts at sector
/// `at` of the guest): its length in sectors and whether it is data, with
/// data ends rounded up and zero ends rounded down to `alignment`.
fn allocated(zero: &[bool], at: usize, alignment: usize) -> (usize, bool) {
    let n = zero.len();
    let is_zero = zero[0];
    let mut i = zero.iter().position(|&z| z != is_zero).unwrap_or(n);
    if i == n {
        return (n, !is_zero);
    }
    let tail = (at + i) & (alignment - 1);
    if tail == 0 {
        return (i, !is_zero);
    }
    if is_zero && i > tail {
        // Leave the unaligned end of the zero run to the data after it.
        return (i - tail, false);
    }
    // Data (or a zero run too short to align): round the end up.
    i = (i + alignment - tail).min(n);
    (i, true)
}

/// As [`allocated`], but a data run takes in the zero runs after it that
/// are shorter than `min` sectors (or than the rest of the buffer).
fn allocated_min(zero: &[bool], at: usize, min: usize, alignment: usize) -> (usize, bool) {
    let min = min.min(zero.len());
    let (first, is_data) = allocated(zero, at, alignment);
    if !is_data {
        return (first, false);
    }
    let (mut used, mut checked) = (first, first);
    while checked < zero.len() {
        let (n, data) = allocated(&zero[checked..], at + checked, alignment);
        checked += n;
        if data {
            used = checked;
        } else if n >= min {
            break;
        }
    }
    (used, true)
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
        // A buffer that starts mid-block: its zeros up to the next block
        // boundary are a hole, as qemu-img leaves them.
        let s = segments(&buf[512..], 512, 4096);
        assert_eq!(
            &s[..2],
            &[
                Segment {
                    start: 0,
                    len: 3584,
                    zero: true
                },
                Segment {
                    start: 3584,
                    len: 4096,
                    zero: false
                }
            ]
        );
    }

    #[test]
    fn short_zero_runs_after_data_stay_data() {
        // -S 64k: 8 KiB of zeros between data are written, a 128 KiB run
        // is not; a buffer of zeros alone is a hole whatever -S says.
        let mut buf = vec![0u8; 256 << 10];
        buf[0] = 1;
        buf[16 << 10] = 1;
        let s = segments(&buf, 0, 64 << 10);
        assert_eq!(
            s,
            vec![
                Segment {
                    start: 0,
                    len: 64 << 10,
                    zero: false
                },
                Segment {
                    start: 64 << 10,
                    len: 192 << 10,
                    zero: true
                }
            ]
        );
        assert_eq!(
            segments(&buf[128 << 10..], 128 << 10, 1 << 20),
            vec![Segment {
                start: 0,
                len: 128 << 10,
                zero: true
            }]
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
