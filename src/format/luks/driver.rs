//! The `luks` entry of the driver table: probing, opening with the
//! secret the options name, and `create` with qemu-img's options.

use super::header::Header;
use super::keys::{make_area, NewArea};
use super::Luks;
use crate::error::{Error, Result};
use crate::format::driver::common_options::{EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE};
use crate::format::driver::{
    Caps, Confidence, CreateOption, CreateParams, FormatDriver, FormattingField, Magic, NewImage,
    NodeOptions, OpenHow,
};
use crate::format::{Format, Preallocation};
use crate::io::{create_storage_with, Storage, StorageOptions};
use std::path::Path;

/// LUKS1, as QEMU's `luks` driver.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "luks",
    probe,
    probe_tail: None,
    magic: Some(Magic {
        bytes: super::header::MAGIC,
        refusal: "Volume is not in LUKS format",
    }),
    open,
    create,
    create_options: &[
        CreateOption::format("cipher-alg", "str", "Name of encryption cipher algorithm"),
        CreateOption::format("cipher-mode", "str", "Name of encryption cipher mode"),
        CreateOption::format(
            "detached-header",
            "bool (on/off)",
            "Create a detached LUKS header",
        ),
        EXTENT_SIZE_HINT,
        CreateOption::format("hash-alg", "str", "Name of encryption hash algorithm"),
        CreateOption::format("iter-time", "num", "Time to spend in PBKDF in milliseconds"),
        CreateOption::format("ivgen-alg", "str", "Name of IV generator algorithm"),
        CreateOption::format(
            "ivgen-hash-alg",
            "str",
            "Name of IV generator hash algorithm",
        ),
        CreateOption::format(
            "key-secret",
            "str",
            "ID of the secret that provides the keyslot passphrase",
        ),
        NOCOW,
        FILE_PREALLOCATION,
        SIZE,
    ],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::given("key-secret"),
        FormattingField::given("cipher-alg"),
        FormattingField::given("cipher-mode"),
        FormattingField::given("ivgen-alg"),
        FormattingField::given("ivgen-hash-alg"),
        FormattingField::given("hash-alg"),
        FormattingField::given("iter-time"),
        FormattingField::given("detached-header"),
        FormattingField::given("nocow"),
        FormattingField::given("preallocation"),
        FormattingField::size("extent_size_hint"),
    ],
    amend_options: &[],
    measure: None,
    node_options: NodeOptions {
        accepted: &[],
        refused: &[("header", "detached LUKS headers are not supported")],
        encrypt: false,
        secret: Some("key-secret"),
    },
    caps: Caps {
        writable: true,
        backing: false,
        snapshots: false,
        compression: false,
        bitmaps: false,
        check: false,
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
    Header::probe(head).then_some(Confidence::Magic)
}

fn open(
    storage: Box<dyn Storage>,
    _path: &Path,
    _how: &OpenHow<'_>,
    options: &StorageOptions,
) -> Result<Box<dyn Format>> {
    Ok(Box::new(Luks::open(storage, options)?))
}

/// A planned LUKS image.
#[derive(Debug)]
struct NewLuks {
    size: u64,
    /// The area choices, or the error they gave (reported after the
    /// formatting line, as qemu-img does).
    area: std::result::Result<NewArea, String>,
    key_secret: Option<String>,
    detached: bool,
    preallocation: Preallocation,
}

impl NewImage for NewLuks {
    fn validate(&self) -> Result<()> {
        if self.detached {
            return Err(Error::argument("Parameter 'detached-header' is unexpected"));
        }
        self.area.as_ref().map_err(|e| Error::argument(e.clone()))?;
        if self.key_secret.is_none() {
            return Err(super::key_required("key-secret"));
        }
        Ok(())
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        self.validate()?;
        let area = self.area.as_ref().map_err(|e| Error::argument(e.clone()))?;
        let password = options.with_key_secret(self.key_secret.clone());
        let password = password.key()?.expect("validated");
        let made = make_area(area, password)?;
        let storage = create_storage_with(file, options)?;
        let payload = made.header.payload_bytes();
        storage.write_at(&made.bytes, 0)?;
        storage.set_len(payload + self.size)?;
        if self.preallocation != Preallocation::Off && self.size > 0 {
            storage.allocate(payload, self.size)?;
        }
        storage.flush()?;
        Ok(storage)
    }
}

fn create(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    let o = p.options;
    Ok(Box::new(NewLuks {
        size: p.size.div_ceil(512) * 512,
        area: super::options::new_area(o, "").map_err(|e| e.message().to_string()),
        key_secret: o.get("key-secret").map(str::to_string),
        detached: o.flag("detached-header")?,
        preallocation: p.preallocation,
    }))
}
