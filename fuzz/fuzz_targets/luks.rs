//! The luks driver on arbitrary bytes: the LUKS1 header and key slots,
//! unlocking with the seeds' passphrase (AF merge, digest check), and the
//! payload cipher on every read a read-only command makes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qimg_fuzz::luks(data));
