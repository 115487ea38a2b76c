//! # edgewise-conformance
//!
//! End-to-end and cross-platform conformance tests for Edgewise. There is no
//! library code here: the tests in `tests/` check that every build of the core
//! agrees with every other.
//!
//! * `guest.rs`: `edgewise_core.wasm` has zero imports and the documented
//!   exports, and in wasmtime it ranks randomized bundles bit-identically to the
//!   native core; bad input gives typed errors, never a trap.
//!
//! Later issues add the origin + edge end-to-end tests, the browser (wasm-bindgen,
//! Chromium) conformance and the GPU (WGSL) conformance here.
