//! The driver table: every format qimg reads, in one place. A new format
//! is its own folder, with a `DRIVER`, and one line in [`DRIVERS`].

use super::driver::{Confidence, FormatDriver};
use super::{luks, qcow2, qed, raw, vdi, vhdx, vmdk, vpc};

/// Every registered format, in the order probes are tried (the fallback,
/// which matches any file, last).
pub static DRIVERS: &[&FormatDriver] = &[
    &qcow2::DRIVER,
    &qed::DRIVER,
    &vmdk::DRIVER,
    &vpc::DRIVER,
    &vdi::DRIVER,
    &vhdx::DRIVER,
    &luks::DRIVER,
    &raw::DRIVER,
];

/// Formats qemu-img knows that qimg does not read, and the magic that
/// tells them apart (so they are not mistaken for the fallback format).
pub static FOREIGN: &[Foreign] = &[
    Foreign::magic("qcow", b"QFI\xfb\0\0\0\x01"),
    Foreign::magic("parallels", b"WithouFreSpacExt"),
    Foreign::magic("parallels", b"WithoutFreeSpace"),
    Foreign::named("cloop"),
    Foreign::named("dmg"),
    Foreign::named("bochs"),
    Foreign::named("vvfat"),
];

/// A format qimg recognises but does not read.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// qemu-img's name for it.
    pub name: &'static str,
    /// Where its magic lies.
    pub at: usize,
    /// Its magic (empty: known by name only, never probed).
    pub magic: &'static [u8],
}

impl Foreign {
    const fn magic(name: &'static str, magic: &'static [u8]) -> Self {
        Foreign { name, at: 0, magic }
    }

    const fn named(name: &'static str) -> Self {
        Foreign {
            name,
            at: 0,
            magic: &[],
        }
    }

    fn matches(&self, head: &[u8]) -> bool {
        !self.magic.is_empty()
            && head.len() >= self.at + self.magic.len()
            && &head[self.at..self.at + self.magic.len()] == self.magic
    }
}

/// The driver called `name`.
pub fn by_name(name: &str) -> Option<&'static FormatDriver> {
    DRIVERS.iter().copied().find(|d| d.name == name)
}

/// Whether `name` is a format qemu-img has and qimg does not read.
pub fn is_foreign(name: &str) -> bool {
    FOREIGN.iter().any(|f| f.name == name)
}

/// The driver a probe falls back to and a protocol node is read as (raw).
pub fn fallback() -> &'static FormatDriver {
    DRIVERS
        .iter()
        .copied()
        .find(|d| d.caps.fallback)
        .expect("one registered driver is the fallback")
}

/// The names of the registered formats as a sentence: "qcow2, qed and raw".
pub fn names_sentence() -> String {
    let names: Vec<&str> = DRIVERS.iter().map(|d| d.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A registered format, and how sure the probe is.
    Known(&'static FormatDriver, Confidence),
    /// A format qimg recognises but does not read.
    Foreign(&'static str),
}

impl PartialEq for FormatDriver {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || self.name == other.name
    }
}

impl Eq for FormatDriver {}

/// Probes the first (up to 512) bytes of a file, as QEMU does: the most
/// confident registered driver wins; foreign formats are told apart before
/// the fallback takes the file.
pub fn probe(head: &[u8]) -> Probe {
    let mut best: Option<(&'static FormatDriver, Confidence)> = None;
    for d in DRIVERS {
        if let Some(c) = (d.probe)(head) {
            if best.is_none_or(|(_, b)| c > b) {
                best = Some((d, c));
            }
        }
    }
    match best {
        Some((d, Confidence::Magic)) => Probe::Known(d, Confidence::Magic),
        _ => match FOREIGN.iter().find(|f| f.matches(head)) {
            Some(f) => Probe::Foreign(f.name),
            None => Probe::Known(fallback(), Confidence::Fallback),
        },
    }
}

/// Every format whose magic the first (up to 512) bytes carry, registered
/// or foreign: one for an honest image; more when one header hides in
/// another.
pub fn recognise_all(head: &[u8]) -> Vec<&'static str> {
    let known = DRIVERS
        .iter()
        .filter(|d| (d.probe)(head) == Some(Confidence::Magic))
        .map(|d| d.name);
    let foreign = FOREIGN.iter().filter(|f| f.matches(head)).map(|f| f.name);
    known.chain(foreign).collect()
}

/// The first registered format whose trailer the last
/// [`super::driver::TAIL_LEN`] bytes of a `file_len`-byte file hold (asked
/// only when the head named no format).
pub fn probe_tail(tail: &[u8], file_len: u64) -> Option<&'static FormatDriver> {
    DRIVERS.iter().copied().find(|d| {
        d.probe_tail
            .is_some_and(|p| p(tail, file_len) == Some(Confidence::Trailer))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::driver::CreateParams;
    use crate::format::driver::OptionValues;
    use crate::format::Preallocation;
    use crate::io::{FileStorage, Storage, StorageOptions};

    #[test]
    fn names_are_unique_and_one_driver_is_the_fallback() {
        let mut names: Vec<&str> = DRIVERS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate driver names: {names:?}");
        assert_eq!(DRIVERS.iter().filter(|d| d.caps.fallback).count(), 1);
        for d in DRIVERS {
            assert!(!is_foreign(d.name), "{} is registered and foreign", d.name);
            assert_eq!(by_name(d.name).map(|x| x.name), Some(d.name));
        }
    }

    #[test]
    fn the_names_sentence_lists_every_driver() {
        let s = names_sentence();
        for d in DRIVERS {
            assert!(s.contains(d.name), "{s}");
        }
    }

    #[test]
    fn probing_each_created_image_picks_its_own_driver() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in DRIVERS {
            let file = dir.path().join(format!("new.{}", d.name));
            let mut options = OptionValues::default();
            let mut storage_options = StorageOptions::default();
            if let Some(k) = d.node_options.secret {
                // An encrypted format needs its secret to be created and read.
                options.set(k, "s0");
                options.set("iter-time", "0");
                storage_options = storage_options
                    .with_secrets(crate::io::Secrets::new([(
                        "s0".to_string(),
                        zeroize::Zeroizing::new(b"pw".to_vec()),
                    )]))
                    .with_key_secret(Some("s0".into()));
            }
            let image = (d.create)(&CreateParams {
                options: &options,
                size: 1 << 20,
                preallocation: Preallocation::Off,
                backing: None,
            })
            .expect("plan");
            image.validate().expect("valid defaults");
            image.write(&file, &storage_options).expect("write");
            let storage = FileStorage::open(&file).expect("open");
            let mut head = vec![0u8; storage.len().expect("len").min(512) as usize];
            storage.read_at(&mut head, 0).expect("read");
            match probe(&head) {
                Probe::Known(found, c) => {
                    assert_eq!(found.name, d.name);
                    assert_eq!(c == Confidence::Fallback, d.caps.fallback);
                }
                Probe::Foreign(f) => panic!("{} probed as foreign {f}", d.name),
            }
            let opened = (d.open)(
                Box::new(storage),
                &file,
                &crate::format::OpenHow::ReadOnly,
                &storage_options,
            )
            .expect("open");
            assert_eq!(opened.driver().name, d.name);
            // VHD rounds a size up to a CHS geometry (1 MiB -> 1079296).
            assert!(opened.virtual_size() >= 1 << 20, "{}", d.name);
        }
    }

    #[test]
    fn foreign_magic_is_not_taken_for_the_fallback() {
        assert_eq!(probe(b"WithoutFreeSpace"), Probe::Foreign("parallels"));
        assert_eq!(probe(b"QFI\xfb\0\0\0\x01"), Probe::Foreign("qcow"));
        match probe(b"QFI\xfb\0\0\0\0") {
            Probe::Known(d, Confidence::Fallback) => assert!(d.caps.fallback),
            other => panic!("{other:?}"),
        }
    }
}
