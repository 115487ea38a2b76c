//! # edgewise-conformance
//!
//! Cross-platform conformance and end-to-end tests for Edgewise. There is no
//! library code here: the tests in `tests/it/` (one binary) check that every
//! build of the core agrees with every other, and that the servers work
//! together.
//!
//! * `guest`: `edgewise_core.wasm` has zero imports and the documented
//!   exports, and in wasmtime it ranks randomized bundles bit-identically to the
//!   native core; bad input gives typed errors, never a trap.
//! * `feed_e2e`: a real origin (`edgewise-origin`, on 127.0.0.1) with items,
//!   events and a model, and the edge with the real guest in front of it: the
//!   feed equals the native ranking, hostile guests fall back, modules are
//!   verified and swapped under load, personal feeds need the user's token.
//!
//! `benches/feed.rs` measures feed latency under an open-loop load over the
//! same pair of servers (`cargo bench -p edgewise-conformance --bench feed`).
