//! `measure`: how large an image converted from a source (or of a given
//! size) would be in a target format, as `qemu-img measure` computes it.

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::format::qcow2::measure::{bitmaps_size, fully_allocated_size};
use crate::format::{Details, FormatKind, Preallocation};
use crate::ops::create::{check_options, qcow2_geometry};
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
}

/// The answer, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// What the converted image needs.
    pub required: u64,
    /// What it needs with every cluster allocated.
    pub fully_allocated: u64,
    /// What the source's persistent bitmaps would take (qcow2 v3 targets
    /// of a source that has bitmaps support; `None` otherwise).
    pub bitmaps: Option<u64>,
}

/// Measures as `req` says.
pub fn measure(req: &MeasureRequest) -> Result<Measurement> {
    let format = req.target_format.unwrap_or(FormatKind::Raw);
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
    if format == FormatKind::Qed {
        return Err(Error::unsupported(
            "Block driver 'qed' does not support size measurement",
        ));
    }
    check_options(format, &req.options)?;
    let chain = match (&req.source, &req.snapshot) {
        (Some(path), Some(snapshot)) => {
            Some(Chain::open_snapshot(path, req.source_format, snapshot)?)
        }
        (Some(path), None) => Some(Chain::open(path, req.source_format)?),
        (None, _) => None,
    };
    let source_size = match &chain {
        Some(c) => c.view().virtual_size(),
        None => req.size.unwrap_or(0),
    };
    if format == FormatKind::Raw {
        // A raw target holds the whole disk (a size rounded to sectors).
        let size = if chain.is_some() {
            source_size
        } else {
            source_size.div_ceil(512) * 512
        };
        return Ok(Measurement {
            required: size,
            fully_allocated: size,
            bitmaps: None,
        });
    }
    let geometry = qcow2_geometry(&req.options, source_size)?;
    let cluster = 1u64 << geometry.cluster_bits;
    let virtual_size = source_size.div_ceil(cluster) * cluster;
    // Data clusters the source allocates (whole target clusters).
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
    if matches!(
        geometry.preallocation,
        Preallocation::Full | Preallocation::Falloc
    ) {
        data = virtual_size;
    }
    let fully_allocated = fully_allocated_size(
        virtual_size,
        cluster,
        geometry.refcount_order,
        geometry.extended_l2,
    );
    // Bitmaps: a version 3 target of a qcow2 source (the only format that
    // keeps persistent bitmaps).
    let bitmaps = match &chain {
        Some(c) if geometry.version >= 3 => match c.top().image.describe().details {
            Details::Qcow2(d) => Some(bitmaps_size(
                virtual_size,
                cluster,
                d.bitmaps.iter().map(|b| (b.granularity, b.name.len())),
            )),
            Details::None => None,
        },
        _ => None,
    };
    Ok(Measurement {
        required: fully_allocated - virtual_size + data,
        fully_allocated,
        bitmaps,
    })
}
