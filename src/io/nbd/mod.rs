//! An NBD client as a [`Storage`]: the export's bytes, read and written
//! over the network block device protocol (fixed newstyle handshake with
//! `NBD_OPT_GO`, structured replies, `base:allocation` block status).
//! Written from the protocol specification (NetworkBlockDevice's
//! `doc/proto.md`); small on purpose, with a bound on every length it is
//! told, and a timeout on every exchange.
//!
//! URIs as QEMU spells them: `nbd://HOST[:PORT]/EXPORT` and
//! `nbd+unix:///EXPORT?socket=PATH`. Several threads share a small pool
//! of connections (one request in flight on each), opened as needed.

mod uri;
mod wire;

pub use uri::{is_nbd_uri, NbdAddress, NbdUri};
pub use wire::TIMEOUT;

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use wire::*;

/// A pool of connections to one export.
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

/// An NBD export as storage.
pub struct NbdStorage {
    uri: NbdUri,
    name: PathBuf,
    export: Export,
    pool: Mutex<Pool>,
    returned: Condvar,
    writable: bool,
    timeout: Duration,
    /// The extents of the last block-status reply: (start, end, reads as
    /// zeros). A server answers for a long range at once; asking again
    /// for each extent would make it walk that range every time.
    status: Mutex<Vec<(u64, u64, bool)>>,
}

/// How much block status is asked for at once.
const STATUS_SPAN: u64 = 256 << 20;

impl std::fmt::Debug for NbdStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdStorage")
            .field("uri", &self.name)
            .finish()
    }
}

impl NbdStorage {
    /// Connects to the export `uri` names; `writable` asks to write it
    /// (refused when the server exports it read-only).
    pub fn open(uri: &str, writable: bool) -> Result<NbdStorage> {
        Self::open_with_timeout(uri, writable, TIMEOUT)
    }

    /// As [`NbdStorage::open`], with `timeout` for every exchange.
    pub fn open_with_timeout(uri: &str, writable: bool, timeout: Duration) -> Result<NbdStorage> {
        let parsed = NbdUri::parse(uri)?;
        let (conn, export) = Connection::open(&parsed, uri, timeout)?;
        if writable && export.flags & TFLAG_READ_ONLY != 0 {
            return Err(protocol(uri, "the export is read-only"));
        }
        Ok(NbdStorage {
            uri: parsed,
            name: PathBuf::from(uri),
            export,
            pool: Mutex::new(Pool {
                idle: vec![conn],
                open: 1,
            }),
            returned: Condvar::new(),
            writable,
            timeout,
            status: Mutex::new(Vec::new()),
        })
    }

    fn uri_text(&self) -> String {
        self.name.display().to_string()
    }

    /// Runs `f` on a connection: an idle one, a new one (several requests
    /// then travel at once), or the next one returned.
    fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let name = self.uri_text();
        let mut conn = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = pool.idle.pop() {
                    break c;
                }
                let may_add = pool.open < MAX_CONNECTIONS
                    && (!self.writable || self.export.flags & TFLAG_CAN_MULTI_CONN != 0);
                if may_add {
                    pool.open += 1;
                    drop(pool);
                    match Connection::open(&self.uri, &name, self.timeout) {
                        Ok((c, _)) => break c,
                        Err(e) => {
                            pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                            pool.open -= 1;
                            if pool.open == 0 {
                                // No connection is left to wait for: the server is gone.
                                return Err(e);
                            }
                            // The server takes no more clients: share the ones we have.
                            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
                            continue;
                        }
                    }
                }
                pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = f(&mut conn);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if result.is_ok() {
            pool.idle.push(conn);
        } else {
            // A failed exchange may leave the stream mid-reply: drop it.
            pool.open -= 1;
        }
        drop(pool);
        self.returned.notify_one();
        result
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.export.size)
        {
            return Err(Error::new(
                ErrorKind::OutOfBounds,
                format!(
                    "request at {offset:#x} (+{len}) past the end of the export ({} bytes)",
                    self.export.size
                ),
            )
            .with_path(&self.name));
        }
        Ok(())
    }

    /// Forgets cached block status (the export is changing).
    fn forget_status(&self) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn require_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the export is open read-only").with_path(&self.name));
        }
        Ok(())
    }

    /// A command without payload in either direction.
    fn command(&self, kind: u16, offset: u64, len: u32) -> Result<()> {
        let name = self.uri_text();
        self.with_connection(|c| {
            let h = c.request(kind, offset, len, &[], &name)?;
            c.replies(h, None, &name, |_, _| Ok(()))
        })
    }
}

impl Drop for NbdStorage {
    fn drop(&mut self) {
        let name = self.uri_text();
        let pool = self.pool.get_mut().unwrap_or_else(|p| p.into_inner());
        for c in &mut pool.idle {
            let _ = c.request(CMD_DISC, 0, 0, &[], &name);
        }
    }
}

impl Storage for NbdStorage {
    fn path(&self) -> &Path {
        &self.name
    }

    fn protocol(&self) -> &'static str {
        "nbd"
    }

    fn requests_in_flight(&self) -> usize {
        MAX_CONNECTIONS
    }

    fn len(&self) -> Result<u64> {
        Ok(self.export.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Past the end reads zeros, as for a file.
        let inside = (self.export.size.saturating_sub(offset) as usize).min(buf.len());
        buf[inside..].fill(0);
        let name = self.uri_text();
        for (i, piece) in buf[..inside].chunks_mut(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            let len = piece.len();
            self.with_connection(|c| {
                let h = c.request(CMD_READ, at, len as u32, &[], &name)?;
                c.replies(h, Some((&mut *piece, at)), &name, |_, _| {
                    Err(protocol(&name, "an unexpected reply to a read"))
                })
            })?;
        }
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        if offset >= self.export.size {
            return Ok(HostExtent::TrailingHole);
        }
        let Some(context) = self.export.allocation.filter(|_| self.export.structured) else {
            return Ok(HostExtent::without_holes(self.export.size, offset));
        };
        let known = |extents: &[(u64, u64, bool)]| {
            extents
                .iter()
                .find(|(start, end, _)| (*start..*end).contains(&offset))
                .map(|&(_, end, zero)| {
                    if zero {
                        HostExtent::Hole(end - offset)
                    } else {
                        HostExtent::Data(end - offset)
                    }
                })
        };
        if let Some(e) = known(&self.status.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(e);
        }
        let name = self.uri_text();
        let len = (self.export.size - offset).min(STATUS_SPAN) as u32;
        let mut extents: Vec<(u64, u64, bool)> = Vec::new();
        self.with_connection(|c| {
            let h = c.request(CMD_BLOCK_STATUS, offset, len, &[], &name)?;
            c.replies(h, None, &name, |kind, payload| {
                if kind != REPLY_BLOCK_STATUS || payload.len() < 4 || be32(payload) != context {
                    return Ok(());
                }
                let mut at = offset;
                for pair in payload[4..].chunks_exact(8) {
                    let (n, flags) = (be32(pair) as u64, be32(&pair[4..]));
                    let end = (at + n).min(self.export.size);
                    if n == 0 || at >= end {
                        break;
                    }
                    let zero = flags & STATE_ZERO != 0;
                    match extents.last_mut() {
                        Some(last) if last.2 == zero && last.1 == at => last.1 = end,
                        _ => extents.push((at, end, zero)),
                    }
                    at = end;
                }
                Ok(())
            })
        })?;
        let found = known(&extents);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = extents;
        found.ok_or_else(|| protocol(&name, "no block status for the range asked"))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.require_writable()?;
        self.forget_status();
        self.check_range(offset, buf.len() as u64)?;
        let name = self.uri_text();
        for (i, piece) in buf.chunks(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            self.with_connection(|c| {
                let h = c.request(CMD_WRITE, at, piece.len() as u32, piece, &name)?;
                c.replies(h, None, &name, |_, _| Ok(()))
            })?;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if len == self.export.size {
            return Ok(());
        }
        Err(Error::unsupported("an NBD export cannot be resized").with_path(&self.name))
    }

    fn flush(&self) -> Result<()> {
        if !self.writable || self.export.flags & TFLAG_SEND_FLUSH == 0 {
            return Ok(());
        }
        self.command(CMD_FLUSH, 0, 0)
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.require_writable()?;
        self.forget_status();
        self.check_range(offset, len)?;
        if self.export.flags & TFLAG_SEND_WRITE_ZEROES == 0 {
            return super::write_zeros(self, offset, len);
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(1 << 30);
            self.command(CMD_WRITE_ZEROES, offset + done, n as u32)?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
