//! The HTTP(S) backend against a hostile web server: the input is the
//! response (status line, headers, body) the server gives every request
//! on every connection. What opens is walked as a raw image.
#![no_main]

use qimg::format::{open_storage, FormatKind};
use qimg::io::http::{HttpOptions, HttpStorage};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serves `response` to every connection until `done`.
fn serve(response: Vec<u8>, done: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake server");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let url = format!("http://{}/disk.img", listener.local_addr().expect("address"));
    let server = std::thread::spawn(move || {
        let mut peers = Vec::new();
        while !done.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let response = response.clone();
                    peers.push(std::thread::spawn(move || {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
                        // The request head, then the response; then close.
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(&response);
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        for peer in peers {
            let _ = peer.join();
        }
    });
    (url, server)
}

/// libFuzzer's panic hook aborts on any panic; a panic of the HTTP client
/// on its request thread is caught by qimg and reported as an error (as
/// the qimg binary does, it is kept quiet), so only other panics abort.
fn contain_request_thread_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(qimg::io::http::REQUEST_THREAD) {
                abort(info);
            }
        }));
    });
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    contain_request_thread_panics();
    let done = Arc::new(AtomicBool::new(false));
    let (url, server) = serve(data.to_vec(), done.clone());
    let options = HttpOptions {
        connections: 2,
        retries: 0,
        timeout: Duration::from_millis(100),
        ..HttpOptions::default()
    };
    if let Ok(storage) = HttpStorage::open(&url, &options) {
        let raw = FormatKind::named("raw").expect("raw is registered");
        if let Ok(image) = open_storage(Box::new(storage), Path::new(&url), Some(raw)) {
            qimg_fuzz::walk(image.as_ref());
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = server.join();
});
