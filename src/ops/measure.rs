//! `measure`: how large an image converted from a source (or of a given
//! size) would be in a target format, as `qemu-img measure` computes it.

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::format::driver::MeasureInput;
use crate::format::FormatKind;
use crate::io::StorageOptions;
use crate::ops::create::check_options;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct MeasureRequest {
    /// The source image (its chain is measured), or `None` with `size`.
    pub source: Option<PathBuf>,
    /// Its format (probed when `None`).
    pub source_format: Option<FormatKind>,
    /// `-l`: an internal snapshot of the source.
    pub snapshot: Option<String>,
    /// `--size`: a virtual size instead of a source.
    pub size: Option<u64>,
    /// `-O`: the target format (raw by default).
    pub target_format: Option<FormatKind>,
    /// `-o`: the target's creation options.
    pub options: Vec<String>,
    /// How files are opened (cache mode, `-U`, a test's fault injector).
    pub storage: StorageOptions,
}

/// The answer, in bytes.
pub use crate::format::driver::Measurement;

/// Measures as `req` says.
pub fn measure(req: &MeasureRequest) -> Result<Measurement> {
    let format = req.target_format.unwrap_or_else(FormatKind::fallback);
    match (&req.source, req.size) {
        (Some(_), Some(_)) => {
            return Err(Error::argument(
                "--size N cannot be used together with a filename.",
            ))
        }
        (None, None) => {
            return Err(Error::argument(
                "Either --size N or one filename must be specified.",
            ))
        }
        (None, Some(_)) if req.snapshot.is_some() => {
            return Err(Error::argument("--size N cannot be used together with -l."))
        }
        _ => {}
    }
    let Some(measure) = format.measure else {
        return Err(Error::unsupported(format!(
            "Block driver '{format}' does not support size measurement"
        )));
    };
    let options = check_options(format, &req.options)?;
    let chain = match (&req.source, &req.snapshot) {
        (Some(path), Some(snapshot)) => Some(Chain::open_snapshot(
            path,
            req.source_format,
            snapshot,
            &req.storage,
        )?),
        (Some(path), None) => Some(Chain::open_with(path, req.source_format, &req.storage)?),
        (None, _) => None,
    };
    let source_size = match &chain {
        Some(c) => c.view().virtual_size(),
        None => req.size.unwrap_or(0),
    };
    // Data the source allocates, counted in whole target clusters.
    let data_bytes = |cluster: u64| -> Result<u64> {
        let mut data = 0u64;
        if let Some(chain) = &chain {
            let view = chain.view();
            let mut offset = 0;
            while offset < source_size {
                let st = view.block_status(offset, source_size - offset)?;
                let mut len = st.len;
                if !st.zero && st.data && st.present {
                    // The rest of the cluster is counted (and not looked at again).
                    len = (offset + len).div_ceil(cluster) * cluster - offset;
                    data += offset % cluster + len;
                }
                offset += len;
            }
        }
        Ok(data)
    };
    let description = chain.as_ref().map(|c| {
        let top = &c.top().image;
        (top.driver().caps.bitmaps, top.describe())
    });
    let bitmaps = match &description {
        Some((true, d)) => Some(d.bitmaps.as_slice()),
        _ => None,
    };
    measure(&MeasureInput {
        options: &options,
        size: source_size,
        from_image: chain.is_some(),
        data_bytes: &data_bytes,
        bitmaps,
    })
}
