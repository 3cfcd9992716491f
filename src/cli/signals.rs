//! SIGINT and SIGTERM set a flag that running copies check between
//! chunks, so they stop cleanly instead of dying mid-write.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set when SIGINT or SIGTERM arrives.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    SIGNAL.store(signal, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only performs atomic stores.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// The exit code for the signal that interrupted us: 130 (SIGINT) or 143 (SIGTERM).
pub fn exit_code() -> u8 {
    match SIGNAL.load(Ordering::SeqCst) {
        libc::SIGTERM => super::exit::TERMINATED,
        _ => super::exit::INTERRUPTED,
    }
}
