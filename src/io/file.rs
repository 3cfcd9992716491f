//! A local file as [`Storage`], read with positional reads (`pread`).

use super::lock::{self, Access, ImageLock};
use super::{HostExtent, Storage};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A local file, opened read-only or read-write, with QEMU's image locks.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    /// Bytes written since writeback was last started.
    unsynced: AtomicU64,
    _lock: ImageLock,
}

/// After this many bytes written, writeback of the file is started in the
/// background, so the disk works while the copy goes on and a final flush
/// has little left to do.
const WRITEBACK_EVERY: u64 = 32 << 20;

impl FileStorage {
    /// Opens `path` read-only (sharing everything after `-U`, see
    /// [`lock::set_force_share`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenOptions::new().read(true), lock::read_access())
    }

    /// Opens an existing `path` for reading and writing.
    pub fn open_rw(path: &Path) -> Result<Self> {
        Self::open_with(
            path,
            OpenOptions::new().read(true).write(true),
            Access::Write,
        )
    }

    /// Creates `path` (emptying it if it exists) for reading and writing.
    /// The file is emptied only once its locks are held, so an image a
    /// VM is using is refused intact.
    pub fn create(path: &Path) -> Result<Self> {
        let storage = Self::open_with(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            Access::Write,
        )
        .map_err(|e| e.with_path(path))?;
        storage.set_len(0)?;
        Ok(storage)
    }

    fn open_with(path: &Path, options: &OpenOptions, access: Access) -> Result<Self> {
        let file = options
            .open(path)
            .map_err(|e| Error::io("could not open", e).with_path(path))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("could not stat", e).with_path(path))?;
        if meta.is_dir() {
            return Err(Error::argument("is a directory, not an image").with_path(path));
        }
        let lock = ImageLock::acquire(&file, path, access)?;
        Ok(FileStorage {
            file,
            path: path.to_path_buf(),
            unsynced: AtomicU64::new(0),
            _lock: lock,
        })
    }

    fn metadata(&self) -> Result<std::fs::Metadata> {
        self.file
            .metadata()
            .map_err(|e| Error::io("could not stat", e).with_path(&self.path))
    }

    fn seek(&self, offset: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
        let Ok(off) = libc::off_t::try_from(offset) else {
            return Ok(None);
        };
        // SAFETY: lseek on a file descriptor we own; it does not touch memory.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None);
            }
            return Err(err);
        }
        Ok(Some(r as u64))
    }
}

impl Storage for FileStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::io(format!("read failed at offset {offset:#x}"), e)
                        .with_path(&self.path)
                        .at_offset(offset))
                }
            }
        }
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.metadata()?.blocks() * 512))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            Error::io(format!("write failed at offset {offset:#x}"), e)
                .with_path(&self.path)
                .at_offset(offset)
        })?;
        let pending =
            self.unsynced.fetch_add(buf.len() as u64, Ordering::Relaxed) + buf.len() as u64;
        if pending >= WRITEBACK_EVERY {
            self.unsynced.store(0, Ordering::Relaxed);
            // SAFETY: a hint to the kernel about our own descriptor. It
            // guarantees nothing (flush() does); errors are ignored.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| {
            Error::io(format!("could not resize to {len} bytes"), e).with_path(&self.path)
        })
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("flush failed", e).with_path(&self.path))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(Error::argument("allocation range too large").with_path(&self.path));
        };
        // SAFETY: posix_fallocate on a descriptor we own; no memory is passed.
        let r = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), off, n) };
        if r != 0 {
            return Err(Error::io(
                "could not allocate space",
                std::io::Error::from_raw_os_error(r),
            )
            .with_path(&self.path));
        }
        Ok(())
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        let file_len = self.len()?;
        let end = offset.saturating_add(len);
        if offset < file_len {
            let punch = end.min(file_len) - offset;
            let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(punch))
            else {
                return Err(Error::argument("zero range too large").with_path(&self.path));
            };
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let r = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off,
                    n,
                )
            };
            if r != 0 {
                // No hole punching here (e.g. EOPNOTSUPP): write the zeros.
                super::write_zeros(self, offset, punch)?;
            }
        }
        if end > file_len {
            self.set_len(end)?;
        }
        Ok(())
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        let io_err = |e| Error::io("could not query holes", e).with_path(&self.path);
        let data = match self.seek(offset, libc::SEEK_DATA) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(HostExtent::TrailingHole),
            // No hole information (e.g. EINVAL): everything is data.
            Err(_) => return Ok(HostExtent::without_holes(self.len()?, offset)),
        };
        if data > offset {
            return Ok(HostExtent::Hole(data - offset));
        }
        let hole = self.seek(offset, libc::SEEK_HOLE).map_err(io_err)?;
        match hole {
            Some(h) if h > offset => Ok(HostExtent::Data(h - offset)),
            _ => Ok(HostExtent::Data(self.len()?.saturating_sub(offset).max(1))),
        }
    }
}
