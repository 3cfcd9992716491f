//! Creating qcow2 images: options, their validation (with qemu-img's
//! messages), the layout of the metadata, and writing it.

use super::entry::{Geometry, COPIED};
use super::header::{
    CompressionType, Header, AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION,
    INCOMPAT_DATA_FILE, INCOMPAT_EXTL2, MAX_L1_BYTES, V2_HEADER_LEN, V3_HEADER_LEN,
};
use super::refcount::{refcount_structures, refcounts_per_block, set_refcount};
use crate::error::{Error, Result};
use crate::format::luks::header::{slot_sectors, SLOTS};
use crate::format::luks::keys::NewArea;
use crate::format::{BackingSpec, Preallocation};
use crate::io::{write_zeros, Storage};

/// Everything that shapes a new qcow2 image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual size in bytes (rounded up to 512 when written).
    pub size: u64,
    /// 2 (compat=0.10) or 3 (compat=1.1).
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// log2 of the refcount width.
    pub refcount_order: u32,
    /// 128-bit L2 entries with subclusters.
    pub extended_l2: bool,
    /// How compressed clusters will be encoded.
    pub compression: CompressionType,
    /// Lazy refcounts.
    pub lazy_refcounts: bool,
    /// What to reserve up front.
    pub preallocation: Preallocation,
    /// The backing file to record.
    pub backing: Option<BackingSpec>,
    /// The external data file to record.
    pub data_file: Option<String>,
    /// Whether the external data file is a valid raw image by itself.
    pub data_file_raw: bool,
    /// LUKS encryption (`encrypt.format=luks`): the area's choices.
    pub encrypt: Option<NewArea>,
    /// The id of the secret the LUKS key slot is made with.
    pub key_secret: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            size: 0,
            version: 3,
            cluster_bits: 16,
            refcount_order: 4,
            extended_l2: false,
            compression: CompressionType::Zlib,
            lazy_refcounts: false,
            preallocation: Preallocation::Off,
            backing: None,
            data_file: None,
            data_file_raw: false,
            encrypt: None,
            key_secret: None,
        }
    }
}

/// Where the metadata of a new image goes, in clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Offset of the refcount table.
    pub reftable_offset: u64,
    /// Clusters of the refcount table.
    pub reftable_clusters: u64,
    /// Offset of the first refcount block.
    pub refblocks_offset: u64,
    /// Number of refcount blocks.
    pub refblocks: u64,
    /// Offset of the L1 table.
    pub l1_offset: u64,
    /// Entries in the L1 table.
    pub l1_size: u64,
    /// Offset of the LUKS area of an encrypted image (after the L1 table).
    pub luks_offset: u64,
    /// Bytes of the LUKS area (header and key material; 0: not encrypted).
    pub luks_len: u64,
    /// Offset of the first preallocated L2 table (each followed by its data clusters).
    pub l2_offset: u64,
    /// Number of preallocated L2 tables.
    pub l2_tables: u64,
    /// Number of preallocated data clusters in this file.
    pub data_clusters: u64,
    /// Clusters in use (all have refcount 1).
    pub used_clusters: u64,
    /// The file length.
    pub file_len: u64,
}

impl CreateOptions {
    fn geometry(&self) -> Geometry {
        Geometry {
            cluster_bits: self.cluster_bits,
            extended_l2: self.extended_l2,
            external_data: self.data_file.is_some(),
        }
    }

    /// Bytes of the LUKS area of the new image (0: not encrypted): the
    /// header and the eight key slots, up to the LUKS payload offset.
    pub fn luks_len(&self) -> u64 {
        self.encrypt.map_or(0, |a| {
            let kb = a.cipher.key_bytes() as u32;
            (8 + SLOTS as u64 * slot_sectors(kb) as u64) * 512
        })
    }

    /// The virtual size as written (rounded up to 512 bytes).
    pub fn virtual_size(&self) -> u64 {
        self.size.div_ceil(512) * 512
    }

    /// Checks the combination of options, with qemu-img's messages.
    pub fn validate(&self) -> Result<()> {
        let v3 = "compatibility level 1.1 and above (use version=v3 or greater)";
        if !(9..=21).contains(&self.cluster_bits) {
            return Err(Error::argument(
                "Cluster size must be a power of two between 512 and 2048k",
            ));
        }
        if self.encrypt.is_some() && self.key_secret.is_none() {
            return Err(crate::format::luks::key_required("encrypt.key-secret"));
        }
        if self.encrypt.is_some() && self.data_file.is_some() {
            return Err(Error::unsupported(
                "encrypted images with an external data file are not supported",
            ));
        }
        if self.encrypt.is_some() && self.preallocation != Preallocation::Off {
            return Err(Error::unsupported(
                "preallocation of encrypted images is not supported",
            ));
        }
        if self.refcount_order > 6 {
            return Err(Error::argument(
                "Refcount width must be a power of two and may not exceed 64 bits",
            ));
        }
        if self.version < 3 {
            if self.refcount_order != 4 {
                return Err(Error::argument(
                    "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)",
                ));
            }
            if self.lazy_refcounts {
                return Err(Error::argument(format!(
                    "Lazy refcounts only supported with {v3}"
                )));
            }
            if self.compression != CompressionType::Zlib {
                return Err(Error::argument(format!(
                    "Non-zlib compression type is only supported with {v3}"
                )));
            }
            if self.extended_l2 {
                return Err(Error::argument(format!(
                    "Extended L2 entries are only supported with {v3}"
                )));
            }
            if self.data_file.is_some() {
                return Err(Error::argument(format!(
                    "External data files are only supported with {v3}"
                )));
            }
        }
        if self.extended_l2 && self.cluster_bits < 14 {
            return Err(Error::argument(
                "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes",
            ));
        }
        if self.data_file_raw && self.data_file.is_none() {
            return Err(Error::argument("data-file-raw requires data-file"));
        }
        if self.data_file_raw && self.backing.is_some() {
            return Err(Error::argument(
                "Backing file and data-file-raw cannot be used at the same time",
            ));
        }
        if self.virtual_size() > i64::MAX as u64 {
            return Err(Error::argument("Image size is too large"));
        }
        let geo = self.geometry();
        let l1_size = self
            .virtual_size()
            .div_ceil(geo.cluster_size() * geo.l2_entries());
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(Error::argument(
                "The image size is too large for file format 'qcow2' (try using a larger cluster size)",
            ));
        }
        Ok(())
    }

    /// Plans where the metadata goes: header, refcount table, refcount
    /// blocks, L1 table, then (when preallocating) each L2 table followed by
    /// the data clusters it maps.
    pub fn layout(&self) -> Layout {
        let geo = self.geometry();
        let cs = geo.cluster_size();
        let size = self.virtual_size();
        let span = cs * geo.l2_entries();
        let l1_size = size.div_ceil(span);
        let l1_clusters = (l1_size * 8).div_ceil(cs);
        let reserve = self.preallocation.reserves_clusters() || self.data_file_raw;
        let l2_tables = if reserve { l1_size } else { 0 };
        let data_clusters = if reserve && self.data_file.is_none() {
            size.div_ceil(cs)
        } else {
            0
        };
        let luks_len = self.luks_len();
        let luks_clusters = luks_len.div_ceil(cs);
        let fixed = 1 + l1_clusters + luks_clusters + l2_tables + data_clusters;
        let (reftable, refblocks) =
            refcount_structures(fixed, self.cluster_bits, self.refcount_order);
        let reftable_offset = cs;
        let refblocks_offset = reftable_offset + reftable * cs;
        let l1_offset = refblocks_offset + refblocks * cs;
        let luks_offset = l1_offset + l1_clusters * cs;
        let l2_offset = luks_offset + luks_clusters * cs;
        let used_clusters = fixed + reftable + refblocks;
        let file_len = if reserve {
            used_clusters * cs
        } else if luks_len > 0 {
            l2_offset
        } else {
            l1_offset + l1_size * 8
        };
        Layout {
            cluster_size: cs,
            reftable_offset,
            reftable_clusters: reftable,
            refblocks_offset,
            refblocks,
            l1_offset,
            l1_size,
            luks_offset,
            luks_len,
            l2_offset,
            l2_tables,
            data_clusters,
            used_clusters,
            file_len,
        }
    }

    /// The header of the new image.
    pub fn header(&self, layout: &Layout) -> Header {
        let mut incompatible = 0;
        let mut autoclear = 0;
        if self.compression == CompressionType::Zstd {
            incompatible |= INCOMPAT_COMPRESSION;
        }
        if self.extended_l2 {
            incompatible |= INCOMPAT_EXTL2;
        }
        if self.data_file.is_some() {
            incompatible |= INCOMPAT_DATA_FILE;
        }
        if self.data_file_raw {
            autoclear |= AUTOCLEAR_DATA_FILE_RAW;
        }
        Header {
            version: self.version,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: self.cluster_bits,
            size: self.virtual_size(),
            crypt_method: if layout.luks_len > 0 { 2 } else { 0 },
            l1_size: layout.l1_size as u32,
            // An empty L1 table has no place (as qemu-img writes it).
            l1_table_offset: if layout.l1_size == 0 {
                0
            } else {
                layout.l1_offset
            },
            refcount_table_offset: layout.reftable_offset,
            refcount_table_clusters: layout.reftable_clusters as u32,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: if self.version >= 3 { incompatible } else { 0 },
            compatible_features: if self.lazy_refcounts {
                COMPAT_LAZY_REFCOUNTS
            } else {
                0
            },
            autoclear_features: autoclear,
            refcount_order: self.refcount_order,
            header_length: if self.version >= 3 {
                V3_HEADER_LEN
            } else {
                V2_HEADER_LEN
            } as u32,
            compression_type_raw: match self.compression {
                CompressionType::Zlib => 0,
                CompressionType::Zstd => 1,
            },
            extra_fields: Vec::new(),
            backing_format: self.backing.as_ref().and_then(|b| b.format.clone()),
            backing_file: self.backing.as_ref().map(|b| b.name.clone()),
            feature_names: Vec::new(),
            data_file: self.data_file.clone(),
            bitmaps: None,
            crypto_header: (layout.luks_len > 0).then_some((layout.luks_offset, layout.luks_len)),
            unknown_extensions: Vec::new(),
        }
    }
}

/// Writes a new qcow2 image into the empty `storage` (and sizes the external
/// data file `data`, when the options name one; writes the LUKS area
/// `luks` of an encrypted image). The header is written last.
pub fn create(
    storage: &dyn Storage,
    data: Option<&dyn Storage>,
    o: &CreateOptions,
    luks: Option<&[u8]>,
) -> Result<()> {
    o.validate()?;
    let layout = o.layout();
    if let Some(area) = luks {
        debug_assert_eq!(area.len() as u64, layout.luks_len);
        storage.write_at(area, layout.luks_offset)?;
    }
    let header = o.header(&layout).encode()?;
    let cs = layout.cluster_size;
    let geo = o.geometry();

    // Refcount table and blocks: clusters [0, used) have refcount 1.
    let mut table = vec![0u8; (layout.reftable_clusters * cs) as usize];
    for i in 0..layout.refblocks {
        let off = layout.refblocks_offset + i * cs;
        table[(i * 8) as usize..(i * 8 + 8) as usize].copy_from_slice(&off.to_be_bytes());
    }
    storage.write_at(&table, layout.reftable_offset)?;
    let per_block = refcounts_per_block(o.cluster_bits, o.refcount_order);
    let mut block = vec![0u8; cs as usize];
    for i in 0..layout.refblocks {
        block.fill(0);
        let first = i * per_block;
        let n = layout.used_clusters.saturating_sub(first).min(per_block);
        for j in 0..n {
            set_refcount(&mut block, j as usize, o.refcount_order, 1);
        }
        storage.write_at(&block, layout.refblocks_offset + i * cs)?;
    }

    // L1 (and, when preallocating, L2 tables with their data clusters).
    let mut l1 = vec![0u8; (layout.l1_size * 8) as usize];
    let size = o.virtual_size();
    let span = cs * geo.l2_entries();
    let mut next = layout.l2_offset;
    let mut data_ranges = Vec::new();
    for t in 0..layout.l2_tables {
        let l2_offset = next;
        next += cs;
        l1[(t * 8) as usize..(t * 8 + 8) as usize]
            .copy_from_slice(&(l2_offset | COPIED).to_be_bytes());
        let first_guest = t * span;
        let clusters = (size - first_guest).div_ceil(cs).min(geo.l2_entries());
        let mut l2 = vec![0u8; cs as usize];
        let data_start = next;
        for j in 0..clusters {
            let host = if o.data_file.is_some() {
                first_guest + j * cs
            } else {
                let h = next;
                next += cs;
                h
            };
            let at = (j as usize) * geo.entry_bytes();
            l2[at..at + 8].copy_from_slice(&(host | COPIED).to_be_bytes());
        }
        if next > data_start {
            data_ranges.push((data_start, next - data_start));
        }
        storage.write_at(&l2, l2_offset)?;
    }
    if !l1.is_empty() {
        storage.write_at(&l1, layout.l1_offset)?;
    }
    storage.set_len(layout.file_len)?;
    match o.preallocation {
        Preallocation::Falloc => {
            for &(off, len) in &data_ranges {
                storage.allocate(off, len)?;
            }
        }
        Preallocation::Full => {
            for &(off, len) in &data_ranges {
                write_zeros(storage, off, len)?;
            }
        }
        Preallocation::Off | Preallocation::Metadata => {}
    }
    if let Some(data) = data {
        // As qemu-img: the data file is emptied, then sized to the disk
        // (sparse unless preallocated), whatever the mode.
        data.set_len(0)?;
        data.set_len(size)?;
        match o.preallocation {
            Preallocation::Falloc if size > 0 => data.allocate(0, size)?,
            Preallocation::Full => write_zeros(data, 0, size)?,
            _ => {}
        }
        data.flush()?;
    }
    storage.flush()?;
    storage.write_at(&header, 0)?;
    storage.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_matches_qemu_img() {
        let o = CreateOptions {
            size: 1 << 30,
            ..Default::default()
        };
        let l = o.layout();
        assert_eq!(
            (
                l.reftable_offset,
                l.refblocks_offset,
                l.l1_offset,
                l.l1_size,
                l.file_len
            ),
            (0x10000, 0x20000, 0x30000, 2, 0x30000 + 16)
        );
    }

    #[test]
    fn refcount_blocks_cover_themselves() {
        for order in 0..=6 {
            for bits in [9, 12, 16] {
                let o = CreateOptions {
                    size: 1 << 34,
                    cluster_bits: bits,
                    refcount_order: order,
                    preallocation: Preallocation::Metadata,
                    ..Default::default()
                };
                let l = o.layout();
                let per_block = refcounts_per_block(bits, order);
                assert!(l.refblocks * per_block >= l.used_clusters);
                assert!(l.reftable_clusters * l.cluster_size / 8 >= l.refblocks);
                assert_eq!(l.file_len, l.used_clusters * l.cluster_size);
            }
        }
    }
}
