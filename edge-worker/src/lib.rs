//! # edgewise-edge
//!
//! The Edgewise edge worker. It runs the ranking where the user is: on a CDN
//! node, hosting `edgewise_core.wasm` (the zero-import core guest) in wasmtime.
//!
//! Today this crate holds [`guest`], the host side of the guest ABI
//! ([`edgewise_core::abi`]): it compiles the module, checks its imports and ABI
//! version, and ranks bundles through it, optionally inside the sandbox
//! (epoch deadlines, a memory cap, fuel, pooled instances from an
//! `InstancePre`) that `tests/sandbox.rs` attacks with hostile guests. The HTTP feed server, the regional
//! cache and the speculative-then-refined protocol build on it (issue 5).
//! The `edgewise-edge` binary currently offers `rank`, which ranks a bundle
//! through the guest and natively and prints both with their explanations.

pub mod cache;
pub mod compiled;
pub mod config;
pub mod feed;
pub mod guest;
pub mod metrics;
pub mod modules;
pub mod pool;
pub mod server;
