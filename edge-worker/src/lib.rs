//! # edgewise-edge
//!
//! The Edgewise edge worker. It runs the ranking where the user is: on a CDN
//! node, hosting `edgewise_core.wasm` (the zero-import core guest) in wasmtime.
//!
//! | module | what |
//! |---|---|
//! | [`guest`] | the host side of the guest ABI ([`edgewise_core::abi`]): compiles and checks the module, and runs it in the sandbox (epoch deadlines, a memory cap, fuel, pooling-allocator instances from an `InstancePre`) |
//! | [`pool`] | where a ranking gets its instance: pooled (reused, the model kept loaded) or fresh |
//! | [`compiled`] | compiled modules cached on disk |
//! | [`cache`] | the regional HTTP cache in front of the origin (RFC 9111 shared-cache rules) |
//! | [`feed`] | the speculative-then-refined feed |
//! | [`modules`] | guest modules fetched from the origin, verified by sha256 and ed25519 |
//! | [`server`] | the axum router |
//! | [`config`] | layered configuration |
//! | [`metrics`] | Prometheus metrics |
//!
//! The `edgewise-edge` binary has `serve` (the edge) and `rank`, which ranks a
//! bundle through the guest and natively and prints both with their
//! explanations. `tests/sandbox.rs` attacks the sandbox with hostile guests.

pub mod cache;
pub mod compiled;
pub mod config;
pub mod feed;
pub mod guest;
pub mod metrics;
pub mod modules;
pub mod pool;
pub mod server;
