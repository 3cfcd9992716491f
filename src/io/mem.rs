//! An in-memory [`Storage`], for tests and fuzzing.

use super::{HostExtent, Storage};
use crate::error::Result;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Bytes in memory posing as a file. Every byte counts as data (no holes).
#[derive(Debug)]
pub struct MemStorage {
    path: PathBuf,
    data: RwLock<Vec<u8>>,
}

impl MemStorage {
    /// A storage holding `data`, named `path` in messages.
    pub fn new(path: impl AsRef<Path>, data: Vec<u8>) -> Self {
        MemStorage {
            path: path.as_ref().to_path_buf(),
            data: RwLock::new(data),
        }
    }

    /// A copy of the current bytes.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes().clone()
    }

    fn bytes(&self) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn bytes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<u8>> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.bytes().len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        super::read_from_bytes(&self.bytes(), offset, buf);
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.len().map(Some)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        super::write_into_bytes(&mut self.bytes_mut(), offset, buf);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.bytes_mut().resize(len as usize, 0);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        let mut data = self.bytes_mut();
        let end = (offset + len) as usize;
        if data.len() < end {
            data.resize(end, 0);
        }
        Ok(())
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        Ok(HostExtent::without_holes(self.len()?, offset))
    }
}
