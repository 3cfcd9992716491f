//! `compare`: whether two images (each read through its backing chain)
//! show the guest the same bytes, as `qemu-img compare` decides it.
//!
//! Block status of both sides is walked first; ranges that read as zeros on
//! both sides, or are unallocated on both, are never read. What is left is
//! compared in parallel pieces, and the first difference in guest order is
//! the one reported, whatever the thread count.

use crate::chain::{Chain, ChainStatus, View};
use crate::engine::control::{Control, StopReason};
use crate::engine::zero::is_zero;
use crate::error::Result;
use crate::format::FormatKind;
use rayon::prelude::*;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    /// The first image.
    pub first: PathBuf,
    /// Its format (probed when `None`).
    pub first_format: Option<FormatKind>,
    /// The second image.
    pub second: PathBuf,
    /// Its format (probed when `None`).
    pub second_format: Option<FormatKind>,
    /// qemu-img's strict mode (`-s`): a difference in allocation, or in
    /// size, is a difference.
    pub strict: bool,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same guest content (with `size_mismatch`: the longer image reads
    /// as zeros past the shorter one's end).
    Identical {
        /// The sizes differ.
        size_mismatch: bool,
    },
    /// The content differs; `offset` is the start of the first 512-byte
    /// sector that differs, as qemu-img reports it.
    ContentMismatch {
        /// Where.
        offset: u64,
        /// The sizes differ too, and the difference lies past the shorter
        /// image's end (qemu-img warns of the sizes only then).
        size_mismatch: bool,
    },
    /// Strict mode: the allocation differs at `offset`.
    StatusMismatch {
        /// Where.
        offset: u64,
    },
    /// Strict mode: the sizes differ.
    SizeMismatch,
    /// A signal or deadline stopped the comparison.
    Stopped(StopReason),
}

/// The largest piece compared at once.
const PIECE: u64 = 1 << 20;
/// The unit qemu-img reports mismatches in.
const SECTOR: u64 = 512;

/// What to do with one piece of the guest range.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Read both sides and compare them.
    Both,
    /// Only the first side (0) or the second (1) may hold data: it must
    /// read as zeros.
    Zero(usize),
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    offset: u64,
    len: u64,
    work: Work,
}

/// The facts qemu-img's strict mode compares: its block status word
/// (allocated, data, zero, whether a host offset is known, and whether the
/// run reaches the end of the image, which is `size` bytes long).
fn status_word(st: &ChainStatus, offset: u64, size: u64) -> (bool, bool, bool, bool, bool) {
    (
        st.present,
        st.data,
        st.zero,
        st.host.is_some(),
        offset + st.len >= size,
    )
}

/// Splits `[offset, offset + len)` into pieces of at most [`PIECE`] bytes.
fn push_pieces(out: &mut Vec<Piece>, offset: u64, len: u64, work: Work) {
    let mut at = offset;
    while at < offset + len {
        let n = PIECE.min(offset + len - at);
        out.push(Piece {
            offset: at,
            len: n,
            work,
        });
        at += n;
    }
}

/// Compares as `req` says; `control` carries progress and cancellation.
pub fn compare(req: &CompareRequest, control: &Control) -> Result<Verdict> {
    // A signal ends the waits of network storage too.
    let opts = control.storage_options();
    let first = Chain::open_with(&req.first, req.first_format, &opts)?;
    // An image below the first one in its chain is read from that chain,
    // not opened a second time.
    let second = match first.depth_of_file(&req.second, req.second_format) {
        Some(depth) => Err(depth),
        None => Ok(Chain::open_with(&req.second, req.second_format, &opts)?),
    };
    let views = [
        first.view(),
        match &second {
            Ok(chain) => chain.view(),
            Err(depth) => first.view_from(*depth),
        },
    ];
    let sizes = [views[0].virtual_size(), views[1].virtual_size()];
    let size_mismatch = sizes[0] != sizes[1];
    if req.strict && size_mismatch {
        return Ok(Verdict::SizeMismatch);
    }
    let common = sizes[0].min(sizes[1]);
    control.add_total(sizes[0].max(sizes[1]));
    // The pieces to read, in guest order, up to a strict-mode difference.
    let mut pieces = Vec::new();
    let mut status_mismatch = None;
    let mut offset = 0;
    while offset < common {
        let a = views[0].block_status(offset, common - offset)?;
        let b = views[1].block_status(offset, common - offset)?;
        let len = a.len.min(b.len);
        // Strict mode has returned already when the sizes differ.
        if req.strict && status_word(&a, offset, common) != status_word(&b, offset, common) {
            status_mismatch = Some(offset);
            break;
        }
        match (a.zero && b.zero, a.present, b.present) {
            (true, _, _) | (false, false, false) => {}
            (false, true, true) => push_pieces(&mut pieces, offset, len, Work::Both),
            (false, true, false) => push_pieces(&mut pieces, offset, len, Work::Zero(0)),
            (false, false, true) => push_pieces(&mut pieces, offset, len, Work::Zero(1)),
        }
        offset += len;
    }
    // Past the shorter image, the longer one must read as zeros.
    if status_mismatch.is_none() && size_mismatch {
        let longer = if sizes[0] > sizes[1] { 0 } else { 1 };
        let end = sizes[longer];
        let mut offset = common;
        while offset < end {
            let st = views[longer].block_status(offset, end - offset)?;
            if st.present && !st.zero {
                push_pieces(&mut pieces, offset, st.len, Work::Zero(longer));
            }
            offset += st.len;
        }
    }
    let skipped = sizes[0].max(sizes[1]) - pieces.iter().map(|p| p.len).sum::<u64>();
    control.advance(skipped, 0);
    let found = pieces
        .par_iter()
        .map(|p| check_piece(&views, p, control))
        .find_first(|r| !matches!(r, Ok(None)));
    Ok(match found {
        Some(Err(e)) => return Err(e),
        Some(Ok(Some(Found::Stopped(reason)))) => Verdict::Stopped(reason),
        // qemu-img warns of the sizes when it gets past the shorter end.
        Some(Ok(Some(Found::Mismatch(offset)))) => Verdict::ContentMismatch {
            offset,
            size_mismatch: size_mismatch && offset >= common,
        },
        Some(Ok(None)) | None => match status_mismatch {
            Some(offset) => Verdict::StatusMismatch { offset },
            None => Verdict::Identical { size_mismatch },
        },
    })
}

/// What a piece turned up.
enum Found {
    Mismatch(u64),
    Stopped(StopReason),
}

thread_local! {
    /// Each worker's two buffers.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn check_piece(views: &[View<'_>; 2], p: &Piece, control: &Control) -> Result<Option<Found>> {
    if let Some(reason) = control.checkpoint() {
        return Ok(Some(Found::Stopped(reason)));
    }
    let len = p.len as usize;
    let differs = BUFFERS.with(|cell| -> Result<Option<usize>> {
        let (a, b) = &mut *cell.borrow_mut();
        a.resize(len, 0);
        match p.work {
            Work::Both => {
                b.resize(len, 0);
                views[0].read(p.offset, a)?;
                views[1].read(p.offset, b)?;
                Ok(first_difference(a, b))
            }
            Work::Zero(side) => {
                views[side].read(p.offset, a)?;
                Ok(first_nonzero(a))
            }
        }
    })?;
    control.advance(p.len, 0);
    Ok(differs.map(|i| Found::Mismatch(p.offset + i as u64 / SECTOR * SECTOR)))
}

/// Bytes checked at once before looking for the byte that differs.
const STRIDE: usize = 4096;

/// The index of the first byte where `a` and `b` differ (memcmp speed).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let at = a
        .chunks(STRIDE)
        .zip(b.chunks(STRIDE))
        .position(|(x, y)| x != y)?;
    let from = at * STRIDE;
    a[from..]
        .iter()
        .zip(&b[from..])
        .position(|(x, y)| x != y)
        .map(|i| from + i)
}

/// The index of the first byte of `a` that is not zero.
fn first_nonzero(a: &[u8]) -> Option<usize> {
    let at = a.chunks(STRIDE).position(|c| !is_zero(c))?;
    let from = at * STRIDE;
    a[from..].iter().position(|&x| x != 0).map(|i| from + i)
}
