//! # edgewise-core
//!
//! The part of Edgewise that ranks, wherever the user is: natively at the
//! origin, as `edgewise_core.wasm` inside wasmtime on an edge node, and in the
//! browser through wasm-bindgen. It is `#![no_std]` + `alloc`: it does no I/O,
//! starts no threads and never reads a clock (time is an input).
//!
//! | module | what it holds |
//! |---|---|
//! | [`format`] | the envelope the five binary formats share: magic, version, CRC, reader, [`FormatError`] |
//! | [`bundle`] | the candidate-bundle format: builder and validated zero-copy view |
//! | [`model`] | the model artifact: pre-ranker, MLP, calibration, diversity |
//! | [`rank`] | the ranking pipeline and its explanation |
//! | [`session`] | the real-time session embedding |
//! | [`history`] | the user's recent interactions and the model's target attention over them |
//! | [`context`] | the query blend (base + session) and a [`RankContext`] from a stored user |
//! | [`digest`] | [`Digest`], the sha256 content address, parsed and printed in one place |
//! | [`region`] | [`Region`] and the region eligibility rule |
//! | [`merge`] | speculative-then-refined stable merge and agreement metrics |
//! | [`experiment`] | experiments decided identically everywhere: sticky ramped assignment, team-draft interleaving, Thompson sampling |
//! | [`abi`] | the guest C ABI: request/result encodings and the engine behind the exports |
//! | [`math`] | deterministic arithmetic: bit-identical on every platform |
//! | [`check`] | decoder checkers shared by the fuzz targets and property tests |
//! | `synth` | (feature `synth`) deterministic synthetic catalogues, models and contexts |
#![no_std]

extern crate alloc;

pub mod abi;
pub mod bundle;
pub mod check;
pub mod context;
pub mod digest;
pub mod experiment;
pub mod format;
pub mod history;
pub mod math;
pub mod merge;
pub mod model;
pub mod rank;
pub mod region;
pub mod session;
#[cfg(feature = "synth")]
pub mod synth;

pub use bundle::{Bundle, BundleBuilder, BundleError, BundleHeader, Candidate, Scope};
pub use digest::Digest;
pub use format::FormatError;
pub use model::{Model, ModelError};
pub use rank::{RankContext, RankError, RankOutput, Ranker};
pub use region::Region;
pub use session::{SessionConfig, SessionState, Signal};

/// Hash of a feature schema: the first 8 bytes (little-endian) of the sha256 of
/// `"edgewise.features.v1\0"` followed by each feature name and a `\0`.
///
/// Bundles and models carry it; a model refuses a bundle whose hash differs.
pub fn feature_schema_hash<S: AsRef<str>>(names: &[S]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"edgewise.features.v1\0");
    for n in names {
        h.update(n.as_ref().as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_hash_depends_on_names_and_order() {
        let a = super::feature_schema_hash(&["year", "popularity"]);
        assert_eq!(a, super::feature_schema_hash(&["year", "popularity"]));
        assert_ne!(a, super::feature_schema_hash(&["popularity", "year"]));
        assert_ne!(super::feature_schema_hash(&["ab", "c"]), super::feature_schema_hash(&["a", "bc"]));
    }
}
