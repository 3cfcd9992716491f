//! Writing VDIs. Allocated blocks are written in place. A new block takes
//! the next index in the data area and is written whole (the data, zeros
//! around it), as QEMU writes them; its map entry and the header's
//! allocated count wait for the next flush, which first makes the data
//! durable and then writes the count and the entries together.
//!
//! Crash safety: before that write the file has at most an unreferenced
//! tail past the last block, which `check` does not see and the next new
//! block overwrites. The count and the entries travel in one write when the
//! map follows the header (as in every image qemu-img makes), so a crash
//! leaves both old or both new. When the map lies elsewhere the count goes
//! first: a crash between the two writes then wastes an index (`check`
//! reports the count mismatch) but never hands one index to two blocks.

use super::header::{at, BLOCK_SIZE, DISCARDED, HEADER_LEN};
use super::{is_allocated, Meta, Vdi};
use crate::error::{Error, Result};
use crate::format::check_write_range;

impl Meta {
    /// The index `block` is stored at: its map entry, or the index planned
    /// for it by a two-phase write.
    fn index_of(&self, block: usize) -> Option<u32> {
        let e = self.bmap[block];
        if is_allocated(e) {
            return Some(e);
        }
        self.planned.get(&block).map(|p| p.index)
    }
}

impl Vdi {
    pub(super) fn check_writable(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the VDI image was opened read-only"));
        }
        check_write_range(offset, len, self.size)
    }

    /// Writes guest bytes, allocating blocks as needed.
    pub(super) fn write_guest(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_writable(offset, buf.len() as u64)?;
        let mut meta = self.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = ((BLOCK_SIZE - pos % BLOCK_SIZE) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            let block = (pos / BLOCK_SIZE) as usize;
            match meta.index_of(block) {
                Some(e) => {
                    let h = meta.header.block_host(e) + pos % BLOCK_SIZE;
                    self.storage.write_data_at(piece, h)?;
                }
                None => self.allocate(&mut meta, block, pos % BLOCK_SIZE, piece)?,
            }
            done += n;
        }
        Ok(())
    }

    /// Makes a range read as zeros: unallocated and discarded blocks
    /// already do; stored ranges are overwritten with zeros.
    pub(super) fn zero_guest(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable(offset, len)?;
        let meta = self.lock();
        let mut pos = offset;
        while pos < offset + len {
            let n = (BLOCK_SIZE - pos % BLOCK_SIZE).min(offset + len - pos);
            if let Some(e) = meta.index_of((pos / BLOCK_SIZE) as usize) {
                let h = meta.header.block_host(e) + pos % BLOCK_SIZE;
                self.storage.zero_range(h, n)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Gives `block` the next index and stores `data` at `within` it, the
    /// rest of the block zero.
    fn allocate(&self, meta: &mut Meta, block: usize, within: u64, data: &[u8]) -> Result<()> {
        let index = meta.next_index;
        if index >= DISCARDED {
            return Err(Error::unsupported(
                "the VDI is full: a new block would need an index a map entry cannot hold",
            ));
        }
        let start = meta.header.block_host(index);
        let end = start + BLOCK_SIZE;
        let host = start + within;
        let file_len = self.storage.len()?;
        // Bytes already in the file there (an unreferenced tail left by a
        // crash) must not show through as data.
        let old_end = file_len.min(end);
        let zero = |from: u64, to: u64| -> Result<()> {
            let to = to.min(old_end);
            if from < to {
                self.storage.zero_range(from, to - from)?;
            }
            Ok(())
        };
        zero(start, host)?;
        zero(host + data.len() as u64, end)?;
        self.storage.write_data_at(data, host)?;
        if self.storage.len()? < end {
            self.storage.set_len(end)?;
        }
        meta.next_index = index + 1;
        meta.enter(block, index);
        Ok(())
    }

    /// Makes every completed write durable (two-phase writes that are
    /// published; the copy engine flushes only once none is outstanding): data and new blocks first,
    /// then the allocated count and the map entries that point at them.
    pub(super) fn flush_all(&self) -> Result<()> {
        let mut meta = self.lock();
        let Some((lo, hi)) = meta.unpublished else {
            return self.storage.flush();
        };
        // The file ends with the last block, whole, as qemu-img's do (a
        // two-phase write leaves a new block's unwritten tail a hole).
        let blocks_end = meta.header.block_host(meta.next_index);
        if self.storage.len()? < blocks_end {
            self.storage.set_len(blocks_end)?;
        }
        self.storage.flush()?;
        let count = meta.next_index;
        meta.header.set_blocks_allocated(count);
        let entries: Vec<u8> = meta.bmap[lo as usize..=hi as usize]
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        let bmap = meta.header.offset_bmap;
        let count_at = at::BLOCKS_ALLOCATED as u64;
        if bmap == HEADER_LEN as u64 {
            // One write from the count through the last changed entry.
            let mut bytes = meta.header.raw[at::BLOCKS_ALLOCATED..HEADER_LEN].to_vec();
            bytes.extend(
                meta.bmap[..lo as usize]
                    .iter()
                    .flat_map(|e| e.to_le_bytes()),
            );
            bytes.extend_from_slice(&entries);
            self.storage.write_at(&bytes, count_at)?;
        } else {
            self.storage.write_at(&count.to_le_bytes(), count_at)?;
            self.storage.flush()?;
            self.storage.write_at(&entries, bmap + lo as u64 * 4)?;
        }
        self.storage.flush()?;
        meta.unpublished = None;
        Ok(())
    }
}
