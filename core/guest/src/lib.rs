//! `edgewise_core.wasm`: the ranking core as a guest module.
//!
//! Built for `wasm32-unknown-unknown` (with simd128) by `cargo xtask guest`, this
//! crate is a thin, `unsafe` layer of `extern "C"` exports over
//! [`edgewise_core::abi::Engine`]; the ABI itself is specified in
//! [`edgewise_core::abi`]. The module has **zero imports**: memory comes from a
//! `dlmalloc` allocator over the module's own linear memory, and a panic
//! becomes a wasm trap (`unreachable`), which the host sees as a failed call.
//!
//! On any other target the crate is empty.
#![cfg_attr(target_arch = "wasm32", no_std)]

#[cfg(target_arch = "wasm32")]
mod exports;
