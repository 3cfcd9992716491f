//! A storage that simulates a crash: after the N-th change (write, resize
//! or flush) every operation fails, and what survives is what was flushed
//! plus any subset of the writes since the last flush (the disk may have
//! persisted some of them, in any order, before power went away). A crash
//! may strike a flush too, so two writes separated by no barrier are caught
//! even when a flush follows them at once.

use super::{HostExtent, Storage};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// One change not yet made durable by a flush.
#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug)]
struct State {
    /// What readers see.
    current: Vec<u8>,
    /// What a flush has made durable.
    durable: Vec<u8>,
    /// Changes since the last flush, in order.
    pending: Vec<Pending>,
}

/// An in-memory storage that stops working after a given number of writes.
#[derive(Debug)]
pub struct FaultStorage {
    path: PathBuf,
    state: Mutex<State>,
    writes: AtomicU64,
    crash_after: u64,
    crashed: AtomicBool,
}

fn apply(bytes: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Write(offset, data) => super::write_into_bytes(bytes, *offset, data),
        Pending::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

impl FaultStorage {
    /// A storage holding `data` (already durable) that lets `crash_after`
    /// changes through and fails everything after that (`u64::MAX`: never).
    pub fn new(path: impl AsRef<Path>, data: Vec<u8>, crash_after: u64) -> Self {
        FaultStorage {
            path: path.as_ref().to_path_buf(),
            state: Mutex::new(State {
                current: data.clone(),
                durable: data,
                pending: Vec::new(),
            }),
            writes: AtomicU64::new(0),
            crash_after,
            crashed: AtomicBool::new(false),
        }
    }

    /// How many changes (writes, resizes, flushes) were attempted.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Whether the simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// The bytes a disk could hold after the crash: the durable state plus
    /// the unflushed changes that `keep` selects (given their index), in order.
    pub fn after_crash(&self, mut keep: impl FnMut(usize) -> bool) -> Vec<u8> {
        let state = self.lock();
        let mut bytes = state.durable.clone();
        for (i, change) in state.pending.iter().enumerate() {
            if keep(i) {
                apply(&mut bytes, change);
            }
        }
        bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self) -> Error {
        Error::io(
            "simulated crash",
            std::io::Error::other("the storage stopped after its last allowed change"),
        )
        .with_path(&self.path)
    }

    /// Counts a change; fails once the budget is spent.
    fn admit(&self) -> Result<()> {
        if self.crashed() {
            return Err(self.failed());
        }
        if self.writes.fetch_add(1, Ordering::SeqCst) >= self.crash_after {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(self.failed());
        }
        Ok(())
    }

    fn change(&self, change: Pending) -> Result<()> {
        self.admit()?;
        let mut state = self.lock();
        apply(&mut state.current, &change);
        state.pending.push(change);
        Ok(())
    }
}

impl Storage for FaultStorage {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.lock().current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if self.crashed() {
            return Err(self.failed());
        }
        super::read_from_bytes(&self.lock().current, offset, buf);
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.len().map(Some)
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        Ok(HostExtent::without_holes(self.len()?, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.change(Pending::Write(offset, buf.to_vec()))
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.change(Pending::SetLen(len))
    }

    fn flush(&self) -> Result<()> {
        // Power may also fail during a flush: then only some of the
        // pending writes made it, as after a crash between writes.
        self.admit()?;
        let mut state = self.lock();
        state.durable = state.current.clone();
        state.pending.clear();
        Ok(())
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        let end = offset + len;
        if self.len()? < end {
            self.set_len(end)?;
        }
        Ok(())
    }
}
