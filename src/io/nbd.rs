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

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;

const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = 0x8000_0001;

const INFO_EXPORT: u16 = 0;

const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_SEND_TRIM: u16 = 1 << 5;
const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_BLOCK_STATUS: u16 = 7;

const REPLY_FLAG_DONE: u16 = 1;
const REPLY_NONE: u16 = 0;
const REPLY_OFFSET_DATA: u16 = 1;
const REPLY_OFFSET_HOLE: u16 = 2;
const REPLY_BLOCK_STATUS: u16 = 5;
const REPLY_ERROR_BIT: u16 = 1 << 15;

const STATE_ZERO: u32 = 1 << 1;

/// The largest request qimg sends, and the largest payload it accepts.
const MAX_REQUEST: usize = 32 << 20;
/// The largest option reply or error message accepted during the handshake.
const MAX_OPTION_REPLY: u32 = 64 << 10;
/// Connections opened at most.
const MAX_CONNECTIONS: usize = 4;
/// How long one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Where an export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddress {
    /// `nbd://HOST[:PORT]/EXPORT` (port 10809 by default).
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `nbd+unix:///EXPORT?socket=PATH`.
    Unix(PathBuf),
}

/// A parsed NBD URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// Where the server listens.
    pub address: NbdAddress,
    /// The export name ("" for the default export).
    pub export: String,
}

/// Whether `name` is an NBD URI qimg understands.
pub fn is_nbd_uri(name: &str) -> bool {
    name.starts_with("nbd://") || name.starts_with("nbd+unix://")
}

fn uri_error(uri: &str, why: &str) -> Error {
    Error::argument(format!("invalid NBD URI '{uri}': {why}"))
}

impl NbdUri {
    /// Parses `nbd://HOST[:PORT]/EXPORT` or `nbd+unix:///EXPORT?socket=PATH`.
    pub fn parse(uri: &str) -> Result<NbdUri> {
        if let Some(rest) = uri.strip_prefix("nbd+unix://") {
            let (export, query) = rest
                .split_once('?')
                .ok_or_else(|| uri_error(uri, "nbd+unix needs ?socket=PATH"))?;
            if !export.starts_with('/') {
                return Err(uri_error(uri, "nbd+unix takes no host (nbd+unix:///EXPORT?socket=PATH)"));
            }
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| uri_error(uri, "nbd+unix needs ?socket=PATH"))?;
            return Ok(NbdUri {
                address: NbdAddress::Unix(PathBuf::from(socket)),
                export: export[1..].to_string(),
            });
        }
        let rest = uri
            .strip_prefix("nbd://")
            .ok_or_else(|| uri_error(uri, "not nbd:// or nbd+unix://"))?;
        let (hostport, export) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| uri_error(uri, "the port is not a number"))?,
            ),
            _ => (hostport, 10809),
        };
        if host.is_empty() {
            return Err(uri_error(uri, "no host"));
        }
        Ok(NbdUri {
            address: NbdAddress::Tcp {
                host: host.to_string(),
                port,
            },
            export: export.split('?').next().unwrap_or("").to_string(),
        })
    }
}

/// The byte stream to the server.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy)]
struct Export {
    size: u64,
    flags: u16,
    structured: bool,
    /// The id of `base:allocation`, when the server agreed to it.
    allocation: Option<u32>,
}

/// One negotiated connection.
struct Connection {
    stream: Stream,
    next_handle: u64,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// A protocol violation or refusal, as one error.
fn protocol(uri: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("NBD server: {message}")).with_path(uri)
}

impl Connection {
    fn open(uri: &NbdUri, name: &str) -> Result<(Connection, Export)> {
        let io = |what: &str, e: std::io::Error| {
            Error::io(format!("NBD: cannot {what}"), e).with_path(name)
        };
        let stream = match &uri.address {
            NbdAddress::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| io("connect", e))?;
                s.set_read_timeout(Some(TIMEOUT)).map_err(|e| io("connect", e))?;
                s.set_write_timeout(Some(TIMEOUT)).map_err(|e| io("connect", e))?;
                Stream::Unix(s)
            }
            NbdAddress::Tcp { host, port } => {
                use std::net::ToSocketAddrs;
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io("resolve the host", e))?
                    .next()
                    .ok_or_else(|| protocol(name, "the host resolves to nothing"))?;
                let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| io("connect", e))?;
                s.set_read_timeout(Some(TIMEOUT)).map_err(|e| io("connect", e))?;
                s.set_write_timeout(Some(TIMEOUT)).map_err(|e| io("connect", e))?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        let mut c = Connection {
            stream,
            next_handle: 1,
        };
        let export = c.handshake(&uri.export, name)?;
        Ok((c, export))
    }

    fn read_exact(&mut self, buf: &mut [u8], name: &str) -> Result<()> {
        self.stream.read_exact(buf).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("no answer within {} s", TIMEOUT.as_secs())
                }
                _ => e.to_string(),
            };
            protocol(name, why)
        })
    }

    fn send(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|e| protocol(name, format!("cannot send: {e}")))
    }

    /// Sends option `opt` with `data`.
    fn send_option(&mut self, opt: u32, data: &[u8], name: &str) -> Result<()> {
        let mut m = Vec::with_capacity(16 + data.len());
        m.extend(IHAVEOPT.to_be_bytes());
        m.extend(opt.to_be_bytes());
        m.extend((data.len() as u32).to_be_bytes());
        m.extend(data);
        self.send(&m, name)
    }

    /// Reads one option reply: (type, data).
    fn option_reply(&mut self, opt: u32, name: &str) -> Result<(u32, Vec<u8>)> {
        let mut h = [0u8; 20];
        self.read_exact(&mut h, name)?;
        if be64(&h) != OPT_REPLY_MAGIC || be32(&h[8..]) != opt {
            return Err(protocol(name, "malformed option reply"));
        }
        let (kind, len) = (be32(&h[12..]), be32(&h[16..]));
        if len > MAX_OPTION_REPLY {
            return Err(protocol(name, format!("option reply of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact(&mut data, name)?;
        Ok((kind, data))
    }

    fn refused(kind: u32, data: &[u8]) -> String {
        let text = String::from_utf8_lossy(data);
        if text.is_empty() {
            format!("refused (error {:#x})", kind)
        } else {
            format!("refused: {text}")
        }
    }

    fn handshake(&mut self, export: &str, name: &str) -> Result<Export> {
        let mut h = [0u8; 18];
        self.read_exact(&mut h, name)?;
        if be64(&h) != NBDMAGIC {
            return Err(protocol(name, "this is not an NBD server"));
        }
        if be64(&h[8..]) != IHAVEOPT {
            return Err(protocol(
                name,
                "the server speaks only the old-style protocol, which qimg does not",
            ));
        }
        let server_flags = be16(&h[16..]);
        if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(protocol(name, "the server lacks the fixed newstyle handshake"));
        }
        let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
        let client_flags = FLAG_FIXED_NEWSTYLE as u32 | if no_zeroes { FLAG_NO_ZEROES as u32 } else { 0 };
        self.send(&client_flags.to_be_bytes(), name)?;

        self.send_option(OPT_STRUCTURED_REPLY, &[], name)?;
        let structured = loop {
            let (kind, _) = self.option_reply(OPT_STRUCTURED_REPLY, name)?;
            if kind == REP_ACK {
                break true;
            }
            if kind & 0x8000_0000 != 0 {
                break false;
            }
        };
        let mut allocation = None;
        if structured {
            let query = b"base:allocation";
            let mut data = Vec::new();
            data.extend((export.len() as u32).to_be_bytes());
            data.extend(export.as_bytes());
            data.extend(1u32.to_be_bytes());
            data.extend((query.len() as u32).to_be_bytes());
            data.extend(query);
            self.send_option(OPT_SET_META_CONTEXT, &data, name)?;
            loop {
                let (kind, data) = self.option_reply(OPT_SET_META_CONTEXT, name)?;
                match kind {
                    REP_META_CONTEXT if data.len() >= 4 && &data[4..] == query => {
                        allocation = Some(be32(&data))
                    }
                    REP_META_CONTEXT => {}
                    REP_ACK => break,
                    k if k & 0x8000_0000 != 0 => break,
                    _ => {}
                }
            }
        }
        let mut data = Vec::new();
        data.extend((export.len() as u32).to_be_bytes());
        data.extend(export.as_bytes());
        data.extend(0u16.to_be_bytes());
        self.send_option(OPT_GO, &data, name)?;
        let mut info: Option<(u64, u16)> = None;
        loop {
            let (kind, data) = self.option_reply(OPT_GO, name)?;
            match kind {
                REP_INFO if data.len() >= 12 && be16(&data) == INFO_EXPORT => {
                    info = Some((be64(&data[2..]), be16(&data[10..])))
                }
                REP_INFO => {}
                REP_ACK => break,
                REP_ERR_UNSUP => return self.export_name_fallback(export, no_zeroes, structured, name),
                k if k & 0x8000_0000 != 0 => {
                    return Err(protocol(
                        name,
                        format!("export '{export}' {}", Self::refused(k, &data)),
                    ))
                }
                _ => {}
            }
        }
        let (size, flags) = info.ok_or_else(|| protocol(name, "no export size in the reply"))?;
        Ok(Export {
            size,
            flags,
            structured,
            allocation,
        })
    }

    /// Servers without NBD_OPT_GO: the old NBD_OPT_EXPORT_NAME (which
    /// ends the handshake, or the connection when the export is unknown).
    fn export_name_fallback(
        &mut self,
        export: &str,
        no_zeroes: bool,
        structured: bool,
        name: &str,
    ) -> Result<Export> {
        self.send_option(OPT_EXPORT_NAME, export.as_bytes(), name)?;
        let mut h = [0u8; 10];
        self.read_exact(&mut h, name)?;
        if !no_zeroes {
            let mut pad = [0u8; 124];
            self.read_exact(&mut pad, name)?;
        }
        Ok(Export {
            size: be64(&h),
            flags: be16(&h[8..]),
            structured,
            allocation: None,
        })
    }

    /// Sends a request; returns its handle.
    fn request(&mut self, kind: u16, offset: u64, len: u32, data: &[u8], name: &str) -> Result<u64> {
        let handle = self.next_handle;
        self.next_handle += 1;
        let mut m = Vec::with_capacity(28 + data.len());
        m.extend(REQUEST_MAGIC.to_be_bytes());
        m.extend(0u16.to_be_bytes());
        m.extend(kind.to_be_bytes());
        m.extend(handle.to_be_bytes());
        m.extend(offset.to_be_bytes());
        m.extend(len.to_be_bytes());
        m.extend(data);
        self.send(&m, name)?;
        Ok(handle)
    }

    /// Reads the replies to request `handle` until it is done, handing
    /// each chunk to `chunk` (type, payload). A simple reply becomes one
    /// OFFSET_DATA-like chunk for reads (`read_len` bytes).
    fn replies(
        &mut self,
        handle: u64,
        read_len: usize,
        name: &str,
        mut chunk: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut magic = [0u8; 4];
            self.read_exact(&mut magic, name)?;
            match be32(&magic) {
                SIMPLE_REPLY_MAGIC => {
                    let mut h = [0u8; 12];
                    self.read_exact(&mut h, name)?;
                    if be64(&h[4..]) != handle {
                        return Err(protocol(name, "a reply to a request not sent"));
                    }
                    let error = be32(&h);
                    if error != 0 {
                        return Err(server_error(name, error, ""));
                    }
                    if read_len > 0 {
                        let mut data = vec![0u8; read_len];
                        self.read_exact(&mut data, name)?;
                        chunk(u16::MAX, &data)?;
                    }
                    return Ok(());
                }
                STRUCTURED_REPLY_MAGIC => {
                    let mut h = [0u8; 16];
                    self.read_exact(&mut h, name)?;
                    let (flags, kind, got, len) = (be16(&h), be16(&h[2..]), be64(&h[4..]), be32(&h[12..]));
                    if got != handle {
                        return Err(protocol(name, "a reply to a request not sent"));
                    }
                    if len as usize > MAX_REQUEST + 64 {
                        return Err(protocol(name, format!("a reply chunk of {len} bytes")));
                    }
                    let mut payload = vec![0u8; len as usize];
                    self.read_exact(&mut payload, name)?;
                    if kind & REPLY_ERROR_BIT != 0 {
                        if payload.len() < 6 {
                            return Err(protocol(name, "a malformed error chunk"));
                        }
                        let msg_len = (be16(&payload[4..]) as usize).min(payload.len() - 6);
                        let msg = String::from_utf8_lossy(&payload[6..6 + msg_len]).into_owned();
                        return Err(server_error(name, be32(&payload), &msg));
                    }
                    if kind != REPLY_NONE {
                        chunk(kind, &payload)?;
                    }
                    if flags & REPLY_FLAG_DONE != 0 {
                        return Ok(());
                    }
                }
                _ => return Err(protocol(name, "a reply with a bad magic number")),
            }
        }
    }
}

fn server_error(name: &str, errno: u32, msg: &str) -> Error {
    let os = std::io::Error::from_raw_os_error(errno as i32);
    let text = if msg.is_empty() { os.to_string() } else { format!("{msg} ({os})") };
    protocol(name, format!("request failed: {text}"))
}

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
}

impl std::fmt::Debug for NbdStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdStorage").field("uri", &self.name).finish()
    }
}

impl NbdStorage {
    /// Connects to the export `uri` names; `writable` asks to write it
    /// (refused when the server exports it read-only).
    pub fn open(uri: &str, writable: bool) -> Result<NbdStorage> {
        let parsed = NbdUri::parse(uri)?;
        let (conn, export) = Connection::open(&parsed, uri)?;
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
                    match Connection::open(&self.uri, &name) {
                        Ok((c, _)) => break c,
                        Err(_) => {
                            // The server takes no more clients: share the ones we have.
                            pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                            pool.open -= 1;
                            pool = self
                                .returned
                                .wait(pool)
                                .unwrap_or_else(|p| p.into_inner());
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
        if offset.checked_add(len).is_none_or(|end| end > self.export.size) {
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
            c.replies(h, 0, &name, |_, _| Ok(()))
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
                c.replies(h, len, &name, |kind, payload| match kind {
                    u16::MAX => {
                        piece.copy_from_slice(payload);
                        Ok(())
                    }
                    REPLY_OFFSET_DATA if payload.len() >= 8 => {
                        let start = be64(payload)
                            .checked_sub(at)
                            .filter(|s| *s as usize + payload.len() - 8 <= len)
                            .ok_or_else(|| protocol(&name, "read data outside the request"))?;
                        piece[start as usize..start as usize + payload.len() - 8]
                            .copy_from_slice(&payload[8..]);
                        Ok(())
                    }
                    REPLY_OFFSET_HOLE if payload.len() >= 12 => {
                        let (hole, n) = (be64(payload), be32(&payload[8..]) as usize);
                        let start = hole
                            .checked_sub(at)
                            .filter(|s| *s as usize + n <= len)
                            .ok_or_else(|| protocol(&name, "a hole outside the request"))?;
                        piece[start as usize..start as usize + n].fill(0);
                        Ok(())
                    }
                    _ => Err(protocol(&name, "an unexpected reply to a read")),
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
        let name = self.uri_text();
        let len = (self.export.size - offset).min(1 << 30) as u32;
        let mut answer: Option<(u32, u32)> = None;
        self.with_connection(|c| {
            let h = c.request(CMD_BLOCK_STATUS, offset, len, &[], &name)?;
            c.replies(h, 0, &name, |kind, payload| {
                if kind == REPLY_BLOCK_STATUS && payload.len() >= 12 && be32(payload) == context {
                    answer.get_or_insert((be32(&payload[4..]), be32(&payload[8..])));
                }
                Ok(())
            })
        })?;
        match answer {
            Some((0, _)) | None => Err(protocol(&name, "no block status for the range asked")),
            Some((n, flags)) => {
                let n = (n as u64).min(self.export.size - offset);
                Ok(if flags & STATE_ZERO != 0 {
                    HostExtent::Hole(n)
                } else {
                    HostExtent::Data(n)
                })
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.require_writable()?;
        self.check_range(offset, buf.len() as u64)?;
        let name = self.uri_text();
        for (i, piece) in buf.chunks(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            self.with_connection(|c| {
                let h = c.request(CMD_WRITE, at, piece.len() as u32, piece, &name)?;
                c.replies(h, 0, &name, |_, _| Ok(()))
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

/// Releases a range of the export (advisory), where the server allows it.
pub fn trim(storage: &NbdStorage, offset: u64, len: u32) -> Result<()> {
    storage.require_writable()?;
    if storage.export.flags & TFLAG_SEND_TRIM == 0 {
        return Ok(());
    }
    storage.command(CMD_TRIM, offset, len)
}

#[cfg(test)]
mod tests {
    use super::{NbdAddress, NbdUri};
    use std::path::PathBuf;

    #[test]
    fn uris_as_qemu_spells_them() {
        let u = NbdUri::parse("nbd://example.org:10810/disk0").unwrap();
        assert_eq!(
            u.address,
            NbdAddress::Tcp {
                host: "example.org".into(),
                port: 10810
            }
        );
        assert_eq!(u.export, "disk0");
        let u = NbdUri::parse("nbd://127.0.0.1").unwrap();
        assert_eq!(u.export, "");
        assert!(matches!(u.address, NbdAddress::Tcp { port: 10809, .. }));
        let u = NbdUri::parse("nbd+unix:///exp?socket=/run/nbd.sock").unwrap();
        assert_eq!(u.address, NbdAddress::Unix(PathBuf::from("/run/nbd.sock")));
        assert_eq!(u.export, "exp");
        for bad in [
            "nbd+unix:///exp",
            "nbd+unix://host/exp?socket=/s",
            "nbd://:10809/x",
            "nbd://h:port/x",
            "http://h/x",
        ] {
            assert!(NbdUri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
