//! # edgewise-edge
//!
//! The Edgewise edge worker. It runs the ranking where the user is: on a CDN
//! node, hosting `edgewise_core.wasm` (the zero-import core guest) in wasmtime.
//!
//! The modules, top to bottom (each uses only those below it):
//!
//! | layer | module | what |
//! |---|---|---|
//! | HTTP | [`server`] | the axum router: routes, access guards, admission, and each layer's error as a response |
//! | services | [`feed`] | the speculative-then-refined feed: frames, refinement, deadline, NDJSON |
//! | | [`tenants`] | each tenant's guest module and instance pool, module swaps, ranking slots |
//! | parts | [`modules`] | guest modules fetched from the origin (through the cache), verified by sha256 and ed25519 |
//! | | [`pool`] | where a ranking gets its instance: pooled (reused, the model kept loaded) or fresh |
//! | | [`cache`] | the regional HTTP cache in front of the origin (RFC 9111 shared-cache rules); HTTP and bytes only |
//! | | [`guest`] | the host side of the guest ABI ([`edgewise_core::abi`]): compiles and checks the module, and runs it in the sandbox (epoch deadlines, a memory cap, fuel, pooling-allocator instances from an `InstancePre`) |
//! | | [`disk`] | the cache's copy on disk (bodies, and an `rkyv` index validated at start-up), so a restarted edge starts warm |
//! | | [`compiled`] | compiled modules cached on disk |
//! | foundations | [`config`] | layered configuration: the schema and its defaults |
//! | | [`metrics`] | Prometheus metrics |
//! | | [`error`] | [`AppError`](error::AppError), an HTTP answer other than success |
//! | | [`clock`] | the clock the cache ages entries by (a manual one in tests) |
//!
//! Paths, header names, media types, feed frames and the model manifest are
//! [`edgewise_wire`]'s, shared with the origin. `cargo xtask layering
//! edge-worker/src` checks that no two modules import each other.
//!
//! The `edgewise-edge` binary has `serve` (the edge) and `rank`, which ranks a
//! bundle through the guest and natively and prints both with their
//! explanations (with the `synth` feature it can also generate the bundle).

pub mod cache;
pub mod clock;
pub mod compiled;
pub mod config;
pub mod disk;
pub mod error;
pub mod feed;
pub mod guest;
pub mod metrics;
pub mod modules;
pub mod pool;
pub mod server;
pub mod tenants;
