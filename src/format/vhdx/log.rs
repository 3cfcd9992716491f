//! The VHDX log: a circular buffer of 4 KiB sectors holding entries
//! (header, descriptors, data sectors), each entry checksummed with
//! CRC-32C and tagged with the header's log GUID. Finding the active
//! sequence and turning it into the writes it stands for; applying them
//! is the opener's (to the file, or in memory for a read-only open).

use super::header::{checksum, guid_at, le32, le64, Guid};
use crate::error::{Error, Result};

/// Bytes of a log sector.
pub const SECTOR: usize = 4096;
/// The largest file offset a log entry may name (beyond any real disk).
const MAX_FILE_OFFSET: u64 = 1 << 52;

/// One write a log entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write these 4 KiB at `offset`.
    Data {
        /// The target (4 KiB aligned).
        offset: u64,
        /// The sector's new content.
        bytes: Box<[u8]>,
    },
    /// Write `len` zero bytes at `offset`.
    Zero {
        /// The target (4 KiB aligned).
        offset: u64,
        /// A multiple of 4 KiB.
        len: u64,
    },
}

impl Op {
    /// The file range the op writes.
    pub fn range(&self) -> (u64, u64) {
        match self {
            Op::Data { offset, bytes } => (*offset, bytes.len() as u64),
            Op::Zero { offset, len } => (*offset, *len),
        }
    }

    /// Applies the op to `buf`, which holds the file's bytes at `at`.
    pub fn patch(&self, buf: &mut [u8], at: u64) {
        let (o, l) = self.range();
        let start = o.max(at);
        let end = (o + l).min(at + buf.len() as u64);
        if start >= end {
            return;
        }
        let dst = &mut buf[(start - at) as usize..(end - at) as usize];
        match self {
            Op::Data { bytes, .. } => {
                dst.copy_from_slice(&bytes[(start - o) as usize..(end - o) as usize])
            }
            Op::Zero { .. } => dst.fill(0),
        }
    }
}

/// The active sequence of a log: what to write, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The writes, in the order they must be applied.
    pub ops: Vec<Op>,
    /// The file size every write before the newest entry had reached.
    pub flushed_file_offset: u64,
    /// The file size when the newest entry was written.
    pub last_file_offset: u64,
    /// Entries in the sequence.
    pub entries: usize,
}

/// A valid entry found in the log.
#[derive(Debug)]
struct Entry {
    pos: usize,
    len: usize,
    tail: usize,
    sequence: u64,
    flushed: u64,
    last: u64,
    ops: Vec<Op>,
}

/// Copies `len` bytes of the circular `log` from `pos`.
fn circular(log: &[u8], pos: usize, len: usize) -> Vec<u8> {
    let first = len.min(log.len() - pos);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&log[pos..pos + first]);
    v.extend_from_slice(&log[..len - first]);
    v
}

/// The entry at `pos` if it is valid for `guid`; `budget` bounds the
/// bytes checksummed over the whole search.
fn entry_at(log: &[u8], pos: usize, guid: &Guid, budget: &mut usize) -> Result<Option<Entry>> {
    let h = &log[pos..pos + SECTOR];
    if &h[..4] != b"loge" || guid_at(h, 32) != *guid {
        return Ok(None);
    }
    let len = le32(h, 8) as usize;
    let tail = le32(h, 12) as usize;
    let sequence = le64(h, 16);
    let count = le32(h, 24) as usize;
    let (flushed, last) = (le64(h, 48), le64(h, 56));
    if len == 0
        || len % SECTOR != 0
        || len > log.len()
        || tail % SECTOR != 0
        || tail >= log.len()
        || sequence == 0
        || count > len / 32
        || flushed > MAX_FILE_OFFSET
        || last > MAX_FILE_OFFSET
    {
        return Ok(None);
    }
    let desc_bytes = (64 + 32 * count).div_ceil(SECTOR) * SECTOR;
    if desc_bytes > len {
        return Ok(None);
    }
    if *budget < len {
        return Err(Error::corrupt(
            "the VHDX log holds too many overlapping entries to search",
        ));
    }
    *budget -= len;
    let e = circular(log, pos, len);
    if checksum(&e, 4) != le32(&e, 4) {
        return Ok(None);
    }
    let mut ops = Vec::with_capacity(count);
    let mut data = desc_bytes;
    for i in 0..count {
        let d = &e[64 + 32 * i..96 + 32 * i];
        if le64(d, 24) != sequence {
            return Ok(None);
        }
        let offset = le64(d, 16);
        if offset % SECTOR as u64 != 0 || offset > MAX_FILE_OFFSET {
            return Ok(None);
        }
        match &d[..4] {
            b"desc" => {
                if data + SECTOR > len {
                    return Ok(None);
                }
                let s = &e[data..data + SECTOR];
                let seq = (le32(s, 4) as u64) << 32 | le32(s, SECTOR - 4) as u64;
                if &s[..4] != b"data" || seq != sequence {
                    return Ok(None);
                }
                let mut bytes = vec![0u8; SECTOR].into_boxed_slice();
                bytes[..8].copy_from_slice(&d[8..16]);
                bytes[8..SECTOR - 4].copy_from_slice(&s[8..SECTOR - 4]);
                bytes[SECTOR - 4..].copy_from_slice(&d[4..8]);
                ops.push(Op::Data { offset, bytes });
                data += SECTOR;
            }
            b"zero" => {
                let zlen = le64(d, 8);
                if zlen % SECTOR as u64 != 0 || zlen > MAX_FILE_OFFSET - offset {
                    return Ok(None);
                }
                ops.push(Op::Zero { offset, len: zlen });
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(Entry {
        pos,
        len,
        tail,
        sequence,
        flushed,
        last,
        ops,
    }))
}

/// Finds the active sequence of `log` (the log region's bytes) for the
/// header's `guid`: the run of adjacent valid entries, each one sequence
/// number after the previous, from the newest entry's tail to it, with
/// the highest sequence number. `None` when no entry is valid.
pub fn find(log: &[u8], guid: &Guid) -> Result<Option<Replay>> {
    if log.is_empty() || log.len() % SECTOR != 0 {
        return Err(Error::corrupt(format!(
            "the VHDX log's length {} is not a positive multiple of 4 KiB",
            log.len()
        )));
    }
    // Valid entries do not overlap: four times the log is room enough
    // for those and for entries whose checksum fails.
    let mut budget = log.len().saturating_mul(4).saturating_add(1 << 20);
    let mut found: Vec<Option<Entry>> = Vec::new();
    for pos in (0..log.len()).step_by(SECTOR) {
        found.push(entry_at(log, pos, guid, &mut budget)?);
    }
    let mut heads: Vec<&Entry> = found.iter().flatten().collect();
    heads.sort_by_key(|e| std::cmp::Reverse(e.sequence));
    let mut steps = found.len().saturating_mul(8).saturating_add(1 << 16);
    for head in heads {
        let mut chain: Vec<&Entry> = Vec::new();
        let Some(mut cur) = found[head.tail / SECTOR].as_ref() else {
            continue;
        };
        let complete = loop {
            chain.push(cur);
            if cur.pos == head.pos {
                break cur.sequence == head.sequence;
            }
            if chain.len() > found.len() || steps == 0 {
                break false;
            }
            steps -= 1;
            let next = (cur.pos + cur.len) % log.len();
            match found[next / SECTOR].as_ref() {
                Some(n) if n.sequence == cur.sequence.wrapping_add(1) => cur = n,
                _ => break false,
            }
        };
        if complete {
            return Ok(Some(Replay {
                ops: chain.iter().flat_map(|e| e.ops.iter().cloned()).collect(),
                flushed_file_offset: head.flushed,
                last_file_offset: head.last,
                entries: chain.len(),
            }));
        }
        if steps == 0 {
            return Err(Error::corrupt(
                "the VHDX log's entries form no sequence that can be followed",
            ));
        }
    }
    Ok(None)
}

/// Builds one log entry as QEMU writes them (a header sector with the
/// descriptors, then a data sector per 4 KiB write): sequence number
/// `sequence`, the oldest entry of its sequence at log offset `tail`, the
/// file `file_size` bytes long, and `writes` of whole 4 KiB sectors. For
/// tests (qimg itself writes the BAT in place).
pub fn encode_entry(
    guid: &Guid,
    sequence: u64,
    tail: u32,
    file_size: u64,
    writes: &[(u64, &[u8])],
) -> Vec<u8> {
    let desc_bytes = (64 + 32 * writes.len()).div_ceil(SECTOR) * SECTOR;
    let len = desc_bytes + SECTOR * writes.len();
    let mut e = vec![0u8; len];
    e[..4].copy_from_slice(b"loge");
    e[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    e[12..16].copy_from_slice(&tail.to_le_bytes());
    e[16..24].copy_from_slice(&sequence.to_le_bytes());
    e[24..28].copy_from_slice(&(writes.len() as u32).to_le_bytes());
    e[32..48].copy_from_slice(guid);
    e[48..56].copy_from_slice(&file_size.to_le_bytes());
    e[56..64].copy_from_slice(&file_size.to_le_bytes());
    for (i, (offset, bytes)) in writes.iter().enumerate() {
        assert_eq!(bytes.len(), SECTOR, "log writes are whole sectors");
        let d = 64 + 32 * i;
        e[d..d + 4].copy_from_slice(b"desc");
        e[d + 4..d + 8].copy_from_slice(&bytes[SECTOR - 4..]);
        e[d + 8..d + 16].copy_from_slice(&bytes[..8]);
        e[d + 16..d + 24].copy_from_slice(&offset.to_le_bytes());
        e[d + 24..d + 32].copy_from_slice(&sequence.to_le_bytes());
        let s = desc_bytes + SECTOR * i;
        e[s..s + 4].copy_from_slice(b"data");
        e[s + 4..s + 8].copy_from_slice(&((sequence >> 32) as u32).to_le_bytes());
        e[s + 8..s + SECTOR - 4].copy_from_slice(&bytes[8..SECTOR - 4]);
        e[s + SECTOR - 4..s + SECTOR].copy_from_slice(&(sequence as u32).to_le_bytes());
    }
    super::header::seal(&mut e, 4);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: Guid = [9; 16];

    fn sector(fill: u8) -> Vec<u8> {
        vec![fill; SECTOR]
    }

    #[test]
    fn an_empty_log_has_no_sequence() {
        assert_eq!(find(&vec![0u8; 1 << 20], &GUID).expect("find"), None);
    }

    #[test]
    fn the_newest_complete_sequence_is_replayed_in_order() {
        let mut log = vec![0u8; 64 * SECTOR];
        let a = sector(0xaa);
        let b = sector(0xbb);
        let e1 = encode_entry(&GUID, 5, 0, 1 << 24, &[(0x20_0000, &a)]);
        let e2 = encode_entry(&GUID, 6, 0, 1 << 25, &[(0x20_0000, &b)]);
        log[..e1.len()].copy_from_slice(&e1);
        log[e1.len()..e1.len() + e2.len()].copy_from_slice(&e2);
        let r = find(&log, &GUID).expect("find").expect("a sequence");
        assert_eq!(r.entries, 2);
        assert_eq!(r.last_file_offset, 1 << 25);
        let mut buf = vec![0u8; SECTOR];
        for op in &r.ops {
            op.patch(&mut buf, 0x20_0000);
        }
        assert_eq!(buf, b);
        // Another GUID, or a broken checksum: nothing to replay.
        assert_eq!(find(&log, &[1; 16]).expect("find"), None);
        log[100] ^= 1;
        log[e1.len() + 100] ^= 1;
        assert_eq!(find(&log, &GUID).expect("find"), None);
    }

    #[test]
    fn an_entry_may_wrap_around_the_end() {
        let mut log = vec![0u8; 4 * SECTOR];
        let a = sector(0x5a);
        let e = encode_entry(&GUID, 1, 3 * SECTOR as u32, 1 << 24, &[(0x1000, &a)]);
        log[3 * SECTOR..].copy_from_slice(&e[..SECTOR]);
        log[..SECTOR].copy_from_slice(&e[SECTOR..]);
        let r = find(&log, &GUID).expect("find").expect("a sequence");
        assert_eq!(
            r.ops,
            vec![Op::Data {
                offset: 0x1000,
                bytes: a.into()
            }]
        );
    }

    #[test]
    fn a_tail_loop_is_not_followed_forever() {
        // Two entries whose tails name each other and whose sequence
        // numbers do not follow.
        let mut log = vec![0u8; 2 * SECTOR];
        let e1 = encode_entry(&GUID, 3, SECTOR as u32, 0, &[]);
        let e2 = encode_entry(&GUID, 9, 0, 0, &[]);
        log[..SECTOR].copy_from_slice(&e1);
        log[SECTOR..].copy_from_slice(&e2);
        assert_eq!(find(&log, &GUID).expect("find"), None);
    }
}
