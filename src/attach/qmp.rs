//! A small synchronous QMP client: connect (unix socket or `tcp:HOST:PORT`),
//! negotiate capabilities, run commands with ids, and queue the events
//! that arrive while waiting for replies. Every wait has a timeout, and a
//! VMM that goes away is an error, never a hang. Unknown fields are
//! ignored, so a newer QEMU does not break it.

use crate::error::{Error, ErrorKind, Result};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long a connection attempt and each reply may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The byte stream to the monitor.
#[derive(Debug)]
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
        }
    }

    fn try_clone(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }
}

impl std::io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// An error QEMU returned for a command (`{"error": {"class", "desc"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpError {
    /// The error class (GenericError, CommandNotFound, DeviceNotActive, ...).
    pub class: String,
    /// QEMU's message.
    pub desc: String,
}

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    address: String,
    reader: BufReader<Conn>,
    writer: Conn,
    events: VecDeque<Value>,
    /// The start of a line a timeout interrupted.
    partial: String,
    next_id: u64,
    timeout: Duration,
}

fn vmm_error(address: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("QMP {address}: {message}"))
}

impl Qmp {
    /// Connects to `address` (a unix socket path, or `tcp:HOST:PORT`),
    /// reads the greeting and negotiates capabilities. `timeout` bounds the
    /// connection and every later reply.
    pub fn connect(address: &str, timeout: Duration) -> Result<Qmp> {
        let fail = |e: std::io::Error| vmm_error(address, format!("cannot connect: {e}"));
        let conn = match address.strip_prefix("tcp:") {
            Some(hostport) => {
                let addr = hostport
                    .to_socket_addrs()
                    .map_err(fail)?
                    .next()
                    .ok_or_else(|| vmm_error(address, "the address resolves to nothing"))?;
                Conn::Tcp(TcpStream::connect_timeout(&addr, timeout).map_err(fail)?)
            }
            None => Conn::Unix(UnixStream::connect(address).map_err(fail)?),
        };
        let writer = conn.try_clone().map_err(fail)?;
        let mut qmp = Qmp {
            address: address.to_string(),
            reader: BufReader::new(conn),
            writer,
            events: VecDeque::new(),
            partial: String::new(),
            next_id: 0,
            timeout,
        };
        let greeting = qmp.read_message(Instant::now() + timeout)?.ok_or_else(|| {
            vmm_error(
                address,
                format!(
                    "no reply within {} s (a QMP monitor serves one client at a time: is another one using it?)",
                    timeout.as_secs()
                ),
            )
        })?;
        if greeting.get("QMP").is_none() {
            return Err(vmm_error(
                address,
                "this is not a QMP monitor (no greeting)",
            ));
        }
        qmp.execute("qmp_capabilities", None)
            .map_err(|e| vmm_error(address, format!("capability negotiation failed: {e}")))?;
        Ok(qmp)
    }

    /// The VMM's working directory, when it runs on this host behind a
    /// unix socket (its pid from `SO_PEERCRED`): QEMU resolves relative
    /// file names against it.
    pub fn peer_cwd(&self) -> Option<std::path::PathBuf> {
        let Conn::Unix(sock) = &self.writer else {
            return None;
        };
        use std::os::unix::io::AsRawFd;
        // SAFETY: ucred is plain data; getsockopt fills at most `len` bytes of it.
        let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                &mut cred as *mut libc::ucred as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 || cred.pid <= 0 {
            return None;
        }
        std::fs::read_link(format!("/proc/{}/cwd", cred.pid)).ok()
    }

    /// The address this session is connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads one message, or `None` once `deadline` has passed.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| vmm_error(&self.address, e))?;
            // What a timeout interrupts stays in `partial` for the next call.
            match self.reader.read_line(&mut self.partial) {
                Ok(0) => {
                    return Err(vmm_error(&self.address, "the VMM closed the connection"));
                }
                Ok(_) if self.partial.ends_with('\n') => {
                    let line = std::mem::take(&mut self.partial);
                    let text = line.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return serde_json::from_str(text).map(Some).map_err(|e| {
                        vmm_error(
                            &self.address,
                            format!("unreadable message ({e}): {text:.200}"),
                        )
                    });
                }
                Ok(_) => {
                    return Err(vmm_error(&self.address, "the VMM closed the connection"));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue; // the deadline check above decides
                }
                Err(e) => return Err(vmm_error(&self.address, e)),
            }
        }
    }

    /// A message that must arrive by `deadline`.
    fn reply_by(&mut self, deadline: Instant) -> Result<Value> {
        self.read_message(deadline)?.ok_or_else(|| {
            vmm_error(
                &self.address,
                format!("no reply within {} s", self.timeout.as_secs()),
            )
        })
    }

    /// Runs `command` with `arguments` and returns its `return` value, or
    /// QEMU's error as [`QmpError`] inside the error's message.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.try_execute(command, arguments)?
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.desc))
    }

    /// Runs `command`; QEMU's own refusal is the inner error.
    pub fn try_execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<std::result::Result<Value, QmpError>> {
        self.next_id += 1;
        let id = format!("qimg-{}", self.next_id);
        let mut request = Map::new();
        request.insert("execute".into(), json!(command));
        if let Some(a) = arguments {
            request.insert("arguments".into(), a);
        }
        request.insert("id".into(), json!(id));
        let text = Value::Object(request).to_string();
        self.writer
            .write_all(text.as_bytes())
            .and_then(|_| self.writer.flush())
            .map_err(|e| vmm_error(&self.address, format!("cannot send {command}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.reply_by(deadline)?;
            if message.get("event").is_some() {
                self.events.push_back(message);
                continue;
            }
            if message.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                continue; // a reply to someone else's command
            }
            if let Some(error) = message.get("error") {
                let field = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                return Ok(Err(QmpError {
                    class: field("class"),
                    desc: field("desc"),
                }));
            }
            return Ok(Ok(message.get("return").cloned().unwrap_or(Value::Null)));
        }
    }

    /// The next event: a queued one, or one that arrives within `wait`
    /// (`None` when none does).
    pub fn next_event(&mut self, wait: Duration) -> Result<Option<Value>> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + wait;
        while let Some(m) = self.read_message(deadline)? {
            if m.get("event").is_some() {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Qmp;
    use serde_json::Value;
    use std::io::{BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    /// A fake monitor on a fresh socket: sends `greeting`, then answers
    /// each request with `reply(request)` (several messages allowed,
    /// `\r\n` separated as QEMU sends them), or hangs up on `None`.
    fn fake(
        greeting: &'static str,
        reply: fn(&Value) -> Option<String>,
    ) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut writer = conn.try_clone().unwrap();
            writer.write_all(greeting.as_bytes()).unwrap();
            let reader = BufReader::new(conn);
            // QEMU needs no separator between commands; qimg sends none,
            // so split the stream on the end of each JSON object.
            let mut de = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
            while let Some(Ok(request)) = de.next() {
                let Some(answer) = reply(&request) else {
                    break;
                };
                if writer.write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
        });
        (dir, path.display().to_string())
    }

    fn ok_with_extras(request: &Value) -> Option<String> {
        let id = &request["id"];
        Some(match request["execute"].as_str().unwrap() {
            "qmp_capabilities" => format!("{{\"return\": {{}}, \"id\": {id}}}\r\n"),
            "query-jobs" => format!(
                "{{\"timestamp\": {{\"seconds\": 1}}, \"event\": \"JOB_STATUS_CHANGE\", \"data\": {{\"id\": \"j\", \"status\": \"running\"}}}}\r\n\
                 {{\"return\": [{{\"id\": \"j\", \"status\": \"some-new-status\", \"future-field\": 7}}], \"id\": {id}, \"extra\": true}}\r\n"
            ),
            _ => format!(
                "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"no such thing\"}}, \"id\": {id}}}\r\n"
            ),
        })
    }

    #[test]
    fn replies_events_errors_and_unknown_fields() {
        let (_dir, path) = fake(
            "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"], \"new\": 1}}\r\n",
            ok_with_extras,
        );
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let jobs = qmp.execute("query-jobs", None).unwrap();
        assert_eq!(jobs[0]["status"], "some-new-status");
        // The event that came before the reply was kept.
        let event = qmp.next_event(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(event["event"], "JOB_STATUS_CHANGE");
        assert!(qmp.next_event(Duration::from_millis(10)).unwrap().is_none());
        let refused = qmp.try_execute("block-stream", None).unwrap().unwrap_err();
        assert_eq!(refused.desc, "no such thing");
        assert_eq!(refused.class, "GenericError");
    }

    #[test]
    fn a_peer_that_is_not_qmp_or_goes_away_is_an_error() {
        let (_d1, path) = fake("SSH-2.0-OpenSSH\r\n", ok_with_extras);
        let err = Qmp::connect(&path, Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("unreadable message"), "{err}");
        let (_d2, path) = fake("{\"hello\": 1}\r\n", ok_with_extras);
        let err = Qmp::connect(&path, Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("not a QMP monitor"), "{err}");
        fn hang_up(_: &Value) -> Option<String> {
            None
        }
        let (_d3, path) = fake("{\"QMP\": {}}\r\n", hang_up);
        let err = Qmp::connect(&path, Duration::from_secs(2)).unwrap_err();
        assert!(err.to_string().contains("closed the connection"), "{err}");
    }
}
