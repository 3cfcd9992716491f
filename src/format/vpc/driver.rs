//! The VHD (`vpc`) entry of the driver table.

use super::{Vpc, VpcCreateOptions};
use crate::error::{Error, Result};
use crate::format::driver::common_options::{EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::Format;
use crate::io::{create_storage_with, Storage, StorageOptions};
use std::path::Path;

/// VHD, as QEMU's `vpc` driver.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "vpc",
    probe,
    probe_tail: Some(probe_footer),
    // A fixed VHD has no magic at its start (its footer is at the end).
    magic: None,
    open,
    create,
    create_options: &[
        EXTENT_SIZE_HINT,
        CreateOption::format(
            "force_size",
            "bool (on/off)",
            "Keep the requested size instead of rounding it up to a CHS geometry",
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
        FormattingField::given("subformat"),
        FormattingField::given("force_size"),
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
        check: false,
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

/// A fixed VHD's only footer is its last 512 bytes: a valid footer (cookie
/// and checksum) of a fixed disk whose data fits in front of it. qemu-img
/// probes such a file as raw; Azure and Hyper-V disks are fixed VHDs.
fn probe_footer(tail: &[u8], file_len: u64) -> Option<Confidence> {
    let footer = super::footer::Footer::parse(tail).ok()?;
    let fits = footer.virtual_size() <= file_len.checked_sub(super::footer::FOOTER_LEN as u64)?;
    (footer.disk_type() == super::footer::DISK_FIXED && fits).then_some(Confidence::Trailer)
}

fn probe(head: &[u8]) -> Option<Confidence> {
    head.starts_with(super::footer::COOKIE)
        .then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    _path: &Path,
    how: &OpenHow<'_>,
    _options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    Ok(Box::new(match how {
        OpenHow::Writable | OpenHow::Repair => Vpc::open_writable(storage)?,
        _ => Vpc::open(storage)?,
    }))
}

/// A planned VHD.
#[derive(Debug)]
struct NewVpc {
    options: VpcCreateOptions,
    /// A `subformat` value that is neither `dynamic` nor `fixed`.
    bad_subformat: Option<String>,
}

impl NewImage for NewVpc {
    fn validate(&self) -> Result<()> {
        if let Some(v) = &self.bad_subformat {
            return Err(Error::argument(format!(
                "Parameter 'subformat' does not accept value '{v}'"
            )));
        }
        self.options.footer().map(|_| ())
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
    Ok(Box::new(NewVpc {
        options: VpcCreateOptions {
            size: p.size,
            fixed: sub == "fixed",
            force_size: o.flag("force_size")?,
            preallocation: p.preallocation,
        },
        bad_subformat: (!matches!(sub, "dynamic" | "fixed")).then(|| sub.to_string()),
    }))
}
