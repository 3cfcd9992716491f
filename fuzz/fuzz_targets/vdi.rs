//! The vdi driver on arbitrary bytes: header, block map and everything a
//! read-only command walks, its check included.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::image(data, Some("vdi")));
