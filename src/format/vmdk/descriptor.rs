//! The VMDK descriptor: the text that names the disk's extents, its CID
//! chain and its `ddb.*` data base. Embedded in a sparse extent or a file
//! of its own.

use crate::error::{Error, Result};

/// The most bytes of descriptor text qimg reads.
pub const MAX_DESCRIPTOR: u64 = 1 << 20;
/// The most extent lines a descriptor may have.
pub const MAX_EXTENTS: usize = 4096;
/// The parent CID of an image without a parent.
pub const NO_PARENT: u32 = 0xffff_ffff;

/// How an extent stores its sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// A raw file (from a start sector).
    Flat,
    /// A hosted sparse extent (`KDMV`).
    Sparse,
    /// A raw file on VMFS (no start sector).
    Vmfs,
    /// Sectors that read as zeros.
    Zero,
}

impl ExtentKind {
    /// The word the descriptor uses.
    pub fn word(self) -> &'static str {
        match self {
            ExtentKind::Flat => "FLAT",
            ExtentKind::Sparse => "SPARSE",
            ExtentKind::Vmfs => "VMFS",
            ExtentKind::Zero => "ZERO",
        }
    }
}

/// One extent line: `ACCESS SECTORS TYPE "FILE" [OFFSET]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// `RW` lines are the disk; the others are skipped, as QEMU does.
    pub read_write: bool,
    /// Guest sectors.
    pub sectors: u64,
    /// The extent type.
    pub kind: ExtentKind,
    /// The file name as written (relative to the descriptor).
    pub file: String,
    /// The start sector in a flat file.
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// The content ID.
    pub cid: u32,
    /// The parent's content ID ([`NO_PARENT`] without one).
    pub parent_cid: u32,
    /// `createType`, when present.
    pub create_type: Option<String>,
    /// `parentFileNameHint`, when present.
    pub parent_hint: Option<String>,
    /// The extent lines, in order.
    pub extents: Vec<ExtentLine>,
    /// The first line that is none of a comment, a `key=value` field, a
    /// `ddb` entry or an extent (QEMU skips such lines; a vetting step
    /// should not accept what it cannot read).
    pub odd_line: Option<String>,
}

/// Where the value of the `CID=` line lies in descriptor `text`, and a
/// new value of the same number of hex digits from `random` (so that
/// rewriting those bytes alone, torn or not, leaves a valid descriptor).
/// `None` when the text has no such line.
pub fn renewed_cid(text: &[u8], mut random: impl FnMut() -> u32) -> Option<(usize, Vec<u8>)> {
    let mut at = 0;
    for line in text.split(|&b| b == b'\n') {
        let trimmed = line.strip_prefix(b"CID=");
        if let Some(value) = trimmed {
            let digits = value
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count()
                .clamp(1, 8);
            if value.len() < digits || !value[..digits].iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let low = if digits == 1 {
                0
            } else {
                1u64 << (4 * (digits - 1))
            };
            let span = (1u64 << (4 * digits)) - low;
            let cid = low + random() as u64 % span;
            return Some((at + 4, format!("{cid:0digits$x}").into_bytes()));
        }
        at += line.len() + 1;
    }
    None
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

fn hex_u32(key: &str, v: &str) -> Result<u32> {
    u32::from_str_radix(unquote(v), 16)
        .map_err(|_| Error::invalid(format!("invalid {key} '{v}' in the VMDK descriptor")))
}

/// Whether `head` (the start of a file) is descriptor text, as QEMU's
/// probe decides: the first line that is neither blank nor a comment is
/// `version=1`, `2` or `3`.
pub fn looks_like_descriptor(head: &[u8]) -> bool {
    let mut rest = head;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n');
        let line = &rest[..end.unwrap_or(rest.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|&b| b == b' ') || line.starts_with(b"#") {
            match end {
                Some(e) => rest = &rest[e + 1..],
                None => return false,
            }
            continue;
        }
        return end.is_some() && matches!(line, b"version=1" | b"version=2" | b"version=3");
    }
    false
}

impl Descriptor {
    /// Parses descriptor text (up to its first NUL byte).
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let text = std::str::from_utf8(raw)
            .map_err(|_| Error::invalid("invalid VMDK image descriptor (not UTF-8 text)"))?;
        let mut d = Descriptor {
            cid: 0,
            parent_cid: NO_PARENT,
            ..Default::default()
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                if d.extents.len() >= MAX_EXTENTS {
                    return Err(Error::invalid(format!(
                        "the VMDK descriptor has more than {MAX_EXTENTS} extents"
                    )));
                }
                d.extents.push(parse_extent(line)?);
                continue;
            }
            let plain_key = line
                .split_once('=')
                .is_some_and(|(k, _)| !k.contains(' ') && !k.is_empty());
            if !plain_key && !line.to_ascii_lowercase().starts_with("ddb") && d.odd_line.is_none() {
                d.odd_line = Some(line.chars().take(80).collect());
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key.trim() {
                "CID" => d.cid = hex_u32("CID", value)?,
                "parentCID" => d.parent_cid = hex_u32("parentCID", value)?,
                "createType" => d.create_type = Some(unquote(value).to_string()),
                "parentFileNameHint" => d.parent_hint = Some(unquote(value).to_string()),
                _ => {}
            }
        }
        Ok(d)
    }
}

fn parse_extent(line: &str) -> Result<ExtentLine> {
    let bad = || Error::invalid(format!("Invalid extent line: {line}"));
    let (head, rest) = line.split_once('"').ok_or_else(bad)?;
    let (file, tail) = rest.split_once('"').ok_or_else(bad)?;
    let words: Vec<&str> = head.split_whitespace().collect();
    let [access, sectors, kind] = words[..] else {
        return Err(bad());
    };
    let sectors: u64 = sectors.parse().map_err(|_| bad())?;
    let kind = match kind {
        "FLAT" => ExtentKind::Flat,
        "SPARSE" => ExtentKind::Sparse,
        "VMFS" => ExtentKind::Vmfs,
        "ZERO" => ExtentKind::Zero,
        other => {
            return Err(Error::unsupported(format!(
                "VMDK extents of type {other} are not supported (line: {line})"
            )))
        }
    };
    let tail: Vec<&str> = tail.split_whitespace().collect();
    let offset = match (kind, tail.as_slice()) {
        (ExtentKind::Flat, [o]) => o.parse().map_err(|_| bad())?,
        (ExtentKind::Flat, _) => return Err(bad()),
        (_, []) => 0,
        (_, [o]) => o.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if file.is_empty() && kind != ExtentKind::Zero {
        return Err(bad());
    }
    Ok(ExtentLine {
        read_write: access == "RW",
        sectors,
        kind,
        file: file.to_string(),
        offset,
    })
}

/// What a new descriptor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDescriptor<'a> {
    /// The content ID.
    pub cid: u32,
    /// The parent's CID and `parentFileNameHint`, for an image with a parent.
    pub parent: Option<(u32, &'a str)>,
    /// `createType`.
    pub create_type: &'a str,
    /// The extent lines.
    pub extents: Vec<ExtentLine>,
    /// `ddb.virtualHWVersion`.
    pub hw_version: &'a str,
    /// Guest sectors (for the geometry).
    pub sectors: u64,
    /// `ddb.adapterType`.
    pub adapter: &'a str,
    /// `ddb.toolsVersion`.
    pub tools_version: &'a str,
}

impl NewDescriptor<'_> {
    /// The text, line by line as qemu-img writes it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        s += "# Disk DescriptorFile\nversion=1\n";
        let parent_cid = self.parent.map_or(NO_PARENT, |(cid, _)| cid);
        s += &format!("CID={:x}\nparentCID={parent_cid:x}\n", self.cid);
        s += &format!("createType=\"{}\"\n", self.create_type);
        // qemu-img's line for the parent stands where a blank line stands
        // in an image without one.
        match self.parent {
            Some((_, hint)) => s += &format!("parentFileNameHint=\"{hint}\"\n"),
            None => s += "\n",
        }
        s += "# Extent description\n";
        for e in &self.extents {
            s += &format!("RW {} {} \"{}\"", e.sectors, e.kind.word(), e.file);
            if e.kind == ExtentKind::Flat {
                s += &format!(" {}", e.offset);
            }
            s += "\n";
        }
        let heads: u64 = if self.adapter == "ide" { 16 } else { 255 };
        s += "\n# The Disk Data Base\n#DDB\n\n";
        s += &format!("ddb.virtualHWVersion = \"{}\"\n", self.hw_version);
        s += &format!(
            "ddb.geometry.cylinders = \"{}\"\n",
            self.sectors / (63 * heads)
        );
        s += &format!("ddb.geometry.heads = \"{heads}\"\n");
        s += "ddb.geometry.sectors = \"63\"\n";
        s += &format!("ddb.adapterType = \"{}\"\n", self.adapter);
        s += &format!("ddb.toolsVersion = \"{}\"\n", self.tools_version);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_cid_keeps_its_width() {
        let text = b"# Disk DescriptorFile\nversion=1\nCID=19b6895\nparentCID=436b6f97\n";
        let (at, new) = renewed_cid(text, || 0).unwrap();
        assert_eq!(&text[at..at + 7], b"19b6895");
        assert_eq!(new, b"1000000");
        let (_, new) = renewed_cid(text, || u32::MAX).unwrap();
        assert_eq!(new.len(), 7);
        assert_eq!(renewed_cid(b"version=1\n", || 0), None);
        // parentCID is not the CID line.
        let (at, _) = renewed_cid(b"parentCID=ffffffff\nCID=ab\n", || 5).unwrap();
        assert_eq!(at, 23);
    }

    #[test]
    fn descriptors_probe_and_parse() {
        let text = b"# Disk DescriptorFile\nversion=1\nCID=f264bb95\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 10240 FLAT \"a-flat.vmdk\" 0\nRDONLY 100 FLAT \"b\" 0\nRW 1024 ZERO \"\"\n";
        assert!(looks_like_descriptor(text));
        assert!(!looks_like_descriptor(b"version=1"));
        assert!(!looks_like_descriptor(b"hello\nversion=1\n"));
        let d = Descriptor::parse(text).unwrap();
        assert_eq!(d.cid, 0xf264bb95);
        assert_eq!(d.parent_cid, NO_PARENT);
        assert_eq!(d.create_type.as_deref(), Some("monolithicFlat"));
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[0].file, "a-flat.vmdk");
        assert!(!d.extents[1].read_write);
    }

    #[test]
    fn bad_lines_are_refused() {
        for bad in [
            "RW 2048 FLAT \"nofile.bin\"",
            "RW x SPARSE \"a\"",
            "RW 10 SPARSE \"a",
            "RW 10 SESPARSE \"a\"",
        ] {
            let text = format!("version=1\ncreateType=\"monolithicFlat\"\n{bad}\n");
            assert!(Descriptor::parse(text.as_bytes()).is_err(), "{bad}");
        }
        assert!(Descriptor::parse(b"version=1\nCID=zz\n").is_err());
    }
}
