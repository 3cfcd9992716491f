//! Images over HTTP(S) as a read-only [`Storage`]: ranged GETs on a pool
//! of keep-alive connections (ureq, rustls), the redirect resolved once at
//! open and the final URL reused, each range retried with backoff on
//! transient failures, every wait ended by the cancel flag.
//!
//! A server that ignores `Range` (answers 200 with the whole file) is
//! refused at open: reading an image through its metadata needs ranges.
//! Every failure is one line naming the URL (the storage's path), the
//! byte range and what the server said.

mod fetch;
mod tls;

use super::{HostExtent, Storage};
use crate::error::{Error, ErrorKind, Result};
use fetch::{Attempt, Headers, Probe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Whether `name` is an `http://` or `https://` URL.
pub fn is_http_url(name: &str) -> bool {
    let lower = |n: usize| name.get(..n).map(str::to_ascii_lowercase);
    lower(7).as_deref() == Some("http://") || lower(8).as_deref() == Some("https://")
}

/// The name of the threads that run HTTP exchanges: a panic there is
/// turned into an error of the exchange, so the binary's panic hook keeps
/// quiet about it (see `main.rs`).
pub const REQUEST_THREAD: &str = "http-request";

/// Connections to one server at once by default: enough to fill a WAN
/// link that one connection cannot (8 cut a CDI import fivefold).
pub const DEFAULT_CONNECTIONS: usize = 8;
/// Retries of a range by default before the operation fails (about 20 s
/// of backoff in all).
pub const DEFAULT_RETRIES: u32 = 8;
/// Retries at open when no connection can be made at all (about 0.6 s):
/// a wrong URL or a server that is not up should not keep a command
/// waiting the 20 s a transfer's retries may take. Once a server has
/// answered, its ranges get the full [`HttpOptions::retries`].
pub const OPEN_UNREACHABLE_RETRIES: u32 = 2;
/// How long a connect or a read may make no progress, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads smaller than this are rounded up to this much, aligned, and kept
/// for the next small reads (image metadata comes in small reads).
pub const DEFAULT_READAHEAD: u64 = 256 << 10;
/// The readahead when the server is far (see [`FAR_SERVER`]): a copy of an
/// image whose data comes in short runs then takes a quarter of the round
/// trips (measured: 20 s → 10 s over 20 ms round trips, 2 GiB qcow2).
pub const FAR_READAHEAD: u64 = 1 << 20;
/// A server whose first answer (a connection and a request: two round
/// trips) takes this long is far: round trips, not bandwidth, bound what
/// is read from it. Loaded machines answer from 127.0.0.1 in over 10 ms.
pub const FAR_SERVER: Duration = Duration::from_millis(20);
/// The bytes of readahead blocks kept (at least 8 blocks, at most 32).
const CACHE_BYTES: u64 = 8 << 20;
/// The largest range one request asks for; longer reads are split and
/// their pieces fetched on several connections at once.
const PIECE: usize = 4 << 20;

/// How images over HTTP(S) are fetched: from the node's options
/// (`json:{"file.driver":"https",...}`) over defaults that the
/// `QIMG_HTTP_CONNECTIONS`, `QIMG_HTTP_RETRIES`, `QIMG_HTTP_TIMEOUT`
/// (seconds) and `QIMG_HTTP_CA_FILE` environment variables may change.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Requests in flight at once, each on its own connection.
    pub connections: usize,
    /// Retries of one request on a transient failure.
    pub retries: u32,
    /// How long a connect or a read may make no progress.
    pub timeout: Duration,
    /// Small reads are rounded up to this many bytes (0: no readahead);
    /// `None`: [`DEFAULT_READAHEAD`], or [`FAR_READAHEAD`] for a far server.
    pub readahead: Option<u64>,
    /// Whether the server's certificate is verified (`sslverify`).
    pub verify: bool,
    /// PEM CA certificates trusted beside the system's.
    pub ca_file: Option<PathBuf>,
    /// The `Cookie` header to send (`cookie`).
    pub cookie: Option<String>,
    /// Basic authentication (`username`, and the password of `password-secret`).
    pub credentials: Option<(String, String)>,
    /// Ends every wait (a request, a backoff) soon after it is set.
    pub cancel: Option<&'static AtomicBool>,
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connections: env("QIMG_HTTP_CONNECTIONS")
                .filter(|n| (1..=64).contains(n))
                .unwrap_or(DEFAULT_CONNECTIONS),
            retries: env("QIMG_HTTP_RETRIES")
                .filter(|n| *n <= 100)
                .unwrap_or(DEFAULT_RETRIES),
            timeout: env::<f64>("QIMG_HTTP_TIMEOUT")
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64),
            readahead: None,
            verify: true,
            ca_file: std::env::var_os("QIMG_HTTP_CA_FILE").map(PathBuf::from),
            cookie: None,
            credentials: None,
            cancel: None,
        }
    }
}

/// A counting semaphore: at most `connections` requests at once.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An image over HTTP(S), read-only.
pub struct HttpStorage {
    /// The URL as given (messages).
    name: PathBuf,
    /// The name of the node (`info`, `map`): the URL, or the `json:`
    /// name of a node with options.
    node_name: PathBuf,
    /// The URL requests go to: the redirect's target, credentials removed.
    url: String,
    agent: ureq::Agent,
    headers: Headers,
    size: u64,
    https: bool,
    options: HttpOptions,
    slots: Slots,
    /// Readahead blocks: (start, bytes), the newest last.
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
    /// The readahead block size in use (the options', or chosen by how
    /// far the server is).
    readahead: u64,
}

impl std::fmt::Debug for HttpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStorage")
            .field("url", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

/// Redirects followed at open at most.
const MAX_REDIRECTS: usize = 10;

impl HttpStorage {
    /// Opens the image at `url` with `options`: one request that finds its
    /// size, proves the server serves ranges, and follows redirects to the
    /// URL every later request goes to.
    pub fn open(url: &str, options: &HttpOptions) -> Result<HttpStorage> {
        let at = |e: Error| e.with_path(url);
        let mut parsed = url::Url::parse(url)
            .map_err(|e| Error::argument(format!("not a valid URL: {e}")))
            .map_err(at)?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(at(Error::argument(format!(
                    "unknown URL scheme '{other}' (http and https are read)"
                ))))
            }
        };
        let mut headers = Headers::default();
        let mut credentials = options.credentials.clone();
        if !parsed.username().is_empty() && credentials.is_none() {
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            credentials = Some((
                decode(parsed.username()),
                decode(parsed.password().unwrap_or("")),
            ));
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        if let Some((user, password)) = &credentials {
            use base64::Engine;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers
                .0
                .push(("Authorization".into(), format!("Basic {token}")));
        }
        if let Some(c) = &options.cookie {
            headers.0.push(("Cookie".into(), c.clone()));
        }
        let connections = options.connections.max(1);
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls::client_config(options.verify, options.ca_file.as_deref()).map_err(at)?)
            .timeout_connect(options.timeout)
            .timeout_read(options.timeout)
            .timeout_write(options.timeout)
            .redirects(0)
            .max_idle_connections(connections)
            .max_idle_connections_per_host(connections)
            .user_agent(concat!("qimg/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut storage = HttpStorage {
            name: PathBuf::from(url),
            node_name: PathBuf::from(url),
            url: parsed.to_string(),
            agent,
            headers,
            size: 0,
            https,
            options: options.clone(),
            slots: Slots {
                free: Mutex::new(connections),
                freed: Condvar::new(),
            },
            cache: Mutex::new(Vec::new()),
            readahead: options.readahead.unwrap_or(DEFAULT_READAHEAD),
        };
        for _ in 0..=MAX_REDIRECTS {
            let (agent, target, headers) = (
                storage.agent.clone(),
                storage.url.clone(),
                storage.headers.clone(),
            );
            let asked = std::time::Instant::now();
            let probe = storage.retrying("bytes 0-0", OPEN_UNREACHABLE_RETRIES, move || {
                fetch::probe(&agent, &target, &headers)
            })?;
            match probe {
                Probe::Size(size) => {
                    storage.size = size;
                    if options.readahead.is_none() && asked.elapsed() >= FAR_SERVER {
                        storage.readahead = FAR_READAHEAD;
                    }
                    return Ok(storage);
                }
                Probe::Redirect(to) => {
                    if !is_http_url(&to) {
                        return Err(
                            storage.error(format!("redirected to '{to}', which is not HTTP(S)"))
                        );
                    }
                    storage.url = to;
                }
            }
        }
        Err(storage.error(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The same storage known by `name` (a node's `json:` name).
    pub fn named(mut self, name: PathBuf) -> HttpStorage {
        self.node_name = name;
        self
    }

    /// The URL requests go to (the redirect's target when there was one).
    pub fn resolved_url(&self) -> &str {
        &self.url
    }

    fn error(&self, message: String) -> Error {
        Error::new(ErrorKind::Io, message).with_path(&self.name)
    }

    fn interrupted(&self, range: &str) -> Error {
        Error::new(
            ErrorKind::Interrupted,
            format!("{range}: interrupted while waiting for the server"),
        )
        .with_path(&self.name)
    }

    fn cancelled(&self) -> bool {
        self.options
            .cancel
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }

    /// Sleeps `d`, waking every 50 ms to see whether the wait is cancelled.
    fn pause(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
        !self.cancelled()
    }

    /// Runs `job` (one exchange) on a thread of its own
    /// ([`REQUEST_THREAD`]), so that a cancel flag can end the wait for it
    /// (`None` when it did) and a panic of the HTTP client on a hostile
    /// response is contained: ureq 2.12 panics on some malformed header
    /// lines (`Content-Length` with no colon, ending in a bare LF), and
    /// that is one failed exchange, not a crash.
    fn cancellable<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Attempt<T> + Send + 'static,
    ) -> Option<Attempt<T>> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        let cancel = self.options.cancel.unwrap_or(&NEVER);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(REQUEST_THREAD.into())
            .spawn(move || {
                let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("no reason given");
                        Attempt::Final(format!(
                            "the HTTP client could not parse the server's response ({why})"
                        ))
                    });
                let _ = tx.send(attempt);
            });
        if spawned.is_err() {
            return Some(Attempt::Transient(
                "could not start a request thread".into(),
            ));
        }
        loop {
            if cancel.load(Ordering::SeqCst) {
                // The thread ends with its request (bounded by the timeout).
                return None;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => return Some(a),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Attempt::Transient("the request thread died".into()))
                }
            }
        }
    }

    /// Runs `job` until it is done, retrying transient failures with
    /// backoff (no more than `unreachable` times while no connection can
    /// be made); `range` names what is asked in the error.
    fn retrying<T: Send + 'static>(
        &self,
        range: &str,
        unreachable: u32,
        job: impl Fn() -> Attempt<T> + Send + Sync + Clone + 'static,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            if self.cancelled() {
                return Err(self.interrupted(range));
            }
            let last = match self.cancellable(job.clone()) {
                None => return Err(self.interrupted(range)),
                Some(Attempt::Done(v)) => return Ok(v),
                Some(Attempt::Final(why)) => return Err(self.error(format!("{range}: {why}"))),
                Some(Attempt::Transient(why)) => (why, self.options.retries),
                Some(Attempt::Unreachable(why)) => (why, self.options.retries.min(unreachable)),
            };
            let (last, limit) = last;
            if tries >= limit {
                let after = match tries {
                    0 => String::new(),
                    1 => " (after 1 retry)".to_string(),
                    n => format!(" (after {n} retries)"),
                };
                return Err(self.error(format!("{range}: {last}{after}")));
            }
            if !self.pause(fetch::backoff(tries)) {
                return Err(self.interrupted(range));
            }
            tries += 1;
        }
    }

    /// Takes one of the connection slots, waiting for one to be free.
    fn slot(&self) -> Result<Slot<'_>> {
        let mut free = lock(&self.slots.free);
        while *free == 0 {
            if self.cancelled() {
                return Err(self.interrupted("waiting for a connection"));
            }
            free = self
                .slots
                .freed
                .wait_timeout(free, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Ok(Slot(&self.slots))
    }

    /// Fetches `[start, start + len)`, all inside the resource.
    fn fetch(&self, start: u64, len: usize) -> Result<Vec<u8>> {
        let _slot = self.slot()?;
        let (agent, url, headers) = (self.agent.clone(), self.url.clone(), self.headers.clone());
        let range = format!("bytes {start}-{}", start + len as u64 - 1);
        self.retrying(&range, u32::MAX, move || {
            fetch::range(&agent, &url, &headers, start, len)
        })
    }

    /// Fills `buf` (inside the resource) from `offset`, in pieces fetched
    /// at once on several connections.
    fn read_direct(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if buf.len() <= PIECE {
            let data = self.fetch(offset, buf.len())?;
            buf.copy_from_slice(&data);
            return Ok(());
        }
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for (i, piece) in buf.chunks_mut(PIECE).enumerate() {
                let failed = &failed;
                s.spawn(move || {
                    if lock(failed).is_some() {
                        return;
                    }
                    let at = offset + (i * PIECE) as u64;
                    match self.fetch(at, piece.len()) {
                        Ok(data) => piece.copy_from_slice(&data),
                        Err(e) => {
                            lock(failed).get_or_insert(e);
                        }
                    }
                });
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The readahead block starting at `start`, from the cache or fetched.
    fn block(&self, start: u64) -> Result<Arc<Vec<u8>>> {
        if let Some((_, b)) = lock(&self.cache).iter().find(|(s, _)| *s == start) {
            return Ok(b.clone());
        }
        let len = self.readahead.min(self.size - start) as usize;
        let block = Arc::new(self.fetch(start, len)?);
        let mut cache = lock(&self.cache);
        if !cache.iter().any(|(s, _)| *s == start) {
            let kept = (CACHE_BYTES / self.readahead.max(1)).clamp(8, 32) as usize;
            if cache.len() >= kept {
                cache.remove(0);
            }
            cache.push((start, block.clone()));
        }
        Ok(block)
    }
}

impl Storage for HttpStorage {
    fn path(&self) -> &Path {
        &self.node_name
    }

    fn protocol(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    fn requests_in_flight(&self) -> usize {
        self.options.connections.max(1)
    }

    fn len(&self) -> Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Past the end reads zeros, as for a file.
        let inside = (self.size.saturating_sub(offset) as usize).min(buf.len());
        buf[inside..].fill(0);
        let buf = &mut buf[..inside];
        if buf.is_empty() {
            return Ok(());
        }
        let ra = self.readahead;
        if ra == 0 || buf.len() as u64 >= ra {
            return self.read_direct(buf, offset);
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let start = at - at % ra;
            let block = self.block(start)?;
            let from = (at - start) as usize;
            let n = (block.len() - from).min(buf.len() - done);
            if n == 0 {
                return Err(self.error(format!("bytes {at}-: no data past the end of a block")));
            }
            buf[done..done + n].copy_from_slice(&block[from..from + n]);
            done += n;
        }
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        Ok(HostExtent::without_holes(self.size, offset))
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(read_only(&self.name))
    }

    fn set_len(&self, len: u64) -> Result<()> {
        if len == self.size {
            return Ok(());
        }
        Err(read_only(&self.name))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn allocate(&self, _offset: u64, _len: u64) -> Result<()> {
        Err(read_only(&self.name))
    }

    fn zero_range(&self, _offset: u64, _len: u64) -> Result<()> {
        Err(read_only(&self.name))
    }
}

/// The error for a write to an image over HTTP(S).
pub fn read_only(url: &Path) -> Error {
    Error::unsupported("images over HTTP(S) are read-only").with_path(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_by_scheme() {
        assert!(is_http_url("http://h/x.qcow2"));
        assert!(is_http_url("HTTPS://h/x"));
        assert!(!is_http_url("http:/x"));
        assert!(!is_http_url("nbd://h/x"));
        assert!(!is_http_url("httpx"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(fetch::backoff(0), Duration::from_millis(200));
        assert_eq!(fetch::backoff(1), Duration::from_millis(400));
        assert_eq!(fetch::backoff(30), Duration::from_secs(5));
    }
}
