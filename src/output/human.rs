//! Human-readable numbers as qemu-img prints them.

/// A byte count with an IEC suffix and three significant digits
/// (`%0.3g`), switching unit so the number stays below 1000: `1.5 KiB`,
/// `0.977 MiB`, `0 B`.
///
/// ```
/// use qimg::output::human::size_to_str;
/// assert_eq!(size_to_str(1536), "1.5 KiB");
/// assert_eq!(size_to_str(1024000), "0.977 MiB");
/// ```
pub fn size_to_str(bytes: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let scaled = bytes as f64 / (1000.0 / 1024.0);
    // frexp's exponent: the smallest e with scaled < 2^e (0 for zero).
    let exp = if scaled == 0.0 {
        0
    } else {
        scaled.log2().floor() as i32 + 1
    };
    let i = (((exp - 1).max(0)) / 10).min(6) as usize;
    let div = (1u64 << (i * 10)) as f64;
    format!("{} {}B", format_g3(bytes as f64 / div), SUFFIXES[i])
}

/// Formats like C's `%0.3g`.
pub fn format_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    if !(-4..3).contains(&exp) {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (2 - exp).max(0) as usize;
    strip_zeros(&format!("{v:.decimals$}"))
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::size_to_str;

    #[test]
    fn matches_qemu_img() {
        assert_eq!(size_to_str(0), "0 B");
        assert_eq!(size_to_str(512), "512 B");
        assert_eq!(size_to_str(1536), "1.5 KiB");
        assert_eq!(size_to_str(1024000), "0.977 MiB");
        assert_eq!(size_to_str(1048064), "1 MiB");
        assert_eq!(size_to_str(123457024), "118 MiB");
        assert_eq!(size_to_str(1376256), "1.31 MiB");
        assert_eq!(size_to_str(4194304), "4 MiB");
        assert_eq!(size_to_str(331776), "324 KiB");
        assert_eq!(size_to_str(1023500), "1e+03 KiB");
    }
}
