//! # edgewise-browser
//!
//! Will become the npm package `edgewise`: the core compiled with wasm-bindgen
//! (the only crate allowed to depend on it), plus a TypeScript wrapper. It will
//! load a model, rank a bundle on the GPU through `edgewise-shaders` (WebGPU)
//! or on the CPU with the core, observe interactions into the session
//! embedding, and run the speculative-then-refined feed.
//!
//! Not built yet: today the browser can already run the zero-import
//! `edgewise_core.wasm` guest directly (see `edgewise_core::abi`).
