//! A hosted sparse extent: header, grain directory, grain tables and
//! grains (plain, or compressed behind grain markers in a stream).
//!
//! Writes of a plain sparse extent go in a crash-safe order: a new grain's
//! data is written first, at the end of the file; its grain table entry
//! is only written at the next flush, after a flush of the data, to the
//! redundant table and then to the primary one. A crash leaves at worst a
//! leaked grain (VMDK has no refcounts: QEMU's check does not report it).
//!
//! A stream (streamOptimized) is written strictly in increasing file
//! offsets: grains behind markers, one after the other in guest order,
//! then at flush the grain tables, the grain directory, the footer and the
//! end-of-stream marker.

use super::header::{
    grain_marker, is_metadata_marker, metadata_marker, SparseHeader, FLAG_ZEROED_GRAIN, GD_AT_END,
    MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, SECTOR,
};
use crate::error::{Error, Result};
use crate::io::Storage;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// The most grain directory bytes qimg loads (as QEMU's limit on its L1).
const MAX_GD_BYTES: u64 = 32 << 20;
/// Clean grain tables kept in memory at most.
const CACHED_TABLES: usize = 4096;

/// Where one grain of an extent lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not stored: reads as zeros (no backing files).
    Unallocated,
    /// A zeroed-grain entry.
    Zero,
    /// Stored plainly at this byte offset of the extent file.
    Data(u64),
    /// Stored compressed behind a grain marker at this byte offset.
    Compressed(u64),
}

/// One grain table in memory.
#[derive(Debug)]
struct Table {
    entries: Vec<u32>,
    /// Changed in memory, not yet written.
    dirty: bool,
}

/// The mutable state of an extent.
#[derive(Debug)]
struct Meta {
    gd: Vec<u32>,
    tables: HashMap<u64, Table>,
    /// Where the next grain goes (bytes).
    next_free: u64,
    /// A stream being written: the guest grain index the next one must
    /// exceed.
    stream_last: Option<u64>,
    /// The stream's tail is written after its last grain.
    tail_written: bool,
    /// Grains planned by [`SparseExtent::plan`] whose data is being
    /// written: guest grain index to sector. Not in the tables (so not
    /// read, nor written to the file) until published.
    planned: HashMap<u64, u32>,
}

/// Reads what an image's parent shows at a byte offset of the extent.
pub type ParentRead<'a> = dyn Fn(u64, &mut [u8]) -> Result<()> + 'a;

/// An open sparse extent.
#[derive(Debug)]
pub struct SparseExtent {
    storage: Arc<dyn Storage>,
    /// The effective header (a stream's footer when its GD is at the end).
    pub header: SparseHeader,
    /// The header at sector 0 (what a stream keeps there).
    first: SparseHeader,
    meta: Mutex<Meta>,
    writable: bool,
}

fn read_u32s(storage: &dyn Storage, at: u64, n: usize) -> Result<Vec<u32>> {
    let mut raw = vec![0u8; n * 4];
    storage.read_at(&mut raw, at)?;
    Ok(raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

fn u32s_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|e| e.to_le_bytes()).collect()
}

impl SparseExtent {
    /// Opens the sparse extent held by `storage`.
    pub fn open(storage: Arc<dyn Storage>, writable: bool) -> Result<Self> {
        let file_len = storage.len()?;
        let mut raw = [0u8; 512];
        storage.read_at(&mut raw, 0)?;
        if !SparseHeader::has_magic(&raw) {
            return Err(Error::invalid("not a VMDK sparse extent (no KDMV magic)"));
        }
        if file_len < SECTOR {
            return Err(Error::corrupt(format!(
                "File truncated, expecting at least {SECTOR} bytes"
            )));
        }
        let first = SparseHeader::parse(&raw)?;
        let mut header = first;
        if first.gd_offset == GD_AT_END {
            header = read_footer(storage.as_ref(), file_len)?;
            if header.gd_offset == GD_AT_END {
                return Err(Error::corrupt("Invalid footer"));
            }
        }
        header.validate(file_len, writable)?;
        let entries = header.gd_entries();
        if entries * 4 > MAX_GD_BYTES {
            return Err(Error::invalid(format!(
                "L1 size too big: the grain directory would have {entries} entries"
            )));
        }
        let gd = read_u32s(
            storage.as_ref(),
            header.gd_offset * SECTOR,
            entries as usize,
        )?;
        let mut next_free = file_len.div_ceil(SECTOR) * SECTOR;
        next_free = next_free.max(header.overhead * SECTOR);
        let mut stream_last = None;
        if header.compressed() && writable {
            if first.gd_offset != GD_AT_END || gd.iter().any(|&e| e != 0) {
                return Err(Error::unsupported(
                    "writing into an existing streamOptimized image is not supported (qimg writes them only while creating them)",
                ));
            }
            // A fresh stream: grains go where its empty tail starts (the
            // grain directory's marker).
            next_free = (header.gd_offset - 1) * SECTOR;
            stream_last = Some(u64::MAX);
        }
        Ok(SparseExtent {
            storage,
            header,
            first,
            meta: Mutex::new(Meta {
                gd,
                tables: HashMap::new(),
                next_free,
                stream_last,
                tail_written: false,
                planned: HashMap::new(),
            }),
            writable,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The extent file.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Guest bytes of the extent.
    pub fn len(&self) -> u64 {
        self.header.capacity * SECTOR
    }

    /// Whether the extent is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Guest bytes per grain.
    pub fn grain_bytes(&self) -> u64 {
        self.header.grain_bytes()
    }

    fn table<'m>(&self, meta: &'m mut Meta, index: u64) -> Result<Option<&'m mut Table>> {
        let sector = meta.gd[index as usize];
        if sector == 0 && !meta.tables.contains_key(&index) {
            return Ok(None);
        }
        if !meta.tables.contains_key(&index) {
            let n = self.header.num_gtes as usize;
            let at = sector as u64 * SECTOR;
            let len = self.storage.len()?;
            if at + n as u64 * 4 > len {
                return Err(Error::corrupt(format!(
                    "grain table {index} at offset {at:#x} lies past the end of the file ({len} bytes)"
                ))
                .at_offset(at));
            }
            let entries = read_u32s(self.storage.as_ref(), at, n)?;
            if meta.tables.len() >= CACHED_TABLES {
                meta.tables.retain(|_, t| t.dirty);
            }
            meta.tables.insert(
                index,
                Table {
                    entries,
                    dirty: false,
                },
            );
        }
        Ok(meta.tables.get_mut(&index))
    }

    /// Where guest grain `g` of the extent lives.
    pub fn grain(&self, g: u64) -> Result<Grain> {
        let per = self.header.num_gtes as u64;
        let mut meta = self.lock();
        let Some(t) = self.table(&mut meta, g / per)? else {
            return Ok(Grain::Unallocated);
        };
        let e = t.entries[(g % per) as usize];
        Ok(match e {
            0 => Grain::Unallocated,
            1 if self.header.flags & FLAG_ZEROED_GRAIN != 0 => Grain::Zero,
            s if self.header.compressed() => Grain::Compressed(s as u64 * SECTOR),
            s => Grain::Data(s as u64 * SECTOR),
        })
    }

    /// Inflates the compressed grain whose marker is at `at` into `out`
    /// (a whole grain; a short stream fills the rest with zeros).
    pub fn read_compressed(&self, at: u64, out: &mut [u8]) -> Result<()> {
        let mut head = [0u8; 12];
        self.storage.read_at(&mut head, at)?;
        let (_, size) = grain_marker(&head);
        let limit = self.grain_bytes() * 2 + 4096;
        if size == 0 || size as u64 > limit {
            return Err(
                Error::corrupt(format!("invalid compressed grain of {size} bytes")).at_offset(at),
            );
        }
        let mut data = vec![0u8; size as usize];
        self.storage.read_at(&mut data, at + 12)?;
        let mut z = flate2::read::ZlibDecoder::new(&data[..]);
        let mut filled = 0;
        while filled < out.len() {
            match z.read(&mut out[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    return Err(
                        Error::corrupt(format!("compressed grain does not inflate: {e}"))
                            .at_offset(at),
                    )
                }
            }
        }
        out[filled..].fill(0);
        Ok(())
    }

    /// The first grain entry that points at or past the end of the file,
    /// as the guest sector (in the extent) of its grain: what QEMU's check
    /// looks for.
    pub fn grains_past_eof(&self) -> Result<Option<u64>> {
        let len = self.storage.len()?;
        let per = self.header.num_gtes as u64;
        let entries = self.header.gd_entries();
        for i in 0..entries {
            let mut meta = self.lock();
            let Some(t) = self.table(&mut meta, i)? else {
                continue;
            };
            for (k, &e) in t.entries.iter().enumerate() {
                let zeroed = e == 1 && self.header.flags & FLAG_ZEROED_GRAIN != 0;
                if e != 0 && !zeroed && e as u64 * SECTOR >= len {
                    return Ok(Some((i * per + k as u64) * self.header.grain_sectors));
                }
            }
        }
        Ok(None)
    }

    fn set_entry(&self, meta: &mut Meta, g: u64, value: u32) -> Result<()> {
        let per = self.header.num_gtes as u64;
        let index = g / per;
        if meta.gd[index as usize] == 0 && meta.stream_last.is_none() {
            return Err(Error::unsupported(
                "allocating grain tables in VMDK images is not supported (the image has no table for this range)",
            ));
        }
        if meta.stream_last.is_some() && !meta.tables.contains_key(&index) {
            meta.tables.insert(
                index,
                Table {
                    entries: vec![0; per as usize],
                    dirty: true,
                },
            );
        }
        let t = self
            .table(meta, index)?
            .expect("the table exists or was just made");
        t.entries[(g % per) as usize] = value;
        t.dirty = true;
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the VMDK image is open read-only"));
        }
        Ok(())
    }

    /// Writes `buf` at byte `offset` of the extent (not a stream): grains
    /// that exist are written in place, new ones at the end of the file,
    /// whole; their entries wait for [`SparseExtent::flush`]. The rest of a
    /// new grain is zero, or, for an unallocated grain of an image with a
    /// parent, what `parent` reads for the grain (it gets the grain's byte
    /// offset in the extent).
    pub fn write(&self, offset: u64, buf: &[u8], parent: Option<&ParentRead<'_>>) -> Result<()> {
        self.check_writable()?;
        let gb = self.grain_bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let g = pos / gb;
            let within = pos % gb;
            let n = ((gb - within) as usize).min(buf.len() - done);
            let part = &buf[done..done + n];
            if self.header.compressed() {
                return Err(Error::unsupported(
                    "streamOptimized images take whole grains, compressed, in increasing order",
                ));
            }
            match self.grain(g)? {
                Grain::Data(host) => self.storage.write_at(part, host + within)?,
                found @ (Grain::Unallocated | Grain::Zero) => {
                    let unallocated = found == Grain::Unallocated;
                    if unallocated && parent.is_none() && part.iter().all(|&b| b == 0) {
                        done += n;
                        continue;
                    }
                    let mut grain = vec![0u8; gb as usize];
                    if let (true, Some(read)) = (unallocated, parent) {
                        if n < gb as usize {
                            read(g * gb, &mut grain)?;
                        }
                    }
                    grain[within as usize..within as usize + n].copy_from_slice(part);
                    let mut meta = self.lock();
                    let host = meta.next_free;
                    let sector = host / SECTOR;
                    if sector > u32::MAX as u64 {
                        return Err(Error::unsupported(
                            "the VMDK extent is full (grain offsets past 2 TiB)",
                        ));
                    }
                    self.storage.write_at(&grain, host)?;
                    meta.next_free = host + gb;
                    self.set_entry(&mut meta, g, sector as u32)?;
                }
                Grain::Compressed(_) => unreachable!("not a stream"),
            }
            done += n;
        }
        // Tables waiting for their grains' flush are kept in memory: past
        // a bound, they are written out (after a flush of the data).
        if self.lock().tables.values().filter(|t| t.dirty).count() > CACHED_TABLES {
            self.flush()?;
        }
        Ok(())
    }

    /// Plans a write of `len` bytes at byte `offset` of the extent (not a
    /// stream): calls `host` with (offset in the extent, offset in the
    /// file, length) for the pieces the caller writes itself (grains that
    /// exist, and whole new grains, allocated here at the end of the file
    /// in order), and `serial` for the rest (partial new grains, which
    /// [`SparseExtent::write`] completes).
    pub fn plan(
        &self,
        offset: u64,
        len: u64,
        host: &mut dyn FnMut(u64, u64, u64),
        serial: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        self.check_writable()?;
        let gb = self.grain_bytes();
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let g = pos / gb;
            let within = pos % gb;
            let n = (gb - within).min(end - pos);
            match self.grain(g)? {
                Grain::Data(h) => host(pos, h + within, n),
                _ if n < gb => serial(pos, n),
                _ => {
                    let mut meta = self.lock();
                    let at = meta.next_free;
                    let sector = at / SECTOR;
                    if sector > u32::MAX as u64 {
                        return Err(Error::unsupported(
                            "the VMDK extent is full (grain offsets past 2 TiB)",
                        ));
                    }
                    let per = self.header.num_gtes as u64;
                    if meta.gd[(g / per) as usize] == 0 {
                        drop(meta);
                        serial(pos, n);
                        pos += n;
                        continue;
                    }
                    meta.next_free = at + gb;
                    meta.planned.insert(g, sector as u32);
                    drop(meta);
                    host(pos, at, n);
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Makes the new grains of planned pieces (`offset`, `len` in the
    /// extent) part of the extent, once their data was written: their
    /// entries go to the tables, and to the file at the next flush, after
    /// a flush of the data.
    pub fn publish(&self, offset: u64, len: u64) -> Result<()> {
        let gb = self.grain_bytes();
        let mut meta = self.lock();
        for g in offset / gb..(offset + len).div_ceil(gb) {
            if let Some(sector) = meta.planned.remove(&g) {
                self.set_entry(&mut meta, g, sector)?;
            }
        }
        Ok(())
    }

    /// Forgets planned grains whose data will not be written (their space
    /// is leaked, which is safe).
    pub fn abandon(&self, offset: u64, len: u64) {
        let gb = self.grain_bytes();
        let mut meta = self.lock();
        for g in offset / gb..(offset + len).div_ceil(gb) {
            meta.planned.remove(&g);
        }
    }

    /// Makes `[offset, offset + len)` read as zeros: with zeroed grains
    /// allowed, whole grains get the zeroed-grain entry; otherwise
    /// allocated grains are zeroed in place and unallocated ones already
    /// read as zeros.
    pub fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        parent: Option<&ParentRead<'_>>,
    ) -> Result<()> {
        self.check_writable()?;
        let gb = self.grain_bytes();
        let mut pos = offset;
        let end = offset + len;
        let zeroed = self.header.flags & FLAG_ZEROED_GRAIN != 0;
        while pos < end {
            let g = pos / gb;
            let n = ((g + 1) * gb).min(end) - pos;
            if zeroed && n == gb && !self.header.compressed() {
                // A whole grain becomes a zeroed-grain entry (an allocated
                // grain is leaked, as by QEMU); written at the next flush.
                let mut meta = self.lock();
                self.set_entry(&mut meta, g, 1)?;
                pos += n;
                continue;
            }
            match self.grain(g)? {
                Grain::Data(host) => {
                    crate::io::write_zeros(self.storage.as_ref(), host + pos % gb, n)?
                }
                Grain::Compressed(_) => {
                    return Err(Error::unsupported(
                        "compressed grains of a streamOptimized image cannot be overwritten",
                    ))
                }
                // Unallocated, it would show the parent: zeros are stored.
                Grain::Unallocated if parent.is_some() => {
                    self.write(pos, &vec![0u8; n as usize], parent)?
                }
                Grain::Unallocated | Grain::Zero => {}
            }
            pos += n;
        }
        Ok(())
    }

    /// Appends the compressed grain `data` for the grain at byte `offset`
    /// of a stream being written; grains must come in increasing order.
    pub fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let gb = self.grain_bytes();
        let g = offset / gb;
        let mut meta = self.lock();
        let Some(last) = meta.stream_last else {
            return Err(Error::unsupported(
                "compressed grains are only written to streamOptimized images",
            ));
        };
        if offset % gb != 0 || (last != u64::MAX && g <= last) {
            return Err(Error::unsupported(
                "Could not write to allocated cluster for streamOptimized (grains go in increasing order)",
            ));
        }
        let host = meta.next_free;
        let sector = host / SECTOR;
        if sector > u32::MAX as u64 {
            return Err(Error::unsupported("the VMDK stream is full (past 2 TiB)"));
        }
        let total = (12 + data.len() as u64).div_ceil(SECTOR) * SECTOR;
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&(g * self.header.grain_sectors).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(total as usize, 0);
        self.storage.write_at(&out, host)?;
        meta.next_free = host + total;
        meta.stream_last = Some(g);
        meta.tail_written = false;
        self.set_entry(&mut meta, g, sector as u32)
    }

    /// Compresses one grain as a stream stores it (zlib, default level).
    pub fn compress(grain: &[u8]) -> Result<Vec<u8>> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(grain)
            .and_then(|_| z.finish())
            .map_err(|e| Error::new(crate::error::ErrorKind::Io, format!("compressing: {e}")))
    }

    /// Makes every write durable: data first, then the grain tables that
    /// point at it (the redundant copy before the primary one); a stream
    /// gets its tables, directory, footer and end-of-stream marker after
    /// its last grain.
    pub fn flush(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut meta = self.lock();
        if meta.stream_last.is_some() {
            if meta.tail_written {
                return self.storage.flush();
            }
            self.write_stream_tail(&mut meta)?;
            meta.tail_written = true;
            return Ok(());
        }
        if !meta.tables.values().any(|t| t.dirty) {
            return self.storage.flush();
        }
        self.storage.flush()?;
        let gt_bytes = self.header.num_gtes as u64 * 4;
        let rgd = if self.header.flags & super::header::FLAG_RGD != 0 && self.header.rgd_offset != 0
        {
            read_u32s(
                self.storage.as_ref(),
                self.header.rgd_offset * SECTOR,
                meta.gd.len(),
            )?
        } else {
            Vec::new()
        };
        let mut dirty: Vec<u64> = meta
            .tables
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(&i, _)| i)
            .collect();
        dirty.sort_unstable();
        for &i in &dirty {
            let raw = u32s_bytes(&meta.tables[&i].entries);
            if let Some(&r) = rgd.get(i as usize).filter(|&&r| r != 0) {
                self.storage.write_at(&raw, r as u64 * SECTOR)?;
            }
            let at = meta.gd[i as usize] as u64 * SECTOR;
            debug_assert!(raw.len() as u64 == gt_bytes);
            self.storage.write_at(&raw, at)?;
        }
        self.storage.flush()?;
        for i in dirty {
            if let Some(t) = meta.tables.get_mut(&i) {
                t.dirty = false;
            }
        }
        Ok(())
    }

    fn write_stream_tail(&self, meta: &mut Meta) -> Result<()> {
        let per = self.header.num_gtes as usize;
        let gt_sectors = (per as u64 * 4).div_ceil(SECTOR);
        let mut at = meta.next_free;
        let mut out = Vec::new();
        let mut indices: Vec<u64> = meta.tables.keys().copied().collect();
        indices.sort_unstable();
        let mut gd = vec![0u32; meta.gd.len()];
        for i in indices {
            out.extend_from_slice(&metadata_marker(gt_sectors, MARKER_GT));
            gd[i as usize] = ((at + out.len() as u64) / SECTOR) as u32;
            let mut raw = u32s_bytes(&meta.tables[&i].entries);
            raw.resize((gt_sectors * SECTOR) as usize, 0);
            out.extend_from_slice(&raw);
        }
        let gd_sectors = (gd.len() as u64 * 4).div_ceil(SECTOR);
        out.extend_from_slice(&metadata_marker(gd_sectors, MARKER_GD));
        let gd_sector = (at + out.len() as u64) / SECTOR;
        let mut raw = u32s_bytes(&gd);
        raw.resize((gd_sectors * SECTOR) as usize, 0);
        out.extend_from_slice(&raw);
        out.extend_from_slice(&metadata_marker(1, MARKER_FOOTER));
        let footer = SparseHeader {
            gd_offset: gd_sector,
            ..self.first
        };
        out.extend_from_slice(&footer.encode());
        out.extend_from_slice(&metadata_marker(0, MARKER_EOS));
        self.storage.write_at(&out, at)?;
        at += out.len() as u64;
        if self.storage.len()? > at {
            self.storage.set_len(at)?;
        }
        self.storage.flush()
    }
}

/// Reads a stream's footer (the three sectors before the end: footer
/// marker, footer, end-of-stream marker), as QEMU does.
fn read_footer(storage: &dyn Storage, file_len: u64) -> Result<SparseHeader> {
    if file_len < 3 * SECTOR {
        return Err(Error::corrupt("Invalid footer"));
    }
    let mut raw = vec![0u8; 3 * SECTOR as usize];
    storage.read_at(&mut raw, file_len - 3 * SECTOR)?;
    let (marker, rest) = raw.split_at(512);
    let (footer, eos) = rest.split_at(512);
    if !is_metadata_marker(marker, MARKER_FOOTER)
        || !SparseHeader::has_magic(footer)
        || !eos[..16].iter().all(|&b| b == 0)
    {
        return Err(Error::corrupt("Invalid footer").at_offset(file_len - 3 * SECTOR));
    }
    SparseHeader::parse(footer)
}

/// The layout of a new sparse extent, as qemu-img lays it out: header,
/// descriptor area, redundant GD and GTs, GD and GTs, grains from
/// `overhead`.
#[derive(Debug, Clone, Copy)]
pub struct NewSparse {
    /// Guest sectors.
    pub capacity: u64,
    /// Zeroed-grain entries allowed.
    pub zeroed_grain: bool,
    /// A stream (compressed grains, markers, GD at the end).
    pub stream: bool,
}

/// Sectors per grain of new extents.
pub const NEW_GRAIN_SECTORS: u64 = 128;
/// Sectors of a new descriptor area.
pub const NEW_DESC_SECTORS: u64 = 20;

impl NewSparse {
    /// The header (a stream's, with its GD at the end).
    pub fn header(&self) -> SparseHeader {
        let grains = self.capacity.div_ceil(NEW_GRAIN_SECTORS);
        let gt_count = grains.div_ceil(512);
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        let rgd = 1 + NEW_DESC_SECTORS;
        let gd = rgd + gd_sectors + gt_count * 4;
        let overhead =
            (gd + gd_sectors + gt_count * 4).div_ceil(NEW_GRAIN_SECTORS) * NEW_GRAIN_SECTORS;
        let mut h = SparseHeader {
            version: if self.zeroed_grain { 2 } else { 1 },
            flags: super::header::FLAG_NEWLINE | super::header::FLAG_RGD,
            capacity: self.capacity,
            grain_sectors: NEW_GRAIN_SECTORS,
            desc_offset: 1,
            desc_sectors: NEW_DESC_SECTORS,
            num_gtes: 512,
            rgd_offset: rgd,
            gd_offset: gd,
            overhead,
            unclean: false,
            compress: 0,
        };
        if self.zeroed_grain {
            h.flags |= FLAG_ZEROED_GRAIN;
        }
        if self.stream {
            h.version = 3;
            h.flags = super::header::FLAG_NEWLINE
                | super::header::FLAG_COMPRESSED
                | super::header::FLAG_MARKERS;
            h.rgd_offset = 0;
            h.gd_offset = GD_AT_END;
            h.overhead = (1 + NEW_DESC_SECTORS).div_ceil(NEW_GRAIN_SECTORS) * NEW_GRAIN_SECTORS;
            h.compress = super::header::COMPRESS_DEFLATE;
        }
        h
    }

    /// Writes the new extent into the empty `storage`, with `descriptor`
    /// (embedded; empty for an extent of a descriptor file). The header
    /// that makes it an extent is written last. A stream is written front
    /// to back (header and descriptor in one write); its empty tail is
    /// returned to be written after them, unless grains come first.
    pub fn write(&self, storage: &dyn Storage, descriptor: &str) -> Result<Option<Vec<u8>>> {
        let h = self.header();
        let area = (NEW_DESC_SECTORS * SECTOR) as usize;
        if descriptor.len() > area {
            return Err(Error::argument(
                "the VMDK descriptor does not fit its 10 KiB area",
            ));
        }
        let gt_count = h.gd_entries();
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        if self.stream {
            let mut head = vec![0u8; (h.overhead * SECTOR) as usize];
            head[..512].copy_from_slice(&h.encode());
            head[512..512 + descriptor.len()].copy_from_slice(descriptor.as_bytes());
            storage.write_at(&head, 0)?;
            let mut tail = Vec::new();
            tail.extend_from_slice(&metadata_marker(gd_sectors, MARKER_GD));
            tail.resize(tail.len() + (gd_sectors * SECTOR) as usize, 0);
            tail.extend_from_slice(&metadata_marker(1, MARKER_FOOTER));
            let footer = SparseHeader {
                gd_offset: h.overhead + 1,
                ..h
            };
            tail.extend_from_slice(&footer.encode());
            tail.extend_from_slice(&metadata_marker(0, MARKER_EOS));
            return Ok(Some(tail));
        }
        let mut desc = descriptor.as_bytes().to_vec();
        desc.resize(area, 0);
        storage.set_len(h.overhead * SECTOR)?;
        storage.write_at(&desc, SECTOR)?;
        for (dir, tables) in [
            (h.rgd_offset, h.rgd_offset + gd_sectors),
            (h.gd_offset, h.gd_offset + gd_sectors),
        ] {
            let gd: Vec<u32> = (0..gt_count).map(|i| (tables + i * 4) as u32).collect();
            storage.write_at(&u32s_bytes(&gd), dir * SECTOR)?;
        }
        storage.flush()?;
        storage.write_at(&h.encode(), 0)?;
        storage.flush()?;
        Ok(None)
    }
}
