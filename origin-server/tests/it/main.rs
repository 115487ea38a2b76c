//! Integration tests of the origin: the HTTP API over real sockets, durability across restarts, index recall, the router, snapshots.
//!
//! One test binary for the crate (each file below is a module), so the
//! crate and its dependencies are linked once.

mod api;
mod cli;
mod common;
mod durability;
mod recall;
mod router;
mod snapshots;
