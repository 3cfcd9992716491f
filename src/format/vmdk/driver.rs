//! The VMDK entry of the driver table.

use super::create::{NewVmdk, Subformat};
use super::Vmdk;
use crate::error::Result;
use crate::format::driver::common_options::{
    BACKING_FILE, BACKING_FMT, EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE,
};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::Format;
use crate::io::{Storage, StorageOptions};
use std::path::Path;

/// VMDK, as QEMU's `vmdk` driver.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "vmdk",
    probe,
    probe_tail: None,
    // A descriptor file is text: no magic.
    magic: None,
    open,
    create,
    create_options: &[
        CreateOption::format(
            "adapter_type",
            "str",
            "Virtual adapter type: ide (default), lsilogic, buslogic or legacyESX",
        ),
        BACKING_FILE,
        BACKING_FMT,
        CreateOption::format("compat6", "bool (on/off)", "VMDK version 6 image"),
        EXTENT_SIZE_HINT,
        CreateOption::format("hwversion", "str", "VMDK hardware version"),
        NOCOW,
        FILE_PREALLOCATION,
        SIZE,
        CreateOption::format(
            "subformat",
            "str",
            "VMDK flat extent format: monolithicSparse (default), monolithicFlat, \
             twoGbMaxExtentSparse, twoGbMaxExtentFlat or streamOptimized",
        ),
        CreateOption::format("toolsversion", "str", "VMware guest tools version"),
        CreateOption::format(
            "zeroed_grain",
            "bool (on/off)",
            "Allow zeroed-grain table entries (zero writes without data)",
        ),
    ],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::given("adapter_type"),
        FormattingField::given("backing_file"),
        FormattingField::given("backing_fmt"),
        FormattingField::or("compat6", "off"),
        FormattingField::or("hwversion", "undefined"),
        FormattingField::given("toolsversion"),
        FormattingField::given("subformat"),
        FormattingField::given("zeroed_grain"),
        FormattingField::given("nocow"),
        FormattingField::given("preallocation"),
        FormattingField::size("extent_size_hint"),
    ],
    amend_options: &[],
    measure: None,
    node_options: NodeOptions::NONE,
    caps: Caps {
        writable: true,
        // A parent (`parentFileNameHint`); no rebase: QEMU's driver cannot
        // change it either.
        backing: true,
        snapshots: false,
        // -c is accepted: streamOptimized compresses, the others store
        // plainly, as qemu-img does.
        compression: true,
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
    (super::header::SparseHeader::has_magic(head) || super::descriptor::looks_like_descriptor(head))
        .then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    path: &Path,
    how: &OpenHow<'_>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    let writable = matches!(how, OpenHow::Writable | OpenHow::Repair);
    Ok(Box::new(Vmdk::open_with(storage, path, writable, options)?))
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    let o = p.options;
    Ok(Box::new(NewVmdk {
        size: p.size,
        subformat: o
            .get("subformat")
            .map(Subformat::parse)
            .unwrap_or(Ok(Subformat::MonolithicSparse)),
        adapter: o.get("adapter_type").unwrap_or("ide").to_string(),
        hwversion: o.get("hwversion").map(str::to_string),
        toolsversion: o.get("toolsversion").unwrap_or("2147483647").to_string(),
        compat6: o.flag("compat6")?,
        zeroed_grain: o.flag("zeroed_grain")?,
        backing: p.backing.clone(),
        preallocation: p.preallocation,
    }))
}
