//! `convert`: copy one or more images (through their backing chains) into
//! a new or existing target, as plans over the copy engine.

use crate::chain::{Chain, View};
use crate::engine::blkhash::{Blkhash, Config, Md, Ordered};
use crate::engine::control::Control;
use crate::engine::plan::{align_copies, plan_view, split_at_clusters};
use crate::engine::{copy, copy_hashing, Action, CopyOptions, Outcome, Step};
use crate::error::{Error, Result};
use crate::format::FormatKind;
use crate::ops::bitmap;
use crate::ops::create::{plan as create_plan, CreateRequest};
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ConvertRequest {
    /// Sources, concatenated in order.
    pub sources: Vec<PathBuf>,
    /// Their format (probed when `None`).
    pub source_format: Option<FormatKind>,
    /// The target.
    pub target: PathBuf,
    /// The target's format.
    pub target_format: FormatKind,
    /// Target creation options (`-o`).
    pub options: Vec<String>,
    /// `-B`: create the target over this backing file, copy only the top layer.
    pub backing: Option<String>,
    /// `-F`: the backing file's format.
    pub backing_format: Option<String>,
    /// `-n`: write into an existing target.
    pub no_create: bool,
    /// `--target-is-zero`: the existing target reads as zeros.
    pub target_is_zero: bool,
    /// `-S`: shortest zero run left unwritten (0: write everything).
    pub sparse: u64,
    /// Worker threads.
    pub threads: usize,
    /// `-c`: compress.
    pub compress: bool,
    /// `-l`: convert this internal snapshot of the (single) source.
    pub snapshot: Option<String>,
    /// `--salvage`: source sectors that cannot be read are copied as
    /// zeros (and reported through the control) instead of failing.
    pub salvage: bool,
    /// `-C`: data stored plainly in the source files is copied by the
    /// kernel (`copy_file_range`: block clones on XFS and btrfs), not read,
    /// and so not scanned for zeros, as qemu-img's copy offloading does.
    /// Not with `--checksum`, which must read what it hashes.
    pub copy_range: bool,
    /// `--bitmaps`: copy the (single) source's persistent bitmaps after
    /// the data; `--skip-broken-bitmaps` leaves out inconsistent ones
    /// (otherwise they are refused before anything is written).
    pub bitmaps: Option<SkipBroken>,
}

/// Whether `convert --bitmaps` leaves inconsistent bitmaps out (`true`) or refuses them.
pub type SkipBroken = bool;

/// Checks the combinations qemu-img refuses, with its messages.
fn validate(req: &ConvertRequest) -> Result<()> {
    if req.target_is_zero && !req.no_create {
        return Err(Error::argument("--target-is-zero requires use of -n flag"));
    }
    if req.target_is_zero && req.backing.is_some() {
        return Err(Error::argument(
            "Cannot use --target-is-zero when the destination image has a backing file",
        ));
    }
    if req.backing.is_some() && !req.target_format.caps.backing && !req.no_create {
        return Err(Error::argument(format!(
            "Backing file not supported for file format '{}'",
            req.target_format
        )));
    }
    if req.backing.is_some() && req.sources.len() > 1 {
        return Err(Error::argument(
            "Having a backing file for the target makes no sense when concatenating multiple input images",
        ));
    }
    // With -n, -B only says that the target already has that backing file
    // (only the source's own top layer is copied): no format needed.
    if req.backing.is_some() && req.backing_format.is_none() && !req.no_create {
        return Err(Error::argument(
            "Use of backing file requires explicit backing format",
        ));
    }
    if req.compress && !req.target_format.caps.compression {
        return Err(Error::argument(
            "Compression not supported for this file format",
        ));
    }
    if req.snapshot.is_some() && req.sources.len() > 1 {
        return Err(Error::argument(
            "No support for concatenating multiple snapshot",
        ));
    }
    Ok(())
}

/// Zero ranges at most this long between two copied ranges are copied
/// with them (read and found zero again), so the engine handles fewer,
/// larger chunks.
const BRIDGED_GAP: u64 = 256 << 10;

/// The plan for one source: with `top_only` (`-B`), only what the source's
/// own top layer allocates (its zero clusters as zeros); otherwise
/// everything, zero and unallocated ranges as zeros (or as data when
/// `sparse` is 0, for a fully allocated target).
pub fn plan(view: &View<'_>, base: u64, top_only: bool, sparse: u64) -> Result<Vec<Step>> {
    plan_view(view, 0, view.virtual_size(), base, |st| {
        if top_only && st.depth > 0 {
            Action::Skip
        } else if (st.data && !st.zero) || sparse == 0 {
            // Data over a hole in the host file (a metadata-preallocated
            // image) reads as zeros, and is not read, as qemu-img does.
            Action::Copy
        } else {
            Action::Zero
        }
    })
}

/// The image just created in `file` (named `name`), opened for writing
/// from its still open storage, with its backing chain.
pub(crate) fn open_created(
    storage: Box<dyn crate::io::Storage>,
    file: &std::path::Path,
    name: &std::path::Path,
    format: FormatKind,
    options: &crate::io::StorageOptions,
) -> Result<Chain> {
    let image = crate::format::open_as_with(
        storage,
        file,
        Some(format),
        &crate::format::OpenHow::Writable,
        options,
    )?;
    Chain::with_writable_top(name, std::sync::Arc::from(image), options)
}

/// Converts as `req` says. `control` carries cancellation, rate and progress.
pub fn convert(req: &ConvertRequest, control: &Control) -> Result<Outcome> {
    run(req, control, None).map(|(outcome, _)| outcome)
}

/// As [`convert`], and the blkhash digest (built as `config` says) of the
/// data given to the target (the sources' guest content, concatenated) is
/// computed by the copy's readers as they read it: no range is read twice.
/// The digest is there when the copy completed.
pub fn convert_checksummed(
    req: &ConvertRequest,
    control: &Control,
    config: Config,
) -> Result<(Outcome, Option<Md>)> {
    if req.backing.is_some() {
        return Err(Error::argument(
            "--checksum cannot be used with -B: the ranges the backing file provides are not copied",
        ));
    }
    let hash = Ordered::new(Blkhash::new(config));
    let (outcome, total) = run(req, control, Some(&hash))?;
    Ok(match outcome {
        Outcome::Completed => (outcome, Some(hash.finish(total)?)),
        stopped => (stopped, None),
    })
}

/// Converts; returns how it ended and the bytes the sources give.
fn run(req: &ConvertRequest, control: &Control, hash: Option<&Ordered>) -> Result<(Outcome, u64)> {
    validate(req)?;
    let opts = control.storage_options();
    let sources: Vec<Chain> = match &req.snapshot {
        Some(snapshot) => vec![Chain::open_snapshot(
            &req.sources[0],
            req.source_format,
            snapshot,
            &opts,
        )?],
        None => req
            .sources
            .iter()
            .map(|p| Chain::open_with(p, req.source_format, &opts))
            .collect::<Result<_>>()?,
    };
    if let Some(skip_broken) = req.bitmaps {
        if sources.len() > 1 {
            return Err(Error::argument(
                "Copying bitmaps only possible with single source",
            ));
        }
        bitmap::check_convert_source(sources[0].top().image.as_ref(), skip_broken)?;
    }
    let total: u64 = sources.iter().map(|c| c.view().virtual_size()).sum();
    let target = if req.no_create {
        // Opened for writing at once: an image in use is refused as a write.
        let existing = Chain::open_writable_with(&req.target, Some(req.target_format), &opts)?;
        if existing.view().virtual_size() < total {
            return Err(
                Error::argument("output file is smaller than input file").with_path(&req.target)
            );
        }
        existing
    } else {
        create_plan(&CreateRequest {
            file: req.target.clone(),
            format: Some(req.target_format),
            options: req.options.clone(),
            backing: req.backing.clone(),
            backing_format: req.backing_format.clone(),
            backing_unsafe: false,
            size: Some(total),
            storage: opts.clone(),
        })?
        .execute_open()
        .and_then(|(storage, file)| {
            let keyed = opts.with_key_secret(crate::ops::create::key_secret(&req.options));
            open_created(storage, file, &req.target, req.target_format, &keyed)
        })?
    };
    let image = target.top().image.as_ref();
    if req.bitmaps.is_some() {
        bitmap::check_convert_target(image)?;
    }
    let options = CopyOptions {
        sparse: req.sparse,
        threads: req.threads,
        target_is_zero: req.target_is_zero
            || (!req.no_create && req.backing.is_none() && image.zero_initialized()),
        chunk_size: (2u64 << 20).max(image.granularity()),
        compress_cluster: if req.compress || image.writes_compressed() {
            image.describe().cluster_size
        } else {
            None
        },
        salvage: req.salvage,
        offload: req.copy_range && hash.is_none(),
    };
    let mut base = 0;
    let mut plans = Vec::new();
    for source in &sources {
        let view = source.view();
        let mut steps = plan(&view, base, req.backing.is_some(), req.sparse)?;
        // Zero steps read as zeros in the source (that is how the plan
        // found them), and the copy's zero scan (-S) finds them again.
        // (Not for a kernel copy, which would copy the gaps as data.)
        if req.sparse > 0 && !options.offload {
            steps = crate::engine::plan::bridge_zero_gaps(&steps, BRIDGED_GAP, req.sparse);
        }
        if let (Some(cluster), None) = (options.compress_cluster, &req.backing) {
            // Without a backing file, the rest of a cluster a copy only
            // partly covers reads as zeros in the source too: take it in,
            // so the cluster can go compressed.
            steps = align_copies(&steps, cluster, base, base + view.virtual_size());
        }
        control.add_total(steps.iter().map(|s| s.len).sum());
        plans.push(steps);
        base += view.virtual_size();
    }
    for (source, steps) in sources.iter().zip(&plans) {
        let outcome = copy_source(&source.view(), image, steps, &options, control, hash)?;
        if outcome != Outcome::Completed {
            return Ok((outcome, total));
        }
    }
    if req.bitmaps.is_some() {
        image.flush()?;
        bitmap::copy_bitmaps(sources[0].top().image.as_ref(), image)
            .map_err(|e| e.with_path(&req.target))?;
    }
    Ok((Outcome::Completed, total))
}

/// Copies one source's plan. A compressed copy writes whole clusters
/// compressed, then the pieces of clusters it only partly covers (at a
/// concatenation boundary, or next to ranges `-B`'s backing file provides)
/// as they are, so the target fills in the rest of those clusters itself.
fn copy_source(
    view: &View<'_>,
    image: &dyn crate::format::Format,
    steps: &[Step],
    options: &CopyOptions,
    control: &Control,
    hash: Option<&Ordered>,
) -> Result<Outcome> {
    let copy = |steps: &[Step], options: &CopyOptions| match hash {
        Some(hash) => copy_hashing(view, image, steps, options, control, hash),
        None => copy(view, image, steps, options, control),
    };
    let Some(cluster) = options.compress_cluster else {
        return copy(steps, options);
    };
    let (whole, parts) = split_at_clusters(steps, cluster, image.virtual_size());
    match copy(&whole, options)? {
        Outcome::Completed => {
            let plain = CopyOptions {
                compress_cluster: None,
                ..*options
            };
            copy(&parts, &plain)
        }
        stopped => Ok(stopped),
    }
}
