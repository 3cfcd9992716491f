//! A window onto another storage: `size` bytes starting at `offset` (QEMU's
//! raw driver with its `offset` and `size` options, e.g. a disk stored
//! inside a tar archive at some offset).

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// `size` bytes of `inner` from `offset` on, seen as a storage of their
/// own. Reads and writes never leave the window; it cannot be resized.
#[derive(Debug)]
pub struct WindowStorage {
    inner: Box<dyn Storage>,
    offset: u64,
    size: u64,
    name: PathBuf,
}

/// Why a window does not fit the storage under it, in QEMU's words.
fn misfit(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

impl WindowStorage {
    /// The window of `inner` from `offset`, `size` bytes long (to the end
    /// of `inner` when `None`), known as `name` in messages and outputs.
    /// Refused when it does not lie inside `inner`, or when `size` is not a
    /// multiple of 512, as QEMU refuses them.
    pub fn new(
        inner: Box<dyn Storage>,
        offset: u64,
        size: Option<u64>,
        name: PathBuf,
    ) -> Result<Self> {
        let len = inner.len()?;
        if offset > len {
            return Err(misfit(format!(
                "Offset ({offset}) cannot be greater than size of the containing file ({len})"
            )));
        }
        let size = match size {
            Some(size) => {
                if offset.checked_add(size).is_none_or(|end| end > len) {
                    return Err(misfit(format!(
                        "The sum of offset ({offset}) and size ({size}) has to be smaller or equal to the  actual size of the containing file ({len})"
                    )));
                }
                if size % 512 != 0 {
                    return Err(misfit("Specified size is not multiple of 512".into()));
                }
                size
            }
            None => len - offset,
        };
        Ok(WindowStorage {
            inner,
            offset,
            size,
            name,
        })
    }

    /// Checks that `len` bytes at `offset` lie inside the window.
    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfBounds,
                format!(
                    "{len} bytes at {offset} are outside the {} byte window at offset {}",
                    self.size, self.offset
                ),
            )
            .with_path(&self.name)),
        }
    }
}

impl Storage for WindowStorage {
    fn path(&self) -> &Path {
        &self.name
    }

    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }

    fn requests_in_flight(&self) -> usize {
        self.inner.requests_in_flight()
    }

    fn writes_in_flight(&self) -> usize {
        self.inner.writes_in_flight()
    }

    fn below(&self) -> Option<(&dyn Storage, u64)> {
        Some((self.inner.as_ref(), self.offset))
    }

    fn len(&self) -> Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Past the end of the window reads as zeros, as past a file's end.
        let inside = self.size.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            self.inner.read_at(head, self.offset + offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.inner.allocated_bytes()
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        if offset >= self.size {
            return Ok(HostExtent::TrailingHole);
        }
        let left = self.size - offset;
        Ok(match self.inner.extent_at(self.offset + offset)? {
            HostExtent::Data(n) => HostExtent::Data(n.min(left)),
            HostExtent::Hole(n) => HostExtent::Hole(n.min(left)),
            // The window ends before the storage does: its tail is a hole.
            HostExtent::TrailingHole => HostExtent::Hole(left),
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.inner.write_at(buf, self.offset + offset)
    }

    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.inner.write_data_at(buf, self.offset + offset)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if len == self.size {
            return Ok(());
        }
        Err(Error::unsupported(format!(
            "a {} byte window onto another file cannot be resized to {len} bytes",
            self.size
        ))
        .with_path(&self.name))
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.check(offset, len)?;
        self.inner.allocate(self.offset + offset, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check(offset, len)?;
        self.inner.zero_range(self.offset + offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemStorage;

    fn window(data: Vec<u8>, offset: u64, size: Option<u64>) -> Result<WindowStorage> {
        WindowStorage::new(
            Box::new(MemStorage::new("f", data)),
            offset,
            size,
            PathBuf::from("w"),
        )
    }

    #[test]
    fn reads_and_writes_stay_inside_the_window() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let w = window(data.clone(), 1024, Some(1024)).unwrap();
        assert_eq!(w.len().unwrap(), 1024);
        let mut buf = vec![0u8; 1536];
        w.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..1024], &data[1024..2048]);
        assert!(
            buf[1024..].iter().all(|&b| b == 0),
            "past the window reads zeros"
        );
        w.write_at(&[7; 512], 512).unwrap();
        assert!(w.write_at(&[7; 513], 512).is_err());
        assert!(w.set_len(4096).is_err());
        assert_eq!(w.below().unwrap().1, 1024);
        let mut back = vec![0u8; 512];
        w.below().unwrap().0.read_at(&mut back, 1536).unwrap();
        assert_eq!(back, vec![7; 512]);
    }

    #[test]
    fn windows_outside_the_file_are_refused_with_qemus_words() {
        let e = window(vec![0; 1024], 2048, None).unwrap_err();
        assert_eq!(
            e.message(),
            "Offset (2048) cannot be greater than size of the containing file (1024)"
        );
        let e = window(vec![0; 1024], 512, Some(1024)).unwrap_err();
        assert!(e
            .message()
            .starts_with("The sum of offset (512) and size (1024)"));
        let e = window(vec![0; 1024], 0, Some(513)).unwrap_err();
        assert_eq!(e.message(), "Specified size is not multiple of 512");
        assert_eq!(
            window(vec![0; 1024], 24, None).unwrap().len().unwrap(),
            1000
        );
    }
}
