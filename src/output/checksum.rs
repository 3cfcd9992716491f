//! `checksum` output: blksum's `DIGEST  FILE` lines, or a JSON list.

use crate::engine::blkhash::{Algorithm, Md};
use serde_json::json;

/// One image's digest.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The image as it was named.
    pub file: String,
    /// The digest algorithm.
    pub algorithm: Algorithm,
    /// The construction's block size.
    pub block_size: u64,
    /// The digest.
    pub digest: Md,
}

/// `DIGEST  FILE`, as blksum and sha256sum print it.
pub fn human_line(e: &Entry) -> String {
    format!("{}  {}", e.digest.to_hex(), e.file)
}

/// A JSON list of `{"filename", "algorithm", "block-size", "checksum"}`
/// objects, pretty-printed as qemu-img prints its JSON.
pub fn json_list(entries: &[Entry]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            json!({
                "filename": e.file,
                "algorithm": e.algorithm.name(),
                "block-size": e.block_size,
                "checksum": e.digest.to_hex(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_default()
}
