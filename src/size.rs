//! Size arguments as qemu-img reads them: `1G`, `1.5M`, `512b`, `4096`.

use crate::error::{Error, Result};

/// Parses a size with qemu-img's suffixes: `k K M G T P E` (powers of 1024)
/// and `b`/`B` (bytes). Fractions such as `1.5M` are allowed, and so are
/// hexadecimal byte counts (`0x10000`, no suffix), as qemu-img takes them.
/// The result must be below 8 EiB.
///
/// ```
/// use qimg::size::parse_size;
/// assert_eq!(parse_size("64k").unwrap(), 65536);
/// assert_eq!(parse_size("1.5M").unwrap(), 1572864);
/// assert_eq!(parse_size("0x10000").unwrap(), 65536);
/// assert!(parse_size("1KiB").is_err());
/// assert!(parse_size("0x1M").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64> {
    let invalid = || Error::argument(format!("Invalid size specified: '{text}'"));
    let s = text.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        return match u64::from_str_radix(hex, 16) {
            Ok(v) if v <= i64::MAX as u64 => Ok(v),
            _ => Err(Error::argument(format!(
                "Invalid size specified: '{text}'. Must be between 0 and 9223372036854775807."
            ))),
        };
    }
    let (number, mult): (&str, u64) = match s.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let mult = match c {
                'b' | 'B' => 1,
                'k' | 'K' => 1 << 10,
                'M' | 'm' => 1 << 20,
                'G' | 'g' => 1 << 30,
                'T' | 't' => 1 << 40,
                'P' | 'p' => 1 << 50,
                'E' | 'e' => 1 << 60,
                _ => return Err(invalid()),
            };
            (&s[..s.len() - 1], mult)
        }
        _ => (s, 1),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(invalid());
    }
    let too_large = || {
        Error::argument(format!(
            "Invalid size specified: '{text}'. Must be between 0 and 9223372036854775807."
        ))
    };
    let value = if let Some((int, frac)) = number.split_once('.') {
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return Err(invalid());
        }
        let v: f64 = number.parse().map_err(|_| invalid())?;
        let bytes = v * mult as f64;
        if bytes >= 9.223_372_036_854_776e18 {
            return Err(too_large());
        }
        bytes as u64
    } else {
        let v: u64 = number.parse().map_err(|_| too_large())?;
        v.checked_mul(mult).ok_or_else(too_large)?
    };
    if value > i64::MAX as u64 {
        return Err(too_large());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn suffixes_are_powers_of_1024() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512b").unwrap(), 512);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("1P").unwrap(), 1 << 50);
        assert_eq!(parse_size("7E").unwrap(), 7 << 60);
    }

    #[test]
    fn hexadecimal_byte_counts_are_sizes() {
        assert_eq!(parse_size("0x10000").unwrap(), 65536);
        assert_eq!(parse_size("0X100000").unwrap(), 1 << 20);
        assert_eq!(parse_size("0x7fffffffffffffff").unwrap(), i64::MAX as u64);
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "",
            "1x",
            "1KiB",
            "1kb",
            "-1",
            "1..5M",
            "8E",
            "abc",
            "1.2.3",
            "0x",
            "0x1M",
            "0x1.8",
            "0x8000000000000000",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }
}
