//! Encrypted bytes seen as plain ones: a [`Storage`] over another whose
//! sectors from `base` on are encrypted with a LUKS sector cipher, sector
//! `n` being the `n`-th 512 bytes after `base`. A `luks` image's payload
//! and an encrypted qcow2 image's data clusters are read and written
//! through it, so each of the copy engine's workers encrypts and decrypts
//! its own requests, side by side, with no lock.

use super::crypto::{SectorCipher, SECTOR};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{AlignedBuf, HostExtent, Storage};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroize;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct CryptStorage {
    inner: Arc<dyn Storage>,
    cipher: Arc<SectorCipher>,
    base: u64,
}

impl CryptStorage {
    /// `inner` with its sectors from `base` (a multiple of 512) on
    /// encrypted by `cipher`.
    pub fn new(inner: Arc<dyn Storage>, cipher: Arc<SectorCipher>, base: u64) -> Self {
        CryptStorage {
            inner,
            cipher,
            base,
        }
    }

    /// The sector-aligned span around `[offset, offset + len)` and the
    /// number of its first sector.
    fn span(&self, offset: u64, len: usize) -> Result<(u64, u64, u64)> {
        if offset < self.base {
            return Err(Error::new(
                ErrorKind::OutOfBounds,
                format!(
                    "encrypted access at {offset} is before the encrypted area at {}",
                    self.base
                ),
            ));
        }
        let s = SECTOR as u64;
        let start = (offset - self.base) / s * s + self.base;
        let end = (offset + len as u64 - self.base).div_ceil(s) * s + self.base;
        Ok((start, end, (start - self.base) / s))
    }

    /// Encrypts and writes `plain` at `offset` (both sector aligned).
    fn write_sectors(&self, plain: &mut AlignedBuf, offset: u64) -> Result<()> {
        let first = (offset - self.base) / SECTOR as u64;
        self.cipher.encrypt(plain, first);
        self.inner.write_data_at(plain, offset)
    }

    /// Writes `bufs` one after the other at `offset`: whole sectors are
    /// encrypted in a buffer of their own; partial ones at the edges are
    /// read, decrypted and completed first.
    fn write_pieces(&self, bufs: &[&[u8]], offset: u64) -> Result<()> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Ok(());
        }
        let (start, end, _) = self.span(offset, len)?;
        let mut tmp = AlignedBuf::new();
        tmp.set_len((end - start) as usize);
        let head = (offset - start) as usize;
        if head != 0 || (offset + len as u64) != end {
            // Partial sectors: their other bytes are kept.
            self.read_at(&mut tmp, start)?;
        }
        let mut at = head;
        for b in bufs {
            tmp[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        self.write_sectors(&mut tmp, start)
    }
}

impl Storage for CryptStorage {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }

    fn requests_in_flight(&self) -> usize {
        self.inner.requests_in_flight()
    }

    fn writes_in_flight(&self) -> usize {
        // Encryption takes CPU: let the workers write side by side.
        self.inner.writes_in_flight().max(2)
    }

    fn len(&self) -> Result<u64> {
        self.inner.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (start, end, first) = self.span(offset, buf.len())?;
        if start == offset && end == offset + buf.len() as u64 {
            self.inner.read_at(buf, offset)?;
            self.cipher.decrypt(buf, first);
            return Ok(());
        }
        let mut tmp = AlignedBuf::new();
        tmp.set_len((end - start) as usize);
        self.inner.read_at(&mut tmp, start)?;
        self.cipher.decrypt(&mut tmp, first);
        let head = (offset - start) as usize;
        buf.copy_from_slice(&tmp[head..head + buf.len()]);
        tmp.zeroize();
        Ok(())
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.inner.allocated_bytes()
    }

    fn extent_at(&self, offset: u64) -> Result<HostExtent> {
        // A hole decrypts to noise, not zeros: everything is data.
        Ok(HostExtent::without_holes(self.inner.len()?, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.write_pieces(&[buf], offset)
    }

    fn write_data_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.write_pieces(&[buf], offset)
    }

    fn write_data_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> Result<()> {
        // At most a few MiB at once (the engine's requests), so one buffer.
        self.write_pieces(bufs, offset)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.allocate(offset, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        // Zeros must be written encrypted: a hole would read as noise.
        let chunk = 1u64 << 20;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk);
            let zeros = vec![0u8; n as usize];
            self.write_pieces(&[&zeros], offset + done)?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::crypto::CipherSpec;
    use super::*;
    use crate::io::MemStorage;

    #[test]
    fn unaligned_writes_and_reads_round_trip_and_the_file_holds_ciphertext() {
        let mem = Arc::new(MemStorage::new("m", vec![0u8; 8192]));
        let cipher = Arc::new(SectorCipher::new(&CipherSpec::DEFAULT, &[9u8; 64]).unwrap());
        let c = CryptStorage::new(mem.clone(), cipher, 1024);
        c.write_at(&[0x11; 700], 1024 + 100).unwrap();
        c.write_at(&[0x22; 512], 2048).unwrap();
        let mut back = vec![0u8; 700];
        c.read_at(&mut back, 1124).unwrap();
        assert_eq!(back, vec![0x11; 700]);
        let mut raw = vec![0u8; 8192];
        mem.read_at(&mut raw, 0).unwrap();
        assert!(!raw.windows(16).any(|w| w == [0x11; 16] || w == [0x22; 16]));
    }
}
