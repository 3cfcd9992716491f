//! `map` output, byte for byte as qemu-img prints it.

use crate::ops::map::MapEntry;
use std::io::{self, Write};

/// The human table's header line.
pub const HUMAN_HEADER: &str = "Offset          Length          Mapped to       File\n";

/// Writes one entry of the JSON list. The caller writes the opening `[`;
/// `more` says whether another entry follows (else the list is closed).
pub fn write_json_entry(out: &mut impl Write, e: &MapEntry, more: bool) -> io::Result<()> {
    write!(
        out,
        "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
        e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
    )?;
    if let Some(o) = e.offset {
        write!(out, ", \"offset\": {o}")?;
    }
    out.write_all(if more { b"},\n" } else { b"}]\n" })
}

/// Whether an entry cannot be shown in the human table: data without a
/// host offset (compressed clusters).
pub fn human_unmappable(e: &MapEntry) -> bool {
    e.data && e.offset.is_none()
}

/// Writes one row of the human table, if the entry holds real data.
pub fn write_human_entry(out: &mut impl Write, e: &MapEntry) -> io::Result<()> {
    if e.data && !e.zero {
        writeln!(
            out,
            "{:<16}{:<16}{:<16}{}",
            hex(e.start),
            hex(e.length),
            hex(e.offset.unwrap_or(0)),
            e.file.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `%#x`: `0x`-prefixed hex, except zero which prints as `0`.
fn hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}
