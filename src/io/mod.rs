//! Byte storage under the formats: the [`Storage`] trait and its backends.

mod buffer;
mod copy_range;
mod direct;
mod fault;
mod file;
pub mod http;
pub mod lock;
pub mod lock_holder;
mod mem;
pub mod nbd;
mod pipe;
pub mod secret;
pub mod trust;
mod window;

pub use buffer::AlignedBuf;
pub use fault::{CrashClock, FaultSession, FaultSessionGuard, FaultStorage};
pub use file::FileStorage;
pub use mem::MemStorage;
pub use pipe::{is_pipe, PipeStorage};
pub use secret::Secrets;
pub use trust::{Admission, Refusal, Refusals, RefusedKind, RefusedStorage, Trust};
pub use window::WindowStorage;

use crate::error::Result;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// How files opened for writing use the page cache and flushes (qemu-img's
/// `-t CACHE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Bulk data bypasses the page cache (gathered O_DIRECT writes);
    /// flushes are honoured. qimg's default, and qemu-img's `none`.
    #[default]
    Direct,
    /// Everything goes through the page cache; flushes are honoured.
    Writeback,
    /// Everything goes through the page cache and flushes do nothing: a
    /// crash can lose or corrupt the image (qemu-img convert's default).
    Unsafe,
}

impl CacheMode {
    /// qemu-img's names: none/directsync, writeback/writethrough, unsafe.
    pub fn parse(name: &str) -> Result<CacheMode> {
        match name {
            "none" | "directsync" => Ok(CacheMode::Direct),
            "writeback" | "writethrough" => Ok(CacheMode::Writeback),
            "unsafe" => Ok(CacheMode::Unsafe),
            other => Err(crate::error::Error::argument(format!(
                "Invalid cache option: {other} (none, directsync, writeback, writethrough or unsafe)"
            ))),
        }
    }
}

/// How files are opened, passed from the command line down to every open
/// (no process-wide setting decides it).
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// Ends the waits of network storage (connect, pending replies) soon
    /// after it is set: the flag a signal handler sets.
    pub cancel: Option<&'static std::sync::atomic::AtomicBool>,
    /// How files opened for writing use the page cache and flushes (`-t`).
    pub cache: CacheMode,
    /// Read-only opens share everything (`-U`); opens for writing are not
    /// affected.
    pub force_share: bool,
    /// A crash test's fault injector: every file opened for writing lives
    /// in its [`FaultStorage`] instead. Only tests set it.
    pub faults: Option<Arc<FaultSession>>,
    /// Files an image names (a VMDK descriptor's extents) may lie outside
    /// the image's directory (an absolute path, or through `..`): the
    /// user allows it. Off, such an image is refused.
    pub outside_extents: bool,
    /// Whether the files an image names (backing files, data files,
    /// extents) are opened at all (`--untrusted`).
    pub trust: Trust,
    /// The secrets of the command line (`--object secret,...`).
    pub secrets: Secrets,
    /// The id of the secret that unlocks the image being opened or
    /// created (its node's `key-secret` / `encrypt.key-secret`, or the
    /// `-o` option of that name); set per image, not passed to the files
    /// it names.
    pub key_secret: Option<String>,
    /// The command reads no guest data (`info`): an encrypted image opens
    /// without its secret. Otherwise one without it is refused on open,
    /// as qemu-img refuses it.
    pub no_io: bool,
}

/// Alias under the name the design uses.
pub type OpenOptions = StorageOptions;

impl StorageOptions {
    /// These options with the command line's secrets.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// These options for an image unlocked by the secret `id` (none:
    /// the image is opened without a key).
    pub fn with_key_secret(&self, id: Option<String>) -> Self {
        StorageOptions {
            key_secret: id,
            ..self.clone()
        }
    }

    /// The bytes of the secret that unlocks the image, if one is named
    /// (qemu-img's message when the id names no secret).
    pub fn key(&self) -> Result<Option<&[u8]>> {
        self.key_secret
            .as_deref()
            .map(|id| self.secrets.get(id))
            .transpose()
    }

    /// The options of an image over HTTP(S) opened with these (before the
    /// node's own options).
    pub(crate) fn http(&self) -> http::HttpOptions {
        http::HttpOptions {
            cancel: self.cancel,
            ..http::HttpOptions::default()
        }
    }

    /// The options of an NBD export opened with these.
    pub(crate) fn nbd(&self) -> nbd::NbdOptions {
        nbd::NbdOptions {
            cancel: self.cancel,
            ..nbd::NbdOptions::default()
        }
    }
}

/// Opens the file (or NBD export) at `path` for reading and writing: the
/// file itself, or its stand-in in the options' [`FaultSession`].
pub fn open_writable_storage(path: &Path) -> Result<Box<dyn Storage>> {
    open_writable_storage_with(path, &StorageOptions::default())
}

/// As [`open_writable_storage`], with `options`.
pub fn open_writable_storage_with(
    path: &Path,
    options: &StorageOptions,
) -> Result<Box<dyn Storage>> {
    if http_url(path).is_some() {
        return Err(http::read_only(path));
    }
    if let Some(uri) = nbd_uri(path) {
        return Ok(Box::new(nbd::NbdStorage::open_with(
            uri,
            true,
            &options.nbd(),
        )?));
    }
    match &options.faults {
        Some(session) => Ok(Box::new(session.storage_for(path)?)),
        None => Ok(Box::new(FileStorage::open_rw_with(path, options)?)),
    }
}

/// Creates the file `path` (emptied if it exists) for reading and writing,
/// with the options' cache mode: the file itself, or its stand-in in the
/// options' [`FaultSession`]; a pipe or FIFO becomes a [`PipeStorage`].
pub fn create_storage_with(path: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
    if options.faults.is_none() && pipe::is_pipe(path) {
        // A pipe takes what a format writes front to back.
        return Ok(Box::new(PipeStorage::create(path)?));
    }
    let file = FileStorage::create_with(path, options)?;
    match &options.faults {
        Some(session) => {
            drop(file);
            Ok(Box::new(session.storage_for(path)?))
        }
        None => Ok(Box::new(file)),
    }
}

/// Opens the file (or NBD export, or image over HTTP(S)) at `path` for reading.
pub fn open_read_storage(path: &Path) -> Result<Box<dyn Storage>> {
    open_read_storage_with(path, &StorageOptions::default())
}

/// As [`open_read_storage`], with `options`.
pub fn open_read_storage_with(path: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
    if let Some(url) = http_url(path) {
        return Ok(Box::new(http::HttpStorage::open(url, &options.http())?));
    }
    match nbd_uri(path) {
        Some(uri) => Ok(Box::new(nbd::NbdStorage::open_with(
            uri,
            false,
            &options.nbd(),
        )?)),
        None => Ok(Box::new(FileStorage::open_with_options(path, options)?)),
    }
}

/// The NBD URI `path` spells, if it is one.
pub fn nbd_uri(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| nbd::is_nbd_uri(s))
}

/// The `http://` or `https://` URL `path` spells, if it is one.
pub fn http_url(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| http::is_http_url(s))
}

/// Where byte `offset` of `storage` lives in the storage at the bottom of
/// its windows: that storage's name and the offset in it.
pub fn locate(storage: &dyn Storage, offset: u64) -> (&Path, u64) {
    match storage.below() {
        Some((inner, start)) => locate(inner, start + offset),
        None => (storage.path(), offset),
    }
}

/// What the host file holds at an offset, as SEEK_DATA/SEEK_HOLE tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostExtent {
    /// `len` bytes of data start here.
    Data(u64),
    /// `len` bytes of hole start here.
    Hole(u64),
    /// The offset is at or past the end of the file, or only a hole follows it.
    TrailingHole,
}

impl HostExtent {
    /// The extent at `offset` of a `len`-byte file that has no holes.
    pub fn without_holes(len: u64, offset: u64) -> Self {
        if offset >= len {
            HostExtent::TrailingHole
        } else {
            HostExtent::Data(len - offset)
        }
    }
}

/// Random-access bytes an image lives in. Every method takes `&self`, so
/// parallel readers can share one storage.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The file name as it was opened (used in messages and outputs).
    fn path(&self) -> &Path;
    /// The protocol QEMU would name for it (`file`, `nbd`).
    fn protocol(&self) -> &'static str {
        "file"
    }
    /// How many requests readers should keep in flight to it: 1 for a
    /// local file (the cores decide), more for a network export, whose
    /// reads wait on round trips.
    fn requests_in_flight(&self) -> usize {
        1
    }
    /// How many data writes to keep in flight to it from separate threads:
    /// 1 where writes serialize anyway (buffered writes to one local file
    /// take its inode lock, and more writers only spin on it), more where
    /// they overlap (direct I/O to a local disk, a network export).
    fn writes_in_flight(&self) -> usize {
        self.requests_in_flight()
    }
    /// The storage this one is a window onto and the window's offset in
    /// it (see [`WindowStorage`]); `None` for a storage of its own.
    fn below(&self) -> Option<(&dyn Storage, u64)> {
        None
    }
    /// When this stands in for a file an untrusted open refused (see
    /// [`RefusedStorage`]): what was refused. Such a storage has nothing
    /// to show or read.
    fn refusal(&self) -> Option<&Refusal> {
        None
    }
    /// The current length in bytes.
    fn len(&self) -> Result<u64>;
    /// Whether the storage is empty.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`. Bytes past the end of the file read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Bytes really allocated on the host (`st_blocks * 512`), when known.
    fn allocated_bytes(&self) -> Result<Option<u64>>;
    /// Whether data or a hole starts at `offset`, and for how long.
    fn extent_at(&self, offset: u64) -> Result<HostExtent>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Sets the length, truncating or extending (sparsely).
    fn set_len(&self, len: u64) -> Result<()>;
    /// Makes every completed write durable (a barrier for the write order).
    fn flush(&self) -> Result<()>;
    /// Reserves host space for `[offset, offset + len)` without writing it.
    fn allocate(&self, offset: u64, len: u64) -> Result<()>;
    /// Writes bulk guest data: like [`Storage::write_at`], but a local file
    /// may send it past the page cache (direct I/O) when `buf`, `offset`
    /// and the length are aligned. A flush makes it durable all the same.
    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.write_at(buf, offset)
    }
    /// Writes the pieces `bufs`, one after the other, as bulk guest data
    /// starting at `offset` (as [`Storage::write_data_at`] of their
    /// concatenation). Safe to call from several threads at once for
    /// disjoint ranges: the copy engine's workers write this way, each a
    /// gathered request of its own, so several are in flight.
    fn write_data_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> Result<()> {
        let mut at = offset;
        for buf in bufs {
            self.write_data_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// Makes `[offset, offset + len)` read as zeros, giving the space back
    /// to the host where it can (a hole). Writes zero bytes by default.
    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        write_zeros(self, offset, len)
    }
    /// The local file behind this storage when its bytes are the file's
    /// bytes at the same offsets (no window, no encryption), so the kernel
    /// may copy out of it ([`Storage::copy_range_from`]); `None` otherwise.
    fn local_file(&self) -> Option<&std::fs::File> {
        None
    }
    /// Copies `len` bytes at `source_offset` of `source` to `offset` here
    /// as bulk guest data, without passing them through this process:
    /// `copy_file_range(2)`, which clones blocks where the file system
    /// shares them (XFS, btrfs) and copies in the kernel elsewhere. Bytes
    /// past the end of the source arrive as zeros, as `read_at` gives them.
    /// Returns `Ok(false)`, having written nothing, when this pair cannot
    /// copy that way (not two local files, another file system): the
    /// caller copies through memory ([`copy_through_memory`]).
    fn copy_range_from(
        &self,
        source: &dyn Storage,
        source_offset: u64,
        offset: u64,
        len: u64,
    ) -> Result<bool> {
        let _ = (source, source_offset, offset, len);
        Ok(false)
    }
}

/// Copies `len` bytes at `source_offset` of `source` to `offset` of
/// `target` through a buffer (a megabyte at a time), as bulk guest data.
pub fn copy_through_memory(
    source: &dyn Storage,
    source_offset: u64,
    target: &dyn Storage,
    offset: u64,
    len: u64,
) -> Result<()> {
    let mut buf = AlignedBuf::new();
    let mut done = 0;
    while done < len {
        let n = (len - done).min(1 << 20);
        buf.set_len(n as usize);
        source.read_at(&mut buf, source_offset + done)?;
        target.write_data_at(&buf, offset + done)?;
        done += n;
    }
    Ok(())
}

/// Writes `len` zero bytes at `offset`, a megabyte at a time.
pub fn write_zeros<S: Storage + ?Sized>(storage: &S, offset: u64, len: u64) -> Result<()> {
    let chunk = vec![0u8; (1 << 20).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        storage.write_at(&chunk[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Fills `buf` from `data` at `offset`; bytes past the end of `data` read
/// as zeros (as past the end of a file).
pub(crate) fn read_from_bytes(data: &[u8], offset: u64, buf: &mut [u8]) {
    let len = data.len() as u64;
    let start = offset.min(len) as usize;
    let end = offset.saturating_add(buf.len() as u64).min(len) as usize;
    buf[..end - start].copy_from_slice(&data[start..end]);
    buf[end - start..].fill(0);
}

/// Writes `buf` into `data` at `offset`, growing it with zeros as a file
/// grows.
pub(crate) fn write_into_bytes(data: &mut Vec<u8>, offset: u64, buf: &[u8]) {
    let end = offset as usize + buf.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset as usize..end].copy_from_slice(buf);
}

/// A shared storage is a storage (tests keep a handle to what an image owns).
impl<T: Storage + ?Sized> Storage for Arc<T> {
    fn path(&self) -> &Path {
        (**self).path()
    }
    fn protocol(&self) -> &'static str {
        (**self).protocol()
    }
    fn requests_in_flight(&self) -> usize {
        (**self).requests_in_flight()
    }
    fn writes_in_flight(&self) -> usize {
        (**self).writes_in_flight()
    }
    fn below(&self) -> Option<(&dyn Storage, u64)> {
        (**self).below()
    }
    fn len(&self) -> Result<u64> {
        (**self).len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        (**self).read_at(buf, offset)
    }
    fn allocated_bytes(&self) -> Result<Option<u64>> {
        (**self).allocated_bytes()
    }
    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        (**self).extent_at(offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        (**self).write_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> Result<()> {
        (**self).set_len(len)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        (**self).allocate(offset, len)
    }
    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        (**self).zero_range(offset, len)
    }
    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        (**self).write_data_at(buf, offset)
    }
    fn write_data_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> Result<()> {
        (**self).write_data_vectored_at(bufs, offset)
    }
    fn local_file(&self) -> Option<&std::fs::File> {
        (**self).local_file()
    }
    fn copy_range_from(
        &self,
        source: &dyn Storage,
        source_offset: u64,
        offset: u64,
        len: u64,
    ) -> Result<bool> {
        (**self).copy_range_from(source, source_offset, offset, len)
    }
}
