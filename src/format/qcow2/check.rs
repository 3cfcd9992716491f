//! Checking a qcow2 image: every reference to a host cluster is counted
//! (header, L1/L2 tables of the image and its snapshots, data, compressed
//! data, snapshot table, refcount structures, bitmaps) and compared with the
//! stored refcounts; COPIED flags are compared with refcounts of 1. The
//! messages and counters are qemu-img's.

use super::entry::{self, CompressedDescriptor, COPIED, L1_RESERVED_MASK, OFFSET_MASK};
use super::header::{
    Header, AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE,
    INCOMPAT_DIRTY, MAX_L1_BYTES,
};
use super::meta::read_l2_table;
use super::read_be_table;
use super::refcount::{
    refcount_at, refcount_max, refcount_structures, refcounts_per_block, set_refcount,
    REFTABLE_OFFSET_MASK,
};
use super::snapshot::{Bitmap, Snapshot, SnapshotDefect};
use crate::error::Result;
use crate::format::check::{CheckReport, Repair};
use crate::io::Storage;
use counts::ClusterCounts;

mod counts;

/// Reserved bits of a refcount table entry.
const REFTABLE_RESERVED_MASK: u64 = 0x1ff;
/// Reserved bits of an extended L2 entry's first word.
const L2_EXTENDED_RESERVED_MASK: u64 = 0x3f00_0000_0000_01ff;
/// Reserved bits of a bitmap table entry.
const BITMAP_TABLE_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// The stored refcounts, read block by block.
pub struct StoredRefcounts<'a> {
    storage: &'a dyn Storage,
    table: Vec<u64>,
    cluster_bits: u32,
    order: u32,
    cached: Option<(u64, Vec<u8>)>,
}

impl<'a> StoredRefcounts<'a> {
    /// Reads the refcount table of the image.
    pub fn read(storage: &'a dyn Storage, h: &Header) -> Result<Self> {
        let entries = h.refcount_table_clusters as u64 * h.cluster_size() / 8;
        Ok(StoredRefcounts {
            storage,
            table: read_be_table(storage, h.refcount_table_offset, entries)?,
            cluster_bits: h.cluster_bits,
            order: h.refcount_order,
            cached: None,
        })
    }

    /// Entries of the refcount table.
    pub fn table(&self) -> &[u64] {
        &self.table
    }

    fn per_block(&self) -> u64 {
        refcounts_per_block(self.cluster_bits, self.order)
    }

    /// Whether a refcount block covers any cluster of `[first, end)`.
    pub fn covers_any(&self, first: u64, end: u64) -> bool {
        let per_block = self.per_block();
        (first / per_block..end.div_ceil(per_block)).any(|b| {
            self.table
                .get(b as usize)
                .is_some_and(|e| e & REFTABLE_OFFSET_MASK != 0)
        })
    }

    /// The stored refcount of host cluster `cluster` (0 where no block covers it).
    pub fn get(&mut self, cluster: u64) -> Result<u64> {
        let index = cluster / self.per_block();
        let Some(&entry) = self.table.get(index as usize) else {
            return Ok(0);
        };
        let offset = entry & REFTABLE_OFFSET_MASK;
        if offset == 0 {
            return Ok(0);
        }
        if self.cached.as_ref().map(|(o, _)| *o) != Some(offset) {
            let mut block = vec![0u8; 1 << self.cluster_bits];
            self.storage.read_at(&mut block, offset)?;
            self.cached = Some((offset, block));
        }
        let block = &self.cached.as_ref().expect("just cached").1;
        Ok(refcount_at(
            block,
            (cluster % self.per_block()) as usize,
            self.order,
        ))
    }
}

/// The references counted so far, by host cluster (kept sparse, a byte
/// per counted cluster: see [`counts`]), and where counting may reach.
struct Counts {
    refs: ClusterCounts,
    /// One past the last cluster that can be counted: the file's clusters,
    /// or further when a reference reaches a little past the end.
    len: u64,
    cluster_bits: u32,
    max: u64,
    file_len: u64,
}

impl Counts {
    /// Counts one reference to every cluster touched by `[offset, offset + size)`.
    fn add(&mut self, r: &mut Report<'_>, offset: u64, size: u64) {
        if size == 0 {
            return;
        }
        let cs = 1u64 << self.cluster_bits;
        let end = offset.saturating_add(size);
        if end.saturating_sub(self.file_len) >= cs {
            r.error(format!(
                "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {offset:#x} size {size:#x}"
            ));
            return;
        }
        let (first, last) = (offset >> self.cluster_bits, (end - 1) >> self.cluster_bits);
        self.len = self.len.max(last + 1);
        for k in first..=last {
            if self.refs.get(k) == self.max {
                r.error(format!(
                    "ERROR: overflow cluster offset={:#x}",
                    k << self.cluster_bits
                ));
                r.log("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing".into());
                continue;
            }
            self.refs.increment(k);
        }
    }

    /// Takes back one reference to every cluster of `[offset, offset + size)`.
    fn remove(&mut self, offset: u64, size: u64) {
        if size == 0 {
            return;
        }
        let last = (offset + size - 1) >> self.cluster_bits;
        for k in offset >> self.cluster_bits..=last.min(self.len.saturating_sub(1)) {
            self.refs.decrement(k);
        }
    }

    fn get(&self, cluster: u64) -> u64 {
        self.refs.get(cluster)
    }
}

/// The report being built and where its messages go.
struct Report<'a> {
    result: CheckReport,
    log: &'a mut dyn FnMut(String),
    /// L2 entries `-r all` can repair in place: preallocated zero clusters
    /// whose host offset is not cluster-aligned.
    misaligned_zeroes: Vec<MisalignedZero>,
}

/// An L2 entry that reads as zeros (or unallocated subclusters) but names a
/// host offset inside a cluster. Dropping the offset changes nothing the
/// guest sees and frees the entry's bogus reference (a leak at worst).
#[derive(Debug, Clone, Copy)]
struct MisalignedZero {
    /// Where the entry's first word is in the image file.
    at: u64,
    /// The first word as it should be: the zero flag alone (standard
    /// entries), or nothing (extended entries keep their zero bitmap).
    word: u64,
    /// The host offset it named, for the message.
    offset: u64,
}

impl Report<'_> {
    fn log(&mut self, line: String) {
        (self.log)(line);
    }

    fn error(&mut self, line: String) {
        self.result.corruptions += 1;
        self.log(line);
    }
}

/// Everything the check needs to know about the image.
#[derive(Clone, Copy)]
pub struct CheckInput<'a> {
    /// The image file.
    pub storage: &'a dyn Storage,
    /// Its header.
    pub header: &'a Header,
    /// The active L1 table.
    pub l1: &'a [u64],
    /// Its internal snapshots.
    pub snapshots: &'a [Snapshot],
    /// What is wrong with its snapshot table (repaired by rewriting it).
    pub snapshot_defects: &'a [SnapshotDefect],
    /// Its bitmaps (empty when the extension is not trusted).
    pub bitmaps: &'a [Bitmap],
}

/// What the counting pass found.
struct Analysis<'a> {
    counts: Counts,
    stored: StoredRefcounts<'a>,
    /// Byte ranges of the refcount table and blocks, counted as references.
    refcount_structures: Vec<(u64, u64)>,
    /// Clusters whose stored refcount differs: (cluster, stored, counted).
    mismatches: Vec<(u64, u64, u64)>,
}

impl<'a> Report<'a> {
    fn new(h: &Header, log: &'a mut dyn FnMut(String)) -> Self {
        Report {
            result: CheckReport {
                total_clusters: h.size.div_ceil(h.cluster_size()),
                ..Default::default()
            },
            log,
            misaligned_zeroes: Vec::new(),
        }
    }
}

fn walker<'a>(input: &CheckInput<'a>) -> TableWalker<'a> {
    TableWalker {
        storage: input.storage,
        header: input.header,
        external_data: input.header.incompatible_features & INCOMPAT_DATA_FILE != 0,
    }
}

/// Counts every reference and compares the counts with the stored
/// refcounts, logging what qemu-img logs for each problem. The clusters
/// whose counts differ are listed in the result only if `keep_mismatches`
/// (a repair needs them; a check of a wrecked image need not hold millions).
fn analyze<'a>(
    input: &CheckInput<'a>,
    r: &mut Report<'_>,
    keep_mismatches: bool,
) -> Result<Analysis<'a>> {
    let h = input.header;
    let storage = input.storage;
    let cs = h.cluster_size();
    let file_len = storage.len()?;
    let nb_clusters = file_len.div_ceil(cs);
    let mut counts = Counts {
        refs: ClusterCounts::default(),
        len: nb_clusters,
        cluster_bits: h.cluster_bits,
        max: refcount_max(h.refcount_order),
        file_len,
    };
    let walker = walker(input);

    for d in input.snapshot_defects {
        if let SnapshotDefect::Incomplete { .. } = d {
            r.error(format!("ERROR {}", d.message()));
        }
    }
    counts.add(r, 0, cs);
    // An encrypted image's LUKS area (header and key slots) is in use.
    if let Some((off, len)) = h.crypto_header.filter(|_| h.crypt_method == 2) {
        counts.add(r, off, len);
    }
    walker.l1(&mut counts, r, h.l1_table_offset, input.l1, true)?;
    if walker.external_data && !input.snapshots.is_empty() {
        r.error(format!(
            "ERROR {} snapshots in image with data file",
            input.snapshots.len()
        ));
    }
    let mut snapshot_table_len = 0u64;
    for sn in input.snapshots {
        snapshot_table_len += sn.entry_len;
        if sn.l1_table_offset % cs != 0 {
            r.error(format!(
                "ERROR snapshot {} ({}) l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry corrupted",
                sn.id, sn.name, sn.l1_table_offset
            ));
            continue;
        }
        if sn.l1_size as u64 * 8 > MAX_L1_BYTES {
            r.error(format!(
                "ERROR snapshot {} ({}) l1_size={:#x}: L1 table is too large; snapshot table entry corrupted",
                sn.id, sn.name, sn.l1_size
            ));
            continue;
        }
        let l1 = read_be_table(storage, sn.l1_table_offset, sn.l1_size as u64)?;
        walker.l1(&mut counts, r, sn.l1_table_offset, &l1, false)?;
    }
    counts.add(r, h.snapshots_offset, snapshot_table_len);
    let reftable = (
        h.refcount_table_offset,
        h.refcount_table_clusters as u64 * cs,
    );
    counts.add(r, reftable.0, reftable.1);
    if h.autoclear_features & AUTOCLEAR_BITMAPS != 0 {
        if let Some(ext) = h.bitmaps {
            counts.add(r, ext.directory_offset, ext.directory_size);
            for bm in input.bitmaps {
                walker.bitmap(&mut counts, r, bm)?;
            }
        }
    }

    let mut stored = StoredRefcounts::read(storage, h)?;
    let mut refcount_structures = check_refblocks(&stored, &mut counts, r, nb_clusters);
    refcount_structures.push(reftable);

    // References may reach a little past the end of the file: compare those
    // too. A chunk of clusters that nothing references and no refcount
    // block covers is all zeros on both sides: skipped without a look.
    let mut highest = None;
    let mut mismatches = Vec::new();
    let chunk_bits = counts.refs.chunk_bits();
    let mut i = 0;
    while i < counts.len {
        let chunk_end = ((i >> chunk_bits) + 1) << chunk_bits;
        if counts.refs.chunk_is_empty(i >> chunk_bits) && !stored.covers_any(i, chunk_end) {
            i = chunk_end;
            continue;
        }
        for i in i..chunk_end.min(counts.len) {
            let on_disk = stored.get(i)?;
            let counted = counts.get(i);
            if on_disk > 0 || counted > 0 {
                highest = Some(i);
            }
            if on_disk == counted {
                continue;
            }
            if keep_mismatches {
                mismatches.push((i, on_disk, counted));
            }
            if on_disk == 0 {
                r.result.rebuild_needed = true;
            }
            if on_disk < counted {
                r.error(format!(
                    "ERROR cluster {i} refcount={on_disk} reference={counted}"
                ));
            } else {
                r.result.leaks += 1;
                r.log(format!(
                    "Leaked cluster {i} refcount={on_disk} reference={counted}"
                ));
            }
        }
        i = chunk_end;
    }
    r.result.image_end_offset = highest.map_or(0, |h| (h + 1) * cs);
    Ok(Analysis {
        counts,
        stored,
        refcount_structures,
        mismatches,
    })
}

/// Checks the image read-only and reports qemu-img's verdict. Messages
/// (`ERROR ...`, `Leaked cluster ...`) go to `log` in qemu-img's order.
pub fn check(input: &CheckInput<'_>, log: &mut dyn FnMut(String)) -> Result<CheckReport> {
    let mut r = Report::new(input.header, log);
    let mut a = analyze(input, &mut r, false)?;
    walker(input).oflag_copied(&mut a.stored, &mut r, input.l1, false)?;
    Ok(r.result)
}

/// Checks and repairs the image in place (its storage must be writable).
/// Leaked refcounts are lowered; with [`Repair::All`], refcounts that are
/// too low are raised, COPIED flags are set right, and refcount structures
/// that cannot be trusted are rebuilt. The dirty and corrupt bits are
/// cleared when nothing is left broken. Returns the first pass's verdict
/// with the `*_fixed` counters; run [`check`] again for the state now.
pub fn repair(
    input: &CheckInput<'_>,
    mode: Repair,
    log: &mut dyn FnMut(String),
) -> Result<CheckReport> {
    let h = input.header;
    let mut r = Report::new(h, log);
    let mut a = analyze(input, &mut r, true)?;
    if mode == Repair::All && !r.misaligned_zeroes.is_empty() {
        // Entries first: each one only drops a reference, so a crash
        // after any of these writes leaves a leak at most. Then count
        // again, with those references gone.
        for fix in std::mem::take(&mut r.misaligned_zeroes) {
            input.storage.write_at(&fix.word.to_be_bytes(), fix.at)?;
            r.log(format!(
                "Repairing offset={:x}: Preallocated cluster is not properly aligned; L2 entry corrupted.",
                fix.offset
            ));
            r.result.corruptions_fixed += 1;
        }
        input.storage.flush()?;
        let fixed = r.result.corruptions_fixed;
        r.result = Report::new(h, &mut |_| {}).result;
        r.result.corruptions_fixed = fixed;
        a = analyze(input, &mut r, true)?;
    }
    let mut header = h.clone();
    if r.result.rebuild_needed {
        if mode != Repair::All {
            r.log("ERROR need to rebuild refcount structures".into());
            r.result.check_errors += 1;
            return Ok(r.result);
        }
        r.log("Rebuilding refcount structure".into());
        let before = r.result.clone();
        let (table_offset, table_clusters) = rebuild(input, &mut a, &mut |line| r.log(line))?;
        header.refcount_table_offset = table_offset;
        header.refcount_table_clusters = table_clusters;
        let rebuilt = CheckInput {
            header: &header,
            ..*input
        };
        let mut quiet = |_: String| {};
        let mut after = Report::new(&header, &mut quiet);
        a = analyze(&rebuilt, &mut after, true)?;
        r.result = CheckReport {
            corruptions_fixed: before.corruptions_fixed
                + before.corruptions.saturating_sub(after.result.corruptions),
            leaks_fixed: before.leaks_fixed + before.leaks.saturating_sub(after.result.leaks),
            ..after.result
        };
    } else {
        let mut writer = RefcountWriter::new(input.storage, h)?;
        for &(cluster, on_disk, counted) in &a.mismatches {
            let leak = on_disk > counted;
            if !leak && mode != Repair::All {
                continue;
            }
            writer.set(cluster, counted.min(a.counts.max))?;
            r.log(format!(
                "Repairing cluster {cluster} refcount={on_disk} reference={counted}"
            ));
            if leak {
                r.result.leaks -= 1;
                r.result.leaks_fixed += 1;
            } else {
                r.result.corruptions -= 1;
                r.result.corruptions_fixed += 1;
            }
        }
        a.stored = StoredRefcounts::read(input.storage, h)?;
    }
    let fix_copied = mode == Repair::All
        || (r.result.corruptions == 0 && r.result.leaks == 0 && r.result.check_errors == 0);
    let checked = CheckInput {
        header: &header,
        ..*input
    };
    walker(&checked).oflag_copied(&mut a.stored, &mut r, input.l1, fix_copied)?;
    input.storage.flush()?;
    if mode == Repair::All && !input.snapshot_defects.is_empty() {
        rewrite_snapshot_table(input, &mut header, &mut r)?;
    }
    if r.result.corruptions == 0 && r.result.check_errors == 0 {
        mark_clean(input.storage, &header)?;
    }
    Ok(r.result)
}

/// Repairs the snapshot table's defects by writing a new table: entries
/// past 64 MiB dropped, extra data cut to 1 KiB, incomplete extra data
/// completed. The order keeps every instant consistent: the new table is
/// written after the end of the file and its clusters' refcounts raised,
/// flushed, then one header write switches to it, flushed; only then do
/// the old table and the dropped snapshots' clusters lose their counts
/// (a leak at worst before that). `header` is updated to the new table.
fn rewrite_snapshot_table(
    input: &CheckInput<'_>,
    header: &mut Header,
    r: &mut Report<'_>,
) -> Result<()> {
    let storage = input.storage;
    let cs = header.cluster_size();
    let mut snapshots = input.snapshots.to_vec();
    for d in input.snapshot_defects {
        r.log(d.repair_line());
        if let SnapshotDefect::Incomplete { index } = *d {
            if let Some(sn) = snapshots.get_mut(index) {
                sn.complete_extra(header.size);
            }
            r.result.corruptions = r.result.corruptions.saturating_sub(1);
        }
        // QEMU counts each snapshot it drops as one corruption repaired.
        r.result.corruptions_fixed += match *d {
            SnapshotDefect::Overhanging { count } => count as u64,
            _ => 1,
        };
    }
    let table: Vec<u8> = snapshots.iter().flat_map(|s| s.encode()).collect();
    let clusters = (table.len() as u64).div_ceil(cs);
    let first = first_free_run(storage, header, clusters)?;
    let new_offset = if clusters == 0 { 0 } else { first * cs };
    if clusters > 0 {
        let mut padded = table;
        padded.resize((clusters * cs) as usize, 0);
        storage.write_at(&padded, new_offset)?;
        let mut writer = RefcountWriter::new(storage, header)?;
        for c in first..first + clusters {
            writer.set(c, 1)?;
        }
        storage.flush()?;
    }
    header.snapshots_offset = new_offset;
    header.nb_snapshots = snapshots.len() as u32;
    storage.write_at(&header.encode()?, 0)?;
    storage.flush()?;
    // Count again: what only the old table referenced is leaked now.
    let rewritten = CheckInput {
        header,
        snapshots: &snapshots,
        snapshot_defects: &[],
        ..*input
    };
    let mut quiet = |_: String| {};
    let mut after = Report::new(header, &mut quiet);
    let a = analyze(&rewritten, &mut after, true)?;
    let mut writer = RefcountWriter::new(storage, header)?;
    for &(cluster, _, counted) in a.mismatches.iter().filter(|m| m.1 > m.2) {
        writer.set(cluster, counted)?;
    }
    storage.flush()
}

/// The first cluster of the first run of `clusters` free clusters (stored
/// refcount 0) of the file, or the first one after its end: where QEMU's
/// allocator would put a new table. Nothing references a free cluster, so
/// writing there before it is counted is safe.
fn first_free_run(storage: &dyn Storage, header: &Header, clusters: u64) -> Result<u64> {
    let end = storage.len()?.div_ceil(header.cluster_size());
    let mut stored = StoredRefcounts::read(storage, header)?;
    let mut run_start = 0;
    for c in 0..end {
        if stored.get(c)? != 0 {
            run_start = c + 1;
        } else if c + 1 - run_start == clusters {
            return Ok(run_start);
        }
    }
    Ok(run_start)
}

/// Clears the dirty and corrupt bits and the autoclear bits qimg does not
/// maintain, in one write of the feature fields.
fn mark_clean(storage: &dyn Storage, h: &Header) -> Result<()> {
    if h.version < 3 {
        return Ok(());
    }
    let incompatible = h.incompatible_features & !(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
    let autoclear = h.autoclear_features & (AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW);
    if incompatible == h.incompatible_features && autoclear == h.autoclear_features {
        return Ok(());
    }
    let mut clean = h.clone();
    clean.incompatible_features = incompatible;
    clean.autoclear_features = autoclear;
    storage.write_at(&clean.encode()?, 0)?;
    storage.flush()
}

/// Writes single refcounts into existing refcount blocks.
struct RefcountWriter<'a> {
    storage: &'a dyn Storage,
    table: Vec<u64>,
    cluster_bits: u32,
    order: u32,
}

impl<'a> RefcountWriter<'a> {
    fn new(storage: &'a dyn Storage, h: &Header) -> Result<Self> {
        Ok(RefcountWriter {
            storage,
            table: StoredRefcounts::read(storage, h)?.table,
            cluster_bits: h.cluster_bits,
            order: h.refcount_order,
        })
    }

    /// Stores `value` as the refcount of `cluster`, rewriting only the
    /// bytes that hold it. The block must exist (a missing one means a rebuild).
    fn set(&mut self, cluster: u64, value: u64) -> Result<()> {
        let per_block = refcounts_per_block(self.cluster_bits, self.order);
        let block = self
            .table
            .get((cluster / per_block) as usize)
            .map(|e| e & REFTABLE_OFFSET_MASK)
            .filter(|&o| o != 0)
            .ok_or_else(|| {
                crate::error::Error::corrupt(format!("no refcount block covers cluster {cluster}"))
            })?;
        let index = (cluster % per_block) as usize;
        let bits = 1usize << self.order;
        let (first, len) = ((index * bits) / 8, bits.div_ceil(8));
        let mut bytes = vec![0u8; len];
        self.storage.read_at(&mut bytes, block + first as u64)?;
        let within = if bits >= 8 { 0 } else { index % (8 / bits) };
        set_refcount(&mut bytes, within, self.order, value);
        self.storage.write_at(&bytes, block + first as u64)
    }
}

/// Writes a new refcount table and blocks after everything in use, from the
/// counted references (the old refcount structures no longer count), flushes
/// them, and then points the header at them with one write. A crash before
/// that write leaves the old structures in charge; after it, the new ones.
/// Returns the new table's offset and size in clusters.
fn rebuild(
    input: &CheckInput<'_>,
    a: &mut Analysis<'_>,
    log: &mut dyn FnMut(String),
) -> Result<(u64, u32)> {
    let h = input.header;
    let storage = input.storage;
    let cs = h.cluster_size();
    for &(offset, len) in &a.refcount_structures {
        a.counts.remove(offset, len);
    }
    // The old structures' clusters that nothing else uses are free in the
    // new ones: qemu-img reports each as repaired from its old count.
    let mut freed: Vec<u64> = Vec::new();
    for &(offset, len) in a.refcount_structures.iter().filter(|r| r.1 > 0) {
        freed.extend((offset / cs..=(offset + len - 1) / cs).filter(|&c| a.counts.get(c) == 0));
    }
    freed.sort_unstable();
    let counts = &mut a.counts;
    let in_use = counts.refs.used_end();
    let start = in_use.max(storage.len()?.div_ceil(cs));
    let per_block = refcounts_per_block(h.cluster_bits, h.refcount_order);
    let (table_clusters, blocks) = refcount_structures(start, h.cluster_bits, h.refcount_order);
    let end = start + table_clusters + blocks;
    for c in start..end {
        counts.refs.set(c, 1);
    }
    let table_offset = start * cs;
    let blocks_offset = table_offset + table_clusters * cs;
    let mut block = vec![0u8; cs as usize];
    for b in 0..blocks {
        block.fill(0);
        let first = b * per_block;
        let chunk_bits = counts.refs.chunk_bits();
        let (first_chunk, end_chunk) = (
            first >> chunk_bits,
            (first + per_block).div_ceil(1 << chunk_bits),
        );
        if (first_chunk..end_chunk).any(|k| !counts.refs.chunk_is_empty(k)) {
            for i in 0..per_block {
                let n = counts.get(first + i);
                if n > 0 {
                    set_refcount(&mut block, i as usize, h.refcount_order, n.min(counts.max));
                }
            }
        }
        storage.write_at(&block, blocks_offset + b * cs)?;
    }
    let mut table = vec![0u8; (table_clusters * cs) as usize];
    for b in 0..blocks {
        let at = (b * 8) as usize;
        table[at..at + 8].copy_from_slice(&(blocks_offset + b * cs).to_be_bytes());
    }
    storage.write_at(&table, table_offset)?;
    storage.flush()?;
    let mut switched = h.clone();
    switched.refcount_table_offset = table_offset;
    switched.refcount_table_clusters = table_clusters as u32;
    storage.write_at(&switched.encode()?, 0)?;
    storage.flush()?;
    let mut at = 0;
    while at < freed.len() {
        let c = freed[at];
        let n = freed[at..].iter().take_while(|&&x| x == c).count();
        log(format!("Repairing cluster {c} refcount={n} reference=0"));
        at += n;
    }
    Ok((table_offset, table_clusters as u32))
}

/// Counts the refcount blocks themselves and checks the refcount table.
/// Returns the byte ranges of the blocks it counted.
fn check_refblocks(
    stored: &StoredRefcounts<'_>,
    counts: &mut Counts,
    r: &mut Report<'_>,
    nb_clusters: u64,
) -> Vec<(u64, u64)> {
    let mut counted = Vec::new();
    let cs = 1u64 << counts.cluster_bits;
    for (i, &entry) in stored.table().iter().enumerate() {
        let offset = entry & REFTABLE_OFFSET_MASK;
        if entry & REFTABLE_RESERVED_MASK != 0 {
            r.error(format!(
                "ERROR refcount table entry {i} has reserved bits set"
            ));
            r.result.rebuild_needed = true;
            continue;
        }
        if offset % cs != 0 {
            r.error(format!(
                "ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"
            ));
            r.result.rebuild_needed = true;
            continue;
        }
        if offset >> counts.cluster_bits >= nb_clusters {
            r.error(format!("ERROR refcount block {i} is outside image"));
            r.result.rebuild_needed = true;
            continue;
        }
        if offset != 0 {
            counts.add(r, offset, cs);
            counted.push((offset, cs));
            let n = counts.get(offset >> counts.cluster_bits);
            if n != 1 {
                r.error(format!("ERROR refcount block {i} refcount={n}"));
                r.result.rebuild_needed = true;
            }
        }
    }
    counted
}

/// Walks L1/L2 and bitmap tables, counting what they reference.
struct TableWalker<'a> {
    storage: &'a dyn Storage,
    header: &'a Header,
    external_data: bool,
}

impl TableWalker<'_> {
    fn geometry(&self) -> entry::Geometry {
        entry::Geometry {
            cluster_bits: self.header.cluster_bits,
            extended_l2: self.header.extended_l2(),
            external_data: self.external_data,
        }
    }

    fn l1(
        &self,
        counts: &mut Counts,
        r: &mut Report<'_>,
        l1_offset: u64,
        l1: &[u64],
        active: bool,
    ) -> Result<()> {
        let cs = self.header.cluster_size();
        counts.add(r, l1_offset, l1.len() as u64 * 8);
        for &e in l1 {
            if e == 0 {
                continue;
            }
            if e & L1_RESERVED_MASK != 0 {
                r.error(format!(
                    "ERROR found L1 entry with reserved bits set: {e:x}"
                ));
            }
            let l2_offset = e & OFFSET_MASK;
            counts.add(r, l2_offset, cs);
            if l2_offset % cs != 0 {
                r.error(format!(
                    "ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"
                ));
            }
            self.l2(counts, r, l2_offset, active)?;
        }
        Ok(())
    }

    fn l2(
        &self,
        counts: &mut Counts,
        r: &mut Report<'_>,
        l2_offset: u64,
        active: bool,
    ) -> Result<()> {
        let geo = self.geometry();
        let cs = geo.cluster_size();
        let table = read_l2_table(self.storage, &geo, l2_offset)?;
        let reserved = if geo.extended_l2 {
            L2_EXTENDED_RESERVED_MASK
        } else {
            entry::L2_RESERVED_MASK
        };
        let mut next_contiguous = 0u64;
        for (i, &(mut e)) in table.iter().enumerate() {
            if !e.is_compressed() && e.word & reserved != 0 {
                r.error(format!(
                    "ERROR found l2 entry with reserved bits set: {:x}",
                    e.word
                ));
            }
            if e.is_compressed() {
                if e.word & COPIED != 0 {
                    let desc = CompressedDescriptor::decode(e.word & !COPIED, geo.cluster_bits);
                    r.error(format!(
                        "ERROR: coffset=0x{:x}: copied flag must never be set for compressed clusters",
                        desc.offset
                    ));
                    e.word &= !COPIED;
                }
                if self.external_data {
                    r.error(format!(
                        "ERROR compressed cluster {i} with data file, entry=0x{:x}",
                        e.word
                    ));
                    continue;
                }
                if e.bitmap != 0 {
                    r.error(format!(
                        "ERROR compressed cluster {i} with non-zero subcluster allocation bitmap, entry=0x{:x}",
                        e.word
                    ));
                    continue;
                }
                let desc = CompressedDescriptor::decode(e.word, geo.cluster_bits);
                counts.add(r, desc.offset, desc.read_len());
                if active {
                    r.result.allocated_clusters += 1;
                    r.result.compressed_clusters += 1;
                    r.result.fragmented_clusters += 1;
                }
                continue;
            }
            let zero_flag = !geo.extended_l2 && e.word & entry::ZERO != 0;
            match e.host_cluster(&geo) {
                Some(offset) => {
                    if (e.bitmap >> 32) & e.bitmap != 0 {
                        r.error(format!(
                            "ERROR offset={offset:x}: Allocated cluster has corrupted subcluster allocation bitmap"
                        ));
                    }
                    if offset % cs != 0 {
                        let holds_data = if geo.extended_l2 {
                            e.bitmap & 0xffff_ffff != 0
                        } else {
                            !zero_flag
                        };
                        if holds_data {
                            r.error(format!("ERROR offset={offset:x}: Data cluster is not properly aligned; L2 entry corrupted."));
                        } else {
                            r.error(format!("ERROR offset={offset:x}: Preallocated cluster is not properly aligned; L2 entry corrupted."));
                            let entry_len = if geo.extended_l2 { 16 } else { 8 };
                            r.misaligned_zeroes.push(MisalignedZero {
                                at: l2_offset + i as u64 * entry_len,
                                word: if geo.extended_l2 { 0 } else { entry::ZERO },
                                offset,
                            });
                        }
                    }
                    if active {
                        r.result.allocated_clusters += 1;
                        if next_contiguous != 0 && offset != next_contiguous {
                            r.result.fragmented_clusters += 1;
                        }
                        next_contiguous = offset + cs;
                    }
                    if !self.external_data {
                        counts.add(r, offset, cs);
                    }
                }
                None if !zero_flag && e.bitmap & 0xffff_ffff != 0 => {
                    r.error(
                        "ERROR: Unallocated cluster has non-zero subcluster allocation map".into(),
                    );
                }
                None => {}
            }
        }
        Ok(())
    }

    fn bitmap(&self, counts: &mut Counts, r: &mut Report<'_>, bm: &Bitmap) -> Result<()> {
        let cs = self.header.cluster_size();
        let len = bm.table_size as u64 * 8;
        counts.add(r, bm.table_offset, len);
        if bm.table_offset % cs != 0 || len > (64 << 20) {
            return Ok(());
        }
        for e in read_be_table(self.storage, bm.table_offset, bm.table_size as u64)? {
            let off = e & BITMAP_TABLE_OFFSET_MASK;
            if off != 0 {
                counts.add(r, off, cs);
            }
        }
        Ok(())
    }

    /// COPIED must be set exactly where the stored refcount is 1; with
    /// `fix`, wrong flags are rewritten.
    fn oflag_copied(
        &self,
        stored: &mut StoredRefcounts<'_>,
        r: &mut Report<'_>,
        l1: &[u64],
        fix: bool,
    ) -> Result<()> {
        let geo = self.geometry();
        for (i, &e) in l1.iter().enumerate() {
            let l2_offset = e & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            let refcount = stored.get(l2_offset >> geo.cluster_bits)?;
            let at = self.header.l1_table_offset + i as u64 * 8;
            self.copied_flag(r, e, refcount, at, fix, || {
                format!("OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={e:x} refcount={refcount}")
            })?;
            for (j, e) in read_l2_table(self.storage, &geo, l2_offset)?
                .iter()
                .enumerate()
            {
                if e.is_compressed() {
                    continue;
                }
                let Some(data) = e.host_cluster(&geo) else {
                    continue;
                };
                let refcount = if self.external_data {
                    1
                } else {
                    stored.get(data >> geo.cluster_bits)?
                };
                let at = l2_offset + (j * geo.entry_bytes()) as u64;
                self.copied_flag(r, e.word, refcount, at, fix, || {
                    format!(
                        "OFLAG_COPIED data cluster: l2_entry={:x} refcount={refcount}",
                        e.word
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Compares the COPIED flag of the table entry `word` (stored at `at`)
    /// with the refcount of what it points at; a mismatch is logged as an
    /// error, or with `fix` the entry is rewritten and the repair logged.
    fn copied_flag(
        &self,
        r: &mut Report<'_>,
        word: u64,
        refcount: u64,
        at: u64,
        fix: bool,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if (refcount == 1) == (word & COPIED != 0) {
            return Ok(());
        }
        if !fix {
            r.error(format!("ERROR {}", what()));
            return Ok(());
        }
        let fixed = if refcount == 1 {
            word | COPIED
        } else {
            word & !COPIED
        };
        self.storage.write_at(&fixed.to_be_bytes(), at)?;
        r.log(format!("Repairing {}", what()));
        r.result.corruptions_fixed += 1;
        Ok(())
    }
}
