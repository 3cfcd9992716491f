//! The internal snapshot table and the bitmap directory: pure parsers.

use crate::error::{Error, Result};

/// Size of the fixed part of a snapshot table entry.
pub const SNAPSHOT_FIXED_LEN: usize = 40;
/// Largest extra data QEMU accepts in a snapshot entry.
pub const MAX_SNAPSHOT_EXTRA: u32 = 1024;

/// One internal snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Offset of the snapshot's L1 table copy.
    pub l1_table_offset: u64,
    /// Entries in that L1 table.
    pub l1_size: u32,
    /// The unique ID ("1", "2", ...).
    pub id: String,
    /// The name (tag).
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub date_sec: u32,
    /// Creation time, nanoseconds part.
    pub date_nsec: u32,
    /// Guest run time in nanoseconds.
    pub vm_clock_nsec: u64,
    /// Size of the saved VM state.
    pub vm_state_size: u64,
    /// Virtual disk size at the time of the snapshot, when recorded.
    pub disk_size: Option<u64>,
    /// Instruction count, when recorded and not -1.
    pub icount: Option<u64>,
    /// Bytes the entry takes in the snapshot table (padded to 8).
    pub entry_len: u64,
}

/// The lengths the fixed part of a snapshot entry announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLayout {
    /// Bytes of extra data.
    pub extra: usize,
    /// Bytes of the ID string.
    pub id: usize,
    /// Bytes of the name.
    pub name: usize,
}

impl SnapshotLayout {
    /// Bytes the variable part occupies (without padding).
    pub fn variable_len(&self) -> usize {
        self.extra + self.id + self.name
    }
    /// Bytes the whole entry occupies, padded to 8.
    pub fn entry_len(&self) -> usize {
        (SNAPSHOT_FIXED_LEN + self.variable_len()).div_ceil(8) * 8
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes(b[o..o + 2].try_into().expect("2 bytes"))
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Reads the lengths from the fixed part of an entry.
pub fn snapshot_layout(fixed: &[u8]) -> Result<SnapshotLayout> {
    if fixed.len() < SNAPSHOT_FIXED_LEN {
        return Err(Error::corrupt("snapshot table entry is truncated"));
    }
    let extra = be32(fixed, 36);
    if extra > MAX_SNAPSHOT_EXTRA {
        return Err(Error::corrupt(format!(
            "snapshot extra data too large ({extra} bytes)"
        )));
    }
    Ok(SnapshotLayout {
        extra: extra as usize,
        id: be16(fixed, 12) as usize,
        name: be16(fixed, 14) as usize,
    })
}

/// Parses one entry from its bytes (fixed part followed by the variable part).
pub fn parse_snapshot(entry: &[u8]) -> Result<Snapshot> {
    let layout = snapshot_layout(entry)?;
    if entry.len() < SNAPSHOT_FIXED_LEN + layout.variable_len() {
        return Err(Error::corrupt("snapshot table entry is truncated"));
    }
    let extra = &entry[SNAPSHOT_FIXED_LEN..SNAPSHOT_FIXED_LEN + layout.extra];
    let id_start = SNAPSHOT_FIXED_LEN + layout.extra;
    let name_start = id_start + layout.id;
    let vm_state_32 = be32(entry, 32) as u64;
    let vm_state_size = if extra.len() >= 8 {
        be64(extra, 0)
    } else {
        vm_state_32
    };
    let disk_size = (extra.len() >= 16).then(|| be64(extra, 8));
    let icount = if extra.len() >= 24 {
        Some(be64(extra, 16)).filter(|&v| v != u64::MAX)
    } else {
        None
    };
    Ok(Snapshot {
        l1_table_offset: be64(entry, 0),
        l1_size: be32(entry, 8),
        id: String::from_utf8_lossy(&entry[id_start..name_start]).into_owned(),
        name: String::from_utf8_lossy(&entry[name_start..name_start + layout.name]).into_owned(),
        date_sec: be32(entry, 16),
        date_nsec: be32(entry, 20),
        vm_clock_nsec: be64(entry, 24),
        vm_state_size,
        disk_size,
        icount,
        entry_len: layout.entry_len() as u64,
    })
}

/// One persistent dirty bitmap, as `info` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// The bitmap's name.
    pub name: String,
    /// Bytes per bit.
    pub granularity: u64,
    /// The in_use flag (the bitmap may be inconsistent).
    pub in_use: bool,
    /// The auto flag (tracks writes automatically).
    pub auto: bool,
    /// Offset of the bitmap table.
    pub table_offset: u64,
    /// Entries in the bitmap table.
    pub table_size: u32,
    /// Where this entry starts in the bitmap directory.
    pub entry_offset: u64,
}

/// Largest bitmap directory QEMU accepts.
pub const MAX_BITMAP_DIRECTORY: u64 = 64 << 20;

/// Parses `count` entries of a bitmap directory.
pub fn parse_bitmap_directory(buf: &[u8], count: u32) -> Result<Vec<Bitmap>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    for i in 0..count {
        if buf.len() < off + 24 {
            return Err(Error::corrupt(format!(
                "bitmap directory entry {i} is truncated"
            )));
        }
        let e = &buf[off..];
        let flags = be32(e, 12);
        let gran_bits = e[17] as u32;
        let name_size = be16(e, 18) as usize;
        let extra = be32(e, 20) as usize;
        if gran_bits > 63 {
            return Err(Error::corrupt(format!(
                "bitmap {i} has an invalid granularity (2^{gran_bits})"
            )));
        }
        let end = 24usize
            .checked_add(extra)
            .and_then(|v| v.checked_add(name_size))
            .filter(|&v| v <= e.len())
            .ok_or_else(|| Error::corrupt(format!("bitmap directory entry {i} is truncated")))?;
        let name = String::from_utf8_lossy(&e[24 + extra..end]).into_owned();
        out.push(Bitmap {
            name,
            granularity: 1u64 << gran_bits,
            in_use: flags & 1 != 0,
            auto: flags & 2 != 0,
            table_offset: be64(e, 0),
            table_size: be32(e, 8),
            entry_offset: off as u64,
        });
        off += end.div_ceil(8) * 8;
    }
    Ok(out)
}
