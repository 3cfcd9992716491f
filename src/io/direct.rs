//! Bulk data writes that bypass the page cache. On the machines qimg runs
//! on, allocating page-cache memory for gigabytes of copied data, and then
//! waiting for the final flush to write it out, is the largest cost of a
//! copy. Writing with O_DIRECT avoids both, but each direct write waits for
//! the disk, so small ones are gathered first: consecutive aligned writes
//! collect in one aligned buffer and go out together.
//!
//! What is gathered is not yet in the file: the owner drains it before
//! anything that could see the difference (a read or write over it, a
//! resize, a flush, the file's length).

use super::AlignedBuf;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::sync::{Mutex, MutexGuard};

/// Alignment of offsets and lengths for direct writes (4 KiB covers every
/// common logical block size).
pub const ALIGN: u64 = 4096;

/// How much is gathered before it is written.
const GATHER: usize = 4 << 20;

/// A gathered run shorter than this goes out through the page cache after
/// all: a direct write waits for the disk, which only pays off when large
/// (scattered single clusters, as commit writes into a base, stay cheap).
const DIRECT_MIN: usize = 256 << 10;

/// Gathered data: `buf` belongs at `start` (empty: nothing gathered).
#[derive(Default)]
struct Gathered {
    start: u64,
    buf: AlignedBuf,
}

/// The O_DIRECT descriptor of a file and the data gathered for it.
pub struct DirectWriter {
    direct: File,
    /// The ordinary descriptor, for file systems that refuse a direct
    /// write only when it happens.
    buffered: File,
    gathered: Mutex<Gathered>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter").finish_non_exhaustive()
    }
}

impl DirectWriter {
    /// Opens `file` again with O_DIRECT (by its descriptor, so a rename
    /// cannot send the data elsewhere); `None` where the file system
    /// refuses direct I/O (tmpfs, for one).
    pub fn open(file: &File) -> Option<DirectWriter> {
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(link)
            .ok()?;
        Some(DirectWriter {
            direct,
            buffered: file.try_clone().ok()?,
            gathered: Mutex::new(Gathered::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Gathered> {
        self.gathered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `buf` for `offset`: gathered after the data before it when it
    /// continues it, else written out (with what was gathered). Returns
    /// false, having done nothing, when the write is not aligned.
    pub fn write(&self, buf: &[u8], offset: u64) -> io::Result<bool> {
        if buf.is_empty() || (offset | buf.len() as u64) % ALIGN != 0 {
            return Ok(false);
        }
        let mut g = self.lock();
        let continues = !g.buf.is_empty() && g.start + g.buf.len() as u64 == offset;
        if continues && g.buf.len() + buf.len() <= GATHER {
            g.buf.extend_from_slice(buf);
            if g.buf.len() == GATHER {
                self.write_out(&mut g)?;
            }
            return Ok(true);
        }
        self.write_out(&mut g)?;
        if buf.len() >= GATHER / 2 && buf.as_ptr() as u64 % ALIGN == 0 {
            // Large and aligned in memory: straight out, without a copy.
            self.put(buf, offset)?;
        } else {
            g.start = offset;
            g.buf.extend_from_slice(buf);
        }
        Ok(true)
    }

    /// Writes `buf` at `offset` directly (buffered where the file system
    /// refuses).
    fn put(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.direct.write_all_at(buf, offset) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.buffered.write_all_at(buf, offset)
            }
            r => r,
        }
    }

    fn write_out(&self, g: &mut Gathered) -> io::Result<()> {
        if g.buf.is_empty() {
            return Ok(());
        }
        let result = if g.buf.len() < DIRECT_MIN {
            self.buffered.write_all_at(&g.buf, g.start)
        } else {
            self.put(&g.buf, g.start)
        };
        g.buf.set_len(0);
        result
    }

    /// Writes out what is gathered.
    pub fn drain(&self) -> io::Result<()> {
        let mut g = self.lock();
        self.write_out(&mut g)
    }

    /// Writes out what is gathered if it overlaps `[offset, offset + len)`.
    pub fn drain_over(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut g = self.lock();
        let end = g.start + g.buf.len() as u64;
        if !g.buf.is_empty() && offset < end && offset.saturating_add(len) > g.start {
            self.write_out(&mut g)?;
        }
        Ok(())
    }

    /// Where the gathered data ends (the file reaches at least there once
    /// it is written), if any is gathered.
    pub fn end(&self) -> Option<u64> {
        let g = self.lock();
        (!g.buf.is_empty()).then(|| g.start + g.buf.len() as u64)
    }
}
