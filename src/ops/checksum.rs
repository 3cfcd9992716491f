//! `checksum`: the blkhash digest of an image's guest content (read
//! through its backing chain), equal to `blksum`'s for the same content
//! whatever the format, compression or allocation.
//!
//! Block status is walked first: whole blocks that read as zeros (holes,
//! zero clusters, unallocated ranges) are added from the zero block's
//! digest and never read. The rest is read and hashed in pieces on a
//! thread pool, a bounded batch at a time, and the pieces' block digests
//! are added in guest order, so the digest does not depend on the thread
//! count.

use crate::chain::{Chain, ChainStatus, View};
use crate::engine::blkhash::{Blkhash, Config, Md, Piece};
use crate::engine::control::{Control, StopReason};
use crate::error::{Error, ErrorKind, Result};
use crate::format::FormatKind;
use rayon::prelude::*;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ChecksumRequest {
    /// The image.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The construction (algorithm, block size).
    pub config: Config,
    /// Threads that read and hash data.
    pub threads: usize,
}

/// How a checksum ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumOutcome {
    /// The digest of the whole guest content.
    Digest(Md),
    /// A signal or deadline stopped it.
    Stopped(StopReason),
}

/// Data is read and hashed in pieces of about this size.
const PIECE: u64 = 1 << 20;
/// Pieces hashed in parallel before their digests are added.
const BATCH_PIECES: usize = 64;
/// Parts (zero runs and pieces) gathered at most before they are added.
const BATCH_PARTS: usize = 4096;

/// A range of the guest content, block-aligned except at the end.
#[derive(Debug, Clone, Copy)]
enum Range {
    /// Reads as zeros: not read.
    Zero { len: u64 },
    /// To read and hash.
    Data { offset: u64, len: u64 },
}

/// Whether a run reads as zeros without being read (what convert leaves
/// unread too: no data, or data known to be zeros).
fn reads_as_zeros(st: &ChainStatus) -> bool {
    !st.data || st.zero
}

/// Turns block status into block ranges: a block is a zero block when
/// the runs that read as zeros cover all of it; every other block is read.
struct Blocks<'v, 'a> {
    view: &'v View<'a>,
    block: u64,
    size: u64,
    /// Where the status walk is.
    walked: u64,
    /// Start of the ranges not yet given out.
    given: u64,
    /// The run of zero-reading status being gathered.
    zeros: Option<(u64, u64)>,
    /// Ranges made and not yet taken.
    ready: std::collections::VecDeque<Range>,
}

impl<'v, 'a> Blocks<'v, 'a> {
    fn new(view: &'v View<'a>, block: u64) -> Self {
        Blocks {
            view,
            block,
            size: view.virtual_size(),
            walked: 0,
            given: 0,
            zeros: None,
            ready: Default::default(),
        }
    }

    /// Gives out `[given, to)` as data pieces.
    fn data_until(&mut self, to: u64) {
        let piece = (PIECE / self.block).max(1) * self.block;
        while self.given < to {
            let len = piece.min(to - self.given);
            self.ready.push_back(Range::Data {
                offset: self.given,
                len,
            });
            self.given += len;
        }
    }

    /// Ends the zero run `[a, b)`: its whole blocks (and the image's last,
    /// short block when the run reaches the end) are a zero range; blocks
    /// before it that are not yet given out are data.
    fn close_zeros(&mut self, a: u64, b: u64) {
        let z0 = a.div_ceil(self.block) * self.block;
        let z1 = if b == self.size {
            b
        } else {
            b / self.block * self.block
        };
        if z0 < z1 {
            self.data_until(z0);
            self.ready.push_back(Range::Zero { len: z1 - z0 });
            self.given = z1;
        }
    }

    fn next(&mut self) -> Result<Option<Range>> {
        while self.ready.is_empty() {
            if self.walked >= self.size {
                if let Some((a, b)) = self.zeros.take() {
                    self.close_zeros(a, b);
                }
                self.data_until(self.size);
                if self.ready.is_empty() {
                    return Ok(None);
                }
                break;
            }
            let st = self
                .view
                .block_status(self.walked, self.size - self.walked)?;
            let (from, to) = (self.walked, self.walked + st.len);
            self.walked = to;
            if reads_as_zeros(&st) {
                self.zeros = Some(match self.zeros {
                    Some((a, _)) => (a, to),
                    None => (from, to),
                });
            } else if let Some((a, b)) = self.zeros.take() {
                self.close_zeros(a, b);
            }
        }
        Ok(self.ready.pop_front())
    }
}

thread_local! {
    /// Each worker's read buffer.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads and hashes one data range.
fn hash_piece(view: &View<'_>, config: &Config, offset: u64, len: u64) -> Result<Piece> {
    BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.resize(len as usize, 0);
        view.read(offset, &mut buf)?;
        Ok(config.prehash(offset, &buf))
    })
}

/// Computes the digest of `view`'s guest content with `pool`'s threads.
pub fn checksum_view(
    view: &View<'_>,
    config: &Config,
    pool: &rayon::ThreadPool,
    control: &Control,
) -> Result<ChecksumOutcome> {
    let mut hash = Blkhash::new(*config);
    let mut blocks = Blocks::new(view, config.block_size() as u64);
    control.add_total(view.virtual_size());
    let mut batch: Vec<Range> = Vec::new();
    loop {
        let next = blocks.next()?;
        let data = batch
            .iter()
            .filter(|r| matches!(r, Range::Data { .. }))
            .count();
        if next.is_some() && data < BATCH_PIECES && batch.len() < BATCH_PARTS {
            batch.extend(next);
            continue;
        }
        if let Some(reason) = control.checkpoint() {
            return Ok(ChecksumOutcome::Stopped(reason));
        }
        let pieces: Vec<Option<Result<Piece>>> = pool.install(|| {
            batch
                .par_iter()
                .map(|r| match *r {
                    Range::Zero { .. } => None,
                    Range::Data { offset, len } => {
                        if control.stop_reason().is_some() {
                            return None;
                        }
                        let piece = hash_piece(view, config, offset, len);
                        control.advance(len, 0);
                        Some(piece)
                    }
                })
                .collect()
        });
        if let Some(reason) = control.checkpoint() {
            return Ok(ChecksumOutcome::Stopped(reason));
        }
        for (range, piece) in batch.iter().zip(pieces) {
            match (range, piece) {
                (Range::Zero { len }, _) => {
                    hash.zero(*len);
                    control.advance(*len, 0);
                }
                (Range::Data { .. }, Some(piece)) => hash.add(&piece?),
                (Range::Data { offset, .. }, None) => {
                    return Err(
                        Error::new(ErrorKind::Interrupted, "checksum stopped").at_offset(*offset)
                    )
                }
            }
        }
        batch.clear();
        match next {
            Some(r) => batch.push(r),
            None => break,
        }
    }
    Ok(ChecksumOutcome::Digest(hash.finish()))
}

/// Computes the checksum `req` asks for; `control` carries progress and
/// cancellation.
pub fn checksum(req: &ChecksumRequest, control: &Control) -> Result<ChecksumOutcome> {
    let opts = control.storage_options();
    let chain = Chain::open_with(&req.file, req.format, &opts)?;
    let view = chain.view();
    let threads = req.threads.max(view.requests_in_flight()).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not start worker threads: {e}"),
            )
        })?;
    checksum_view(&view, &req.config, &pool, control).map_err(|e| match e.path() {
        Some(_) => e,
        None => e.with_path(&req.file),
    })
}
