//! The host address space of a VMDK: each extent file gets a span of its
//! own (extent `i` at `i << SPAN_SHIFT`), so one host offset names both the
//! file and the offset in it, and the generic readers reach every extent
//! through one [`Storage`].

use crate::error::{Error, ErrorKind, Result};
use crate::io::{HostExtent, Storage};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bits of a host offset that address bytes inside one extent file.
pub const SPAN_SHIFT: u32 = 44;
const SPAN_MASK: u64 = (1 << SPAN_SHIFT) - 1;

/// One extent file's span.
#[derive(Debug)]
pub struct Span {
    /// The file (`None` for a zero extent, which has none).
    pub storage: Option<Arc<dyn Storage>>,
    /// Host holes of the file read as zeros here (a flat extent); a sparse
    /// extent's grains are data whatever the file system says.
    pub holes_are_zero: bool,
}

/// Every extent file of an image, as one storage.
#[derive(Debug)]
pub struct Spans {
    spans: Vec<Span>,
    name: PathBuf,
}

impl Spans {
    /// The spans, known as `name` (the image) in messages.
    pub fn new(spans: Vec<Span>, name: PathBuf) -> Self {
        Spans { spans, name }
    }

    /// The host offset of byte `offset` of extent `index`.
    pub fn host(index: usize, offset: u64) -> u64 {
        ((index as u64) << SPAN_SHIFT) | offset
    }

    /// The file and the offset in it of host offset `host`.
    pub fn locate(&self, host: u64) -> Option<(&Path, u64)> {
        let span = self.spans.get((host >> SPAN_SHIFT) as usize)?;
        Some((span.storage.as_ref()?.path(), host & SPAN_MASK))
    }

    fn file(&self, host: u64) -> Result<(&dyn Storage, u64)> {
        match self.spans.get((host >> SPAN_SHIFT) as usize) {
            Some(Span {
                storage: Some(s), ..
            }) => Ok((s.as_ref(), host & SPAN_MASK)),
            _ => Err(Error::new(
                ErrorKind::OutOfBounds,
                format!("host offset {host:#x} names no extent file"),
            )
            .with_path(&self.name)),
        }
    }

    fn files(&self) -> impl Iterator<Item = &Arc<dyn Storage>> {
        self.spans.iter().filter_map(|s| s.storage.as_ref())
    }
}

impl Storage for Spans {
    fn path(&self) -> &Path {
        &self.name
    }

    fn len(&self) -> Result<u64> {
        let last = self.spans.len().saturating_sub(1);
        match self.spans.last().and_then(|s| s.storage.as_ref()) {
            Some(s) => Ok(Self::host(last, s.len()?)),
            None => Ok(0),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let (s, at) = self.file(offset)?;
        s.read_at(buf, at)
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        let mut sum = 0;
        for s in self.files() {
            match s.allocated_bytes()? {
                Some(n) => sum += n,
                None => return Ok(None),
            }
        }
        Ok(Some(sum))
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        let index = (offset >> SPAN_SHIFT) as usize;
        let (s, at) = self.file(offset)?;
        if self.spans[index].holes_are_zero {
            s.extent_at(at)
        } else {
            Ok(HostExtent::Data(SPAN_MASK + 1 - at))
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let (s, at) = self.file(offset)?;
        s.write_at(buf, at)
    }

    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let (s, at) = self.file(offset)?;
        s.write_data_at(buf, at)
    }

    fn set_len(&self, _len: u64) -> Result<()> {
        Err(Error::unsupported(
            "the extents of a VMDK image cannot be resized as one file",
        ))
    }

    fn flush(&self) -> Result<()> {
        for s in self.files() {
            s.flush()?;
        }
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        let (s, at) = self.file(offset)?;
        s.allocate(at, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        let (s, at) = self.file(offset)?;
        s.zero_range(at, len)
    }
}
