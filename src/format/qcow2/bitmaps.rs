//! qcow2 persistent dirty bitmaps: the bitmap directory and the bitmap
//! tables (encode, decode, QEMU's constraints), reading a bitmap's bits,
//! and changing the set of bitmaps crash-safely.
//!
//! The order of a change: the new bitmap tables and data clusters, and a
//! whole new directory, go to fresh clusters; their refcounts are made
//! durable with them (a crash here leaves leaks only, since nothing names
//! them); one header write then switches the `bitmaps` extension (count,
//! size, offset) and the autoclear bit; the old directory and the tables
//! and data only the old directory named are freed last (a crash there
//! leaks them). So the image shows the old set of bitmaps or the new one
//! at every instant.

use super::header::{check_table, BitmapsExtension, AUTOCLEAR_BITMAPS};
use super::meta::Meta;
use super::snapshot::MAX_BITMAP_DIRECTORY;
use super::{read_be_table, Qcow2};
use crate::error::{Error, Result};
use crate::format::bitmap::{
    check_new, inconsistent, not_found, BitmapChange, BitmapEntry, BitmapStore, ChangeFailed,
    DirtyBits, MergeSource, MAX_BITMAP_BYTES,
};

/// Directory entry flag: the bitmap may be stale.
const FLAG_IN_USE: u32 = 1 << 0;
/// Directory entry flag: the bitmap records writes.
const FLAG_AUTO: u32 = 1 << 1;
/// Flags QEMU knows; any other bit makes it refuse the entry.
const KNOWN_FLAGS: u32 = FLAG_IN_USE | FLAG_AUTO;
/// The only bitmap type: dirty tracking.
const TYPE_DIRTY_TRACKING: u8 = 1;
/// Fixed part of a directory entry.
const ENTRY_FIXED: usize = 24;
/// Longest bitmap name.
const MAX_NAME: usize = 1023;
/// Most bitmaps one image may hold.
const MAX_BITMAPS: usize = 65535;
/// Most entries of one bitmap table.
const MAX_TABLE_ENTRIES: u64 = 0x800_0000;
/// Granularity limits, as powers of two.
const MIN_GRANULARITY_BITS: u8 = 9;
const MAX_GRANULARITY_BITS: u8 = 31;
/// Bitmap table entry: where the data cluster is.
const TABLE_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bitmap table entry without data: the cluster's bits are all set.
const TABLE_ALL_ONES: u64 = 1;
/// Bitmap table entry bits that must be clear.
const TABLE_RESERVED: u64 = 0xff00_0000_0000_01fe;

/// One entry of the bitmap directory, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirEntry {
    table_offset: u64,
    table_size: u32,
    flags: u32,
    granularity_bits: u8,
    name: Vec<u8>,
}

impl DirEntry {
    fn name_is(&self, name: &str) -> bool {
        self.name == name.as_bytes()
    }

    fn name_text(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    fn granularity(&self) -> u64 {
        1 << self.granularity_bits
    }

    fn in_use(&self) -> bool {
        self.flags & FLAG_IN_USE != 0
    }

    /// Bytes this entry takes in the directory (padded to 8).
    fn encoded_len(name_len: usize) -> usize {
        (ENTRY_FIXED + name_len).div_ceil(8) * 8
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend(self.table_offset.to_be_bytes());
        out.extend(self.table_size.to_be_bytes());
        out.extend(self.flags.to_be_bytes());
        out.push(TYPE_DIRTY_TRACKING);
        out.push(self.granularity_bits);
        out.extend((self.name.len() as u16).to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out.extend(&self.name);
        out.resize(start + Self::encoded_len(self.name.len()), 0);
    }
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("length checked")
}

/// The number of table entries (clusters of bits) a disk of `size` bytes
/// needs at `granularity`.
fn table_entries(size: u64, granularity: u64, cluster_size: u64) -> u64 {
    DirtyBits::bytes_needed(size, granularity).div_ceil(cluster_size)
}

/// Parses a directory of `count` entries with QEMU's checks (an image that
/// fails them is one QEMU refuses to open).
fn parse_directory(
    buf: &[u8],
    count: u32,
    cluster_size: u64,
    disk_size: u64,
) -> Result<Vec<DirEntry>> {
    let broken = || Error::corrupt("Broken bitmap directory");
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        if at + ENTRY_FIXED > buf.len() {
            return Err(broken());
        }
        if out.len() >= count as usize {
            return Err(Error::corrupt(
                "More bitmaps found than specified in header extension",
            ));
        }
        let e = &buf[at..];
        let name_len = u16::from_be_bytes(be(e, 18)) as usize;
        let extra = u32::from_be_bytes(be(e, 20)) as usize;
        let len = (ENTRY_FIXED + name_len + extra).div_ceil(8) * 8;
        if at + len > buf.len() {
            return Err(broken());
        }
        if extra != 0 {
            return Err(Error::unsupported("Bitmap extra data is not supported"));
        }
        let entry = DirEntry {
            table_offset: u64::from_be_bytes(be(e, 0)),
            table_size: u32::from_be_bytes(be(e, 8)),
            flags: u32::from_be_bytes(be(e, 12)),
            granularity_bits: e[17],
            name: e[ENTRY_FIXED..ENTRY_FIXED + name_len].to_vec(),
        };
        if !entry_is_valid(&entry, e[16], cluster_size, disk_size) {
            return Err(Error::corrupt(format!(
                "Bitmap '{}' doesn't satisfy the constraints",
                entry.name_text()
            )));
        }
        out.push(entry);
        at += len;
    }
    if out.len() != count as usize {
        return Err(Error::corrupt(
            "Less bitmaps found than specified in header extension",
        ));
    }
    Ok(out)
}

/// QEMU's constraints on one directory entry. A consistent bitmap's table
/// must cover the whole disk; an inconsistent one may be of any size (it
/// may predate a resize).
fn entry_is_valid(e: &DirEntry, kind: u8, cluster_size: u64, disk_size: u64) -> bool {
    let table_bytes = e.table_size as u64 * cluster_size;
    let basic = e.table_size != 0
        && e.table_offset != 0
        && e.table_offset % cluster_size == 0
        && e.table_size as u64 <= MAX_TABLE_ENTRIES
        && (MIN_GRANULARITY_BITS..=MAX_GRANULARITY_BITS).contains(&e.granularity_bits)
        && e.flags & !KNOWN_FLAGS == 0
        && e.name.len() <= MAX_NAME
        && kind == TYPE_DIRTY_TRACKING
        && table_bytes <= MAX_BITMAP_BYTES;
    basic
        && (e.in_use()
            || (table_bytes * 8)
                .checked_shl(e.granularity_bits as u32)
                .is_none_or(|covered| covered >= disk_size))
}

/// A bitmap being changed: its entry, and the bits to store anew (`None`:
/// its table on disk stays as it is).
struct Work {
    entry: DirEntry,
    bits: Option<DirtyBits>,
}

impl Qcow2 {
    /// The granularity QEMU gives a new bitmap: the cluster size, kept
    /// between 4 KiB and 64 KiB.
    fn default_bitmap_granularity(&self) -> u64 {
        self.geo.cluster_size().clamp(4096, 65536)
    }

    /// The bitmap directory the header on disk names (empty for version 2,
    /// and when the autoclear bit says a program without bitmap support
    /// wrote the image since).
    fn bitmap_directory(&self, meta: &Meta) -> Result<Vec<DirEntry>> {
        let h = &meta.header;
        let Some(ext) = h.bitmaps else {
            return Ok(Vec::new());
        };
        if h.version < 3 || h.autoclear_features & AUTOCLEAR_BITMAPS == 0 || ext.count == 0 {
            return Ok(Vec::new());
        }
        if ext.directory_size > MAX_BITMAP_DIRECTORY {
            return Err(Error::corrupt("Requested bitmap directory size is too big"));
        }
        let cs = self.geo.cluster_size();
        check_table(
            "bitmap directory",
            ext.directory_offset,
            ext.directory_size,
            cs,
            self.storage.len()?,
        )?;
        let mut dir = vec![0u8; ext.directory_size as usize];
        self.storage.read_at(&mut dir, ext.directory_offset)?;
        parse_directory(&dir, ext.count, cs, h.size).map_err(|e| e.at_offset(ext.directory_offset))
    }

    /// The bitmap table of `e`, checked entry by entry.
    fn bitmap_table(&self, e: &DirEntry) -> Result<Vec<u64>> {
        let cs = self.geo.cluster_size();
        let len = e.table_size as u64 * 8;
        check_table("bitmap table", e.table_offset, len, cs, self.storage.len()?)?;
        let table = read_be_table(self.storage.as_ref(), e.table_offset, e.table_size as u64)?;
        for (i, &t) in table.iter().enumerate() {
            let off = t & TABLE_OFFSET_MASK;
            if t & TABLE_RESERVED != 0 || (off != 0 && (t & TABLE_ALL_ONES != 0 || off % cs != 0)) {
                return Err(Error::corrupt(format!(
                    "bitmap '{}' has an invalid table entry {i} ({t:#x})",
                    e.name_text()
                ))
                .at_offset(e.table_offset + i as u64 * 8));
            }
        }
        Ok(table)
    }

    /// Reads the bits of the consistent bitmap `e` over a disk of `size` bytes.
    fn load_bits(&self, e: &DirEntry, size: u64) -> Result<DirtyBits> {
        let cs = self.geo.cluster_size();
        let g = e.granularity();
        let bytes = DirtyBits::bytes_needed(size, g);
        if bytes > MAX_BITMAP_BYTES || table_entries(size, g, cs) != e.table_size as u64 {
            return Err(Error::corrupt(format!(
                "Could not read bitmap '{}' from image: its table does not match the disk size",
                e.name_text()
            )));
        }
        let table = self.bitmap_table(e)?;
        let file_len = self.storage.len()?;
        let mut bits = vec![0u8; bytes as usize];
        for (chunk, &t) in bits.chunks_mut(cs as usize).zip(&table) {
            let off = t & TABLE_OFFSET_MASK;
            if off != 0 {
                check_table("bitmap data cluster", off, chunk.len() as u64, cs, file_len)?;
                self.storage.read_at(chunk, off)?;
            } else if t & TABLE_ALL_ONES != 0 {
                chunk.fill(0xff);
            }
        }
        Ok(DirtyBits::from_bytes(size, g, bits))
    }

    /// Writes `bits` as a bitmap table and data clusters in fresh clusters
    /// (clean clusters get no data cluster) and returns (table offset,
    /// entries). Nothing is durable yet.
    fn store_bits(&self, meta: &mut Meta, bits: &DirtyBits) -> Result<(u64, u32)> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let entries = table_entries(bits.size(), bits.granularity(), cs).max(1);
        let mut table = vec![0u64; entries as usize];
        for (slot, chunk) in table.iter_mut().zip(bits.as_bytes().chunks(cs as usize)) {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let at = meta.refcounts(storage)?.alloc(storage, 1)?;
            let mut data = chunk.to_vec();
            data.resize(cs as usize, 0);
            storage.write_at(&data, at)?;
            *slot = at;
        }
        let clusters = (entries * 8).div_ceil(cs);
        let at = meta.refcounts(storage)?.alloc(storage, clusters)?;
        let mut raw: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
        raw.resize((clusters * cs) as usize, 0);
        storage.write_at(&raw, at)?;
        Ok((at, entries as u32))
    }

    /// Schedules the release of `e`'s table and data clusters (after the
    /// header no longer names them).
    fn free_bitmap(&self, meta: &mut Meta, e: &DirEntry) -> Result<()> {
        let cs = self.geo.cluster_size();
        // An unreadable table cannot be walked: its clusters stay leaked.
        if let Ok(table) = self.bitmap_table(e) {
            for t in table {
                let off = t & TABLE_OFFSET_MASK;
                if off != 0 {
                    meta.frees.push((off, cs));
                }
            }
            meta.frees.push((e.table_offset, e.table_size as u64 * 8));
        }
        Ok(())
    }

    /// The error prefix QEMU puts before the qcow2 driver's refusals of a new bitmap.
    fn cannot_persist(&self, name: &str, why: &str) -> Error {
        Error::argument(format!(
            "Can't make bitmap '{name}' persistent in '{}': {why}",
            self.storage.path().display()
        ))
    }

    /// Checks a new bitmap as QEMU's qcow2 driver does.
    fn check_new_bitmap(&self, list: &[Work], name: &str, granularity: u64) -> Result<()> {
        if list.iter().any(|w| w.entry.name_is(name)) {
            return Err(Error::argument(format!("Bitmap already exists: {name}")));
        }
        if self.header.version < 3 {
            return Err(self.cannot_persist(name, "Cannot store dirty bitmaps in qcow2 v2 files"));
        }
        let bits = granularity.trailing_zeros();
        if bits > MAX_GRANULARITY_BITS as u32 {
            return Err(self.cannot_persist(name, "Granularity exceeds maximum (2147483648 bytes)"));
        }
        if bits < MIN_GRANULARITY_BITS as u32 {
            return Err(self.cannot_persist(name, "Granularity is under minimum (512 bytes)"));
        }
        let bytes = DirtyBits::bytes_needed(self.header.size, granularity);
        let cs = self.geo.cluster_size();
        if bytes > MAX_BITMAP_BYTES || bytes > MAX_TABLE_ENTRIES * cs {
            return Err(self.cannot_persist(
                name,
                "Too much space will be occupied by the bitmap. Use larger granularity",
            ));
        }
        if name.len() > MAX_NAME {
            return Err(self.cannot_persist(name, "Name length exceeds maximum (1023 characters)"));
        }
        if list.len() + 1 > MAX_BITMAPS {
            return Err(self.cannot_persist(
                name,
                "Maximum number of persistent bitmaps is already reached",
            ));
        }
        let dir: usize = list
            .iter()
            .map(|w| DirEntry::encoded_len(w.entry.name.len()))
            .sum::<usize>()
            + DirEntry::encoded_len(name.len());
        if dir as u64 > MAX_BITMAP_DIRECTORY {
            return Err(self.cannot_persist(name, "Not enough space in the bitmap directory"));
        }
        Ok(())
    }

    /// Applies one change to the working list.
    fn apply_change(&self, list: &mut Vec<Work>, change: &BitmapChange, size: u64) -> Result<()> {
        let find = |list: &[Work], name: &str| {
            list.iter()
                .position(|w| w.entry.name_is(name))
                .ok_or_else(|| not_found(name))
        };
        // The bitmap `name`, which must be consistent to be changed.
        let usable = |list: &[Work], name: &str| -> Result<usize> {
            let i = find(list, name)?;
            if list[i].entry.in_use() {
                return Err(inconsistent(name));
            }
            Ok(i)
        };
        match change {
            BitmapChange::Add {
                name,
                granularity,
                enabled,
            } => {
                check_new(name, *granularity)?;
                let g = granularity.unwrap_or_else(|| self.default_bitmap_granularity());
                self.check_new_bitmap(list, name, g)?;
                list.push(Work {
                    entry: DirEntry {
                        table_offset: 0,
                        table_size: 0,
                        flags: if *enabled { FLAG_AUTO } else { 0 },
                        granularity_bits: g.trailing_zeros() as u8,
                        name: name.as_bytes().to_vec(),
                    },
                    bits: Some(DirtyBits::new(size, g)),
                });
            }
            BitmapChange::Remove(name) => {
                let i = find(list, name)?;
                list.remove(i);
            }
            BitmapChange::Clear(name) => {
                let i = usable(list, name)?;
                list[i].bits = Some(DirtyBits::new(size, list[i].entry.granularity()));
            }
            BitmapChange::Enable(name) => {
                let i = usable(list, name)?;
                list[i].entry.flags |= FLAG_AUTO;
            }
            BitmapChange::Disable(name) => {
                let i = usable(list, name)?;
                list[i].entry.flags &= !FLAG_AUTO;
            }
            BitmapChange::Merge { target, source } => {
                let i = usable(list, target)?;
                let source = match source {
                    MergeSource::Bits(b) => b,
                    MergeSource::Itself => return Ok(()),
                    MergeSource::Unreadable(why) => return Err(Error::argument(why.clone())),
                };
                let mut bits = match list[i].bits.take() {
                    Some(b) => b,
                    None => self.load_bits(&list[i].entry, size)?,
                };
                let merged = bits.merge(source);
                list[i].bits = Some(bits);
                merged?;
            }
        }
        Ok(())
    }

    /// Stores `list` as the image's bitmaps in the crash-safe order (see
    /// the module documentation); `old` is the directory it replaces.
    fn commit_bitmaps(&self, meta: &mut Meta, old: &[DirEntry], list: Vec<Work>) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let mut entries = Vec::with_capacity(list.len());
        for w in list {
            let mut e = w.entry;
            if let Some(bits) = &w.bits {
                let (offset, size) = self.store_bits(meta, bits)?;
                e.table_offset = offset;
                e.table_size = size;
                e.flags &= !FLAG_IN_USE;
            }
            entries.push(e);
            self.flush_if_full(meta)?;
        }
        let mut header = meta.header.clone();
        if entries.is_empty() {
            header.bitmaps = None;
            header.autoclear_features &= !AUTOCLEAR_BITMAPS;
        } else {
            let mut dir = Vec::new();
            for e in &entries {
                e.encode(&mut dir);
            }
            let clusters = (dir.len() as u64).div_ceil(cs);
            let at = meta.refcounts(storage)?.alloc(storage, clusters)?;
            let size = dir.len() as u64;
            dir.resize((clusters * cs) as usize, 0);
            storage.write_at(&dir, at)?;
            header.bitmaps = Some(BitmapsExtension {
                count: entries.len() as u32,
                directory_size: size,
                directory_offset: at,
            });
            header.autoclear_features |= AUTOCLEAR_BITMAPS;
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let trusted = meta.header.bitmaps.filter(|ext| {
            meta.header.version >= 3
                && meta.header.autoclear_features & AUTOCLEAR_BITMAPS != 0
                && ext.count > 0
        });
        self.write_header(&header)?;
        meta.header = header;
        // What only the old directory named goes now.
        if let Some(ext) = trusted {
            meta.frees.push((ext.directory_offset, ext.directory_size));
        }
        for o in old {
            let kept = entries
                .iter()
                .any(|e| e.table_offset == o.table_offset && e.table_size == o.table_size);
            if !kept {
                self.free_bitmap(meta, o)?;
            }
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }
}

impl BitmapStore for Qcow2 {
    fn persistent(&self) -> bool {
        self.header.version >= 3
    }

    fn list(&self) -> Result<Vec<BitmapEntry>> {
        let meta = self.lock_meta();
        Ok(self
            .bitmap_directory(&meta)?
            .iter()
            .map(|e| BitmapEntry {
                name: e.name_text(),
                granularity: e.granularity(),
                enabled: e.flags & FLAG_AUTO != 0,
                in_use: e.in_use(),
            })
            .collect())
    }

    fn read_bits(&self, name: &str) -> Result<DirtyBits> {
        let meta = self.lock_meta();
        let dir = self.bitmap_directory(&meta)?;
        let e = dir
            .iter()
            .find(|e| e.name_is(name))
            .ok_or_else(|| not_found(name))?;
        if e.in_use() {
            return Err(inconsistent(name));
        }
        self.load_bits(e, meta.header.size)
    }

    fn change(&self, changes: &[BitmapChange]) -> std::result::Result<(), ChangeFailed> {
        let mut meta = self.lock_meta();
        self.prepare_with(&mut meta, false)?;
        let old = self.bitmap_directory(&meta)?;
        let size = meta.header.size;
        let mut list: Vec<Work> = old
            .iter()
            .map(|e| Work {
                entry: e.clone(),
                bits: None,
            })
            .collect();
        let mut refused = None;
        for (i, change) in changes.iter().enumerate() {
            if let Err(error) = self.apply_change(&mut list, change, size) {
                refused = Some(ChangeFailed {
                    index: Some(i),
                    error,
                });
                break;
            }
        }
        let applied = refused
            .as_ref()
            .map_or(changes.len(), |f| f.index.unwrap_or(0));
        if applied > 0 {
            self.commit_bitmaps(&mut meta, &old, list)?;
        }
        match refused {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_directory, DirEntry, FLAG_AUTO};

    #[test]
    fn a_directory_reads_back_as_written() {
        let entries = vec![
            DirEntry {
                table_offset: 0x50000,
                table_size: 1,
                flags: FLAG_AUTO,
                granularity_bits: 16,
                name: b"bm0".to_vec(),
            },
            DirEntry {
                table_offset: 0x70000,
                table_size: 2,
                flags: 0,
                granularity_bits: 12,
                name: vec![b'x'; 17],
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            e.encode(&mut buf);
        }
        assert_eq!(buf.len(), 32 + 48);
        assert_eq!(parse_directory(&buf, 2, 65536, 1 << 30).unwrap(), entries);
        assert!(parse_directory(&buf, 1, 65536, 1 << 30).is_err());
        assert!(parse_directory(&buf, 3, 65536, 1 << 30).is_err());
        // A table too small for the disk is refused unless the bitmap is in use.
        assert!(parse_directory(&buf, 2, 65536, 1 << 50).is_err());
    }
}
