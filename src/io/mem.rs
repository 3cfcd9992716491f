//! An in-memory [`Storage`], for tests and fuzzing.

use super::{HostExtent, Storage};
use crate::error::Result;
use std::path::{Path, PathBuf};

/// Bytes in memory posing as a file. Every byte counts as data (no holes).
#[derive(Debug, Clone)]
pub struct MemStorage {
    path: PathBuf,
    data: Vec<u8>,
}

impl MemStorage {
    /// A storage holding `data`, named `path` in messages.
    pub fn new(path: impl AsRef<Path>, data: Vec<u8>) -> Self {
        MemStorage {
            path: path.as_ref().to_path_buf(),
            data,
        }
    }
}

impl Storage for MemStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.data.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let len = self.data.len() as u64;
        let start = offset.min(len) as usize;
        let end = offset.saturating_add(buf.len() as u64).min(len) as usize;
        let n = end - start;
        buf[..n].copy_from_slice(&self.data[start..end]);
        buf[n..].fill(0);
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.data.len() as u64))
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        let len = self.data.len() as u64;
        Ok(if offset >= len {
            HostExtent::TrailingHole
        } else {
            HostExtent::Data(len - offset)
        })
    }
}
