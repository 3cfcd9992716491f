//! One NBD connection that carries many requests at once. Callers on any
//! thread send a request with its own handle and wait for their reply; one
//! reader thread per connection reads the replies in whatever order the
//! server sends them (structured chunks of different requests may
//! interleave) and delivers read data straight into the caller's buffer.
//!
//! Every wait here is a loop over a condition checked under the one state
//! mutex, woken by a notify after each change and by a [`POLL`] timeout,
//! so no wake-up can be lost and the cancel flag is seen within a poll.
//! A wait ends by its answer, by the connection dying (a protocol error,
//! or no progress for the exchange timeout, both found by the reader), or
//! by the cancel flag after a short grace.

use super::wire::*;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests in flight on one connection at most.
pub(super) const MAX_IN_FLIGHT: usize = 16;

/// How long a wait goes on once the cancel flag is set, so that requests
/// a healthy server is answering still finish (and a copy stops cleanly
/// between chunks); a server that does not answer is given up after it.
const CANCEL_GRACE: Duration = Duration::from_millis(400);

/// The part of a caller's read buffer the reader may fill: the caller's
/// `&mut [u8]`, as a raw pointer because another thread writes it.
struct ReadBuf {
    ptr: *mut u8,
    len: usize,
    /// The export offset of the buffer's first byte.
    base: u64,
}

// SAFETY: the pointer is only dereferenced by the reader thread while the
// request's `filling` flag is set, and the caller that owns the buffer
// never returns from `exchange` while it is set (or after it has dropped
// the pointer by abandoning the request).
unsafe impl Send for ReadBuf {}

/// A request sent and not yet answered in full.
struct Pending {
    kind: u16,
    offset: u64,
    len: u32,
    /// Where read data goes; `None` once the caller gave up waiting.
    buf: Option<ReadBuf>,
    /// The reader is writing into `buf` right now.
    filling: bool,
    /// The reply is complete.
    done: bool,
    /// The first error the server reported for this request.
    error: Option<Error>,
    /// Structured chunks other than read data (block status), for the caller.
    chunks: Vec<(u16, Vec<u8>)>,
    /// The caller gave up waiting: the reply is read and dropped.
    abandoned: bool,
    /// Wakes the caller waiting for this request.
    wake: Arc<Condvar>,
}

impl Pending {
    fn describe(&self) -> String {
        let what = match self.kind {
            CMD_READ => "read",
            CMD_WRITE => "write",
            CMD_FLUSH => "flush",
            CMD_WRITE_ZEROES => "write-zeroes",
            CMD_BLOCK_STATUS => "block-status",
            _ => "request",
        };
        format!("{what} at {:#x} (+{})", self.offset, self.len)
    }
}

struct State {
    pending: HashMap<u64, Pending>,
    next_handle: u64,
    /// Why the connection can no longer be used.
    dead: Option<String>,
    /// The connection is being closed on purpose.
    closing: bool,
    /// When `pending` last became non-empty.
    busy_since: Instant,
}

/// What the callers and the reader thread share.
struct Inner {
    name: String,
    waits: Waits,
    state: Mutex<State>,
    /// Wakes callers waiting for room under [`MAX_IN_FLIGHT`].
    room: Condvar,
    /// A handle on the socket to shut it down (which ends a blocked read).
    shut: Stream,
}

/// One negotiated connection with its reader thread.
pub(super) struct Connection {
    inner: Arc<Inner>,
    writer: Mutex<Stream>,
    reader: Option<JoinHandle<()>>,
    export: Export,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error for a request on a connection that died for `why` (already
/// a whole sentence, such as "NBD server: no answer within 30 s ...").
fn lost(name: &str, why: &str) -> Error {
    Error::new(crate::error::ErrorKind::Io, why.to_string()).with_path(name)
}

/// When the cancel flag was first seen by a wait; whether its grace is over.
fn cancel_over(waits: &Waits, seen: &mut Option<Instant>) -> bool {
    if !waits.cancelled() {
        return false;
    }
    seen.get_or_insert_with(Instant::now).elapsed() >= CANCEL_GRACE
}

impl Connection {
    /// Connects to `uri` (known as `name` in messages), negotiates, and
    /// starts the reader thread.
    pub(super) fn open(uri: &super::NbdUri, name: &str, waits: Waits) -> Result<Connection> {
        let (stream, export) = connect(uri, name, waits)?;
        let clone = |s: &Stream| {
            s.try_clone()
                .map_err(|e| Error::io("NBD: cannot share the socket", e).with_path(name))
        };
        let reader_stream = clone(&stream)?;
        let inner = Arc::new(Inner {
            name: name.to_string(),
            waits,
            state: Mutex::new(State {
                pending: HashMap::new(),
                next_handle: 1,
                dead: None,
                closing: false,
                busy_since: Instant::now(),
            }),
            room: Condvar::new(),
            shut: clone(&stream)?,
        });
        let shared = inner.clone();
        let reader = std::thread::Builder::new()
            .name("nbd-reader".into())
            .spawn(move || {
                let mut stream = reader_stream;
                if let Err(e) = read_replies(&shared, &mut stream) {
                    shared.kill(e.detail());
                }
            })
            .map_err(|e| Error::io("NBD: cannot start the reply reader", e).with_path(name))?;
        Ok(Connection {
            inner,
            writer: Mutex::new(stream),
            reader: Some(reader),
            export,
        })
    }

    /// What the handshake settled.
    pub(super) fn export(&self) -> Export {
        self.export
    }

    /// Requests sent and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        lock(&self.inner.state).pending.len()
    }

    /// Whether the connection can no longer be used.
    pub(super) fn is_dead(&self) -> bool {
        lock(&self.inner.state).dead.is_some()
    }

    /// Sends one request (`payload` follows a write) and waits for its
    /// whole reply: read data lands in `read_into` (which must be `len`
    /// bytes), other structured chunks are returned as (type, payload).
    pub(super) fn exchange(
        &self,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
        read_into: Option<&mut [u8]>,
    ) -> Result<Vec<(u16, Vec<u8>)>> {
        let inner = &*self.inner;
        let name = inner.name.as_str();
        let wake = Arc::new(Condvar::new());
        let handle = {
            let mut st = lock(&inner.state);
            let mut seen = None;
            loop {
                if let Some(why) = &st.dead {
                    if inner.waits.cancelled() {
                        return Err(interrupted(name, "sending a request"));
                    }
                    return Err(lost(name, why));
                }
                if st.pending.len() < MAX_IN_FLIGHT {
                    break;
                }
                if cancel_over(&inner.waits, &mut seen) {
                    return Err(interrupted(name, "waiting to send a request"));
                }
                st = inner
                    .room
                    .wait_timeout(st, POLL)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let handle = st.next_handle;
            st.next_handle += 1;
            if st.pending.is_empty() {
                st.busy_since = Instant::now();
            }
            let buf = read_into.map(|b| {
                debug_assert_eq!(b.len(), len as usize);
                ReadBuf {
                    ptr: b.as_mut_ptr(),
                    len: b.len(),
                    base: offset,
                }
            });
            st.pending.insert(
                handle,
                Pending {
                    kind,
                    offset,
                    len,
                    buf,
                    filling: false,
                    done: false,
                    error: None,
                    chunks: Vec::new(),
                    abandoned: false,
                    wake: wake.clone(),
                },
            );
            handle
        };
        if let Err(e) = self.send(kind, handle, offset, len, payload) {
            // Part of a request may be on the wire: the stream is lost.
            inner.kill(e.detail());
            let mut st = lock(&inner.state);
            if let Some(p) = st.pending.get_mut(&handle) {
                p.abandoned = true;
                p.buf = None;
            }
            return Err(e);
        }
        let mut st = lock(&inner.state);
        let mut seen = None;
        loop {
            let state = &mut *st;
            let p = state
                .pending
                .get_mut(&handle)
                .expect("only its caller removes a request");
            if !p.filling {
                if p.done || state.dead.is_some() {
                    let p = state.pending.remove(&handle).expect("present");
                    inner.room.notify_all();
                    if let Some(e) = p.error {
                        return Err(e);
                    }
                    if !p.done {
                        if inner.waits.cancelled() {
                            return Err(interrupted(
                                name,
                                &format!("waiting for the reply to a {}", p.describe()),
                            ));
                        }
                        let why = state.dead.as_deref().unwrap_or("connection lost");
                        return Err(lost(name, why));
                    }
                    return Ok(p.chunks);
                }
                if cancel_over(&inner.waits, &mut seen) {
                    // The entry stays, so its late reply is still
                    // recognised (and discarded): the buffer is forgotten.
                    p.buf = None;
                    p.abandoned = true;
                    return Err(interrupted(
                        name,
                        &format!("waiting for the reply to a {}", p.describe()),
                    ));
                }
            }
            st = wake
                .wait_timeout(st, POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Writes one request to the socket.
    fn send(&self, kind: u16, handle: u64, offset: u64, len: u32, payload: &[u8]) -> Result<()> {
        let inner = &*self.inner;
        let name = inner.name.as_str();
        let waits = inner.waits;
        let mut seen = None;
        let mut idle = |stalled: Duration| {
            if cancel_over(&waits, &mut seen) {
                return Err(interrupted(name, "sending a request"));
            }
            if stalled >= waits.timeout {
                return Err(protocol(
                    name,
                    format!(
                        "the server took no data for {} s",
                        waits.timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(())
        };
        let mut w = lock(&self.writer);
        w.write_full(&request_header(kind, handle, offset, len), name, &mut idle)?;
        if !payload.is_empty() {
            w.write_full(payload, name, &mut idle)?;
        }
        Ok(())
    }
}

impl Inner {
    /// Marks the connection unusable for `why`, wakes every waiter and
    /// shuts the socket (which ends the reader).
    fn kill(&self, why: String) {
        let mut st = lock(&self.state);
        if st.dead.is_none() {
            st.dead = Some(if st.closing {
                "the connection is closed".to_string()
            } else {
                why
            });
        }
        for p in st.pending.values() {
            p.wake.notify_all();
        }
        self.room.notify_all();
        drop(st);
        self.shut.shutdown();
    }

    /// A summary of what is pending, for a timeout message.
    fn pending_text(st: &State) -> String {
        let mut all: Vec<&Pending> = st.pending.values().collect();
        all.sort_by_key(|p| p.offset);
        let mut text: Vec<String> = all.iter().take(3).map(|p| p.describe()).collect();
        if all.len() > 3 {
            text.push(format!("{} more", all.len() - 3));
        }
        text.join(", ")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let inner = &*self.inner;
        let live = {
            let mut st = lock(&inner.state);
            st.closing = true;
            st.dead.is_none()
        };
        if live {
            // A polite goodbye, given up at once if the server takes nothing.
            let name = inner.name.as_str();
            let mut w = lock(&self.writer);
            let _ = w.write_full(&request_header(CMD_DISC, 0, 0, 0), name, &mut |_| {
                Err(protocol(name, "not taken"))
            });
        }
        inner.kill("the connection is closed".into());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The reader thread: reads replies until the connection dies or closes.
fn read_replies(inner: &Inner, stream: &mut Stream) -> Result<()> {
    let name = inner.name.as_str();
    let timeout = inner.waits.timeout;
    // Called whenever a read has waited a poll: ends the read when the
    // connection closes, or when requests are pending and nothing arrived
    // for the exchange timeout. An idle connection waits as long as it must.
    let mut idle = |since_byte: Duration| -> Result<()> {
        let st = lock(&inner.state);
        if st.closing || st.dead.is_some() {
            return Err(protocol(name, "the connection is closed"));
        }
        if st.pending.is_empty() {
            return Ok(());
        }
        // A reply stopped mid-way, perhaps into a caller's buffer: once a
        // cancel has had its grace, the connection is given up.
        if inner.waits.cancelled() && since_byte >= CANCEL_GRACE {
            return Err(interrupted(name, "waiting for a reply"));
        }
        if since_byte.min(st.busy_since.elapsed()) >= timeout {
            return Err(protocol(
                name,
                format!(
                    "no answer within {} s (pending: {})",
                    timeout.as_secs_f64(),
                    Inner::pending_text(&st)
                ),
            ));
        }
        Ok(())
    };
    loop {
        let mut magic = [0u8; 4];
        stream.read_full(&mut magic, name, &mut idle)?;
        match be32(&magic) {
            SIMPLE_REPLY_MAGIC => {
                let mut h = [0u8; 12];
                stream.read_full(&mut h, name, &mut idle)?;
                let (error, handle) = (be32(&h), be64(&h[4..]));
                let (kind, offset, len) = {
                    let st = lock(&inner.state);
                    let p = st
                        .pending
                        .get(&handle)
                        .ok_or_else(|| protocol(name, "a reply to a request not sent"))?;
                    (p.kind, p.offset, p.len)
                };
                if error != 0 {
                    complete(inner, handle, Some(server_error(name, error, "")));
                    continue;
                }
                if kind == CMD_READ {
                    deliver(inner, stream, handle, offset, len as usize, &mut idle)?;
                }
                complete(inner, handle, None);
            }
            STRUCTURED_REPLY_MAGIC => {
                let mut h = [0u8; 16];
                stream.read_full(&mut h, name, &mut idle)?;
                let (flags, kind, handle, len) = (
                    be16(&h),
                    be16(&h[2..]),
                    be64(&h[4..]),
                    be32(&h[12..]) as usize,
                );
                let request = lock(&inner.state)
                    .pending
                    .get(&handle)
                    .map(|p| p.kind)
                    .ok_or_else(|| protocol(name, "a reply to a request not sent"))?;
                if len > MAX_REQUEST + 64 {
                    return Err(protocol(name, format!("a reply chunk of {len} bytes")));
                }
                if kind == REPLY_OFFSET_DATA && request == CMD_READ && len >= 8 {
                    let mut at = [0u8; 8];
                    stream.read_full(&mut at, name, &mut idle)?;
                    deliver(inner, stream, handle, be64(&at), len - 8, &mut idle)?;
                } else {
                    let mut payload = vec![0u8; len];
                    stream.read_full(&mut payload, name, &mut idle)?;
                    chunk(inner, handle, request, kind, payload)?;
                }
                if flags & REPLY_FLAG_DONE != 0 {
                    complete(inner, handle, None);
                }
            }
            _ => return Err(protocol(name, "a reply with a bad magic number")),
        }
    }
}

/// Marks request `handle` answered (with `error`, unless an earlier one
/// was recorded) and wakes its caller.
fn complete(inner: &Inner, handle: u64, error: Option<Error>) {
    let mut st = lock(&inner.state);
    let Some(p) = st.pending.get_mut(&handle) else {
        return;
    };
    p.done = true;
    if p.error.is_none() {
        p.error = error;
    }
    if p.abandoned {
        // Abandoned by its caller: nobody will remove it.
        st.pending.remove(&handle);
        inner.room.notify_all();
    } else {
        p.wake.notify_all();
    }
}

/// Reads `len` bytes of data for export offset `at` of request `handle`
/// straight into its caller's buffer (or discards them when the caller
/// gave up).
fn deliver(
    inner: &Inner,
    stream: &mut Stream,
    handle: u64,
    at: u64,
    len: usize,
    idle: &mut dyn FnMut(Duration) -> Result<()>,
) -> Result<()> {
    let name = inner.name.as_str();
    let target = {
        let mut st = lock(&inner.state);
        let p = st
            .pending
            .get_mut(&handle)
            .ok_or_else(|| protocol(name, "a reply to a request not sent"))?;
        if p.kind != CMD_READ {
            return Err(protocol(
                name,
                "read data in reply to a request that reads nothing",
            ));
        }
        match &p.buf {
            Some(b) => {
                let place = within(at, len, b.base, b.len)
                    .ok_or_else(|| protocol(name, "read data outside the request"))?;
                p.filling = true;
                // SAFETY: `place` lies inside the caller's buffer, which
                // stays borrowed while `filling` is set (see `ReadBuf`).
                Some(unsafe { std::slice::from_raw_parts_mut(b.ptr.add(place.start), len) })
            }
            None => None,
        }
    };
    match target {
        Some(slice) => {
            let r = stream.read_full(slice, name, idle);
            let mut st = lock(&inner.state);
            if let Some(p) = st.pending.get_mut(&handle) {
                p.filling = false;
                p.wake.notify_all();
            }
            r
        }
        None => {
            let mut scratch = vec![0u8; len.min(1 << 20)];
            let mut left = len;
            while left > 0 {
                let n = left.min(scratch.len());
                stream.read_full(&mut scratch[..n], name, idle)?;
                left -= n;
            }
            Ok(())
        }
    }
}

/// One structured chunk other than read data, for request `handle` (of
/// command `request`).
fn chunk(inner: &Inner, handle: u64, request: u16, kind: u16, payload: Vec<u8>) -> Result<()> {
    let name = inner.name.as_str();
    let mut st = lock(&inner.state);
    let p = st
        .pending
        .get_mut(&handle)
        .ok_or_else(|| protocol(name, "a reply to a request not sent"))?;
    if kind & REPLY_ERROR_BIT != 0 {
        if payload.len() < 6 {
            return Err(protocol(name, "a malformed error chunk"));
        }
        let msg_len = (be16(&payload[4..]) as usize).min(payload.len() - 6);
        let msg = String::from_utf8_lossy(&payload[6..6 + msg_len]).into_owned();
        if p.error.is_none() {
            p.error = Some(server_error(name, be32(&payload), &msg));
        }
        return Ok(());
    }
    match kind {
        REPLY_NONE => Ok(()),
        REPLY_OFFSET_HOLE if request == CMD_READ && payload.len() >= 12 => {
            let (at, len) = (be64(&payload), be32(&payload[8..]) as usize);
            if let Some(b) = &p.buf {
                let place = within(at, len, b.base, b.len)
                    .ok_or_else(|| protocol(name, "a hole outside the request"))?;
                // SAFETY: as in `deliver`; the caller cannot leave while we
                // hold the state lock, under which this runs.
                unsafe { std::ptr::write_bytes(b.ptr.add(place.start), 0, len) };
            }
            Ok(())
        }
        REPLY_OFFSET_DATA | REPLY_OFFSET_HOLE => {
            Err(protocol(name, "an unexpected reply to a read"))
        }
        _ => {
            p.chunks.push((kind, payload));
            Ok(())
        }
    }
}
