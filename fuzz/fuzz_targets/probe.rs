//! Format probing on arbitrary bytes, then whichever driver claims them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::image(data, None));
