//! The edge crate's integration tests, one binary (`cargo test -p edgewise-edge`):
//!
//! * `cache`: the regional cache over real sockets, behind a scripted origin;
//!   entries are aged by a manual clock, never by sleeping;
//! * `cli`: the `edgewise-edge` binary run as a process (`rank`, `serve`);
//! * `sandbox`: hostile guests written in WAT against the sandbox.
//!
//! Tests that need a real origin (`edgewise-origin`) are end-to-end tests and
//! live in the conformance crate (`tests/` at the workspace root), so this
//! crate does not depend on the origin. The guest module these tests load is
//! built by `cargo xtask guest`; without it they fail, naming the path.

mod cache;
mod cli;
mod common;
mod sandbox;
