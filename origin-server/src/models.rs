//! The model registry: content-addressed model artifacts and the manifest
//! that says which model each user gets.
//!
//! A model is stored under the sha256 of its bytes. The manifest names a
//! `stable` model and optionally a `canary` with a rollout percentage. A user
//! gets the canary when `bucket(user) < percent`: the bucket is a fixed hash
//! of the user id, so a user stays on the same side for the whole rollout
//! (sticky routing: a user never flips between models mid-rollout).

use std::collections::HashMap;
use std::sync::Arc;

use edgewise_core::Digest;
use edgewise_core::model::Model;
use serde::{Deserialize, Serialize};

pub use edgewise_wire::Canary;

/// Which models are live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// The model most users get.
    #[schema(value_type = Option<String>)]
    pub stable: Option<Digest>,
    /// A model being rolled out.
    pub canary: Option<Canary>,
}

/// The user's rollout bucket, 0–99 (the first SplitMix64 output seeded with the id).
pub fn bucket(user: u64) -> u8 {
    (edgewise_core::experiment::SplitMix64::new(user).next_u64() % 100) as u8
}

impl Manifest {
    /// The digest `user` should use (`None`: a non-personalized request gets the stable model).
    pub fn for_user(&self, user: Option<u64>) -> Option<Digest> {
        match (&self.canary, user) {
            (Some(c), Some(u)) if bucket(u) < c.percent => Some(c.digest),
            _ => self.stable.or(self.canary.as_ref().map(|c| c.digest)),
        }
    }
}

/// Decoded models by digest, so ranking does not decode on every request.
#[derive(Debug, Default)]
pub struct Loaded {
    models: std::sync::RwLock<HashMap<Digest, Arc<Model>>>,
}

impl Loaded {
    /// A decoded model, decoding and caching it on first use.
    pub fn get(&self, digest: &Digest, bytes: impl FnOnce() -> Option<Vec<u8>>) -> Option<Arc<Model>> {
        if let Some(m) = self.models.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(digest) {
            return Some(m.clone());
        }
        let m = Arc::new(Model::decode(&bytes()?).ok()?);
        self.models.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(*digest, m.clone());
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_is_sticky_and_near_its_percentage() {
        let (s, c) = (Digest::of(b"s"), Digest::of(b"c"));
        let m = Manifest { stable: Some(s), canary: Some(Canary { digest: c, percent: 10 }) };
        let canary = (0..10_000u64).filter(|&u| m.for_user(Some(u)) == Some(c)).count();
        assert!((800..1200).contains(&canary), "{canary} of 10000 users on a 10% canary");
        for u in 0..100 {
            assert_eq!(m.for_user(Some(u)), m.for_user(Some(u)), "sticky");
        }
        assert_eq!(m.for_user(None), Some(s));
        assert_eq!(Manifest::default().for_user(Some(1)), None);
    }
}

/// Checks that `bytes` is a module an edge could run as a core guest: a
/// valid WebAssembly core module (not a component) with no imports that
/// exports `memory` and every function of the guest ABI
/// ([`edgewise_core::abi::EXPORTS`]). Anything else is refused before it is
/// stored, so an edge is never offered a module that can only fail.
pub fn check_guest_module(bytes: &[u8]) -> Result<(), String> {
    use wasmparser::{Encoding, Parser, Payload};
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly module (the body does not start with \\0asm)".into());
    }
    wasmparser::Validator::new().validate_all(bytes).map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
    let mut exports = std::collections::HashSet::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a valid WebAssembly module: {e}"))? {
            Payload::Version { encoding: Encoding::Component, .. } => {
                return Err("a component, not a core module: the guest ABI is a core module with plain exports".into());
            }
            Payload::ImportSection(r) if r.count() > 0 => {
                return Err(format!(
                    "the module has {} import group(s); a core guest imports nothing (build it for wasm32-unknown-unknown)",
                    r.count()
                ));
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(|e| format!("unreadable export section: {e}"))?;
                    exports.insert(e.name.to_string());
                }
            }
            _ => {}
        }
    }
    let missing: Vec<&str> =
        std::iter::once("memory").chain(edgewise_core::abi::EXPORTS).filter(|name| !exports.contains(*name)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the module does not export {} (guest ABI {})",
            missing.join(", "),
            edgewise_core::abi::ABI_VERSION
        ));
    }
    Ok(())
}

#[cfg(test)]
mod module_tests {
    use super::check_guest_module;

    #[test]
    fn only_runnable_guests_are_accepted() {
        let err = |wat: &str| check_guest_module(&wat_bytes(wat)).expect_err("refused");
        assert!(err("(module)").contains("does not export memory"));
        let imports = err(r#"(module (import "env" "f" (func)) (memory (export "memory") 1))"#);
        assert!(imports.contains("imports nothing"), "{imports}");
        assert!(check_guest_module(b"\0asm\x01\0\0\0junk").expect_err("invalid").contains("not a valid"));
        assert!(check_guest_module(b"hello").expect_err("not wasm").contains("\\0asm"));
        let mut all = String::from("(module (memory (export \"memory\") 1)");
        for name in edgewise_core::abi::EXPORTS {
            all.push_str(&format!(" (func (export \"{name}\"))"));
        }
        all.push(')');
        assert_eq!(check_guest_module(&wat_bytes(&all)), Ok(()));
    }

    fn wat_bytes(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).expect("valid WAT")
    }
}
