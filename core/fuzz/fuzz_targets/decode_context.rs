//! The guest's other inputs: the ABI rank context, the session state and the
//! stored history. The CRC-32s (the session's on its own and inside the
//! context, the history's) are recomputed first so mutations reach the
//! structure checks; the unmodified input goes through the raw paths too. `cargo +nightly fuzz run decode_context`.
#![no_main]

use edgewise_core::check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = check::context_bytes(data);
    let _ = check::session_bytes(data);
    let _ = check::context_bytes_fixed_crc(data);
    let _ = check::session_bytes_fixed_crc(data);
    let _ = check::history_bytes(data);
    let _ = check::history_bytes_fixed_crc(data);
});
