//! The rank path: one input is split into a bundle, a model and an `EWCX`
//! context (`check::split_rank_input`: two `u32` lengths, then the three),
//! their checksums are fixed, and when all three decode the native ranker and
//! the guest's `abi::Engine` rank them; `check::rank_bytes` checks the output
//! against the pipeline's documented invariants and reference functions.
//! `cargo +nightly fuzz run rank`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = edgewise_core::check::rank_input(data);
});
