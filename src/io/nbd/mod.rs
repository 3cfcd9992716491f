//! An NBD client as a [`Storage`]: the export's bytes, read and written
//! over the network block device protocol (fixed newstyle handshake with
//! `NBD_OPT_GO`, structured replies, `base:allocation` block status).
//! Written from the protocol specification (NetworkBlockDevice's
//! `doc/proto.md`); small on purpose, with a bound on every length it is
//! told, and an end to every wait.
//!
//! URIs as QEMU spells them: `nbd://HOST[:PORT]/EXPORT`,
//! `nbd+unix:///EXPORT?socket=PATH`, and the older `nbd:unix:PATH` and
//! `nbd:HOST:PORT` (with `:exportname=NAME`). One connection carries many
//! requests at once (see `conn`), which is all a server that takes one
//! client at a time (qemu-nbd's default) can give; a server that
//! advertises `NBD_FLAG_CAN_MULTI_CONN` gets a few more connections,
//! opened in the background and given up when they do not come promptly.

mod conn;
mod uri;
mod wire;

pub use uri::{is_nbd_uri, NbdAddress, NbdUri};
pub use wire::TIMEOUT;

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use conn::{Connection, MAX_IN_FLIGHT};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use wire::*;

/// Connections to one export at most (when it allows several).
const MAX_CONNECTIONS: usize = 4;

/// How NBD waits end.
#[derive(Debug, Clone, Copy)]
pub struct NbdOptions {
    /// How long an exchange (or the handshake) may go without progress
    /// before it is an error. [`TIMEOUT`] unless `QIMG_NBD_TIMEOUT` gives
    /// seconds.
    pub timeout: Duration,
    /// How long an extra connection may take to complete its handshake
    /// before it is given up (the copy goes on without it).
    pub extra_connection_timeout: Duration,
    /// Ends every wait (connect, handshake, pending replies) soon after it
    /// is set: a signal handler's flag, or the caller's.
    pub cancel: Option<&'static AtomicBool>,
}

impl Default for NbdOptions {
    fn default() -> Self {
        let timeout = std::env::var("QIMG_NBD_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(TIMEOUT, Duration::from_secs_f64);
        NbdOptions {
            timeout,
            extra_connection_timeout: Duration::from_secs(2),
            cancel: None,
        }
    }
}

/// The connections to one export, shared by every [`NbdStorage`] of this
/// process that has it open.
struct Client {
    uri: NbdUri,
    name: String,
    export: Export,
    options: NbdOptions,
    conns: RwLock<Vec<Arc<Connection>>>,
    /// Extra connections were asked for already.
    extras_started: AtomicBool,
    /// The extents of the last block-status reply: (start, end, reads as
    /// zeros). A server answers for a long range at once; asking again
    /// for each extent would make it walk that range every time.
    status: Mutex<Vec<(u64, u64, bool)>>,
}

/// Exports open in this process. Opening one again while it is open
/// shares its connections: a server that takes one client at a time still
/// serves a command that reads the export through a backing chain and
/// writes it as a commit's base.
static OPEN: Mutex<Vec<(NbdUri, Weak<Client>)>> = Mutex::new(Vec::new());

/// An NBD export as storage.
pub struct NbdStorage {
    client: Arc<Client>,
    name: PathBuf,
    writable: bool,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NbdStorage {
    /// Connects to the export `uri` names; `writable` asks to write it
    /// (refused when the server exports it read-only).
    pub fn open(uri: &str, writable: bool) -> Result<NbdStorage> {
        Self::open_with(uri, writable, &NbdOptions::default())
    }

    /// As [`NbdStorage::open`], with `timeout` for every exchange.
    pub fn open_with_timeout(uri: &str, writable: bool, timeout: Duration) -> Result<NbdStorage> {
        let options = NbdOptions {
            timeout,
            ..NbdOptions::default()
        };
        Self::open_with(uri, writable, &options)
    }

    /// As [`NbdStorage::open`], with `options`. An export this process has
    /// open already is shared, with the options it was first opened with.
    pub fn open_with(uri: &str, writable: bool, options: &NbdOptions) -> Result<NbdStorage> {
        let parsed = NbdUri::parse(uri)?;
        let client = {
            let mut open = lock(&OPEN);
            open.retain(|(_, c)| c.strong_count() > 0);
            match open
                .iter()
                .find(|(u, _)| *u == parsed)
                .and_then(|(_, c)| c.upgrade())
            {
                Some(c) => c,
                None => {
                    let waits = Waits {
                        timeout: options.timeout,
                        cancel: options.cancel,
                    };
                    let conn = Connection::open(&parsed, uri, waits)?;
                    let client = Arc::new(Client {
                        uri: parsed.clone(),
                        name: uri.to_string(),
                        export: conn.export(),
                        options: *options,
                        conns: RwLock::new(vec![Arc::new(conn)]),
                        extras_started: AtomicBool::new(false),
                        status: Mutex::new(Vec::new()),
                    });
                    open.push((parsed, Arc::downgrade(&client)));
                    client
                }
            }
        };
        if writable && client.export.flags & TFLAG_READ_ONLY != 0 {
            return Err(protocol(uri, "the export is read-only"));
        }
        // Known by the name QEMU gives the export (map's "File" column).
        let name = PathBuf::from(client.uri.canonical().unwrap_or_else(|| uri.to_string()));
        Ok(NbdStorage {
            client,
            name,
            writable,
        })
    }

    /// How many connections carry requests now.
    pub fn connections(&self) -> usize {
        self.client
            .conns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| !c.is_dead())
            .count()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.client.export.size)
        {
            return Err(Error::new(
                ErrorKind::OutOfBounds,
                format!(
                    "request at {offset:#x} (+{len}) past the end of the export ({} bytes)",
                    self.client.export.size
                ),
            )
            .with_path(&self.name));
        }
        Ok(())
    }

    /// Forgets cached block status (the export is changing).
    fn forget_status(&self) {
        lock(&self.client.status).clear();
    }

    fn require_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the export is open read-only").with_path(&self.name));
        }
        Ok(())
    }

    /// One request on the least busy connection.
    fn exchange(
        &self,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
        read_into: Option<&mut [u8]>,
    ) -> Result<Vec<(u16, Vec<u8>)>> {
        let conn = self.client.pick();
        conn.exchange(kind, offset, len, payload, read_into)
    }

    /// A command without payload in either direction.
    fn command(&self, kind: u16, offset: u64, len: u32) -> Result<()> {
        self.exchange(kind, offset, len, &[], None).map(|_| ())
    }
}

impl Client {
    /// The live connection with the fewest requests in flight (or the
    /// first one, whose requests then fail with why it died). The first
    /// time requests overlap on a server that allows several connections,
    /// more are opened in the background; nothing waits for them.
    fn pick(self: &Arc<Self>) -> Arc<Connection> {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        let best = conns
            .iter()
            .filter(|c| !c.is_dead())
            .min_by_key(|c| c.in_flight())
            .unwrap_or(&conns[0])
            .clone();
        drop(conns);
        if self.export.flags & TFLAG_CAN_MULTI_CONN != 0
            && best.in_flight() > 0
            && !self.extras_started.swap(true, Ordering::SeqCst)
        {
            let weak = Arc::downgrade(self);
            let (uri, name, options) = (self.uri.clone(), self.name.clone(), self.options);
            let _ = std::thread::Builder::new()
                .name("nbd-connect".into())
                .spawn(move || open_extras(weak, &uri, &name, &options));
        }
        best
    }
}

/// Opens up to [`MAX_CONNECTIONS`] - 1 more connections for `client`, each
/// given up when its handshake takes longer than
/// `options.extra_connection_timeout` (a server at its client limit never
/// greets); stops at the first that fails.
fn open_extras(client: Weak<Client>, uri: &NbdUri, name: &str, options: &NbdOptions) {
    let waits = Waits {
        timeout: options.extra_connection_timeout,
        cancel: options.cancel,
    };
    for _ in 1..MAX_CONNECTIONS {
        let Ok(conn) = Connection::open(uri, name, waits) else {
            return;
        };
        let Some(client) = client.upgrade() else {
            return;
        };
        let e = conn.export();
        if e.size != client.export.size || e.flags != client.export.flags {
            return;
        }
        client
            .conns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(conn));
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
        MAX_IN_FLIGHT
    }

    fn len(&self) -> Result<u64> {
        Ok(self.client.export.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Past the end reads zeros, as for a file.
        let size = self.client.export.size;
        let inside = (size.saturating_sub(offset) as usize).min(buf.len());
        buf[inside..].fill(0);
        for (i, piece) in buf[..inside].chunks_mut(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            let len = piece.len() as u32;
            let extra = self.exchange(CMD_READ, at, len, &[], Some(piece))?;
            if !extra.is_empty() {
                return Err(protocol(&self.client.name, "an unexpected reply to a read"));
            }
        }
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        let export = self.client.export;
        if offset >= export.size {
            return Ok(HostExtent::TrailingHole);
        }
        let Some(context) = export.allocation.filter(|_| export.structured) else {
            return Ok(HostExtent::without_holes(export.size, offset));
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
        if let Some(e) = known(&lock(&self.client.status)) {
            return Ok(e);
        }
        let len = (export.size - offset).min(STATUS_SPAN) as u32;
        let chunks = self.exchange(CMD_BLOCK_STATUS, offset, len, &[], None)?;
        let mut extents: Vec<(u64, u64, bool)> = Vec::new();
        for (kind, payload) in &chunks {
            if *kind != REPLY_BLOCK_STATUS || payload.len() < 4 || be32(payload) != context {
                continue;
            }
            let mut at = offset;
            for pair in payload[4..].chunks_exact(8) {
                let (n, flags) = (be32(pair) as u64, be32(&pair[4..]));
                let end = (at + n).min(export.size);
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
        }
        let found = known(&extents);
        *lock(&self.client.status) = extents;
        found.ok_or_else(|| protocol(&self.client.name, "no block status for the range asked"))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.require_writable()?;
        self.forget_status();
        self.check_range(offset, buf.len() as u64)?;
        for (i, piece) in buf.chunks(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            self.exchange(CMD_WRITE, at, piece.len() as u32, piece, None)?;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if len == self.client.export.size {
            return Ok(());
        }
        Err(Error::unsupported("an NBD export cannot be resized").with_path(&self.name))
    }

    fn flush(&self) -> Result<()> {
        if !self.writable || self.client.export.flags & TFLAG_SEND_FLUSH == 0 {
            return Ok(());
        }
        // With several connections the server promised (multi-conn) that a
        // flush on one covers the writes completed on all.
        self.command(CMD_FLUSH, 0, 0)
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.require_writable()?;
        self.forget_status();
        self.check_range(offset, len)?;
        if self.client.export.flags & TFLAG_SEND_WRITE_ZEROES == 0 {
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
