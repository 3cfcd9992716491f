//! The VHDX entry of the driver table.

use super::{Vhdx, VhdxCreateOptions};
use crate::error::{Error, Result};
use crate::format::driver::common_options::{EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, Magic, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::Format;
use crate::io::{create_storage_with, Storage, StorageOptions};
use std::path::Path;

/// VHDX, as QEMU's `vhdx` driver.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "vhdx",
    probe,
    probe_tail: None,
    magic: Some(Magic {
        bytes: super::header::FILE_SIGNATURE,
        refusal: "Image not in VHDX format",
    }),
    open,
    create,
    create_options: &[
        CreateOption::format(
            "block_size",
            "size",
            "Payload block size, 1 MiB to 256 MiB (0: chosen from the disk size)",
        ),
        CreateOption::format(
            "block_state_zero",
            "bool (on/off)",
            "Mark new blocks ZERO instead of absent or present (on by default, as qemu-img)",
        ),
        EXTENT_SIZE_HINT,
        CreateOption::format(
            "log_size",
            "size",
            "Size of the metadata log, at least 1 MiB",
        ),
        NOCOW,
        FILE_PREALLOCATION,
        SIZE,
        CreateOption::format(
            "subformat",
            "str",
            "Type of virtual hard disk: dynamic (default) or fixed",
        ),
    ],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::size_or("log_size", "1048576"),
        FormattingField::size_or("block_size", "0"),
        FormattingField::given("subformat"),
        FormattingField::given("block_state_zero"),
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
    head.starts_with(super::header::FILE_SIGNATURE)
        .then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    _path: &Path,
    how: &OpenHow<'_>,
    _options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    Ok(Box::new(match how {
        OpenHow::Writable | OpenHow::Repair => Vhdx::open_writable(storage)?,
        _ => Vhdx::open(storage)?,
    }))
}

/// A planned VHDX.
#[derive(Debug)]
struct NewVhdx {
    options: VhdxCreateOptions,
    /// A `subformat` value that is neither `dynamic` nor `fixed`.
    bad_subformat: Option<String>,
}

impl NewImage for NewVhdx {
    fn validate(&self) -> Result<()> {
        if let Some(v) = &self.bad_subformat {
            return Err(Error::argument(format!(
                "Parameter 'subformat' does not accept value '{v}'"
            )));
        }
        self.options.layout().map(|_| ())
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        self.validate()?;
        let storage = create_storage_with(file, options)?;
        super::create(storage.as_ref(), &self.options)?;
        Ok(storage)
    }
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    let o = p.options;
    let sub = o.get("subformat").unwrap_or("dynamic");
    let block_state_zero = match o.get("block_state_zero") {
        None => true,
        Some(_) => o.flag("block_state_zero")?,
    };
    Ok(Box::new(NewVhdx {
        options: VhdxCreateOptions {
            size: p.size,
            fixed: sub == "fixed",
            block_size: o.size("block_size")?.unwrap_or(0),
            log_size: o.size("log_size")?.unwrap_or(1 << 20),
            block_state_zero,
        },
        bad_subformat: (!matches!(sub, "dynamic" | "fixed")).then(|| sub.to_string()),
    }))
}
