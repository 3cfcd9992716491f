//! Checking and repairing QED images. The check counts what qemu-img
//! counts; the repair zeroes invalid table entries (as qemu-img does) and,
//! unlike qemu-img, reclaims leaked clusters by moving data clusters and L2
//! tables down into the holes and truncating the file.

use super::header::{QedEntry, FEATURE_NEED_CHECK};
use super::{read_table, Qed};
use crate::error::{Error, Result};
use crate::format::check::{CheckReport, Repair};
use std::collections::HashMap;

/// Which clusters of a QED file are referenced.
struct UsedClusters {
    bits: Vec<bool>,
}

impl UsedClusters {
    /// Marks `n` clusters from `cluster` used; false (and a corruption
    /// counted) when one was already used.
    fn mark(&mut self, report: &mut CheckReport, cluster: u64, n: u64) -> bool {
        let mut clean = true;
        for c in cluster..cluster + n {
            match self.bits.get_mut(c as usize) {
                Some(bit) if *bit => {
                    report.corruptions += 1;
                    clean = false;
                }
                Some(bit) => *bit = true,
                None => {}
            }
        }
        clean
    }
}

/// Where the pointer to a movable piece of the image lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Referrer {
    /// An L1 entry (the piece is an L2 table).
    L1(usize),
    /// An entry of the L2 table that was at this offset when the check ran.
    L2 { table: u64, index: usize },
}

/// A referenced piece of the file that may move: a data cluster or an L2 table.
#[derive(Debug, Clone, Copy)]
struct Piece {
    cluster: u64,
    clusters: u64,
    referrer: Referrer,
}

/// What the check found, with what a repair needs.
struct Analysis {
    report: CheckReport,
    used: UsedClusters,
    invalid: Vec<Referrer>,
    pieces: Vec<Piece>,
}

impl Qed {
    fn analyze(&self) -> Result<Analysis> {
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let (l1, file_len) = {
            let meta = self.lock_meta();
            (meta.l1.clone(), meta.file_len)
        };
        let clusters = file_len / cs;
        let mut report = CheckReport {
            total_clusters: h.image_size.div_ceil(cs),
            ..Default::default()
        };
        let mut used = UsedClusters {
            bits: vec![false; clusters as usize],
        };
        let (mut invalid, mut pieces) = (Vec::new(), Vec::new());
        used.mark(&mut report, h.l1_table_offset / cs, h.table_size as u64);
        for (i, &l2_offset) in l1.iter().enumerate() {
            if l2_offset == 0 {
                continue;
            }
            if !self.valid_cluster_offset(l2_offset, file_len)
                || l2_offset + h.table_bytes() > file_len
            {
                report.corruptions += 1;
                invalid.push(Referrer::L1(i));
                continue;
            }
            if !used.mark(&mut report, l2_offset / cs, h.table_size as u64) {
                continue;
            }
            pieces.push(Piece {
                cluster: l2_offset / cs,
                clusters: h.table_size as u64,
                referrer: Referrer::L1(i),
            });
            let table = read_table(self.storage.as_ref(), l2_offset, h.table_bytes())?;
            let mut last = 0u64;
            for (index, &e) in table.iter().enumerate() {
                let QedEntry::Data(offset) = QedEntry::decode(e) else {
                    continue;
                };
                report.allocated_clusters += 1;
                if last != 0 && last + cs != offset {
                    report.fragmented_clusters += 1;
                }
                last = offset;
                let referrer = Referrer::L2 {
                    table: l2_offset,
                    index,
                };
                if !self.valid_cluster_offset(offset, file_len) {
                    report.corruptions += 1;
                    invalid.push(referrer);
                    continue;
                }
                if used.mark(&mut report, offset / cs, 1) {
                    pieces.push(Piece {
                        cluster: offset / cs,
                        clusters: 1,
                        referrer,
                    });
                }
            }
        }
        report.leaks = used.bits[(h.header_size as usize).min(used.bits.len())..]
            .iter()
            .filter(|&&b| !b)
            .count() as u64;
        Ok(Analysis {
            report,
            used,
            invalid,
            pieces,
        })
    }

    /// Checks the tables as qemu-img does: tables and data clusters must be
    /// valid offsets referenced once; unreferenced clusters are leaks.
    pub(super) fn check_tables(&self) -> Result<CheckReport> {
        Ok(self.analyze()?.report)
    }

    /// Repairs in place (the storage must be writable): invalid entries are
    /// zeroed, leaked clusters reclaimed, and the need-check flag cleared
    /// when nothing is left broken. Returns the first pass's verdict with
    /// what was fixed.
    pub(super) fn repair_tables(&self, _mode: Repair) -> Result<CheckReport> {
        let mut a = self.analyze()?;
        self.zero_invalid_entries(&mut a)?;
        if a.report.corruptions == 0 && a.report.leaks > 0 {
            let reclaimed = self.compact(&mut a)?;
            a.report.leaks -= reclaimed;
            a.report.leaks_fixed += reclaimed;
        }
        if a.report.corruptions == 0 {
            self.clear_need_check()?;
        }
        Ok(a.report)
    }

    /// What QEMU does when it opens an image with need-check set for
    /// writing: check it, zero invalid entries (which appending new
    /// clusters could otherwise make point at live data) and clear the flag.
    /// Leaks stay (reclaiming them moves data: that is for `check -r`).
    /// Corruption that zeroing cannot fix refuses the image.
    pub(super) fn check_before_writing(&self) -> Result<()> {
        let mut a = self.analyze()?;
        self.zero_invalid_entries(&mut a)?;
        if a.report.corruptions > 0 {
            return Err(Error::corrupt(
                "image was not closed cleanly (need-check set) and its tables are inconsistent; \
                 repair it with 'qimg check -r all'",
            ));
        }
        self.clear_need_check()
    }

    /// Zeroes the table entries the analysis found invalid, durably.
    fn zero_invalid_entries(&self, a: &mut Analysis) -> Result<()> {
        if a.invalid.is_empty() {
            return Ok(());
        }
        let storage = self.storage.as_ref();
        for referrer in &a.invalid {
            storage.write_at(
                &0u64.to_le_bytes(),
                self.referrer_offset(*referrer, &HashMap::new()),
            )?;
            a.report.corruptions -= 1;
            a.report.corruptions_fixed += 1;
        }
        storage.flush()?;
        // The in-memory tables may hold the entries just zeroed.
        self.reload_tables()
    }

    /// Clears need-check on disk and in the header writes start from.
    fn clear_need_check(&self) -> Result<()> {
        let mut meta = self.lock_meta();
        if meta.header.features & FEATURE_NEED_CHECK != 0 {
            meta.header.features &= !FEATURE_NEED_CHECK;
            self.storage.write_at(&meta.header.encode(), 0)?;
            self.storage.flush()?;
        }
        Ok(())
    }

    /// Reads the L1 table and the file length again and forgets cached L2
    /// tables, after the repair changed them behind the metadata's back.
    fn reload_tables(&self) -> Result<()> {
        let h = &self.header;
        let l1 = read_table(self.storage.as_ref(), h.l1_table_offset, h.table_bytes())?;
        let mut meta = self.lock_meta();
        meta.l1 = l1;
        meta.tables.clear();
        meta.file_len = self.storage.len()?;
        Ok(())
    }

    /// Where the pointer of `referrer` lives now, given the L2 tables moved so far.
    fn referrer_offset(&self, referrer: Referrer, moved_tables: &HashMap<u64, u64>) -> u64 {
        match referrer {
            Referrer::L1(i) => self.header.l1_table_offset + i as u64 * 8,
            Referrer::L2 { table, index } => {
                moved_tables.get(&table).copied().unwrap_or(table) + index as u64 * 8
            }
        }
    }

    /// Slides every data cluster and L2 table down, in file order, into the
    /// free clusters after the L1 table, then truncates the file. Each move
    /// copies, flushes, repoints and flushes, so a crash at any point leaves
    /// the tables consistent (at worst with a leaked copy). A table whose new
    /// place overlaps its old one first moves to the end of the file.
    /// Returns how many leaked clusters were reclaimed.
    fn compact(&self, a: &mut Analysis) -> Result<u64> {
        let h = &self.header;
        let cs = h.cluster_size as u64;
        let first_free = h.l1_table_offset / cs + h.table_size as u64;
        let unreachable = (h.header_size as u64..h.l1_table_offset / cs)
            .filter(|&c| !a.used.bits.get(c as usize).copied().unwrap_or(true))
            .count() as u64;
        a.pieces.sort_by_key(|p| p.cluster);
        let mut moved_tables = HashMap::new();
        let mut target = first_free;
        let mut end = self.storage.len()? / cs;
        for piece in a.pieces.clone() {
            let mut at = piece.cluster;
            if at < target {
                continue; // between the header and the L1 table: stays
            }
            if at > target {
                if target + piece.clusters > at {
                    self.move_piece(piece, at, end, &mut moved_tables)?;
                    at = end;
                    end += piece.clusters;
                }
                self.move_piece(piece, at, target, &mut moved_tables)?;
            }
            target += piece.clusters;
        }
        self.storage.set_len(target * cs)?;
        self.storage.flush()?;
        self.reload_tables()?;
        Ok(a.report.leaks - unreachable)
    }

    fn move_piece(
        &self,
        piece: Piece,
        from: u64,
        to: u64,
        moved_tables: &mut HashMap<u64, u64>,
    ) -> Result<()> {
        let cs = self.header.cluster_size as u64;
        let storage = self.storage.as_ref();
        let mut buf = vec![0u8; cs as usize];
        for c in 0..piece.clusters {
            storage.read_at(&mut buf, (from + c) * cs)?;
            storage.write_at(&buf, (to + c) * cs)?;
        }
        storage.flush()?;
        let pointer = self.referrer_offset(piece.referrer, moved_tables);
        storage.write_at(&(to * cs).to_le_bytes(), pointer)?;
        storage.flush()?;
        if let Referrer::L1(_) = piece.referrer {
            moved_tables.insert(piece.cluster * cs, to * cs);
        }
        Ok(())
    }
}
