//! The client against fake servers: good and malformed handshakes and
//! replies, each an error in bounded time, never a panic or a hang.

use super::*;
use crate::io::Storage;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

/// What a fake server does: after reading so many of the client's
/// bytes, it sends these.
type Script = Vec<(usize, Vec<u8>)>;

/// A fake server on a fresh unix socket: it plays `script` (bytes to
/// send, after reading `skip` bytes of the client's), then keeps the
/// connection open without a word until the client gives up.
fn fake(script: Script) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        for (skip, bytes) in script {
            let mut sink = vec![0u8; skip];
            if conn.read_exact(&mut sink).is_err() || conn.write_all(&bytes).is_err() {
                return;
            }
        }
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let uri = format!("nbd+unix:///exp?socket={}", path.display());
    (dir, uri)
}

fn greeting(flags: u16) -> Vec<u8> {
    let mut g = NBDMAGIC.to_be_bytes().to_vec();
    g.extend(IHAVEOPT.to_be_bytes());
    g.extend(flags.to_be_bytes());
    g
}

fn option_reply(opt: u32, kind: u32, data: &[u8]) -> Vec<u8> {
    let mut r = OPT_REPLY_MAGIC.to_be_bytes().to_vec();
    r.extend(opt.to_be_bytes());
    r.extend(kind.to_be_bytes());
    r.extend((data.len() as u32).to_be_bytes());
    r.extend(data);
    r
}

/// A handshake that negotiates structured replies and base:allocation
/// and serves a 1 MiB export. Client bytes: 4 (flags), 16 (option
/// header, no data), 16 + 4 + 3 + 4 + 4 + 15 (meta context), 16 + 4 +
/// 3 + 2 (go).
fn good_handshake() -> Script {
    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
    info.extend((1u64 << 20).to_be_bytes());
    info.extend((TFLAG_READ_ONLY | TFLAG_SEND_FLUSH).to_be_bytes());
    let mut context = 7u32.to_be_bytes().to_vec();
    context.extend(b"base:allocation");
    vec![
        (0, greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)),
        (4 + 16, option_reply(OPT_STRUCTURED_REPLY, REP_ACK, &[])),
        (16 + 4 + 3 + 4 + 4 + 15, {
            let mut r = option_reply(OPT_SET_META_CONTEXT, REP_META_CONTEXT, &context);
            r.extend(option_reply(OPT_SET_META_CONTEXT, REP_ACK, &[]));
            r
        }),
        (16 + 4 + 3 + 2, {
            let mut r = option_reply(OPT_GO, REP_INFO, &info);
            r.extend(option_reply(OPT_GO, REP_ACK, &[]));
            r
        }),
    ]
}

/// Opens the fake server's export (the directory keeps its socket).
fn open_fake(script: Script) -> (tempfile::TempDir, Result<NbdStorage>) {
    let (dir, uri) = fake(script);
    let r = NbdStorage::open_with_timeout(&uri, false, Duration::from_millis(500));
    (dir, r)
}

#[test]
fn a_good_handshake_then_replies_are_parsed() {
    let mut script = good_handshake();
    // A read of 8 bytes at 16: one data chunk, then a hole chunk, done.
    let mut reply = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
    reply.extend(0u16.to_be_bytes());
    reply.extend(REPLY_OFFSET_DATA.to_be_bytes());
    reply.extend(1u64.to_be_bytes());
    reply.extend(12u32.to_be_bytes());
    reply.extend(16u64.to_be_bytes());
    reply.extend([1, 2, 3, 4]);
    reply.extend(STRUCTURED_REPLY_MAGIC.to_be_bytes());
    reply.extend(REPLY_FLAG_DONE.to_be_bytes());
    reply.extend(REPLY_OFFSET_HOLE.to_be_bytes());
    reply.extend(1u64.to_be_bytes());
    reply.extend(12u32.to_be_bytes());
    reply.extend(20u64.to_be_bytes());
    reply.extend(4u32.to_be_bytes());
    script.push((28, reply));
    let (_dir, nbd) = open_fake(script);
    let nbd = nbd.unwrap();
    assert_eq!(nbd.len().unwrap(), 1 << 20);
    let mut buf = [9u8; 8];
    nbd.read_at(&mut buf, 16).unwrap();
    assert_eq!(buf, [1, 2, 3, 4, 0, 0, 0, 0]);
}

#[test]
fn malformed_servers_are_errors_without_a_hang() {
    let cases: Vec<(Script, &str)> = vec![
        (
            vec![(0, b"SSH-2.0-OpenSSH_9.2\r\n\0\0\0\0".to_vec())],
            "not an NBD server",
        ),
        (
            vec![(0, {
                let mut g = NBDMAGIC.to_be_bytes().to_vec();
                g.extend(0x0000_4202_8186_1253_u64.to_be_bytes());
                g.extend([0, 0]);
                g
            })],
            "old-style",
        ),
        (vec![(0, greeting(0))], "fixed newstyle"),
        (
            vec![(0, greeting(FLAG_FIXED_NEWSTYLE)[..10].to_vec())],
            "no answer",
        ),
        (
            vec![
                (0, greeting(FLAG_FIXED_NEWSTYLE)),
                (4 + 16, {
                    let mut r = OPT_REPLY_MAGIC.to_be_bytes().to_vec();
                    r.extend(OPT_STRUCTURED_REPLY.to_be_bytes());
                    r.extend(REP_ACK.to_be_bytes());
                    r.extend(u32::MAX.to_be_bytes());
                    r
                }),
            ],
            "option reply of",
        ),
        (
            vec![
                (0, greeting(FLAG_FIXED_NEWSTYLE)),
                (4 + 16, option_reply(OPT_STRUCTURED_REPLY, 0x8000_0001, &[])),
                (
                    16 + 4 + 3 + 2,
                    option_reply(OPT_GO, 0x8000_0006, b"no such export"),
                ),
            ],
            "refused: no such export",
        ),
        (
            vec![
                (0, greeting(FLAG_FIXED_NEWSTYLE)),
                (4 + 16, option_reply(99, REP_ACK, &[])),
            ],
            "malformed option reply",
        ),
    ];
    for (script, needle) in cases {
        let start = std::time::Instant::now();
        let (_dir, r) = open_fake(script);
        let msg = r.map(|_| ()).unwrap_err().to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{needle}: too slow"
        );
    }
}

#[test]
fn bad_replies_during_transmission_are_errors() {
    let replies: Vec<(Vec<u8>, &str)> = vec![
        (vec![0xde, 0xad, 0xbe, 0xef], "bad magic"),
        (
            {
                let mut r = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend(0u32.to_be_bytes());
                r.extend(99u64.to_be_bytes());
                r
            },
            "not sent",
        ),
        (
            {
                // Data claimed for offset 0, outside a read at 16.
                let mut r = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend(REPLY_FLAG_DONE.to_be_bytes());
                r.extend(REPLY_OFFSET_DATA.to_be_bytes());
                r.extend(1u64.to_be_bytes());
                r.extend(12u32.to_be_bytes());
                r.extend(0u64.to_be_bytes());
                r.extend([1, 2, 3, 4]);
                r
            },
            "outside the request",
        ),
        (
            {
                let mut r = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend(REPLY_FLAG_DONE.to_be_bytes());
                r.extend(REPLY_OFFSET_DATA.to_be_bytes());
                r.extend(1u64.to_be_bytes());
                r.extend(u32::MAX.to_be_bytes());
                r
            },
            "reply chunk of",
        ),
        (
            {
                let mut r = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend(REPLY_FLAG_DONE.to_be_bytes());
                r.extend((REPLY_ERROR_BIT | 1).to_be_bytes());
                r.extend(1u64.to_be_bytes());
                r.extend(10u32.to_be_bytes());
                r.extend(5u32.to_be_bytes());
                r.extend(4u16.to_be_bytes());
                r.extend(b"oops");
                r
            },
            "oops",
        ),
    ];
    for (reply, needle) in replies {
        let mut script = good_handshake();
        script.push((28, reply));
        let (_dir, nbd) = open_fake(script);
        let nbd = nbd.unwrap();
        let mut buf = [0u8; 8];
        let start = std::time::Instant::now();
        let err = nbd.read_at(&mut buf, 16).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{needle}: too slow"
        );
    }
}

/// A structured reply chunk header and payload.
fn chunk(flags: u16, kind: u16, handle: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
    r.extend(flags.to_be_bytes());
    r.extend(kind.to_be_bytes());
    r.extend(handle.to_be_bytes());
    r.extend((payload.len() as u32).to_be_bytes());
    r.extend(payload);
    r
}

/// The byte a fake export holds at `offset`.
fn pattern(offset: u64) -> u8 {
    (offset as u8) ^ (offset >> 8) as u8 ^ 0x5a
}

/// Data of the fake export from `at`, `len` bytes, as an OFFSET_DATA payload.
fn data_payload(at: u64, len: u64) -> Vec<u8> {
    let mut p = at.to_be_bytes().to_vec();
    p.extend((at..at + len).map(pattern));
    p
}

/// Three reads in flight at once on one connection, answered out of
/// order with their chunks interleaved (data, holes, a simple reply):
/// each caller gets exactly its own bytes.
#[test]
fn interleaved_out_of_order_replies_land_in_the_right_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for (skip, bytes) in good_handshake() {
            let mut sink = vec![0u8; skip];
            conn.read_exact(&mut sink).unwrap();
            conn.write_all(&bytes).unwrap();
        }
        // Wait for all three requests before answering any.
        let mut reqs = Vec::new();
        for _ in 0..3 {
            let mut h = [0u8; 28];
            conn.read_exact(&mut h).unwrap();
            assert_eq!(be32(&h), REQUEST_MAGIC);
            assert_eq!(be16(&h[6..]), CMD_READ);
            reqs.push((be64(&h[8..]), be64(&h[16..]), be32(&h[24..]) as u64));
        }
        reqs.sort_by_key(|r| r.1);
        let [(ha, a, alen), (hb, b, blen), (hc, c, clen)] = reqs[..] else {
            unreachable!()
        };
        let mut out = Vec::new();
        // B's second half first, then A's hole, B's first half (done),
        // C as a simple reply, A's data (done).
        let half = blen / 2;
        out.extend(chunk(
            0,
            REPLY_OFFSET_DATA,
            hb,
            &data_payload(b + half, blen - half),
        ));
        let mut hole = a.to_be_bytes().to_vec();
        hole.extend(((alen / 4) as u32).to_be_bytes());
        out.extend(chunk(0, REPLY_OFFSET_HOLE, ha, &hole));
        out.extend(chunk(
            REPLY_FLAG_DONE,
            REPLY_OFFSET_DATA,
            hb,
            &data_payload(b, half),
        ));
        out.extend(SIMPLE_REPLY_MAGIC.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out.extend(hc.to_be_bytes());
        out.extend((c..c + clen).map(pattern));
        let rest = data_payload(a + alen / 4, alen - alen / 4);
        out.extend(chunk(REPLY_FLAG_DONE, REPLY_OFFSET_DATA, ha, &rest));
        // Dribbled out in small pieces so that reads stop mid-chunk.
        for piece in out.chunks(1000) {
            conn.write_all(piece).unwrap();
        }
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let uri = format!("nbd+unix:///exp?socket={}", path.display());
    let nbd = NbdStorage::open_with_timeout(&uri, false, Duration::from_secs(5)).unwrap();
    let ranges = [(4096u64, 8192usize), (65536, 20000), (200_000, 3000)];
    let bufs: Vec<Vec<u8>> = std::thread::scope(|s| {
        let nbd = &nbd;
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(at, len)| {
                s.spawn(move || {
                    let mut buf = vec![0xeeu8; len];
                    nbd.read_at(&mut buf, at).unwrap();
                    buf
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (&(at, len), buf)) in ranges.iter().zip(&bufs).enumerate() {
        let want: Vec<u8> = (at..at + len as u64)
            .map(|o| {
                if i == 0 && o < at + len as u64 / 4 {
                    0
                } else {
                    pattern(o)
                }
            })
            .collect();
        assert!(buf == &want, "read {i} at {at} got the wrong bytes");
    }
    assert_eq!(nbd.connections(), 1);
    drop(nbd);
    server.join().unwrap();
}

/// A server that stops answering a read: one error after the exchange
/// timeout, naming what was pending; and a cancel flag ends the same wait
/// well before the timeout.
#[test]
fn a_silent_server_is_a_timeout_and_a_cancel_ends_the_wait() {
    let (_dir, nbd) = open_fake(good_handshake());
    let nbd = nbd.unwrap();
    let start = std::time::Instant::now();
    let err = nbd.read_at(&mut [0u8; 512], 4096).unwrap_err().to_string();
    assert!(err.contains("no answer within 0.5 s"), "{err}");
    assert!(err.contains("pending: read at 0x1000 (+512)"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));

    static CANCEL: AtomicBool = AtomicBool::new(false);
    let (_dir, uri) = fake(good_handshake());
    let options = NbdOptions {
        timeout: Duration::from_secs(60),
        cancel: Some(&CANCEL),
        ..NbdOptions::default()
    };
    let nbd = NbdStorage::open_with(&uri, false, &options).unwrap();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            CANCEL.store(true, Ordering::SeqCst);
        });
        let err = nbd.read_at(&mut [0u8; 512], 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
        assert!(
            err.to_string().contains("waiting for the reply to a read"),
            "{err}"
        );
    });
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// A server that advertises multi-conn but never greets a second client
/// (a client limit): the extra connection is given up after its short
/// timeout and reads go on over the first, never waiting for it.
#[test]
fn an_extra_connection_that_never_comes_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        // Only the first client is accepted; later ones wait in the backlog.
        let (mut conn, _) = listener.accept().unwrap();
        let mut script = good_handshake();
        let mut info = INFO_EXPORT.to_be_bytes().to_vec();
        info.extend((1u64 << 20).to_be_bytes());
        info.extend((TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN).to_be_bytes());
        script[3].1 = option_reply(OPT_GO, REP_INFO, &info);
        script[3].1.extend(option_reply(OPT_GO, REP_ACK, &[]));
        for (skip, bytes) in script {
            let mut sink = vec![0u8; skip];
            conn.read_exact(&mut sink).unwrap();
            conn.write_all(&bytes).unwrap();
        }
        let mut served = 0;
        loop {
            let mut h = [0u8; 28];
            if conn.read_exact(&mut h).is_err() || be16(&h[6..]) == CMD_DISC {
                return (served, listener);
            }
            let (handle, at, len) = (be64(&h[8..]), be64(&h[16..]), be32(&h[24..]) as u64);
            let mut r = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
            r.extend(0u32.to_be_bytes());
            r.extend(handle.to_be_bytes());
            r.extend((at..at + len).map(pattern));
            conn.write_all(&r).unwrap();
            served += 1;
        }
    });
    let uri = format!("nbd+unix:///exp?socket={}", path.display());
    let options = NbdOptions {
        timeout: Duration::from_secs(10),
        extra_connection_timeout: Duration::from_millis(300),
        cancel: None,
    };
    let nbd = NbdStorage::open_with(&uri, false, &options).unwrap();
    let start = std::time::Instant::now();
    let mut reads = 0;
    while start.elapsed() < Duration::from_millis(800) {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let nbd = &nbd;
                s.spawn(move || {
                    let at = t * 4096;
                    let mut buf = vec![0u8; 4096];
                    let begin = std::time::Instant::now();
                    nbd.read_at(&mut buf, at).unwrap();
                    assert!(
                        begin.elapsed() < Duration::from_millis(200),
                        "a read waited"
                    );
                    assert!(buf.iter().zip(at..).all(|(&b, o)| b == pattern(o)));
                });
            }
        });
        reads += 4;
    }
    assert_eq!(nbd.connections(), 1);
    drop(nbd);
    let (served, listener) = server.join().unwrap();
    assert_eq!(served, reads);
    // The extra connection was tried: it is still in the backlog.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "no extra connection was tried");
}
