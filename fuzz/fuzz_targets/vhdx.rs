//! The vhdx driver on a compactly described file (see
//! `qimg_fuzz::vhdx`): headers, region table, metadata, BAT and log
//! replay, and everything a read-only command walks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::vhdx(data));
