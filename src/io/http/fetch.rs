//! One HTTP exchange at a time, as the storage needs them: the opening
//! probe (a one-byte range that gives the size and proves the server
//! serves ranges, following redirects once) and ranged reads, each
//! classified as done, worth retrying, or final.

use std::io::Read;
use std::time::Duration;

/// How one exchange ended.
pub(super) enum Attempt<T> {
    /// It gave what was asked.
    Done(T),
    /// It failed in a way a later try may not (reset, 5xx, timeout,
    /// short body): the words for the failure.
    Transient(String),
    /// It failed for good (4xx, no ranges, a certificate that does not
    /// verify): the words for the failure.
    Final(String),
    /// No connection could be made (refused, no such host): transient,
    /// but at open more likely a wrong URL or a server that is not up
    /// than a hiccup (see [`super::OPEN_UNREACHABLE_RETRIES`]).
    Unreachable(String),
}

/// What the probe found.
pub(super) enum Probe {
    /// The resource is `size` bytes and the server answers ranges.
    Size(u64),
    /// The server redirects to this (absolute) URL.
    Redirect(String),
}

/// The headers every request carries (authorization, cookies).
#[derive(Debug, Clone, Default)]
pub(super) struct Headers(pub Vec<(String, String)>);

fn request(agent: &ureq::Agent, url: &str, headers: &Headers, range: &str) -> ureq::Request {
    let mut req = agent.get(url).set("Range", range);
    for (k, v) in &headers.0 {
        req = req.set(k, v);
    }
    req
}

/// The words for a failed exchange and whether it may be retried.
fn failure<T>(e: ureq::Error) -> Attempt<T> {
    match e {
        ureq::Error::Status(code, resp) => {
            let text = format!("HTTP {code} {}", resp.status_text());
            // Read what little the error body is, so the connection is reused.
            let _ = resp
                .into_reader()
                .take(64 << 10)
                .read_to_end(&mut Vec::new());
            if code >= 500 || code == 408 || code == 429 {
                Attempt::Transient(text)
            } else {
                Attempt::Final(text)
            }
        }
        ureq::Error::Transport(t) => {
            let mut text = match t.message() {
                Some(m) => format!("{}: {m}", t.kind()),
                None => t.kind().to_string(),
            };
            let mut source = std::error::Error::source(&t);
            while let Some(s) = source {
                let words = s.to_string();
                // People read "Connection refused", not "(os error 111)".
                let words = match words.rfind(" (os error ") {
                    Some(i) if words.ends_with(')') => words[..i].to_string(),
                    _ => words,
                };
                text = format!("{text}: {words}");
                source = s.source();
            }
            let certificate = text.contains("certificate") || text.contains("Certificate");
            match t.kind() {
                ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme
                | ureq::ErrorKind::InsecureRequestHttpsOnly => Attempt::Final(text),
                _ if certificate => Attempt::Final(text),
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                    Attempt::Unreachable(text)
                }
                _ => Attempt::Transient(text),
            }
        }
    }
}

/// The total length in a `Content-Range` value (`bytes 0-0/1234`,
/// `bytes */1234`), when it is known.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

/// Asks `url` for its first byte: its size if it answers with that
/// range, where to go if it redirects, and a final failure if it ignores
/// ranges.
pub(super) fn probe(agent: &ureq::Agent, url: &str, headers: &Headers) -> Attempt<Probe> {
    let resp = match request(agent, url, headers, "bytes=0-0").call() {
        Ok(r) => r,
        // An empty resource has no first byte.
        Err(ureq::Error::Status(416, resp)) => {
            return match resp.header("Content-Range").and_then(total_of) {
                Some(0) => Attempt::Done(Probe::Size(0)),
                _ => Attempt::Final("HTTP 416 Range Not Satisfiable for bytes 0-0".into()),
            }
        }
        Err(e) => return failure(e),
    };
    let status = resp.status();
    if (300..400).contains(&status) {
        let Some(location) = resp.header("Location") else {
            return Attempt::Final(format!("HTTP {status} redirect without a Location"));
        };
        return match url::Url::parse(url).and_then(|base| base.join(location)) {
            Ok(to) => Attempt::Done(Probe::Redirect(to.to_string())),
            Err(e) => Attempt::Final(format!(
                "HTTP {status} redirect to a bad URL '{location}': {e}"
            )),
        };
    }
    if status == 200 {
        return Attempt::Final(
            "the server ignores Range requests (it answered bytes 0-0 with HTTP 200 and the whole \
             file); images are read over HTTP only from servers that serve byte ranges"
                .into(),
        );
    }
    if status != 206 {
        return Attempt::Final(format!(
            "unexpected HTTP {status} {} to bytes 0-0",
            resp.status_text()
        ));
    }
    let total = resp.header("Content-Range").and_then(total_of);
    let _ = resp.into_reader().take(16).read_to_end(&mut Vec::new());
    match total {
        Some(size) => Attempt::Done(Probe::Size(size)),
        None => Attempt::Final(
            "the server answered bytes 0-0 without the resource's length (Content-Range)".into(),
        ),
    }
}

/// Reads `len` bytes of `url` from `start` (a ranged GET), checking that
/// the server sends exactly that range.
pub(super) fn range(
    agent: &ureq::Agent,
    url: &str,
    headers: &Headers,
    start: u64,
    len: usize,
) -> Attempt<Vec<u8>> {
    let end = start + len as u64 - 1;
    let resp = match request(agent, url, headers, &format!("bytes={start}-{end}")).call() {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    match resp.status() {
        206 => {}
        200 => {
            return Attempt::Final(
                "the server ignored the Range request (HTTP 200 with the whole file)".into(),
            )
        }
        s => return Attempt::Final(format!("unexpected HTTP {s} {}", resp.status_text())),
    }
    let expected = format!("bytes {start}-{end}/");
    match resp.header("Content-Range") {
        Some(r) if r.starts_with(&expected) => {}
        Some(r) => {
            return Attempt::Transient(format!("the server sent another range ({r})"));
        }
        None => return Attempt::Transient("the server sent no Content-Range".into()),
    }
    if let Some(n) = resp.header("Content-Length") {
        if n.trim().parse::<u64>().ok() != Some(len as u64) {
            return Attempt::Transient(format!(
                "wrong Content-Length {n} for a range of {len} bytes"
            ));
        }
    }
    let mut body = vec![0u8; len];
    let mut reader = resp.into_reader();
    let mut got = 0;
    while got < len {
        match reader.read(&mut body[got..]) {
            Ok(0) => {
                return Attempt::Transient(format!("the body ended after {got} of {len} bytes"))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Attempt::Transient(format!(
                    "the body ended after {got} of {len} bytes: {e}"
                ))
            }
        }
    }
    Attempt::Done(body)
}

/// The pause before retry `n` (0-based): 200 ms, doubling, at most 5 s.
pub(super) fn backoff(n: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(5))
}
