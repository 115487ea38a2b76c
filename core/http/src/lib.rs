//! # edgewise-http
//!
//! The HTTP plumbing the origin (`edgewise-origin`) and the edge
//! (`edgewise-edge`) share, so that both servers defend themselves the same
//! way and answer the same way:
//!
//! | module | what |
//! |---|---|
//! | [`serve`] | the connection loop: a header-read timeout (which also closes idle keep-alive connections), a cap on open connections, graceful drain, connection metrics |
//! | [`admission`] | what a request may make the server hold: its body is read only after the caller is known, within a size limit, a read timeout and a server-wide budget of body bytes, and the in-flight cap counts requests doing work, not clients trickling bytes |
//! | [`auth`] | who may call a route: service keys (ingest, admin, read) and short-lived user tokens (JWT, HS256 or EdDSA) whose subject is the user |
//! | [`error`] | the JSON error body every 4xx and 5xx carries |
//! | [`metrics`] | connection and admission counters, registered in each server's registry |
//!
//! Every route of both servers is put behind [`admission::Admission`] after
//! its own access check, so the order is always: authenticate on the headers,
//! then read the body, then take a slot of work.

pub mod admission;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod serve;

pub use error::{ErrorBody, json_error};
