//! The QED entry of the driver table.

use super::{Qed, QedCreateOptions};
use crate::error::Result;
use crate::format::driver::common_options::{
    BACKING_FILE, BACKING_FMT, EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE,
};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, Magic, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::Format;
use crate::io::{create_storage_with, RefusedKind, Storage, StorageOptions};
use std::path::Path;

/// QED.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "qed",
    probe,
    probe_tail: None,
    magic: Some(Magic {
        bytes: b"QED\0",
        refusal: "Image not in QED format",
    }),
    open,
    create,
    create_options: &[
        BACKING_FILE,
        BACKING_FMT,
        CreateOption::format("cluster_size", "size", "Cluster size in bytes"),
        CreateOption::format(
            "table_size",
            "size",
            "Size of the L1 and L2 tables, in clusters",
        ),
        FILE_PREALLOCATION,
        NOCOW,
        EXTENT_SIZE_HINT,
        SIZE,
    ],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::given("backing_file"),
        FormattingField::given("backing_fmt"),
        FormattingField::size_or("cluster_size", "65536"),
        FormattingField::given("table_size"),
        FormattingField::given("preallocation"),
        FormattingField::given("nocow"),
        FormattingField::size("extent_size_hint"),
    ],
    amend_options: &[],
    measure: None,
    node_options: NodeOptions::NONE,
    caps: Caps {
        writable: true,
        backing: true,
        snapshots: false,
        compression: false,
        bitmaps: false,
        check: true,
        resize: true,
        amend: false,
        external_data: false,
        preallocate_metadata: false,
        repair_dirty_on_open: false,
        host_is_file: false,
        fallback: false,
        window: false,
    },
};

fn probe(head: &[u8]) -> Option<Confidence> {
    head.starts_with(b"QED\0").then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    path: &Path,
    how: &OpenHow<'_>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    // Uploads are never QED (OpenStack's format inspector bans it too):
    // from an untrusted source it is refused, not parsed further.
    options
        .trust
        .admit(RefusedKind::Format, "a QED image", path)?;
    Ok(Box::new(match how {
        OpenHow::Writable => Qed::open_writable(storage)?,
        _ => Qed::open(storage)?,
    }))
}

/// A planned QED image.
#[derive(Debug)]
struct NewQed(QedCreateOptions);

impl NewImage for NewQed {
    fn validate(&self) -> Result<()> {
        self.0.header().map(|_| ())
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        let storage = create_storage_with(file, options)?;
        super::create(storage.as_ref(), &self.0)?;
        Ok(storage)
    }
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    let o = p.options;
    Ok(Box::new(NewQed(QedCreateOptions {
        size: p.size,
        cluster_size: o
            .size("cluster_size")?
            .map_or(65536, |v| v.min(u32::MAX as u64) as u32),
        table_size: o
            .get("table_size")
            .map(|v| v.parse::<u32>().unwrap_or(u32::MAX))
            .unwrap_or(4),
        backing: p.backing.clone(),
    })))
}
