//! `rebase`: give an image a new backing file. Safe mode first copies into
//! the image every cluster (or subcluster) it does not allocate whose
//! content would change (old backing view against new), then rewrites the
//! header; `-u` only rewrites the header.

use crate::chain::open_image_writable_with;
use crate::chain::spec::resolve_backing;
use crate::chain::{Chain, View};
use crate::engine::control::Control;
use crate::engine::plan::split_at_clusters;
use crate::engine::{copy_changes, Action, CopyOptions, GuestSource, Outcome, Step};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{BackingSpec, FormatKind, GuestRead};
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct RebaseRequest {
    /// The image to rebase.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// The new backing file ("" for none).
    pub backing: String,
    /// The new backing file's format.
    pub backing_format: Option<String>,
    /// `-u`: only rewrite the header.
    pub unsafe_mode: bool,
    /// `-c`: compress the clusters written.
    pub compress: bool,
    /// Worker threads.
    pub threads: usize,
}

fn change_error(backing: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("Could not change the backing file to '{backing}': {why}"),
    )
}

/// Rebases as `req` says.
pub fn rebase(req: &RebaseRequest, control: &Control) -> Result<Outcome> {
    let spec = if req.backing.is_empty() {
        None
    } else {
        let format = req
            .backing_format
            .clone()
            .ok_or_else(|| change_error(&req.backing, "backing format must be specified"))?;
        format.parse::<FormatKind>()?;
        Some(BackingSpec {
            name: req.backing.clone(),
            format: Some(format),
        })
    };
    let not_supported = |e: Error| {
        if e.kind() == ErrorKind::Unsupported {
            change_error(&req.backing, "Operation not supported").with_path(&req.file)
        } else {
            e
        }
    };
    let opts = control.storage_options();
    if req.unsafe_mode {
        let image = open_image_writable_with(&req.file, req.format, &opts)?;
        image.set_backing(spec).map_err(not_supported)?;
        image.flush().map_err(|e| e.with_path(&req.file))?;
        return Ok(Outcome::Completed);
    }
    let chain = Chain::open_writable_with(&req.file, req.format, &opts)?;
    let top = chain.top().image.clone();
    if !top.driver().caps.backing {
        return Err(change_error(&req.backing, "Operation not supported").with_path(&req.file));
    }
    let old = chain.reader_from(1);
    let new_chain = match &spec {
        Some(s) => {
            let format = s
                .format
                .as_deref()
                .map(str::parse::<FormatKind>)
                .transpose()?;
            let path = resolve_backing(&req.file, &s.name);
            // A new backing file already in the chain (rebasing onto a
            // deeper layer) is read from there, not opened a second time.
            match chain.depth_of_file(&path, format) {
                Some(depth) => Some(NewBacking::InChain(depth)),
                None => Some(NewBacking::Opened(Chain::open_with(&path, format, &opts)?)),
            }
        }
        None => None,
    };
    let new: std::sync::Arc<dyn GuestRead> = match &new_chain {
        Some(NewBacking::Opened(c)) => c.reader(),
        Some(NewBacking::InChain(depth)) => chain.reader_from(*depth),
        // No backing file: the image will read zeros wherever it has nothing.
        None => chain.reader_from(chain.layers().len()),
    };
    if req.compress && !top.driver().caps.compression {
        return Err(change_error(
            &req.backing,
            "Compression not supported for this file format",
        )
        .with_path(&req.file));
    }
    let steps = plan(&chain.view(), top.granularity())?;
    control.add_total(steps.iter().map(|s| s.len).sum());
    let options = CopyOptions {
        threads: req.threads.max(1),
        target_is_zero: false,
        ..Default::default()
    };
    // Where the new view reads the same, nothing needs copying.
    let (old, new) = (GuestSource(old.as_ref()), GuestSource(new.as_ref()));
    let outcome = match top.describe().cluster_size.filter(|_| req.compress) {
        None => copy_changes(&old, &new, top.as_ref(), &steps, &options, control)?,
        Some(cluster) => {
            // Whole clusters go compressed; the parts of clusters the image
            // partly holds (subclusters) go as they are.
            let (whole, parts) = split_at_clusters(&steps, cluster, top.virtual_size());
            let compressed = CopyOptions {
                compress_cluster: Some(cluster),
                ..options
            };
            match copy_changes(&old, &new, top.as_ref(), &whole, &compressed, control)? {
                Outcome::Completed => {
                    copy_changes(&old, &new, top.as_ref(), &parts, &options, control)?
                }
                stopped => stopped,
            }
        }
    };
    if outcome == Outcome::Completed {
        top.set_backing(spec).map_err(not_supported)?;
    }
    // Reported here, not lost when the image is dropped.
    top.flush().map_err(|e| e.with_path(&req.file))?;
    Ok(outcome)
}

/// Where the new backing view comes from.
enum NewBacking {
    /// A chain opened for it.
    Opened(Chain),
    /// The layers of the image's own chain from this depth down.
    InChain(usize),
}

/// The ranges the image does not allocate, rounded out to its allocation
/// units (`unit` bytes: clusters, or subclusters with extended L2): where
/// the old and new backing views may differ. A run the image does not
/// allocate may start inside a unit only when that whole unit is
/// unallocated, so rounding runs out to units never takes in bytes the
/// image holds itself.
fn plan(view: &View<'_>, unit: u64) -> Result<Vec<Step>> {
    let size = view.virtual_size();
    let mut steps: Vec<Step> = Vec::new();
    let mut offset = 0;
    while offset < size {
        let st = view.block_status(offset, size - offset)?;
        let run_end = offset + st.len;
        if st.depth == 0 && st.present {
            offset = run_end;
            continue;
        }
        let start = offset / unit * unit;
        let end = run_end.div_ceil(unit).saturating_mul(unit).min(size);
        match steps.last_mut() {
            Some(last) if last.target_offset + last.len == start => {
                last.len = end - last.target_offset
            }
            _ => steps.push(Step {
                target_offset: start,
                source_offset: start,
                len: end - start,
                action: Action::Copy,
            }),
        }
        offset = end;
    }
    Ok(steps)
}
