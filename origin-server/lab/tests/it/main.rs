//! Integration tests of edgewise-lab: MovieLens parsing and the import → train → eval → serve path.
//!
//! One test binary for the crate (each file below is a module), so the
//! crate and its dependencies are linked once.

mod movielens;
mod movielens_pipeline;
