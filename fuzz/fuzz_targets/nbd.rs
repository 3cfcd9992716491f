//! The NBD client against a hostile server: the input is everything the
//! server says (handshake, option replies, structured and simple replies),
//! sent on every connection the client opens, whatever the client asks.
//! The export is then walked as a raw image.
#![no_main]

use qimg::format::{open_storage, FormatKind};
use qimg::io::nbd::{NbdOptions, NbdStorage};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where the sockets go (one directory for the whole run).
fn socket_dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qimg-fuzz-nbd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("socket directory");
        dir
    })
}

/// Serves `script` on every connection to a fresh socket until `done`.
fn serve(script: Vec<u8>, done: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<()>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = socket_dir().join(format!("{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the fake server");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let uri = format!("nbd+unix:///?socket={}", path.display());
    let server = std::thread::spawn(move || {
        let mut peers = Vec::new();
        while !done.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let script = script.clone();
                    peers.push(std::thread::spawn(move || {
                        let _ = conn.set_nonblocking(false);
                        let mut drain = conn.try_clone().expect("clone the connection");
                        let sink = std::thread::spawn(move || {
                            let mut buf = [0u8; 4096];
                            while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
                        });
                        let _ = conn.write_all(&script);
                        let _ = conn.shutdown(std::net::Shutdown::Write);
                        let _ = sink.join();
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        for peer in peers {
            let _ = peer.join();
        }
        let _ = std::fs::remove_file(&path);
    });
    (uri, server)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let done = Arc::new(AtomicBool::new(false));
    let (uri, server) = serve(data.to_vec(), done.clone());
    let options = NbdOptions {
        timeout: Duration::from_millis(500),
        extra_connection_timeout: Duration::from_millis(100),
        cancel: None,
    };
    if let Ok(storage) = NbdStorage::open_with(&uri, false, &options) {
        let raw = FormatKind::named("raw").expect("raw is registered");
        if let Ok(image) = open_storage(Box::new(storage), Path::new(&uri), Some(raw)) {
            qimg_fuzz::walk(image.as_ref());
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = server.join();
});
