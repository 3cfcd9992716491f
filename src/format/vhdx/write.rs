//! Writing VHDX images, in an order that leaves a consistent image after
//! a crash at any point:
//!
//! 1. the first write of a session records new file and data write GUIDs
//!    in both headers (the non-current slot first, a flush after each);
//! 2. a write to a block that is not stored appends a new block at the
//!    end of the file (MiB aligned, the file extended first so the rest
//!    of the block reads as zeros) and writes the data there; the BAT
//!    entry changes in memory only;
//! 3. `flush` makes the data durable, then writes the changed BAT
//!    entries in place, then flushes again.
//!
//! A crash before step 3 completes leaves blocks nothing points at (space
//! lost at the end of the file, no data lost that was flushed before).
//! The BAT is written in place rather than through the log, so every
//! state a crash leaves opens read-only in QEMU too (QEMU refuses a
//! read-only open of an image whose log must be replayed).

use super::header::{Header, HEADER_OFFSETS, MIB};
use super::{bat, lock, State, Vhdx};
use crate::error::{Error, Result};
use crate::format::check_write_range;

impl Vhdx {
    fn check_writable(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::unsupported("the VHDX image was opened read-only"));
        }
        check_write_range(offset, len, self.meta.virtual_size)
    }

    /// Writes `new` (its sequence number set here) into both header
    /// slots, the non-current one first, flushing after each.
    pub(super) fn write_headers(&self, st: &mut State, new: Header) -> Result<()> {
        let mut h = new;
        for _ in 0..2 {
            h.sequence = st.header.sequence.wrapping_add(1);
            let slot = 1 - st.slot;
            self.storage.write_at(&h.encode(), HEADER_OFFSETS[slot])?;
            self.storage.flush()?;
            st.header = h;
            st.slot = slot;
        }
        Ok(())
    }

    /// Starts a write session: new write GUIDs in the headers.
    fn start_session(&self, st: &mut State) -> Result<()> {
        if st.session_started {
            return Ok(());
        }
        let h = Header {
            file_write_guid: super::header::random_guid(),
            data_write_guid: super::header::random_guid(),
            ..st.header
        };
        self.write_headers(st, h)?;
        st.session_started = true;
        Ok(())
    }

    /// Writes guest bytes, allocating blocks as needed.
    pub(super) fn write_guest(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_writable(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let bs = self.geometry.block_size;
        let mut st = lock(&self.state);
        self.start_session(&mut st)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = ((bs - pos % bs) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            let index = self.geometry.index(pos / bs);
            let e = st.bat[index];
            let host = match bat::state(e) {
                bat::FULLY_PRESENT => bat::offset(e),
                bat::PARTIALLY_PRESENT => {
                    return Err(Error::unsupported("differencing VHDX is not supported"))
                }
                _ => self.allocate(&mut st, index)?,
            };
            self.storage.write_data_at(piece, host + pos % bs)?;
            done += n;
        }
        Ok(())
    }

    /// Makes a range read as zeros: blocks not stored already do; stored
    /// ranges are overwritten with zeros.
    pub(super) fn zero_guest(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable(offset, len)?;
        let bs = self.geometry.block_size;
        let mut st = lock(&self.state);
        let mut pos = offset;
        while pos < offset + len {
            let n = (bs - pos % bs).min(offset + len - pos);
            let e = st.bat[self.geometry.index(pos / bs)];
            if bat::state(e) == bat::FULLY_PRESENT {
                self.start_session(&mut st)?;
                self.storage.zero_range(bat::offset(e) + pos % bs, n)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Appends a block for BAT index `index` and returns its offset.
    fn allocate(&self, st: &mut State, index: usize) -> Result<u64> {
        let bs = self.geometry.block_size;
        // A tail left by a crash (unreferenced) is skipped, not reused:
        // its bytes must not show through as data.
        let start = st.next_free.max(self.storage.len()?).div_ceil(MIB) * MIB;
        if start >> 20 >= 1 << 44 {
            return Err(Error::unsupported(
                "the VHDX is full: a new block would lie past what a BAT entry can address",
            ));
        }
        self.storage.set_len(start + bs)?;
        st.bat[index] = bat::entry(bat::FULLY_PRESENT, start);
        st.next_free = start + bs;
        st.unpublished = Some(match st.unpublished {
            Some((lo, hi)) => (lo.min(index), hi.max(index)),
            None => (index, index),
        });
        Ok(start)
    }

    /// Makes every completed write durable: data and new blocks first,
    /// then the BAT entries that point at the new blocks, then those.
    pub(super) fn flush_all(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut st = lock(&self.state);
        let Some((lo, hi)) = st.unpublished else {
            return self.storage.flush();
        };
        self.storage.flush()?;
        let bytes: Vec<u8> = st.bat[lo..=hi]
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        self.storage
            .write_at(&bytes, self.regions.bat.offset + lo as u64 * 8)?;
        self.storage.flush()?;
        st.unpublished = None;
        Ok(())
    }
}
