//! qcow2, versions 2 and 3: header, L1/L2 mapping (standard and extended
//! entries), compressed clusters, external data files, snapshots and bitmaps.

pub mod amend;
mod bitmaps;
pub mod check;
pub mod compress;
pub mod create;
mod driver;
pub mod entry;
pub mod header;
pub mod measure;
mod meta;
pub mod refcount;
mod resize;
pub mod snapshot;
mod snapshots;
mod write;

pub use driver::{options as create_options, DRIVER};
pub use header::{CompressionType, Header};
pub use snapshot::{Bitmap, Snapshot};

use super::{
    clip_request, read_layer_with, Backing, BackingSpec, Description, Extent, Format, FormatKind,
    GuestRead, Status,
};
use crate::error::{Error, Result};
use crate::format::table_cache::{CacheBudget, TableCache};
use crate::io::{Admission, FileStorage, Refusal, RefusedKind, RefusedStorage, Storage, Trust};
use crate::paths::resolve_relative_to;
use entry::{CompressedDescriptor, Geometry, L2Entry, SubclusterType};
use header::{check_table, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY};
use meta::{read_l2_table, Meta};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Memory the L2 cache may use.
const L2_CACHE_BYTES: u64 = 16 << 20;

/// An open qcow2 image.
#[derive(Debug)]
pub struct Qcow2 {
    storage: Box<dyn Storage>,
    data_file: Option<Box<dyn Storage>>,
    /// The header as opened: the facts that never change while open.
    header: Header,
    geo: Geometry,
    compression: CompressionType,
    /// Metadata: readers of cached tables share it, changes take it alone.
    meta: RwLock<Meta>,
    snapshots: Vec<Snapshot>,
    /// What is wrong with the snapshot table (for the check and its repair).
    snapshot_defects: Vec<snapshot::SnapshotDefect>,
    bitmaps: Vec<Bitmap>,
    backing: Backing,
    writable: bool,
    metadata_preallocated: OnceLock<bool>,
    last_compressed: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    /// The LUKS area of an encrypted image (`crypt_method` 2); once
    /// unlocked, `data_file` is the image file seen through its cipher.
    luks: Option<crate::format::luks::Area>,
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        // Best effort: a caller that did not flush still gets its metadata
        // written in the safe order. Errors cannot be reported here.
        let _ = self.flush_all();
    }
}

impl Qcow2 {
    /// Opens a qcow2 image read-only from `storage`; `path` is the name it
    /// was opened by, used to resolve an external data file.
    pub fn open(storage: Box<dyn Storage>, path: &Path) -> Result<Self> {
        Self::open_with(storage, path, false, false, &Trust::Trusted)
    }

    /// As [`Qcow2::open`] (read-only, or for `check -r` when `repairing`),
    /// or [`Qcow2::open_writable`] when `writable`, with `trust` deciding
    /// whether an external data file the image names is opened.
    pub fn open_trusting(
        storage: Box<dyn Storage>,
        path: &Path,
        writable: bool,
        repairing: bool,
        trust: &Trust,
    ) -> Result<Self> {
        Self::open_with(storage, path, writable, repairing, trust)
    }

    /// Opens a qcow2 image read-only for `check -r` (`storage` must be
    /// writable for the repair): snapshot table defects that QEMU refuses
    /// on open are tolerated here, since the repair rewrites the table.
    pub fn open_for_repair(storage: Box<dyn Storage>, path: &Path) -> Result<Self> {
        Self::open_with(storage, path, false, true, &Trust::Trusted)
    }

    /// Opens a qcow2 image for writing (`storage` must be writable).
    /// A corrupt image is refused; a dirty one (lazy refcounts after a
    /// crash) must be repaired first, with [`check::repair`].
    pub fn open_writable(storage: Box<dyn Storage>, path: &Path) -> Result<Self> {
        Self::open_with(storage, path, true, false, &Trust::Trusted)
    }

    fn open_with(
        storage: Box<dyn Storage>,
        path: &Path,
        writable: bool,
        repairing: bool,
        trust: &Trust,
    ) -> Result<Self> {
        let file_len = storage.len()?;
        let header = Header::parse(&read_head(storage.as_ref(), file_len)?)?;
        header.validate(file_len)?;
        let geo = Geometry {
            cluster_bits: header.cluster_bits,
            extended_l2: header.extended_l2(),
            external_data: header.incompatible_features & INCOMPAT_DATA_FILE != 0,
        };
        let compression = header.compression_type()?;
        if writable && header.incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(Error::corrupt(
                "image is marked corrupt and cannot be opened for writing; repair it with 'qimg check -r all'",
            ));
        }
        if writable && header.incompatible_features & INCOMPAT_DIRTY != 0 {
            return Err(Error::corrupt(
                "image was not closed cleanly (dirty bit set); repair it with 'qimg check -r all'",
            ));
        }
        let l1 = read_be_table(
            storage.as_ref(),
            header.l1_table_offset,
            header.l1_size as u64,
        )?;
        let data_file = match (&header.data_file, geo.external_data) {
            (Some(name), true) => Some(match trust.admit(RefusedKind::DataFile, name, path)? {
                Admission::Open => open_data_file(path, name, writable)?,
                Admission::Skip => Box::new(RefusedStorage::new(Refusal {
                    kind: RefusedKind::DataFile,
                    name: name.clone(),
                    by: path.to_path_buf(),
                })),
            }),
            _ => None,
        };
        let (snapshots, snapshot_defects) =
            read_snapshots(storage.as_ref(), &header, file_len, !repairing)?;
        let bitmaps = read_bitmaps(storage.as_ref(), &header, file_len)?;
        let backing = header.backing_file.clone().map(|name| BackingSpec {
            name,
            format: header.backing_format.clone(),
        });
        // Counted as held in memory: an entry takes an L2Entry whatever
        // its width on disk.
        let table_bytes = geo.l2_entries() * std::mem::size_of::<L2Entry>() as u64;
        let capacity = (L2_CACHE_BYTES / table_bytes).max(4) as usize;
        let budget = CacheBudget::new(L2_CACHE_BYTES);
        let meta = Meta {
            header: header.clone(),
            l1,
            l1_dirty: Default::default(),
            l2: TableCache::new(capacity).with_budget(budget, table_bytes),
            refcounts: None,
            frees: Vec::new(),
            prepared: false,
            compressed_cursor: None,
        };
        Ok(Qcow2 {
            storage,
            data_file,
            compression,
            meta: RwLock::new(meta),
            snapshots,
            snapshot_defects,
            bitmaps,
            backing: Backing::new(backing),
            writable,
            metadata_preallocated: OnceLock::new(),
            last_compressed: Mutex::new(None),
            luks: None,
            header,
            geo,
        })
    }

    /// Reads the LUKS area of an encrypted image from `shared` (the
    /// storage this image was opened on) and, with its secret, unlocks it:
    /// from then on data clusters are read and written through the cipher
    /// (IV: the host sector), by whichever thread does the I/O.
    /// The secret is the one `options` name; without it the image opens
    /// only for `options.no_io` (`info`, which, as qemu-img's, unlocks
    /// nothing). A plain image ignores the secret (named or not).
    pub fn open_encryption(
        &mut self,
        shared: Arc<dyn Storage>,
        options: &crate::io::StorageOptions,
    ) -> Result<()> {
        let no_io = options.no_io;
        let Some((off, len)) = self
            .header
            .crypto_header
            .filter(|_| self.header.crypt_method == 2)
        else {
            return Ok(());
        };
        if self.geo.external_data {
            return Err(Error::unsupported(
                "encrypted images with an external data file are not supported",
            ));
        }
        let password = if no_io { None } else { options.key()? };
        let area = crate::format::luks::Area::read(shared.as_ref(), off, len, false, password)
            .map_err(|e| Error::new(e.kind(), format!("LUKS area: {}", e.message())))?;
        if password.is_none() && !no_io {
            return Err(crate::format::luks::key_required("encrypt.key-secret"));
        }
        if let Some(c) = &area.cipher {
            self.data_file = Some(Box::new(crate::format::luks::CryptStorage::new(
                shared,
                c.clone(),
                0,
            )));
        }
        self.luks = Some(area);
        Ok(())
    }

    /// The LUKS area, when the image is encrypted.
    pub(crate) fn luks_area(&self) -> Option<&crate::format::luks::Area> {
        self.luks.as_ref()
    }

    /// Refuses I/O on an encrypted image opened without its key.
    fn require_key(&self) -> Result<()> {
        match &self.luks {
            Some(a) if a.cipher.is_none() => {
                Err(crate::format::luks::key_required("encrypt.key-secret"))
            }
            _ => Ok(()),
        }
    }

    /// The status of the run at `offset`, host offsets included.
    fn status_with_host(&self, offset: u64, len: u64) -> Result<Extent> {
        let len = clip_request(offset, len, self.header.size)?;
        let span = self.table_span();
        let l1_index = offset / span;
        let span_end = (offset + len).min((l1_index + 1) * span);
        self.with_l2_table(l1_index, |table| {
            let Some(table) = table else {
                return Ok(Extent {
                    len: span_end - offset,
                    status: Status::Unallocated { host: None },
                });
            };
            let first = self.unit_at(table, offset)?;
            let run_end = if self.geo.extended_l2 {
                self.subcluster_run_end(table, offset, span_end, first)?
            } else {
                self.cluster_run_end(table, offset, span_end, first)
            };
            Ok(Extent {
                len: run_end - offset,
                status: first,
            })
        })
    }

    /// Turns this (read-only) image into a view of an internal snapshot:
    /// `spec` is `snapshot.id=ID`, `snapshot.name=NAME`, or an ID or name
    /// (IDs are tried first, as qemu-img does).
    pub fn at_snapshot(mut self, spec: &str) -> Result<Self> {
        let found = if let Some(id) = spec.strip_prefix("snapshot.id=") {
            self.snapshots.iter().find(|s| s.id == id)
        } else if let Some(name) = spec.strip_prefix("snapshot.name=") {
            self.snapshots.iter().find(|s| s.name == name)
        } else {
            self.snapshots
                .iter()
                .find(|s| s.id == spec)
                .or_else(|| self.snapshots.iter().find(|s| s.name == spec))
        };
        let Some(snap) = found.cloned() else {
            return Err(Error::argument(format!(
                "Failed to load snapshot: Can't find snapshot '{spec}'"
            )));
        };
        let len = snap.l1_size as u64 * 8;
        if len > header::MAX_L1_BYTES {
            return Err(Error::corrupt(format!(
                "snapshot '{}' has an L1 table too large",
                snap.name
            )));
        }
        if snap.l1_size > 0 {
            check_table(
                "snapshot L1 table",
                snap.l1_table_offset,
                len,
                self.geo.cluster_size(),
                self.storage.len()?,
            )?;
        }
        let l1 = read_be_table(
            self.storage.as_ref(),
            snap.l1_table_offset,
            snap.l1_size as u64,
        )?;
        let size = snap.disk_size.unwrap_or(self.header.size);
        let meta = self.meta.get_mut().unwrap_or_else(|p| p.into_inner());
        meta.l1 = l1;
        meta.header.size = size;
        self.header.size = size;
        self.writable = false;
        Ok(self)
    }

    fn data_storage_ref(&self) -> &dyn Storage {
        self.data_file.as_deref().unwrap_or(self.storage.as_ref())
    }

    /// Runs `f` with the check's view of the image (after a flush, so the
    /// disk holds everything).
    fn with_check_input<T>(
        &self,
        f: impl FnOnce(&check::CheckInput<'_>) -> Result<T>,
    ) -> Result<T> {
        self.flush_all()?;
        let (header, l1) = {
            let meta = self.lock_meta();
            (meta.header.clone(), meta.l1.clone())
        };
        f(&check::CheckInput {
            storage: self.storage.as_ref(),
            header: &header,
            l1: &l1,
            snapshots: &self.snapshots,
            snapshot_defects: &self.snapshot_defects,
            bitmaps: &self.bitmaps,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The entry geometry.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    fn table_span(&self) -> u64 {
        self.geo.cluster_size() * self.geo.l2_entries()
    }

    /// Reads the L2 table at `l2_offset` from the disk, checked to lie in
    /// the file first.
    fn load_l2(&self, l1_index: u64, l2_offset: u64) -> Result<Vec<L2Entry>> {
        let (storage, geo) = (self.storage.as_ref(), &self.geo);
        let cs = geo.cluster_size();
        let what = format!("L2 table (L1 index {l1_index})");
        check_table(&what, l2_offset, cs, cs, storage.len()?)?;
        read_l2_table(storage, geo, l2_offset)
    }

    /// The entries of the L2 table at `l2_offset` (checked to lie in the
    /// file when it is read from disk).
    fn l2_entries<'m>(
        &self,
        meta: &'m mut Meta,
        l1_index: u64,
        l2_offset: u64,
    ) -> Result<&'m [L2Entry]> {
        meta.l2.get(l2_offset, || self.load_l2(l1_index, l2_offset))
    }

    /// Runs `f` on the L2 table of L1 entry `l1_index` (`None` when it has
    /// none). A cached table is used under the shared lock, so readers do
    /// not queue behind each other; a missing one is read from the disk
    /// with no lock held, then cached (unless a writer changed what the
    /// cache knows meanwhile, in which case the lookup starts again).
    fn with_l2_table<R>(
        &self,
        l1_index: u64,
        mut f: impl FnMut(Option<&[L2Entry]>) -> Result<R>,
    ) -> Result<R> {
        loop {
            let (l2_offset, generation) = {
                let meta = self.read_meta();
                let Some(l2_offset) = meta
                    .l1
                    .get(l1_index as usize)
                    .and_then(|&e| entry::l1_table_offset(e))
                else {
                    return f(None);
                };
                if let Some(table) = meta.l2.peek(l2_offset) {
                    return f(Some(table));
                }
                (l2_offset, meta.l2.generation())
            };
            let table = self.load_l2(l1_index, l2_offset)?;
            let mut meta = self.lock_meta();
            let still = meta
                .l1
                .get(l1_index as usize)
                .and_then(|&e| entry::l1_table_offset(e))
                == Some(l2_offset);
            if still && meta.l2.insert_read(l2_offset, table, generation) {
                return f(meta.l2.peek(l2_offset));
            }
        }
    }

    /// The L2 entry of the guest cluster containing `guest`, if it has an L2 table.
    fn entry_at(&self, guest: u64) -> Result<Option<L2Entry>> {
        let span = self.table_span();
        let index = ((guest % span) / self.geo.cluster_size()) as usize;
        self.with_l2_table(guest / span, |table| Ok(table.map(|t| t[index])))
    }

    /// The status of the unit (cluster or subcluster) containing `guest`,
    /// with the host offset of `guest` itself. Checks the entry on the way.
    fn unit_at(&self, table: &[L2Entry], guest: u64) -> Result<Status> {
        let cs = self.geo.cluster_size();
        let index = ((guest % self.table_span()) / cs) as usize;
        let e = table[index];
        let sc = ((guest % cs) / self.geo.subcluster_size()) as u32;
        let in_cluster = guest % cs;
        let corrupt = |what: &str| {
            Error::corrupt(format!(
                "{what} (guest offset {:#x}, L2 entry {:#018x})",
                guest - in_cluster,
                e.word
            ))
        };
        let ty = e.subcluster_type(&self.geo, sc);
        let host_of = |h: u64| -> Result<Option<super::HostOffset>> {
            if h % cs != 0 {
                return Err(corrupt("L2 entry points at an unaligned host cluster"));
            }
            if self.geo.external_data && h != guest - in_cluster {
                return Err(corrupt(
                    "external data file host cluster offset does not match the guest offset",
                ));
            }
            Ok(Some(super::HostOffset(h + in_cluster)))
        };
        let v2_zero = || corrupt("zero cluster entry in a version 2 image");
        let status = match ty {
            SubclusterType::Invalid => return Err(corrupt("invalid subcluster bitmap")),
            SubclusterType::Compressed(_) if self.geo.external_data => {
                return Err(corrupt(
                    "compressed cluster in an image with an external data file",
                ))
            }
            SubclusterType::Compressed(_) => Status::Data {
                host: None,
                compressed: true,
            },
            SubclusterType::Normal(h) => Status::Data {
                host: host_of(h)?,
                compressed: false,
            },
            SubclusterType::ZeroAlloc(_) | SubclusterType::ZeroPlain if self.header.version < 3 => {
                return Err(v2_zero())
            }
            SubclusterType::ZeroAlloc(h) => Status::Zero { host: host_of(h)? },
            SubclusterType::ZeroPlain => Status::Zero { host: None },
            SubclusterType::UnallocatedAlloc(h) => Status::Unallocated { host: host_of(h)? },
            SubclusterType::UnallocatedPlain => Status::Unallocated { host: None },
        };
        Ok(status)
    }

    /// Where the run that starts at `offset` with status `first` ends, for
    /// standard L2 entries: the following entries continue it while their
    /// words (COPIED aside) advance by one cluster, or stay equal for runs
    /// without a host offset. Entries equal to a valid one need no new checks.
    fn cluster_run_end(&self, table: &[L2Entry], offset: u64, span_end: u64, first: Status) -> u64 {
        let cs = self.geo.cluster_size();
        let span = self.table_span();
        let first_index = ((offset % span) / cs) as usize;
        let last_index = (((span_end - 1) % span) / cs) as usize;
        let step = if first.host().is_some() { cs } else { 0 };
        let base = table[first_index].word & !entry::COPIED;
        let mut n = 1;
        while first_index + n <= last_index
            && table[first_index + n].word & !entry::COPIED == base.wrapping_add(n as u64 * step)
        {
            n += 1;
        }
        ((offset / cs + n as u64) * cs).min(span_end)
    }

    /// Where the run that starts at `offset` with status `first` ends, with
    /// extended L2 entries: walks subcluster by subcluster.
    fn subcluster_run_end(
        &self,
        table: &[L2Entry],
        offset: u64,
        span_end: u64,
        first: Status,
    ) -> Result<u64> {
        let unit = self.geo.subcluster_size();
        let mut run_end = ((offset / unit + 1) * unit).min(span_end);
        while run_end < span_end {
            if self.unit_at(table, run_end)? != first.advanced(run_end - offset) {
                break;
            }
            run_end = (run_end + unit).min(span_end);
        }
        Ok(run_end)
    }

    fn read_compressed(&self, guest: u64, out: &mut [u8]) -> Result<()> {
        let cs = self.geo.cluster_size();
        let mut done = 0usize;
        while done < out.len() {
            let pos = guest + done as u64;
            let in_cluster = (pos % cs) as usize;
            let n = (cs as usize - in_cluster).min(out.len() - done);
            let entry = self.entry_at(pos)?.unwrap_or_default();
            let cluster = self.decompressed_cluster(entry.word)?;
            out[done..done + n].copy_from_slice(&cluster[in_cluster..in_cluster + n]);
            done += n;
        }
        Ok(())
    }

    /// The guest cluster the compressed descriptor `word` holds. The last
    /// one inflated is kept (reads of one cluster in pieces inflate it
    /// once); the lock is not held while reading and inflating, so workers
    /// inflate their clusters side by side.
    fn decompressed_cluster(&self, word: u64) -> Result<Arc<Vec<u8>>> {
        let last = || {
            self.last_compressed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if let Some((w, data)) = last().as_ref() {
            if *w == word {
                return Ok(data.clone());
            }
        }
        let desc = CompressedDescriptor::decode(word, self.geo.cluster_bits);
        let mut input = vec![0u8; desc.read_len() as usize];
        self.storage.read_at(&mut input, desc.offset)?;
        let mut cluster = vec![0u8; self.geo.cluster_size() as usize];
        compress::decompress(self.compression, &input, &mut cluster)
            .map_err(|e| e.at_offset(desc.offset))?;
        let cluster = Arc::new(cluster);
        *last() = Some((word, cluster.clone()));
        Ok(cluster)
    }
}

/// qemu-img's refusal of compressed clusters in an encrypted image.
fn compression_refused() -> Error {
    Error::unsupported("Compression and encryption not supported at the same time")
}

/// Reads a table of `entries` big-endian 64-bit entries at `offset` (L1
/// tables, refcount tables, bitmap tables). The caller bounds `entries`.
pub(crate) fn read_be_table(storage: &dyn Storage, offset: u64, entries: u64) -> Result<Vec<u64>> {
    let mut raw = vec![0u8; (entries * 8) as usize];
    if !raw.is_empty() {
        storage.read_at(&mut raw, offset)?;
    }
    Ok(raw
        .chunks_exact(8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

fn read_head(storage: &dyn Storage, file_len: u64) -> Result<Vec<u8>> {
    let mut head = vec![0u8; file_len.min(4096) as usize];
    storage.read_at(&mut head, 0)?;
    if head.len() >= 24 {
        let bits = u32::from_be_bytes(head[20..24].try_into().expect("4 bytes"));
        if (13..=21).contains(&bits) && file_len > 4096 {
            head = vec![0u8; file_len.min(1 << bits) as usize];
            storage.read_at(&mut head, 0)?;
        }
    }
    Ok(head)
}

fn open_data_file(image: &Path, name: &str, writable: bool) -> Result<Box<dyn Storage>> {
    let beside = resolve_relative_to(image, name);
    let candidates: Vec<PathBuf> = if beside == Path::new(name) {
        vec![beside]
    } else {
        vec![beside, PathBuf::from(name)]
    };
    let mut first_err = None;
    for c in &candidates {
        let opened = if writable {
            FileStorage::open_rw(c)
        } else {
            FileStorage::open(c)
        };
        match opened {
            Ok(s) => return Ok(Box::new(s)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(Error::new(
        crate::error::ErrorKind::BackingChain,
        format!(
            "could not open external data file '{name}' (tried {}): {}",
            tried.join(", "),
            first_err.map(|e| e.detail()).unwrap_or_default()
        ),
    ))
}

/// Reads the snapshot table as QEMU does, noting what `check -r all` would
/// repair instead of refusing it: entries of a version 3 image with too
/// little extra data (their disk size is taken as the image's), extra data
/// beyond 1 KiB (the rest is not read), and entries past 64 MiB of table
/// (not read). Every length read is bounded by those limits. When `strict`,
/// the defects QEMU refuses on open are errors, met in QEMU's order.
fn read_snapshots(
    storage: &dyn Storage,
    h: &Header,
    file_len: u64,
    strict: bool,
) -> Result<(Vec<Snapshot>, Vec<snapshot::SnapshotDefect>)> {
    use snapshot::{SnapshotDefect, MAX_SNAPSHOT_EXTRA, MAX_SNAPSHOT_TABLE, SNAPSHOT_FIXED_LEN};
    let (mut out, mut defects) = (Vec::new(), Vec::new());
    let mut off = h.snapshots_offset;
    for i in 0..h.nb_snapshots as usize {
        let mut fixed = [0u8; SNAPSHOT_FIXED_LEN];
        let past_end = || {
            Error::corrupt(format!(
                "snapshot table entry {i} lies past the end of the file"
            ))
            .at_offset(off)
        };
        if off + fixed.len() as u64 > file_len {
            return Err(past_end());
        }
        storage.read_at(&mut fixed, off)?;
        let layout = snapshot::snapshot_layout(&fixed).map_err(|e| e.at_offset(off))?;
        let len = layout.entry_len() as u64;
        let kept = layout.extra.min(MAX_SNAPSHOT_EXTRA as usize);
        if kept < layout.extra {
            let d = SnapshotDefect::TooMuchExtra {
                index: i,
                size: layout.extra,
            };
            if strict {
                return Err(Error::corrupt(d.message()).at_offset(off));
            }
            defects.push(d);
        }
        if off + len - h.snapshots_offset > MAX_SNAPSHOT_TABLE {
            let d = SnapshotDefect::Overhanging {
                count: h.nb_snapshots as usize - i,
            };
            if strict {
                return Err(Error::corrupt(d.message()));
            }
            defects.push(d);
            break;
        }
        // QEMU does not write the padding of the last entry: only the
        // entry itself must lie in the file.
        if off + (SNAPSHOT_FIXED_LEN + layout.variable_len()) as u64 > file_len {
            return Err(past_end());
        }
        // The fixed part, the extra data kept, then the ID and the name.
        let mut entry = vec![0u8; SNAPSHOT_FIXED_LEN + kept + layout.id + layout.name];
        storage.read_at(&mut entry[..SNAPSHOT_FIXED_LEN + kept], off)?;
        let names_at = off + (SNAPSHOT_FIXED_LEN + layout.extra) as u64;
        storage.read_at(&mut entry[SNAPSHOT_FIXED_LEN + kept..], names_at)?;
        entry[36..40].copy_from_slice(&(kept as u32).to_be_bytes());
        let mut snap = snapshot::parse_snapshot(&entry).map_err(|e| e.at_offset(off))?;
        snap.entry_len = len;
        if h.version >= 3 && snap.disk_size.is_none() {
            defects.push(SnapshotDefect::Incomplete { index: i });
            snap.disk_size = Some(h.size);
        }
        out.push(snap);
        off += len;
    }
    Ok((out, defects))
}

fn read_bitmaps(storage: &dyn Storage, h: &Header, file_len: u64) -> Result<Vec<Bitmap>> {
    let Some(ext) = h.bitmaps else {
        return Ok(Vec::new());
    };
    if h.autoclear_features & header::AUTOCLEAR_BITMAPS == 0 {
        // A program without bitmap support wrote the image: the bitmaps are
        // stale and QEMU ignores them, as do we.
        return Ok(Vec::new());
    }
    if ext.directory_size > snapshot::MAX_BITMAP_DIRECTORY {
        return Err(Error::corrupt(format!(
            "bitmap directory too large ({} bytes)",
            ext.directory_size
        )));
    }
    check_table(
        "bitmap directory",
        ext.directory_offset,
        ext.directory_size,
        h.cluster_size(),
        file_len,
    )?;
    let mut dir = vec![0u8; ext.directory_size as usize];
    storage.read_at(&mut dir, ext.directory_offset)?;
    snapshot::parse_bitmap_directory(&dir, ext.count).map_err(|e| e.at_offset(ext.directory_offset))
}

impl Format for Qcow2 {
    fn driver(&self) -> FormatKind {
        FormatKind::of(&DRIVER)
    }

    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn granularity(&self) -> u64 {
        self.geo.subcluster_size()
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.require_key()?;
        let ext = self.status_with_host(offset, len)?;
        if self.luks.is_none() {
            return Ok(ext);
        }
        // As QEMU: an encrypted image names no host offsets (its data
        // cannot be read there as it is).
        Ok(Extent {
            len: ext.len,
            status: match ext.status {
                Status::Data { compressed, .. } => Status::Data {
                    host: None,
                    compressed,
                },
                Status::Zero { .. } => Status::Zero { host: None },
                Status::Unallocated { .. } => Status::Unallocated { host: None },
            },
        })
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.require_key()?;
        read_layer_with(
            &|o, l| self.status_with_host(o, l),
            self.data_storage(),
            offset,
            buf,
            |pos, chunk| self.read_compressed(pos, chunk),
        )
    }

    fn backing(&self) -> Option<BackingSpec> {
        self.backing.spec()
    }

    fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    fn data_storage(&self) -> &dyn Storage {
        self.data_file.as_deref().unwrap_or(self.storage.as_ref())
    }

    fn data_may_be_host_holes(&self) -> Result<bool> {
        Ok(*self.metadata_preallocated.get_or_init(|| {
            self.storage
                .len()
                .and_then(|len| {
                    refcount::looks_metadata_preallocated(self.storage.as_ref(), &self.header, len)
                })
                .unwrap_or(false)
        }))
    }

    fn check(&self, log: &mut dyn FnMut(String)) -> Result<Option<super::check::CheckReport>> {
        self.with_check_input(|input| check::check(input, log))
            .map(Some)
    }

    fn repair(
        &self,
        mode: super::check::Repair,
        log: &mut dyn FnMut(String),
    ) -> Result<Option<super::check::CheckReport>> {
        self.with_check_input(|input| check::repair(input, mode, log))
            .map(Some)
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.require_key()?;
        self.write_guest(offset, buf)
    }

    fn plan_write(&self, guest: super::GuestOffset, len: u64) -> Result<Vec<super::Placement>> {
        self.require_key()?;
        self.plan_guest(guest.0, len)
    }

    fn publish(&self, placed: &[super::Placement]) -> Result<()> {
        self.publish_guest(placed)
    }

    fn share_cache_budget(&self, budget: &Arc<CacheBudget>) {
        self.lock_meta().l2.move_to_budget(budget);
    }

    fn abandon(&self, placed: &[super::Placement]) -> Result<()> {
        self.abandon_guest(placed)
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result<()> {
        self.require_key()?;
        self.write_zeroes_guest(offset, len, unmap)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.discard_guest(offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn compress_cluster(&self, cluster: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.luks.is_some() {
            return Err(compression_refused());
        }
        compress::compress(self.compression, cluster)
    }

    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<()> {
        if self.luks.is_some() {
            return Err(compression_refused());
        }
        self.write_compressed_cluster(offset, data)
    }

    fn set_backing(&self, backing: Option<BackingSpec>) -> Result<()> {
        self.set_backing_file(backing)
    }

    fn make_empty(&self) -> Result<()> {
        self.empty_active_layer()
    }

    fn resize(&self, new_size: u64, prealloc: super::Preallocation) -> Result<()> {
        if new_size % 512 != 0 {
            return Err(Error::argument("The new size must be a multiple of 512"));
        }
        if new_size < self.header.size {
            self.shrink_to(new_size)
        } else {
            let zero_new = self.backing.reaches_past(self.header.size)?;
            self.grow_to(new_size, zero_new, prealloc)
        }
    }

    fn attach_backing(&self, backing: Arc<dyn GuestRead>) {
        self.backing.attach(backing);
    }

    fn bitmaps(&self) -> Option<&dyn super::bitmap::BitmapStore> {
        Some(self)
    }

    fn snapshots(&self) -> Option<&dyn super::InternalSnapshots> {
        Some(self)
    }

    fn amender(&self) -> Option<&dyn super::Amend> {
        Some(self)
    }

    fn describe(&self) -> Description {
        driver::describe(self)
    }
}
