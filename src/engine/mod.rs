//! The copy engine: copies a plan of guest ranges from a source into a
//! target image. Chunks are read and scanned for zeros in parallel (rayon),
//! a bounded window at a time, and applied to the target in guest order, so
//! new clusters are laid out sequentially and memory stays bounded whatever
//! the image size. Every operation that copies data (convert, stream,
//! commit, rebase) is a plan run through here.

pub mod control;
pub mod zero;

use crate::error::{Error, Result};
use crate::format::Format;
use control::{Control, StopReason};
use rayon::prelude::*;

/// What to do with a range of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the source range and write it (zero runs become zero writes).
    Copy,
    /// Make the range read as zeros.
    Zero,
    /// Leave the target range as it is.
    Skip,
}

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Where the range starts in the target.
    pub target_offset: u64,
    /// Where it starts in the source (for copies).
    pub source_offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// What to do.
    pub action: Action,
}

/// Guest bytes to copy from.
pub trait Source: Sync {
    /// Reads guest bytes at `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

impl Source for crate::chain::View<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::chain::View::read(self, offset, buf)
    }
}

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Largest chunk read at once (a multiple of the target's cluster size).
    pub chunk_size: u64,
    /// Zero runs of at least this many bytes (aligned) are not written as
    /// data; 0 writes everything as data (qemu-img's `-S`).
    pub sparse: u64,
    /// Worker threads.
    pub threads: usize,
    /// The target already reads as zeros: zero ranges need no write.
    pub target_is_zero: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk_size: 2 << 20,
            sparse: 4096,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            target_is_zero: false,
        }
    }
}

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step was done and the target flushed.
    Completed,
    /// It stopped early (the target is flushed and consistent); the steps
    /// before `resume_at` (a target offset) are done.
    Stopped {
        /// Why.
        reason: StopReason,
        /// The first target offset not yet handled.
        resume_at: u64,
    },
}

/// A piece of work small enough for one buffer.
#[derive(Debug, Clone, Copy)]
struct Unit {
    step: Step,
}

/// Cuts copy steps into chunks that end on `chunk_size` boundaries of the target.
fn units(plan: &[Step], chunk_size: u64) -> Vec<Unit> {
    let mut out = Vec::new();
    for &step in plan {
        if step.action != Action::Copy {
            out.push(Unit { step });
            continue;
        }
        let mut done = 0;
        while done < step.len {
            let at = step.target_offset + done;
            let n = ((at / chunk_size + 1) * chunk_size - at).min(step.len - done);
            out.push(Unit {
                step: Step {
                    target_offset: at,
                    source_offset: step.source_offset + done,
                    len: n,
                    action: Action::Copy,
                },
            });
            done += n;
        }
    }
    out
}

/// What a worker made of a copy unit: the data and its zero runs.
struct Prepared {
    buf: Vec<u8>,
    segments: Vec<zero::Segment>,
}

/// Runs `plan` from `source` into `target`.
pub fn copy(
    source: &dyn Source,
    target: &dyn Format,
    plan: &[Step],
    options: &CopyOptions,
    control: &Control,
) -> Result<Outcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .build()
        .map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Io,
                format!("could not start worker threads: {e}"),
            )
        })?;
    let units = units(plan, options.chunk_size.max(512));
    let window = options.threads.max(1) * 2;
    let granularity = options.sparse as usize;
    let mut index = 0;
    while index < units.len() {
        if let Some(reason) = control.stop_reason() {
            target.flush()?;
            return Ok(Outcome::Stopped {
                reason,
                resume_at: units[index].step.target_offset,
            });
        }
        let batch = &units[index..(index + window).min(units.len())];
        let prepared: Vec<Option<Result<Prepared>>> = pool.install(|| {
            batch
                .par_iter()
                .map(|u| {
                    (u.step.action == Action::Copy).then(|| {
                        let mut buf = vec![0u8; u.step.len as usize];
                        source.read(u.step.source_offset, &mut buf)?;
                        let segments = zero::segments(&buf, u.step.target_offset, granularity);
                        Ok(Prepared { buf, segments })
                    })
                })
                .collect()
        });
        for (unit, prep) in batch.iter().zip(prepared) {
            let s = unit.step;
            let written = match (s.action, prep) {
                (Action::Copy, Some(prep)) => {
                    apply(target, s.target_offset, &prep?, options.target_is_zero)?
                }
                (Action::Zero, _) if !options.target_is_zero => {
                    target.write_zeroes(s.target_offset, s.len, true)?;
                    0
                }
                _ => 0,
            };
            control.advance(s.len, written);
        }
        index += batch.len();
    }
    target.flush()?;
    Ok(Outcome::Completed)
}

/// Writes one prepared chunk; returns the data bytes written.
fn apply(target: &dyn Format, offset: u64, prep: &Prepared, target_is_zero: bool) -> Result<u64> {
    let mut written = 0;
    for seg in &prep.segments {
        let at = offset + seg.start as u64;
        if seg.zero {
            if !target_is_zero {
                target.write_zeroes(at, seg.len as u64, true)?;
            }
        } else {
            target.write(at, &prep.buf[seg.start..seg.start + seg.len])?;
            written += seg.len as u64;
        }
    }
    Ok(written)
}
