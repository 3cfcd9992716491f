//! The copy engine: copies a plan of guest ranges from a source into a
//! target image. Chunks are read and scanned for zeros in parallel (rayon),
//! a bounded window at a time. The calling thread, the planner, takes them
//! in guest order and asks the target where their data goes
//! (`Format::plan_write`, so new clusters are laid out sequentially); it
//! writes zero runs and partial clusters itself and hands whole clusters
//! to writer threads (`writers`), which write them with no lock held and
//! publish them. Memory stays bounded whatever the image size. Every
//! operation that copies data (convert, stream, commit, rebase) is a plan
//! run through here.

pub mod blkhash;
pub mod control;
pub mod idle;
mod pipeline;
pub mod plan;
mod planner;
mod writers;
pub mod zero;

use crate::error::{Error, Result};
use crate::format::Format;
use crate::io::AlignedBuf;
use blkhash::{Ordered, Part};
use control::{Control, StopReason};
use pipeline::Pipeline;
use planner::write_in_order;
use writers::Writers;

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
    /// How many reads it wants in flight: the engine runs at least that
    /// many readers.
    fn requests_in_flight(&self) -> usize {
        1
    }
    /// Where the guest bytes of `[offset, offset + len)` are stored, run
    /// by run in guest order, for copies the kernel makes (`-C`). By
    /// default everything is to be read through [`Source::read`].
    fn locate(&self, offset: u64, len: u64) -> Result<Vec<Located<'_>>> {
        let _ = offset;
        Ok(vec![Located::Read(len)])
    }
}

/// Where a run of a source's guest bytes is, for a copy offloaded to the
/// kernel.
#[derive(Debug, Clone, Copy)]
pub enum Located<'s> {
    /// The bytes of `storage` from `host` on, as they are (neither
    /// compressed nor encrypted).
    Stored {
        /// The file they are in.
        storage: &'s dyn crate::io::Storage,
        /// Where they start in it.
        host: u64,
        /// How many bytes.
        len: u64,
    },
    /// `len` bytes that read as zeros.
    Zero(u64),
    /// `len` bytes that must be read through the source (compressed data,
    /// a format that gives no host offsets).
    Read(u64),
}

/// Any guest reader (e.g. a chain's reader) as a copy source.
pub struct GuestSource<'a>(pub &'a dyn crate::format::GuestRead);

impl Source for GuestSource<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read(offset, buf)
    }
    fn requests_in_flight(&self) -> usize {
        self.0.requests_in_flight()
    }
}

impl Source for crate::chain::View<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::chain::View::read(self, offset, buf)
    }
    fn requests_in_flight(&self) -> usize {
        crate::chain::View::requests_in_flight(self)
    }
    fn locate(&self, offset: u64, len: u64) -> Result<Vec<Located<'_>>> {
        crate::chain::View::locate(self, offset, len)
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
    /// Compress copied data in clusters of this size (the target's).
    pub compress_cluster: Option<u64>,
    /// qemu-img's `-C`: data stored plainly in a source file is copied by
    /// the kernel ([`crate::io::Storage::copy_range_from`]), not read into
    /// memory, so it is not scanned for zeros either. Ignored for
    /// compressed, hashed or reference-comparing copies, which must read.
    pub offload: bool,
    /// qemu-img's `--salvage`: a source read that fails is read again a
    /// sector (512 bytes) at a time, and the sectors that still fail are
    /// copied as zeros and reported through the control.
    pub salvage: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk_size: 2 << 20,
            sparse: 4096,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            target_is_zero: false,
            compress_cluster: None,
            salvage: false,
            offload: false,
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

/// Cuts copy steps into units of work small enough for one buffer, ending
/// on `chunk_size` boundaries of the target; other steps stay whole.
fn units(plan: &[Step], chunk_size: u64) -> Vec<Step> {
    let mut out = Vec::new();
    for &step in plan {
        if step.action != Action::Copy {
            out.push(step);
            continue;
        }
        let mut done = 0;
        while done < step.len {
            let at = step.target_offset + done;
            let n = ((at / chunk_size + 1) * chunk_size - at).min(step.len - done);
            out.push(Step {
                target_offset: at,
                source_offset: step.source_offset + done,
                len: n,
                action: Action::Copy,
            });
            done += n;
        }
    }
    out
}

/// What a worker made of a copy unit.
enum Prepared<'s> {
    /// Runs for the kernel to copy (and zero runs), nothing read.
    Kernel(Vec<Located<'s>>),
    /// The data and its zero runs.
    Plain {
        buf: AlignedBuf,
        segments: Vec<zero::Segment>,
        unreadable: Vec<Unreadable>,
    },
    /// One entry per cluster: `None` for a zero cluster, else the
    /// compressed bytes or (when it did not shrink) the plain cluster.
    Clusters(Vec<Option<Packed>>, Vec<Unreadable>),
}

/// A source sector a salvaging copy could not read: its guest offset and
/// why (it is copied as zeros).
type Unreadable = (u64, String);

/// The unit qemu-img salvages in.
const SALVAGE_SECTOR: usize = 512;

/// Reads `buf` from `source` at `offset`; with `salvage`, a failed read is
/// retried sector by sector and the sectors that still fail read as zeros
/// (a cancel is never salvaged). Returns the sectors given up.
fn read_salvaging(
    source: &dyn Source,
    offset: u64,
    buf: &mut [u8],
    salvage: bool,
) -> Result<Vec<Unreadable>> {
    match source.read(offset, buf) {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if !salvage || e.kind() == crate::error::ErrorKind::Interrupted => return Err(e),
        Err(_) => {}
    }
    let mut lost = Vec::new();
    for (i, sector) in buf.chunks_mut(SALVAGE_SECTOR).enumerate() {
        let at = offset + (i * SALVAGE_SECTOR) as u64;
        if let Err(e) = source.read(at, sector) {
            if e.kind() == crate::error::ErrorKind::Interrupted {
                return Err(e);
            }
            sector.fill(0);
            lost.push((at, e.detail()));
        }
    }
    Ok(lost)
}

/// A cluster ready to store.
enum Packed {
    Compressed(Vec<u8>),
    Plain(Vec<u8>),
    /// Reads the same in the reference view: nothing to write.
    Unchanged,
}

thread_local! {
    /// Each worker's buffer for the reference view of `copy_changes`.
    static REFERENCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The segments to write of `buf` (at target offset `base`): its zero and
/// data runs, leaving out every allocation unit of the target (`unit`
/// bytes, aligned to target offsets) that reads the same in `reference`.
fn changed_segments(
    buf: &[u8],
    base: u64,
    sparse: usize,
    reference: &[u8],
    unit: u64,
) -> Vec<zero::Segment> {
    let mut out = Vec::new();
    let mut emit = |from: usize, to: usize| {
        let runs = zero::segments(&buf[from..to], base + from as u64, sparse);
        out.extend(runs.into_iter().map(|s| zero::Segment {
            start: s.start + from,
            ..s
        }));
    };
    let mut changed_from = None;
    let mut pos = 0usize;
    while pos < buf.len() {
        let next_unit = ((base + pos as u64) / unit + 1) * unit - base;
        let end = next_unit.min(buf.len() as u64) as usize;
        let changed = buf[pos..end] != reference[pos..end];
        match (changed, changed_from) {
            (true, None) => changed_from = Some(pos),
            (false, Some(from)) => {
                emit(from, pos);
                changed_from = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(from) = changed_from {
        emit(from, buf.len());
    }
    out
}

/// Reads and prepares one copy unit (runs on a worker thread), into `buf`
/// (reused: every byte is overwritten by the read). With a `reference`,
/// only the target's allocation units that differ from it are kept. With
/// a `hash`, the data read (as it will be written) is hashed into it.
fn prepare<'s>(
    source: &'s dyn Source,
    reference: Option<&dyn Source>,
    hash: Option<(&Ordered, &blkhash::Config)>,
    target: &dyn Format,
    step: &Step,
    options: &CopyOptions,
    mut buf: AlignedBuf,
) -> Result<Prepared<'s>> {
    if options.offload
        && reference.is_none()
        && hash.is_none()
        && options.compress_cluster.is_none()
        && !options.salvage
    {
        let runs = source.locate(step.source_offset, step.len)?;
        // A unit with anything to read is copied the usual way, whole.
        if !runs.iter().any(|r| matches!(r, Located::Read(_))) {
            return Ok(Prepared::Kernel(runs));
        }
    }
    buf.set_len(step.len as usize);
    let unreadable = read_salvaging(source, step.source_offset, &mut buf, options.salvage)?;
    if let Some((hash, config)) = hash {
        let piece = config.prehash(step.target_offset, &buf);
        hash.insert(step.target_offset, Part::Data(piece));
    }
    let Some(cluster) = options.compress_cluster else {
        let (base, sparse) = (step.target_offset, options.sparse as usize);
        let segments = match reference {
            None => zero::segments(&buf, base, sparse),
            Some(reference) => with_reference(reference, step, |other| {
                changed_segments(&buf, base, sparse, other, target.granularity())
            })?,
        };
        return Ok(Prepared::Plain {
            buf,
            segments,
            unreadable,
        });
    };
    let cluster = cluster as usize;
    let unchanged: Vec<bool> = match reference {
        None => Vec::new(),
        Some(reference) => with_reference(reference, step, |other| {
            buf.chunks(cluster)
                .zip(other.chunks(cluster))
                .map(|(a, b)| a == b)
                .collect()
        })?,
    };
    let mut clusters = Vec::new();
    for (i, part) in buf.chunks(cluster).enumerate() {
        if unchanged.get(i) == Some(&true) {
            clusters.push(Some(Packed::Unchanged));
            continue;
        }
        if options.sparse > 0 && zero::is_zero(part) {
            clusters.push(None);
            continue;
        }
        // The last cluster of an image may be short: compress it zero-padded.
        let padded;
        let whole = if part.len() == cluster {
            part
        } else {
            padded = [part, &vec![0u8; cluster - part.len()]].concat();
            &padded
        };
        clusters.push(Some(match target.compress_cluster(whole)? {
            Some(c) => Packed::Compressed(c),
            None => Packed::Plain(part.to_vec()),
        }));
    }
    Ok(Prepared::Clusters(clusters, unreadable))
}

/// Reads the reference view of `step` into this worker's own buffer and
/// hands it to `compare`.
fn with_reference<T>(
    reference: &dyn Source,
    step: &Step,
    compare: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    REFERENCE.with(|cell| {
        let mut other = cell.borrow_mut();
        other.resize(step.len as usize, 0);
        reference.read(step.source_offset, &mut other)?;
        Ok(compare(&other))
    })
}

/// Runs `plan` from `source` into `target`. Reader tasks on a rayon pool of
/// `threads` claim chunks in order, read and prepare them (zero scan,
/// compression), at most a window ahead of the writer; the calling thread
/// writes them in guest order. Stops between chunks when `control` says so,
/// with the target flushed.
pub fn copy(
    source: &dyn Source,
    target: &dyn Format,
    plan: &[Step],
    options: &CopyOptions,
    control: &Control,
) -> Result<Outcome> {
    run(source, None, None, target, plan, options, control)
}

/// As [`copy`], and the content the plan gives the target (copied data as
/// it is written, zero steps as zeros) is hashed into `hash` by the
/// readers, at target offsets, without another read: `convert --checksum`.
/// The plan must have no skip steps (their content is not known here);
/// [`Ordered::finish`] names the first range that was never hashed.
pub fn copy_hashing(
    source: &dyn Source,
    target: &dyn Format,
    plan: &[Step],
    options: &CopyOptions,
    control: &Control,
    hash: &Ordered,
) -> Result<Outcome> {
    run(source, None, Some(hash), target, plan, options, control)
}

/// As [`copy`], but a copy step writes only the target's allocation units
/// (clusters, or subclusters) whose source bytes differ from `reference`'s
/// at the same offsets: what rebase needs, with the comparison done by the
/// parallel readers and each source byte read once. Compressed copies
/// compare whole clusters (the plan must then be cluster-aligned).
pub fn copy_changes(
    source: &dyn Source,
    reference: &dyn Source,
    target: &dyn Format,
    plan: &[Step],
    options: &CopyOptions,
    control: &Control,
) -> Result<Outcome> {
    run(
        source,
        Some(reference),
        None,
        target,
        plan,
        options,
        control,
    )
}

fn run(
    source: &dyn Source,
    reference: Option<&dyn Source>,
    hash: Option<&Ordered>,
    target: &dyn Format,
    plan: &[Step],
    options: &CopyOptions,
    control: &Control,
) -> Result<Outcome> {
    // A network source keeps several reads in flight whatever the cores.
    let wanted = reference.map_or(1, |r| r.requests_in_flight());
    let threads = options
        .threads
        .max(source.requests_in_flight())
        .max(wanted)
        .max(1);
    // A kernel copy's (-C) readers mostly only ask where data is: one per
    // core does; its writers (below), which wait on the copies, get the
    // threads asked for. More readers would only wake each other.
    let readers = match options.offload {
        true => threads.min(std::thread::available_parallelism().map_or(2, |n| n.get())),
        false => threads,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(readers)
        .build()
        .map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Io,
                format!("could not start worker threads: {e}"),
            )
        })?;
    let units = units(plan, options.chunk_size.max(512));
    let p = Pipeline::new(readers * 2);
    let config = hash.map(|h| h.config());
    let hash = hash.zip(config.as_ref());
    let reader = || {
        while let Some(i) = p.claim(units.len()) {
            let step = &units[i];
            if let (Some((hash, _)), Action::Zero) = (hash, step.action) {
                hash.insert(step.target_offset, Part::Zero(step.len));
            }
            let prepared = if step.action == Action::Copy {
                let buf = p.buffer();
                // A panic must not leave the writer waiting for this unit forever.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prepare(source, reference, hash, target, step, options, buf)
                }))
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        crate::error::ErrorKind::Io,
                        "a copy worker failed",
                    ))
                })
            } else {
                Ok(Prepared::Plain {
                    buf: AlignedBuf::new(),
                    segments: Vec::new(),
                    unreadable: Vec::new(),
                })
            };
            p.publish(i, prepared);
        }
    };
    // Data writes leave the planner for writer threads: as many as the
    // target takes writes at once (two for direct I/O to a local disk,
    // more for a network export, one for buffered writes to a file).
    // Kernel copies (-C) overlap each other's page-cache work whatever
    // the target: they get a writer per worker.
    let n_writers = match options.offload {
        true => target.data_storage().writes_in_flight().max(threads),
        false => target.data_storage().writes_in_flight().max(1),
    };
    let writers = Writers::new(n_writers);
    p.keep_buffers(readers * 2 + 2 * n_writers + 1);
    let recycle = |buf: AlignedBuf| p.recycle(buf);
    let mut outcome = Ok(Outcome::Completed);
    std::thread::scope(|threads_scope| {
        for _ in 0..n_writers {
            threads_scope.spawn(|| writers.run(target, &recycle));
        }
        pool.in_place_scope(|scope| {
            for _ in 0..readers {
                scope.spawn(|_| reader());
            }
            outcome = write_in_order(&p, &units, target, options, control, &writers);
            // Whatever happened, let the readers finish.
            p.stop();
        });
        // The writers finish what is queued (a stopped copy's units before
        // its resume point must all be written) and return.
        writers.close();
    });
    // A writer's failure decides over what the planner made of it (the
    // planner only stops when it sees one), unless the planner met an
    // error of its own.
    let outcome = match (outcome, writers.take_error()) {
        (Err(e), _) => Err(e),
        (result, Some((at, e))) => match control.stop_reason() {
            Some(reason @ StopReason::Cancelled) => Ok(Outcome::Stopped {
                reason,
                resume_at: match result {
                    Ok(Outcome::Stopped { resume_at, .. }) => resume_at.min(at),
                    _ => at,
                },
            }),
            _ => Err(e),
        },
        (result, None) => result,
    }?;
    target.flush()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::control::Control;
    use super::zero::Segment;
    use super::{changed_segments, copy, Action, CopyOptions, Outcome, Source, Step};
    use crate::error::{Error, Result};
    use crate::format::raw::Raw;
    use crate::io::MemStorage;
    use std::sync::Arc;

    /// Bytes `offset % 251`, failing (or panicking) at one offset.
    struct Pattern {
        fail_at: Option<u64>,
        panic: bool,
    }

    impl Source for Pattern {
        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            if let Some(f) = self.fail_at {
                if (offset..offset + buf.len() as u64).contains(&f) {
                    if self.panic {
                        panic!("a deliberate panic in a test reader at {f} (expected)");
                    }
                    return Err(Error::corrupt("test read error"));
                }
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((offset + i as u64) % 251) as u8;
            }
            Ok(())
        }
    }

    fn run(source: &Pattern, threads: usize) -> (Result<Outcome>, Arc<MemStorage>) {
        const SIZE: u64 = 8 << 20;
        let storage = Arc::new(MemStorage::new("t.raw", vec![0; SIZE as usize]));
        let target = Raw::open(Box::new(storage.clone())).unwrap();
        let plan = [Step {
            target_offset: 0,
            source_offset: 0,
            len: SIZE,
            action: Action::Copy,
        }];
        let options = CopyOptions {
            chunk_size: 64 << 10,
            threads,
            ..Default::default()
        };
        let result = copy(source, &target, &plan, &options, &Control::default());
        (result, storage)
    }

    #[test]
    fn copies_in_order_through_a_small_window() {
        let source = Pattern {
            fail_at: None,
            panic: false,
        };
        for threads in [1, 3] {
            let (result, storage) = run(&source, threads);
            assert_eq!(result.unwrap(), Outcome::Completed);
            let got = storage.contents();
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
    }

    /// A slow source that wants `wants` reads in flight and records how
    /// many it saw at once.
    struct Remote {
        wants: usize,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl Source for Remote {
        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(n, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.now.fetch_sub(1, SeqCst);
            Pattern {
                fail_at: None,
                panic: false,
            }
            .read(offset, buf)
        }
        fn requests_in_flight(&self) -> usize {
            self.wants
        }
    }

    #[test]
    fn a_source_that_wants_reads_in_flight_gets_them() {
        let source = Remote {
            wants: 4,
            now: Default::default(),
            most: Default::default(),
        };
        let storage = Arc::new(MemStorage::new("t.raw", vec![0; 4 << 20]));
        let target = Raw::open(Box::new(storage.clone())).unwrap();
        let plan = [Step {
            target_offset: 0,
            source_offset: 0,
            len: 4 << 20,
            action: Action::Copy,
        }];
        let options = CopyOptions {
            chunk_size: 64 << 10,
            threads: 1,
            ..Default::default()
        };
        copy(&source, &target, &plan, &options, &Control::default()).unwrap();
        let most = source.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            most > 1,
            "one thread asked, four wanted: saw {most} reads at once"
        );
        assert!(most <= 4, "{most} reads at once");
    }

    #[test]
    fn a_failing_or_panicking_reader_ends_the_copy_with_an_error() {
        for panic in [false, true] {
            let source = Pattern {
                fail_at: Some(5 << 20),
                panic,
            };
            let (result, _) = run(&source, 2);
            let err = result.expect_err("the copy went on past a failed read");
            let expected = if panic {
                "a copy worker failed"
            } else {
                "test read error"
            };
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn only_units_that_differ_are_written() {
        // Four 4 KiB units at target offset 8 KiB; units 1 and 3 differ,
        // and unit 3 differs by being zero.
        let reference = vec![7u8; 16384];
        let mut buf = reference.clone();
        buf[4096 + 10] = 1;
        buf[12288..].fill(0);
        let segments = changed_segments(&buf, 8192, 4096, &reference, 4096);
        assert_eq!(
            segments,
            vec![
                Segment {
                    start: 4096,
                    len: 4096,
                    zero: false
                },
                Segment {
                    start: 12288,
                    len: 4096,
                    zero: true
                },
            ]
        );
        assert!(changed_segments(&reference, 0, 4096, &reference, 4096).is_empty());
    }
}
