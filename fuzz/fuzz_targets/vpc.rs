//! The vpc driver on arbitrary bytes: header, tables and everything a
//! read-only command walks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::image(data, Some("vpc")));
