//! VMDK: a descriptor (embedded in a sparse extent, or a text file of its
//! own) naming one or more extents — hosted sparse extents (`KDMV`, grain
//! directory and tables; compressed grains behind markers in a
//! streamOptimized file) and flat (raw) files.
//!
//! Extent files are resolved relative to the descriptor's directory and
//! must lie inside it: a descriptor naming an absolute path or a path
//! through `..` is refused (a downloaded image must not read the host's
//! files). Only `RW` extent lines make the disk, as with QEMU. Descriptors
//! do not name other descriptors, so extents cannot loop.

mod create;
pub mod descriptor;
mod driver;
pub mod header;
mod pending;
pub mod spans;
pub mod sparse;

pub use driver::DRIVER;

use super::placement::{push_host, push_serial};
use super::safety::Finding;
use super::{
    clip_request, Backing, BackingSpec, Description, Extent, Fact, Format, FormatKind,
    FormatSpecific, GuestOffset, GuestRead, HostOffset, Placement, Status,
};
use crate::error::{Error, Result};
use crate::io::{
    open_read_storage_with, open_writable_storage_with, Admission, Refusal, RefusedKind,
    RefusedStorage, Storage, StorageOptions,
};
use descriptor::{Descriptor, ExtentKind, MAX_DESCRIPTOR};
use header::{SparseHeader, SECTOR};
use spans::{Span, Spans};
use sparse::{Grain, SparseExtent};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// How one extent stores its bytes.
#[derive(Debug)]
enum Layout {
    /// A raw file from byte `start`.
    Flat {
        storage: Arc<dyn Storage>,
        start: u64,
    },
    /// A hosted sparse extent.
    Sparse(Box<SparseExtent>),
}

/// One extent of the disk.
#[derive(Debug)]
struct Ext {
    /// Where it starts in the guest.
    guest_start: u64,
    /// Its guest bytes.
    len: u64,
    layout: Layout,
    /// The file name as `info` shows it.
    filename: String,
    /// The descriptor's type word (empty for a monolithic sparse file).
    word: &'static str,
}

/// An open VMDK image.
#[derive(Debug)]
pub struct Vmdk {
    /// The descriptor file, or the monolithic sparse file.
    file: Arc<dyn Storage>,
    spans: Spans,
    extents: Vec<Ext>,
    size: u64,
    descriptor: Descriptor,
    create_type: String,
    /// The descriptor is a file of its own (its extents are child nodes).
    separate: bool,
    writable: bool,
    /// The parent (`parentFileNameHint`) and, once the chain attaches it,
    /// the guest view below: unallocated grains read from it.
    backing: Backing,
    /// Where the descriptor text lives in [`Vmdk::file`]: its offset and
    /// the bytes reserved for it (the file's length for a descriptor file).
    descriptor_area: (u64, u64),
    /// The CID was renewed in this session (on the first write, as QEMU
    /// does, so that images whose `parentCID` names the old content see
    /// that it changed).
    cid_renewed: std::sync::atomic::AtomicBool,
    /// The CID of the parent the chain opened, when it is not this
    /// image's `parentCID`: unallocated grains cannot be read through it.
    parent_mismatch: std::sync::OnceLock<u32>,
}

/// The parent a descriptor names, as QEMU reads it: the hint, in VMDK.
fn parent_of(d: &Descriptor) -> Option<BackingSpec> {
    d.parent_hint.as_ref().map(|name| BackingSpec {
        name: name.clone(),
        format: Some("vmdk".to_string()),
    })
}

impl Drop for Vmdk {
    fn drop(&mut self) {
        // Best effort, as for the other formats: grains written since the
        // last flush get their table entries (a stream its tail).
        if self.writable {
            let _ = self.flush_all();
        }
    }
}

/// The create types a descriptor file may have, as QEMU accepts them.
const SEPARATE_TYPES: &[&str] = &[
    "monolithicFlat",
    "vmfs",
    "vmfsSparse",
    "seSparse",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
];

/// Resolves extent file `name` of the descriptor at `descriptor`: inside
/// its directory only, unless `allow_outside`.
fn extent_path(descriptor: &Path, name: &str, allow_outside: bool) -> Result<PathBuf> {
    // A URL or a `json:` name would make qimg fetch data from wherever the
    // image says (QEMU opens such an extent through its network drivers).
    let elsewhere = name.contains("://") || name.starts_with("nbd:") || name.starts_with("json:");
    if elsewhere && !allow_outside {
        return Err(Error::unsupported(format!(
            "extent file '{name}' is a network or json: name, not a file beside the \
             descriptor; qimg refuses it (set QIMG_ALLOW_OUTSIDE_EXTENTS=1 to open it anyway)"
        )));
    }
    let p = Path::new(name);
    let outside = !allow_outside
        && (p.is_absolute()
            || p.components().any(|c| {
                matches!(
                    c,
                    Component::ParentDir | Component::RootDir | Component::Prefix(_)
                )
            }));
    if outside {
        return Err(Error::unsupported(format!(
            "extent file '{name}' lies outside the directory of the descriptor; qimg refuses \
             extents that are absolute paths or go through '..' (move the files beside the \
             descriptor, or set QIMG_ALLOW_OUTSIDE_EXTENTS=1 to open it anyway)"
        )));
    }
    Ok(crate::paths::resolve_relative_to(descriptor, name))
}

/// The subformats accepted from strangers: one file holding the disk.
const UPLOADABLE_TYPES: [&str; 2] = ["monolithicSparse", "streamOptimized"];

fn open_extent_file(
    path: &Path,
    writable: bool,
    options: &StorageOptions,
) -> Result<Arc<dyn Storage>> {
    let opened = if writable {
        open_writable_storage_with(path, options)
    } else {
        open_read_storage_with(path, options)
    };
    opened.map(Arc::from).map_err(|e| {
        Error::new(
            e.kind(),
            format!("Could not open '{}': {}", path.display(), e.detail()),
        )
    })
}

impl Vmdk {
    /// Opens the VMDK held by `storage`, known as `path` (extent files are
    /// found beside it).
    pub fn open(storage: Box<dyn Storage>, path: &Path, writable: bool) -> Result<Self> {
        Self::open_with(storage, path, writable, &StorageOptions::default())
    }

    /// As [`Vmdk::open`], extent files opened with `options` (which also
    /// say whether they may lie outside the descriptor's directory).
    pub fn open_with(
        storage: Box<dyn Storage>,
        path: &Path,
        writable: bool,
        options: &StorageOptions,
    ) -> Result<Self> {
        let file: Arc<dyn Storage> = Arc::from(storage);
        let len = file.len()?;
        let mut head = vec![0u8; len.min(512) as usize];
        file.read_at(&mut head, 0)?;
        if SparseHeader::has_magic(&head) {
            return Self::open_monolithic(file, path, writable);
        }
        if !descriptor::looks_like_descriptor(&head) {
            return Err(Error::invalid("invalid VMDK image descriptor"));
        }
        if len > MAX_DESCRIPTOR {
            return Err(Error::invalid(format!(
                "the VMDK descriptor file is {len} bytes long; at most {MAX_DESCRIPTOR} are read"
            )));
        }
        let mut text = vec![0u8; len as usize];
        file.read_at(&mut text, 0)?;
        let d = Descriptor::parse(&text)?;
        let Some(create_type) = d.create_type.clone() else {
            return Err(Error::invalid("invalid VMDK image descriptor"));
        };
        if !SEPARATE_TYPES.contains(&create_type.as_str()) {
            return Err(Error::unsupported(format!(
                "Unsupported image type '{create_type}'"
            )));
        }
        let mut extents = Vec::new();
        let mut spans = Vec::new();
        let mut guest = 0u64;
        for line in d.extents.iter().filter(|l| l.read_write) {
            if line.kind == ExtentKind::Zero {
                continue;
            }
            let bytes = line
                .sectors
                .checked_mul(SECTOR)
                .filter(|&b| guest.checked_add(b).is_some_and(|e| e <= i64::MAX as u64))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "the VMDK extents add up to more than 2^63 bytes (extent '{}')",
                        line.file
                    ))
                })?;
            let admitted = options
                .trust
                .admit(RefusedKind::ExtentFile, &line.file, path)?;
            if admitted == Admission::Skip {
                // Described from the descriptor alone; reads are refused.
                let storage: Arc<dyn Storage> = Arc::new(RefusedStorage::new(Refusal {
                    kind: RefusedKind::ExtentFile,
                    name: line.file.clone(),
                    by: path.to_path_buf(),
                }));
                spans.push(Span {
                    storage: Some(storage.clone()),
                    holes_are_zero: true,
                });
                extents.push(Ext {
                    guest_start: guest,
                    len: bytes,
                    layout: Layout::Flat { storage, start: 0 },
                    filename: line.file.clone(),
                    word: line.kind.word(),
                });
                guest += bytes;
                continue;
            }
            let ext_path = extent_path(path, &line.file, options.outside_extents)?;
            let storage = open_extent_file(&ext_path, writable, options)?;
            let filename = ext_path.display().to_string();
            let (layout, holes) = match line.kind {
                ExtentKind::Flat | ExtentKind::Vmfs => {
                    let start = line.offset.checked_mul(SECTOR).ok_or_else(|| {
                        Error::invalid(format!("Invalid extent line: offset of '{}'", line.file))
                    })?;
                    (
                        Layout::Flat {
                            storage: storage.clone(),
                            start,
                        },
                        true,
                    )
                }
                ExtentKind::Sparse => {
                    let ext = SparseExtent::open(storage.clone(), writable).map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!("Could not open '{}': {}", ext_path.display(), e.message()),
                        )
                    })?;
                    (Layout::Sparse(Box::new(ext)), false)
                }
                ExtentKind::Zero => unreachable!("skipped above"),
            };
            spans.push(Span {
                storage: Some(storage),
                holes_are_zero: holes,
            });
            extents.push(Ext {
                guest_start: guest,
                len: bytes,
                layout,
                filename,
                word: line.kind.word(),
            });
            guest += bytes;
        }
        if spans.len() > 1 << (64 - spans::SPAN_SHIFT) {
            return Err(Error::invalid("the VMDK descriptor has too many extents"));
        }
        Ok(Vmdk {
            file,
            spans: Spans::new(spans, path.to_path_buf()),
            extents,
            size: guest,
            backing: Backing::new(parent_of(&d)),
            descriptor: d,
            create_type,
            separate: true,
            writable,
            descriptor_area: (0, len),
            cid_renewed: Default::default(),
            parent_mismatch: Default::default(),
        })
    }

    fn open_monolithic(file: Arc<dyn Storage>, path: &Path, writable: bool) -> Result<Self> {
        let ext = SparseExtent::open(file.clone(), writable)?;
        let h = ext.header;
        let mut descriptor = Descriptor {
            parent_cid: descriptor::NO_PARENT,
            ..Default::default()
        };
        if h.desc_offset != 0 && h.desc_sectors != 0 {
            let n = h.desc_sectors.saturating_mul(SECTOR).min(MAX_DESCRIPTOR);
            let mut raw = vec![0u8; n as usize];
            file.read_at(&mut raw, h.desc_offset.saturating_mul(SECTOR))?;
            descriptor = Descriptor::parse(&raw)?;
        }
        let create_type = if h.compressed() {
            "streamOptimized"
        } else {
            "monolithicSparse"
        };
        let size = ext.len();
        let filename = path.display().to_string();
        Ok(Vmdk {
            spans: Spans::new(
                vec![Span {
                    storage: Some(file.clone()),
                    holes_are_zero: false,
                }],
                path.to_path_buf(),
            ),
            file,
            extents: vec![Ext {
                guest_start: 0,
                len: size,
                layout: Layout::Sparse(Box::new(ext)),
                filename,
                word: "",
            }],
            size,
            backing: Backing::new(parent_of(&descriptor)),
            descriptor,
            create_type: create_type.to_string(),
            separate: false,
            writable,
            descriptor_area: (
                h.desc_offset.saturating_mul(SECTOR),
                h.desc_sectors.saturating_mul(SECTOR).min(MAX_DESCRIPTOR),
            ),
            cid_renewed: Default::default(),
            parent_mismatch: Default::default(),
        })
    }

    /// For an image with a parent: what the parent shows at a byte offset
    /// of extent `i` (partial writes over unallocated grains keep it).
    fn parent_of_extent(&self, i: usize) -> Option<Box<sparse::ParentRead<'_>>> {
        if !self.backing.exists() {
            return None;
        }
        let start = self.extents[i].guest_start;
        Some(Box::new(move |at, buf| self.backing.read(start + at, buf)))
    }

    /// Gives the image a new CID before its first write of the session,
    /// as QEMU does: an image whose `parentCID` names this one then sees
    /// that its parent changed. Only the digits of the `CID=` line are
    /// rewritten, and with as many digits, so a torn write still leaves a
    /// valid descriptor; the flush puts the new CID before any data.
    fn renew_cid(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let (at, area) = self.descriptor_area;
        if !self.writable
            || area == 0
            || self.stream().is_some()
            || self.cid_renewed.swap(true, Ordering::SeqCst)
        {
            return Ok(());
        }
        let mut text = vec![0u8; area as usize];
        self.file.read_at(&mut text, at)?;
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        if let Some((pos, digits)) = descriptor::renewed_cid(&text[..end], create::random_cid) {
            self.file.write_at(&digits, at + pos as u64)?;
            self.file.flush()?;
        }
        Ok(())
    }

    /// The index of the extent holding guest byte `offset`.
    fn extent_at(&self, offset: u64) -> usize {
        self.extents
            .partition_point(|e| e.guest_start + e.len <= offset)
            .min(self.extents.len().saturating_sub(1))
    }

    /// Calls `f` for each piece of `[offset, offset + len)` within one
    /// extent: (extent index, offset in the extent, piece length, offset
    /// of the piece from `offset`).
    fn pieces(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(usize, u64, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0;
        while done < len {
            let pos = offset + done;
            let i = self.extent_at(pos);
            let e = &self.extents[i];
            let within = pos - e.guest_start;
            let n = (e.len - within).min(len - done);
            f(i, within, n, done)?;
            done += n;
        }
        Ok(())
    }

    fn flush_all(&self) -> Result<()> {
        for e in &self.extents {
            match &e.layout {
                Layout::Sparse(s) => s.flush()?,
                Layout::Flat { storage, .. } => storage.flush()?,
            }
        }
        Ok(())
    }

    fn stream(&self) -> Option<&SparseExtent> {
        match self.extents.as_slice() {
            [Ext {
                layout: Layout::Sparse(s),
                ..
            }] if s.header.compressed() => Some(s),
            _ => None,
        }
    }

    /// The status of the grain holding byte `within` of sparse extent `i`.
    fn sparse_status(&self, i: usize, s: &SparseExtent, within: u64) -> Result<Status> {
        Ok(match s.grain(within / s.grain_bytes())? {
            Grain::Unallocated => {
                if let Some(cid) = self.parent_mismatch.get() {
                    return Err(Error::invalid(format!(
                        "the parent '{}' changed since this image was made over it (its CID \
                         is {cid:x}, this image's parentCID {:x}); reading through it would \
                         mix two disks, and QEMU refuses it too",
                        self.backing.spec().map(|b| b.name).unwrap_or_default(),
                        self.descriptor.parent_cid
                    )));
                }
                Status::Unallocated { host: None }
            }
            Grain::Zero => Status::Zero { host: None },
            Grain::Data(h) => Status::Data {
                host: Some(HostOffset(Spans::host(i, h + within % s.grain_bytes()))),
                compressed: false,
            },
            Grain::Compressed(_) => Status::Data {
                host: None,
                compressed: true,
            },
        })
    }

    fn facts(&self) -> FormatSpecific {
        let extents = self
            .extents
            .iter()
            .map(|e| {
                let mut o = Vec::new();
                if let Layout::Sparse(s) = &e.layout {
                    if s.header.compressed() {
                        o.push(("compressed", Fact::Bool(true)));
                    }
                }
                o.push(("virtual-size", Fact::Int(e.len)));
                o.push(("filename", Fact::Str(e.filename.clone())));
                if let Layout::Sparse(s) = &e.layout {
                    o.push(("cluster-size", Fact::Int(s.grain_bytes())));
                }
                o.push(("format", Fact::Str(e.word.to_string())));
                Fact::Object(o)
            })
            .collect();
        FormatSpecific {
            kind: "vmdk",
            data: vec![
                ("cid", Fact::Int(self.descriptor.cid as u64)),
                ("parent-cid", Fact::Int(self.descriptor.parent_cid as u64)),
                ("create-type", Fact::Str(self.create_type.clone())),
                ("extents", Fact::List(extents)),
            ],
        }
    }
}

impl Format for Vmdk {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn granularity(&self) -> u64 {
        self.extents
            .iter()
            .find_map(|e| match &e.layout {
                Layout::Sparse(s) => Some(s.grain_bytes()),
                Layout::Flat { .. } => None,
            })
            .unwrap_or(SECTOR)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.size)?;
        let i = self.extent_at(offset);
        let e = &self.extents[i];
        let within = offset - e.guest_start;
        let len = len.min(e.len - within);
        match &e.layout {
            Layout::Flat { start, .. } => Ok(Extent {
                len,
                status: Status::Data {
                    host: Some(HostOffset(Spans::host(i, start + within))),
                    compressed: false,
                },
            }),
            Layout::Sparse(s) => {
                let gb = s.grain_bytes();
                let first = self.sparse_status(i, s, within)?;
                let end = within + len;
                let mut run_end = ((within / gb + 1) * gb).min(end);
                while run_end < end {
                    let next = self.sparse_status(i, s, run_end)?;
                    if next != first.advanced(run_end - within) {
                        break;
                    }
                    run_end = (run_end + gb).min(end);
                }
                Ok(Extent {
                    len: run_end - within,
                    status: first,
                })
            }
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        super::read_layer(self, offset, buf, |pos, chunk| {
            let i = self.extent_at(pos);
            let e = &self.extents[i];
            let Layout::Sparse(s) = &e.layout else {
                return Err(Error::corrupt("a flat extent has no compressed grains"));
            };
            let gb = s.grain_bytes();
            let mut done = 0usize;
            let mut grain = vec![0u8; gb as usize];
            while done < chunk.len() {
                let within = pos + done as u64 - e.guest_start;
                let Grain::Compressed(at) = s.grain(within / gb)? else {
                    return Err(Error::corrupt("grain changed while it was read"));
                };
                s.read_compressed(at, &mut grain)?;
                let from = (within % gb) as usize;
                let n = (gb as usize - from).min(chunk.len() - done);
                chunk[done..done + n].copy_from_slice(&grain[from..from + n]);
                done += n;
            }
            Ok(())
        })
    }

    fn backing(&self) -> Option<BackingSpec> {
        self.backing.spec()
    }

    fn attach_backing(&self, backing: Arc<dyn GuestRead>) {
        self.backing.attach(backing);
    }

    fn note_backing(&self, backing: &dyn Format) {
        // As QEMU: the parent must still hold the content this image was
        // made over (its CID is our parentCID); else reading through it
        // would mix two histories. A parent of another format has no CID.
        let cid = backing
            .describe()
            .specific
            .filter(|f| f.kind == "vmdk")
            .and_then(|f| {
                f.data.iter().find_map(|(k, v)| match (k, v) {
                    (&"cid", Fact::Int(n)) => Some(*n as u32),
                    _ => None,
                })
            });
        if let Some(cid) = cid.filter(|&c| c != self.descriptor.parent_cid) {
            let _ = self.parent_mismatch.set(cid);
        }
    }

    fn storage(&self) -> &dyn Storage {
        self.file.as_ref()
    }

    fn data_storage(&self) -> &dyn Storage {
        &self.spans
    }

    fn host_file(&self, host: HostOffset) -> Option<(&Path, u64)> {
        self.spans.locate(host.0)
    }

    fn upload_concerns(&self) -> Vec<Finding> {
        // As OpenStack's inspector: one file, streamed or sparse, whose
        // descriptor holds nothing but what a reader understands.
        let d = &self.descriptor;
        let mut found = Vec::new();
        // The descriptor's word counts (a sparse file's header could say
        // otherwise).
        let create_type = d.create_type.as_deref().unwrap_or(&self.create_type);
        if !UPLOADABLE_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(create_type))
        {
            found.push(Finding::new(
                "descriptor",
                format!(
                    "subformat {create_type} is not a single-file VMDK (only {} are accepted)",
                    UPLOADABLE_TYPES.join(" and ")
                ),
            ));
        }
        if let Some(line) = &d.odd_line {
            found.push(Finding::new(
                "descriptor",
                format!("the descriptor has a line no reader understands: {line}"),
            ));
        }
        if let Some(e) = d.extents.iter().find(|e| e.file.contains('/')) {
            found.push(Finding::new(
                "descriptor",
                format!("extent file '{}' is a path, not a name", e.file),
            ));
        }
        if d.extents.is_empty() && self.separate {
            found.push(Finding::new("descriptor", "the descriptor names no extent"));
        }
        found
    }

    fn extent_files(&self) -> Vec<&dyn Storage> {
        if !self.separate {
            return Vec::new();
        }
        self.extents
            .iter()
            .map(|e| match &e.layout {
                Layout::Flat { storage, .. } => storage.as_ref(),
                Layout::Sparse(s) => s.storage().as_ref(),
            })
            .collect()
    }

    fn data_may_be_host_holes(&self) -> Result<bool> {
        Ok(self
            .extents
            .iter()
            .any(|e| matches!(e.layout, Layout::Flat { .. })))
    }

    fn describe(&self) -> Description {
        Description {
            cluster_size: self.extents.iter().find_map(|e| match &e.layout {
                Layout::Sparse(s) => Some(s.grain_bytes()),
                Layout::Flat { .. } => None,
            }),
            dirty: false,
            need_check: false,
            snapshots: Vec::new(),
            bitmaps: Vec::new(),
            specific: Some(self.facts()),
            encrypted: false,
        }
    }

    fn check(&self, log: &mut dyn FnMut(String)) -> Result<Option<super::check::CheckReport>> {
        self.flush_all()?;
        for e in &self.extents {
            let Layout::Sparse(s) = &e.layout else {
                continue;
            };
            if let Some(sector) = s.grains_past_eof()? {
                let sector = sector + e.guest_start / SECTOR;
                log(format!(
                    "ERROR: cluster offset for sector {sector} points after EOF"
                ));
                return Err(Error::corrupt(format!(
                    "Check failed: the grain of sector {sector} lies past the end of '{}'",
                    e.filename
                )));
            }
        }
        Ok(Some(super::check::CheckReport::default()))
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        super::check_write_range(offset, buf.len() as u64, self.size)?;
        if let Some(s) = self.stream() {
            // Whole grains only (the last may be short), compressed.
            let gb = s.grain_bytes();
            if offset % gb != 0
                || (buf.len() as u64 != gb && offset + buf.len() as u64 != self.size)
            {
                return Err(Error::unsupported(
                    "streamOptimized images take whole, aligned grains only",
                ));
            }
            let mut grain = buf.to_vec();
            grain.resize(gb as usize, 0);
            return s.write_compressed(offset, &SparseExtent::compress(&grain)?);
        }
        self.renew_cid()?;
        self.pieces(offset, buf.len() as u64, |i, within, n, from| {
            let part = &buf[from as usize..(from + n) as usize];
            match &self.extents[i].layout {
                Layout::Flat { storage, start } => storage.write_at(part, start + within),
                Layout::Sparse(s) => s.write(within, part, self.parent_of_extent(i).as_deref()),
            }
        })
    }

    fn plan_write(&self, guest: GuestOffset, len: u64) -> Result<Vec<Placement>> {
        super::check_write_range(guest.0, len, self.size)?;
        self.renew_cid()?;
        let mut out = Vec::new();
        if self.stream().is_some() {
            push_serial(&mut out, guest.0, len);
            return Ok(out);
        }
        self.pieces(guest.0, len, |i, within, n, _| {
            let e = &self.extents[i];
            match &e.layout {
                Layout::Flat { start, .. } => {
                    push_host(
                        &mut out,
                        e.guest_start + within,
                        Spans::host(i, start + within),
                        n,
                    );
                    Ok(())
                }
                Layout::Sparse(s) => {
                    let mut hosts = Vec::new();
                    let mut serials = Vec::new();
                    s.plan(
                        within,
                        n,
                        &mut |w, h, l| hosts.push((w, h, l)),
                        &mut |w, l| serials.push((w, l)),
                    )?;
                    // Pieces come back in guest order from each list;
                    // merge them in guest order.
                    let mut all: Vec<(u64, Option<u64>, u64)> = hosts
                        .into_iter()
                        .map(|(w, h, l)| (w, Some(h), l))
                        .chain(serials.into_iter().map(|(w, l)| (w, None, l)))
                        .collect();
                    all.sort_unstable_by_key(|p| p.0);
                    for (w, h, l) in all {
                        match h {
                            Some(h) => push_host(&mut out, e.guest_start + w, Spans::host(i, h), l),
                            None => push_serial(&mut out, e.guest_start + w, l),
                        }
                    }
                    Ok(())
                }
            }
        })?;
        Ok(out)
    }

    fn publish(&self, placed: &[Placement]) -> Result<()> {
        for p in placed {
            if let Placement::Host { guest, len, .. } = *p {
                self.pieces(guest.0, len, |i, within, n, _| {
                    match &self.extents[i].layout {
                        Layout::Sparse(s) => s.publish(within, n),
                        Layout::Flat { .. } => Ok(()),
                    }
                })?;
            }
        }
        Ok(())
    }

    fn abandon(&self, placed: &[Placement]) -> Result<()> {
        for p in placed {
            if let Placement::Host { guest, len, .. } = *p {
                self.pieces(guest.0, len, |i, within, n, _| {
                    if let Layout::Sparse(s) = &self.extents[i].layout {
                        s.abandon(within, n);
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> Result<()> {
        super::check_write_range(offset, len, self.size)?;
        self.renew_cid()?;
        self.pieces(offset, len, |i, within, n, _| {
            match &self.extents[i].layout {
                Layout::Flat { storage, start } => storage.zero_range(start + within, n),
                Layout::Sparse(s) => s.write_zeroes(within, n, self.parent_of_extent(i).as_deref()),
            }
        })
    }

    fn writes_compressed(&self) -> bool {
        self.stream().is_some()
    }

    fn compress_cluster(&self, cluster: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.stream() {
            Some(_) => SparseExtent::compress(cluster).map(Some),
            // As qemu-img: -c into a non-stream subformat stores plainly.
            None => Ok(None),
        }
    }

    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<()> {
        match self.stream() {
            Some(s) => s.write_compressed(offset, data),
            None => Err(Error::unsupported(
                "compressed grains are only written to streamOptimized images",
            )),
        }
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn resize(&self, _new_size: u64, _prealloc: super::Preallocation) -> Result<()> {
        Err(Error::unsupported(
            "Image format driver does not support resize",
        ))
    }
}
