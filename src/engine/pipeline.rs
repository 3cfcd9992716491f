//! The hand-off between the copy engine's readers and its writer: readers
//! claim units in order and prepare them at most a window ahead of the
//! writer (which bounds memory), the writer takes them back in order, and
//! read buffers are reused.

use crate::error::Result;
use crate::io::AlignedBuf;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Shared state of the readers and the writer of one copy; `T` is what a
/// reader makes of a unit.
pub(super) struct Pipeline<T> {
    /// How far ahead of the writer readers may go, in units.
    window: usize,
    /// Prepared units by index, waiting for the writer.
    ready: Mutex<BTreeMap<usize, Result<T>>>,
    /// Signalled when a unit is ready (the writer waits on it).
    unit_ready: Condvar,
    /// Signalled when the writer moved on (readers ahead wait on it).
    window_moved: Condvar,
    /// Readers waiting for the window.
    waiting: AtomicUsize,
    /// Buffers to reuse (their old content is overwritten by each read).
    buffers: Mutex<Vec<AlignedBuf>>,
    /// How many buffers to keep for reuse (fresh memory is slow to fault
    /// in): the window, and the buffers writer threads may hold.
    keep: AtomicUsize,
    /// The next unit a reader may claim.
    next: AtomicUsize,
    /// Units the writer has finished.
    written: AtomicUsize,
    /// Set when the copy ends, early or not.
    stopped: AtomicBool,
}

/// Locks `m`; a panicking holder leaves plain data, still usable.
fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Pipeline<T> {
    /// A pipeline whose readers stay within `window` units of the writer.
    pub fn new(window: usize) -> Self {
        Pipeline {
            window: window.max(1),
            ready: Mutex::new(BTreeMap::new()),
            unit_ready: Condvar::new(),
            window_moved: Condvar::new(),
            waiting: AtomicUsize::new(0),
            buffers: Mutex::new(Vec::new()),
            keep: AtomicUsize::new(window.max(1)),
            next: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// For a reader: the next of `count` units to prepare, once it lies
    /// within the window; `None` when there are none left or the copy ended.
    pub fn claim(&self, count: usize) -> Option<usize> {
        let i = self.next.fetch_add(1, SeqCst);
        if i >= count || self.stopped.load(SeqCst) {
            return None;
        }
        if i >= self.written.load(SeqCst) + self.window {
            let mut guard = lock(&self.ready);
            self.waiting.fetch_add(1, SeqCst);
            while i >= self.written.load(SeqCst) + self.window && !self.stopped.load(SeqCst) {
                guard = self
                    .window_moved
                    .wait(guard)
                    .unwrap_or_else(|e| e.into_inner());
            }
            self.waiting.fetch_sub(1, SeqCst);
        }
        (!self.stopped.load(SeqCst)).then_some(i)
    }

    /// Keeps up to `n` buffers for reuse (at least the window).
    pub fn keep_buffers(&self, n: usize) {
        self.keep.store(n.max(self.window), SeqCst);
    }

    /// A buffer to read into (reused when one is free).
    pub fn buffer(&self) -> AlignedBuf {
        lock(&self.buffers).pop().unwrap_or_default()
    }

    /// For a reader: hands unit `i` over to the writer.
    pub fn publish(&self, i: usize, prepared: Result<T>) {
        lock(&self.ready).insert(i, prepared);
        self.unit_ready.notify_one();
    }

    /// For the writer: waits for unit `i`.
    pub fn take(&self, i: usize) -> Result<T> {
        let mut guard = lock(&self.ready);
        loop {
            if let Some(r) = guard.remove(&i) {
                return r;
            }
            guard = self
                .unit_ready
                .wait(guard)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Gives `buf` back to be read into again (a buffer whose data a
    /// writer thread wrote after the unit was finished).
    pub fn recycle(&self, buf: AlignedBuf) {
        if buf.has_memory() {
            let mut pool = lock(&self.buffers);
            if pool.len() < self.keep.load(SeqCst) {
                pool.push(buf);
            }
        }
    }

    /// For the writer: unit `i` is written and `buf` may be read into again.
    /// Readers waiting for the window move on.
    pub fn finished(&self, i: usize, buf: AlignedBuf) {
        if buf.has_memory() {
            let mut pool = lock(&self.buffers);
            if pool.len() < self.keep.load(SeqCst) {
                pool.push(buf);
            }
        }
        self.written.store(i + 1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            let _guard = lock(&self.ready);
            self.window_moved.notify_all();
        }
    }

    /// Ends the copy: readers claim nothing more and stop waiting.
    pub fn stop(&self) {
        self.stopped.store(true, SeqCst);
        let _guard = lock(&self.ready);
        self.window_moved.notify_all();
    }
}
