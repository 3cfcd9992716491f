//! The parsers of what users type: sizes, `json:`/`file:` image names,
//! `--object` definitions, NBD URIs, cache modes, resize sizes and
//! `-o` option lists. The first byte picks the parser.
#![no_main]

use qimg::chain::spec::{ImageSpec, Object};
use qimg::io::nbd::NbdUri;
use qimg::io::CacheMode;
use qimg::ops::resize::NewSize;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match pick % 6 {
        0 => drop(qimg::size::parse_size(text)),
        1 => drop(ImageSpec::parse(text)),
        2 => drop(Object::parse(text)),
        3 => drop(NbdUri::parse(text)),
        4 => drop(CacheMode::parse(text)),
        _ => drop(NewSize::parse(text)),
    }
});
