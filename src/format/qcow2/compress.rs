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

/// Compresses one cluster as QEMU does: raw deflate with a 4 KiB window
/// (level 6), or one zstd frame (level 3). Returns `None` when the result
/// would not be smaller than the cluster (it is then stored plainly).
pub fn compress(kind: CompressionType, cluster: &[u8]) -> Result<Option<Vec<u8>>> {
    let limit = cluster.len() - 1;
    let out = match kind {
        CompressionType::Zlib => deflate_raw_4k(cluster, limit)?,
        CompressionType::Zstd => zstd_frame(cluster)?,
    };
    Ok(out.filter(|o| o.len() <= limit))
}

thread_local! {
    /// One deflate context per worker thread, reset for every cluster.
    static DEFLATE: std::cell::RefCell<Option<flate2::Compress>> = const { std::cell::RefCell::new(None) };
}

/// The sample of a cluster deflated first: when even it does not shrink,
/// the cluster is taken as incompressible (random or already compressed
/// data, half of many disks) and stored plainly without deflating it all.
const PROBE: usize = 4096;

/// Output room for deflating `len` bytes that always lets the stream end:
/// stored blocks cost 5 bytes each, and zlib-rs may cut them as short as
/// its pending buffer, so leave generous slack over `len`.
fn deflate_room(len: usize) -> usize {
    len + len / 8 + 64
}

fn deflate_raw_4k(input: &[u8], limit: usize) -> Result<Option<Vec<u8>>> {
    DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = slot.get_or_insert_with(|| {
            flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, 12)
        });
        let failed = |e| Error::io("deflate failed", std::io::Error::other(e));
        // zlib-rs 0.6.8 (the newest release) does not rewind its pending
        // buffer on reset when a stream was left unfinished for want of
        // output room; after about 15 such streams it panics. So every
        // stream is given room to finish, and a context whose stream did
        // not finish anyway is dropped, never reset and reused.
        let outcome = (|| {
            if input.len() >= 4 * PROBE {
                c.reset();
                let mut sample = Vec::with_capacity(deflate_room(PROBE));
                let status = c
                    .compress_vec(&input[..PROBE], &mut sample, flate2::FlushCompress::Finish)
                    .map_err(failed)?;
                if status != flate2::Status::StreamEnd {
                    return Ok((None, false));
                }
                if sample.len() >= PROBE - PROBE / 64 {
                    return Ok((None, true));
                }
            }
            c.reset();
            let mut out = Vec::with_capacity(deflate_room(input.len()));
            let status = c
                .compress_vec(input, &mut out, flate2::FlushCompress::Finish)
                .map_err(failed)?;
            let finished = status == flate2::Status::StreamEnd;
            Ok((Some(out).filter(|o| finished && o.len() <= limit), finished))
        })();
        match outcome {
            Ok((out, true)) => Ok(out),
            Ok((_, false)) | Err(_) => {
                *slot = None;
                outcome.map(|(out, _)| out)
            }
        }
    })
}

thread_local! {
    /// One zstd context per worker thread, reused for every cluster.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn zstd_frame(input: &[u8]) -> Result<Option<Vec<u8>>> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut c = zstd::bulk::Compressor::new(3).map_err(|e| Error::io("zstd failed", e))?;
            c.include_contentsize(true)
                .map_err(|e| Error::io("zstd failed", e))?;
            c.include_checksum(false)
                .map_err(|e| Error::io("zstd failed", e))?;
            *slot = Some(c);
        }
        let c = slot.as_mut().expect("just set");
        c.compress(input)
            .map(Some)
            .map_err(|e| Error::io("zstd failed", e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_both_codecs() {
        let cluster: Vec<u8> = (0..65536u32).map(|i| (i % 97) as u8).collect();
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            let packed = compress(kind, &cluster).unwrap().expect("compressible");
            let mut out = vec![0u8; cluster.len()];
            // QEMU's readers get sector-rounded input with trailing bytes.
            let mut input = packed.clone();
            input.extend_from_slice(&[0xaa; 300]);
            decompress(kind, &input, &mut out).unwrap();
            assert_eq!(out, cluster);
        }
    }

    #[test]
    fn incompressible_clusters_are_refused() {
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(compress(CompressionType::Zlib, &noise).unwrap().is_none());
        assert!(compress(CompressionType::Zstd, &noise).unwrap().is_none());
    }

    #[test]
    fn long_runs_of_incompressible_clusters_reuse_the_deflater() {
        // zlib-rs 0.6.8 panicked on the 16th unfinished stream of a context.
        let mut x = 0x9e37_79b9u32;
        let noise: Vec<u8> = (0..65536 * 40)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for size in [512usize, 4096, 16384, 65536] {
            for cluster in noise.chunks(size).take(64) {
                assert!(compress(CompressionType::Zlib, cluster).unwrap().is_none());
                assert!(compress(CompressionType::Zstd, cluster).unwrap().is_none());
            }
            // The context still compresses what shrinks, correctly.
            let text: Vec<u8> = (0..size).map(|i| b"qcow2 "[i % 6]).collect();
            let packed = compress(CompressionType::Zlib, &text).unwrap().unwrap();
            let mut out = vec![0u8; size];
            decompress(CompressionType::Zlib, &packed, &mut out).unwrap();
            assert_eq!(out, text);
        }
    }
}
