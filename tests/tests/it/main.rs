//! The conformance and end-to-end tests, one binary (`cargo test -p edgewise-conformance`):
//!
//! * `guest`: `edgewise_core.wasm` in wasmtime against the native core, bit for bit;
//! * `feed_e2e`: a real origin (`edgewise-origin` serving on 127.0.0.1) with the
//!   edge and the real guest in front of it: the feed, module swaps, tokens.
//!
//! The guest module is built by `cargo xtask guest`; without it these tests
//! fail, naming the path.

mod common;
mod feed_e2e;
mod guest;
