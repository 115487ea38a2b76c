//! The guest's other inputs: the ABI rank context and the session state. The
//! session's CRC-32 (on its own, and inside the context) is recomputed first so
//! mutations reach the structure checks; the unmodified input goes through the
//! raw paths too. `cargo +nightly fuzz run decode_context`.
#![no_main]

use edgewise_core::check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check::context_bytes(data);
    let _ = check::session_bytes(data);
    let _ = check::context_bytes_fixed_crc(data);
    let _ = check::session_bytes_fixed_crc(data);
});
