//! `stream`: pull into an image everything it reads from the layers above a
//! base (or from its whole backing chain), then point it at the base (or at
//! nothing). A plan over the copy engine; resumable at any point, because
//! what was copied is allocated in the image and is not planned again.

use crate::chain::{spec, Chain, ChainStatus, View};
use crate::engine::control::Control;
use crate::engine::plan::plan_view;
use crate::engine::{copy, Action, CopyOptions, Outcome, Step};
use crate::error::{Error, Result};
use crate::format::{BackingSpec, FormatKind};
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// The image to stream into.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// Stop at this backing file (it becomes the new backing file).
    pub base: Option<String>,
    /// The name to record for the base.
    pub backing_file: Option<String>,
    /// Only this guest range (offset, length), rounded out to the image's
    /// allocation unit (cluster, or subcluster with extended L2).
    pub range: Option<(u64, u64)>,
    /// Worker threads.
    pub threads: usize,
}

/// What a run did, as `--output json` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReport {
    /// Start of the range handled.
    pub offset: u64,
    /// Where the next slice starts (the end of what was handled).
    pub next_offset: u64,
    /// Bytes copied or zeroed into the image.
    pub bytes_copied: u64,
    /// The image's virtual size.
    pub virtual_size: u64,
    /// Nothing is left to stream and the backing pointer has been rewritten.
    pub done: bool,
    /// The image had no backing file to begin with (a finished stream run
    /// again): done, with nothing done.
    pub already_independent: bool,
}

/// What streaming does with one run of the chain, given the base's depth
/// (`layers.len()` without a base).
fn action(st: &ChainStatus, base: usize, bottom: usize) -> Action {
    if (st.depth == 0 && st.present) || st.depth >= base {
        return Action::Skip; // the image has it, or the base keeps providing it
    }
    if st.data {
        return Action::Copy;
    }
    if !st.present && st.depth == bottom {
        return Action::Skip; // unallocated in the whole chain: stays so
    }
    // A zero cluster, or zeros read past the end of a shorter layer: the
    // image must keep reading zeros whatever lies below.
    Action::Zero
}

/// The steps for `[start, end)`.
fn plan(view: &View<'_>, start: u64, end: u64, base: usize) -> Result<Vec<Step>> {
    let bottom = view.layers().len() - 1;
    let mut steps = plan_view(view, start, end, 0, |st| action(st, base, bottom))?;
    steps.retain(|s| s.action != Action::Skip);
    Ok(steps)
}

/// The backing file to record once streaming is complete.
fn new_backing(
    chain: &Chain,
    file: &Path,
    base: Option<usize>,
    name: Option<&str>,
) -> Option<BackingSpec> {
    let depth = base?;
    let layers = chain.layers();
    let format = Some(layers[depth].image.format_name().to_string());
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            // The name the layer above the base stores, when it means the
            // same file from the image's directory; else the path as opened.
            let stored = layers[depth - 1].image.backing().map(|b| b.name);
            match stored {
                Some(n)
                    if spec::identity(&spec::resolve_backing(file, &n))
                        == spec::identity(&layers[depth].path) =>
                {
                    n
                }
                _ => std::fs::canonicalize(&layers[depth].path)
                    .unwrap_or_else(|_| layers[depth].path.clone())
                    .display()
                    .to_string(),
            }
        }
    };
    Some(BackingSpec { name, format })
}

/// Streams as `req` says. Stops early (resumable) when `control` says so.
pub fn stream(req: &StreamRequest, control: &Control) -> Result<(Outcome, StreamReport)> {
    let chain = Chain::open_writable_with(&req.file, req.format, &control.storage_options())?;
    if chain.layers().len() < 2 {
        if req.base.is_some() {
            return Err(Error::argument("Image does not have a backing file").with_path(&req.file));
        }
        // An earlier run finished (or was stopped right after dropping the
        // backing pointer): nothing is left to do, which is success, so a
        // nightly job can run again on a finished image.
        let size = chain.top().image.virtual_size();
        let report = StreamReport {
            offset: 0,
            next_offset: size,
            bytes_copied: 0,
            virtual_size: size,
            done: true,
            already_independent: true,
        };
        return Ok((Outcome::Completed, report));
    }
    let base = req.base.as_deref().map(|b| chain.depth_of(b)).transpose()?;
    let base_or_end = base.unwrap_or(chain.layers().len());
    let top = chain.top().image.clone();
    let size = top.virtual_size();
    let unit = top.granularity();
    let (start, end) = match req.range {
        Some((offset, len)) => {
            let start = (offset / unit * unit).min(size);
            let end = offset
                .saturating_add(len)
                .div_ceil(unit)
                .saturating_mul(unit)
                .min(size);
            (start, end.max(start))
        }
        None => (0, size),
    };
    let view = chain.view();
    let steps = plan(&view, start, end, base_or_end)?;
    let planned: u64 = steps.iter().map(|s| s.len).sum();
    control.add_total(planned);
    let options = CopyOptions {
        threads: req.threads.max(1),
        target_is_zero: false,
        ..Default::default()
    };
    let outcome = copy(&chain.view_from(1), top.as_ref(), &steps, &options, control)?;
    let mut report = StreamReport {
        offset: start,
        next_offset: end,
        bytes_copied: control.progress().done,
        virtual_size: size,
        done: false,
        already_independent: false,
    };
    if let Outcome::Stopped { resume_at, .. } = outcome {
        report.next_offset = resume_at;
        return Ok((outcome, report));
    }
    // Done only when nothing is left anywhere (slices may come in any order).
    if plan(&view, 0, size, base_or_end)?.is_empty() {
        // The copy ended with a flush, and set_backing flushes again before
        // its header write: the new pointer never precedes the data.
        top.set_backing(new_backing(
            &chain,
            &req.file,
            base,
            req.backing_file.as_deref(),
        ))?;
        report.done = true;
    }
    // Reported here, not lost when the image is dropped.
    top.flush().map_err(|e| e.with_path(&req.file))?;
    Ok((outcome, report))
}
