//! What makes an image unfit to accept from a stranger, beyond the files
//! it names (those are [`crate::io::trust`]'s refusals): a second format's
//! signature hidden in it (a partition table or ISO volume inside a qcow2
//! header cluster, which another reader would take for the disk), a
//! partition table that no partitioning tool writes, and per-format
//! oddities each driver reports ([`super::Format::upload_concerns`]).
//!
//! The checks follow OpenStack's `format_inspector.safety_check`, the
//! vetting step Glance, Nova and Cinder run on uploads, so that a verdict
//! of qimg's means the same as theirs; the check names are theirs too.

/// One reason an image is not safe to accept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The check that failed (`backing_file`, `data_file`, `mbr`, ...).
    pub check: &'static str,
    /// Why, in one sentence.
    pub reason: String,
}

impl Finding {
    /// A finding of `check` for `reason`.
    pub fn new(check: &'static str, reason: impl Into<String>) -> Self {
        Finding {
            check,
            reason: reason.into(),
        }
    }
}

/// A layout of bytes that readers recognise though it is no image format
/// of qimg's: raw disks carry them, an image of another format must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// A DOS partition table (MBR) or GPT's protective MBR at byte 510.
    Gpt,
    /// An ISO 9660 or UDF volume descriptor at 32 KiB.
    Iso,
}

impl Signature {
    /// The name OpenStack's inspector gives the layout.
    pub fn name(self) -> &'static str {
        match self {
            Signature::Gpt => "gpt",
            Signature::Iso => "iso",
        }
    }
}

/// How many bytes of a file [`signatures`] looks at.
pub const SIGNATURE_BYTES: usize = ISO_DESCRIPTOR + 6;

const MBR_SIGNATURE_AT: usize = 510;
const MBR_PARTITIONS_AT: usize = 446;
const ISO_DESCRIPTOR: usize = 32 * 1024;
/// The media descriptor byte of a FAT boot sector on a fixed disk.
const FAT_FIXED_DISK: u8 = 0xf8;
/// The partition type of GPT's protective MBR entry.
const GPT_PROTECTIVE: u8 = 0xee;

/// The signatures in `head`, the first bytes of a file (up to
/// [`SIGNATURE_BYTES`]; a shorter file simply has fewer).
pub fn signatures(head: &[u8]) -> Vec<Signature> {
    let mut found = Vec::new();
    if has_partition_table(head) {
        found.push(Signature::Gpt);
    }
    let iso = head.get(ISO_DESCRIPTOR + 1..ISO_DESCRIPTOR + 6);
    if iso.is_some_and(|id| matches!(id, b"CD001" | b"NSR02" | b"NSR03")) {
        found.push(Signature::Iso);
    }
    found
}

/// Sector 0 ends in 0x55 0xAA and is not a FAT boot sector (which ends
/// the same way but holds a file system, not a partition table).
fn has_partition_table(head: &[u8]) -> bool {
    let Some(sector) = head.get(..512) else {
        return false;
    };
    let fat = sector[0x10] == 2 && sector[0x15] == FAT_FIXED_DISK;
    sector[MBR_SIGNATURE_AT..] == [0x55, 0xaa] && !fat
}

/// The partition table of sector 0 as a partitioning tool would write
/// it: boot flags 0x00 or 0x80, at least one partition, and a GPT's
/// protective entry alone in the table, starting at sector 1.
pub fn partition_table_findings(head: &[u8]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(sector) = head.get(..512) else {
        return findings;
    };
    let mut used = Vec::new();
    let mut gpt = false;
    for i in 0..4 {
        let e = &sector[MBR_PARTITIONS_AT + 16 * i..MBR_PARTITIONS_AT + 16 * (i + 1)];
        if !matches!(e[0], 0x00 | 0x80) {
            findings.push(Finding::new(
                "mbr",
                format!("partition entry {i} has an invalid boot flag {:#04x}", e[0]),
            ));
            return findings;
        }
        if e[4] != 0 {
            used.push(i);
        }
        if e[4] == GPT_PROTECTIVE {
            gpt = true;
            if e[1..4] != [0x00, 0x02, 0x00] {
                findings.push(Finding::new(
                    "mbr",
                    "GPT's protective partition has an invalid start CHS",
                ));
                return findings;
            }
            if u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")) != 1 {
                findings.push(Finding::new(
                    "mbr",
                    "GPT's protective partition does not start at sector 1",
                ));
                return findings;
            }
        }
    }
    if gpt && used != [0] {
        findings.push(Finding::new(
            "mbr",
            "a GPT protective MBR defines other partitions",
        ));
    } else if used.is_empty() {
        findings.push(Finding::new(
            "mbr",
            "the partition table defines no partition",
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u8, [u8; 3], u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        for (i, &(boot, kind, chs, lba)) in entries.iter().enumerate() {
            let e = &mut s[MBR_PARTITIONS_AT + 16 * i..][..16];
            e[0] = boot;
            e[1..4].copy_from_slice(&chs);
            e[4] = kind;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn partition_tables_as_tools_write_them_pass() {
        let dos = mbr(&[(0x80, 0x83, [0, 0x21, 0], 2048)]);
        assert_eq!(signatures(&dos), [Signature::Gpt]);
        assert!(partition_table_findings(&dos).is_empty());
        let gpt = mbr(&[(0, GPT_PROTECTIVE, [0, 2, 0], 1)]);
        assert!(partition_table_findings(&gpt).is_empty());
    }

    #[test]
    fn odd_partition_tables_are_findings() {
        let bad_flag = mbr(&[(0x42, 0x83, [0, 0x21, 0], 2048)]);
        assert_eq!(partition_table_findings(&bad_flag)[0].check, "mbr");
        let empty = mbr(&[]);
        assert_eq!(partition_table_findings(&empty).len(), 1);
        let gpt_and_more = mbr(&[
            (0, GPT_PROTECTIVE, [0, 2, 0], 1),
            (0, 0x83, [0, 0x21, 0], 2048),
        ]);
        assert_eq!(partition_table_findings(&gpt_and_more).len(), 1);
        let gpt_late = mbr(&[(0, GPT_PROTECTIVE, [0, 2, 0], 63)]);
        assert_eq!(partition_table_findings(&gpt_late).len(), 1);
    }

    #[test]
    fn fat_boot_sectors_and_short_files_have_no_table() {
        let mut fat = mbr(&[(0x80, 0x83, [0, 0x21, 0], 2048)]);
        fat[0x10] = 2;
        fat[0x15] = FAT_FIXED_DISK;
        assert!(signatures(&fat).is_empty());
        assert!(signatures(&[0u8; 100]).is_empty());
        let mut iso = vec![0u8; SIGNATURE_BYTES];
        iso[ISO_DESCRIPTOR + 1..ISO_DESCRIPTOR + 6].copy_from_slice(b"CD001");
        assert_eq!(signatures(&iso), [Signature::Iso]);
    }
}
