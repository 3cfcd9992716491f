//! The VDI entry of the driver table.

use super::{Vdi, VdiCreateOptions};
use crate::error::Result;
use crate::format::driver::common_options::{EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::Format;
use crate::io::{create_storage_with, Storage, StorageOptions};
use std::path::Path;

/// VDI, as QEMU's `vdi` driver.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "vdi",
    probe,
    probe_tail: None,
    // The signature lies at 0x40, not at the start; a file without it
    // is refused by the open, with qemu-img's sentence.
    magic: None,
    open,
    create,
    // In qemu-img's `-o help` order (file options listed with a file name).
    create_options: &[
        EXTENT_SIZE_HINT,
        NOCOW,
        FILE_PREALLOCATION,
        SIZE,
        CreateOption::format(
            "static",
            "bool (on/off)",
            "VDI static (pre-allocated) image",
        ),
    ],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::or("static", "off"),
        FormattingField::given("nocow"),
        FormattingField::given("preallocation"),
        FormattingField::size("extent_size_hint"),
    ],
    amend_options: &[],
    measure: None,
    node_options: NodeOptions::NONE,
    caps: Caps {
        writable: true,
        backing: false,
        snapshots: false,
        compression: false,
        bitmaps: false,
        check: true,
        resize: false,
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
    super::header::has_signature(head).then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    _path: &Path,
    how: &OpenHow<'_>,
    _options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    Ok(Box::new(match how {
        OpenHow::Writable | OpenHow::Repair => Vdi::open_writable(storage)?,
        _ => Vdi::open(storage)?,
    }))
}

/// A planned VDI.
#[derive(Debug)]
struct NewVdi {
    options: VdiCreateOptions,
}

impl NewImage for NewVdi {
    fn validate(&self) -> Result<()> {
        self.options.validate()
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        self.validate()?;
        let storage = create_storage_with(file, options)?;
        super::create(storage.as_ref(), &self.options)?;
        Ok(storage)
    }
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    // preallocation (off, falloc, full) is accepted and, as with qemu-img,
    // changes nothing: blocks are written whole when they are allocated.
    Ok(Box::new(NewVdi {
        options: VdiCreateOptions {
            size: p.size,
            is_static: p.options.flag("static")?,
        },
    }))
}
