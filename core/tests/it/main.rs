//! Integration tests of edgewise-core: format compatibility, allocation-free ranking, properties against naive references.
//!
//! One test binary for the crate (each file below is a module), so the
//! crate and its dependencies are linked once.

mod compat;
mod experiment;
mod mutations;
mod no_alloc;
mod props;
