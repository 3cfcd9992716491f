//! How far the files an image names are trusted (`--untrusted`).
//!
//! An image can name other files: a backing file, an external data file,
//! VMDK extents. From a stranger's upload, such a name is an attack: it
//! makes a copy read host files (`/etc/shadow`) or remote data into the
//! guest disk. An untrusted open reads the image as data only: every name
//! it finds is refused before anything is opened. The files a user names
//! on the command line are the user's own choice and are opened as usual.

use crate::error::{Error, ErrorKind, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What kind of thing an untrusted open refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusedKind {
    /// A backing file (any name: a path, a URL, a `json:` name).
    BackingFile,
    /// An external data file holding the guest data.
    DataFile,
    /// A file a descriptor names as part of the disk (VMDK extents).
    ExtentFile,
    /// A format or subformat not read from untrusted sources at all.
    Format,
}

impl RefusedKind {
    /// The words for it in an error line.
    pub fn words(self) -> &'static str {
        match self {
            RefusedKind::BackingFile => "backing file",
            RefusedKind::DataFile => "external data file",
            RefusedKind::ExtentFile => "extent file",
            RefusedKind::Format => "format",
        }
    }
}

/// One thing an untrusted open refused: what it was, the name the image
/// gave it, and the image that named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// What it was.
    pub kind: RefusedKind,
    /// The name as the image records it (never resolved or opened).
    pub name: String,
    /// The image that named it.
    #[serde(rename = "image")]
    pub by: PathBuf,
}

impl Refusal {
    /// What was refused, in a few words: "image names backing file 'x'".
    pub fn reason(&self) -> String {
        match self.kind {
            RefusedKind::Format => format!("{} is not read from untrusted sources", self.name),
            kind => format!("image names {} '{}'", kind.words(), self.name),
        }
    }

    /// The refusal as the error an operation stops with.
    pub fn to_error(&self) -> Error {
        let why = match self.kind {
            RefusedKind::Format => " (--untrusted)",
            _ => "; --untrusted reads an image as data only and opens nothing it names",
        };
        Error::new(ErrorKind::Unsupported, self.reason() + why).with_path(&self.by)
    }
}

/// The refusals a reporting open collected, shared by the opens of one
/// command (a clone adds to the same list).
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<Vec<Refusal>>>);

impl Refusals {
    /// Everything refused so far, in the order it was met.
    pub fn list(&self) -> Vec<Refusal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, r: Refusal) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !list.contains(&r) {
            list.push(r);
        }
    }
}

/// The trust an open extends to the files an image names.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Everything the image names is opened (qemu-img's behaviour).
    #[default]
    Trusted,
    /// Nothing the image names is opened: the open fails on the first name.
    Untrusted,
    /// Nothing the image names is opened, and the open goes on without it,
    /// recording what it left out (`info` and `check`, which describe an
    /// image without needing the files it names).
    Reporting(Refusals),
}

/// What an open does with a file an image names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Open it.
    Open,
    /// Go on without it: it was refused and recorded.
    Skip,
}

impl Trust {
    /// Whether images are read as data only.
    pub fn is_untrusted(&self) -> bool {
        !matches!(self, Trust::Trusted)
    }

    /// Decides on the file `name` of `kind` that the image `by` names:
    /// [`Admission::Open`] when trusted, [`Admission::Skip`] (recorded)
    /// when reporting, and the refusal as an error when untrusted.
    pub fn admit(&self, kind: RefusedKind, name: &str, by: &Path) -> Result<Admission> {
        let refusal = || Refusal {
            kind,
            name: name.to_string(),
            by: by.to_path_buf(),
        };
        match self {
            Trust::Trusted => Ok(Admission::Open),
            Trust::Untrusted => Err(refusal().to_error()),
            Trust::Reporting(list) => {
                list.push(refusal());
                Ok(Admission::Skip)
            }
        }
    }

    /// What a reporting open refused (empty for the other kinds).
    pub fn refusals(&self) -> Vec<Refusal> {
        match self {
            Trust::Reporting(list) => list.list(),
            _ => Vec::new(),
        }
    }
}

/// The storage put where a refused file would be: the image's metadata
/// still describes it, and any access fails with the refusal.
#[derive(Debug)]
pub struct RefusedStorage {
    refusal: Refusal,
}

impl RefusedStorage {
    /// Stands in for the file `refusal` names.
    pub fn new(refusal: Refusal) -> Self {
        RefusedStorage { refusal }
    }

    fn refuse<T>(&self) -> Result<T> {
        Err(self.refusal.to_error())
    }
}

impl super::Storage for RefusedStorage {
    fn path(&self) -> &Path {
        Path::new(&self.refusal.name)
    }

    fn refusal(&self) -> Option<&Refusal> {
        Some(&self.refusal)
    }

    fn len(&self) -> Result<u64> {
        self.refuse()
    }

    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> Result<()> {
        self.refuse()
    }

    fn allocated_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    fn extent_at(&self, _offset: u64) -> Result<super::HostExtent> {
        self.refuse()
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        self.refuse()
    }

    fn set_len(&self, _len: u64) -> Result<()> {
        self.refuse()
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn allocate(&self, _offset: u64, _len: u64) -> Result<()> {
        self.refuse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trust_decides_as_documented() {
        let by = Path::new("up.img");
        let kind = RefusedKind::BackingFile;
        assert_eq!(
            Trust::Trusted.admit(kind, "/etc/shadow", by).unwrap(),
            Admission::Open
        );
        let e = Trust::Untrusted
            .admit(kind, "/etc/shadow", by)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("up.img") && e.contains("backing file '/etc/shadow'"),
            "{e}"
        );
        let reporting = Trust::Reporting(Refusals::default());
        assert_eq!(
            reporting.admit(kind, "/etc/shadow", by).unwrap(),
            Admission::Skip
        );
        // The same refusal met twice (two opens of one image) is listed once.
        reporting.admit(kind, "/etc/shadow", by).unwrap();
        assert_eq!(reporting.refusals().len(), 1);
        assert_eq!(reporting.refusals()[0].name, "/etc/shadow");
    }
}
