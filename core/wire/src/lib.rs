//! # edgewise-wire
//!
//! The HTTP vocabulary of Edgewise, written once: the origin, the edge, the
//! browser package and the CDN adapters all build and read requests with
//! these names, so a path, a header or a JSON field cannot drift between two
//! doors. `no_std` + `alloc`, so it compiles to `wasm32` for the browser and
//! the CDN runtimes; it does no I/O.
//!
//! | module | what |
//! |---|---|
//! | [`paths`] | route paths and the builders for the ones with parameters |
//! | [`headers`] | Edgewise's own header names and the shared standard ones |
//! | [`media`] | media types |
//! | [`cache_control`] | `Cache-Control` as a shared cache reads it |
//! | [`etag`] | strong ETags over a digest, and `If-None-Match` matching (RFC 9110 §13.1.2) |
//! | [`manifest`] | the model manifest `GET /v1/models/current` answers with |
//! | [`feed`] | the frames `GET|POST /v1/feed` answers with |
//! | [`error`] | the JSON error body every 4xx and 5xx carries |
//!
//! Who may call what is decided by `edgewise-http::auth` on the servers; the
//! rule is the same everywhere: a missing credential is 401 with
//! `WWW-Authenticate`, a wrong one or one that does not cover the route is 403.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;
#[cfg(feature = "std")]
#[macro_use]
extern crate std;

pub mod cache_control;
pub mod error;
pub mod etag;
pub mod feed;
pub mod headers;
pub mod manifest;
pub mod media;
pub mod paths;

pub use cache_control::CacheControl;
pub use error::ErrorBody;
pub use feed::{CacheStatus, Frame, FrameFailure, FrameItem, FrameKind, RankedBy, Timings};
pub use manifest::{Canary, ModelManifest};
