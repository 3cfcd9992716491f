//! QED: a little-endian header, two levels of tables, no refcounts.

use super::check::CheckReport;
use super::{
    clip_request, read_layer, BackingSpec, Description, Details, Extent, Format, Status, TableCache,
};
use crate::error::{Error, Result};
use crate::io::Storage;
use std::sync::Arc;

/// The QED magic, "QED\0".
pub const MAGIC: [u8; 4] = *b"QED\0";
/// Length of the QED header.
pub const HEADER_LEN: usize = 64;
/// Feature bit: the image has a backing file.
pub const FEATURE_BACKING_FILE: u64 = 1 << 0;
/// Feature bit: tables may be inconsistent and need a check.
pub const FEATURE_NEED_CHECK: u64 = 1 << 1;
/// Feature bit: the backing file is raw and must not be probed.
pub const FEATURE_BACKING_FORMAT_NO_PROBE: u64 = 1 << 2;
const FEATURES_KNOWN: u64 = 0x7;
/// Largest table qimg loads (the L1 is read whole).
const MAX_TABLE_BYTES: u64 = 256 << 20;
/// Memory the L2 cache may use.
const L2_CACHE_BYTES: u64 = 32 << 20;

/// A parsed QED header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QedHeader {
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// L1/L2 table size in clusters.
    pub table_size: u32,
    /// Header size in clusters.
    pub header_size: u32,
    /// Feature bits.
    pub features: u64,
    /// Compatible feature bits.
    pub compat_features: u64,
    /// Autoclear feature bits.
    pub autoclear_features: u64,
    /// Offset of the L1 table.
    pub l1_table_offset: u64,
    /// Virtual size in bytes.
    pub image_size: u64,
    /// Offset of the backing file name.
    pub backing_filename_offset: u32,
    /// Length of the backing file name.
    pub backing_filename_size: u32,
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

impl QedHeader {
    /// Parses and validates the 64-byte header (pure).
    pub fn parse(buf: &[u8]) -> Result<QedHeader> {
        if buf.len() < 4 || buf[0..4] != MAGIC {
            return Err(Error::invalid("not a QED image (wrong magic)"));
        }
        if buf.len() < HEADER_LEN {
            return Err(Error::invalid(format!(
                "QED header is truncated: the file has {} bytes, the header needs {HEADER_LEN}",
                buf.len()
            )));
        }
        let h = QedHeader {
            cluster_size: le32(buf, 4),
            table_size: le32(buf, 8),
            header_size: le32(buf, 12),
            features: le64(buf, 16),
            compat_features: le64(buf, 24),
            autoclear_features: le64(buf, 32),
            l1_table_offset: le64(buf, 40),
            image_size: le64(buf, 48),
            backing_filename_offset: le32(buf, 56),
            backing_filename_size: le32(buf, 60),
        };
        let cs = h.cluster_size;
        if !cs.is_power_of_two() || !(4096..=64 << 20).contains(&cs) {
            return Err(Error::invalid(format!(
                "QED cluster size {cs} is invalid (a power of 2 from 4096 to 67108864)"
            )));
        }
        if !h.table_size.is_power_of_two() || h.table_size > 16 {
            return Err(Error::invalid(format!(
                "QED table size {} is invalid (a power of 2 from 1 to 16)",
                h.table_size
            )));
        }
        let unknown = h.features & !FEATURES_KNOWN;
        if unknown != 0 {
            return Err(Error::unsupported(format!(
                "Unsupported QED features {unknown:#x}"
            )));
        }
        if h.header_size == 0 || h.header_size > 1024 {
            return Err(Error::invalid(format!(
                "QED header size of {} clusters is invalid",
                h.header_size
            )));
        }
        if h.image_size % 512 != 0 || h.image_size > h.max_image_size() {
            return Err(Error::invalid(format!(
                "QED image size {} is invalid (a multiple of 512 up to {})",
                h.image_size,
                h.max_image_size()
            )));
        }
        if h.table_bytes() > MAX_TABLE_BYTES {
            return Err(Error::unsupported(format!(
                "QED tables of {} bytes are larger than qimg supports",
                h.table_bytes()
            )));
        }
        if h.features & FEATURE_BACKING_FILE != 0 {
            let end = h.backing_filename_offset as u64 + h.backing_filename_size as u64;
            if end > h.header_bytes() || h.backing_filename_size > 1023 {
                return Err(Error::invalid(
                    "QED backing file name lies outside the header",
                ));
            }
        }
        Ok(h)
    }

    /// Bytes per table.
    pub fn table_bytes(&self) -> u64 {
        self.table_size as u64 * self.cluster_size as u64
    }

    /// Entries per table.
    pub fn table_entries(&self) -> u64 {
        self.table_bytes() / 8
    }

    /// Bytes of the header area.
    pub fn header_bytes(&self) -> u64 {
        self.header_size as u64 * self.cluster_size as u64
    }

    /// The largest virtual size these tables can address.
    pub fn max_image_size(&self) -> u64 {
        let e = self.table_entries();
        e.saturating_mul(e).saturating_mul(self.cluster_size as u64)
    }
}

/// What one QED L2 entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QedEntry {
    /// 0: not allocated here.
    Unallocated,
    /// 1: reads as zeros.
    Zero,
    /// The data cluster's offset.
    Data(u64),
}

impl QedEntry {
    /// Decodes an entry value.
    pub fn decode(v: u64) -> Self {
        match v {
            0 => QedEntry::Unallocated,
            1 => QedEntry::Zero,
            off => QedEntry::Data(off),
        }
    }
}

/// An open QED image (read side).
#[derive(Debug)]
pub struct Qed {
    storage: Box<dyn Storage>,
    header: QedHeader,
    file_len: u64,
    l1: Vec<u64>,
    l2_cache: TableCache<Vec<u64>>,
    backing: Option<BackingSpec>,
}

impl Qed {
    /// Opens a QED image from `storage`.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        let file_len = storage.len()?;
        let mut head = vec![0u8; file_len.min(HEADER_LEN as u64) as usize];
        storage.read_at(&mut head, 0)?;
        let header = QedHeader::parse(&head)?;
        let table = header.table_bytes();
        let l1_off = header.l1_table_offset;
        if l1_off % header.cluster_size as u64 != 0
            || l1_off < header.header_bytes()
            || l1_off.saturating_add(table) > file_len
        {
            return Err(Error::corrupt(format!(
                "QED L1 table at {l1_off:#x} ({table} bytes) does not lie inside the file ({file_len} bytes)"
            ))
            .at_offset(l1_off));
        }
        let l1 = read_table(storage.as_ref(), l1_off, table)?;
        let backing = if header.features & FEATURE_BACKING_FILE != 0 {
            let mut name = vec![0u8; header.backing_filename_size as usize];
            storage.read_at(&mut name, header.backing_filename_offset as u64)?;
            Some(BackingSpec {
                name: String::from_utf8_lossy(&name).into_owned(),
                format: (header.features & FEATURE_BACKING_FORMAT_NO_PROBE != 0)
                    .then(|| "raw".to_string()),
            })
        } else {
            None
        };
        let capacity = (L2_CACHE_BYTES / table).max(2) as usize;
        Ok(Qed {
            storage,
            file_len,
            l1,
            l2_cache: TableCache::new(capacity),
            backing,
            header,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &QedHeader {
        &self.header
    }

    /// Whether `off` may hold a cluster: aligned, after the header, before the end.
    fn valid_cluster_offset(&self, off: u64) -> bool {
        let cs = self.header.cluster_size as u64;
        let end = self.file_len - self.file_len % cs;
        off % cs == 0 && off >= self.header.header_bytes() && off < end
    }

    fn l2_table(&self, l1_index: u64, offset: u64) -> Result<Arc<Vec<u64>>> {
        let table = self.header.table_bytes();
        if !self.valid_cluster_offset(offset) || offset + table > self.file_len {
            return Err(Error::corrupt(format!(
                "QED L2 table offset {offset:#x} (L1 index {l1_index}) does not lie inside the file"
            ))
            .at_offset(offset));
        }
        self.l2_cache
            .get_or_load(offset, || read_table(self.storage.as_ref(), offset, table))
    }

    fn status_of(&self, entry: u64, guest: u64) -> Result<Status> {
        let cs = self.header.cluster_size as u64;
        Ok(match QedEntry::decode(entry) {
            QedEntry::Unallocated => Status::Unallocated { host: None },
            QedEntry::Zero => Status::Zero { host: None },
            QedEntry::Data(off) => {
                if !self.valid_cluster_offset(off) {
                    return Err(Error::corrupt(format!(
                        "QED L2 entry {off:#x} for guest offset {:#x} is not a valid cluster offset",
                        guest - guest % cs
                    )));
                }
                Status::Data {
                    host: Some(off + guest % cs),
                    compressed: false,
                }
            }
        })
    }
}

/// Which clusters of a QED file are referenced, for the check.
struct UsedClusters {
    bits: Vec<bool>,
}

impl UsedClusters {
    /// Marks `n` clusters from `cluster` used; false (and a corruption
    /// counted) when one was already used.
    fn mark(&mut self, report: &mut CheckReport, cluster: u64, n: u64) -> bool {
        let mut clean = true;
        for c in cluster..cluster + n {
            match self.bits.get_mut(c as usize) {
                Some(bit) if *bit => {
                    report.corruptions += 1;
                    clean = false;
                }
                Some(bit) => *bit = true,
                None => {}
            }
        }
        clean
    }
}

impl Qed {
    /// Checks the tables as qemu-img does: tables and data clusters must be
    /// valid offsets referenced once; unreferenced clusters are leaks.
    fn check_tables(&self) -> Result<CheckReport> {
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let clusters = self.file_len / cs;
        let mut report = CheckReport {
            total_clusters: h.image_size.div_ceil(cs),
            ..Default::default()
        };
        let mut used = UsedClusters {
            bits: vec![false; clusters as usize],
        };
        used.mark(&mut report, h.l1_table_offset / cs, h.table_size as u64);
        for &l2_offset in &self.l1 {
            if l2_offset == 0 {
                continue;
            }
            if !self.valid_cluster_offset(l2_offset) || l2_offset + h.table_bytes() > self.file_len
            {
                report.corruptions += 1;
                continue;
            }
            if !used.mark(&mut report, l2_offset / cs, h.table_size as u64) {
                continue;
            }
            let table = read_table(self.storage.as_ref(), l2_offset, h.table_bytes())?;
            let mut last = 0u64;
            for &e in table.iter() {
                let QedEntry::Data(offset) = QedEntry::decode(e) else {
                    continue;
                };
                report.allocated_clusters += 1;
                if last != 0 && last + cs != offset {
                    report.fragmented_clusters += 1;
                }
                last = offset;
                if !self.valid_cluster_offset(offset) {
                    report.corruptions += 1;
                    continue;
                }
                used.mark(&mut report, offset / cs, 1);
            }
        }
        report.leaks = used.bits[(h.header_size as usize).min(used.bits.len())..]
            .iter()
            .filter(|&&b| !b)
            .count() as u64;
        Ok(report)
    }
}

fn read_table(storage: &dyn Storage, offset: u64, len: u64) -> Result<Vec<u64>> {
    let mut raw = vec![0u8; len as usize];
    storage.read_at(&mut raw, offset)?;
    Ok(raw
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

impl Format for Qed {
    fn format_name(&self) -> &'static str {
        "qed"
    }

    fn virtual_size(&self) -> u64 {
        self.header.image_size
    }

    fn granularity(&self) -> u64 {
        self.header.cluster_size as u64
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.header.image_size)?;
        let cs = self.header.cluster_size as u64;
        let span = cs * self.header.table_entries();
        let l1_index = offset / span;
        let span_end = (offset + len).min((l1_index + 1) * span);
        let l2_offset = self.l1.get(l1_index as usize).copied().unwrap_or(0);
        if l2_offset == 0 {
            return Ok(Extent {
                len: span_end - offset,
                status: Status::Unallocated { host: None },
            });
        }
        let table = self.l2_table(l1_index, l2_offset)?;
        let index = |g: u64| ((g % span) / cs) as usize;
        let first = self.status_of(table[index(offset)], offset)?;
        let mut run_end = ((offset / cs + 1) * cs).min(span_end);
        while run_end < span_end {
            let next = self.status_of(table[index(run_end)], run_end)?;
            if next != first.advanced(run_end - offset) {
                break;
            }
            run_end = (run_end + cs).min(span_end);
        }
        Ok(Extent {
            len: run_end - offset,
            status: first,
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_layer(self, offset, buf, |_, _| {
            Err(Error::corrupt("QED images have no compressed clusters"))
        })
    }

    fn backing(&self) -> Option<&BackingSpec> {
        self.backing.as_ref()
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn check(&self, _log: &mut dyn FnMut(String)) -> Result<Option<CheckReport>> {
        self.check_tables().map(Some)
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: Some(self.header.cluster_size as u64),
            dirty: false,
            need_check: self.header.features & FEATURE_NEED_CHECK != 0,
            snapshots: Vec::new(),
            details: Details::None,
        }
    }
}

/// Everything that shapes a new QED image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QedCreateOptions {
    /// Virtual size in bytes (rounded up to 512).
    pub size: u64,
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Table size in clusters.
    pub table_size: u32,
    /// The backing file to record (QED records only whether it is raw).
    pub backing: Option<BackingSpec>,
}

impl Default for QedCreateOptions {
    fn default() -> Self {
        QedCreateOptions {
            size: 0,
            cluster_size: 65536,
            table_size: 4,
            backing: None,
        }
    }
}

impl QedCreateOptions {
    /// The header of the new image (L1 right after the one-cluster header).
    pub fn header(&self) -> Result<QedHeader> {
        let cs = self.cluster_size;
        if !cs.is_power_of_two() || !(4096..=64 << 20).contains(&cs) {
            return Err(Error::argument(
                "QED cluster size must be within range [4096, 67108864] and power of 2",
            ));
        }
        if !self.table_size.is_power_of_two() || self.table_size > 16 {
            return Err(Error::argument(
                "QED table size must be within range [1, 16] and power of 2",
            ));
        }
        let mut features = 0;
        let (mut name_offset, mut name_size) = (0, 0);
        if let Some(b) = &self.backing {
            features |= FEATURE_BACKING_FILE;
            if b.format.as_deref() == Some("raw") {
                features |= FEATURE_BACKING_FORMAT_NO_PROBE;
            }
            if b.name.len() > 1023 || HEADER_LEN + b.name.len() > cs as usize {
                return Err(Error::argument(
                    "backing file name is too long for the QED header",
                ));
            }
            name_offset = HEADER_LEN as u32;
            name_size = b.name.len() as u32;
        }
        let h = QedHeader {
            cluster_size: cs,
            table_size: self.table_size,
            header_size: 1,
            features,
            compat_features: 0,
            autoclear_features: 0,
            l1_table_offset: cs as u64,
            image_size: self.size.div_ceil(512) * 512,
            backing_filename_offset: name_offset,
            backing_filename_size: name_size,
        };
        if h.image_size > h.max_image_size() {
            return Err(Error::argument(format!(
                "QED image size must be a non-zero multiple of cluster size and less than {} bytes",
                h.max_image_size()
            )));
        }
        Ok(h)
    }
}

impl QedHeader {
    /// Encodes the 64-byte header (pure).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.cluster_size.to_le_bytes());
        b[8..12].copy_from_slice(&self.table_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.header_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.features.to_le_bytes());
        b[24..32].copy_from_slice(&self.compat_features.to_le_bytes());
        b[32..40].copy_from_slice(&self.autoclear_features.to_le_bytes());
        b[40..48].copy_from_slice(&self.l1_table_offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.image_size.to_le_bytes());
        b[56..60].copy_from_slice(&self.backing_filename_offset.to_le_bytes());
        b[60..64].copy_from_slice(&self.backing_filename_size.to_le_bytes());
        b
    }
}

/// Writes a new QED image into the empty `storage`: an empty L1 table,
/// then the header cluster (with the backing file name) last.
pub fn create(storage: &dyn Storage, o: &QedCreateOptions) -> Result<()> {
    let h = o.header()?;
    let cs = h.cluster_size as u64;
    storage.set_len(cs + h.table_bytes())?;
    storage.flush()?;
    let mut head = vec![0u8; cs as usize];
    head[..HEADER_LEN].copy_from_slice(&h.encode());
    if let Some(b) = &o.backing {
        head[HEADER_LEN..HEADER_LEN + b.name.len()].copy_from_slice(b.name.as_bytes());
    }
    storage.write_at(&head, 0)?;
    storage.flush()
}
