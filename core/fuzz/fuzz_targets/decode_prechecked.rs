//! The checksum-free bundle path a host takes once it has verified a bundle's
//! CRC (`Bundle::decode_prechecked`, chosen by the `EWCX` context's flag): any
//! byte string yields a bundle or a typed error, every cell of an accepted one
//! is readable and valid, it re-encodes to the same bytes up to the stored CRC,
//! and the full decoder agrees. `cargo +nightly fuzz run decode_prechecked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::bundle_prechecked_bytes(data);
});
