//! # edgewise-origin
//!
//! Will become the `edgewise-origin` server (axum + tokio): the durable item
//! and event store, sharded ANN retrieval and the other candidate sources,
//! fusion and eligibility, candidate bundles with HTTP caching, the model
//! registry, and the import / train / eval CLI. It builds bundles with
//! `edgewise_core::bundle::BundleBuilder` and ranks at the origin with the
//! native core (`edgewise_core::rank`).
//!
//! Not built yet (its own issue).
