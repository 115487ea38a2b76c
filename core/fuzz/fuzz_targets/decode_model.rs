//! Any byte string given to the model decoder yields a model or a typed error;
//! a model it accepts validates and re-encodes to the same bytes. `cargo fuzz run decode_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::model_bytes(data);
});
