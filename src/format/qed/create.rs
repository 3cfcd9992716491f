//! Creating QED images.

use super::header::{QedHeader, FEATURE_BACKING_FILE, FEATURE_BACKING_FORMAT_NO_PROBE, HEADER_LEN};
use crate::error::{Error, Result};
use crate::format::BackingSpec;
use crate::io::Storage;

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
