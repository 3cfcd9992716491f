//! The internal snapshot table and the bitmap directory: pure parsers.

use crate::error::{Error, Result};

/// Size of the fixed part of a snapshot table entry.
pub const SNAPSHOT_FIXED_LEN: usize = 40;
/// Largest extra data QEMU accepts in a snapshot entry.
pub const MAX_SNAPSHOT_EXTRA: u32 = 1024;
/// Largest snapshot table QEMU reads (entries with their padding).
pub const MAX_SNAPSHOT_TABLE: u64 = 64 << 20;
/// Extra data a version 3 entry must have (up to and with disk_size).
pub const V3_SNAPSHOT_EXTRA: usize = 16;
/// Extra data QEMU writes (vm_state_size_large, disk_size, icount).
pub const SNAPSHOT_EXTRA_WRITTEN: usize = 24;

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
    /// The extra data as stored (at most [`MAX_SNAPSHOT_EXTRA`] bytes are
    /// kept), so a rewritten entry keeps what qimg does not interpret.
    pub extra: Vec<u8>,
    /// The ID and name bytes as stored (they need not be UTF-8).
    pub id_bytes: Vec<u8>,
    /// See `id_bytes`.
    pub name_bytes: Vec<u8>,
}

impl Snapshot {
    /// The entry as it is stored in a snapshot table, padded to 8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Vec::with_capacity(SNAPSHOT_FIXED_LEN + self.extra.len() + 64);
        e.extend(self.l1_table_offset.to_be_bytes());
        e.extend(self.l1_size.to_be_bytes());
        e.extend((self.id_bytes.len() as u16).to_be_bytes());
        e.extend((self.name_bytes.len() as u16).to_be_bytes());
        e.extend(self.date_sec.to_be_bytes());
        e.extend(self.date_nsec.to_be_bytes());
        e.extend(self.vm_clock_nsec.to_be_bytes());
        e.extend((self.vm_state_size.min(u32::MAX as u64) as u32).to_be_bytes());
        e.extend((self.extra.len() as u32).to_be_bytes());
        e.extend(&self.extra);
        e.extend(&self.id_bytes);
        e.extend(&self.name_bytes);
        e.resize(e.len().div_ceil(8) * 8, 0);
        e
    }

    /// Completes extra data shorter than version 3 needs, as QEMU's repair
    /// does: the 64-bit VM state size, `disk_size` (the image's virtual
    /// size now), and an icount of -1 (not recorded).
    pub fn complete_extra(&mut self, disk_size: u64) {
        if self.extra.len() >= V3_SNAPSHOT_EXTRA {
            return;
        }
        let mut extra = self.vm_state_size.to_be_bytes().to_vec();
        extra.extend(disk_size.to_be_bytes());
        extra.extend(u64::MAX.to_be_bytes());
        self.extra = extra;
        self.disk_size = Some(disk_size);
        self.icount = None;
    }
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

/// Reads the lengths from the fixed part of an entry. Extra data beyond
/// [`MAX_SNAPSHOT_EXTRA`] is the caller's to refuse or discard.
pub fn snapshot_layout(fixed: &[u8]) -> Result<SnapshotLayout> {
    if fixed.len() < SNAPSHOT_FIXED_LEN {
        return Err(Error::corrupt("snapshot table entry is truncated"));
    }
    Ok(SnapshotLayout {
        extra: be32(fixed, 36) as usize,
        id: be16(fixed, 12) as usize,
        name: be16(fixed, 14) as usize,
    })
}

/// Parses one entry from its bytes (fixed part followed by the variable
/// part). An entry announcing more than [`MAX_SNAPSHOT_EXTRA`] bytes of
/// extra data is refused: the table reader keeps only that much.
pub fn parse_snapshot(entry: &[u8]) -> Result<Snapshot> {
    let layout = snapshot_layout(entry)?;
    if layout.extra > MAX_SNAPSHOT_EXTRA as usize {
        return Err(Error::corrupt(format!(
            "snapshot extra data too large ({} bytes)",
            layout.extra
        )));
    }
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
    let id_bytes = entry[id_start..name_start].to_vec();
    let name_bytes = entry[name_start..name_start + layout.name].to_vec();
    Ok(Snapshot {
        l1_table_offset: be64(entry, 0),
        l1_size: be32(entry, 8),
        id: String::from_utf8_lossy(&id_bytes).into_owned(),
        name: String::from_utf8_lossy(&name_bytes).into_owned(),
        date_sec: be32(entry, 16),
        date_nsec: be32(entry, 20),
        vm_clock_nsec: be64(entry, 24),
        vm_state_size,
        disk_size,
        icount,
        entry_len: layout.entry_len() as u64,
        extra: extra.to_vec(),
        id_bytes,
        name_bytes,
    })
}

/// What is wrong with a snapshot table that QEMU still reads (and that
/// `check -r all` repairs by rewriting the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotDefect {
    /// Entry `index` has less extra data than version 3 requires.
    Incomplete {
        /// The entry's index.
        index: usize,
    },
    /// Entry `index` has `size` bytes of extra data, more than QEMU keeps.
    TooMuchExtra {
        /// The entry's index.
        index: usize,
        /// Bytes of extra data it announces.
        size: usize,
    },
    /// The table is larger than [`MAX_SNAPSHOT_TABLE`]: the last `count`
    /// entries lie beyond that.
    Overhanging {
        /// How many entries do not fit.
        count: usize,
    },
}

impl SnapshotDefect {
    /// QEMU's sentence for this defect, with how to repair it.
    pub fn message(&self) -> String {
        match self {
            SnapshotDefect::Incomplete { index } => {
                format!("snapshot table entry {index} is incomplete")
            }
            SnapshotDefect::TooMuchExtra { index, .. } => format!(
                "Too much extra metadata in snapshot table entry {index} \
                 (force-remove it with 'qimg check -r all')"
            ),
            SnapshotDefect::Overhanging { count } => format!(
                "Snapshot table is too big (force-remove all {count} overhanging snapshots \
                 with 'qimg check -r all')"
            ),
        }
    }

    /// The line `check -r all` logs when it repairs this defect (QEMU's).
    pub fn repair_line(&self) -> String {
        match self {
            SnapshotDefect::Incomplete { index } => {
                format!("Repairing snapshot table entry {index} is incomplete")
            }
            SnapshotDefect::TooMuchExtra { index, size } => format!(
                "Discarding too much extra metadata in snapshot table entry {index} \
                 ({size} > {MAX_SNAPSHOT_EXTRA})"
            ),
            SnapshotDefect::Overhanging { count } => {
                format!("Discarding {count} overhanging snapshots (snapshot table is too big)")
            }
        }
    }
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
