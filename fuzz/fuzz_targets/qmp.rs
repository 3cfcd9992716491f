//! The QMP client against a hostile monitor: the input is everything the
//! monitor says (greeting, replies, events), whatever the client asks. The
//! client negotiates, lists the format nodes and a device's chain, lists
//! the block jobs and reads the events that follow.
#![no_main]

use qimg::attach::{jobs, nodes, qmp::Qmp};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the sockets go (one directory for the whole run).
fn socket_dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qimg-fuzz-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("socket directory");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = socket_dir().join(format!("{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the fake monitor");
    let script = data.to_vec();
    // One client: the monitor says its piece, then drains what it is told.
    let monitor = std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut drain = conn.try_clone().expect("clone the connection");
            let sink = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
            });
            let _ = conn.write_all(&script);
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let _ = sink.join();
        }
    });
    let address = path.display().to_string();
    if let Ok(mut qmp) = Qmp::connect(&address, Duration::from_millis(200)) {
        let _ = nodes::format_nodes(&mut qmp);
        let _ = nodes::chain_of(&mut qmp, "drive0");
        let _ = jobs::list(&mut qmp);
        for _ in 0..4 {
            if !matches!(qmp.next_event(Duration::from_millis(5)), Ok(Some(_))) {
                break;
            }
        }
    }
    let _ = std::os::unix::net::UnixStream::connect(&path); // ends an accept that never came
    let _ = monitor.join();
    let _ = std::fs::remove_file(&path);
});
