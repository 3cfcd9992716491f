//! Growing a QED image and emptying its L1 table (what `commit` does to
//! the image it committed).

use super::Qed;
use crate::error::{Error, Result};

impl Qed {
    /// Grows the virtual size to `new_size` (never shrinks) with one header
    /// write. The L1 table has a fixed size, so nothing else moves. QEMU
    /// wants QED sizes in whole 512-byte sectors and within what the tables
    /// can map. Reopen the image to use the new size.
    pub(super) fn grow_to(&self, new_size: u64) -> Result<()> {
        if new_size <= self.header.image_size {
            return Ok(());
        }
        if new_size % 512 != 0 || new_size > self.header.max_image_size() {
            return Err(Error::argument(format!(
                "cannot grow a QED image to {new_size} bytes (whole 512-byte sectors, at most {})",
                self.header.max_image_size()
            )));
        }
        self.require_writable(0, 0)?;
        let mut meta = self.lock_meta();
        self.flush_meta(&mut meta)?;
        let mut header = meta.header.clone();
        header.image_size = new_size;
        self.storage.write_at(&header.encode(), 0)?;
        self.storage.flush()?;
        meta.header = header;
        Ok(())
    }

    /// Clears the whole L1 table, so the image reads its backing file
    /// everywhere, then cuts the file after the header and the L1 table
    /// (QED keeps nothing else: the rest was L2 tables and data). A crash
    /// before the cut leaves only leaked clusters.
    pub(super) fn empty_active_layer(&self) -> Result<()> {
        self.require_writable(0, 0)?;
        let mut meta = self.lock_meta();
        self.flush_meta(&mut meta)?;
        let table = meta.header.table_bytes();
        let l1_offset = meta.header.l1_table_offset;
        meta.l1.iter_mut().for_each(|e| *e = 0);
        meta.l1_dirty.clear();
        meta.tables.clear();
        self.storage
            .write_at(&vec![0u8; table as usize], l1_offset)?;
        self.storage.flush()?;
        let end = (l1_offset + table).max(meta.header.header_bytes());
        if self.storage.len()? > end {
            self.storage.set_len(end)?;
            self.storage.flush()?;
            meta.file_len = end;
        }
        Ok(())
    }
}
