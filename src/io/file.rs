//! A local file as [`Storage`], read with positional reads (`pread`).

use super::direct::DirectWriter;
use super::lock::{Access, ImageLock};
use super::{CacheMode, HostExtent, Storage, StorageOptions};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// A local file, opened read-only or read-write, with QEMU's image locks.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    /// Bytes written since writeback was last started.
    unsynced: AtomicU64,
    /// Opened for writing.
    writable: bool,
    /// How writes use the page cache and flushes (for writable files).
    cache: CacheMode,
    /// Bulk data goes out through O_DIRECT, gathered; set up on the first
    /// data write (`None` inside when the file system refuses direct I/O).
    direct: OnceLock<Option<DirectWriter>>,
    /// Gathered data failed to reach the file after its write call had
    /// returned: every later write and flush fails, so no metadata can
    /// come to point at what was lost.
    lost_writes: AtomicBool,
    _lock: ImageLock,
}

/// After this many bytes written, writeback of the file is started in the
/// background, so the disk works while the copy goes on and a final flush
/// has little left to do.
const WRITEBACK_EVERY: u64 = 32 << 20;

impl FileStorage {
    /// Opens `path` read-only, locked as a reader that shares nothing.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_options(path, &StorageOptions::default())
    }

    /// Opens `path` read-only, sharing everything when `options` say
    /// `force_share` (`-U`).
    pub fn open_with_options(path: &Path, options: &StorageOptions) -> Result<Self> {
        Self::open_with(
            path,
            OpenOptions::new().read(true),
            Access::for_read(options.force_share),
            CacheMode::default(),
        )
    }

    /// Opens an existing `path` for reading and writing.
    pub fn open_rw(path: &Path) -> Result<Self> {
        Self::open_rw_with(path, &StorageOptions::default())
    }

    /// As [`FileStorage::open_rw`], with the cache mode of `options`.
    pub fn open_rw_with(path: &Path, options: &StorageOptions) -> Result<Self> {
        Self::open_with(
            path,
            OpenOptions::new().read(true).write(true),
            Access::Write,
            options.cache,
        )
    }

    /// Creates `path` (emptying it if it exists) for reading and writing.
    /// The file is emptied only once its locks are held, so an image a
    /// VM is using is refused intact.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with(path, &StorageOptions::default())
    }

    /// As [`FileStorage::create`], with the cache mode of `options`.
    pub fn create_with(path: &Path, options: &StorageOptions) -> Result<Self> {
        let storage = Self::open_with(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            Access::Write,
            options.cache,
        )
        .map_err(|e| e.with_path(path))?;
        // A new file is empty already: truncating it anyway would arm
        // ext4's replace-by-truncate heuristic (`auto_da_alloc`), which
        // makes the final close write back every dirty page of the image
        // and wait for it to be submitted.
        let existing = storage.file_len()?;
        if existing > 0 {
            storage.set_len(0)?;
            storage.disarm_close_writeback();
        }
        Ok(storage)
    }

    fn file_len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("could not stat", e).with_path(&self.path))
    }

    /// ext4 remembers that a file was truncated to zero and, when a
    /// descriptor of it is next closed, starts writeback of all its data
    /// (so that a file replaced by truncate-and-rewrite is not left empty
    /// after a crash). qimg makes its writes durable by flushing where the
    /// cache mode asks for it, so that close would only cost an unsafe or
    /// writeback copy the time of writing the whole image out. Closing
    /// another descriptor of the same file now, while nothing is dirty,
    /// spends the heuristic for free. The descriptor is opened through
    /// `/proc/self/fd`, so it is the same file whatever happened to the
    /// path; it takes no locks, and closing it releases none of ours (they
    /// are open-file-description locks). Where `/proc` is missing nothing
    /// changes but the speed of the close.
    fn disarm_close_writeback(&self) {
        let alias = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        drop(std::fs::File::open(alias));
    }

    fn open_with(
        path: &Path,
        options: &OpenOptions,
        access: Access,
        cache: CacheMode,
    ) -> Result<Self> {
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
            writable: access == Access::Write,
            cache,
            lost_writes: AtomicBool::new(false),
            direct: OnceLock::new(),
            _lock: lock,
        })
    }

    /// Counts `n` bytes written through the page cache; every
    /// [`WRITEBACK_EVERY`] bytes, starts their writeback in the background
    /// so the final flush has little left to do. Not with `unsafe`, which
    /// never flushes: starting writeback would only make the copy wait for
    /// the disk.
    fn note_written(&self, n: u64) {
        if self.cache == CacheMode::Unsafe {
            return;
        }
        let pending = self.unsynced.fetch_add(n, Ordering::Relaxed) + n;
        if pending >= WRITEBACK_EVERY {
            self.unsynced.store(0, Ordering::Relaxed);
            // SAFETY: a hint to the kernel about our own descriptor. It
            // guarantees nothing (flush() does); errors are ignored.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// The direct writer, set up on first use when the file system allows it.
    fn direct(&self) -> Option<&DirectWriter> {
        self.direct
            .get_or_init(|| DirectWriter::open(&self.file))
            .as_ref()
    }

    /// Writes out gathered data overlapping `[offset, offset + len)` (all
    /// of it for `None`), so the file itself can be used there.
    fn settle(&self, range: Option<(u64, u64)>) -> Result<()> {
        let Some(Some(direct)) = self.direct.get() else {
            return Ok(());
        };
        match range {
            Some((offset, len)) => direct.drain_over(offset, len),
            None => direct.drain(),
        }
        .map_err(|e| self.lost(e))
    }

    /// Refuses to change the file once gathered data was lost: whatever
    /// came next (refcounts, tables, headers) could refer to it.
    fn check_not_lost(&self) -> Result<()> {
        if self.lost_writes.load(Ordering::SeqCst) {
            return Err(Error::io(
                "refused: earlier data writes to this file failed",
                std::io::Error::from_raw_os_error(libc::EIO),
            )
            .with_path(&self.path));
        }
        Ok(())
    }

    /// Records that gathered data was lost (see `lost_writes`).
    fn lost(&self, e: std::io::Error) -> Error {
        self.lost_writes.store(true, Ordering::SeqCst);
        Error::io("write failed", e).with_path(&self.path)
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
        let gathered = match self.direct.get() {
            Some(Some(d)) => d.end().unwrap_or(0),
            _ => 0,
        };
        Ok(self.metadata()?.len().max(gathered))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.settle(Some((offset, buf.len() as u64)))?;
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
        self.settle(None)?;
        Ok(Some(self.metadata()?.blocks() * 512))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_not_lost()?;
        self.settle(Some((offset, buf.len() as u64)))?;
        self.file.write_all_at(buf, offset).map_err(|e| {
            Error::io(format!("write failed at offset {offset:#x}"), e)
                .with_path(&self.path)
                .at_offset(offset)
        })?;
        self.note_written(buf.len() as u64);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.check_not_lost()?;
        self.settle(None)?;
        self.file.set_len(len).map_err(|e| {
            Error::io(format!("could not resize to {len} bytes"), e).with_path(&self.path)
        })
    }

    fn flush(&self) -> Result<()> {
        self.settle(None)?;
        self.check_not_lost()?;
        if self.cache == CacheMode::Unsafe {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io("flush failed", e).with_path(&self.path))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.check_not_lost()?;
        self.settle(Some((offset, len)))?;
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

    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_not_lost()?;
        if self.writable && self.cache == CacheMode::Direct {
            if let Some(direct) = self.direct() {
                // An error here may be about data gathered before this write.
                let taken = direct.write(buf, offset).map_err(|e| self.lost(e))?;
                if taken {
                    return Ok(());
                }
            }
        }
        self.write_at(buf, offset)
    }

    fn writes_in_flight(&self) -> usize {
        // Direct writes wait for the disk, which takes several at once;
        // buffered ones serialize on the inode lock.
        if self.writable && self.cache == CacheMode::Direct && self.direct().is_some() {
            2
        } else {
            1
        }
    }

    fn write_data_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> Result<()> {
        self.check_not_lost()?;
        if self.writable && self.cache == CacheMode::Direct {
            if let Some(direct) = self.direct() {
                let fail = |e: std::io::Error| {
                    Error::io(format!("write failed at offset {offset:#x}"), e)
                        .with_path(&self.path)
                        .at_offset(offset)
                };
                if direct.write_vectored(bufs, offset).map_err(fail)? {
                    return Ok(());
                }
            }
        }
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.settle(Some((offset, total)))?;
        super::direct::pwritev_all(&self.file, bufs, offset).map_err(|e| {
            Error::io(format!("write failed at offset {offset:#x}"), e)
                .with_path(&self.path)
                .at_offset(offset)
        })?;
        self.note_written(total);
        Ok(())
    }

    fn local_file(&self) -> Option<&File> {
        Some(&self.file)
    }

    fn copy_range_from(
        &self,
        source: &dyn Storage,
        source_offset: u64,
        offset: u64,
        len: u64,
    ) -> Result<bool> {
        let Some(from) = source.local_file() else {
            return Ok(false);
        };
        if !self.writable {
            return Ok(false);
        }
        self.check_not_lost()?;
        // Direct writes still in flight over the range land first.
        self.settle(Some((offset, len)))?;
        let done =
            match super::copy_range::kernel_copy(from, source_offset, &self.file, offset, len) {
                Ok(done) => done,
                Err((0, e)) if super::copy_range::cannot_copy_range(&e) => return Ok(false),
                Err((done, e)) if super::copy_range::cannot_copy_range(&e) => {
                    // The file system gave up part way: the rest goes through memory.
                    super::copy_through_memory(
                        source,
                        source_offset + done,
                        self,
                        offset + done,
                        len - done,
                    )?;
                    len
                }
                Err((done, e)) => {
                    let at = offset + done;
                    return Err(Error::io(format!("copy failed at offset {at:#x}"), e)
                        .with_path(&self.path)
                        .at_offset(at));
                }
            };
        if done < len {
            // The source ends inside the range: the rest reads as zeros.
            super::write_zeros(self, offset + done, len - done)?;
        }
        self.note_written(done);
        Ok(true)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check_not_lost()?;
        self.settle(Some((offset, len)))?;
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
        self.settle(None)?;
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

impl Drop for FileStorage {
    fn drop(&mut self) {
        // Gathered data must reach the file; the formats flush (and so
        // drain) before they let go, this is the last safety net.
        let _ = self.settle(None);
    }
}

#[cfg(test)]
mod tests {
    use super::FileStorage;
    use crate::io::Storage;

    /// A scratch directory on the build's file system (tmpfs, where /tmp
    /// may live, refuses direct I/O, which these tests are about).
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("scratch directory")
    }

    #[test]
    fn gathered_data_writes_read_back_and_reach_the_file() {
        let dir = scratch();
        let path = dir.path().join("f");
        let f = FileStorage::create(&path).unwrap();
        let piece = |b: u8| vec![b; 8192];
        // Three contiguous aligned pieces are gathered, not yet written...
        f.write_data_at(&piece(1), 0).unwrap();
        f.write_data_at(&piece(2), 8192).unwrap();
        f.write_data_at(&piece(3), 16384).unwrap();
        assert_eq!(f.len().unwrap(), 24576, "the length counts gathered data");
        if f.direct().is_some() {
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert_eq!(on_disk, 0, "gathered, not yet written");
        }
        // ...but a read over them sees them.
        let mut got = vec![0u8; 8192];
        f.read_at(&mut got, 8192).unwrap();
        assert_eq!(got, piece(2));
        // An unaligned write goes straight through; a metadata write after
        // gathered data does not disturb it.
        f.write_data_at(&piece(4), 40000).unwrap();
        f.write_data_at(&piece(5), 65536).unwrap();
        f.write_at(&[9; 10], 100).unwrap();
        f.flush().unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 65536 + 8192);
        assert_eq!(&bytes[100..110], &[9; 10]);
        assert!(bytes[16384..24576].iter().all(|&b| b == 3));
        assert!(bytes[40000..48192].iter().all(|&b| b == 4));
        assert!(bytes[65536..].iter().all(|&b| b == 5));
    }

    #[test]
    fn dropping_a_file_writes_out_what_it_gathered() {
        let dir = scratch();
        let path = dir.path().join("f");
        let f = FileStorage::create(&path).unwrap();
        f.write_data_at(&vec![7u8; 4096], 4096).unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8192);
        assert!(bytes[4096..].iter().all(|&b| b == 7));
    }

    #[test]
    fn truncating_and_punching_see_gathered_data() {
        let dir = scratch();
        let path = dir.path().join("f");
        let f = FileStorage::create(&path).unwrap();
        f.write_data_at(&vec![1u8; 16384], 0).unwrap();
        f.zero_range(4096, 4096).unwrap();
        f.set_len(12288).unwrap();
        f.flush().unwrap();
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 12288);
        assert!(bytes[..4096].iter().all(|&b| b == 1));
        assert!(bytes[4096..8192].iter().all(|&b| b == 0));
        assert!(bytes[8192..].iter().all(|&b| b == 1));
    }
}
