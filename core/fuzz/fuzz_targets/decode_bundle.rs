//! Any byte string given to the bundle decoder yields a bundle or a typed error;
//! a bundle it accepts re-encodes to the same bytes. Structure-aware: the input's
//! CRC-32 trailer is recomputed first ([`edgewise_core::check::fix_bundle_crc`]),
//! so mutations reach the header, padding and row checks instead of stopping at
//! the checksum; the unmodified input still goes through the raw path too.
//! `cargo +nightly fuzz run decode_bundle`.
#![no_main]

use edgewise_core::check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check::bundle_bytes(data);
    let _ = check::bundle_bytes_fixed_crc(data);
});
