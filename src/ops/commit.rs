//! `commit`: copy what an image and the layers above a base hold down into
//! the base, then (unless told not to) empty the image, as qemu-img does.
//!
//! The guest's view (the image) never changes on the way. Growing the base
//! and copying into it only change ranges the layers above the base hide,
//! and emptying the image starts only once everything copied is durable,
//! when the base reads what the image held. A crash at any instant leaves
//! the guest's data intact, and running the commit again finishes it.

use crate::chain::open_image_writable_with;
use crate::chain::{Chain, ChainStatus, View};
use crate::engine::control::Control;
use crate::engine::plan::plan_view;
use crate::engine::{copy, Action, CopyOptions, Outcome, Step};
use crate::error::{Error, Result};
use crate::format::{FormatKind, Preallocation};
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The image whose data goes down.
    pub file: PathBuf,
    /// Its format (probed when `None`).
    pub format: Option<FormatKind>,
    /// Commit down to this backing file (default: the image's own backing
    /// file). Naming one implies `keep_file`, as in qemu-img.
    pub base: Option<String>,
    /// `-d`: leave the image's data in place instead of emptying it.
    pub keep_file: bool,
    /// Worker threads.
    pub threads: usize,
}

/// What committing does with one run of the chain, given the base's depth.
fn action(st: &ChainStatus, base: usize) -> Action {
    // Skip what the base (or what is below it) provides already, and what
    // lies past the end of the base: that reads zeros once the base grows.
    if st.depth >= base || (!st.present && st.depth + 1 == base) {
        Action::Skip
    } else if st.data {
        Action::Copy
    } else {
        // A zero cluster above the base, or zeros read past the end of a
        // shorter layer between: the base must read zeros there too.
        Action::Zero
    }
}

/// The steps that bring into the base what the layers above it provide.
fn plan(view: &View<'_>, base: usize) -> Result<Vec<Step>> {
    let mut steps = plan_view(view, 0, view.virtual_size(), 0, |st| action(st, base))?;
    steps.retain(|s| s.action != Action::Skip);
    Ok(steps)
}

/// Commits as `req` says. Stops early (and can be run again) when
/// `control` says so.
pub fn commit(req: &CommitRequest, control: &Control) -> Result<Outcome> {
    // The image is opened for writing first, as qemu-img opens it, even
    // when it is kept (-d, -b): a read-only one is refused before the base
    // changes, and an image in use is refused with qemu-img's words.
    let empty_file = !req.keep_file && req.base.is_none();
    let opts = control.storage_options();
    // The base is opened for writing with the chain, so each file is
    // opened once.
    let (chain, depth) =
        Chain::open_writable_to_base(&req.file, req.format, req.base.as_deref(), &opts)?;
    if chain.layers().len() < 2 {
        return Err(Error::argument("Image does not have a backing file").with_path(&req.file));
    }
    let base = &chain.layers()[depth];
    let base_kind: FormatKind = base.image.driver();
    let size = chain.top().image.virtual_size();
    let steps = plan(&chain.view(), depth)?;

    let base_size = base.image.virtual_size();
    if base_size < size {
        // The base grows as resize grows it: over a longer backing file of
        // its own, the grown range is made to read zeros (crash-safely)
        // before the size changes, so it never shows that file's data.
        let grown = open_image_writable_with(&base.path, Some(base_kind), &opts)?;
        if chain.layers().len() > depth + 1 {
            grown.attach_backing(chain.reader_from(depth + 1));
        }
        grown
            .resize(size, Preallocation::Off)
            .map_err(|e| e.with_path(&base.path))?;
    }

    // After a resize the format wants the image opened again.
    let reopened = if base_size < size || !chain.is_writable(depth) {
        Some(open_image_writable_with(
            &base.path,
            Some(base_kind),
            &opts,
        )?)
    } else {
        None
    };
    let target: &dyn crate::format::Format = match &reopened {
        Some(image) => image.as_ref(),
        None => base.image.as_ref(),
    };
    if chain.layers().len() > depth + 1 {
        // Partial writes into the base complete from what is below it.
        target.attach_backing(chain.reader_from(depth + 1));
    }
    control.add_total(steps.iter().map(|s| s.len).sum());
    let options = CopyOptions {
        threads: req.threads.max(1),
        target_is_zero: false,
        ..Default::default()
    };
    let outcome = copy(&chain.view(), target, &steps, &options, control)
        .map_err(|e| e.with_path(&base.path))?;
    if outcome != Outcome::Completed {
        return Ok(outcome);
    }
    // The base must hold everything durably before the image lets go of it.
    target.flush().map_err(|e| e.with_path(&base.path))?;
    drop(reopened);
    if empty_file {
        chain
            .top()
            .image
            .make_empty()
            .map_err(|e| e.with_path(&req.file))?;
        chain
            .top()
            .image
            .flush()
            .map_err(|e| e.with_path(&req.file))?;
    }
    Ok(Outcome::Completed)
}
