//! `check` of a VDI, as QEMU checks one: every allocated map entry must
//! name an index below the block count, no index may be used twice, and
//! the header's allocated count must equal the entries counted. There is
//! no repair.

use super::is_allocated;
use crate::format::check::CheckReport;

/// Checks `bmap` against the header's `blocks_allocated`, sending one
/// qemu-img line per problem to `log`; each problem is a corruption.
pub fn check_map(bmap: &[u32], blocks_allocated: u32, log: &mut dyn FnMut(String)) -> CheckReport {
    let blocks = bmap.len();
    let mut owner: Vec<bool> = vec![false; blocks];
    let mut counted: u32 = 0;
    let mut report = CheckReport::default();
    for (block, &entry) in bmap.iter().enumerate() {
        if !is_allocated(entry) {
            continue;
        }
        if (entry as usize) < blocks {
            counted += 1;
            if owner[entry as usize] {
                // QEMU names the index twice: it keeps the index, not the
                // block that took it first.
                log(format!("ERROR: block index {entry} also used by {entry}"));
                report.corruptions += 1;
            } else {
                owner[entry as usize] = true;
            }
        } else {
            log(format!("ERROR: block index {block} too large, is {entry}"));
            report.corruptions += 1;
        }
    }
    if counted != blocks_allocated {
        log(format!(
            "ERROR: allocated blocks mismatch, is {counted}, should be {blocks_allocated}"
        ));
        report.corruptions += 1;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bmap: &[u32], allocated: u32) -> (u64, Vec<String>) {
        let mut lines = Vec::new();
        let r = check_map(bmap, allocated, &mut |l| lines.push(l));
        (r.corruptions, lines)
    }

    #[test]
    fn a_consistent_map_is_clean() {
        assert_eq!(run(&[1, u32::MAX, 0, 0xffff_fffe], 2), (0, vec![]));
    }

    #[test]
    fn duplicates_large_indices_and_count_mismatches_are_corruptions() {
        let (n, lines) = run(&[9, 0, 0, u32::MAX, u32::MAX], 7);
        assert_eq!(n, 3);
        assert_eq!(
            lines,
            [
                "ERROR: block index 0 too large, is 9",
                "ERROR: block index 0 also used by 0",
                "ERROR: allocated blocks mismatch, is 2, should be 7",
            ]
        );
    }
}
