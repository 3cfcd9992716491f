//! The NBD wire protocol, client side: the fixed newstyle handshake
//! (structured replies, `base:allocation`, `NBD_OPT_GO` with the old
//! `NBD_OPT_EXPORT_NAME` as fallback), the request and reply headers, and
//! socket I/O whose every wait ends: reads and writes wake up every
//! [`POLL`] to look at the cancel flag and the time without progress.
//! Every length the server sends is bounded before it is believed.

use super::uri::{NbdAddress, NbdUri};
use crate::error::{Error, ErrorKind, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
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
/// How long one exchange may go without progress, unless
/// `QIMG_NBD_TIMEOUT` (seconds) says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How often a blocked socket read or write wakes up to look at the
/// cancel flag and the clock.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// The longest single TCP connect attempt: short enough that a cancel is
/// seen within a second, long enough for any real round trip.
const CONNECT_SLICE: Duration = Duration::from_millis(900);

/// What ends a wait besides its answer: a time without progress, and a
/// flag (set by a signal handler, or the caller) that cancels it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waits {
    /// How long an exchange may go without progress.
    pub(super) timeout: Duration,
    /// Set to cancel every wait.
    pub(super) cancel: Option<&'static AtomicBool>,
}

impl Waits {
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// The byte stream to the server.
pub(super) enum Stream {
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

impl Stream {
    /// Connects to `address`, polling `waits` while a TCP connect hangs.
    fn connect(address: &NbdAddress, name: &str, waits: &Waits) -> Result<Stream> {
        let io = |what: &str, e: std::io::Error| {
            Error::io(format!("NBD: cannot {what}"), e).with_path(name)
        };
        let stream = match address {
            NbdAddress::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(|e| io("connect", e))?)
            }
            NbdAddress::Tcp { host, port } => {
                use std::net::ToSocketAddrs;
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io("resolve the host", e))?
                    .next()
                    .ok_or_else(|| protocol(name, "the host resolves to nothing"))?;
                let start = Instant::now();
                let s = loop {
                    if waits.cancelled() {
                        return Err(interrupted(name, "connecting"));
                    }
                    let left = waits.timeout.saturating_sub(start.elapsed());
                    match TcpStream::connect_timeout(&addr, left.min(CONNECT_SLICE)) {
                        Ok(s) => break s,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::TimedOut
                                && start.elapsed() < waits.timeout =>
                        {
                            continue
                        }
                        Err(e) => return Err(io("connect", e)),
                    }
                };
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        stream.set_timeouts(POLL).map_err(|e| io("connect", e))?;
        Ok(stream)
    }

    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    /// A second handle on the same socket (one thread reads, others write).
    pub(super) fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts both directions: a read blocked on the socket returns.
    pub(super) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    /// Fills `buf`. Whenever [`POLL`] passes without a byte, `idle` is told
    /// how long it has been since the last one and may end the wait with
    /// an error; the bytes already read are kept (unlike `read_exact`).
    pub(super) fn read_full(
        &mut self,
        buf: &mut [u8],
        name: &str,
        idle: &mut dyn FnMut(Duration) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0;
        let mut last = Instant::now();
        while done < buf.len() {
            match self.read(&mut buf[done..]) {
                Ok(0) => return Err(protocol(name, "the server closed the connection")),
                Ok(n) => {
                    done += n;
                    last = Instant::now();
                }
                Err(e) if is_timeout(&e) => idle(last.elapsed())?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(protocol(name, e)),
            }
        }
        Ok(())
    }

    /// Sends all of `bytes`, with `idle` consulted as for
    /// [`Stream::read_full`].
    pub(super) fn write_full(
        &mut self,
        bytes: &[u8],
        name: &str,
        idle: &mut dyn FnMut(Duration) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0;
        let mut last = Instant::now();
        while done < bytes.len() {
            match self.write(&bytes[done..]) {
                Ok(0) => return Err(protocol(name, "the server closed the connection")),
                Ok(n) => {
                    done += n;
                    last = Instant::now();
                }
                Err(e) if is_timeout(&e) => idle(last.elapsed())?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(protocol(name, format!("cannot send: {e}"))),
            }
        }
        Ok(())
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
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

/// A wait ended by the cancel flag (a signal) while `doing`.
pub(super) fn interrupted(uri: &str, doing: &str) -> Error {
    Error::new(
        ErrorKind::Interrupted,
        format!("NBD: interrupted while {doing}"),
    )
    .with_path(uri)
}

/// The header of a request.
pub(super) fn request_header(kind: u16, handle: u64, offset: u64, len: u32) -> [u8; 28] {
    let mut m = [0u8; 28];
    m[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    m[6..8].copy_from_slice(&kind.to_be_bytes());
    m[8..16].copy_from_slice(&handle.to_be_bytes());
    m[16..24].copy_from_slice(&offset.to_be_bytes());
    m[24..28].copy_from_slice(&len.to_be_bytes());
    m
}

/// The handshake on a fresh connection: a stream and the waits that bound it.
struct Handshake<'a> {
    stream: Stream,
    name: &'a str,
    waits: Waits,
}

/// Connects to `uri` and negotiates its export; `waits.timeout` bounds the
/// whole handshake.
pub(super) fn connect(uri: &NbdUri, name: &str, waits: Waits) -> Result<(Stream, Export)> {
    let stream = Stream::connect(&uri.address, name, &waits)?;
    let mut h = Handshake {
        stream,
        name,
        waits,
    };
    let start = Instant::now();
    let export = h.handshake(&uri.export, start)?;
    Ok((h.stream, export))
}

impl Handshake<'_> {
    fn read_exact(&mut self, buf: &mut [u8], start: Instant) -> Result<()> {
        let (name, waits) = (self.name, self.waits);
        self.stream.read_full(buf, name, &mut |_| {
            if waits.cancelled() {
                return Err(interrupted(name, "waiting for the server's handshake"));
            }
            if start.elapsed() >= waits.timeout {
                return Err(protocol(
                    name,
                    format!(
                        "no answer to the handshake within {} s",
                        waits.timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(())
        })
    }

    fn send(&mut self, bytes: &[u8], start: Instant) -> Result<()> {
        let (name, waits) = (self.name, self.waits);
        self.stream.write_full(bytes, name, &mut |_| {
            if waits.cancelled() {
                return Err(interrupted(name, "sending the handshake"));
            }
            if start.elapsed() >= waits.timeout {
                return Err(protocol(name, "the server takes no handshake"));
            }
            Ok(())
        })
    }

    /// Sends option `opt` with `data`.
    fn send_option(&mut self, opt: u32, data: &[u8], start: Instant) -> Result<()> {
        let mut m = Vec::with_capacity(16 + data.len());
        m.extend(IHAVEOPT.to_be_bytes());
        m.extend(opt.to_be_bytes());
        m.extend((data.len() as u32).to_be_bytes());
        m.extend(data);
        self.send(&m, start)
    }

    /// Reads one option reply: (type, data).
    fn option_reply(&mut self, opt: u32, start: Instant) -> Result<(u32, Vec<u8>)> {
        let mut h = [0u8; 20];
        self.read_exact(&mut h, start)?;
        if be64(&h) != OPT_REPLY_MAGIC || be32(&h[8..]) != opt {
            return Err(protocol(self.name, "malformed option reply"));
        }
        let (kind, len) = (be32(&h[12..]), be32(&h[16..]));
        if len > MAX_OPTION_REPLY {
            return Err(protocol(self.name, format!("option reply of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        self.read_exact(&mut data, start)?;
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

    fn handshake(&mut self, export: &str, start: Instant) -> Result<Export> {
        let name = self.name;
        let mut h = [0u8; 18];
        self.read_exact(&mut h, start)?;
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
        self.send(&client_flags.to_be_bytes(), start)?;

        self.send_option(OPT_STRUCTURED_REPLY, &[], start)?;
        let structured = loop {
            let (kind, _) = self.option_reply(OPT_STRUCTURED_REPLY, start)?;
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
            self.send_option(OPT_SET_META_CONTEXT, &data, start)?;
            loop {
                let (kind, data) = self.option_reply(OPT_SET_META_CONTEXT, start)?;
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
        self.send_option(OPT_GO, &data, start)?;
        let mut info: Option<(u64, u16)> = None;
        loop {
            let (kind, data) = self.option_reply(OPT_GO, start)?;
            match kind {
                REP_INFO if data.len() >= 12 && be16(&data) == INFO_EXPORT => {
                    info = Some((be64(&data[2..]), be16(&data[10..])))
                }
                REP_INFO => {}
                REP_ACK => break,
                REP_ERR_UNSUP => {
                    return self.export_name_fallback(export, no_zeroes, structured, start)
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
        start: Instant,
    ) -> Result<Export> {
        self.send_option(OPT_EXPORT_NAME, export.as_bytes(), start)?;
        let mut h = [0u8; 10];
        self.read_exact(&mut h, start)?;
        if !no_zeroes {
            let mut pad = [0u8; 124];
            self.read_exact(&mut pad, start)?;
        }
        Ok(Export {
            size: be64(&h),
            flags: be16(&h[8..]),
            structured,
            allocation: None,
        })
    }
}

/// Where `len` bytes at export offset `at` fall in a buffer of `size`
/// bytes starting at export offset `base`, if they fall inside it.
pub(super) fn within(
    at: u64,
    len: usize,
    base: u64,
    size: usize,
) -> Option<std::ops::Range<usize>> {
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
