//! Decompression of qcow2 compressed clusters.

use super::header::CompressionType;
use crate::error::{Error, Result};
use std::io::Read;

/// Decompresses `input` into exactly `out.len()` bytes. Trailing input (the
/// rest of the last sector, or the next cluster's data) is ignored.
pub fn decompress(kind: CompressionType, input: &[u8], out: &mut [u8]) -> Result<()> {
    match kind {
        CompressionType::Zlib => inflate_raw(input, out),
        CompressionType::Zstd => unzstd(input, out),
    }
}

fn inflate_raw(input: &[u8], out: &mut [u8]) -> Result<()> {
    let mut d = flate2::Decompress::new(false);
    loop {
        let before_out = d.total_out();
        let before_in = d.total_in();
        let status = d
            .decompress(
                &input[before_in as usize..],
                &mut out[before_out as usize..],
                flate2::FlushDecompress::Finish,
            )
            .map_err(|e| Error::corrupt(format!("compressed cluster does not inflate: {e}")))?;
        let produced = d.total_out() as usize;
        if produced == out.len() {
            return Ok(());
        }
        let progressed = d.total_out() != before_out || d.total_in() != before_in;
        if matches!(status, flate2::Status::StreamEnd) || !progressed {
            return Err(Error::corrupt(format!(
                "compressed cluster inflates to {produced} bytes, {} expected",
                out.len()
            )));
        }
    }
}

fn unzstd(input: &[u8], out: &mut [u8]) -> Result<()> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(input)
        .map_err(|e| Error::corrupt(format!("compressed cluster is not zstd: {e}")))?;
    dec.read_exact(out)
        .map_err(|e| Error::corrupt(format!("compressed zstd cluster does not decode: {e}")))
}
