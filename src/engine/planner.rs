//! The planner of the copy engine: the calling thread takes the prepared
//! units in guest order, asks the target where their data goes
//! (`Format::plan_write`), writes zero runs and serial pieces itself, and
//! hands host pieces to the writer threads, gathering small runs that
//! continue each other on the host into one request.

use super::control::{Control, StopReason};
use super::pipeline::Pipeline;
use super::writers::{self, Job, Writers};
use super::{zero, Action, CopyOptions, Located, Outcome, Packed, Prepared, Step};
use crate::error::{Error, Result};
use crate::format::{Format, GuestOffset, Placement};
use crate::io::AlignedBuf;

/// The planner's side: takes the prepared units in guest order, decides
/// where their data goes (under the target's lock), writes what must be
/// written in order itself and hands the rest to the writer threads.
/// Stops between units when `control` says so.
pub(super) fn write_in_order<'s>(
    p: &Pipeline<Prepared<'s>>,
    units: &[Step],
    target: &dyn Format,
    options: &CopyOptions,
    control: &Control,
    writers: &Writers<'s>,
) -> Result<Outcome> {
    let mut gather = Gather::default();
    let outcome = plan_units(p, units, target, options, control, writers, &mut gather);
    match outcome {
        // Every unit before the resume point must be written, gathered ones too.
        Ok(outcome) => gather.send(writers).map(|()| outcome),
        Err(e) => {
            let _ = target.abandon(&gather.pieces);
            Err(e)
        }
    }
}

/// The planner's loop over the units (see [`write_in_order`]).
fn plan_units<'s>(
    p: &Pipeline<Prepared<'s>>,
    units: &[Step],
    target: &dyn Format,
    options: &CopyOptions,
    control: &Control,
    writers: &Writers<'s>,
    gather: &mut Gather,
) -> Result<Outcome> {
    for (i, s) in units.iter().enumerate() {
        if let Some(reason) = control.checkpoint() {
            return Ok(Outcome::Stopped {
                reason,
                resume_at: s.target_offset,
            });
        }
        if writers.failed() {
            // Planning stops; the caller reports the writer's own error
            // (which it takes from the writers), so there is none to make here.
            return Ok(Outcome::Completed);
        }
        // A read or write that failed while the copy is being cancelled
        // (a network wait given up on a signal) stops the copy here, as a
        // cancel between chunks would: the unit is left as any interrupted
        // write leaves it (consistent) and is copied again on a rerun.
        let stopped = |e: Error| match control.stop_reason() {
            Some(reason @ StopReason::Cancelled) => Ok(Outcome::Stopped {
                reason,
                resume_at: s.target_offset,
            }),
            _ => Err(e),
        };
        let prepared = match p.take(i) {
            Ok(prepared) => prepared,
            Err(e) => return stopped(e),
        };
        if let Prepared::Plain { unreadable, .. } | Prepared::Clusters(_, unreadable) = &prepared {
            for (offset, reason) in unreadable {
                control.read_error(*offset, reason);
            }
        }
        let (written, buf) = match (s.action, prepared) {
            (Action::Copy, Prepared::Kernel(runs)) => {
                // Runs gathered from earlier units go to the writers
                // first, so jobs are queued in guest order.
                gather.send(writers)?;
                match apply_kernel(target, s.target_offset, &runs, options, writers) {
                    Ok(n) => (n, AlignedBuf::new()),
                    Err(e) => return stopped(e),
                }
            }
            (Action::Copy, Prepared::Plain { buf, segments, .. }) => {
                match apply_plain(target, s, buf, &segments, options, writers, gather) {
                    Ok(done) => done,
                    Err(e) => return stopped(e),
                }
            }
            (Action::Copy, Prepared::Clusters(clusters, _)) => {
                let cluster = options.compress_cluster.unwrap_or(s.len);
                let (offset, zero) = (s.target_offset, options.target_is_zero);
                match apply_clusters(target, offset, s.len, cluster, &clusters, zero) {
                    Ok(n) => (n, AlignedBuf::new()),
                    Err(e) => return stopped(e),
                }
            }
            (Action::Zero, _) if !options.target_is_zero => {
                target.write_zeroes(s.target_offset, s.len, true)?;
                (0, AlignedBuf::new())
            }
            _ => (0, AlignedBuf::new()),
        };
        control.advance(s.len, written);
        p.finished(i, buf);
    }
    Ok(Outcome::Completed)
}

/// Applies one prepared chunk: zero runs and serial pieces are written
/// here, in guest order; the host pieces go to the writer threads with the
/// buffer. Returns the data bytes written and the buffer when no writer
/// took it.
fn apply_plain(
    target: &dyn Format,
    step: &Step,
    buf: AlignedBuf,
    segments: &[zero::Segment],
    options: &CopyOptions,
    writers: &Writers<'_>,
    gather: &mut Gather,
) -> Result<(u64, AlignedBuf)> {
    let offset = step.target_offset;
    let mut pieces = Vec::new();
    let written = match place_segments(target, offset, &buf, segments, options, &mut pieces) {
        Ok(n) => n,
        Err(e) => {
            // What was placed and not written is given back.
            let _ = target.abandon(&pieces);
            return Err(e);
        }
    };
    if pieces.is_empty() {
        return Ok((written, buf));
    }
    let runs = writers::host_runs(offset, &buf, &pieces);
    let run_len = |slices: &[&[u8]]| slices.iter().map(|s| s.len()).sum::<usize>();
    let last_end = runs
        .last()
        .map(|(host, slices)| host + run_len(slices) as u64);
    // A small chunk whose data continues, on the host, the data of the
    // chunk before (a fresh target's clusters are laid out in guest order)
    // is gathered with it into one request. Anything else (a large run,
    // several runs, data that continues nothing: a raw target with holes,
    // clusters rewritten in place) goes out straight from its own buffer.
    let gatherable = match runs.as_slice() {
        [(host, slices)] => {
            let n = run_len(slices);
            n < WHOLE_UNIT_WRITE && Some(*host) == gather.last_end
        }
        _ => false,
    };
    gather.last_end = last_end;
    if !gatherable {
        gather.send(writers)?;
        writers.send(Job::Unit {
            base: offset,
            buf,
            pieces,
        })?;
        return Ok((written, AlignedBuf::new()));
    }
    let (host, slices) = &runs[0];
    let continues = gather.host + gather.buf.len() as u64 == *host;
    if !gather.buf.is_empty() && (!continues || gather.buf.len() + run_len(slices) > GATHER_WRITE) {
        gather.send(writers)?;
    }
    if gather.buf.is_empty() {
        gather.host = *host;
        if !gather.buf.has_memory() {
            gather.buf = writers.gather_buffer(GATHER_WRITE);
        }
    }
    for slice in slices {
        gather.buf.extend_from_slice(slice);
    }
    gather.pieces.extend(pieces);
    Ok((written, buf))
}

/// Copies a unit's runs (from target `offset` on) without reading them
/// here: each stored run is placed in the target (`Format::plan_write`);
/// its host pieces go to the writer threads, which have the kernel copy
/// them from the source file ([`crate::io::Storage::copy_range_from`],
/// through memory where it cannot) and publish them after their data;
/// serial pieces and zero runs are written here, in order. Returns the
/// data bytes copied.
fn apply_kernel<'s>(
    target: &dyn Format,
    offset: u64,
    runs: &[Located<'s>],
    options: &CopyOptions,
    writers: &Writers<'s>,
) -> Result<u64> {
    let mut at = offset;
    let mut copied = 0;
    for run in runs {
        match *run {
            Located::Zero(len) => {
                if !options.target_is_zero {
                    target.write_zeroes(at, len, true)?;
                }
            }
            Located::Stored { storage, host, len } => {
                let pieces = target.plan_write(GuestOffset(at), len)?;
                send_kernel_job(target, storage, host, at, pieces, writers)?;
                copied += len;
            }
            Located::Read(len) => {
                return Err(Error::new(
                    crate::error::ErrorKind::Io,
                    format!(
                        "internal: a run of {len} bytes at {at:#x} to read reached the kernel copy"
                    ),
                ))
            }
        }
        let (Located::Zero(len) | Located::Stored { len, .. } | Located::Read(len)) = *run;
        at += len;
    }
    Ok(copied)
}

/// Writes the serial pieces of the guest run at `base` (whose bytes are
/// `source`'s from `host` on) and hands its host pieces to the writers as
/// one kernel job; what was placed and not handed over is given back on
/// failure.
fn send_kernel_job<'s>(
    target: &dyn Format,
    source: &'s dyn crate::io::Storage,
    host: u64,
    base: u64,
    pieces: Vec<Placement>,
    writers: &Writers<'s>,
) -> Result<()> {
    let mut host_pieces = Vec::new();
    let mut from = Vec::new();
    for piece in &pieces {
        let at = host + (piece.guest().0 - base);
        match *piece {
            Placement::Host { .. } => {
                host_pieces.push(*piece);
                from.push(at);
            }
            Placement::Serial { guest, len } => {
                let mut buf = vec![0u8; len as usize];
                let written = source
                    .read_at(&mut buf, at)
                    .and_then(|()| target.write(guest.0, &buf));
                if let Err(e) = written {
                    let _ = target.abandon(&host_pieces);
                    return Err(e);
                }
            }
        }
    }
    if host_pieces.is_empty() {
        return Ok(());
    }
    let placed = host_pieces.clone();
    writers
        .send(Job::Kernel {
            source,
            from,
            pieces: host_pieces,
        })
        .inspect_err(|_| {
            let _ = target.abandon(&placed);
        })
}

/// Writes the zero runs and serial pieces of a chunk (at target `offset`)
/// in order and collects its host pieces into `pieces`; returns the data
/// bytes it covers.
fn place_segments(
    target: &dyn Format,
    offset: u64,
    buf: &[u8],
    segments: &[zero::Segment],
    options: &CopyOptions,
    pieces: &mut Vec<Placement>,
) -> Result<u64> {
    let mut written = 0;
    for seg in segments {
        let at = offset + seg.start as u64;
        if seg.zero {
            if !options.target_is_zero {
                target.write_zeroes(at, seg.len as u64, true)?;
            }
            continue;
        }
        for piece in target.plan_write(GuestOffset(at), seg.len as u64)? {
            match piece {
                Placement::Serial { guest, len } => {
                    let start = (guest.0 - offset) as usize;
                    target.write(guest.0, &buf[start..start + len as usize])?;
                }
                Placement::Host { .. } => pieces.push(piece),
            }
        }
        written += seg.len as u64;
    }
    Ok(written)
}

/// A run this long goes to the writers in its unit's own buffer.
const WHOLE_UNIT_WRITE: usize = 1 << 20;

/// Gathered runs are sent once they reach this size.
const GATHER_WRITE: usize = 2 << 20;

/// Small runs of consecutive units, gathered for one write.
#[derive(Default)]
struct Gather {
    host: u64,
    buf: AlignedBuf,
    pieces: Vec<Placement>,
    /// Where the data of the last chunk placed ends on the host.
    last_end: Option<u64>,
}

impl Gather {
    /// Hands what is gathered to the writers.
    fn send(&mut self, writers: &Writers) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let job = Job::Gathered {
            host: self.host,
            buf: std::mem::take(&mut self.buf),
            pieces: std::mem::take(&mut self.pieces),
        };
        writers.send(job)
    }
}

/// Writes prepared clusters (of `cluster` bytes; the last may be shorter,
/// `len` in all) in order; returns the bytes written.
fn apply_clusters(
    target: &dyn Format,
    offset: u64,
    len: u64,
    cluster: u64,
    clusters: &[Option<Packed>],
    target_is_zero: bool,
) -> Result<u64> {
    let mut written = 0;
    for (i, packed) in clusters.iter().enumerate() {
        let at = offset + i as u64 * cluster;
        let n = cluster.min(offset + len - at);
        match packed {
            None if !target_is_zero => target.write_zeroes(at, n, true)?,
            None => {}
            Some(Packed::Compressed(c)) => {
                target.write_compressed(at, c)?;
                written += c.len() as u64;
            }
            Some(Packed::Plain(p)) => {
                target.write(at, p)?;
                written += p.len() as u64;
            }
            Some(Packed::Unchanged) => {}
        }
    }
    Ok(written)
}
