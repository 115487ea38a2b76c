//! Any byte string given to the model decoder yields a model or a typed error;
//! a model it accepts validates and re-encodes to the same bytes. The input's
//! CRC-32 trailer is recomputed first, so mutations reach the structure checks;
//! the unmodified input goes through the raw path too.
//! `cargo +nightly fuzz run decode_model`.
#![no_main]

use edgewise_core::check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check::model_bytes(data);
    let _ = check::model_bytes_fixed_crc(data);
});
