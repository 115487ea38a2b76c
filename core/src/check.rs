//! Checkers for arbitrary input, shared by the cargo-fuzz targets
//! (`core/fuzz/`) and the property tests.
//!
//! Each takes any byte string, runs the decoder, and when decoding succeeds
//! checks the invariants a valid value must have, panicking if one fails (a
//! panic here is a bug the fuzzer should report). The decoders themselves never
//! panic on any input.

use alloc::vec::Vec;

use crate::bundle::{self, Bundle, BundleError};
use crate::model::{Model, ModelError};
use crate::session::SessionState;

/// Decodes `data` as a bundle; on success, reads every cell and checks that the
/// canonical re-encoding reproduces `data` exactly.
pub fn bundle_bytes(data: &[u8]) -> Result<usize, BundleError> {
    let b = Bundle::decode(data)?;
    let mut sum = 0u64;
    for i in 0..b.len() {
        sum = sum.wrapping_add(b.id(i));
        assert!(b.scale(i).is_finite() && b.scale(i) >= 0.0);
        assert!(b.retrieval_score(i).is_finite());
        assert!(b.features(i).all(f32::is_finite));
        assert_eq!(b.embedding(i).len(), b.dim());
        let _ = (b.creator(i), b.category(i), b.region_mask(i), b.source_mask(i));
    }
    let _ = sum;
    assert_eq!(bundle::reencode(&b), data, "decode/encode is not canonical");
    Ok(b.len())
}

/// Decodes `data` as a model; on success, checks it validates and re-encodes to `data`.
pub fn model_bytes(data: &[u8]) -> Result<Model, ModelError> {
    let m = Model::decode(data)?;
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(m.encode().as_deref(), Ok(data), "decode/encode is not canonical");
    Ok(m)
}

/// Decodes `data` as a session state; on success, checks the re-encoding.
pub fn session_bytes(data: &[u8]) -> bool {
    match SessionState::decode(data) {
        Ok((s, n)) => {
            assert_eq!(s.encode(), data[..n].to_vec());
            true
        }
        Err(_) => false,
    }
}

/// Decodes `data` as an ABI rank context; on success, checks the re-encoding.
pub fn context_bytes(data: &[u8]) -> bool {
    let mut ctx = crate::rank::RankContext::default();
    match crate::abi::decode_context(data, &mut ctx) {
        Ok(()) => {
            let mut again = Vec::new();
            crate::abi::encode_context(&ctx, &mut again);
            assert_eq!(again, data);
            true
        }
        Err(_) => false,
    }
}
