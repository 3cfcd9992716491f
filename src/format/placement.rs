//! Two-phase writes. A format decides under its metadata lock where new
//! guest data goes ([`Format::plan_write`](super::Format::plan_write)), the
//! caller writes the data there with no lock held (the copy engine's
//! workers, several at once), and the format then makes it part of the
//! image ([`Format::publish`](super::Format::publish)): L2 entries after
//! their data, never before, so a crash between the phases leaks clusters
//! at most. Guest and host offsets are distinct types, so one cannot be
//! written where the other belongs.

use std::fmt;

/// A byte offset in the guest's view of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestOffset(pub u64);

/// A byte offset in the file a format stores data in (the image file, or
/// its external data file: [`Format::data_storage`](super::Format::data_storage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostOffset(pub u64);

impl fmt::Display for GuestOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest offset {:#x}", self.0)
    }
}

impl fmt::Display for HostOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host offset {:#x}", self.0)
    }
}

/// Where one piece of a planned write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The caller writes these guest bytes to the data storage at `host`
    /// and, once the write has returned, hands the piece to `publish`.
    /// Until then the guest range reads as it did before the plan.
    Host {
        /// The first guest byte.
        guest: GuestOffset,
        /// Where it goes.
        host: HostOffset,
        /// The length in bytes.
        len: u64,
    },
    /// The format writes this piece itself, with [`Format::write`](super::Format::write)
    /// (a partial cluster to complete, a compressed one to replace, ...).
    Serial {
        /// The first guest byte.
        guest: GuestOffset,
        /// The length in bytes.
        len: u64,
    },
}

impl Placement {
    /// The first guest byte of the piece.
    pub fn guest(&self) -> GuestOffset {
        match *self {
            Placement::Host { guest, .. } | Placement::Serial { guest, .. } => guest,
        }
    }

    /// The length of the piece in bytes.
    pub fn len(&self) -> u64 {
        match *self {
            Placement::Host { len, .. } | Placement::Serial { len, .. } => len,
        }
    }

    /// Whether the piece is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends a host piece to `out`, merged into the last one when it
/// continues it in both guest and host space.
pub(crate) fn push_host(out: &mut Vec<Placement>, guest: u64, host: u64, len: u64) {
    if let Some(Placement::Host {
        guest: g,
        host: h,
        len: l,
    }) = out.last_mut()
    {
        if g.0 + *l == guest && h.0 + *l == host {
            *l += len;
            return;
        }
    }
    out.push(Placement::Host {
        guest: GuestOffset(guest),
        host: HostOffset(host),
        len,
    });
}

/// Appends a serial piece to `out`, merged into the last one when it
/// continues it.
pub(crate) fn push_serial(out: &mut Vec<Placement>, guest: u64, len: u64) {
    if let Some(Placement::Serial { guest: g, len: l }) = out.last_mut() {
        if g.0 + *l == guest {
            *l += len;
            return;
        }
    }
    out.push(Placement::Serial {
        guest: GuestOffset(guest),
        len,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_merge_only_when_both_offsets_continue() {
        let mut out = Vec::new();
        push_host(&mut out, 0, 1000, 10);
        push_host(&mut out, 10, 1010, 5);
        push_host(&mut out, 15, 2000, 5);
        push_serial(&mut out, 20, 3);
        push_serial(&mut out, 23, 3);
        push_host(&mut out, 26, 2005, 1);
        let host = |g, h, len| Placement::Host {
            guest: GuestOffset(g),
            host: HostOffset(h),
            len,
        };
        assert_eq!(
            out,
            vec![
                host(0, 1000, 15),
                host(15, 2000, 5),
                Placement::Serial {
                    guest: GuestOffset(20),
                    len: 6
                },
                host(26, 2005, 1),
            ]
        );
    }
}
