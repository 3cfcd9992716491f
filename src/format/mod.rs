//! Image formats. Each format lives in its own module and the rest of the
//! program sees it only through the [`Format`] trait.

pub mod bitmap;
pub mod check;
pub mod driver;
pub mod luks;
pub mod placement;
pub mod probe;
pub mod qcow2;
pub mod qed;
pub mod raw;
pub mod registry;
pub mod safety;
pub mod table_cache;
pub mod vdi;
pub mod vhdx;
pub mod vmdk;
pub mod vpc;

pub use driver::{Caps, FormatDriver, OpenHow};
pub use probe::{
    open_as, open_as_with, open_image, open_image_with, open_image_writable,
    open_image_writable_with, open_storage, open_storage_for_repair, FormatKind,
};

use crate::error::{Error, Result};
use crate::io::Storage;
pub use placement::{GuestOffset, HostOffset, Placement};
use std::fmt;
use std::sync::{Arc, Mutex};

/// How a range of one layer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Data is stored in this layer.
    Data {
        /// Where it lives in the data file, when it is stored plainly.
        host: Option<HostOffset>,
        /// A compressed cluster.
        compressed: bool,
    },
    /// Reads as zeros without consulting the backing file.
    Zero {
        /// The host space reserved for it, if any.
        host: Option<HostOffset>,
    },
    /// Not stored here: reads from the backing file (or as zeros without one).
    Unallocated {
        /// Host space already reserved for it (extended L2), if any.
        host: Option<HostOffset>,
    },
}

impl Status {
    /// The status of the byte `delta` bytes further on, if the run continued.
    pub fn advanced(self, delta: u64) -> Status {
        let shift = |h: Option<HostOffset>| h.map(|h| HostOffset(h.0 + delta));
        match self {
            Status::Data { host, compressed } => Status::Data {
                host: shift(host),
                compressed,
            },
            Status::Zero { host } => Status::Zero { host: shift(host) },
            Status::Unallocated { host } => Status::Unallocated { host: shift(host) },
        }
    }

    /// The host offset of the range's first byte, when it has one.
    pub fn host(&self) -> Option<HostOffset> {
        match *self {
            Status::Data { host, .. } | Status::Zero { host } | Status::Unallocated { host } => {
                host
            }
        }
    }
}

/// One run of bytes with the same status, starting at the queried offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The length of the run in bytes (at least 1).
    pub len: u64,
    /// Its status.
    pub status: Status,
}

/// The backing file an image names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingSpec {
    /// The name exactly as stored in the image.
    pub name: String,
    /// The recorded format, if any.
    pub format: Option<String>,
}

/// One internal snapshot, as `info` and `snapshot -l` list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The unique ID ("1", "2", ...).
    pub id: String,
    /// The name (tag).
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub date_sec: u32,
    /// Creation time, nanoseconds part.
    pub date_nsec: u32,
    /// Guest run time in nanoseconds.
    pub vm_clock_nsec: u64,
    /// Size of the saved VM state.
    pub vm_state_size: u64,
    /// Instruction count, when recorded.
    pub icount: Option<u64>,
}

/// One persistent dirty bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapInfo {
    /// The bitmap's name.
    pub name: String,
    /// Bytes per bit.
    pub granularity: u64,
    /// The in_use flag (the bitmap may be inconsistent).
    pub in_use: bool,
    /// The auto flag (tracks writes automatically).
    pub auto: bool,
}

/// A format's own facts for `info` (qemu-img's `format-specific` object):
/// the renderers turn it into JSON and into the human dump, so a format
/// says what it knows without knowing either output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpecific {
    /// The object's `type` (the format's name).
    pub kind: &'static str,
    /// Its `data`, in the order qemu-img prints the keys.
    pub data: Vec<(&'static str, Fact)>,
}

/// One value of a [`FormatSpecific`] object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A string.
    Str(String),
    /// A number.
    Int(u64),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(Vec<Fact>),
    /// An object, keys in order.
    Object(Vec<(&'static str, Fact)>),
}

/// What `info` needs to know about an image beyond size and backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The cluster size, for formats that have one.
    pub cluster_size: Option<u64>,
    /// The image was not closed cleanly (qcow2 dirty bit).
    pub dirty: bool,
    /// QED's need-check flag.
    pub need_check: bool,
    /// Internal snapshots.
    pub snapshots: Vec<SnapshotInfo>,
    /// Persistent dirty bitmaps (formats with `Caps::bitmaps`; only when
    /// the image's bitmap metadata is consistent).
    pub bitmaps: Vec<BitmapInfo>,
    /// The format's own facts, if it has any.
    pub specific: Option<FormatSpecific>,
    /// Guest data is encrypted (LUKS).
    pub encrypted: bool,
}

/// A guest view that can be read: what lies below a layer.
pub trait GuestRead: Send + Sync + fmt::Debug {
    /// Its size; reads past it return zeros.
    fn virtual_size(&self) -> u64;
    /// Reads guest bytes at `offset` (zeros past the size).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// How many reads to keep in flight (see `Storage::requests_in_flight`).
    fn requests_in_flight(&self) -> usize {
        1
    }
}

/// An open image of some format, read side. `&self` everywhere, so parallel
/// workers can share one image.
pub trait Format: Send + Sync + fmt::Debug {
    /// The driver of the image's format (its name and capabilities).
    fn driver(&self) -> FormatKind;
    /// The format's name as qemu-img spells it (for messages).
    fn format_name(&self) -> &'static str {
        self.driver().name
    }
    /// The guest-visible size in bytes.
    fn virtual_size(&self) -> u64;
    /// The allocation unit (cluster, or subcluster with extended L2).
    fn granularity(&self) -> u64;
    /// The status of the run starting at `offset`, at most `len` bytes long
    /// and never past the virtual size. `offset` must be below the virtual size.
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent>;
    /// Reads this layer only: unallocated ranges read as zeros.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// The backing file this image names (as [`Format::set_backing`] last
    /// recorded it, else as opened), if any.
    fn backing(&self) -> Option<BackingSpec>;
    /// The image file.
    fn storage(&self) -> &dyn Storage;
    /// The file host offsets refer to (the image file, or an external data file).
    fn data_storage(&self) -> &dyn Storage {
        self.storage()
    }
    /// The file and the offset in it that host offset `host` (of
    /// [`Format::data_storage`]) names, for an image whose data lies in
    /// several files (extents); `None`: the data storage itself, as is.
    fn host_file(&self, host: HostOffset) -> Option<(&std::path::Path, u64)> {
        let _ = host;
        None
    }
    /// Files besides [`Format::storage`] that hold the image's data and
    /// that `info` lists as child nodes (`extents.0`, ...) before `file`.
    fn extent_files(&self) -> Vec<&dyn Storage> {
        Vec::new()
    }
    /// What makes this image, readable as it is, unfit to accept from a
    /// stranger (`check --safety`): subformats that spread a disk over
    /// several files, metadata the reader skips. Empty for most formats.
    fn upload_concerns(&self) -> Vec<safety::Finding> {
        Vec::new()
    }
    /// Every cluster written must arrive compressed
    /// ([`Format::compress_cluster`], [`Format::write_compressed`]): a copy
    /// into the image compresses whether or not `-c` was given.
    fn writes_compressed(&self) -> bool {
        false
    }
    /// Whether a newly created image reads as zeros (so a copy into it
    /// may skip zero ranges). An encrypted payload reads as noise.
    fn zero_initialized(&self) -> bool {
        true
    }
    /// Whether data ranges should be checked against holes in the host file
    /// to report them as zero (qemu-img does so for metadata-preallocated qcow2).
    fn data_may_be_host_holes(&self) -> Result<bool> {
        Ok(false)
    }
    /// Facts for `info`.
    fn describe(&self) -> Description;
    /// Checks the metadata read-only, sending qemu-img's per-problem lines
    /// to `log`. `None` when the format has no check (raw).
    fn check(&self, log: &mut dyn FnMut(String)) -> Result<Option<check::CheckReport>> {
        let _ = log;
        Ok(None)
    }
    /// Writes guest bytes into this layer (partial clusters are completed
    /// from the layer's current content or its attached backing reader).
    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let _ = (offset, buf);
        Err(Error::unsupported(format!(
            "writing {} images is not supported",
            self.format_name()
        )))
    }
    /// Phase one of a two-phase write (see [`placement`]) of `len` bytes
    /// at `guest`: decides, under the metadata lock, where each piece goes
    /// (new host clusters are allocated here, in guest order, so the file
    /// is laid out sequentially). The caller writes every
    /// [`Placement::Host`] piece to [`Format::data_storage`], then hands
    /// those pieces to [`Format::publish`]; [`Placement::Serial`] pieces it
    /// writes with [`Format::write`]. Pieces planned and not yet published
    /// must not overlap any other write. By default every piece is serial.
    fn plan_write(&self, guest: GuestOffset, len: u64) -> Result<Vec<Placement>> {
        Ok(vec![Placement::Serial { guest, len }])
    }
    /// Phase three of a two-phase write: makes host pieces from
    /// [`Format::plan_write`] part of the image (L2 entries, refcounts),
    /// after their data writes have returned. Serial pieces are ignored.
    /// What the data needs to be durable (a flush before the tables that
    /// point at it) is the format's to order, as for any write.
    fn publish(&self, placed: &[Placement]) -> Result<()> {
        let _ = placed;
        Ok(())
    }
    /// Makes the image's metadata caches draw on `budget`, shared with the
    /// other images of its chain (so a deep chain holds one budget's worth
    /// of tables, not one per layer). By default nothing is cached.
    fn share_cache_budget(&self, budget: &Arc<table_cache::CacheBudget>) {
        let _ = budget;
    }
    /// Gives back what [`Format::plan_write`] reserved for host pieces
    /// whose data will not be written (a write failed, the disk is full):
    /// new clusters nothing points at are freed, so no leak is left. Best
    /// effort: what cannot be given back is leaked, which is safe.
    fn abandon(&self, placed: &[Placement]) -> Result<()> {
        let _ = placed;
        Ok(())
    }
    /// Makes a range read as zeros; `unmap` allows releasing its space.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<()> {
        let _ = (offset, len, unmap);
        Err(Error::unsupported(format!(
            "writing {} images is not supported",
            self.format_name()
        )))
    }
    /// Releases whole clusters of a range (advisory: may do nothing).
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Compresses one whole cluster as this image encodes compressed
    /// clusters; `None` when it does not shrink (or the format has none).
    fn compress_cluster(&self, cluster: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = cluster;
        Ok(None)
    }
    /// Stores the guest cluster at `offset` (cluster aligned) as the
    /// compressed bytes `data` (from [`Format::compress_cluster`]).
    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<()> {
        let _ = (offset, data);
        Err(Error::unsupported(format!(
            "compressed clusters are not supported by {} images",
            self.format_name()
        )))
    }
    /// Makes every completed write durable, metadata included.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Records a new backing file (or none), after a flush, with one header write.
    fn set_backing(&self, backing: Option<BackingSpec>) -> Result<()> {
        let _ = backing;
        Err(Error::unsupported(format!(
            "{} images have no backing file",
            self.format_name()
        )))
    }
    /// Drops every allocation of the active layer, so the image reads its
    /// backing file everywhere, and gives the space back. Each step leaves
    /// a consistent image (leaked clusters at most).
    fn make_empty(&self) -> Result<()> {
        Err(Error::unsupported(format!(
            "{} images cannot be emptied",
            self.format_name()
        )))
    }
    /// Changes the virtual size to `new_size`, as `qemu-img resize`: a
    /// grown range is preallocated as `prealloc` says (formats support
    /// what they can), and reads as zeros even where a longer backing file
    /// lies below it (the backing view must be attached to know); a
    /// shrink drops everything past the new end. Each step leaves a
    /// consistent image that shows the old or the new size, with the guest
    /// data below the smaller of them intact. The image must not be used
    /// afterwards (open it again).
    fn resize(&self, new_size: u64, prealloc: Preallocation) -> Result<()> {
        let _ = (new_size, prealloc);
        Err(Error::unsupported(format!(
            "{} images cannot be resized",
            self.format_name()
        )))
    }
    /// Internal snapshots, for formats that keep them (`Caps::snapshots`).
    fn snapshots(&self) -> Option<&dyn InternalSnapshots> {
        None
    }
    /// Changing options in place, for formats with `Caps::amend`.
    fn amender(&self) -> Option<&dyn Amend> {
        None
    }
    /// The image's persistent dirty bitmaps, for formats that store them
    /// (qcow2, version 2 images included: they list none and refuse new
    /// ones); `None` for formats that have no bitmaps at all.
    fn bitmaps(&self) -> Option<&dyn bitmap::BitmapStore> {
        None
    }
    /// Tells the image which image its chain opened as its backing file
    /// (every layer but the last, read-only or not), for formats that
    /// check what they find there (a VMDK's `parentCID`).
    fn note_backing(&self, backing: &dyn Format) {
        let _ = backing;
    }
    /// Gives a writable layer the guest view below it, to complete partial
    /// writes over unallocated ranges.
    fn attach_backing(&self, backing: Arc<dyn GuestRead>) {
        let _ = backing;
    }
    /// Checks and repairs in place (the image must have been opened for
    /// writing). Returns the verdict of that pass with what was fixed, or
    /// `None` when the format has no check.
    fn repair(
        &self,
        mode: check::Repair,
        log: &mut dyn FnMut(String),
    ) -> Result<Option<check::CheckReport>> {
        let _ = (mode, log);
        Ok(None)
    }
}

/// Internal snapshots of an image (`Caps::snapshots`), reached through
/// [`Format::snapshots`]. Each call leaves the image to be opened again.
pub trait InternalSnapshots {
    /// Takes an internal snapshot of the active layer, as `qemu-img snapshot
    /// -c`: afterwards the snapshot shares every cluster with the active
    /// layer and later writes copy on write. Each step leaves a consistent
    /// image in which the snapshot either exists whole or not at all. The
    /// image must not be used afterwards (open it again).
    fn create_snapshot(&self, snapshot: &NewSnapshot) -> Result<()>;
    /// Makes the internal snapshot `id_or_name` (an ID first, then a name,
    /// as qemu-img looks them up) the active layer, with its virtual size,
    /// as `qemu-img snapshot -a`. The active layer shows either its old or
    /// the snapshot's content at every instant. Open the image again to use it.
    fn apply_snapshot(&self, id_or_name: &str) -> Result<()>;
    /// Deletes the first internal snapshot called `name` (qemu-img looks
    /// it up by name only, not by ID) and gives back the clusters only it
    /// used, as `qemu-img snapshot -d`. Open the image again to use it.
    fn delete_snapshot(&self, name: &str) -> Result<()>;
}

/// Changing the options of an existing image (`Caps::amend`), reached
/// through [`Format::amender`].
pub trait Amend {
    /// Changes the options of an existing image (the driver's
    /// `amend_options`), as `qemu-img amend`:
    /// each step leaves a consistent image (leaked clusters at most) that
    /// shows the guest the same data, and the header that makes a change
    /// current is written last, in one write. The image must not be used
    /// afterwards (open it again). `progress` hears (steps done, steps in
    /// all) as the work goes, the steps qemu-img reports.
    fn amend(&self, options: &AmendOptions, progress: &mut dyn FnMut(u64, u64)) -> Result<()>;
}

/// One option `amend -o help` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmendOption {
    /// Its name (`lazy_refcounts`).
    pub name: &'static str,
    /// qemu-img's type word: `str`, `size`, `num` or `bool (on/off)`.
    pub kind: &'static str,
    /// What it changes, in one line.
    pub about: &'static str,
}

/// The changes `amend` asks for; `None` leaves a property as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmendOptions {
    /// The header version to end with: 2 (compat=0.10) or 3 (compat=1.1).
    pub version: Option<u32>,
    /// Whether refcount updates may be postponed (version 3 only).
    pub lazy_refcounts: Option<bool>,
    /// The width of a refcount entry, in bits.
    pub refcount_bits: Option<u32>,
    /// A new virtual size.
    pub size: Option<u64>,
    /// A new name for the external data file (only where there is one).
    pub data_file: Option<String>,
}

/// What a new internal snapshot records besides the disk it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSnapshot {
    /// Its name (tag); need not be unique, as with qemu-img.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub date_sec: u32,
    /// Creation time, nanoseconds part.
    pub date_nsec: u32,
}

/// How much of the image to reserve when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    /// Metadata only; the file stays small.
    #[default]
    Off,
    /// Every L2 table and data cluster reserved in the metadata; the file is sparse.
    Metadata,
    /// As metadata, with the data area allocated on the host (fallocate).
    Falloc,
    /// As metadata, with the data area written with zeros.
    Full,
}

impl Preallocation {
    /// Parses qemu-img's names (off, metadata, falloc, full).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(Preallocation::Off),
            "metadata" => Ok(Preallocation::Metadata),
            "falloc" => Ok(Preallocation::Falloc),
            "full" => Ok(Preallocation::Full),
            other => Err(Error::argument(format!(
                "Invalid preallocation mode: '{other}' (off, metadata, falloc or full)"
            ))),
        }
    }

    /// qemu-img's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Preallocation::Off => "off",
            Preallocation::Metadata => "metadata",
            Preallocation::Falloc => "falloc",
            Preallocation::Full => "full",
        }
    }

    /// Whether data clusters are reserved in the metadata.
    pub fn reserves_clusters(self) -> bool {
        self != Preallocation::Off
    }
}

/// The backing file an image names and, once the chain attaches it, the
/// guest view below the image (what partial writes over unallocated ranges
/// are completed from).
#[derive(Debug)]
pub(crate) struct Backing {
    spec: Mutex<Option<BackingSpec>>,
    below: Mutex<Option<Arc<dyn GuestRead>>>,
}

impl Backing {
    /// The backing file `spec` names (none for `None`), no view attached yet.
    pub fn new(spec: Option<BackingSpec>) -> Self {
        Backing {
            spec: Mutex::new(spec),
            below: Mutex::new(None),
        }
    }

    /// The backing file the image names now.
    pub fn spec(&self) -> Option<BackingSpec> {
        lock(&self.spec).clone()
    }

    /// Whether the image names a backing file.
    pub fn exists(&self) -> bool {
        lock(&self.spec).is_some()
    }

    /// Attaches the guest view below the image.
    pub fn attach(&self, below: Arc<dyn GuestRead>) {
        *lock(&self.below) = Some(below);
    }

    /// Records that the image now names `spec` (its header says so): the
    /// view attached for the old backing file no longer applies.
    pub fn replace(&self, spec: Option<BackingSpec>) {
        *lock(&self.spec) = spec;
        *lock(&self.below) = None;
    }

    /// Whether what lies below reaches past `offset`: a backing view longer
    /// than that is attached. An image that names a backing file with no
    /// view attached refuses, since the answer is unknown.
    pub fn reaches_past(&self, offset: u64) -> Result<bool> {
        let below = lock(&self.below).clone();
        match below {
            Some(r) => Ok(r.virtual_size() > offset),
            None if self.exists() => Err(Error::unsupported(
                "the backing file is not open, so qimg cannot tell what a grown range would show",
            )),
            None => Ok(false),
        }
    }

    /// Reads guest bytes from below: the attached view, or zeros when the
    /// image has no backing file. An image that names a backing file but
    /// has no view attached refuses: copying zeros instead would silently
    /// change what the guest sees.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let below = lock(&self.below).clone();
        match below {
            Some(r) => r.read(offset, buf),
            None if self.exists() => Err(Error::unsupported(
                "the backing file is not open, so a partial write cannot copy from it",
            )),
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }
}

/// Locks `m`, whose holder cannot leave it half-changed (plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks that a write of `len` bytes at `offset` fits a `size`-byte image.
pub(crate) fn check_write_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::new(
            crate::error::ErrorKind::OutOfBounds,
            format!("write of {len} bytes at {offset} is past the virtual size {size}"),
        )),
    }
}

/// Checks a request against the virtual size and clips it.
pub(crate) fn clip_request(offset: u64, len: u64, size: u64) -> Result<u64> {
    if offset >= size {
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::OutOfBounds,
            format!("offset {offset} is past the virtual size {size}"),
        ));
    }
    Ok(len.min(size - offset))
}

/// Reads one layer at `offset`, extent by extent: stored data from its data
/// file, compressed clusters through `decompress` (given the guest offset),
/// and zeros for everything else (zero and unallocated ranges).
pub(crate) fn read_layer(
    image: &dyn Format,
    offset: u64,
    buf: &mut [u8],
    decompress: impl FnMut(u64, &mut [u8]) -> Result<()>,
) -> Result<()> {
    read_layer_with(
        &|o, l| image.block_status(o, l),
        image.data_storage(),
        offset,
        buf,
        decompress,
    )
}

/// As [`read_layer`], with the status (host offsets included) from
/// `status` and stored data from `data`.
pub(crate) fn read_layer_with(
    status: &dyn Fn(u64, u64) -> Result<Extent>,
    data: &dyn Storage,
    offset: u64,
    buf: &mut [u8],
    mut decompress: impl FnMut(u64, &mut [u8]) -> Result<()>,
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let ext = status(pos, (buf.len() - done) as u64)?;
        let chunk = &mut buf[done..done + ext.len as usize];
        match ext.status {
            Status::Data {
                compressed: true, ..
            } => decompress(pos, chunk)?,
            Status::Data { host: Some(h), .. } => data.read_at(chunk, h.0)?,
            _ => chunk.fill(0),
        }
        done += chunk.len();
    }
    Ok(())
}
