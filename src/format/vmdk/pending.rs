//! The tail of a new, empty stream, held back: a streamOptimized file
//! is written front to back, and the grains a copy appends go exactly
//! where the empty image's tail (grain directory, footer, end-of-stream
//! marker) would lie. So the tail is kept in memory, read as if written,
//! and written only if nothing was written over it by the time the
//! storage is closed (a plain `create`).

use crate::error::Result;
use crate::io::{HostExtent, Storage};
use std::path::Path;
use std::sync::Mutex;

/// A storage whose bytes from `at` on are `tail` until a write reaches
/// them.
#[derive(Debug)]
pub struct PendingTail {
    inner: Box<dyn Storage>,
    tail: Mutex<Option<(u64, Vec<u8>)>>,
}

impl PendingTail {
    /// `inner`, reading `tail` at `at` (its end) until it is written over.
    pub fn new(inner: Box<dyn Storage>, at: u64, tail: Vec<u8>) -> Self {
        PendingTail {
            inner,
            tail: Mutex::new(Some((at, tail))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Vec<u8>)>> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the held tail once a write reaches it.
    fn written(&self, offset: u64, len: u64) {
        let mut t = self.lock();
        if let Some((at, tail)) = t.as_ref() {
            if offset + len > *at && offset < at + tail.len() as u64 {
                *t = None;
            }
        }
    }
}

impl Drop for PendingTail {
    fn drop(&mut self) {
        if let Some((at, tail)) = self.lock().take() {
            let _ = self
                .inner
                .write_at(&tail, at)
                .and_then(|_| self.inner.flush());
        }
    }
}

impl Storage for PendingTail {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }
    fn len(&self) -> Result<u64> {
        match self.lock().as_ref() {
            Some((at, tail)) => Ok(at + tail.len() as u64),
            None => self.inner.len(),
        }
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)?;
        if let Some((at, tail)) = self.lock().as_ref() {
            let end = offset + buf.len() as u64;
            let tail_end = at + tail.len() as u64;
            let (from, to) = (offset.max(*at), end.min(tail_end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&tail[(from - at) as usize..(to - at) as usize]);
            }
        }
        Ok(())
    }
    fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.inner.allocated_bytes()
    }
    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        Ok(HostExtent::without_holes(self.len()?, offset))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.written(offset, buf.len() as u64);
        self.inner.write_at(buf, offset)
    }
    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.written(offset, buf.len() as u64);
        self.inner.write_data_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.allocate(offset, len)
    }
    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.written(offset, len);
        self.inner.zero_range(offset, len)
    }
}
