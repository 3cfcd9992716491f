//! What every fuzz target does with its input: open it the way a command
//! would, then walk it the way `map`, `convert` and `check` walk an image.
//! Errors are the expected outcome for almost every input; a panic, a hang
//! or an allocation past libFuzzer's RSS limit is a finding.

use qimg::format::Format;
use qimg::format::{open_storage, FormatKind};
use qimg::io::MemStorage;
use std::path::Path;

/// How many block-status extents one input may walk: enough to reach
/// every table of a seed image, bounded so a claimed 2^63-byte disk of
/// one-byte extents cannot stall the fuzzer.
const MAX_EXTENTS: usize = 512;

/// The most bytes read at each extent.
const MAX_READ: u64 = 64 << 10;

/// Opens `data` as an image file named `fuzz.img`, as `format` or probed,
/// and exercises the result.
pub fn image(data: &[u8], format: Option<&str>) {
    let kind = format.map(|f| FormatKind::named(f).expect("a registered format"));
    let storage = Box::new(MemStorage::new("fuzz.img", data.to_vec()));
    if let Ok(image) = open_storage(storage, Path::new("fuzz.img"), kind) {
        walk(image.as_ref());
    }
}

/// Walks `image` as the read-only commands do: block status from the start,
/// a bounded read at every extent, the description `info` prints (with
/// the snapshot table), the bitmap directory, and the format's own check.
pub fn walk(image: &dyn Format) {
    let size = image.virtual_size();
    let mut offset = 0;
    let mut buf = Vec::new();
    for _ in 0..MAX_EXTENTS {
        if offset >= size {
            break;
        }
        let Ok(extent) = image.block_status(offset, size - offset) else {
            break;
        };
        let n = extent.len.min(MAX_READ).min(size - offset);
        buf.resize(n as usize, 0);
        let _ = image.read(offset, &mut buf);
        // A zero-length extent would be a bug of its own; step on anyway.
        offset = offset.saturating_add(extent.len.max(1));
    }
    // The last bytes too, where tables for the end of the disk live.
    if size > 0 {
        let n = size.min(MAX_READ);
        buf.resize(n as usize, 0);
        let _ = image.read(size - n, &mut buf);
    }
    let _ = image.describe();
    if let Some(bitmaps) = image.bitmaps() {
        let _ = bitmaps.list();
    }
    let _ = image.check(&mut |_| {});
}

/// The largest file a VHDX input expands to.
const MAX_VHDX_FILE: usize = 16 << 20;

/// Opens a VHDX described compactly by `data` (a real VHDX is megabytes
/// of mostly zeros, too large for a seed or for mutation to find its
/// tables): a flags byte, the file length (u32 LE, at most 16 MiB), then
/// chunks of u16 LE sector (4 KiB units), u16 LE length and that many
/// bytes, written into a zeroed file. With flag bit 0 the checksums of
/// the headers, region tables and log entries are recomputed first, so
/// mutations reach what lies behind them.
pub fn vhdx(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 4 {
        return;
    }
    let len =
        (u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize).min(MAX_VHDX_FILE);
    let mut file = vec![0u8; len];
    let mut p = &rest[4..];
    while p.len() >= 4 {
        let at = u16::from_le_bytes([p[0], p[1]]) as usize * 4096;
        let n = (u16::from_le_bytes([p[2], p[3]]) as usize).min(p.len() - 4);
        let chunk = &p[4..4 + n];
        p = &p[4 + n..];
        if at < len {
            let m = n.min(len - at);
            file[at..at + m].copy_from_slice(&chunk[..m]);
        }
    }
    if flags & 1 != 0 {
        reseal_vhdx(&mut file);
    }
    image(&file, Some("vhdx"));
}

/// Recomputes the CRC-32C of every VHDX structure that has one.
fn reseal_vhdx(file: &mut [u8]) {
    use qimg::format::vhdx::header::seal;
    if file.len() >= 0x20000 + 4096 {
        let h = &file[0x10000..0x11000];
        let log_len = u32::from_le_bytes(h[68..72].try_into().expect("4")) as usize;
        let log_at = u64::from_le_bytes(h[72..80].try_into().expect("8")).min(1 << 40) as usize;
        let log_end = log_at.saturating_add(log_len).min(file.len());
        let mut at = log_at;
        while at + 4096 <= log_end {
            if &file[at..at + 4] == b"loge" {
                let n = u32::from_le_bytes(file[at + 8..at + 12].try_into().expect("4")) as usize;
                if n >= 64 && at + n <= log_end {
                    seal(&mut file[at..at + n], 4);
                }
            }
            at += 4096;
        }
        for h in [0x10000, 0x20000] {
            seal(&mut file[h..h + 4096], 4);
        }
    }
    for r in [0x30000, 0x40000] {
        if file.len() >= r + 0x10000 {
            seal(&mut file[r..r + 0x10000], 4);
        }
    }
}

/// The passphrase of the LUKS seeds.
pub const LUKS_PASSPHRASE: &[u8] = b"pw";

/// The most bytes a LUKS input is padded to: seeds hold the header and
/// slot 0's key material only, and the payload that follows reads as
/// zeros (ciphertext of nothing in particular).
const MAX_LUKS_FILE: u64 = 4 << 20;

/// Opens `data` as a LUKS image with the seeds' passphrase and walks it;
/// the header is also opened as `info` opens it (no key). Inputs that
/// ask for many PBKDF2 rounds are parsed but not unlocked, so the fuzzer
/// spends its time on the parsers, the AF merge and the cipher.
pub fn luks(data: &[u8]) {
    use qimg::format::luks::header::Header;
    use qimg::format::OpenHow;
    use qimg::io::{Secrets, StorageOptions};
    let mut bytes = data.to_vec();
    let Ok(header) = Header::parse(data, u64::MAX >> 1, false) else {
        // Refused already: the refusal on open is the same path.
        let storage = Box::new(MemStorage::new("fuzz.luks", bytes));
        let _ = open_storage(storage, Path::new("fuzz.luks"), FormatKind::named("luks"));
        return;
    };
    let end = (header.payload_bytes() + (64 << 10)).min(MAX_LUKS_FILE);
    if (bytes.len() as u64) < end {
        bytes.resize(end as usize, 0);
    }
    let rounds: u64 = header
        .slots
        .iter()
        .filter(|s| s.active)
        .map(|s| s.iterations as u64 + header.mk_iterations as u64)
        .sum();
    let secrets = Secrets::new([(
        "s0".to_string(),
        zeroize::Zeroizing::new(LUKS_PASSPHRASE.to_vec()),
    )]);
    let info = StorageOptions {
        no_io: true,
        ..StorageOptions::default()
    };
    let keyed = StorageOptions::default()
        .with_secrets(secrets)
        .with_key_secret(Some("s0".into()));
    let kind = FormatKind::named("luks");
    let open = |options: &StorageOptions| {
        qimg::format::open_as_with(
            Box::new(MemStorage::new("fuzz.luks", bytes.clone())),
            Path::new("fuzz.luks"),
            kind,
            &OpenHow::ReadOnly,
            options,
        )
    };
    if let Ok(image) = open(&info) {
        let _ = image.describe();
    }
    if rounds <= 20_000 {
        if let Ok(image) = open(&keyed) {
            walk(image.as_ref());
        }
    }
}
