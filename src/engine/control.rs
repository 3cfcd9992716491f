//! What steers a running copy: cancellation, a deadline, a rate limit and
//! progress reporting. All of it is shared by the worker threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a copy stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Cancelled (a signal, or the caller).
    Cancelled,
    /// The time limit or deadline passed.
    TimeUp,
}

/// A token bucket shared by all workers: at most `rate` bytes per second,
/// with bursts of up to a tenth of a second.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    state: Mutex<(Instant, f64)>,
}

impl RateLimiter {
    /// A limiter for `rate` bytes per second (must be > 0).
    pub fn new(rate: u64) -> Self {
        RateLimiter {
            rate: rate.max(1),
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Takes `bytes` from the bucket, sleeping as long as needed.
    pub fn take(&self, bytes: u64) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(s.0).as_secs_f64() * self.rate as f64;
            let burst = self.rate as f64 / 10.0;
            s.1 = (s.1 + refill).min(burst) - bytes as f64;
            s.0 = now;
            if s.1 < 0.0 {
                Duration::from_secs_f64(-s.1 / self.rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Progress of a copy, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the guest range handled so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// Where a salvaging copy reports a sector it could not read: its guest
/// offset and why.
type ReadErrorSink = dyn Fn(u64, &str) + Send + Sync;

/// The shared controls of one copy.
#[derive(Default)]
pub struct Control {
    cancel_flag: Option<&'static AtomicBool>,
    storage: crate::io::StorageOptions,
    deadline: Option<Instant>,
    rate: Option<RateLimiter>,
    done: AtomicU64,
    total: AtomicU64,
    on_progress: Option<Box<dyn Fn(Progress) + Send + Sync>>,
    pause_while: Option<Box<dyn Fn() -> bool + Send + Sync>>,
    on_read_error: Option<Box<ReadErrorSink>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("cancel_flag", &self.cancel_flag)
            .field("deadline", &self.deadline)
            .field("done", &self.done)
            .finish()
    }
}

impl Control {
    /// Limits the copy to `rate` bytes per second.
    pub fn with_rate(mut self, rate: Option<u64>) -> Self {
        self.rate = rate.filter(|&r| r > 0).map(RateLimiter::new);
        self
    }

    /// Stops the copy (cleanly) once `deadline` has passed.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Calls `f` as the copy advances.
    pub fn with_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with the guest offset and the reason of every source
    /// sector a salvaging copy could not read (and wrote as zeros), in
    /// guest order.
    pub fn with_read_errors(mut self, f: impl Fn(u64, &str) + Send + Sync + 'static) -> Self {
        self.on_read_error = Some(Box::new(f));
        self
    }

    /// Reports a sector a salvaging copy could not read.
    pub fn read_error(&self, offset: u64, reason: &str) {
        if let Some(f) = &self.on_read_error {
            f(offset, reason);
        }
    }

    /// Stops the copy (cleanly, between chunks) once `flag` is set: a
    /// signal handler's flag, or the caller's.
    pub fn with_cancel_flag(mut self, flag: &'static AtomicBool) -> Self {
        self.cancel_flag = Some(flag);
        self
    }

    /// Opens the copy's storages with `options` (cache mode, force-share,
    /// a test's fault injector).
    pub fn with_storage_options(mut self, options: crate::io::StorageOptions) -> Self {
        self.storage = options;
        self
    }

    /// How the copy's storages are opened: as [`Control::with_storage_options`]
    /// said, and their network waits end when the copy is cancelled.
    pub fn storage_options(&self) -> crate::io::StorageOptions {
        crate::io::StorageOptions {
            cancel: self.cancel_flag.or(self.storage.cancel),
            ..self.storage.clone()
        }
    }

    /// Holds the copy (between chunks) while `busy` says so, checking
    /// again every [`super::idle::POLL`].
    pub fn with_pause_while(mut self, busy: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.pause_while = Some(Box::new(busy));
        self
    }

    /// Between two chunks: waits while the copy is paused, and says why it
    /// must stop, if it must (a stop ends a pause too).
    pub fn checkpoint(&self) -> Option<StopReason> {
        loop {
            if let Some(reason) = self.stop_reason() {
                return Some(reason);
            }
            match &self.pause_while {
                Some(busy) if busy() => std::thread::sleep(super::idle::POLL),
                _ => return None,
            }
        }
    }

    /// Why the copy must stop now, if it must.
    pub fn stop_reason(&self) -> Option<StopReason> {
        if self.cancel_flag.is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Some(StopReason::Cancelled);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(StopReason::TimeUp),
            _ => None,
        }
    }

    /// Adds `bytes` to the work to do.
    pub fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Records `bytes` of guest range handled; `copied` of them cost I/O
    /// (and count against the rate limit).
    pub fn advance(&self, bytes: u64, copied: u64) {
        if let (Some(r), true) = (&self.rate, copied > 0) {
            r.take(copied);
        }
        let done = self.done.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if let Some(f) = &self.on_progress {
            f(Progress {
                done,
                total: self.total.load(Ordering::SeqCst),
            });
        }
    }

    /// Where the copy stands.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.done.load(Ordering::SeqCst),
            total: self.total.load(Ordering::SeqCst),
        }
    }
}
