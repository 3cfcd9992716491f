//! Writing VHDs. Fixed disks are written in place. A dynamic disk gets a
//! new block where its footer lies, in an order that leaves a consistent
//! image after a crash at any point: the bitmap and data, then the footer
//! at the new end; the BAT entries that point at new blocks are written
//! by the next flush, after a flush of everything they point at (a crash
//! before leaves an unreferenced tail, which the next allocation reuses).
//! Batching the entries keeps to two flushes per `flush`, not two per
//! block.
//!
//! A copy writes in two phases: under the lock, a new block is reserved
//! (its bitmap and the footer after it written, as for a serial
//! allocation); the copy's workers write the data, several blocks at once,
//! and any part of a block; publishing puts the block in the in-memory
//! BAT, which the next flush writes after the data. A block's unwritten
//! bytes read zeros, as the unallocated block did (a VHD here has no
//! parent to show instead).

use super::dynamic::{DynamicHeader, UNALLOCATED};
use super::footer::FOOTER_LEN;
use super::{DynamicMeta, Layout, Vpc};
use crate::error::{Error, Result};
use crate::format::placement::push_host;
use crate::format::{check_write_range, Placement};

impl Vpc {
    fn check_writable(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the VHD image was opened read-only"));
        }
        check_write_range(offset, len, self.size)
    }

    /// Writes guest bytes, allocating dynamic blocks as needed.
    pub(super) fn write_guest(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_writable(offset, buf.len() as u64)?;
        let (header, meta) = match &self.layout {
            Layout::Fixed => return self.storage.write_data_at(buf, offset),
            Layout::Dynamic { header, meta } => (header, meta),
        };
        let bs = header.block_size as u64;
        let mut meta = Self::lock(meta);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = ((bs - pos % bs) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            match meta.bat[(pos / bs) as usize] {
                UNALLOCATED => self.allocate(header, &mut meta, pos / bs, pos % bs, piece)?,
                e => {
                    let h = e as u64 * 512 + header.bitmap_bytes() + pos % bs;
                    self.storage.write_data_at(piece, h)?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Phase one of a two-phase write of `len` bytes at `offset`: a fixed
    /// disk's bytes go in place; a dynamic disk's allocated blocks too,
    /// and whole unallocated blocks get a new block, reserved here.
    pub(super) fn plan_guest(&self, offset: u64, len: u64) -> Result<Vec<Placement>> {
        self.check_writable(offset, len)?;
        let mut out = Vec::new();
        let (header, meta) = match &self.layout {
            Layout::Fixed => {
                push_host(&mut out, offset, offset, len);
                return Ok(out);
            }
            Layout::Dynamic { header, meta } => (header, meta),
        };
        let bs = header.block_size as u64;
        let mut meta = Self::lock(meta);
        let mut pos = offset;
        while pos < offset + len {
            let n = (bs - pos % bs).min(offset + len - pos);
            let index = pos / bs;
            match meta.bat[index as usize] {
                UNALLOCATED => {
                    // A new block reads zeros wherever its data is not
                    // written, as the unallocated block did; other pieces
                    // of it go to the same block while it is planned.
                    let data_start = match meta.planned.get(&index) {
                        Some(&sector) => sector as u64 * 512 + header.bitmap_bytes(),
                        None => self.reserve(header, &mut meta, index)?,
                    };
                    push_host(&mut out, pos, data_start + pos % bs, n);
                }
                e => push_host(
                    &mut out,
                    pos,
                    e as u64 * 512 + header.bitmap_bytes() + pos % bs,
                    n,
                ),
            }
            pos += n;
        }
        Ok(out)
    }

    /// Reserves a new block for `index` at the end of the data: its bitmap
    /// (all ones) and the footer after it are written, and bytes an
    /// unreferenced tail left where its data goes are zeroed; the block is
    /// planned, not in the BAT. Returns where its data starts.
    fn reserve(&self, header: &DynamicHeader, meta: &mut DynamicMeta, index: u64) -> Result<u64> {
        let start = meta.next_free;
        let bitmap = header.bitmap_bytes();
        let end = start + bitmap + header.block_size as u64;
        let sector = start / 512;
        if sector >= UNALLOCATED as u64 {
            return Err(Error::unsupported(
                "the VHD is full: a new block would lie past what a BAT entry can address",
            ));
        }
        let file_len = self.storage.len()?;
        let stale_end = file_len.min(end);
        if stale_end > start + bitmap {
            self.storage
                .zero_range(start + bitmap, stale_end - start - bitmap)?;
        }
        self.storage.write_at(&vec![0xff; bitmap as usize], start)?;
        if file_len > end + FOOTER_LEN as u64 {
            self.storage.set_len(end + FOOTER_LEN as u64)?;
        }
        self.storage.write_at(&self.footer.raw, end)?;
        meta.next_free = end;
        meta.planned.insert(index, sector as u32);
        Ok(start + bitmap)
    }

    /// Phase three: the planned blocks of `placed` join the BAT (written
    /// by the next flush, after their data).
    pub(super) fn publish_planned(&self, placed: &[Placement]) -> Result<()> {
        let Layout::Dynamic { header, meta } = &self.layout else {
            return Ok(());
        };
        let bs = header.block_size as u64;
        let mut meta = Self::lock(meta);
        for p in placed {
            let Placement::Host { guest, len, .. } = *p else {
                continue;
            };
            for index in guest.0 / bs..(guest.0 + len).div_ceil(bs) {
                if let Some(sector) = meta.planned.remove(&index) {
                    meta.bat[index as usize] = sector;
                    meta.unpublished = Some(match meta.unpublished {
                        Some((lo, hi)) => (lo.min(index), hi.max(index)),
                        None => (index, index),
                    });
                }
            }
        }
        Ok(())
    }

    /// Forgets planned blocks whose data will not be written: nothing
    /// points at them, so they are unreferenced space (a VHD has no
    /// allocation count to leak from).
    pub(super) fn abandon_planned(&self, placed: &[Placement]) -> Result<()> {
        let Layout::Dynamic { header, meta } = &self.layout else {
            return Ok(());
        };
        let bs = header.block_size as u64;
        let mut meta = Self::lock(meta);
        for p in placed {
            if let Placement::Host { guest, len, .. } = *p {
                for index in guest.0 / bs..(guest.0 + len).div_ceil(bs) {
                    meta.planned.remove(&index);
                }
            }
        }
        Ok(())
    }

    /// Makes a range read as zeros: unallocated blocks already do; stored
    /// ranges are overwritten with zeros.
    pub(super) fn zero_guest(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable(offset, len)?;
        let (header, meta) = match &self.layout {
            Layout::Fixed => return self.storage.zero_range(offset, len),
            Layout::Dynamic { header, meta } => (header, meta),
        };
        let bs = header.block_size as u64;
        let meta = Self::lock(meta);
        let mut pos = offset;
        while pos < offset + len {
            let n = (bs - pos % bs).min(offset + len - pos);
            let e = meta.bat[(pos / bs) as usize];
            if e != UNALLOCATED {
                let h = e as u64 * 512 + header.bitmap_bytes() + pos % bs;
                self.storage.zero_range(h, n)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Allocates block `index` at the end of the data and stores `data` at
    /// `within` it.
    fn allocate(
        &self,
        header: &DynamicHeader,
        meta: &mut DynamicMeta,
        index: u64,
        within: u64,
        data: &[u8],
    ) -> Result<()> {
        let start = meta.next_free;
        let bitmap = header.bitmap_bytes();
        let bs = header.block_size as u64;
        let data_start = start + bitmap;
        let end = data_start + bs;
        let sector = start / 512;
        if sector >= UNALLOCATED as u64 {
            return Err(Error::unsupported(
                "the VHD is full: a new block would lie past what a BAT entry can address",
            ));
        }
        let file_len = self.storage.len()?;
        // Bytes already in the file past the old footer (an unreferenced
        // tail left by a crash) must not show through as data.
        let old_end = file_len.min(end);
        let host = data_start + within;
        let zero = |from: u64, to: u64| -> Result<()> {
            let (from, to) = (from.max(data_start), to.min(old_end));
            if from < to {
                self.storage.zero_range(from, to - from)?;
            }
            Ok(())
        };
        zero(data_start, host)?;
        zero(host + data.len() as u64, end)?;
        self.storage.write_at(&vec![0xff; bitmap as usize], start)?;
        self.storage.write_data_at(data, host)?;
        if file_len > end + FOOTER_LEN as u64 {
            self.storage.set_len(end + FOOTER_LEN as u64)?;
        }
        self.storage.write_at(&self.footer.raw, end)?;
        meta.bat[index as usize] = sector as u32;
        meta.next_free = end;
        meta.unpublished = Some(match meta.unpublished {
            Some((lo, hi)) => (lo.min(index), hi.max(index)),
            None => (index, index),
        });
        Ok(())
    }

    /// Makes every completed write durable: data and new blocks first,
    /// then the BAT entries that point at the new blocks, then those.
    pub(super) fn flush_all(&self) -> Result<()> {
        let Layout::Dynamic { header, meta } = &self.layout else {
            return self.storage.flush();
        };
        let mut meta = Self::lock(meta);
        let Some((lo, hi)) = meta.unpublished else {
            return self.storage.flush();
        };
        self.storage.flush()?;
        let bytes: Vec<u8> = meta.bat[lo as usize..=hi as usize]
            .iter()
            .flat_map(|e| e.to_be_bytes())
            .collect();
        self.storage
            .write_at(&bytes, header.table_offset + lo * 4)?;
        self.storage.flush()?;
        meta.unpublished = None;
        Ok(())
    }
}
