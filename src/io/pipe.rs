//! A pipe (or FIFO) as an output storage: bytes go out in increasing
//! offsets only, so a format that writes its file front to back (a
//! streamOptimized VMDK) can be sent to `/dev/stdout` or a named pipe.
//! The first bytes written stay readable (a format reads its header back
//! when it opens the new image); anything else cannot be read again.

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How many leading bytes of the stream stay readable.
const KEPT_HEAD: usize = 1 << 20;

/// A write-only, front-to-back output.
#[derive(Debug)]
pub struct PipeStorage {
    path: PathBuf,
    state: Mutex<PipeState>,
}

#[derive(Debug)]
struct PipeState {
    file: File,
    /// Bytes sent so far (the next offset that may be written).
    sent: u64,
    /// The first bytes sent, kept to be read back.
    head: Vec<u8>,
}

/// Whether `path` names a pipe or FIFO (following symlinks such as
/// `/dev/stdout`).
pub fn is_pipe(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

impl PipeStorage {
    /// Opens the pipe at `path` for writing.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("could not open", e).with_path(path))?;
        Ok(PipeStorage {
            path: path.to_path_buf(),
            state: Mutex::new(PipeState {
                file,
                sent: 0,
                head: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backwards(&self, offset: u64, sent: u64) -> Error {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "cannot write at offset {offset} of a pipe after {sent} bytes were sent \
                 (this output format is not written front to back; write to a file)"
            ),
        )
        .with_path(&self.path)
    }
}

impl PipeState {
    fn send(&mut self, buf: &[u8], path: &Path) -> Result<()> {
        if (self.head.len() as u64) == self.sent && self.head.len() < KEPT_HEAD {
            let n = (KEPT_HEAD - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..n]);
        }
        self.file
            .write_all(buf)
            .map_err(|e| Error::io("write failed", e).with_path(path))?;
        self.sent += buf.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, offset: u64, path: &Path) -> Result<()> {
        let zeros = vec![0u8; 64 << 10];
        while self.sent < offset {
            let n = (offset - self.sent).min(zeros.len() as u64) as usize;
            self.send(&zeros[..n], path)?;
        }
        Ok(())
    }
}

impl Storage for PipeStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.lock().sent)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let st = self.lock();
        let end = offset.saturating_add(buf.len() as u64);
        if end <= st.head.len() as u64 || offset >= st.sent {
            super::read_from_bytes(&st.head, offset, buf);
            if offset >= st.sent {
                buf.fill(0);
            }
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("cannot read back offset {offset} of a pipe"),
        )
        .with_path(&self.path))
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        Ok(HostExtent::without_holes(self.lock().sent, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut st = self.lock();
        if offset < st.sent {
            return Err(self.backwards(offset, st.sent));
        }
        st.pad_to(offset, &self.path)?;
        st.send(buf, &self.path)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut st = self.lock();
        match len.cmp(&st.sent) {
            std::cmp::Ordering::Less => Err(self.backwards(len, st.sent)),
            _ => st.pad_to(len, &self.path),
        }
    }

    fn flush(&self) -> Result<()> {
        let mut st = self.lock();
        st.file
            .flush()
            .map_err(|e| Error::io("flush failed", e).with_path(&self.path))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        let mut st = self.lock();
        if offset + len > st.sent {
            if offset < st.sent {
                return Err(self.backwards(offset, st.sent));
            }
            st.pad_to(offset + len, &self.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_takes_bytes_front_to_back_and_keeps_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(is_pipe(&fifo));
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let p = PipeStorage::create(&fifo).unwrap();
        p.set_len(0).unwrap();
        p.write_at(b"head", 0).unwrap();
        p.write_at(b"tail", 10).unwrap();
        assert!(p.write_at(b"x", 3).is_err());
        let mut b = [0u8; 4];
        p.read_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"head");
        drop(p);
        assert_eq!(reader.join().unwrap(), b"head\0\0\0\0\0\0tail");
    }
}
