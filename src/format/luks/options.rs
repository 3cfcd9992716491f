//! The `-o` options of a new LUKS area (`key-secret`, `cipher-alg`, ...;
//! qcow2 takes them with an `encrypt.` prefix), read as qemu-img reads
//! them, with its messages.

use super::crypto::{CipherSpec, Hash, IvGen};
use super::keys::NewArea;
use crate::error::{Error, Result};
use crate::format::driver::OptionValues;

/// QEMU's default `iter-time`, in milliseconds.
pub const DEFAULT_ITER_TIME: u64 = 2000;

/// The options a new area takes, without prefix, in qemu-img's order.
pub const NAMES: &[&str] = &[
    "key-secret",
    "cipher-alg",
    "cipher-mode",
    "ivgen-alg",
    "ivgen-hash-alg",
    "hash-alg",
    "iter-time",
];

/// Reads the area options of `o`, each named `prefix` + its name.
pub fn new_area(o: &OptionValues, prefix: &str) -> Result<NewArea> {
    let get = |k: &str| o.get(&format!("{prefix}{k}"));
    let bad = |k: &str, v: &str| {
        Error::argument(format!(
            "Parameter '{prefix}{k}' does not accept value '{v}'"
        ))
    };
    let aes_bits = match get("cipher-alg").unwrap_or("aes-256") {
        "aes-128" => 128,
        "aes-192" => 192,
        "aes-256" => 256,
        v @ ("serpent-128" | "serpent-192" | "serpent-256" | "twofish-128" | "twofish-192"
        | "twofish-256" | "cast5-128" | "sm4") => {
            return Err(Error::unsupported(format!(
                "LUKS cipher '{v}' is not supported (qimg creates aes-128, aes-192 and aes-256)"
            )))
        }
        v => return Err(Error::argument(format!("Algorithm '{v}' not supported"))),
    };
    match get("cipher-mode").unwrap_or("xts") {
        "xts" => {}
        v @ ("cbc" | "ecb" | "ctr") => {
            return Err(Error::unsupported(format!(
                "LUKS cipher mode '{v}' is not supported (qimg creates xts)"
            )))
        }
        v => return Err(bad("cipher-mode", v)),
    }
    let ivgen = match get("ivgen-alg").unwrap_or("plain64") {
        "plain64" => IvGen::Plain64,
        "plain" => IvGen::Plain,
        "essiv" => {
            return Err(Error::unsupported(
                "LUKS IV generator 'essiv' is not supported (qimg creates plain64 and plain)",
            ))
        }
        v => return Err(bad("ivgen-alg", v)),
    };
    let ivgen_hash = get("ivgen-hash-alg").map(Hash::parse).transpose()?;
    let hash = Hash::parse(get("hash-alg").unwrap_or("sha256"))?;
    let iter_time_ms = match get("iter-time") {
        None => DEFAULT_ITER_TIME,
        Some(v) => v.parse().map_err(|_| {
            Error::argument(format!(
                "Parameter '{prefix}iter-time' expects a number, not '{v}'"
            ))
        })?,
    };
    Ok(NewArea {
        cipher: CipherSpec {
            aes_bits,
            ivgen,
            ivgen_hash,
        },
        hash,
        iter_time_ms,
    })
}
