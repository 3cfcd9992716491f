//! The write stage of the copy engine: the data of host pieces
//! ([`Placement::Host`]) that the in-order planner placed is written by a
//! few writer threads, several requests in flight, with no metadata lock
//! held; each job is published to the target once its data writes have
//! returned. Jobs are bounded (a full queue makes the planner wait), so
//! memory stays bounded.

use crate::error::{Error, Result};
use crate::format::{Format, Placement};
use crate::io::AlignedBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, MutexGuard};

/// Data to write and the host pieces it makes.
pub(super) enum Job<'s> {
    /// Host pieces whose bytes the kernel copies from `source` (`-C`),
    /// the bytes of `pieces[i]` starting at `from[i]` in it.
    Kernel {
        /// The source file.
        source: &'s dyn crate::io::Storage,
        /// Where each piece's bytes start in `source`.
        from: Vec<u64>,
        /// The host pieces, in guest order.
        pieces: Vec<Placement>,
    },
    /// One unit's buffer, written where its pieces say (without a copy).
    Unit {
        /// The target offset of `buf[0]`.
        base: u64,
        /// The unit's data.
        buf: AlignedBuf,
        /// Host pieces of the unit, in guest order.
        pieces: Vec<Placement>,
    },
    /// Small pieces of several units, gathered into one buffer that is
    /// contiguous on the host from `host` (one request instead of many).
    Gathered {
        /// Where `buf[0]` goes.
        host: u64,
        /// The pieces' data, in host order.
        buf: AlignedBuf,
        /// The pieces.
        pieces: Vec<Placement>,
    },
}

impl Job<'_> {
    /// The guest offset of the job's first piece (where a failed copy resumes).
    fn first_guest(&self) -> u64 {
        self.pieces().iter().map(|p| p.guest().0).min().unwrap_or(0)
    }

    fn pieces(&self) -> &[Placement] {
        let (Job::Unit { pieces, .. } | Job::Gathered { pieces, .. } | Job::Kernel { pieces, .. }) =
            self;
        pieces
    }
}

/// How many gather buffers are kept for reuse.
const SPARE_GATHER_BUFFERS: usize = 4;

/// The first failure of a job, with the target offset of its unit.
#[derive(Default)]
struct State {
    failed: Option<(u64, Error)>,
}

/// The writer threads' shared side.
pub(super) struct Writers<'s> {
    sender: Mutex<Option<SyncSender<Job<'s>>>>,
    receiver: Mutex<Receiver<Job<'s>>>,
    state: Mutex<State>,
    /// Gather buffers back from the writers, for the planner to fill again
    /// (reused: fresh memory is slow to fault in).
    spare: Mutex<Vec<AlignedBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'s> Writers<'s> {
    /// A write stage whose queue holds at most `depth` jobs.
    pub fn new(depth: usize) -> Self {
        let (sender, receiver) = sync_channel(depth.max(1));
        Writers {
            sender: Mutex::new(Some(sender)),
            receiver: Mutex::new(receiver),
            state: Mutex::new(State::default()),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// For the planner: queues `job` (waits while the queue is full).
    /// Fails once the stage has stopped; after a job failed, the job is
    /// dropped (see [`Writers::failed`]).
    pub fn send(&self, job: Job<'s>) -> Result<()> {
        let sender = lock(&self.sender).clone();
        let Some(sender) = sender else {
            return Err(Error::new(
                crate::error::ErrorKind::Io,
                "the copy's writers have stopped",
            ));
        };
        if sender.send(job).is_err() {
            return Err(Error::new(
                crate::error::ErrorKind::Io,
                "the copy's writers have stopped",
            ));
        }
        Ok(())
    }

    /// An empty buffer to gather into, with room for `capacity` bytes.
    pub fn gather_buffer(&self, capacity: usize) -> AlignedBuf {
        let mut buf = lock(&self.spare).pop().unwrap_or_default();
        if !buf.has_memory() {
            buf.set_len(capacity);
        }
        buf.set_len(0);
        buf
    }

    /// Whether a job has failed (the planner should stop).
    pub fn failed(&self) -> bool {
        lock(&self.state).failed.is_some()
    }

    /// The first error a job met, with the target offset of its unit.
    pub fn take_error(&self) -> Option<(u64, Error)> {
        lock(&self.state).failed.take()
    }

    /// No more jobs come: the writers finish the queued ones and return.
    pub fn close(&self) {
        lock(&self.sender).take();
    }

    /// A writer thread's loop: runs jobs until the stage is closed and
    /// the queue is empty; hands each job's buffer to `recycle`. After a
    /// failure, queued jobs are dropped unwritten and their clusters given
    /// back (`Format::abandon`).
    pub fn run(&self, target: &dyn Format, recycle: &(dyn Fn(AlignedBuf) + Sync)) {
        loop {
            let job = lock(&self.receiver).recv();
            let Ok(job) = job else {
                return;
            };
            let failed_before = lock(&self.state).failed.is_some();
            if !failed_before {
                // A panic must not leave the planner waiting for this job.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write_job(target, &job)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        crate::error::ErrorKind::Io,
                        "a copy writer failed",
                    ))
                });
                if let Err(e) = result {
                    // What was not published is given back (a failed
                    // publish gives back only what it did not point at).
                    let _ = target.abandon(job.pieces());
                    let mut state = lock(&self.state);
                    if state.failed.is_none() {
                        state.failed = Some((job.first_guest(), e));
                    }
                }
            } else {
                let _ = target.abandon(job.pieces());
            }
            match job {
                Job::Gathered { buf, .. } => {
                    let mut spare = lock(&self.spare);
                    if spare.len() < SPARE_GATHER_BUFFERS {
                        spare.push(buf);
                    }
                }
                Job::Unit { buf, .. } => recycle(buf),
                Job::Kernel { .. } => {}
            }
        }
    }
}

/// Writes the data of `job` (pieces that continue each other on the host
/// go out as one request; a kernel job's pieces are copied by the kernel),
/// then publishes its pieces.
fn write_job(target: &dyn Format, job: &Job<'_>) -> Result<()> {
    let storage = target.data_storage();
    let pieces = match job {
        Job::Kernel {
            source,
            from,
            pieces,
        } => {
            for (piece, &from) in pieces.iter().zip(from) {
                let Placement::Host { host, len, .. } = *piece else {
                    continue;
                };
                if !storage.copy_range_from(*source, from, host.0, len)? {
                    crate::io::copy_through_memory(*source, from, storage, host.0, len)?;
                }
            }
            pieces
        }
        Job::Gathered { host, buf, pieces } => {
            storage.write_data_vectored_at(&[buf], *host)?;
            pieces
        }
        Job::Unit { base, buf, pieces } => {
            for (host, run) in host_runs(*base, buf, pieces) {
                storage.write_data_vectored_at(&run, host)?;
            }
            pieces
        }
    };
    target.publish(pieces)
}

/// The host pieces of a unit's buffer (guest bytes from `base`) grouped
/// into runs that continue each other on the host: (host offset, slices).
pub(super) fn host_runs<'b>(
    base: u64,
    buf: &'b [u8],
    pieces: &[Placement],
) -> Vec<(u64, Vec<&'b [u8]>)> {
    let mut runs: Vec<(u64, Vec<&[u8]>)> = Vec::new();
    let mut run_end = 0u64;
    for piece in pieces {
        let Placement::Host { guest, host, len } = *piece else {
            continue;
        };
        let start = (guest.0 - base) as usize;
        let data = &buf[start..start + len as usize];
        match runs.last_mut() {
            Some((_, slices)) if host.0 == run_end => slices.push(data),
            _ => runs.push((host.0, vec![data])),
        }
        run_end = host.0 + len;
    }
    runs
}
