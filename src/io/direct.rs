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

/// The most pieces one vectored request takes (well under every
/// system's `IOV_MAX`).
const MAX_PIECES: usize = 512;

/// Writes every byte of the pieces `bufs` (concatenated) to `file` at
/// `offset`, with as few `pwritev` calls as the kernel allows.
pub fn pwritev_all(file: &File, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let (mut first, mut at) = (0usize, offset);
    while first < iov.len() {
        let count = (iov.len() - first).min(MAX_PIECES) as libc::c_int;
        let pos =
            libc::off_t::try_from(at).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: the iovecs point into the borrowed `bufs`, which outlive
        // the call; the descriptor is ours.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov[first..].as_ptr(), count, pos) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        at += n as u64;
        while n > 0 {
            let piece = &mut iov[first];
            if n >= piece.iov_len {
                n -= piece.iov_len;
                first += 1;
            } else {
                // SAFETY: stays inside the same piece.
                piece.iov_base = unsafe { (piece.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                piece.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

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

    /// Writes the pieces `bufs` (concatenated) at `offset` directly, in
    /// one request, when each piece is aligned in memory and in length, the
    /// offset is aligned and the whole is large enough to pay for waiting
    /// on the disk; gathered data over the range is written out first.
    /// Returns false, having done nothing, otherwise. Several threads may
    /// write this way at once (disjoint ranges): the disk gets several
    /// requests in flight.
    pub fn write_vectored(&self, bufs: &[&[u8]], offset: u64) -> io::Result<bool> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let aligned = offset % ALIGN == 0
            && bufs
                .iter()
                .all(|b| (b.len() as u64 | b.as_ptr() as u64) % ALIGN == 0);
        if !aligned || total < DIRECT_MIN as u64 || bufs.len() > MAX_PIECES {
            return Ok(false);
        }
        self.drain_over(offset, total)?;
        match pwritev_all(&self.direct, bufs, offset) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                pwritev_all(&self.buffered, bufs, offset)?
            }
            r => r?,
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
