//! The NBD wire protocol, client side: the fixed newstyle handshake
//! (structured replies, `base:allocation`, `NBD_OPT_GO` with the old
//! `NBD_OPT_EXPORT_NAME` as fallback), requests, and replies simple or
//! structured. Every length the server sends is bounded before it is
//! believed, and every exchange has a timeout.

use super::uri::{NbdAddress, NbdUri};
use crate::error::{Error, ErrorKind, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub(super) const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub(super) const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub(super) const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub(super) const REQUEST_MAGIC: u32 = 0x2560_9513;
pub(super) const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub(super) const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

pub(super) const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub(super) const FLAG_NO_ZEROES: u16 = 2;

pub(super) const OPT_EXPORT_NAME: u32 = 1;
pub(super) const OPT_GO: u32 = 7;
pub(super) const OPT_STRUCTURED_REPLY: u32 = 8;
pub(super) const OPT_SET_META_CONTEXT: u32 = 10;

pub(super) const REP_ACK: u32 = 1;
pub(super) const REP_INFO: u32 = 3;
pub(super) const REP_META_CONTEXT: u32 = 4;
pub(super) const REP_ERR_UNSUP: u32 = 0x8000_0001;

pub(super) const INFO_EXPORT: u16 = 0;

pub(super) const TFLAG_READ_ONLY: u16 = 1 << 1;
pub(super) const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub(super) const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub(super) const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

pub(super) const CMD_READ: u16 = 0;
pub(super) const CMD_WRITE: u16 = 1;
pub(super) const CMD_DISC: u16 = 2;
pub(super) const CMD_FLUSH: u16 = 3;
pub(super) const CMD_WRITE_ZEROES: u16 = 6;
pub(super) const CMD_BLOCK_STATUS: u16 = 7;

pub(super) const REPLY_FLAG_DONE: u16 = 1;
pub(super) const REPLY_NONE: u16 = 0;
pub(super) const REPLY_OFFSET_DATA: u16 = 1;
pub(super) const REPLY_OFFSET_HOLE: u16 = 2;
pub(super) const REPLY_BLOCK_STATUS: u16 = 5;
pub(super) const REPLY_ERROR_BIT: u16 = 1 << 15;

pub(super) const STATE_ZERO: u32 = 1 << 1;

/// The largest request qimg sends, and the largest payload it accepts.
pub(super) const MAX_REQUEST: usize = 32 << 20;
/// The largest option reply or error message accepted during the handshake.
pub(super) const MAX_OPTION_REPLY: u32 = 64 << 10;
/// Connections opened at most.
pub(super) const MAX_CONNECTIONS: usize = 8;
/// How long one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

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
pub(super) struct Export {
    pub(super) size: u64,
    pub(super) flags: u16,
    pub(super) structured: bool,
    /// The id of `base:allocation`, when the server agreed to it.
    pub(super) allocation: Option<u32>,
}

/// One negotiated connection.
pub(super) struct Connection {
    stream: Stream,
    next_handle: u64,
    timeout: Duration,
}

pub(super) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}
pub(super) fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// A protocol violation or refusal, as one error.
pub(super) fn protocol(uri: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("NBD server: {message}")).with_path(uri)
}

impl Connection {
    pub(super) fn open(
        uri: &NbdUri,
        name: &str,
        timeout: Duration,
    ) -> Result<(Connection, Export)> {
        let io = |what: &str, e: std::io::Error| {
            Error::io(format!("NBD: cannot {what}"), e).with_path(name)
        };
        let stream = match &uri.address {
            NbdAddress::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| io("connect", e))?;
                s.set_read_timeout(Some(timeout))
                    .map_err(|e| io("connect", e))?;
                s.set_write_timeout(Some(timeout))
                    .map_err(|e| io("connect", e))?;
                Stream::Unix(s)
            }
            NbdAddress::Tcp { host, port } => {
                use std::net::ToSocketAddrs;
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io("resolve the host", e))?
                    .next()
                    .ok_or_else(|| protocol(name, "the host resolves to nothing"))?;
                let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| io("connect", e))?;
                s.set_read_timeout(Some(timeout))
                    .map_err(|e| io("connect", e))?;
                s.set_write_timeout(Some(timeout))
                    .map_err(|e| io("connect", e))?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        let mut c = Connection {
            stream,
            next_handle: 1,
            timeout,
        };
        let export = c.handshake(&uri.export, name)?;
        Ok((c, export))
    }

    fn read_exact(&mut self, buf: &mut [u8], name: &str) -> Result<()> {
        self.stream.read_exact(buf).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("no answer within {} s", self.timeout.as_secs_f64())
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
            return Err(protocol(
                name,
                "the server lacks the fixed newstyle handshake",
            ));
        }
        let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
        let client_flags =
            FLAG_FIXED_NEWSTYLE as u32 | if no_zeroes { FLAG_NO_ZEROES as u32 } else { 0 };
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
                REP_ERR_UNSUP => {
                    return self.export_name_fallback(export, no_zeroes, structured, name)
                }
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
    pub(super) fn request(
        &mut self,
        kind: u16,
        offset: u64,
        len: u32,
        data: &[u8],
        name: &str,
    ) -> Result<u64> {
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

    /// Reads the replies to request `handle` until it is done. Read data
    /// goes straight into `read_into` (the buffer and the export offset it
    /// starts at), holes are zeroed there; other chunks go to `chunk`
    /// (type, payload).
    pub(super) fn replies(
        &mut self,
        handle: u64,
        mut read_into: Option<(&mut [u8], u64)>,
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
                    if let Some((buf, _)) = read_into.as_mut() {
                        self.read_exact(buf, name)?;
                    }
                    return Ok(());
                }
                STRUCTURED_REPLY_MAGIC => {
                    let mut h = [0u8; 16];
                    self.read_exact(&mut h, name)?;
                    let (flags, kind, got, len) = (
                        be16(&h),
                        be16(&h[2..]),
                        be64(&h[4..]),
                        be32(&h[12..]) as usize,
                    );
                    if got != handle {
                        return Err(protocol(name, "a reply to a request not sent"));
                    }
                    if len > MAX_REQUEST + 64 {
                        return Err(protocol(name, format!("a reply chunk of {len} bytes")));
                    }
                    match (kind, read_into.as_mut()) {
                        (REPLY_OFFSET_DATA, Some((buf, base))) if len >= 8 => {
                            let mut at = [0u8; 8];
                            self.read_exact(&mut at, name)?;
                            let place = within(be64(&at), len - 8, *base, buf.len())
                                .ok_or_else(|| protocol(name, "read data outside the request"))?;
                            self.read_exact(&mut buf[place], name)?;
                        }
                        _ => {
                            let mut payload = vec![0u8; len];
                            self.read_exact(&mut payload, name)?;
                            self.chunk(kind, &payload, read_into.as_mut(), name, &mut chunk)?;
                        }
                    }
                    if flags & REPLY_FLAG_DONE != 0 {
                        return Ok(());
                    }
                }
                _ => return Err(protocol(name, "a reply with a bad magic number")),
            }
        }
    }

    /// One structured chunk other than read data.
    fn chunk(
        &mut self,
        kind: u16,
        payload: &[u8],
        read_into: Option<&mut (&mut [u8], u64)>,
        name: &str,
        chunk: &mut impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if kind & REPLY_ERROR_BIT != 0 {
            if payload.len() < 6 {
                return Err(protocol(name, "a malformed error chunk"));
            }
            let msg_len = (be16(&payload[4..]) as usize).min(payload.len() - 6);
            let msg = String::from_utf8_lossy(&payload[6..6 + msg_len]).into_owned();
            return Err(server_error(name, be32(payload), &msg));
        }
        match (kind, read_into) {
            (REPLY_NONE, _) => Ok(()),
            (REPLY_OFFSET_HOLE, Some((buf, base))) if payload.len() >= 12 => {
                let place = within(
                    be64(payload),
                    be32(&payload[8..]) as usize,
                    *base,
                    buf.len(),
                )
                .ok_or_else(|| protocol(name, "a hole outside the request"))?;
                buf[place].fill(0);
                Ok(())
            }
            (REPLY_OFFSET_DATA | REPLY_OFFSET_HOLE, _) => {
                Err(protocol(name, "an unexpected reply to a read"))
            }
            _ => chunk(kind, payload),
        }
    }
}

/// Where `len` bytes at export offset `at` fall in a buffer of `size`
/// bytes starting at export offset `base`, if they fall inside it.
fn within(at: u64, len: usize, base: u64, size: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(at.checked_sub(base)?).ok()?;
    (start.checked_add(len)? <= size).then_some(start..start + len)
}

pub(super) fn server_error(name: &str, errno: u32, msg: &str) -> Error {
    let os = std::io::Error::from_raw_os_error(errno as i32);
    let text = if msg.is_empty() {
        os.to_string()
    } else {
        format!("{msg} ({os})")
    };
    protocol(name, format!("request failed: {text}"))
}
