//! The qcow2 header and its extensions: pure parsing from the bytes of
//! cluster 0, and validation against the file length.

use crate::error::{Error, Result};

/// The qcow2 magic, "QFI\xfb".
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Length of the version 2 header.
pub const V2_HEADER_LEN: usize = 72;
/// Length of the version 3 header without the optional compression type.
pub const V3_HEADER_MIN_LEN: usize = 104;
/// Length of the version 3 header qimg writes (with the compression type).
pub const V3_HEADER_LEN: usize = 112;

/// Incompatible feature bit 0: refcounts may be stale.
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: metadata is known to be corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data lives in an external data file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: the compression type field is not zlib.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries with subclusters.
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Every incompatible bit qimg understands.
pub const INCOMPAT_KNOWN: u64 = 0x1f;
/// Compatible feature bit 0: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
/// Autoclear bit 0: the bitmaps extension is consistent.
pub const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
/// Autoclear bit 1: the external data file is a valid raw image.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

const EXT_END: u32 = 0x0000_0000;
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
const EXT_FEATURE_TABLE: u32 = 0x6803_F857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_CRYPTO: u32 = 0x0537_BE77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Largest active L1 table QEMU accepts (32 MiB).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table QEMU accepts (8 MiB).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Largest number of internal snapshots QEMU accepts.
pub const MAX_SNAPSHOTS: u32 = 65536;

/// How compressed clusters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate with a 4 KiB window (type 0).
    Zlib,
    /// One zstd frame per cluster (type 1).
    Zstd,
}

impl CompressionType {
    /// The name qemu-img prints.
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// One entry of the feature name table extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    /// The bit number.
    pub bit: u8,
    /// The human name.
    pub name: String,
}

/// The bitmaps extension: where the bitmap directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapsExtension {
    /// Number of bitmaps in the directory.
    pub count: u32,
    /// Size of the directory in bytes.
    pub directory_size: u64,
    /// Offset of the directory.
    pub directory_offset: u64,
}

/// A parsed qcow2 header with its extensions and backing file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Offset of the backing file name, 0 for none.
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// 0 none, 1 AES, 2 LUKS.
    pub crypt_method: u32,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// Offset of the active L1 table.
    pub l1_table_offset: u64,
    /// Offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Size of the refcount table in clusters.
    pub refcount_table_clusters: u32,
    /// Number of internal snapshots.
    pub nb_snapshots: u32,
    /// Offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (0 for v2).
    pub incompatible_features: u64,
    /// Compatible feature bits (0 for v2).
    pub compatible_features: u64,
    /// Autoclear feature bits (0 for v2).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (4 for v2).
    pub refcount_order: u32,
    /// Length of the header proper (72 for v2).
    pub header_length: u32,
    /// The compression type field (0 when absent).
    pub compression_type_raw: u8,
    /// Header bytes after the 112 qimg knows (kept as they are on rewrite).
    pub extra_fields: Vec<u8>,
    /// Backing file format from extension 0xE2792ACA.
    pub backing_format: Option<String>,
    /// The backing file name.
    pub backing_file: Option<String>,
    /// The feature name table.
    pub feature_names: Vec<FeatureName>,
    /// The external data file name.
    pub data_file: Option<String>,
    /// The bitmaps extension.
    pub bitmaps: Option<BitmapsExtension>,
    /// The full disk encryption header pointer (offset, length).
    pub crypto_header: Option<(u64, u64)>,
    /// Extensions qimg does not know, kept as (type, data).
    pub unknown_extensions: Vec<(u32, Vec<u8>)>,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Header {
    /// Parses the header from the first bytes of the file (at most one
    /// cluster is looked at; `buf` may be shorter when the file is short).
    pub fn parse(buf: &[u8]) -> Result<Header> {
        if buf.len() < 8 {
            return Err(Error::invalid(
                "file is too short for a qcow2 header (truncated)",
            ));
        }
        if buf[0..4] != MAGIC {
            return Err(Error::invalid("not a qcow2 image (wrong magic)"));
        }
        let version = be32(buf, 4);
        if version != 2 && version != 3 {
            return Err(Error::unsupported(format!(
                "Unsupported qcow2 version {version}"
            )));
        }
        if buf.len() < V2_HEADER_LEN {
            return Err(Error::invalid(format!(
                "qcow2 header is truncated: the file has {} bytes, the header needs {V2_HEADER_LEN}",
                buf.len()
            )));
        }
        let cluster_bits = be32(buf, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Error::unsupported(format!(
                "Unsupported cluster size: 2^{cluster_bits} (qcow2 allows 2^9 to 2^21)"
            )));
        }
        let cluster_size = 1usize << cluster_bits;
        let mut h = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits,
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN as u32,
            compression_type_raw: 0,
            extra_fields: Vec::new(),
            backing_format: None,
            backing_file: None,
            feature_names: Vec::new(),
            data_file: None,
            bitmaps: None,
            crypto_header: None,
            unknown_extensions: Vec::new(),
        };
        if version == 3 {
            if buf.len() < V3_HEADER_MIN_LEN {
                return Err(Error::invalid(format!(
                    "qcow2 header is truncated: the file has {} bytes, a version 3 header needs {V3_HEADER_MIN_LEN}",
                    buf.len()
                )));
            }
            h.incompatible_features = be64(buf, 72);
            h.compatible_features = be64(buf, 80);
            h.autoclear_features = be64(buf, 88);
            h.refcount_order = be32(buf, 96);
            h.header_length = be32(buf, 100);
            let hl = h.header_length as usize;
            if hl < V3_HEADER_MIN_LEN {
                return Err(Error::invalid(format!(
                    "qcow2 header too short (header_length {hl}, at least 104 needed)"
                )));
            }
            if hl > cluster_size {
                return Err(Error::invalid(format!(
                    "qcow2 header exceeds cluster size (header_length {hl})"
                )));
            }
            if hl % 8 != 0 {
                return Err(Error::invalid(format!(
                    "invalid header_length {hl}: it must be a multiple of 8"
                )));
            }
            if hl > buf.len() {
                return Err(Error::invalid(format!(
                    "qcow2 header is truncated: header_length is {hl} but the file has {} bytes",
                    buf.len()
                )));
            }
            if hl > V3_HEADER_MIN_LEN {
                h.compression_type_raw = buf[104];
            }
            if hl > V3_HEADER_LEN {
                h.extra_fields = buf[V3_HEADER_LEN..hl].to_vec();
            }
        }
        if h.refcount_order > 6 {
            return Err(Error::invalid(format!(
                "Reference count entry width too large; may not exceed 64 bits (refcount_order {})",
                h.refcount_order
            )));
        }
        let limit = buf.len().min(cluster_size);
        let ext_end = if h.backing_file_offset != 0 {
            (h.backing_file_offset.min(limit as u64)) as usize
        } else {
            limit
        };
        h.parse_extensions(&buf[..limit], h.header_length as usize, ext_end)?;
        if h.backing_file_offset != 0 {
            let size = h.backing_file_size as u64;
            let end = h.backing_file_offset.checked_add(size);
            if size > 1023 || end.is_none_or(|e| e > cluster_size as u64) {
                return Err(Error::invalid(format!(
                    "Invalid backing file offset: the name ({size} bytes at {:#x}) must lie inside cluster 0",
                    h.backing_file_offset
                )));
            }
            let (start, end) = (h.backing_file_offset as usize, end.unwrap_or(0) as usize);
            if end > buf.len() {
                return Err(Error::invalid(
                    "qcow2 header is truncated: the backing file name lies past the end of the file",
                ));
            }
            h.backing_file = Some(text(&buf[start..end]));
        }
        Ok(h)
    }

    fn parse_extensions(&mut self, buf: &[u8], start: usize, end: usize) -> Result<()> {
        // A known extension that appears twice counts as QEMU counts it:
        // the last one wins (and a header rewrite keeps only that one).
        let mut off = start;
        while off + 8 <= end {
            let kind = be32(buf, off);
            let len = be32(buf, off + 4) as usize;
            if kind == EXT_END {
                return Ok(());
            }
            let data_start = off + 8;
            if len > end - data_start {
                return Err(Error::invalid(format!(
                    "Header extension too large (type {kind:#010x}, {len} bytes at offset {off:#x})"
                )));
            }
            let data = &buf[data_start..data_start + len];
            self.apply_extension(kind, data, off)?;
            off = data_start + len.div_ceil(8) * 8;
        }
        // Running into the backing file name or the end of cluster 0 without
        // an end marker is what QEMU tolerates, and so do we.
        Ok(())
    }

    fn apply_extension(&mut self, kind: u32, data: &[u8], off: usize) -> Result<()> {
        match kind {
            EXT_BACKING_FORMAT => self.backing_format = Some(text(data)),
            EXT_DATA_FILE => self.data_file = Some(text(data)),
            EXT_FEATURE_TABLE => {
                self.feature_names = data
                    .chunks_exact(48)
                    .map(|e| {
                        let name = &e[2..];
                        let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                        FeatureName {
                            kind: e[0],
                            bit: e[1],
                            name: text(&name[..n]),
                        }
                    })
                    .collect();
            }
            EXT_BITMAPS => {
                if data.len() < 24 {
                    return Err(Error::invalid(format!(
                        "bitmaps extension at {off:#x} is {} bytes, 24 expected",
                        data.len()
                    )));
                }
                self.bitmaps = Some(BitmapsExtension {
                    count: be32(data, 0),
                    directory_size: be64(data, 8),
                    directory_offset: be64(data, 16),
                });
            }
            EXT_CRYPTO => {
                if data.len() < 16 {
                    return Err(Error::invalid(format!(
                        "encryption header pointer at {off:#x} is {} bytes, 16 expected",
                        data.len()
                    )));
                }
                self.crypto_header = Some((be64(data, 0), be64(data, 8)));
            }
            _ => self.unknown_extensions.push((kind, data.to_vec())),
        }
        Ok(())
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are 128-bit with subclusters.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTL2 != 0
    }

    /// The refcount width in bits.
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// The compression type, validated against its feature bit.
    pub fn compression_type(&self) -> Result<CompressionType> {
        let bit = self.incompatible_features & INCOMPAT_COMPRESSION != 0;
        match (self.compression_type_raw, bit) {
            (0, false) => Ok(CompressionType::Zlib),
            (1, true) => Ok(CompressionType::Zstd),
            (0, true) => Err(Error::invalid(
                "Compression type incompatible feature bit must not be set",
            )),
            (_, false) => Err(Error::invalid(
                "Compression type incompatible feature bit must be set",
            )),
            (t, true) => Err(Error::unsupported(format!("unknown compression type {t}"))),
        }
    }

    /// The name of a feature bit from the image's own table, if it has one.
    fn feature_name(&self, kind: u8, bit: u8) -> Option<&str> {
        self.feature_names
            .iter()
            .find(|f| f.kind == kind && f.bit == bit)
            .map(|f| f.name.as_str())
    }

    /// Checks everything that can be checked without reading more than the
    /// header: feature bits, encryption, sizes and table placement against the
    /// file length.
    pub fn validate(&self, file_len: u64) -> Result<()> {
        let unknown = self.incompatible_features & !INCOMPAT_KNOWN;
        if unknown != 0 {
            // qemu-img's sentence: the names the image's feature table
            // gives, then the mask of the unnamed bits; then which bits.
            let bits: Vec<u8> = (0..64u8).filter(|b| unknown & (1u64 << b) != 0).collect();
            let mut parts: Vec<String> = Vec::new();
            let mut unnamed = unknown;
            for &b in &bits {
                if let Some(n) = self.feature_name(0, b) {
                    parts.push(n.to_string());
                    unnamed &= !(1u64 << b);
                }
            }
            if unnamed != 0 {
                parts.push(format!("Unknown incompatible feature: {unnamed:x}"));
            }
            let list: Vec<String> = bits.iter().map(|b| b.to_string()).collect();
            let plural = if bits.len() == 1 { "" } else { "s" };
            return Err(Error::unsupported(format!(
                "Unsupported qcow2 feature(s): {} (bit{plural} {})",
                parts.join(", "),
                list.join(", ")
            )));
        }
        match self.crypt_method {
            0 => {}
            1 => {
                return Err(Error::unsupported(
                    "image is encrypted with AES (crypt_method 1); qimg does not read encrypted images",
                ))
            }
            2 => match self.crypto_header {
                None => {
                    return Err(Error::invalid(
                        "Could not find full disk encryption header (crypt_method 2 without its header extension)",
                    ))
                }
                Some((off, len)) => {
                    if off % self.cluster_size() != 0 {
                        return Err(Error::invalid(format!(
                            "Crypto header offset {off:#x} is not a multiple of the cluster size"
                        )));
                    }
                    if off.checked_add(len).is_none_or(|end| end > file_len) {
                        return Err(Error::invalid(format!(
                            "Crypto header ({len} bytes at {off:#x}) lies past the end of the file"
                        )));
                    }
                }
            },
            n => {
                return Err(Error::unsupported(format!(
                    "Unsupported encryption method {n}"
                )))
            }
        }
        self.compression_type()?;
        let cs = self.cluster_size();
        if self.extended_l2() && self.cluster_bits < 14 {
            return Err(Error::invalid(format!(
                "extended L2 entries need clusters of at least 16 KiB (cluster size {cs})"
            )));
        }
        if self.size > i64::MAX as u64 {
            return Err(Error::invalid(format!(
                "virtual size {} is too large",
                self.size
            )));
        }
        let l2_entries = cs / if self.extended_l2() { 16 } else { 8 };
        let per_l1 = cs * l2_entries;
        let needed = self.size.div_ceil(per_l1);
        if (self.l1_size as u64) < needed {
            return Err(Error::corrupt(format!(
                "L1 table is too small: {} entries cover less than the virtual size {} ({needed} needed)",
                self.l1_size, self.size
            )));
        }
        let l1_bytes = self.l1_size as u64 * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(Error::corrupt(format!(
                "Active L1 table too large ({} entries)",
                self.l1_size
            )));
        }
        if self.l1_size > 0 {
            check_table("L1 table", self.l1_table_offset, l1_bytes, cs, file_len)?;
        }
        if self.refcount_table_clusters == 0 {
            return Err(Error::corrupt(
                "Image does not contain a reference count table",
            ));
        }
        let rt_bytes = self.refcount_table_clusters as u64 * cs;
        if rt_bytes > MAX_REFTABLE_BYTES {
            return Err(Error::corrupt(format!(
                "reference count table too large ({} clusters)",
                self.refcount_table_clusters
            )));
        }
        if self.refcount_table_offset % cs != 0 {
            return Err(Error::corrupt(format!(
                "Reference count table offset invalid ({:#x} is not cluster aligned)",
                self.refcount_table_offset
            )));
        }
        if self.refcount_table_offset >= file_len {
            return Err(Error::corrupt(format!(
                "reference count table offset {:#x} is past the end of the file ({file_len} bytes)",
                self.refcount_table_offset
            )));
        }
        if self.nb_snapshots > MAX_SNAPSHOTS {
            return Err(Error::corrupt(format!(
                "too many snapshots ({})",
                self.nb_snapshots
            )));
        }
        if self.nb_snapshots > 0 {
            if self.snapshots_offset % cs != 0 {
                return Err(Error::corrupt(format!(
                    "Snapshot table offset invalid ({:#x} is not cluster aligned)",
                    self.snapshots_offset
                )));
            }
            if self.snapshots_offset >= file_len {
                return Err(Error::corrupt(format!(
                    "snapshot table offset {:#x} is past the end of the file ({file_len} bytes)",
                    self.snapshots_offset
                )));
            }
        }
        if self.incompatible_features & INCOMPAT_DATA_FILE != 0 && self.data_file.is_none() {
            return Err(Error::invalid(
                "image uses an external data file but its header does not name it",
            ));
        }
        Ok(())
    }
}

/// The feature name table QEMU 10 writes, in its order: (kind, bit, name).
pub const STANDARD_FEATURE_NAMES: [(u8, u8, &str); 8] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];

/// Appends one header extension record (type, length, data, padding to 8).
fn push_extension(out: &mut Vec<u8>, kind: u32, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(8) * 8, 0);
}

impl Header {
    /// Encodes the header as the whole of cluster 0, as QEMU lays it out:
    /// the fields, then the extensions (backing format, external data file,
    /// encryption pointer, feature names for v3 images with clusters over
    /// 4 KiB, bitmaps, unknown ones kept), the end marker, and the backing
    /// file name. The offsets of the name are recomputed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut b = Vec::with_capacity(1024);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&[0u8; 12]); // backing name offset and size, set below
        b.extend_from_slice(&self.cluster_bits.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.crypt_method.to_be_bytes());
        b.extend_from_slice(&self.l1_size.to_be_bytes());
        b.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        b.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            b.extend_from_slice(&self.incompatible_features.to_be_bytes());
            b.extend_from_slice(&self.compatible_features.to_be_bytes());
            b.extend_from_slice(&self.autoclear_features.to_be_bytes());
            b.extend_from_slice(&self.refcount_order.to_be_bytes());
            let len = (V3_HEADER_LEN + self.extra_fields.len()) as u32;
            b.extend_from_slice(&len.to_be_bytes());
            b.push(self.compression_type_raw);
            b.resize(V3_HEADER_LEN, 0);
            b.extend_from_slice(&self.extra_fields);
        }
        if let Some(f) = &self.backing_format {
            push_extension(&mut b, EXT_BACKING_FORMAT, f.as_bytes());
        }
        if let Some(d) = &self.data_file {
            push_extension(&mut b, EXT_DATA_FILE, d.as_bytes());
        }
        if let Some((off, len)) = self.crypto_header {
            let mut data = off.to_be_bytes().to_vec();
            data.extend_from_slice(&len.to_be_bytes());
            push_extension(&mut b, EXT_CRYPTO, &data);
        }
        if self.version >= 3 && self.cluster_size() > 4096 {
            let mut table = Vec::with_capacity(48 * STANDARD_FEATURE_NAMES.len());
            for (kind, bit, name) in STANDARD_FEATURE_NAMES {
                let mut entry = [0u8; 48];
                entry[0] = kind;
                entry[1] = bit;
                entry[2..2 + name.len()].copy_from_slice(name.as_bytes());
                table.extend_from_slice(&entry);
            }
            push_extension(&mut b, EXT_FEATURE_TABLE, &table);
        }
        if let Some(bm) = self.bitmaps {
            let mut data = bm.count.to_be_bytes().to_vec();
            data.extend_from_slice(&[0u8; 4]);
            data.extend_from_slice(&bm.directory_size.to_be_bytes());
            data.extend_from_slice(&bm.directory_offset.to_be_bytes());
            push_extension(&mut b, EXT_BITMAPS, &data);
        }
        for (kind, data) in &self.unknown_extensions {
            push_extension(&mut b, *kind, data);
        }
        b.extend_from_slice(&[0u8; 8]);
        let cs = self.cluster_size() as usize;
        if let Some(name) = &self.backing_file {
            if name.len() > 1023 {
                return Err(Error::argument(format!(
                    "backing file name is too long ({} bytes, at most 1023)",
                    name.len()
                )));
            }
            let offset = b.len() as u64;
            b[8..16].copy_from_slice(&offset.to_be_bytes());
            b[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
        }
        if b.len() > cs {
            return Err(Error::argument(format!(
                "the header and its extensions ({} bytes) do not fit in one {cs}-byte cluster",
                b.len()
            )));
        }
        b.resize(cs, 0);
        Ok(b)
    }
}

/// Checks that a table of `len` bytes at `offset` is cluster aligned and lies
/// inside a file of `file_len` bytes.
pub fn check_table(
    what: &str,
    offset: u64,
    len: u64,
    cluster_size: u64,
    file_len: u64,
) -> Result<()> {
    if offset % cluster_size != 0 || offset == 0 {
        return Err(Error::corrupt(format!(
            "{what} offset invalid ({offset:#x} is not a cluster-aligned offset after the header)"
        ))
        .at_offset(offset));
    }
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::corrupt(format!(
            "{what} at {offset:#x} ({len} bytes) lies past the end of the file ({file_len} bytes)"
        ))
        .at_offset(offset)),
    }
}
