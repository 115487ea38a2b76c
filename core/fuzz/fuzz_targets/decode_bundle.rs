//! Any byte string given to the bundle decoder yields a bundle or a typed error;
//! a bundle it accepts re-encodes to the same bytes. `cargo fuzz run decode_bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::bundle_bytes(data);
});
