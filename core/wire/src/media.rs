//! Media types.

/// A candidate bundle (`core::bundle`).
pub const BUNDLE: &str = "application/vnd.edgewise.bundle";
/// A model artifact (`core::model`).
pub const MODEL: &str = "application/vnd.edgewise.model";
/// A guest module.
pub const WASM: &str = "application/wasm";
/// JSON.
pub const JSON: &str = "application/json";
/// Newline-delimited JSON: the streamed feed.
pub const NDJSON: &str = "application/x-ndjson";
/// The Prometheus text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";
