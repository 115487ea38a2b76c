//! The guest's other inputs: the ABI rank context and the session state.
//! `cargo fuzz run decode_context`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::context_bytes(data);
    let _ = edgewise_core::check::session_bytes(data);
});
