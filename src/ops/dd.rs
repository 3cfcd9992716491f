//! `dd`: copy a range of blocks of an image into a new one, as
//! `qemu-img dd` does, quirks included; plus Proxmox's `-n` and `osize=`.

use crate::chain::Chain;
use crate::engine::control::Control;
use crate::engine::plan::plan_view;
use crate::engine::{copy, Action, CopyOptions, Outcome};
use crate::error::{Error, Result};
use crate::format::FormatKind;
use crate::ops::create::{plan as create_plan, CreateRequest};
use std::path::PathBuf;

/// What the user asked for (`bs=`, `count=`, `skip=`, `if=`, `of=`,
/// `osize=`, `-f`, `-O`, `-n`).
#[derive(Debug, Clone)]
pub struct DdRequest {
    /// `if=`.
    pub input: PathBuf,
    /// `-f`: the input's format (probed when `None`).
    pub input_format: Option<FormatKind>,
    /// `of=`.
    pub output: PathBuf,
    /// `-O`: the output's format (raw by default).
    pub output_format: FormatKind,
    /// `bs=`: the block size (qemu-img's default 512).
    pub block_size: u64,
    /// `count=`: copy the blocks before this one (counted from block 0).
    pub count: Option<u64>,
    /// `skip=`: start at this block.
    pub skip: u64,
    /// `osize=` (Proxmox): the output's size, instead of the copied length.
    pub output_size: Option<u64>,
    /// `-n` (Proxmox): write into the existing output instead of creating it.
    pub no_create: bool,
    /// `-l` (Proxmox): read this internal snapshot of the input.
    pub snapshot: Option<String>,
}

/// What a `dd` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdReport {
    /// The copy ran to the end, or was stopped.
    pub outcome: Outcome,
    /// `skip=` pointed past the end of what `count=` leaves (qemu-img says
    /// so, writes an empty output, and still succeeds).
    pub skipped_past_end: bool,
}

/// Copies as `req` says: bytes `[skip * bs, min(count * bs, size))` of the
/// input to offset 0 of the output. Holes and zeros stay unwritten in a new
/// output (qemu-img writes them; the content is the same).
pub fn dd(req: &DdRequest, control: &Control) -> Result<DdReport> {
    let opts = control.storage_options();
    let source = match &req.snapshot {
        Some(snapshot) => Chain::open_snapshot(&req.input, req.input_format, snapshot, &opts)?,
        None => Chain::open_with(&req.input, req.input_format, &opts)?,
    };
    let view = source.view();
    let mut end = view.virtual_size();
    if let Some(count) = req.count {
        end = end.min(count.saturating_mul(req.block_size));
    }
    let wanted = req.skip.checked_mul(req.block_size);
    let skipped_past_end = wanted.is_none_or(|w| w > end);
    let start = wanted.unwrap_or(end).min(end);
    let length = end - start;
    let target = if req.no_create {
        Chain::open_writable_with(&req.output, Some(req.output_format), &opts)?
    } else {
        create_plan(&CreateRequest {
            file: req.output.clone(),
            format: Some(req.output_format),
            size: Some(req.output_size.unwrap_or(length)),
            storage: opts.clone(),
            ..Default::default()
        })?
        .execute_open()
        .and_then(|(storage, file)| {
            crate::ops::convert::open_created(storage, file, &req.output, req.output_format, &opts)
        })?
    };
    let image = target.top().image.as_ref();
    // What fits in the output.
    let length = length.min(image.virtual_size());
    let mut steps = plan_view(&view, start, start + length, 0, |st| {
        if st.data {
            Action::Copy
        } else {
            Action::Zero
        }
    })?;
    for step in &mut steps {
        step.target_offset -= start;
    }
    control.add_total(length);
    let options = CopyOptions {
        target_is_zero: !req.no_create && image.zero_initialized(),
        chunk_size: (2u64 << 20).max(image.granularity()),
        ..Default::default()
    };
    if length == 0 {
        return Ok(DdReport {
            outcome: Outcome::Completed,
            skipped_past_end,
        });
    }
    let outcome =
        copy(&view, image, &steps, &options, control).map_err(|e| e.with_path(&req.output))?;
    Ok(DdReport {
        outcome,
        skipped_past_end,
    })
}

/// The largest `bs=` qemu-img takes.
pub const MAX_BLOCK_SIZE: u64 = i32::MAX as u64;

/// Checks a `bs=` value as qemu-img does.
pub fn check_block_size(bs: u64) -> Result<u64> {
    if bs == 0 || bs > MAX_BLOCK_SIZE {
        return Err(Error::argument(format!(
            "Invalid bs specified. Must be between 1 and {MAX_BLOCK_SIZE}."
        )));
    }
    Ok(bs)
}
