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
