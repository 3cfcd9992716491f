//! Raw images: the guest sees the file's bytes; holes come from SEEK_HOLE.

use super::driver::common_options::{EXTENT_SIZE_HINT, FILE_PREALLOCATION, NOCOW, SIZE};
use super::driver::{
    Caps, Confidence, CreateParams, FormatDriver, FormattingField, MeasureInput, Measurement,
    NewImage, NodeOptions, OpenHow,
};
use super::Preallocation;
use super::{clip_request, BackingSpec, Description, Extent, Format, FormatKind, Status};
use crate::error::{Error, Result};
use crate::io::{create_storage_with, write_zeros, HostExtent, Storage, StorageOptions};
use std::path::Path;

/// Raw: the file's bytes are the guest's. What a probe falls back to.
pub static DRIVER: FormatDriver = FormatDriver {
    name: "raw",
    probe: |_| Some(Confidence::Fallback),
    probe_tail: None,
    magic: None,
    open: |storage, _path: &Path, _how: &OpenHow<'_>, _options| Ok(Box::new(Raw::open(storage)?)),
    create: create_plan,
    create_options: &[FILE_PREALLOCATION, NOCOW, EXTENT_SIZE_HINT, SIZE],
    formatting: &[
        FormattingField::given("size"),
        FormattingField::given("preallocation"),
        FormattingField::given("nocow"),
        FormattingField::size("extent_size_hint"),
    ],
    amend_options: &[],
    measure: Some(measure),
    node_options: NodeOptions::NONE,
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
        host_is_file: true,
        fallback: true,
        window: true,
    },
};

/// A planned raw image.
#[derive(Debug)]
struct NewRaw {
    size: u64,
    preallocation: Preallocation,
}

impl NewImage for NewRaw {
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        let storage = create_storage_with(file, options)?;
        create(storage.as_ref(), self.size, self.preallocation)?;
        Ok(storage)
    }
}

fn create_plan(p: &CreateParams<'_>) -> Result<Box<dyn NewImage>> {
    Ok(Box::new(NewRaw {
        size: p.size,
        preallocation: p.preallocation,
    }))
}

/// A raw target holds the whole disk (a `--size` rounded to sectors).
fn measure(m: &MeasureInput<'_>) -> Result<Measurement> {
    let size = if m.from_image {
        m.size
    } else {
        m.size.div_ceil(512) * 512
    };
    Ok(Measurement {
        required: size,
        fully_allocated: size,
        bitmaps: None,
    })
}

/// An open raw image.
#[derive(Debug)]
pub struct Raw {
    storage: Box<dyn Storage>,
    size: u64,
}

impl Raw {
    /// Opens a raw image. Its virtual size is the file length rounded up to
    /// 512 bytes, as QEMU sees it.
    pub fn open(storage: Box<dyn Storage>) -> Result<Self> {
        let size = storage.len()?.div_ceil(512) * 512;
        Ok(Raw { storage, size })
    }
}

impl Format for Raw {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn granularity(&self) -> u64 {
        512
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.size)?;
        let (run, status) = match self.storage.extent_at(offset)? {
            HostExtent::Data(n) => (
                n,
                Status::Data {
                    host: Some(super::HostOffset(offset)),
                    compressed: false,
                },
            ),
            HostExtent::Hole(n) => (
                n,
                Status::Zero {
                    host: Some(super::HostOffset(offset)),
                },
            ),
            HostExtent::TrailingHole => (
                len,
                Status::Zero {
                    host: Some(super::HostOffset(offset)),
                },
            ),
        };
        Ok(Extent {
            len: run.clamp(1, len),
            status,
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.storage.read_at(buf, offset)
    }

    fn backing(&self) -> Option<BackingSpec> {
        None
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.storage.write_data_at(buf, offset)
    }

    fn plan_write(&self, guest: super::GuestOffset, len: u64) -> Result<Vec<super::Placement>> {
        // Guest bytes live at the same offsets in the file.
        Ok(vec![super::Placement::Host {
            guest,
            host: super::HostOffset(guest.0),
            len,
        }])
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        self.storage.zero_range(offset, len)
    }

    fn resize(&self, new_size: u64, prealloc: Preallocation) -> Result<()> {
        let old = self.storage.len()?;
        match prealloc {
            Preallocation::Metadata => {
                return Err(Error::unsupported(
                    "Unsupported preallocation mode: metadata",
                ))
            }
            _ if new_size <= old => self.storage.set_len(new_size)?,
            Preallocation::Off => self.storage.set_len(new_size)?,
            Preallocation::Falloc => {
                self.storage.set_len(new_size)?;
                self.storage.allocate(old, new_size - old)?;
            }
            Preallocation::Full => write_zeros(self.storage.as_ref(), old, new_size - old)?,
        }
        self.storage.flush()
    }

    fn flush(&self) -> Result<()> {
        self.storage.flush()
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: None,
            dirty: false,
            need_check: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: None,
            encrypted: false,
        }
    }
}

/// Creates a raw image of `size` bytes (rounded up to 512) in the empty
/// `storage`: sparse, allocated on the host (`falloc`) or written (`full`).
pub fn create(storage: &dyn Storage, size: u64, preallocation: Preallocation) -> Result<()> {
    let size = size.div_ceil(512) * 512;
    storage.set_len(size)?;
    match preallocation {
        Preallocation::Falloc if size > 0 => storage.allocate(0, size)?,
        Preallocation::Full => write_zeros(storage, 0, size)?,
        _ => {}
    }
    storage.flush()
}
