//! What a consistency check finds, shared by the formats that have one.

/// What to repair while checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Repair {
    /// Only look.
    #[default]
    None,
    /// Free leaked clusters.
    Leaks,
    /// Free leaks, fix corruptions, rebuild refcounts when needed.
    All,
}

/// The verdict of a check, with qemu-img's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Metadata that is wrong (data may be lost or overwritten).
    pub corruptions: u64,
    /// Clusters in use that nothing references (space wasted, no harm).
    pub leaks: u64,
    /// Errors that stopped parts of the check (I/O errors).
    pub check_errors: u64,
    /// Corruptions repaired.
    pub corruptions_fixed: u64,
    /// Leaks repaired.
    pub leaks_fixed: u64,
    /// End of the last cluster in use (0 when not reported).
    pub image_end_offset: u64,
    /// Guest clusters.
    pub total_clusters: u64,
    /// Guest clusters that are allocated.
    pub allocated_clusters: u64,
    /// Allocated clusters not right after the previous one.
    pub fragmented_clusters: u64,
    /// Compressed clusters.
    pub compressed_clusters: u64,
    /// The refcount structures cannot be trusted and must be rebuilt.
    pub rebuild_needed: bool,
}

impl CheckReport {
    /// The exit code qemu-img gives this verdict: 1 check failed, 2
    /// corruptions, 3 leaks only, 0 clean.
    pub fn exit_code(&self) -> u8 {
        if self.check_errors > 0 {
            1
        } else if self.corruptions > 0 {
            2
        } else if self.leaks > 0 {
            3
        } else {
            0
        }
    }
}
