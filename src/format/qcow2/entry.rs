//! L1 and L2 table entries: decoding, encoding and classification.
//! Everything here is pure arithmetic on integers.

/// Offset bits of an L1 entry (and of a standard L2 entry).
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Reserved bits of an L1 entry.
pub const L1_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
/// Reserved bits of a standard L2 entry.
pub const L2_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// COPIED flag: refcount is exactly one.
pub const COPIED: u64 = 1 << 63;
/// COMPRESSED flag of an L2 entry.
pub const COMPRESSED: u64 = 1 << 62;
/// ZERO flag of a standard L2 entry.
pub const ZERO: u64 = 1;
/// Subclusters per cluster with extended L2 entries.
pub const SUBCLUSTERS: u32 = 32;

/// The parameters that decide how an L2 entry is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// 128-bit entries with a subcluster bitmap.
    pub extended_l2: bool,
    /// Guest data lives in an external data file (host offset 0 is valid).
    pub external_data: bool,
}

impl Geometry {
    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    /// Bytes per L2 entry.
    pub fn entry_bytes(&self) -> usize {
        if self.extended_l2 {
            16
        } else {
            8
        }
    }
    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / self.entry_bytes() as u64
    }
    /// Subclusters per cluster (1 without extended L2).
    pub fn subclusters(&self) -> u32 {
        if self.extended_l2 {
            SUBCLUSTERS
        } else {
            1
        }
    }
    /// Bytes per subcluster (the cluster size without extended L2).
    pub fn subcluster_size(&self) -> u64 {
        self.cluster_size() / self.subclusters() as u64
    }
}

/// One L2 entry: the 64-bit descriptor and, with extended L2, the bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L2Entry {
    /// The first (or only) 64-bit word.
    pub word: u64,
    /// The subcluster bitmap (0 without extended L2).
    pub bitmap: u64,
}

/// Where a compressed cluster's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedDescriptor {
    /// Host byte offset of the compressed data (not aligned).
    pub offset: u64,
    /// Additional 512-byte sectors after the one holding `offset`.
    pub extra_sectors: u64,
}

impl CompressedDescriptor {
    fn shift(cluster_bits: u32) -> u32 {
        62 - (cluster_bits - 8)
    }

    /// Decodes bits 0..61 of a compressed L2 entry.
    pub fn decode(word: u64, cluster_bits: u32) -> Self {
        let x = Self::shift(cluster_bits);
        let offset_mask = (1u64 << x) - 1;
        let count_mask = (1u64 << (cluster_bits - 8)) - 1;
        CompressedDescriptor {
            offset: word & offset_mask,
            extra_sectors: (word >> x) & count_mask,
        }
    }

    /// Encodes this descriptor as an L2 word (with the COMPRESSED flag).
    pub fn encode(&self, cluster_bits: u32) -> u64 {
        COMPRESSED | (self.extra_sectors << Self::shift(cluster_bits)) | self.offset
    }

    /// The descriptor for `len` bytes of compressed data at `offset`.
    pub fn for_data(offset: u64, len: u64) -> Self {
        CompressedDescriptor {
            offset,
            extra_sectors: ((offset + len - 1) >> 9) - (offset >> 9),
        }
    }

    /// How many bytes to read from `offset` to be sure to have the data.
    pub fn read_len(&self) -> u64 {
        (self.extra_sectors + 1) * 512 - (self.offset & 511)
    }
}

/// What one subcluster (or cluster, without extended L2) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubclusterType {
    /// Data at this host offset (of the subcluster's cluster).
    Normal(u64),
    /// Reads as zeros; the host cluster stays reserved.
    ZeroAlloc(u64),
    /// Reads as zeros; no host cluster.
    ZeroPlain,
    /// Falls through to the backing file; the host cluster is reserved.
    UnallocatedAlloc(u64),
    /// Falls through to the backing file.
    UnallocatedPlain,
    /// A compressed cluster.
    Compressed(CompressedDescriptor),
    /// The entry contradicts itself (e.g. a subcluster both allocated and zero).
    Invalid,
}

/// Decodes an L1 entry into the L2 table offset (None when there is no table).
pub fn l1_table_offset(entry: u64) -> Option<u64> {
    match entry & OFFSET_MASK {
        0 => None,
        off => Some(off),
    }
}

impl L2Entry {
    /// Decodes an entry from its big-endian bytes (8 or 16 of them).
    pub fn decode(bytes: &[u8]) -> Self {
        let word = u64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let bitmap = if bytes.len() >= 16 {
            u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"))
        } else {
            0
        };
        L2Entry { word, bitmap }
    }

    /// Encodes the entry as big-endian bytes into `out` (8 or 16 bytes).
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.word.to_be_bytes());
        if out.len() >= 16 {
            out[8..16].copy_from_slice(&self.bitmap.to_be_bytes());
        }
    }

    /// Whether the COMPRESSED flag is set.
    pub fn is_compressed(&self) -> bool {
        self.word & COMPRESSED != 0
    }

    /// The host cluster offset of a non-compressed entry, if it has one.
    pub fn host_cluster(&self, geo: &Geometry) -> Option<u64> {
        if self.is_compressed() {
            return None;
        }
        let off = self.word & OFFSET_MASK;
        if off != 0 || (geo.external_data && self.word & COPIED != 0) {
            Some(off)
        } else {
            None
        }
    }

    /// Classifies subcluster `sc` (0 without extended L2) of this entry.
    pub fn subcluster_type(&self, geo: &Geometry, sc: u32) -> SubclusterType {
        if self.is_compressed() {
            return SubclusterType::Compressed(CompressedDescriptor::decode(
                self.word,
                geo.cluster_bits,
            ));
        }
        let host = self.host_cluster(geo);
        if !geo.extended_l2 {
            return match (self.word & ZERO != 0, host) {
                (true, Some(h)) => SubclusterType::ZeroAlloc(h),
                (true, None) => SubclusterType::ZeroPlain,
                (false, Some(h)) => SubclusterType::Normal(h),
                (false, None) => SubclusterType::UnallocatedPlain,
            };
        }
        let alloc = self.bitmap & 0xffff_ffff;
        let zero = self.bitmap >> 32;
        let alloc_bit = alloc & (1 << sc) != 0;
        let zero_bit = zero & (1 << sc) != 0;
        match host {
            Some(h) => {
                if alloc & zero != 0 {
                    SubclusterType::Invalid
                } else if zero_bit {
                    SubclusterType::ZeroAlloc(h)
                } else if alloc_bit {
                    SubclusterType::Normal(h)
                } else {
                    SubclusterType::UnallocatedAlloc(h)
                }
            }
            None => {
                if alloc != 0 {
                    SubclusterType::Invalid
                } else if zero_bit {
                    SubclusterType::ZeroPlain
                } else {
                    SubclusterType::UnallocatedPlain
                }
            }
        }
    }
}
