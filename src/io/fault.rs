//! A storage that simulates a crash: after the N-th change (write, resize
//! or flush of pending writes) every operation fails, and what survives is what was flushed
//! plus any subset of the writes since the last flush (the disk may have
//! persisted some of them, in any order, before power went away). A crash
//! may strike a flush too, so two writes separated by no barrier are caught
//! even when a flush follows them at once.

use super::{HostExtent, Storage};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// The change counter that decides when the crash strikes. Storages that
/// share one crash together: power fails for the whole machine at once.
#[derive(Debug)]
pub struct CrashClock {
    changes: AtomicU64,
    crash_after: u64,
    crashed: AtomicBool,
}

impl CrashClock {
    /// A clock that lets `crash_after` changes through (`u64::MAX`: never crash).
    pub fn new(crash_after: u64) -> Arc<Self> {
        Arc::new(CrashClock {
            changes: AtomicU64::new(0),
            crash_after,
            crashed: AtomicBool::new(false),
        })
    }

    /// How many changes were attempted on the storages sharing this clock.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Whether the crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Counts a change; false once the budget is spent.
    fn admit(&self) -> bool {
        if self.crashed() {
            return false;
        }
        if self.changes.fetch_add(1, Ordering::SeqCst) >= self.crash_after {
            self.crashed.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// An in-memory storage that stops working after a given number of writes.
#[derive(Debug)]
pub struct FaultStorage {
    path: PathBuf,
    state: Mutex<State>,
    clock: Arc<CrashClock>,
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
        Self::with_clock(path, data, CrashClock::new(crash_after))
    }

    /// A storage holding `data` that crashes when `clock` says so.
    pub fn with_clock(path: impl AsRef<Path>, data: Vec<u8>, clock: Arc<CrashClock>) -> Self {
        FaultStorage {
            path: path.as_ref().to_path_buf(),
            state: Mutex::new(State {
                current: data.clone(),
                durable: data,
                pending: Vec::new(),
            }),
            clock,
        }
    }

    /// How many changes (writes, resizes, flushes) were attempted (on
    /// every storage sharing this one's clock).
    pub fn writes(&self) -> u64 {
        self.clock.changes()
    }

    /// Whether the simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.clock.crashed()
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

    /// Three disks a crash could leave, the ones the crash tests check:
    /// every unflushed change kept, none kept, and every other one (which
    /// ones, by `seed`, so different cut points keep different subsets).
    pub fn crash_states(&self, seed: u64) -> [Vec<u8>; 3] {
        [
            self.after_crash(|_| true),
            self.after_crash(|_| false),
            self.after_crash(|i| (i as u64 + seed) % 2 == 0),
        ]
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
        if self.clock.admit() {
            Ok(())
        } else {
            Err(self.failed())
        }
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

    fn writes_in_flight(&self) -> usize {
        // Crash tests run the copy engine with several writer threads, as
        // direct I/O to a disk does, so their interleavings are cut too.
        3
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.change(Pending::Write(offset, buf.to_vec()))
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.change(Pending::SetLen(len))
    }

    fn copy_range_from(
        &self,
        source: &dyn Storage,
        source_offset: u64,
        offset: u64,
        len: u64,
    ) -> Result<bool> {
        // A kernel copy is made of the writes it stands for, so crash
        // tests cut copies offloaded to the kernel (`-C`) between them.
        super::copy_through_memory(source, source_offset, self, offset, len)?;
        Ok(true)
    }

    fn flush(&self) -> Result<()> {
        // A flush with nothing pending changes nothing on the disk: a crash
        // during it is a crash before it, so it is not counted.
        if self.lock().pending.is_empty() {
            return if self.crashed() {
                Err(self.failed())
            } else {
                Ok(())
            };
        }
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

/// A crash test of a whole command: a test passes the session in the
/// [`crate::io::StorageOptions`] of the command (see
/// [`FaultSessionGuard::options`]), and every image the command opens for
/// writing (see [`crate::io::open_writable_storage_with`]) lives in a
/// [`FaultStorage`] loaded from the file, all sharing one [`CrashClock`].
/// Afterwards the test writes what a disk could hold back to the files with
/// [`FaultSessionGuard::write_back`].
#[derive(Debug)]
pub struct FaultSession {
    clock: Arc<CrashClock>,
    files: Mutex<Vec<Arc<FaultStorage>>>,
}

impl FaultSession {
    /// Starts a session that crashes after `crash_after` changes
    /// (`u64::MAX`: never); it acts on the commands given its
    /// [`FaultSessionGuard::options`].
    pub fn start(crash_after: u64) -> FaultSessionGuard {
        FaultSessionGuard(Arc::new(FaultSession {
            clock: CrashClock::new(crash_after),
            files: Mutex::new(Vec::new()),
        }))
    }

    /// The storage for `path` in this session: the same storage each time
    /// a file is opened again.
    pub(crate) fn storage_for(&self, path: &Path) -> Result<Arc<FaultStorage>> {
        let session = self;
        let path = std::fs::canonicalize(path).map_err(|e| Error::io("open", e).with_path(path))?;
        let mut files = session.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.iter().find(|f| f.path == path) {
            return Ok(f.clone());
        }
        let data = std::fs::read(&path).map_err(|e| Error::io("read", e).with_path(&path))?;
        let storage = Arc::new(FaultStorage::with_clock(&path, data, session.clock.clone()));
        files.push(storage.clone());
        Ok(storage)
    }
}

/// A test's handle on a [`FaultSession`].
#[derive(Debug)]
pub struct FaultSessionGuard(Arc<FaultSession>);

impl FaultSessionGuard {
    /// Storage options that route the files a command writes through the
    /// session.
    pub fn options(&self) -> super::StorageOptions {
        super::StorageOptions {
            faults: Some(self.0.clone()),
            ..Default::default()
        }
    }

    /// How many changes the session's files saw.
    pub fn changes(&self) -> u64 {
        self.0.clock.changes()
    }

    /// Whether the crash happened.
    pub fn crashed(&self) -> bool {
        self.0.clock.crashed()
    }

    /// Writes each file as a disk could hold it after the crash: its
    /// durable bytes plus the unflushed changes `keep` selects (given the
    /// file's index in opening order and the change's index).
    pub fn write_back(&self, mut keep: impl FnMut(usize, usize) -> bool) -> std::io::Result<()> {
        let files = self.0.files.lock().unwrap_or_else(|p| p.into_inner());
        for (n, f) in files.iter().enumerate() {
            std::fs::write(&f.path, f.after_crash(|i| keep(n, i)))?;
        }
        Ok(())
    }
}
