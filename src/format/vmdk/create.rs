//! Creating VMDKs as qemu-img does: the same file sets, layouts and
//! descriptor lines for each subformat.

use super::descriptor::{ExtentKind, ExtentLine, NewDescriptor};
use super::header::SECTOR;
use super::sparse::NewSparse;
use crate::error::{Error, Result};
use crate::format::driver::NewImage;
use crate::format::{BackingSpec, Preallocation};
use crate::io::{create_storage_with, Storage, StorageOptions};
use std::io::Read;
use std::path::Path;

/// The sectors of one extent of a split (twoGbMaxExtent*) image: 2 GiB.
const SPLIT_SECTORS: u64 = 4 << 20;

/// The `subformat` of a new VMDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subformat {
    /// One sparse file with an embedded descriptor.
    MonolithicSparse,
    /// A descriptor and one raw file.
    MonolithicFlat,
    /// A descriptor and 2 GiB sparse files.
    TwoGbMaxExtentSparse,
    /// A descriptor and 2 GiB raw files.
    TwoGbMaxExtentFlat,
    /// One sparse file of compressed grains, written in order.
    StreamOptimized,
}

impl Subformat {
    /// Parses qemu-img's name, with its refusal.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "monolithicSparse" => Subformat::MonolithicSparse,
            "monolithicFlat" => Subformat::MonolithicFlat,
            "twoGbMaxExtentSparse" => Subformat::TwoGbMaxExtentSparse,
            "twoGbMaxExtentFlat" => Subformat::TwoGbMaxExtentFlat,
            "streamOptimized" => Subformat::StreamOptimized,
            other => return Err(Error::argument(format!("invalid parameter value: {other}"))),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Subformat::MonolithicSparse => "monolithicSparse",
            Subformat::MonolithicFlat => "monolithicFlat",
            Subformat::TwoGbMaxExtentSparse => "twoGbMaxExtentSparse",
            Subformat::TwoGbMaxExtentFlat => "twoGbMaxExtentFlat",
            Subformat::StreamOptimized => "streamOptimized",
        }
    }

    fn flat(self) -> bool {
        matches!(
            self,
            Subformat::MonolithicFlat | Subformat::TwoGbMaxExtentFlat
        )
    }

    fn split(self) -> bool {
        matches!(
            self,
            Subformat::TwoGbMaxExtentSparse | Subformat::TwoGbMaxExtentFlat
        )
    }
}

/// A planned VMDK.
#[derive(Debug)]
pub struct NewVmdk {
    /// The requested size in bytes (rounded up to a sector).
    pub size: u64,
    /// The subformat, or qemu-img's refusal of the value given.
    pub subformat: Result<Subformat>,
    /// `adapter_type`.
    pub adapter: String,
    /// `hwversion`, when given.
    pub hwversion: Option<String>,
    /// `toolsversion`.
    pub toolsversion: String,
    /// `compat6`.
    pub compat6: bool,
    /// `zeroed_grain`.
    pub zeroed_grain: bool,
    /// The parent (backing file) asked for.
    pub backing: Option<BackingSpec>,
    /// `preallocation` (falloc and full are accepted and change nothing
    /// visible, as with qemu-img).
    pub preallocation: Preallocation,
}

/// A random content ID (from the system's random source; the clock when
/// it cannot be read).
pub(super) fn random_cid() -> u32 {
    let mut b = [0u8; 4];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return t ^ std::process::id();
    }
    u32::from_le_bytes(b)
}

/// The CID of the parent `name` names for the image `file`: the parent
/// must be a VMDK, as QEMU requires.
fn parent_cid(file: &Path, name: &str, options: &StorageOptions) -> Result<u32> {
    let path = crate::paths::resolve_relative_to(file, name);
    let storage = crate::io::open_read_storage_with(&path, options)?;
    let parent = super::Vmdk::open_with(storage, &path, false, options)
        .map_err(|_| Error::argument("backing_file must be a vmdk image"))?;
    Ok(parent.descriptor.cid)
}

/// `name` split at its last dot: ("t", ".vmdk").
fn prefix_suffix(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

impl NewVmdk {
    fn subformat(&self) -> Result<Subformat> {
        match &self.subformat {
            Ok(s) => Ok(*s),
            Err(e) => Err(Error::new(e.kind(), e.message())),
        }
    }

    fn hw_version(&self) -> &str {
        match (&self.hwversion, self.compat6) {
            (Some(v), _) => v,
            (None, true) => "6",
            (None, false) => "4",
        }
    }
}

impl NewImage for NewVmdk {
    fn validate(&self) -> Result<()> {
        let sub = self.subformat()?;
        if !matches!(
            self.adapter.as_str(),
            "ide" | "lsilogic" | "buslogic" | "legacyESX"
        ) {
            return Err(Error::argument(format!(
                "invalid parameter value: {}",
                self.adapter
            )));
        }
        if self.compat6 && self.hwversion.is_some() {
            return Err(Error::argument(
                "compat6 cannot be enabled with hwversion set",
            ));
        }
        if sub.flat() && self.zeroed_grain {
            return Err(Error::argument("Flat image can't enable zeroed grain"));
        }
        if sub.flat() && self.backing.is_some() {
            return Err(Error::argument("Flat image can't have backing file"));
        }
        if let Some(BackingSpec {
            format: Some(f), ..
        }) = &self.backing
        {
            if f != "vmdk" {
                return Err(Error::argument("backing_file must be a vmdk image"));
            }
        }
        if self.size.div_ceil(SECTOR) > (1u64 << 44) / SECTOR && !sub.split() {
            return Err(Error::argument(
                "the VMDK image size is too large (an extent holds at most 16 TiB)",
            ));
        }
        Ok(())
    }

    fn write(&self, file: &Path, options: &StorageOptions) -> Result<Box<dyn Storage>> {
        self.validate()?;
        let sub = self.subformat()?;
        let sectors = self.size.div_ceil(SECTOR);
        let base = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (prefix, suffix) = prefix_suffix(&base);
        let mut pieces = Vec::new();
        if sub.split() {
            let mut left = sectors;
            while left > 0 {
                let n = left.min(SPLIT_SECTORS);
                pieces.push(n);
                left -= n;
            }
        } else if sectors > 0 || !sub.flat() {
            // An empty flat disk has no extent at all, as with qemu-img.
            pieces.push(sectors);
        }
        let kind = if sub.flat() {
            ExtentKind::Flat
        } else {
            ExtentKind::Sparse
        };
        let extents: Vec<ExtentLine> = pieces
            .iter()
            .enumerate()
            .map(|(i, &n)| ExtentLine {
                read_write: true,
                sectors: n,
                kind,
                file: match sub {
                    Subformat::MonolithicSparse | Subformat::StreamOptimized => base.clone(),
                    Subformat::MonolithicFlat => format!("{prefix}-flat{suffix}"),
                    Subformat::TwoGbMaxExtentSparse => format!("{prefix}-s{:03}{suffix}", i + 1),
                    Subformat::TwoGbMaxExtentFlat => format!("{prefix}-f{:03}{suffix}", i + 1),
                },
                offset: 0,
            })
            .collect();
        let parent = match &self.backing {
            Some(b) => Some((parent_cid(file, &b.name, options)?, b.name.as_str())),
            None => None,
        };
        let text = NewDescriptor {
            cid: random_cid(),
            parent,
            create_type: sub.name(),
            extents: extents.clone(),
            hw_version: self.hw_version(),
            sectors,
            adapter: &self.adapter,
            tools_version: &self.toolsversion,
        }
        .text();
        let storage = create_storage_with(file, options)?;
        match sub {
            Subformat::MonolithicSparse | Subformat::StreamOptimized => {
                let new = NewSparse {
                    capacity: sectors,
                    zeroed_grain: self.zeroed_grain,
                    stream: sub == Subformat::StreamOptimized,
                };
                return Ok(match new.write(storage.as_ref(), &text)? {
                    Some(tail) => {
                        let at = new.header().overhead * SECTOR;
                        Box::new(super::pending::PendingTail::new(storage, at, tail))
                    }
                    None => storage,
                });
            }
            _ => {}
        }
        for e in &extents {
            let path = crate::paths::resolve_relative_to(file, &e.file);
            let ext = create_storage_with(&path, options)?;
            if sub.flat() {
                ext.set_len(e.sectors * SECTOR)?;
                if self.preallocation == Preallocation::Falloc && e.sectors > 0 {
                    ext.allocate(0, e.sectors * SECTOR)?;
                }
                ext.flush()?;
            } else {
                NewSparse {
                    capacity: e.sectors,
                    zeroed_grain: self.zeroed_grain,
                    stream: false,
                }
                .write(ext.as_ref(), "")?;
            }
        }
        // The descriptor last: it is what makes the files an image.
        storage.write_at(text.as_bytes(), 0)?;
        storage.flush()?;
        Ok(storage)
    }
}
