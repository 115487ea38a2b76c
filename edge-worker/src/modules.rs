//! Guest modules fetched from the origin and verified before they run.
//!
//! `GET /v1/modules/{digest}` on the origin (through the cache: modules are
//! `immutable`) returns the module, and its detached ed25519 signature in
//! `X-Edgewise-Signature` (base64) when one was uploaded. A module is used
//! only if the sha256 of its bytes is the digest that was asked for, and,
//! when the edge has a public key configured, only if it carries a valid
//! signature by that key (`verify_strict`). Anything else is refused with a
//! [`ModuleError`] that says which check failed; the module already serving
//! keeps serving.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use edgewise_core::Digest;
use edgewise_wire::{headers, paths};

use crate::cache::{Cache, CacheError};

/// Why a module was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The digest is not 64 lower-case hex digits.
    #[error("a module digest is 64 lower-case hex digits (sha256), got {0:?}")]
    BadDigest(String),
    /// The bytes do not hash to the digest.
    #[error("module {expected} failed verification: its sha256 is {actual}")]
    DigestMismatch {
        /// The digest the module was asked for by.
        expected: Digest,
        /// The sha256 of the bytes that came.
        actual: Digest,
    },
    /// A public key is configured and the module has no signature.
    #[error("module {0} is not signed, and this edge requires signatures (--public-key)")]
    Unsigned(Digest),
    /// The signature does not verify.
    #[error("module {digest}: bad signature: {reason}")]
    BadSignature {
        /// The module's digest.
        digest: Digest,
        /// Why the signature was refused (not base64, not 64 bytes, not by the key).
        reason: String,
    },
    /// The public key is malformed.
    #[error("invalid ed25519 public key: {0}")]
    BadKey(String),
    /// The origin could not provide it.
    #[error("fetching module {digest}: {source}")]
    Fetch {
        /// The module's digest.
        digest: Digest,
        /// Why the cache could not serve it.
        source: CacheError,
    },
}

/// Parses an ed25519 public key: PEM, 64 hex digits or base64 of 32 bytes
/// (the same reader as the user-token keys, [`edgewise_http::auth::parse_ed25519_public_key`]).
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, ModuleError> {
    edgewise_http::auth::parse_ed25519_public_key(s).map_err(ModuleError::BadKey)
}

/// Parses a module digest (as a request or the configuration gives it).
pub fn parse_digest(d: &str) -> Result<Digest, ModuleError> {
    d.parse().map_err(|_| ModuleError::BadDigest(d.to_string()))
}

/// Checks `bytes` against `digest` and, when `key` is given, `signature` (base64) against `key`.
pub fn verify(
    bytes: &[u8],
    digest: Digest,
    signature: Option<&str>,
    key: Option<&VerifyingKey>,
) -> Result<(), ModuleError> {
    let actual = Digest::of(bytes);
    if actual != digest {
        return Err(ModuleError::DigestMismatch { expected: digest, actual });
    }
    let Some(key) = key else { return Ok(()) };
    let Some(sig) = signature else { return Err(ModuleError::Unsigned(digest)) };
    let bad = |reason: String| ModuleError::BadSignature { digest, reason };
    let raw =
        base64::engine::general_purpose::STANDARD.decode(sig.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
    let sig = Signature::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    key.verify_strict(bytes, &sig).map_err(|e| bad(e.to_string()))
}

/// Fetches module `digest` from the origin through the cache and verifies it:
/// its sha256, and its signature (the origin's `X-Edgewise-Signature`) when
/// `key` is given.
pub async fn fetch_verified(cache: &Cache, digest: Digest, key: Option<&VerifyingKey>) -> Result<Vec<u8>, ModuleError> {
    let served = cache.get(&paths::module(&digest)).await.map_err(|source| ModuleError::Fetch { digest, source })?;
    let r = &served.response;
    verify(&r.body, digest, r.header(headers::SIGNATURE), key)?;
    Ok(r.body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn digests_and_signatures_are_checked() {
        let bytes = b"\0asm\x01\0\0\0".to_vec();
        let digest = Digest::of(&bytes);
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&bytes).to_bytes());
        verify(&bytes, digest, None, None).expect("no key: the digest is enough");
        verify(&bytes, digest, Some(&sig), Some(&public)).expect("signed by the key");
        let zero = parse_digest(&"0".repeat(64)).expect("a digest");
        assert!(matches!(verify(&bytes, zero, None, None), Err(ModuleError::DigestMismatch { .. })));
        assert!(matches!(parse_digest("abc"), Err(ModuleError::BadDigest(_))));
        assert!(matches!(parse_digest(&digest.to_hex().to_uppercase()), Err(ModuleError::BadDigest(_))));
        assert!(matches!(verify(&bytes, digest, None, Some(&public)), Err(ModuleError::Unsigned(_))));
        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = base64::engine::general_purpose::STANDARD.encode(other.sign(&bytes).to_bytes());
        assert!(matches!(verify(&bytes, digest, Some(&forged), Some(&public)), Err(ModuleError::BadSignature { .. })));
        assert!(matches!(verify(&bytes, digest, Some("%%"), Some(&public)), Err(ModuleError::BadSignature { .. })));
    }

    #[test]
    fn public_keys_parse_from_hex_or_base64() {
        let public = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let b = public.to_bytes();
        assert_eq!(parse_public_key(&hex(&b)).expect("hex"), public);
        assert_eq!(parse_public_key(&base64::engine::general_purpose::STANDARD.encode(b)).expect("base64"), public);
        assert!(matches!(parse_public_key("abcd"), Err(ModuleError::BadKey(_))));
        assert!(matches!(parse_public_key(&hex(&[1; 16])), Err(ModuleError::BadKey(_))));
    }
}
