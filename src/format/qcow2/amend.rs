//! `amend` for qcow2: switching the header version (compat=0.10 and
//! compat=1.1), the refcount width, lazy refcounts, and the external data
//! file's name, each
//! made current by one header write after everything it depends on is
//! durable.
//!
//! A downgrade to version 2 first turns every zero cluster (a version 3
//! feature) into something version 2 reads as zeros: with no backing file
//! an unallocated entry (dropping the cluster it may have held); with one,
//! a freshly allocated cluster full of zeros. The new clusters and their
//! refcounts are durable before the L2 tables point at them, and the old
//! clusters lose their references only after the tables stop naming them,
//! so a crash leaves a version 3 image showing the same guest data, with
//! leaked clusters at most. The version 2 header is written last.

use super::entry::{L2Entry, COPIED, OFFSET_MASK, ZERO};
use super::header::{
    Header, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY,
    V3_HEADER_LEN,
};
use super::meta::{read_l2_table, Meta};
use super::refcount::{refcount_max, refcount_structures, refcounts_per_block, set_refcount};
use super::Qcow2;
use crate::error::{Error, Result};
use crate::format::{AmendOption, AmendOptions};
use std::collections::BTreeSet;

/// The options qcow2's amend takes, as `-o help` lists them (sorted by
/// name). qimg has no encryption, so the `encrypt.*` ones are not listed.
pub const AMEND_OPTIONS: &[AmendOption] = &[
    AmendOption {
        name: "backing_file",
        kind: "str",
        about: "Backing file (refused: use rebase)",
    },
    AmendOption {
        name: "backing_fmt",
        kind: "str",
        about: "Format of the backing file (refused: use rebase)",
    },
    AmendOption {
        name: "compat",
        kind: "str",
        about: "Version of the format: v2 (0.10) or v3 (1.1)",
    },
    AmendOption {
        name: "data_file",
        kind: "str",
        about: "New name of the external data file",
    },
    AmendOption {
        name: "data_file_raw",
        kind: "bool (on/off)",
        about: "Keep the external data file a valid raw image (creation only)",
    },
    AmendOption {
        name: "lazy_refcounts",
        kind: "bool (on/off)",
        about: "Update refcounts lazily (needs a check after a crash)",
    },
    AmendOption {
        name: "refcount_bits",
        kind: "num",
        about: "Bits of one refcount entry (1 to 64, a power of two)",
    },
    AmendOption {
        name: "size",
        kind: "size",
        about: "New virtual size of the disk",
    },
];

/// L2 tables rewritten per batch of a downgrade: bounds memory.
const TABLES_PER_BATCH: usize = 64;

/// What the L2 tables of all L1 tables (active and snapshots) hold.
struct TableScan {
    /// The L2 table offsets of each L1 table: the active one first, then
    /// each snapshot's, in table order.
    per_l1: Vec<BTreeSet<u64>>,
    /// Whether some entry is a zero cluster.
    zeros: bool,
    /// Whether some entry is compressed.
    compressed: bool,
}

impl Qcow2 {
    /// Applies `opts` (see [`crate::format::Format::amend`]) in qemu-img's
    /// order: the version upgrade with the header fields (lazy refcounts,
    /// data file name), then the size, then the downgrade. Every refusal
    /// comes before the first write.
    pub(super) fn amend_now(
        &self,
        opts: &AmendOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let mut meta = self.lock_meta();
        let old = meta.header.clone();
        let version = opts.version.unwrap_or(old.version);
        let refcount_bits = opts.refcount_bits.unwrap_or(old.refcount_bits());
        if refcount_bits != old.refcount_bits() {
            if version < 3 {
                return Err(Error::argument(
                    "Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)",
                ));
            }
            self.refcounts_fit(&mut meta, refcount_bits)?;
        }
        if opts.data_file.is_some() && !self.geo.external_data {
            return Err(Error::argument(
                "data-file can only be set for images that use an external data file",
            ));
        }
        if opts.lazy_refcounts == Some(true) && version < 3 {
            return Err(Error::argument(
                "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)",
            ));
        }
        let new_size = opts.size.unwrap_or(old.size);
        if new_size % 512 != 0 {
            return Err(Error::argument("The new size must be a multiple of 512"));
        }
        let downgrade = version < old.version;
        if downgrade {
            self.downgrade_refusal(&mut meta, new_size)?;
        }
        let mut header = old.clone();
        if let Some(name) = &opts.data_file {
            header.data_file = Some(name.clone());
        }
        if let Some(lazy) = opts.lazy_refcounts.filter(|_| !downgrade) {
            if lazy {
                header.compatible_features |= COMPAT_LAZY_REFCOUNTS;
            } else {
                header.compatible_features &= !COMPAT_LAZY_REFCOUNTS;
            }
        }
        if version > old.version {
            self.upgrade(&mut meta, header, progress)?;
        } else if header != old && !downgrade {
            self.prepare_with(&mut meta, false)?;
            meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)?;
            // The autoclear bits prepare may have cleared stay cleared.
            header.autoclear_features = meta.header.autoclear_features;
            self.write_header(&header)?;
            meta.header = header;
        }
        if refcount_bits != old.refcount_bits() {
            self.change_refcount_width(&mut meta, refcount_bits.trailing_zeros(), progress)?;
        }
        drop(meta);
        if new_size != old.size {
            crate::format::Format::resize(self, new_size, crate::format::Preallocation::Off)?;
        }
        if downgrade {
            let mut meta = self.lock_meta();
            self.downgrade(&mut meta, progress)?;
        }
        Ok(())
    }

    /// Refuses a width too narrow for a refcount the image holds, with
    /// qemu-img's message, before anything is written.
    fn refcounts_fit(&self, meta: &mut Meta, bits: u32) -> Result<()> {
        let storage = self.storage.as_ref();
        let max = refcount_max(bits.trailing_zeros());
        let r = meta.refcounts(storage)?;
        let end = r.frontier();
        for c in 0..end {
            let n = r.get(storage, c)?;
            if n > max {
                return Err(Error::unsupported(format!(
                    "Cannot decrease refcount entry width to {bits} bits: Cluster at offset {:#x} has a refcount of {n}",
                    c << self.geo.cluster_bits
                )));
            }
        }
        Ok(())
    }

    /// Rewrites the refcount structures with `1 << order`-bit entries, as
    /// `amend -o refcount_bits=` does. The new blocks (every cluster in
    /// use keeps its count; the new structures count 1 each) and the new
    /// table go past the end of the file and are made durable; one header
    /// write switches to them; then the old structures, leaked by then,
    /// are freed in the new blocks. A crash at any instant leaves the old
    /// or the new structures current, with leaks at most.
    fn change_refcount_width(
        &self,
        meta: &mut Meta,
        order: u32,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let bits = self.geo.cluster_bits;
        self.prepare_with(meta, false)?;
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        let old_structures = meta.refcounts(storage)?.structure_clusters();
        let base = meta
            .refcounts(storage)?
            .frontier()
            .max(storage.len()?.div_ceil(cs));
        let (table_clusters, blocks) = refcount_structures(base, bits, order);
        if table_clusters * cs > super::header::MAX_REFTABLE_BYTES {
            return Err(Error::unsupported(
                "the new refcount table would be too large",
            ));
        }
        let per_block = refcounts_per_block(bits, order);
        let table_at = base + blocks;
        let mut table = vec![0u8; (table_clusters * cs) as usize];
        progress(0, blocks + 1);
        for j in 0..blocks {
            let mut block = vec![0u8; cs as usize];
            for i in 0..per_block {
                let c = j * per_block + i;
                let n = if c < base {
                    meta.refcounts(storage)?.get(storage, c)?
                } else if c < table_at + table_clusters {
                    1
                } else {
                    0
                };
                if n != 0 {
                    set_refcount(&mut block, i as usize, order, n);
                }
            }
            storage.write_at(&block, (base + j) * cs)?;
            table[j as usize * 8..j as usize * 8 + 8]
                .copy_from_slice(&((base + j) * cs).to_be_bytes());
            progress(j + 1, blocks + 1);
        }
        storage.write_at(&table, table_at * cs)?;
        storage.flush()?;
        let mut header = meta.header.clone();
        header.refcount_order = order;
        header.refcount_table_offset = table_at * cs;
        header.refcount_table_clusters = table_clusters as u32;
        self.write_header(&header)?;
        meta.header = header;
        // From now on the new structures count; the old ones are leaks.
        meta.refcounts = None;
        let r = meta.refcounts(storage)?;
        for c in old_structures {
            r.set(storage, c, 0)?;
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        progress(blocks + 1, blocks + 1);
        Ok(())
    }

    /// Version 2 to 3: one header write, riding on a rewrite of the
    /// snapshot table when its entries lack the extra data version 3
    /// requires (the VM state size and the disk size).
    fn upgrade(
        &self,
        meta: &mut Meta,
        mut header: Header,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        progress(0, 2);
        self.prepare_with(meta, false)?;
        meta.flush(self.storage.as_ref(), self.data_storage_ref(), &self.geo)?;
        header.version = 3;
        header.refcount_order = 4;
        header.header_length = V3_HEADER_LEN as u32;
        header.incompatible_features = 0;
        header.autoclear_features = meta.header.autoclear_features;
        header.compression_type_raw = 0;
        header.extra_fields.clear();
        if self
            .snapshots
            .iter()
            .any(|s| s.extra.len() < super::snapshot::V3_SNAPSHOT_EXTRA)
        {
            let mut list = self.snapshots.clone();
            for s in &mut list {
                // A version 2 snapshot has no size of its own: it was taken
                // at the size the image has now (v2 images with snapshots
                // cannot be resized).
                s.complete_extra(old_size_for_v2(&header));
            }
            progress(1, 2);
            self.switch_snapshot_table_with(meta, &list, |h| {
                let (offset, count) = (h.snapshots_offset, h.nb_snapshots);
                *h = header;
                h.snapshots_offset = offset;
                h.nb_snapshots = count;
            })?;
        } else {
            self.write_header(&header)?;
            meta.header = header;
            progress(1, 2);
        }
        progress(2, 2);
        Ok(())
    }

    /// qemu-img's reasons not to downgrade, checked before anything is
    /// written; `new_size` is the size the image will have by then.
    fn downgrade_refusal(&self, meta: &mut Meta, new_size: u64) -> Result<()> {
        let header = &meta.header;
        if self.geo.external_data || header.incompatible_features & INCOMPAT_DATA_FILE != 0 {
            return Err(Error::unsupported(
                "Cannot downgrade an image with a data file",
            ));
        }
        // Version 2 readers would not know that a snapshot's own size or
        // a 64-bit VM state size matter.
        if self.snapshots.iter().any(|s| {
            s.vm_state_size > u32::MAX as u64 || s.disk_size.is_some_and(|d| d != new_size)
        }) {
            return Err(Error::unsupported(
                "Internal snapshots prevent downgrade of image",
            ));
        }
        if !self.bitmaps.is_empty() || header.bitmaps.is_some() {
            // qemu-img downgrades and leaves the bitmaps behind, marked
            // inconsistent and leaked; qimg refuses instead.
            return Err(Error::unsupported(
                "Cannot downgrade an image with persistent bitmaps (version 2 has none); remove them first",
            ));
        }
        let left = header.incompatible_features & !(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION);
        if left != 0 {
            return Err(Error::unsupported(format!(
                "Cannot downgrade an image with incompatible features 0x{left:x} set"
            )));
        }
        if header.refcount_order != 4 {
            return Err(Error::unsupported("compat=0.10 requires refcount_bits=16"));
        }
        if let Some(d) = self.snapshot_defects.first() {
            return Err(Error::corrupt(d.message()));
        }
        if header.compression_type_raw != 0 {
            let storage = self.storage.as_ref();
            meta.flush(storage, self.data_storage_ref(), &self.geo)?;
            meta.l2.clear();
            if self.scan_tables(meta)?.compressed {
                return Err(Error::unsupported(
                    "Cannot downgrade an image with zstd compression type and existing compressed clusters",
                ));
            }
        }
        Ok(())
    }

    /// Version 3 to 2 (refusals checked already): the zero clusters
    /// expanded, then the version 2 header.
    fn downgrade(&self, meta: &mut Meta, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        self.prepare_with(meta, false)?;
        let storage = self.storage.as_ref();
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        meta.l2.clear();
        let scan = self.scan_tables(meta)?;
        let mut header = meta.header.clone();
        let steps = scan.per_l1.len() as u64;
        let mut seen = BTreeSet::new();
        for (i, tables) in scan.per_l1.iter().enumerate() {
            // Each L2 table once, under the first L1 table that names it.
            let fresh: BTreeSet<u64> = tables.difference(&seen).copied().collect();
            if scan.zeros {
                self.expand_zero_clusters(meta, &fresh, header.backing_file.is_some())?;
            }
            seen.extend(fresh);
            progress(i as u64 + 1, steps);
        }
        // The refcount table may have moved meanwhile.
        header.refcount_table_offset = meta.header.refcount_table_offset;
        header.refcount_table_clusters = meta.header.refcount_table_clusters;
        header.version = 2;
        header.incompatible_features = 0;
        header.compatible_features = 0;
        header.autoclear_features = 0;
        header.compression_type_raw = 0;
        header.extra_fields.clear();
        header.feature_names.clear();
        header.header_length = super::header::V2_HEADER_LEN as u32;
        self.write_header(&header)?;
        meta.header = header;
        Ok(())
    }

    /// Reads every L2 table the active L1 and the snapshots' L1 tables
    /// name (each once), noting zero and compressed entries.
    fn scan_tables(&self, meta: &mut Meta) -> Result<TableScan> {
        let mut l1s = vec![meta.l1.clone()];
        for s in &self.snapshots {
            l1s.push(self.snapshot_l1(s)?);
        }
        let per_l1: Vec<BTreeSet<u64>> = l1s
            .iter()
            .map(|l1| {
                l1.iter()
                    .map(|e| e & OFFSET_MASK)
                    .filter(|&offset| offset != 0)
                    .collect()
            })
            .collect();
        let tables: BTreeSet<u64> = per_l1.iter().flatten().copied().collect();
        let (mut zeros, mut compressed) = (false, false);
        for &table in &tables {
            for e in read_l2_table(self.storage.as_ref(), &self.geo, table)? {
                compressed |= e.is_compressed();
                zeros |= is_zero(e);
            }
        }
        Ok(TableScan {
            per_l1,
            zeros,
            compressed,
        })
    }

    /// Replaces every zero entry of `tables` by what version 2 reads as
    /// zeros (see the module comment), in batches: new zeroed clusters and
    /// their refcounts durable, then the tables, then the old references
    /// dropped. A table shared by `n` L1 tables gives its new clusters
    /// refcount `n` and takes `n` references from the old ones.
    fn expand_zero_clusters(
        &self,
        meta: &mut Meta,
        tables: &BTreeSet<u64>,
        backing: bool,
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let cs = self.geo.cluster_size();
        let zeros = vec![0u8; cs as usize];
        let mut pending: Vec<(u64, Vec<L2Entry>)> = Vec::new();
        for &table in tables {
            let mut entries = read_l2_table(storage, &self.geo, table)?;
            if !entries.iter().any(|&e| is_zero(e)) {
                continue;
            }
            let owners = meta.refcounts(storage)?.get(storage, table / cs)?.max(1);
            for e in entries.iter_mut().filter(|e| is_zero(**e)) {
                let old = e.word & OFFSET_MASK;
                if backing {
                    let r = meta.refcounts(storage)?;
                    let at = r.alloc(storage, 1)?;
                    r.set(storage, at / cs, owners)?;
                    storage.write_at(&zeros, at)?;
                    e.word = at | if owners == 1 { COPIED } else { 0 };
                } else {
                    e.word = 0;
                }
                if old != 0 {
                    for _ in 0..owners {
                        meta.frees.push((old, cs));
                    }
                }
            }
            pending.push((table, entries));
            if pending.len() >= TABLES_PER_BATCH {
                self.publish_tables(meta, &mut pending)?;
            }
        }
        self.publish_tables(meta, &mut pending)
    }

    /// Writes the rewritten `pending` tables after the new clusters and
    /// their refcounts are durable, then drops the old references.
    fn publish_tables(
        &self,
        meta: &mut Meta,
        pending: &mut Vec<(u64, Vec<L2Entry>)>,
    ) -> Result<()> {
        let storage = self.storage.as_ref();
        let frees = std::mem::take(&mut meta.frees);
        // Data and refcount increases first.
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        for (table, entries) in pending.drain(..) {
            meta.l2.insert(table, entries, true);
        }
        meta.flush(storage, self.data_storage_ref(), &self.geo)?;
        meta.l2.clear();
        meta.frees = frees;
        meta.flush(storage, self.data_storage_ref(), &self.geo)
    }
}

/// Whether `e` is a (standard L2) zero cluster entry.
fn is_zero(e: L2Entry) -> bool {
    !e.is_compressed() && e.word & ZERO != 0
}

/// The disk size to record for a version 2 snapshot on upgrade.
fn old_size_for_v2(header: &Header) -> u64 {
    header.size
}
