//! The vmdk driver on arbitrary bytes: sparse and stream headers, grain
//! directories and tables, compressed grains, and descriptors (whose
//! extent files, relative to the input, are mostly absent).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::image(data, Some("vmdk")));
