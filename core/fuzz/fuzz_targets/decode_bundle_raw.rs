//! The old, raw bundle target: bytes straight into the checked decoder, no
//! checksum fix-up. Kept only as the baseline that shows what
//! `decode_bundle`'s fix-up buys (`cargo xtask fuzz --targets
//! decode_bundle_raw,decode_bundle`); not part of the default campaign.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::bundle_bytes(data);
});
