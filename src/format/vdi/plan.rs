//! Two-phase writes into a VDI, for the copy engine's parallel writers.
//! `plan` gives each new block the next index (in guest order, so blocks
//! lie in guest order as qemu-img lays them out) and returns where its
//! pieces go; the writers write the data; `publish` enters a block in the
//! map once every piece planned into it has been written. The count and
//! the entries reach the file at the next flush, as for serial writes
//! (see `write.rs`).
//!
//! The rest of a new block needs no write of its own: past the file's end
//! at open it is a hole and reads as zeros; below that (an unreferenced
//! tail a crash left) it is zeroed while planning.

use super::header::{BLOCK_SIZE, DISCARDED};
use super::{is_allocated, Meta, Vdi};
use crate::error::{Error, Result};
use crate::format::placement::push_host;
use crate::format::{GuestOffset, Placement};

/// A block given an index by `plan` and not yet in the map.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    /// Its index in the data area.
    pub index: u32,
    /// Pieces planned into it and neither published nor abandoned.
    pub outstanding: u32,
    /// Whether a piece of it has been published (its data written).
    pub published_any: bool,
}

impl Vdi {
    /// Phase one: where the `len` bytes at `guest` go.
    pub(super) fn plan_guest(&self, guest: GuestOffset, len: u64) -> Result<Vec<Placement>> {
        self.check_writable(guest.0, len)?;
        let mut meta = self.lock();
        let mut out = Vec::new();
        let mut pos = guest.0;
        let end = guest.0 + len;
        while pos < end {
            let n = (BLOCK_SIZE - pos % BLOCK_SIZE).min(end - pos);
            let block = (pos / BLOCK_SIZE) as usize;
            let index = match meta.bmap[block] {
                e if is_allocated(e) => e,
                _ => self.plan_block(&mut meta, block)?,
            };
            push_host(
                &mut out,
                pos,
                meta.header.block_host(index) + pos % BLOCK_SIZE,
                n,
            );
            pos += n;
        }
        Ok(out)
    }

    /// The index planned for `block`, given now if it has none; counts one
    /// more piece planned into it.
    fn plan_block(&self, meta: &mut Meta, block: usize) -> Result<u32> {
        if let Some(p) = meta.planned.get_mut(&block) {
            p.outstanding += 1;
            return Ok(p.index);
        }
        let index = meta.next_index;
        if index >= DISCARDED {
            return Err(Error::unsupported(
                "the VDI is full: a new block would need an index a map entry cannot hold",
            ));
        }
        let start = meta.header.block_host(index);
        let stale_end = meta.stale_end.min(start + BLOCK_SIZE);
        if start < stale_end {
            self.storage.zero_range(start, stale_end - start)?;
        }
        meta.next_index = index + 1;
        meta.planned.insert(
            block,
            Planned {
                index,
                outstanding: 1,
                published_any: false,
            },
        );
        Ok(index)
    }

    /// The blocks a planned host piece covers.
    fn blocks_of(piece: &Placement) -> Option<std::ops::Range<usize>> {
        match *piece {
            Placement::Host { guest, len, .. } if len > 0 => {
                Some((guest.0 / BLOCK_SIZE) as usize..(guest.0 + len).div_ceil(BLOCK_SIZE) as usize)
            }
            _ => None,
        }
    }

    /// Phase three: the blocks whose planned pieces are all written enter
    /// the map (in memory; the next flush writes them).
    pub(super) fn publish_guest(&self, placed: &[Placement]) -> Result<()> {
        let mut meta = self.lock();
        for blocks in placed.iter().filter_map(Self::blocks_of) {
            for block in blocks {
                let Some(p) = meta.planned.get_mut(&block) else {
                    continue;
                };
                p.outstanding -= 1;
                p.published_any = true;
                if p.outstanding == 0 {
                    let index = p.index;
                    meta.planned.remove(&block);
                    meta.enter(block, index);
                }
            }
        }
        Ok(())
    }

    /// Gives back planned pieces whose data will not be written. The
    /// index of a block nothing was written into is taken back when it is
    /// the last one given; otherwise the abandoned range is zeroed and the
    /// block enters the map, so indices stay dense (the allocated count
    /// must equal the entries) and the block reads as it did (zeros).
    pub(super) fn abandon_guest(&self, placed: &[Placement]) -> Result<()> {
        let mut meta = self.lock();
        for piece in placed {
            let Some(blocks) = Self::blocks_of(piece) else {
                continue;
            };
            let (first, len) = (piece.guest().0, piece.len());
            for block in blocks {
                let Some(p) = meta.planned.get_mut(&block) else {
                    continue;
                };
                p.outstanding -= 1;
                let p = *p;
                let lo = first.max(block as u64 * BLOCK_SIZE);
                let hi = (first + len).min((block as u64 + 1) * BLOCK_SIZE);
                let host = meta.header.block_host(p.index) + lo % BLOCK_SIZE;
                let last = p.index + 1 == meta.next_index;
                if !(last && !p.published_any && p.outstanding == 0) {
                    self.storage.zero_range(host, hi - lo)?;
                }
                if p.outstanding == 0 {
                    meta.planned.remove(&block);
                    if last && !p.published_any {
                        meta.next_index = p.index;
                    } else {
                        meta.enter(block, p.index);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Meta {
    /// Points `block` at `index` in memory, to be written by the next flush.
    pub(super) fn enter(&mut self, block: usize, index: u32) {
        self.bmap[block] = index;
        let b = block as u32;
        self.unpublished = Some(match self.unpublished {
            Some((lo, hi)) => (lo.min(b), hi.max(b)),
            None => (b, b),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{create, VdiCreateOptions};
    use super::*;
    use crate::format::Format;
    use crate::io::MemStorage;

    fn image(blocks: u64) -> Vdi {
        let storage = MemStorage::new("t.vdi", Vec::new());
        create(
            &storage,
            &VdiCreateOptions {
                size: blocks * BLOCK_SIZE,
                is_static: false,
            },
        )
        .expect("create");
        Vdi::open_writable(Box::new(storage)).expect("open")
    }

    fn write_planned(v: &Vdi, placed: &[Placement], byte: u8) {
        for p in placed {
            if let Placement::Host { host, len, .. } = *p {
                v.storage()
                    .write_at(&vec![byte; len as usize], host.0)
                    .expect("data");
            }
        }
    }

    #[test]
    fn blocks_enter_the_map_when_all_their_pieces_are_written() {
        let v = image(4);
        // Two pieces of block 2, planned apart: one index, in guest order.
        let a = v.plan_write(GuestOffset(2 << 20), 4096).expect("plan");
        let b = v
            .plan_write(GuestOffset((2 << 20) + 65536), 4096)
            .expect("plan");
        let c = v.plan_write(GuestOffset(3 << 20), 1 << 20).expect("plan");
        assert_eq!(a[0].len(), 4096);
        write_planned(&v, &a, 0x11);
        write_planned(&v, &c, 0x33);
        v.publish(&a).expect("publish");
        v.publish(&c).expect("publish");
        // Block 2 waits for its second piece; block 3 (index 1) is in.
        assert_eq!(v.block_map().1, vec![u32::MAX, u32::MAX, u32::MAX, 1]);
        let mut buf = vec![0u8; 4096];
        v.read(2 << 20, &mut buf).expect("read");
        assert!(buf.iter().all(|&x| x == 0), "unpublished data shows");
        write_planned(&v, &b, 0x22);
        v.publish(&b).expect("publish");
        v.flush().expect("flush");
        assert_eq!(v.block_map(), (2, vec![u32::MAX, u32::MAX, 0, 1]));
        v.read(2 << 20, &mut buf).expect("read");
        assert!(buf.iter().all(|&x| x == 0x11));
        let report = v
            .check(&mut |l| panic!("{l}"))
            .expect("check")
            .expect("report");
        assert_eq!(report.corruptions, 0);
    }

    #[test]
    fn abandoned_blocks_keep_the_indices_dense() {
        let v = image(4);
        let a = v.plan_write(GuestOffset(0), 1 << 20).expect("plan");
        let b = v.plan_write(GuestOffset(1 << 20), 1 << 20).expect("plan");
        let c = v.plan_write(GuestOffset(2 << 20), 1 << 20).expect("plan");
        write_planned(&v, &b, 0x22);
        write_planned(&v, &a, 0x44);
        v.publish(&b).expect("publish");
        // The last index comes back; one below it is zeroed and kept.
        v.abandon(&c).expect("abandon");
        v.abandon(&a).expect("abandon");
        v.flush().expect("flush");
        assert_eq!(v.block_map(), (2, vec![0, 1, u32::MAX, u32::MAX]));
        let mut buf = vec![1u8; 1 << 20];
        v.read(0, &mut buf).expect("read");
        assert!(buf.iter().all(|&x| x == 0), "abandoned data shows");
        let report = v
            .check(&mut |l| panic!("{l}"))
            .expect("check")
            .expect("report");
        assert_eq!(report.corruptions, 0);
    }
}
